"""The interfaces every acoustic model is used through, below training, decoding and compression.

- :class:`AcousticModel`: a runnable model with its vocabulary and front end; what the decoders,
  the recognizer, ``asr-eval`` and the engine pass around, whether it came from a training
  checkpoint, a compressed artifact or the engine itself.
- :class:`UtteranceModel`: a model that runs one utterance at a time (the artifact's quantized
  graph, the bit-accurate engine) behind the batched ``(batch, time, dim)`` interface.
- :class:`GraphModel`: an :class:`~asr.models.graph.InferenceGraph` run in float32.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from asr.features.config import FeatureConfig
from asr.models.graph import InferenceGraph, run_graph
from asr.text.vocab import CharVocab


@dataclass
class AcousticModel:
    """A trained model with everything needed to run it on audio."""

    model: nn.Module
    vocab: CharVocab
    features: FeatureConfig
    model_config: dict[str, Any]
    path: str
    # The training augmentation (AugmentConfig's fields) as asr-train recorded it; None when
    # the file does not say (asr-compress then fine-tunes with data.augment).
    train_augment: dict[str, Any] | None = None


class UtteranceModel(nn.Module):
    """An acoustic model that runs one utterance at a time (``(batch, time, input_dim)``
    features in, ``(batch, time, vocab)`` logits out, one frame out per frame in): subclasses
    say how one utterance's ``(time, input_dim)`` features become logits."""

    def __init__(self, graph: InferenceGraph):
        super().__init__()
        self.graph = graph
        self.model_type = graph.model_type

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return lengths

    def utterance_logits(self, features: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, features: torch.Tensor, lengths: torch.Tensor | None = None
                ) -> torch.Tensor:
        lengths = lengths if lengths is not None else torch.full(
            (features.shape[0],), features.shape[1])
        out = features.new_zeros(features.shape[0], features.shape[1], self.graph.vocab_size)
        for b, n in enumerate(lengths.tolist()):
            out[b, :n] = self.utterance_logits(features[b, :n]).to(out.dtype)
        return out


class GraphModel(UtteranceModel):
    """Runs an inference graph (an artifact's quantized graph) with float32 activations.

    :attr:`sparsity` accumulates the zero/total delta counts of a delta graph's layers over
    every utterance run (``layers.{k}.dx`` / ``.dh``; empty for other graphs)."""

    def __init__(self, graph: InferenceGraph):
        super().__init__(graph)
        self.sparsity: dict[str, list[int]] = {}

    def utterance_logits(self, features: torch.Tensor) -> torch.Tensor:
        return run_graph(self.graph, features, dtype=torch.float32, sparsity=self.sparsity)
