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


def ese_shaped_artifact(cfg: CompressConfig, seed: int = 0, padding_free: bool = True
                        ) -> Artifact:
    """The layer compressed by ``cfg``. BBS's banks of 16 need a row length they divide, so
    bank-balanced presets get the 153 inputs zero-padded to 160. ``padding_free=False`` keeps
    the plain load-balanced pattern, padding entries and all. ``cfg`` itself is left as given."""
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
    return build_artifact(model, prune_model(views, densities, cfg.prune), densities, cfg)
