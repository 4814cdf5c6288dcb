"""DeltaLSTM-CTC: :class:`~asr.models.lstm.LSTMCTC` run as a delta network (Neil et al. 2017;
EdgeDRNN, Spartus), so that a delta engine skips the weight columns of unchanged inputs.

For each layer and step, only the changes of the input ``x`` and of the recurrent input ``y``
(the projected output; Spartus's LSTM has no projection, this one keeps LSTMCTC's, so the
recurrent delta is taken on the projection's output) whose magnitude reaches ``theta_x`` /
``theta_h`` are sent, and the memories ``x_hat`` / ``y_hat`` move only where a change was
sent; the gate pre-activations ``M`` accumulate ``W_x dx + W_r dy`` from the biases. This is
exactly :func:`asr.models.graph.delta_lstm_layer`, batched (tests hold the two equal).

Training: the thresholds rise linearly from 0 (where the model is exactly the LSTM) to the
configured values over the first ``anneal_steps`` optimizer steps; :class:`CTCModule` passes
the trainer's step to :meth:`DeltaLSTMCTC.anneal`, so a resumed run continues the schedule.
Outside training (validation, evaluation, export) the configured thresholds apply. Gradients
flow through the deltas that were sent; the decision to send (``|change| >= theta``) is a step
function and is treated as a constant (zero derivative, the straight-through choice for the
mask itself), as in the DeltaLSTM/EdgeDRNN training code.

The parameters are LSTMCTC's own (one ``nn.LSTM`` per layer, whose fused weights the delta
loop reads), so an LSTM checkpoint initializes a delta model as is (``init_from=``), and
pruning and compression see the same matrix names (``layers.{k}.W_ix`` ...).
"""

from __future__ import annotations

import torch
from torch import nn

from asr.config_errors import check
from asr.models.graph import DeltaLSTMOp, InferenceGraph
from asr.models.lstm import LSTMCTC


def input_deltas(x: torch.Tensor, theta: float) -> torch.Tensor:
    """The thresholded deltas of ``x`` ``(batch, time, dim)`` against its memory (0 before the
    first step): ``dx_t = x_t - x_hat`` where that reaches ``theta``, else 0.

    Which changes are sent depends on ``x`` alone, not on the recurrence, so it is found in a
    gradient-free scan; the memory before each step is then the input at the last step that
    sent, gathered with gradients, and all steps' deltas come out in one vectorized pass."""
    batch, steps, dim = x.shape
    if steps == 0:
        return x
    with torch.no_grad():
        sent = torch.empty(batch, steps, dim, dtype=torch.bool, device=x.device)
        memory = x.new_zeros(batch, dim)
        for t in range(steps):
            change = x[:, t] - memory
            sent[:, t] = change.abs() >= theta
            memory = torch.where(sent[:, t], x[:, t], memory)
        # index into [0, x_0, x_1, ...] of the memory before step t: the last step < t that sent
        index = torch.arange(1, steps + 1, device=x.device).view(1, steps, 1)
        last = torch.where(sent, index, 0).cummax(dim=1).values
        before = torch.cat([last.new_zeros(batch, 1, dim), last[:, :-1]], dim=1)
    padded = torch.cat([x.new_zeros(batch, 1, dim), x], dim=1)
    memory = padded.gather(1, before)
    return torch.where(sent, x - memory, torch.zeros_like(x))


class DeltaLSTMCTC(LSTMCTC):
    """Delta LSTM acoustic model for CTC (unidirectional, as the delta engines).

    Args:
        input_dim, vocab_size, hidden_size, proj_size, num_layers, dropout: as
            :class:`~asr.models.lstm.LSTMCTC`.
        theta_x: threshold of the input deltas (every layer), >= 0.
        theta_h: threshold of the recurrent deltas (on the projected output), >= 0.
        anneal_steps: optimizer steps over which both thresholds rise linearly from 0 to
            their values (0: the full thresholds from the first step).

    In eval mode every forward adds its zero and total delta counts of the frames within
    ``lengths`` to :attr:`sparsity` (``layers.{k}.dx`` / ``.dh`` -> ``[zeros, total]``, the
    keys of :func:`~asr.models.graph.delta_lstm_layer`); :meth:`reset_sparsity` clears them.
    """

    model_type = "delta_lstm"

    def __init__(self, input_dim: int, vocab_size: int, hidden_size: int = 1024,
                 proj_size: int = 512, num_layers: int = 2, dropout: float = 0.0,
                 theta_x: float = 0.1, theta_h: float = 0.1, anneal_steps: int = 0):
        check(theta_x >= 0, "model.theta_x", "a threshold >= 0", theta_x)
        check(theta_h >= 0, "model.theta_h", "a threshold >= 0", theta_h)
        check(anneal_steps >= 0, "model.anneal_steps", ">= 0 (0: no annealing)", anneal_steps)
        super().__init__(input_dim, vocab_size, hidden_size, proj_size, num_layers,
                         bidirectional=False, dropout=dropout)
        self.theta_x, self.theta_h = float(theta_x), float(theta_h)
        self.anneal_steps = int(anneal_steps)
        self.anneal_fraction = 1.0 if anneal_steps == 0 else 0.0
        self.sparsity: dict[str, list[int]] = {}

    def anneal(self, step: int) -> None:
        """Set the training thresholds for optimizer step ``step``: ``min(1, step /
        anneal_steps)`` of the configured values."""
        self.anneal_fraction = 1.0 if self.anneal_steps == 0 else min(
            1.0, step / self.anneal_steps)

    def thresholds(self) -> tuple[float, float]:
        """``(theta_x, theta_h)`` in use: annealed while training, the configured values
        otherwise."""
        scale = self.anneal_fraction if self.training else 1.0
        return self.theta_x * scale, self.theta_h * scale

    def reset_sparsity(self) -> None:
        self.sparsity = {}

    def forward(self, features: torch.Tensor, lengths: torch.Tensor | None = None
                ) -> torch.Tensor:
        theta_x, theta_h = self.thresholds()
        valid = None
        if lengths is not None and not self.training:
            steps = torch.arange(features.shape[1], device=features.device)
            valid = steps[None, :] < lengths.to(features.device)[:, None]
        x = features
        for k, layer in enumerate(self.layers):
            if k > 0:
                x = self.dropout(x)
            x = self._layer(f"layers.{k}", layer, x, theta_x, theta_h, valid)
        return self.output(x)

    def _count(self, key: str, delta: torch.Tensor, valid: torch.Tensor | None) -> None:
        """Add the zero deltas of ``(batch, time, dim)`` ``delta`` within ``valid``."""
        zero = delta == 0
        if valid is not None:
            zero = zero & valid[..., None]
            total = int(valid.sum()) * delta.shape[-1]
        else:
            total = delta.numel()
        zeros, all_ = self.sparsity.get(key, [0, 0])
        self.sparsity[key] = [zeros + int(zero.sum()), all_ + total]

    def _layer(self, name: str, layer: nn.LSTM, x: torch.Tensor, theta_x: float,
               theta_h: float, valid: torch.Tensor | None) -> torch.Tensor:
        batch, steps, _ = x.shape
        hidden = self.hidden_size
        out_dim = self.proj_size or hidden
        dx = input_deltas(x, theta_x)
        # M_t = b + sum_{s<=t} W_x dx_s + sum_{s<=t} W_r dy_s: the input part for every step
        # in one product and a running sum; only the recurrent part needs the time loop.
        bias = layer.bias_ih_l0 + layer.bias_hh_l0
        m_input = torch.cumsum(dx @ layer.weight_ih_l0.t(), dim=1) + bias
        w_r = layer.weight_hh_l0.t()                       # all 4 gates: one product a step
        w_proj = layer.weight_hr_l0.t() if self.proj_size else None
        c = x.new_zeros(batch, hidden)
        y = x.new_zeros(batch, out_dim)
        y_hat = x.new_zeros(batch, out_dim)
        m_rec = x.new_zeros(batch, 4 * hidden)
        count = not self.training
        sent_h = [] if count else None
        outputs = []
        # Few, fused ops a step: the loop's cost is per-op overhead at these sizes.
        for t in range(steps):
            change = y - y_hat
            dy = torch.where(change.abs() >= theta_h, change, 0.0)
            y_hat = y_hat + dy
            m_rec = torch.addmm(m_rec, dy, w_r)
            pre = m_input[:, t] + m_rec
            gates = torch.sigmoid(pre)                   # i, f, (unused), o
            g = torch.tanh(pre[:, 2 * hidden:3 * hidden])
            c = torch.addcmul(gates[:, hidden:2 * hidden] * c, gates[:, :hidden], g)
            h = gates[:, 3 * hidden:] * torch.tanh(c)
            y = h @ w_proj if w_proj is not None else h
            outputs.append(y)
            if sent_h is not None:
                sent_h.append(dy)
        if count and steps:
            with torch.no_grad():
                self._count(f"{name}.dx", dx, valid)
                self._count(f"{name}.dh", torch.stack(sent_h, dim=1), valid)
        if not steps:
            return x.new_zeros(batch, 0, out_dim)
        return torch.stack(outputs, dim=1)

    def export(self) -> InferenceGraph:
        """LSTMCTC's graph with every layer a :class:`DeltaLSTMOp` carrying the configured
        thresholds (same matrix names)."""
        graph = super().export()
        graph.model_type = self.model_type
        graph.ops = [DeltaLSTMOp(**vars(op), theta_x=self.theta_x, theta_h=self.theta_h)
                     if op.name.startswith("layers.") else op for op in graph.ops]
        return graph


def temporal_sparsity(counts: dict[str, list[int]]) -> dict[str, dict[str, float]]:
    """The fractions of zero deltas from ``{layer}.dx`` / ``{layer}.dh`` -> ``[zeros, total]``
    counts: per layer ``{"dx", "dh", "all"}`` and, under ``overall``, the same over every
    layer. ``all`` is the fraction of weight columns a delta engine skips."""
    def frac(pairs: list[list[int]]) -> float:
        total = sum(t for _, t in pairs)
        return sum(z for z, _ in pairs) / total if total else 0.0

    layers = sorted({key.rsplit(".", 1)[0] for key in counts})
    out = {}
    for layer in layers:
        dx, dh = counts.get(f"{layer}.dx", [0, 0]), counts.get(f"{layer}.dh", [0, 0])
        out[layer] = {"dx": frac([dx]), "dh": frac([dh]), "all": frac([dx, dh])}
    pick = {kind: [v for k, v in counts.items() if k.endswith(f".{kind}")]
            for kind in ("dx", "dh")}
    out["overall"] = {"dx": frac(pick["dx"]), "dh": frac(pick["dh"]),
                      "all": frac(pick["dx"] + pick["dh"])}
    return out
