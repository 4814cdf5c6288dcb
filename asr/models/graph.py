"""The inference graph: the exact computation a trained model performs at inference time, in
the form the hardware engine runs it.

Every acoustic model exports an :class:`InferenceGraph` (``model.export()``): an ordered list of
ops over float tensors with batch norm already folded into the convolutions, LSTM gates split
into ESE's named matrices, and every activation function named. :func:`run_graph` executes a
graph in float64 PyTorch; tests hold it equal to the model's own ``forward`` in eval mode, so
whatever runs the graph (the fixed-point engine in ``hw/``) runs the model.

Op kinds (each declared once with its registry kind name, see :mod:`asr.models.ops`) and their
semantics (``x`` is ``(time, features)``; one utterance):

- :class:`Conv1dOp` (``conv1d``):
  ``y[t] = act(b + sum_k W[:, :, k] @ x[t + (k - (K-1)//2) * dilation])``, zeros outside the
  utterance ("same" padding, non-causal).
- :class:`GatedResidualOp` (``gated_residual``): ``z = filter(x) * gate(x); o = out(z)`` (each
  a Conv1dOp with its own activation: tanh, sigmoid, tanh in the seed WaveNet), returns
  ``x + o`` and adds ``o`` into the running skip sum.
- :class:`SkipSumOp` (``skip_sum``): replaces ``x`` by the skip sum accumulated so far.
- :class:`LSTMOp` (``lstm``): a unidirectional LSTM layer in ESE's notation (no peepholes)::

      i = sigmoid(W_ix x_t + W_ir y_{t-1} + b_i)    f = sigmoid(W_fx x_t + W_fr y_{t-1} + b_f)
      g = tanh(W_cx x_t + W_cr y_{t-1} + b_c)       o = sigmoid(W_ox x_t + W_or y_{t-1} + b_o)
      c_t = f * c_{t-1} + i * g                      m_t = o * tanh(c_t)
      y_t = W_ym m_t  (projection; y_t = m_t when W_ym is None)

  with ``c_0 = y_0 = 0``.
- :class:`DeltaLSTMOp` (``delta_lstm``): the same LSTM run as a delta network (DeltaLSTM, Neil et
  al. 2017; EdgeDRNN, Spartus). Only input and recurrent changes that reach a threshold are
  sent; ``x_hat``/``y_hat`` remember the last value sent::

      dx_t = x_t - x_hat where |x_t - x_hat| >= theta_x else 0;  x_hat += dx_t
      dy_t = y_{t-1} - y_hat where |y_{t-1} - y_hat| >= theta_h else 0;  y_hat += dy_t
      M_t = W_*x dx_t + W_*r dy_t + M_{t-1}  (per gate, M_0 = the biases)
      i, f, o = sigmoid(M_i), sigmoid(M_f), sigmoid(M_o);  g = tanh(M_c);  then as LSTMOp

  The delta of the recurrent input is taken on ``y`` (the projected output when ``W_ym`` is
  set; Spartus's LSTM has no projection). With both thresholds 0 it is exactly the LSTM.
- :class:`LinearOp` (``linear``): ``y[t] = act(W x[t] + b)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, fields

import torch

from asr.models.ops import OPS, declare_op, dispatch, is_op, register

ACTIVATIONS = {
    "identity": lambda x: x,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "relu": torch.relu,
}


@declare_op("conv1d")
@dataclass
class Conv1dOp:
    name: str
    weight: torch.Tensor  # (out, in, kernel)
    bias: torch.Tensor    # (out,)
    dilation: int = 1
    activation: str = "identity"

    def matrices(self) -> dict[str, torch.Tensor]:
        return {self.name: self.weight}


@declare_op("gated_residual")
@dataclass
class GatedResidualOp:
    name: str
    filter: Conv1dOp
    gate: Conv1dOp
    out: Conv1dOp

    def matrices(self) -> dict[str, torch.Tensor]:
        return {**self.filter.matrices(), **self.gate.matrices(), **self.out.matrices()}


@declare_op("skip_sum")
@dataclass
class SkipSumOp:
    name: str = "skip_sum"

    def matrices(self) -> dict[str, torch.Tensor]:
        return {}


@declare_op("lstm")
@dataclass
class LSTMOp:
    name: str
    W_ix: torch.Tensor
    W_fx: torch.Tensor
    W_cx: torch.Tensor
    W_ox: torch.Tensor
    W_ir: torch.Tensor
    W_fr: torch.Tensor
    W_cr: torch.Tensor
    W_or: torch.Tensor
    b_i: torch.Tensor
    b_f: torch.Tensor
    b_c: torch.Tensor
    b_o: torch.Tensor
    W_ym: torch.Tensor | None = None
    gate_activation: str = "sigmoid"
    cell_activation: str = "tanh"

    GATE_MATRICES = ("W_ix", "W_fx", "W_cx", "W_ox", "W_ir", "W_fr", "W_cr", "W_or")

    def matrices(self) -> dict[str, torch.Tensor]:
        names = [*self.GATE_MATRICES, *(["W_ym"] if self.W_ym is not None else [])]
        return {f"{self.name}.{n}": getattr(self, n) for n in names}


@declare_op("delta_lstm")
@dataclass
class DeltaLSTMOp(LSTMOp):
    """:class:`LSTMOp` with delta thresholds on its input (``theta_x``) and on its recurrent
    input (``theta_h``); zero changes leave whole weight columns unread."""

    theta_x: float = 0.0
    theta_h: float = 0.0


@declare_op("linear")
@dataclass
class LinearOp:
    name: str
    weight: torch.Tensor  # (out, in)
    bias: torch.Tensor
    activation: str = "identity"

    def matrices(self) -> dict[str, torch.Tensor]:
        return {self.name: self.weight}


Op = Conv1dOp | GatedResidualOp | SkipSumOp | LSTMOp | DeltaLSTMOp | LinearOp


@dataclass
class InferenceGraph:
    """Ordered ops from features ``(time, input_dim)`` to logits ``(time, vocab_size)``."""

    model_type: str
    input_dim: int
    vocab_size: int
    ops: list[Op] = field(default_factory=list)

    def matrices(self) -> dict[str, torch.Tensor]:
        """Every weight matrix by name (the units that pruning and the engine work on)."""
        out: dict[str, torch.Tensor] = {}
        for op in self.ops:
            out.update(op.matrices())
        return out

    def __iter__(self) -> Iterator[Op]:
        return iter(self.ops)


def conv1d_same(x: torch.Tensor, op: Conv1dOp) -> torch.Tensor:
    """:class:`Conv1dOp` on ``(time, in)``, returning ``(time, out)``."""
    kernel = op.weight.shape[-1]
    pad = (kernel - 1) // 2 * op.dilation
    y = torch.nn.functional.conv1d(x.t().unsqueeze(0), op.weight.to(x.dtype), op.bias.to(x.dtype),
                                   padding=pad, dilation=op.dilation)
    return ACTIVATIONS[op.activation](y[0].t())


def track_range(ranges: dict[str, float] | None, name: str, x: torch.Tensor) -> None:
    """Keep the largest magnitude seen of signal ``name`` (calibration of activation formats)."""
    if ranges is not None and x.numel():
        ranges[name] = max(ranges.get(name, 0.0), float(x.detach().abs().max()))


def lstm_layer(x: torch.Tensor, op: LSTMOp, ranges: dict[str, float] | None = None
               ) -> torch.Tensor:
    """:class:`LSTMOp` on ``(time, in)`` step by step, returning ``(time, out)``; ``ranges``
    collects the magnitudes of the cell state (``{name}.c``) and of ``m`` (``{name}.m``)."""
    sig, act = ACTIVATIONS[op.gate_activation], ACTIVATIONS[op.cell_activation]
    w = {n: getattr(op, n).to(x.dtype) for n in op.GATE_MATRICES}
    # The input products do not depend on the recurrence: one matrix product for all steps.
    xi, xf, xc, xo = (x @ w[n].t() for n in ("W_ix", "W_fx", "W_cx", "W_ox"))
    hidden = op.W_ix.shape[0]
    out_dim = op.W_ym.shape[0] if op.W_ym is not None else hidden
    c = x.new_zeros(hidden)
    y = x.new_zeros(out_dim)
    outputs = []
    for t in range(x.shape[0]):
        i = sig(xi[t] + w["W_ir"] @ y + op.b_i.to(x.dtype))
        f = sig(xf[t] + w["W_fr"] @ y + op.b_f.to(x.dtype))
        g = act(xc[t] + w["W_cr"] @ y + op.b_c.to(x.dtype))
        o = sig(xo[t] + w["W_or"] @ y + op.b_o.to(x.dtype))
        c = f * c + i * g
        m = o * act(c)
        track_range(ranges, f"{op.name}.c", c)
        track_range(ranges, f"{op.name}.m", m)
        y = op.W_ym.to(x.dtype) @ m if op.W_ym is not None else m
        outputs.append(y)
    return torch.stack(outputs)


def threshold_delta(x: torch.Tensor, memory: torch.Tensor, theta: float
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """The delta sent for ``x`` against the last value sent (``memory``) and the new memory:
    changes whose magnitude reaches ``theta`` are sent whole, the others are zero."""
    change = x - memory
    delta = torch.where(change.abs() >= theta, change, torch.zeros_like(change))
    return delta, memory + delta


def delta_lstm_layer(x: torch.Tensor, op: DeltaLSTMOp, ranges: dict[str, float] | None = None,
                     sparsity: dict[str, list[int]] | None = None) -> torch.Tensor:
    """:class:`DeltaLSTMOp` on ``(time, in)`` step by step, returning ``(time, out)``.

    ``sparsity`` (updated in place) counts ``[zero deltas, all deltas]`` under ``{name}.dx`` and
    ``{name}.dh``: the temporal sparsity, the fraction of weight columns a delta engine skips.
    ``ranges`` collects ``{name}.c``, ``{name}.m`` and ``{name}.M`` (the accumulated memory)."""
    sig, act = ACTIVATIONS[op.gate_activation], ACTIVATIONS[op.cell_activation]
    dtype = x.dtype
    wx = torch.cat([getattr(op, f"W_{g}x").to(dtype) for g in "ifco"])
    wr = torch.cat([getattr(op, f"W_{g}r").to(dtype) for g in "ifco"])
    hidden = op.W_ix.shape[0]
    out_dim = op.W_ym.shape[0] if op.W_ym is not None else hidden
    acc = torch.cat([op.b_i, op.b_f, op.b_c, op.b_o]).to(dtype)
    x_hat, y_hat = x.new_zeros(x.shape[1]), x.new_zeros(out_dim)
    c, y = x.new_zeros(hidden), x.new_zeros(out_dim)
    outputs = []
    for t in range(x.shape[0]):
        dx, x_hat = threshold_delta(x[t], x_hat, op.theta_x)
        dy, y_hat = threshold_delta(y, y_hat, op.theta_h)
        if sparsity is not None:
            for key, d in ((f"{op.name}.dx", dx), (f"{op.name}.dh", dy)):
                zero, total = sparsity.setdefault(key, [0, 0])
                sparsity[key] = [zero + int((d == 0).sum()), total + d.numel()]
        acc = acc + wx @ dx + wr @ dy
        track_range(ranges, f"{op.name}.M", acc)
        i, f, g, o = acc.split(hidden)
        c = sig(f) * c + sig(i) * act(g)
        m = sig(o) * act(c)
        track_range(ranges, f"{op.name}.c", c)
        track_range(ranges, f"{op.name}.m", m)
        y = op.W_ym.to(dtype) @ m if op.W_ym is not None else m
        outputs.append(y)
    return torch.stack(outputs)


FLOAT = "float"
PARAMETERS = "parameters"


@dataclass
class FloatRun:
    """What :func:`run_graph`'s ops share besides the signal: the working dtype, the range
    calibration dict and the running skip sum (WaveNet's residual blocks add into it)."""

    dtype: torch.dtype
    ranges: dict[str, float] | None = None
    skip: torch.Tensor | None = None
    sparsity: dict[str, list[int]] | None = None   # delta ops' zero/total delta counts


# The float backend: ``impl(op, run: FloatRun, x) -> y`` on ``(time, features)`` tensors.

@register(FLOAT, "conv1d")
def _float_conv(op: Conv1dOp, run: FloatRun, x: torch.Tensor) -> torch.Tensor:
    return conv1d_same(x, op)


@register(FLOAT, "gated_residual")
def _float_gated_residual(op: GatedResidualOp, run: FloatRun, x: torch.Tensor) -> torch.Tensor:
    z = dispatch(FLOAT, op.filter, run, x) * dispatch(FLOAT, op.gate, run, x)
    o = dispatch(FLOAT, op.out, run, z)
    run.skip = o if run.skip is None else run.skip + o
    return x + o


@register(FLOAT, "skip_sum")
def _float_skip_sum(op: SkipSumOp, run: FloatRun, x: torch.Tensor) -> torch.Tensor:
    if run.skip is None:
        raise ValueError(f"{op.name}: no residual block before the skip sum")
    return run.skip


@register(FLOAT, "lstm")
def _float_lstm(op: LSTMOp, run: FloatRun, x: torch.Tensor) -> torch.Tensor:
    return lstm_layer(x, op, run.ranges)


@register(FLOAT, "delta_lstm")
def _float_delta_lstm(op: DeltaLSTMOp, run: FloatRun, x: torch.Tensor) -> torch.Tensor:
    return delta_lstm_layer(x, op, run.ranges, run.sparsity)


@register(FLOAT, "linear")
def _float_linear(op: LinearOp, run: FloatRun, x: torch.Tensor) -> torch.Tensor:
    return ACTIVATIONS[op.activation](x @ op.weight.to(run.dtype).t() + op.bias.to(run.dtype))


@torch.no_grad()
def run_graph(graph: InferenceGraph, features: torch.Tensor,
              dtype: torch.dtype = torch.float64, ranges: dict[str, float] | None = None,
              outputs: dict[str, torch.Tensor] | None = None,
              sparsity: dict[str, list[int]] | None = None) -> torch.Tensor:
    """Execute ``graph`` on one utterance's ``(time, input_dim)`` features -> logits.

    ``ranges`` (a dict, updated in place) collects the largest magnitude of the input
    (``input``), of every op's output (by op name) and of the LSTM states: the calibration that
    chooses activation formats. ``outputs`` collects the input and every op's output.
    ``sparsity`` (updated in place) counts the delta ops' zero deltas
    (:func:`delta_lstm_layer`)."""
    x = features.to(dtype)
    track_range(ranges, "input", x)
    if outputs is not None:
        outputs["input"] = x
    run = FloatRun(dtype, ranges, sparsity=sparsity)
    for op in graph.ops:
        x = dispatch(FLOAT, op, run, x)
        track_range(ranges, op.name, x)
        if outputs is not None:
            outputs[op.name] = x
    return x


# The parameter backend: ``impl(op)`` yields the op's ``(key, kind, op, attribute)``.

@register(PARAMETERS, "conv1d")
@register(PARAMETERS, "linear")
def _dense_parameters(op: Conv1dOp | LinearOp) -> Iterator[tuple[str, str, object, str]]:
    yield op.name, "weight", op, "weight"
    yield f"{op.name}.bias", "bias", op, "bias"


@register(PARAMETERS, "gated_residual")
def _gated_residual_parameters(op: GatedResidualOp) -> Iterator[tuple[str, str, object, str]]:
    for part in (op.filter, op.gate, op.out):
        yield from dispatch(PARAMETERS, part)


@register(PARAMETERS, "skip_sum")
def _no_parameters(op: SkipSumOp) -> Iterator[tuple[str, str, object, str]]:
    yield from ()


@register(PARAMETERS, "lstm")
@register(PARAMETERS, "delta_lstm")
def _lstm_parameters(op: LSTMOp) -> Iterator[tuple[str, str, object, str]]:
    for key in op.matrices():
        yield key, "weight", op, key.rsplit(".", 1)[1]
    for b in ("b_i", "b_f", "b_c", "b_o"):
        yield f"{op.name}.{b}", "bias", op, b


def graph_parameters(graph: InferenceGraph) -> Iterator[tuple[str, str, object, str]]:
    """Every weight matrix and bias of the graph as ``(key, kind, op, attribute)``: ``kind`` is
    ``weight`` (keys as :meth:`InferenceGraph.matrices`) or ``bias`` (``{op}.bias``,
    ``{lstm}.b_i`` ...), so that quantizers can replace them in place. ``op`` is the op that
    holds the tensor (a gated residual's convolutions, not the block)."""
    for op in graph.ops:
        yield from dispatch(PARAMETERS, op)


def _op_to_dict(op: Op) -> dict:
    out: dict = {"op": type(op).__name__}
    for f in fields(op):
        value = getattr(op, f.name)
        out[f.name] = _op_to_dict(value) if is_op(value) else value
    return out


def _op_from_dict(d: dict) -> Op:
    kwargs = {k: _op_from_dict(v) if isinstance(v, dict) and "op" in v else v
              for k, v in d.items() if k != "op"}
    # serialized ops name their class (the artifact format), not their registry kind
    op_types = {cls.__name__: cls for cls in OPS.op_classes()}
    return op_types[d["op"]](**kwargs)


def graph_to_dict(graph: InferenceGraph) -> dict:
    """Plain dicts, lists and tensors (loadable with ``torch.load(weights_only=True)``)."""
    return {"model_type": graph.model_type, "input_dim": graph.input_dim,
            "vocab_size": graph.vocab_size, "ops": [_op_to_dict(op) for op in graph.ops]}


def graph_from_dict(d: dict) -> InferenceGraph:
    return InferenceGraph(d["model_type"], d["input_dim"], d["vocab_size"],
                          [_op_from_dict(op) for op in d["ops"]])
