"""WaveNet-CTC, faithful to the seed speech-to-text-wavenet.

Front: 1x1 conv to ``channels`` + batch norm + tanh (``conv_in``). Then ``blocks`` x
``dilations`` residual layers ``block_{b}_{d}``: a dilated filter conv (batch norm, tanh) times a
dilated gate conv (batch norm, sigmoid), then a 1x1 conv (batch norm, tanh) ``conv_out`` added to
the layer's input and summed into the skip path. Head: the skip sum through ``conv1`` (1x1,
batch norm, tanh) and ``conv2`` (1x1 to the vocabulary, with bias). Non-causal "same" padding.
Submodule names follow the seed's dump names so per-layer traces line up.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from asr.config_errors import check
from asr.models.graph import Conv1dOp, GatedResidualOp, InferenceGraph, SkipSumOp


class ConvBN(nn.Module):
    """Conv1d (no bias) + BatchNorm1d + activation; exports as one folded :class:`Conv1dOp`."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 1, dilation: int = 1,
                 activation: str = "tanh"):
        super().__init__()
        self.conv = nn.Conv1d(in_ch, out_ch, kernel, dilation=dilation,
                              padding=(kernel - 1) // 2 * dilation, bias=False)
        self.bn = nn.BatchNorm1d(out_ch)
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(self.conv(x))
        return torch.tanh(y) if self.activation == "tanh" else torch.sigmoid(y)

    def export(self, name: str) -> Conv1dOp:
        """Fold batch norm (running statistics) into the conv's weight and bias."""
        bn = self.bn
        scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
        weight = self.conv.weight.detach() * scale[:, None, None]
        bias = bn.bias.detach() - bn.running_mean * scale
        return Conv1dOp(name, weight.clone(), bias.clone(), self.conv.dilation[0],
                        self.activation)


class ResidualLayer(nn.Module):
    def __init__(self, channels: int, kernel: int, dilation: int):
        super().__init__()
        self.conv_filter = ConvBN(channels, channels, kernel, dilation, "tanh")
        self.conv_gate = ConvBN(channels, channels, kernel, dilation, "sigmoid")
        self.conv_out = ConvBN(channels, channels, 1, 1, "tanh")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.conv_out(self.conv_filter(x) * self.conv_gate(x))
        return x + out, out


class WaveNetCTC(nn.Module):
    """WaveNet acoustic model for CTC.

    Args:
        input_dim: feature size (20 MFCCs in the seed).
        vocab_size: output classes including the blank.
        channels: residual channels (128 in the seed).
        blocks: repetitions of the dilation stack (3 in the seed).
        dilations: dilations of one stack (1, 2, 4, 8, 16 in the seed).
        kernel: dilated conv kernel size, odd (7 in the seed).

    Input ``(batch, time, input_dim)``, output logits ``(batch, time, vocab_size)``.
    """

    model_type = "wavenet"

    def __init__(self, input_dim: int, vocab_size: int, channels: int = 128, blocks: int = 3,
                 dilations: Sequence[int] = (1, 2, 4, 8, 16), kernel: int = 7):
        super().__init__()
        check(channels >= 1, "model.channels", ">= 1", channels)
        check(blocks >= 1, "model.blocks", ">= 1", blocks)
        check(len(dilations) >= 1 and all(d >= 1 for d in dilations), "model.dilations",
              "a non-empty list of positive ints", list(dilations))
        check(kernel >= 1 and kernel % 2 == 1, "model.kernel", "an odd size >= 1", kernel)
        self.input_dim, self.vocab_size = input_dim, vocab_size
        self.layer_names = [f"block_{b}_{d}" for b in range(blocks) for d in dilations]
        self.conv_in = ConvBN(input_dim, channels, 1, 1, "tanh")
        for b in range(blocks):
            for d in dilations:
                self.add_module(f"block_{b}_{d}", ResidualLayer(channels, kernel, d))
        self.conv1 = ConvBN(channels, channels, 1, 1, "tanh")
        self.conv2 = nn.Conv1d(channels, vocab_size, 1)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return lengths

    def forward(self, features: torch.Tensor, lengths: torch.Tensor | None = None
                ) -> torch.Tensor:
        x = features.transpose(1, 2)
        mask = None
        if lengths is not None:
            # Padded frames are zeroed before every dilated conv so that they look exactly like
            # the zero "same" padding at an utterance's edge: batched output equals one by one.
            mask = (torch.arange(x.shape[-1], device=x.device)[None] < lengths[:, None])
            mask = mask[:, None, :].to(x.dtype)
        x = self.conv_in(x)
        skip = 0
        for name in self.layer_names:
            if mask is not None:
                x = x * mask
            x, out = getattr(self, name)(x)
            skip = skip + out
        return self.conv2(self.conv1(skip)).transpose(1, 2)

    def matrices(self) -> dict[str, torch.Tensor]:
        """Every conv weight as an ``(out, in * kernel)`` view, under its graph name
        (``conv_in``, ``block_{b}_{d}.conv_filter|conv_gate|conv_out``, ``conv1``, ``conv2``):
        pruning a view prunes the model."""
        convs = {"conv_in": self.conv_in.conv}
        for name in self.layer_names:
            layer: ResidualLayer = getattr(self, name)
            for part in ("conv_filter", "conv_gate", "conv_out"):
                convs[f"{name}.{part}"] = getattr(layer, part).conv
        convs["conv1"] = self.conv1.conv
        convs["conv2"] = self.conv2
        return {k: c.weight.view(c.weight.shape[0], -1) for k, c in convs.items()}

    def export(self) -> InferenceGraph:
        ops: list = [self.conv_in.export("conv_in")]
        for name in self.layer_names:
            layer: ResidualLayer = getattr(self, name)
            ops.append(GatedResidualOp(name, layer.conv_filter.export(f"{name}.conv_filter"),
                                       layer.conv_gate.export(f"{name}.conv_gate"),
                                       layer.conv_out.export(f"{name}.conv_out")))
        ops.append(SkipSumOp())
        ops.append(self.conv1.export("conv1"))
        conv2 = Conv1dOp("conv2", self.conv2.weight.detach().clone(),
                         self.conv2.bias.detach().clone())
        ops.append(conv2)
        return InferenceGraph(self.model_type, self.input_dim, self.vocab_size, ops)
