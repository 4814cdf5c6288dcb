"""The sparse low-bit model: one file that ``asr-decode``, ``asr-eval`` and ``hw`` all read.

:func:`build_artifact` takes a (fine-tuned, masked) float model, exports its inference graph
(batch norm folded, ESE's gate matrices), and quantizes every weight matrix and bias by the
compression config; pruned matrices are also encoded in the configured sparse storage (ESE's CSC
or BBS's CSB). Activation ranges from calibration utterances give every signal a DFP format.

The file (``torch.save`` of plain dicts and tensors, readable with ``weights_only=True``) holds:

- ``graph``: the inference graph with *dequantized* weights and biases: exactly what the
  quantized model computes, run in PyTorch by :class:`GraphModel`;
- ``matrices``: per weight matrix its integer codes, number format (fractional lengths per
  partition, or the codebook), mask, density, layer type and sparse storage;
- ``biases``: integer codes and formats;
- ``activations``: calibrated ranges and the DFP fractional length of every signal;
- ``model_config``, ``features``, ``vocab_tokens``, ``compress`` (the resolved recipe) and
  ``source`` (the checkpoint it came from).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from asr.atomic import replacing
from asr.compress.config import CompressConfig, layer_type
from asr.compress.quantize import (
    FixedPointFormat,
    QuantizedTensor,
    frac_for_range,
    quantize_matrix,
)
from asr.compress.sparse_formats import CSBMatrix, CSCMatrix, encode_csb, encode_csc
from asr.features.config import FeatureConfig
from asr.models.acoustic import AcousticModel, GraphModel
from asr.models.graph import (
    InferenceGraph,
    graph_from_dict,
    graph_parameters,
    graph_to_dict,
    run_graph,
)
from asr.text.vocab import CharVocab

ARTIFACT_FORMAT = "asr-fpga/sparse-low-bit-model"
ARTIFACT_VERSION = 1


class ArtifactError(ValueError):
    """A file that is not a readable compressed model; the message names it."""


def _storage(name: str, q: QuantizedTensor, mask: torch.Tensor | None,
             cfg: CompressConfig) -> dict[str, Any]:
    """The sparse storage of one matrix (``dense`` when it was not pruned)."""
    codes = q.codes.reshape(q.codes.shape[0], -1)
    fill = -1 if q.kind == "codebook" else 0
    if mask is None or cfg.storage.format == "dense":
        return {"format": "dense"}
    mask2 = mask.reshape(codes.shape)
    if cfg.storage.format == "csb":
        csb = encode_csb(codes, mask2, cfg.prune.bank_size, name, fill)
        return {"format": "csb", **asdict(csb)}
    csc = encode_csc(codes, cfg.prune.num_pes, cfg.storage.index_bits, mask2, fill)
    return {"format": "csc", **asdict(csc)}


def storage_object(entry: dict[str, Any]) -> CSCMatrix | CSBMatrix | None:
    """The :class:`CSCMatrix`/:class:`CSBMatrix` of a stored matrix entry (None if dense)."""
    s = dict(entry["storage"])
    kind = s.pop("format")
    if kind == "csc":
        return CSCMatrix(**s)
    if kind == "csb":
        return CSBMatrix(**s)
    return None


def calibrate(graph: InferenceGraph, features: list[torch.Tensor]) -> dict[str, float]:
    """Largest magnitude of every signal over the calibration utterances."""
    ranges: dict[str, float] = {}
    for f in features:
        run_graph(graph, f, ranges=ranges)
    return ranges


def build_artifact(model: nn.Module, masks: dict[str, torch.Tensor], densities: dict[str, float],
                   cfg: CompressConfig, calibration: list[torch.Tensor] | None = None
                   ) -> dict[str, Any]:
    """Quantize and encode ``model`` (already pruned by ``masks``) into the artifact's dict
    (without the model/feature/vocabulary metadata, which :func:`save_artifact` adds)."""
    graph = model.export()
    q = cfg.quant
    matrices: dict[str, Any] = {}
    biases: dict[str, Any] = {}
    for key, kind, op, attr in graph_parameters(graph):
        tensor = getattr(op, attr)
        if kind == "weight":
            mask = masks.get(key)
            mask = None if mask is None else mask.reshape(tensor.shape).bool()
            qt = quantize_matrix(tensor, q.weights, mask, cfg.prune.num_pes,
                                 cfg.prune.bank_size)
            if mask is not None:
                tensor = tensor * mask
            entry: dict[str, Any] = {
                "shape": list(tensor.shape), "layer_type": layer_type(key, graph.model_type),
                "target_density": densities.get(key, 1.0), "mask": mask,
                "nnz": int((tensor != 0).sum()) if mask is None else int(mask.sum()),
            }
            if qt is None:
                entry.update(quant=None, storage={"format": "dense"})
            else:
                entry.update(quant=qt.to_dict(), storage=_storage(key, qt, mask, cfg))
                tensor = qt.dequantize()
            matrices[key] = entry
        else:
            if q.biases.kind == "fixed":
                qt = quantize_matrix(tensor.reshape(-1, 1), q.biases)
                biases[key] = qt.to_dict()
                tensor = qt.dequantize().reshape(tensor.shape)
        setattr(op, attr, tensor.to(torch.float64))
    activations: dict[str, Any] = {}
    if calibration:
        ranges = calibrate(graph, calibration)
        a = q.activations
        for name, max_abs in ranges.items():
            frac = int(frac_for_range(torch.tensor([max_abs]), a.bits)[0])
            activations[name] = {"max_abs": max_abs, "bits": a.bits, "frac": frac}
    return {"graph": graph_to_dict(graph), "matrices": matrices, "biases": biases,
            "activations": activations}


def save_artifact(path: str | Path, body: dict[str, Any], *, model_config: dict,
                  features: dict, vocab_tokens: list[str], compress: dict, source: str,
                  metrics: dict | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as tmp:  # atomic: a kill while writing leaves the previous file
        torch.save({"format": ARTIFACT_FORMAT, "version": ARTIFACT_VERSION, **body,
                    "model_config": model_config, "features": features,
                    "vocab_tokens": vocab_tokens, "compress": compress, "source": source,
                    "metrics": metrics or {}}, tmp)
    return path


def read_artifact(path: str | Path) -> dict[str, Any]:
    """The artifact's dict; :class:`ArtifactError` naming the file when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: no such compressed model")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many kinds for a damaged or foreign file
        raise ArtifactError(f"{path}: not a compressed model ({err})") from None
    if not isinstance(data, dict) or data.get("format") != ARTIFACT_FORMAT:
        raise ArtifactError(f"{path}: not a compressed model written by asr-compress")
    if data.get("version") != ARTIFACT_VERSION:
        raise ArtifactError(f"{path}: artifact version {data.get('version')}; this asr-fpga "
                            f"reads version {ARTIFACT_VERSION}")
    return data


def quantized_tensor(entry: dict[str, Any]) -> QuantizedTensor:
    return QuantizedTensor(**entry)


def activation_format(artifact: dict[str, Any], signal: str) -> FixedPointFormat:
    a = artifact["activations"][signal]
    return FixedPointFormat(a["bits"], a["frac"])


def load_graph(artifact: dict[str, Any]) -> InferenceGraph:
    return graph_from_dict(artifact["graph"])


def load_compressed(path: str | Path) -> AcousticModel:
    """An :class:`~asr.models.acoustic.AcousticModel` running the artifact's quantized graph,
    for ``asr-decode`` and ``asr-eval``."""
    return compressed_acoustic_model(read_artifact(path), str(path))


def compressed_acoustic_model(data: dict[str, Any], path: str = "<memory>") -> AcousticModel:
    """The :class:`~asr.models.acoustic.AcousticModel` of an artifact's dict."""
    model = GraphModel(load_graph(data)).eval()
    return AcousticModel(model, CharVocab(data["vocab_tokens"]),
                         FeatureConfig(**data["features"]), dict(data["model_config"]),
                         str(path))
