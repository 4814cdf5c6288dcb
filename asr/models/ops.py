"""The op registry: which code runs an inference-graph op, per backend.

Every op kind of :mod:`asr.models.graph` is declared once, on its dataclass, with a stable kind
name (``@declare_op("conv1d")``). Every backend that walks a graph (the float runner, the
parameter enumeration, the engine's datapath, its MAC-by-MAC reference, timing, the activity
that drives energy, and later an RTL generator) registers one implementation per kind
(``@register("timing", "conv1d")``) and calls :func:`dispatch` instead of branching on types.
Adding an op is then one declaration plus one registration per backend; an op a backend does
not know fails with a message naming the backend, the kind and what it does know, and
:meth:`OpRegistry.missing` (checked by a test) lists every backend x kind gap up front.

The registry is a dict keyed by ``(backend, kind)``; it lives in ``asr.models`` so that ``hw``
can register into it without ``asr`` depending on ``hw``. An implementation is called as
``impl(op, *args)``: what ``args`` are is each backend's own convention (documented where it
registers).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

C = TypeVar("C", bound=type)
F = TypeVar("F", bound=Callable[..., Any])


class UnregisteredOpError(LookupError):
    """An op whose kind is not declared, or that a backend has no implementation for."""


class OpRegistry:
    """Op kinds (class -> kind name) and implementations keyed by ``(backend, kind)``."""

    def __init__(self) -> None:
        self._kinds: dict[type, str] = {}
        self._impls: dict[tuple[str, str], Callable[..., Any]] = {}

    def declare_op(self, kind: str) -> Callable[[C], C]:
        """Class decorator: the op dataclass it decorates has kind ``kind`` (a stable name,
        what backends register under)."""
        def declare(cls: C) -> C:
            if kind in self._kinds.values() and self._kinds.get(cls) != kind:
                raise ValueError(f"op kind {kind!r} is already declared "
                                 f"(by {self.op_class(kind).__name__})")
            self._kinds[cls] = kind
            return cls
        return declare

    def register(self, backend: str, kind: str) -> Callable[[F], F]:
        """Function decorator: ``backend``'s implementation of op kind ``kind``. The function
        is returned unchanged, so one function can be registered for several kinds."""
        def add(fn: F) -> F:
            if kind not in self.kinds():
                raise ValueError(f"{backend}: cannot register op kind {kind!r}: not declared "
                                 f"(declared: {', '.join(self.kinds()) or 'none'})")
            if (backend, kind) in self._impls:
                raise ValueError(f"{backend}: op kind {kind!r} is already registered "
                                 f"({self._impls[backend, kind].__qualname__})")
            self._impls[backend, kind] = fn
            return fn
        return add

    def kind_of(self, op: object) -> str | None:
        """The declared kind of ``op`` (a subclass of a declared op class has its parent's
        kind, as ``isinstance`` dispatch gave it), or None."""
        return next((self._kinds[c] for c in type(op).__mro__ if c in self._kinds), None)

    def is_op(self, value: object) -> bool:
        """Whether ``value`` is an op of a declared kind (e.g. an op nested in another)."""
        return self.kind_of(value) is not None

    def lookup(self, backend: str, op: object) -> Callable[..., Any]:
        """``backend``'s implementation for ``op``'s kind; :class:`UnregisteredOpError` naming
        the backend, the kind and the kinds the backend has when there is none."""
        kind = self.kind_of(op)
        impl = self._impls.get((backend, kind)) if kind is not None else None
        if impl is None:
            known = ", ".join(self.implemented(backend)) or "none"
            name = kind if kind is not None else type(op).__name__
            hint = "" if kind is not None else f"; {name} is not a declared op kind"
            raise UnregisteredOpError(f"{backend}: no implementation for op kind {name!r} "
                                      f"(registered: {known}{hint})")
        return impl

    def dispatch(self, backend: str, op: object, *args: Any, **kwargs: Any) -> Any:
        """Run ``backend``'s implementation for ``op``: ``impl(op, *args, **kwargs)``."""
        return self.lookup(backend, op)(op, *args, **kwargs)

    def kinds(self) -> list[str]:
        """Every declared op kind, in declaration order."""
        return list(self._kinds.values())

    def op_class(self, kind: str) -> type:
        """The op class declared with kind ``kind``."""
        return next(cls for cls, k in self._kinds.items() if k == kind)

    def op_classes(self) -> list[type]:
        """Every declared op class, in declaration order."""
        return list(self._kinds)

    def backends(self) -> list[str]:
        """Every backend with at least one implementation, sorted."""
        return sorted({backend for backend, _ in self._impls})

    def implemented(self, backend: str) -> list[str]:
        """The kinds ``backend`` has an implementation for, in declaration order."""
        return [k for k in self.kinds() if (backend, k) in self._impls]

    def missing(self, backends: Iterable[str] | None = None) -> dict[str, list[str]]:
        """Declared kinds each backend lacks (``backends``, or every registered one); only
        backends with gaps appear, so ``{}`` means complete."""
        gaps = {b: [k for k in self.kinds() if (b, k) not in self._impls]
                for b in (self.backends() if backends is None else backends)}
        return {b: kinds for b, kinds in gaps.items() if kinds}


#: The registry every op and backend of this project uses.
OPS = OpRegistry()
declare_op = OPS.declare_op
register = OPS.register
lookup = OPS.lookup
dispatch = OPS.dispatch
kind_of = OPS.kind_of
is_op = OPS.is_op
