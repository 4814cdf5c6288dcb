"""The ESE-shaped layer the timing model is validated on (tests and ``benchmarks/``).

ESE's results table (Han et al., FPGA 2017; ``reference/anchors.md``) times one layer of an
LSTM with 153 inputs, 1024 cells and a 512 projection, pruned load-balance-aware to the
densities below. :func:`ese_shaped_artifact` builds that layer with random weights (PyTorch's
uniform LSTM initialization), compressed by a ``conf/compress`` preset (ESE's per-matrix
densities for ``ese``).

ESE's byte column is 2 bytes per kept weight (W_ix: 36608 B = 18304 entries, 11.7% of
156,672 weights), so its stored matrices held no padding entries, although 4-bit relative
indices over 32 local rows would pad about 7% of the entries of a random pattern. Load-balanced
patterns are therefore pruned padding-free by default (``max_zero_run = 2**index_bits - 1``).
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from asr.compress.artifact import Artifact, build_artifact
from asr.compress.config import CompressConfig, validate_against_model
from asr.compress.pruning import prune_model
from asr.models import LSTMCTC

# matrix: (density %, compute time us, total time us), one time step
ESE_TABLE = {"W_ix": (11.7, 2.9, 5.36), "W_fx": (11.7, 2.9, 5.36), "W_cx": (11.8, 2.9, 5.36),
             "W_ox": (11.5, 2.8, 5.36), "W_ir": (11.3, 9.3, 10.31), "W_fr": (11.5, 9.4, 10.01),
             "W_cr": (11.2, 9.2, 9.89), "W_or": (11.5, 9.4, 10.04), "W_ym": (10.0, 8.2, 15.66)}
ESE_TOTAL_US = 82.7
ESE_GOPS = 282.2
BBS_GOPS = 304.1
# The LSTM layer's products and element-wise stage (ESE's table leaves the output layer out).
LSTM_LAYER = {f"layers.0.{k}" for k in ESE_TABLE} | {"layers.0.elementwise"}


def ese_shaped_artifact(cfg: CompressConfig, seed: int = 0, padding_free: bool = True,
                        calibration: list[torch.Tensor] | None = None) -> Artifact:
    """The layer compressed by ``cfg``. BBS's banks of 16 need a row length they divide, so
    bank-balanced presets get the 153 inputs zero-padded to 160. ``padding_free=False`` keeps
    the plain load-balanced pattern, padding entries and all. ``calibration``: feature sequences
    whose signal ranges the artifact records (the RTL needs them). ``cfg`` itself is left as
    given."""
    cfg = copy.deepcopy(cfg)  # ESE's per-matrix densities are this layer's, not the caller's preset
    inputs = 160 if cfg.prune.method == "bank_balanced" else 153
    torch.manual_seed(seed)
    model = LSTMCTC(inputs, 32, hidden_size=1024, proj_size=512, num_layers=1)
    if cfg.prune.method == "load_balanced":
        for k, (density, _, _) in ESE_TABLE.items():
            cfg.prune.targets.setdefault(f"layers.0.{k}", density / 100)
        if padding_free and cfg.storage.format == "csc" and not cfg.prune.max_zero_run:
            cfg.prune.max_zero_run = 2 ** cfg.storage.index_bits - 1
    views = model.matrices()
    densities = validate_against_model(cfg, views, "lstm")
    return build_artifact(model, prune_model(views, densities, cfg.prune), densities, cfg,
                          calibration)


# -- Spartus (Gao et al., IEEE TNNLS 2022): a delta LSTM layer -------------------------------
#
# From the paper's abstract (reference/anchors.md): about 1 us per step for a 1024-unit LSTM
# layer, 9.4 TOp/s effective at batch 1, 94% (LibriSpeech) / 96% (TIMIT) CBTD weight sparsity.
# Assumed here: 123 inputs (TIMIT's filterbank features; it is also what the headline implies:
# 9.4 TOp/s x 1 us = 9.4 MOp = 2 x 4096 x (123 + 1024)), no projection, and the temporal
# sparsity, which the abstract does not give: it is swept.
SPARTUS_US_PER_STEP = 1.0
SPARTUS_TOPS = 9.4
SPARTUS_GAMMA = 0.94
SPARTUS_INPUTS = 123
SPARTUS_HIDDEN = 1024
SPARTUS_LAYER = {f"layers.0.W_{g}{s}" for g in "ifco" for s in "xr"} | {
    "layers.0.elementwise", "layers.0.deltas"}


def cbtd_mask(weight: torch.Tensor, num_pes: int, gamma: float) -> torch.Tensor:
    """The end state of column-balanced targeted dropout: rows interleaved over ``num_pes``
    PEs (row ``r`` on PE ``r % num_pes``); in every column of every PE's share the
    ``max(1, round(local_rows * (1 - gamma)))`` largest-magnitude weights are kept."""
    rows, cols = weight.shape
    local = rows // num_pes
    keep = max(1, round(local * (1 - gamma)))
    w = weight.abs().reshape(local, num_pes, cols)     # [local row, PE, column]
    top = w.topk(keep, dim=0).indices
    mask = torch.zeros_like(w, dtype=torch.bool).scatter_(0, top, True)
    return mask.reshape(rows, cols)


def as_delta_artifact(artifact: Artifact, theta_x: float, theta_h: float) -> Artifact:
    """``artifact`` with every LSTM layer run as a delta LSTM with these thresholds (the
    weights unchanged): a delta layer of a given weight pattern, for timing and tests."""
    for op in artifact.structure["ops"]:
        if op["op"] in ("LSTMOp", "DeltaLSTMOp"):
            op.update(op="DeltaLSTMOp", theta_x=float(theta_x), theta_h=float(theta_h))
    artifact.graph_cache = None
    return artifact


def spartus_layer_artifact(num_pes: int = 64, gamma: float = SPARTUS_GAMMA,
                           inputs: int = SPARTUS_INPUTS, hidden: int = SPARTUS_HIDDEN,
                           seed: int = 0) -> Artifact:
    """One delta LSTM layer (no projection) with random weights (PyTorch's LSTM init),
    CBTD-pruned over ``num_pes`` PEs to ``gamma``, 8-bit fixed-point weights stored as CSC
    over the same PEs."""
    from asr.compress.config import compress_preset

    cfg = compress_preset("ese", f"compress.prune.num_pes={num_pes}",
                          "compress.quant.weights.bits=8")
    torch.manual_seed(seed)
    model = LSTMCTC(inputs, 32, hidden_size=hidden, proj_size=0, num_layers=1)
    views = model.matrices()
    masks = {k: cbtd_mask(v.detach(), num_pes, gamma) for k, v in views.items()
             if k.startswith("layers.")}
    densities = {k: float(m.float().mean()) for k, m in masks.items()}
    return as_delta_artifact(build_artifact(model, masks, densities, cfg), 0.1, 0.1)


def delta_activity(inputs: int, outputs: int, frames: int, sparsity: float, seed: int = 0,
                   layer: str = "layers.0") -> dict[str, np.ndarray]:
    """Non-zero delta masks with a fraction ``sparsity`` of zeros (exactly, per frame: the
    zero positions drawn at random), as :func:`hw.engine.activity` gives them."""
    rng = np.random.default_rng(seed)

    def masks(n: int) -> np.ndarray:
        on = np.zeros((frames, n), dtype=bool)
        k = n - round(n * sparsity)
        for f in range(frames):
            on[f, rng.choice(n, k, replace=False)] = True
        return on

    return {f"{layer}.dx": masks(inputs), f"{layer}.dh": masks(outputs)}
