"""LSTM-CTC shaped like ESE's model: stacked unidirectional LSTM layers with a projection
(Google LSTMP), then a linear layer to the vocabulary.

Training runs PyTorch's fused ``nn.LSTM`` (one per layer, so that layers stay addressable), and
the gate matrices are exposed one by one under ESE's names through :meth:`LSTMCTC.matrices`:
views into the fused parameters, so pruning a view prunes the model. PyTorch stacks the gates
as (input, forget, cell, output), the order of ESE's W_i*, W_f*, W_c*, W_o*.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from asr.config_errors import check
from asr.models.graph import InferenceGraph, LinearOp, LSTMOp

_GATES = ("i", "f", "c", "o")


class LSTMCTC(nn.Module):
    """LSTM acoustic model for CTC.

    Args:
        input_dim: feature size (after frame stacking).
        vocab_size: output classes including the blank.
        hidden_size: LSTM cells per layer (1024 in ESE).
        proj_size: projection size (512 in ESE); 0 for none.
        num_layers: stacked layers (ESE's hardware runs one layer at a time; 2 in its model).
        bidirectional: for accuracy comparisons only; the hardware preset is unidirectional.
        dropout: dropout between layers during training.

    Input ``(batch, time, input_dim)``, output logits ``(batch, time, vocab_size)``.
    """

    model_type = "lstm"

    def __init__(self, input_dim: int, vocab_size: int, hidden_size: int = 1024,
                 proj_size: int = 512, num_layers: int = 2, bidirectional: bool = False,
                 dropout: float = 0.0):
        super().__init__()
        check(hidden_size >= 1, "model.hidden_size", ">= 1", hidden_size)
        check(0 <= proj_size < hidden_size, "model.proj_size",
              f"0 (none) or below hidden_size ({hidden_size})", proj_size)
        check(num_layers >= 1, "model.num_layers", ">= 1", num_layers)
        check(0.0 <= dropout < 1.0, "model.dropout", "in [0, 1)", dropout)
        self.input_dim, self.vocab_size = input_dim, vocab_size
        self.hidden_size, self.proj_size = hidden_size, proj_size
        self.bidirectional = bidirectional
        directions = 2 if bidirectional else 1
        out_dim = proj_size or hidden_size
        self.layers = nn.ModuleList(
            nn.LSTM(input_dim if k == 0 else out_dim * directions, hidden_size,
                    batch_first=True, proj_size=proj_size, bidirectional=bidirectional)
            for k in range(num_layers)
        )
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(out_dim * directions, vocab_size)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return lengths

    def forward(self, features: torch.Tensor, lengths: torch.Tensor | None = None
                ) -> torch.Tensor:
        x = features
        total = x.shape[1]
        for k, layer in enumerate(self.layers):
            if k > 0:
                x = self.dropout(x)
            if lengths is not None:
                packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True,
                                              enforce_sorted=False)
                x, _ = pad_packed_sequence(layer(packed)[0], batch_first=True,
                                           total_length=total)
            else:
                x = layer(x)[0]
        return self.output(x)

    def matrices(self) -> dict[str, torch.Tensor]:
        """ESE's per-gate matrices of every layer, as views of the fused parameters.

        Names are ``layers.{k}.W_ix`` ... ``W_or`` and ``layers.{k}.W_ym`` (the projection);
        a bidirectional model adds ``_reverse`` variants.
        """
        out = {}
        h = self.hidden_size
        for k, layer in enumerate(self.layers):
            for suffix in ([""] if not self.bidirectional else ["", "_reverse"]):
                w_ih = getattr(layer, f"weight_ih_l0{suffix}")
                w_hh = getattr(layer, f"weight_hh_l0{suffix}")
                for g, gate in enumerate(_GATES):
                    out[f"layers.{k}.W_{gate}x{suffix}"] = w_ih[g * h:(g + 1) * h]
                    out[f"layers.{k}.W_{gate}r{suffix}"] = w_hh[g * h:(g + 1) * h]
                if self.proj_size:
                    out[f"layers.{k}.W_ym{suffix}"] = getattr(layer, f"weight_hr_l0{suffix}")
        out["output"] = self.output.weight
        return out

    def export(self) -> InferenceGraph:
        if self.bidirectional:
            raise ValueError("model.bidirectional: the hardware graph is unidirectional (as "
                             "ESE); export a model trained with bidirectional=false")
        mats = {k: v.detach().clone() for k, v in self.matrices().items()}
        h = self.hidden_size
        ops: list = []
        for k, layer in enumerate(self.layers):
            bias = (layer.bias_ih_l0 + layer.bias_hh_l0).detach()
            name = f"layers.{k}"
            ops.append(LSTMOp(
                name,
                **{f"W_{g}{s}": mats[f"{name}.W_{g}{s}"] for g in _GATES for s in ("x", "r")},
                **{f"b_{g}": bias[i * h:(i + 1) * h].clone() for i, g in enumerate(_GATES)},
                W_ym=mats.get(f"{name}.W_ym"),
            ))
        ops.append(LinearOp("output", mats["output"], self.output.bias.detach().clone()))
        return InferenceGraph(self.model_type, self.input_dim, self.vocab_size, ops)
