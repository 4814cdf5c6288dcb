"""Storage accounting of a compressed model, per matrix as in Deep Compression's and ESE's
tables: shape, non-zeros, density, value and index bits, padding entries, pointers, codebook,
plain and Huffman-coded bytes, and the compression ratio against float32.

Bits of one matrix (``entries`` = stored entries, padding included; ESE's table counts the
first term only, reported as ``entry_bytes``)::

    plain   = entries * (value_bits + index_bits) + pointer_bits + codebook_bits
    huffman = H(values) + H(indices) + pointer_bits + codebook_bits

where ``H`` is the Huffman-coded size of the stream (:func:`asr.compress.huffman.huffman_bits`).
CSC pointers are one per PE column (``num_pes * (cols + 1)``, each as wide as the largest PE's
entry count needs); CSB needs none (every bank holds the same count). Biases and the per-
partition fractional lengths are not counted (Deep Compression counts weights only); the
artifact file holds them too, and its size on disk comes next to the table (:func:`file_line`).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

import torch

from asr.compress.artifact import Artifact, MatrixEntry
from asr.compress.huffman import huffman_bits
from asr.compress.sparse_formats import CSBMatrix, CSCMatrix
from asr.tables import markdown_table


@dataclass
class MatrixStorage:
    name: str
    shape: str
    params: int
    nnz: int
    density: float
    format: str
    value_bits: int
    index_bits: int
    entries: int
    padding: int
    pointer_bits: int
    codebook_bits: int
    entry_bytes: int      # values and indices only: ESE's "bytes" column
    bytes: int
    huffman_bytes: int

    @property
    def ratio(self) -> float:
        return 4 * self.params / max(1, self.bytes)

    @property
    def huffman_ratio(self) -> float:
        return 4 * self.params / max(1, self.huffman_bytes)


def matrix_storage(name: str, entry: MatrixEntry) -> MatrixStorage:
    shape = entry.shape
    params = math.prod(shape)
    quant = entry.quant
    value_bits = 32 if quant is None else int(quant.bits)
    codebook_bits = 0
    if quant is not None and quant.kind == "codebook":
        codebook_bits = quant.codebook.numel() * 32
    store = entry.storage_object()
    pointer_bits = padding = index_bits = 0
    if isinstance(store, CSCMatrix):
        values, indices = store.values, store.rel_index
        index_bits, padding = store.index_bits, store.padding
        cols = store.col_counts.shape[1]
        pointer_bits = store.num_pes * (cols + 1) * store.pointer_bits
    elif isinstance(store, CSBMatrix):
        values, indices = store.values.flatten(), store.positions.flatten()
        index_bits = store.index_bits
    else:  # dense: every weight stored, no index
        values = None if quant is None else entry.codes.flatten()
        indices = torch.zeros(0, dtype=torch.int64)
    entries = params if values is None else int(values.numel())
    plain = entries * (value_bits + index_bits) + pointer_bits + codebook_bits
    if quant is None:  # float values: Huffman coding does not apply
        huff = plain
    else:
        huff = huffman_bits(values) + (huffman_bits(indices) if indices.numel() else 0) \
            + pointer_bits + codebook_bits
    return MatrixStorage(name, "x".join(map(str, shape)), params, entry.nnz,
                         entry.nnz / params, entry.storage_format,
                         value_bits, index_bits, entries, padding, pointer_bits, codebook_bits,
                         math.ceil(entries * (value_bits + index_bits) / 8),
                         math.ceil(plain / 8), math.ceil(huff / 8))


def storage_table(artifact: Artifact) -> list[MatrixStorage]:
    return [matrix_storage(name, entry) for name, entry in artifact.matrices.items()]


def totals(rows: list[MatrixStorage]) -> dict[str, float]:
    params = sum(r.params for r in rows)
    plain = sum(r.bytes for r in rows)
    huff = sum(r.huffman_bytes for r in rows)
    entry = sum(r.entry_bytes for r in rows)
    nnz = sum(r.nnz for r in rows)
    return {"params": params, "nnz": nnz, "density": nnz / max(1, params),
            "float32_bytes": 4 * params, "entry_bytes": entry, "bytes": plain,
            "huffman_bytes": huff, "entry_ratio": 4 * params / max(1, entry),
            "ratio": 4 * params / max(1, plain), "huffman_ratio": 4 * params / max(1, huff)}


def file_line(rows: list[MatrixStorage], file_bytes: int) -> str:
    """The artifact's size on disk against the accounted bytes (the file also holds the
    biases, fractional lengths, graph structure and metadata the table does not count)."""
    plain = totals(rows)["bytes"]
    return (f"file: {file_bytes} bytes on disk, {file_bytes / max(1, plain):.2f}x the "
            f"{plain} accounted bytes")


def table_markdown(rows: list[MatrixStorage], file_bytes: int | None = None) -> str:
    header = ("matrix", "shape", "non-zeros", "density %", "format", "value bits", "index bits",
              "padding", "pointer bits", "codebook bits", "value+index bytes", "bytes",
              "Huffman bytes", "ratio")
    cells = [(r.name, r.shape, r.nnz, f"{100 * r.density:.1f}", r.format, r.value_bits,
              r.index_bits, r.padding, r.pointer_bits, r.codebook_bits, r.entry_bytes, r.bytes,
              r.huffman_bytes, f"{r.ratio:.1f}x") for r in rows]
    t = totals(rows)
    cells.append(("**total**", f"{t['params']} weights", t["nnz"], f"{100 * t['density']:.1f}",
                  "", "", "", "", "", "", f"{t['entry_bytes']} ({t['entry_ratio']:.1f}x)",
                  t["bytes"], t["huffman_bytes"],
                  f"{t['ratio']:.1f}x ({t['huffman_ratio']:.1f}x Huffman)"))
    text = markdown_table(header, cells) + "\n"
    return text if file_bytes is None else f"{text}\n{file_line(rows, file_bytes)}\n"


def table_json(rows: list[MatrixStorage], file_bytes: int | None = None) -> str:
    total = totals(rows)
    if file_bytes is not None:
        total = {**total, "file_bytes": file_bytes}
    return json.dumps({"matrices": [{**asdict(r), "ratio": r.ratio,
                                     "huffman_ratio": r.huffman_ratio} for r in rows],
                       "total": total}, indent=2)
