"""``asr-hw export``: what an HLS or RTL design of the engine is checked against.

Writes one folder, which replaces the previous export whole (``asr.atomic.replacing_dir``):

- ``weights/<matrix>.pe<P>.hex``: PE ``P``'s weight memory, one stored entry per line as an
  ``entry_bits``-wide hex word, value in the high bits and the index in the low bits (CSC:
  relative row index; CSB: position in the bank; dense: no index), in the order the PE reads
  them; ``weights/<matrix>.pe<P>.ptr.hex`` the CSC column pointers (entries before each
  column). Words are two's complement within their width, for ``$readmemh``.
- ``tables/sigmoid.hex``, ``tables/tanh.hex``: the activation-unit ROMs.
- ``golden/<layer>.hex``: the engine's integer output of each layer for the first frames of an
  utterance (``golden/input.hex`` its input), one frame per line.
- ``manifest.json``: the engine config, each file's width and meaning, every signal's format.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch

from asr import atomic
from asr.compress.artifact import Artifact
from asr.compress.sparse_formats import CSBMatrix, CSCMatrix
from hw.config import EngineConfig
from hw.functional import run_engine
from hw.integer_model import EngineModel, IntMatrix, compile_model


def hex_words(values: list[int], bits: int) -> list[str]:
    """Two's-complement hex words of ``bits`` width."""
    digits = (bits + 3) // 4
    mask = (1 << bits) - 1
    return [format(v & mask, f"0{digits}x") for v in values]


def pe_memories(mat: IntMatrix, cfg: EngineConfig) -> dict[int, tuple[list[int], list[int]]]:
    """Per PE: (entry words, column pointers) of one matrix in the engine's layout."""
    vb, s = mat.value_bits, mat.storage
    vmask = (1 << vb) - 1
    out: dict[int, tuple[list[int], list[int]]] = {}
    if isinstance(s, CSCMatrix):
        counts = s.col_counts.tolist()
        values, rel = s.values.tolist(), s.rel_index.tolist()
        pos = 0
        for pe in range(s.num_pes):
            n = sum(counts[pe])
            words = [((v & vmask) << s.index_bits) | r
                     for v, r in zip(values[pos:pos + n], rel[pos:pos + n])]
            pointers = [0]
            for c in counts[pe]:
                pointers.append(pointers[-1] + c)
            out[pe] = (words, pointers)
            pos += n
    elif isinstance(s, CSBMatrix):
        ib = s.index_bits
        vals, poss = s.values.tolist(), s.positions.tolist()
        for row in range(s.shape[0]):
            pe = row % cfg.num_pes
            words = [((v & vmask) << ib) | p for bank_v, bank_p in zip(vals[row], poss[row])
                     for v, p in zip(bank_v, bank_p)]
            out.setdefault(pe, ([], []))[0].extend(words)
    else:
        for row, line in enumerate(mat.codes.tolist()):
            out.setdefault(row % cfg.num_pes, ([], []))[0].extend(v & vmask for v in line)
    return out


def export_engine(artifact: Artifact, cfg: EngineConfig, out_dir: Path,
                  features: torch.Tensor | None = None, frames: int = 3) -> list[Path]:
    """Write ``artifact``'s memory images for ``cfg`` (and, with ``features``, the golden
    outputs of their first ``frames`` frames) to ``out_dir``, which they replace whole: a
    killed export leaves the previous images as they were. Returns the files written."""
    model = compile_model(artifact, cfg)
    with atomic.replacing_dir(out_dir, "manifest.json") as tmp:
        rels = _write_images(model, cfg, tmp, features, frames)
    return [out_dir / rel for rel in rels]


def _write_images(model: EngineModel, cfg: EngineConfig, out_dir: Path,
                  features: torch.Tensor | None, frames: int) -> list[str]:
    written: list[str] = []
    files: dict[str, dict] = {}

    def write(rel: str, lines: list[str], meaning: dict) -> None:
        path = out_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")
        written.append(rel)
        files[rel] = meaning

    for name, mat in model.matrices.items():
        bits = mat.entry_bits
        for pe, (words, pointers) in pe_memories(mat, cfg).items():
            write(f"weights/{name}.pe{pe}.hex", hex_words(words, bits),
                  {"matrix": name, "pe": pe, "word_bits": bits, "value_bits": mat.value_bits,
                   "index_bits": mat.entry_bits - mat.value_bits, "entries": len(words)})
            if pointers:
                pbits = max(1, max(pointers).bit_length())
                write(f"weights/{name}.pe{pe}.ptr.hex", hex_words(pointers, pbits),
                      {"matrix": name, "pe": pe, "word_bits": pbits,
                       "meaning": "entries before each column"})
    for fn, unit in model.units.items():
        write(f"tables/{fn}.hex", hex_words(unit.table.tolist(), unit.bits),
              {"function": fn, "kind": unit.kind, "word_bits": unit.bits,
               "input_frac": unit.in_frac, "output_frac": unit.out_frac})
    if features is not None:
        # The whole utterance runs (non-causal convs see future frames); the input file holds
        # every frame, the other layers their first ``frames``.
        run = run_engine(model, features, trace=True)
        for layer, (codes, frac) in run.trace.items():
            keep = codes.shape[0] if layer == "input" else min(frames, codes.shape[0])
            rows = codes[:keep].reshape(keep, -1).tolist()
            write(f"golden/{layer}.hex", [" ".join(hex_words(r, cfg.activation_bits))
                                          for r in rows],
                  {"layer": layer, "word_bits": cfg.activation_bits, "frac": frac,
                   "frames": len(rows)})
    manifest = {"engine": asdict(cfg), "files": files,
                "biases": {k: {"codes": c.tolist(), "frac": f.tolist()}
                           for k, (c, f) in model.biases.items()},
                "weight_frac": {k: m.frac.tolist() for k, m in model.matrices.items()},
                "notes": model.notes}
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1))
    written.append("manifest.json")
    return written
