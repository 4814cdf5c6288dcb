"""Sparse storage of a quantized matrix, as the engines hold it in their weight memories.

* :class:`CSCMatrix` (ESE, EIE, Deep Compression): rows interleaved over ``num_pes`` PEs (row
  ``r`` to PE ``r % num_pes``, local row ``r // num_pes``); each PE stores its sub-matrix
  column by column as entries (value, relative index), the relative index being the number of
  zero rows skipped since the previous entry of the column. A gap longer than
  ``2**index_bits - 1`` inserts a padding entry (value 0, index ``2**index_bits - 1``).
* :class:`CSBMatrix` (BBS's compressed sparse banks): every bank of ``bank_size`` consecutive
  weights of a row holds the same ``k`` non-zeros, stored as (value, position in the bank); no
  pointers and no padding, since every bank has ``k`` entries.

Both encode integer codes (``QuantizedTensor.codes``) and decode back to the dense codes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from asr.config_errors import ConfigError, check


@dataclass
class CSCMatrix:
    shape: tuple[int, int]
    num_pes: int
    index_bits: int
    values: torch.Tensor       # (entries,) int64 codes, PE-major then column-major
    rel_index: torch.Tensor    # (entries,) zeros skipped before each entry
    col_counts: torch.Tensor   # (num_pes, cols) entries per PE column (padding included)
    padding: int               # padding entries among ``values``
    fill: int = 0              # the code of a weight that is not stored (and of padding)

    @property
    def entries(self) -> int:
        return int(self.values.numel())

    def pe_entries(self) -> torch.Tensor:
        """Entries per PE (padding included): the work each PE does for one product."""
        return self.col_counts.sum(dim=1)

    @property
    def pointer_bits(self) -> int:
        """Width of one column pointer: enough for the largest PE's entry count."""
        return max(1, math.ceil(math.log2(int(self.pe_entries().max()) + 1)))

    def entry_positions(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Each stored entry's (row, column), padding included: its PE's rows are counted
        from -1 at each column, ``rel_index + 1`` apart; local row ``r`` of PE ``p`` is row
        ``r * num_pes + p``."""
        cols = self.shape[1]
        group = torch.arange(self.col_counts.numel()).repeat_interleave(
            self.col_counts.flatten())                          # (pe * cols + col) per entry
        step = self.rel_index + 1
        run = torch.cumsum(step, 0)
        starts = torch.cumsum(self.col_counts.flatten(), 0) - self.col_counts.flatten()
        base = torch.cat([run.new_zeros(1), run])[starts][group] if len(step) else run
        local_row = run - base - 1
        pe, col = group // cols, group % cols
        return local_row * self.num_pes + pe, col

    def to_dense(self) -> torch.Tensor:
        row, col = self.entry_positions()
        dense = torch.full(self.shape, self.fill, dtype=torch.int64)
        dense[row, col] = self.values  # padding lands on a zero
        return dense


def encode_csc(codes: torch.Tensor, num_pes: int = 1, index_bits: int = 4,
               mask: torch.Tensor | None = None, fill: int = 0) -> CSCMatrix:
    """ESE's CSC of a 2-D code matrix: the entries of ``mask`` (default: codes other than
    ``fill``) are stored; padding entries hold ``fill``."""
    rows, cols = codes.shape
    check(num_pes >= 1 and rows % num_pes == 0, "num_pes",
          f"a divisor of the row count {rows}", num_pes)
    check(index_bits >= 1, "index_bits", ">= 1", index_bits)
    local = rows // num_pes
    keep = codes != fill if mask is None else mask.bool()
    by_pe = codes.reshape(local, num_pes, cols).permute(1, 2, 0)   # (pe, col, local row)
    pe, col, row = torch.nonzero(keep.reshape(local, num_pes, cols).permute(1, 2, 0),
                                 as_tuple=True)                     # sorted pe, col, row
    new_group = torch.ones_like(row, dtype=torch.bool)
    new_group[1:] = (pe[1:] != pe[:-1]) | (col[1:] != col[:-1])
    prev = torch.where(new_group, torch.full_like(row, -1), torch.roll(row, 1))
    gap = row - prev - 1
    span = 1 << index_bits
    pads = gap // span
    per_nz = pads + 1
    total = int(per_nz.sum())
    real_at = torch.cumsum(per_nz, 0) - 1
    values = torch.full((total,), fill, dtype=torch.int64)
    values[real_at] = by_pe[pe, col, row].to(torch.int64)
    rel = torch.full((total,), span - 1, dtype=torch.int64)
    rel[real_at] = gap - pads * span
    counts = torch.zeros(num_pes * cols, dtype=torch.int64).index_add_(0, pe * cols + col,
                                                                       per_nz)
    return CSCMatrix((rows, cols), num_pes, index_bits, values, rel,
                     counts.view(num_pes, cols), int(pads.sum()), fill)


@dataclass
class CSBMatrix:
    shape: tuple[int, int]
    bank_size: int
    values: torch.Tensor      # (rows, banks, k) int64 codes
    positions: torch.Tensor   # (rows, banks, k) positions inside the bank, ascending
    fill: int = 0

    @property
    def index_bits(self) -> int:
        return max(1, math.ceil(math.log2(self.bank_size)))

    @property
    def entries(self) -> int:
        return int(self.values.numel())

    def to_dense(self) -> torch.Tensor:
        rows, cols = self.shape
        banks = torch.full((rows, cols // self.bank_size, self.bank_size), self.fill,
                           dtype=torch.int64)
        banks.scatter_(2, self.positions, self.values)
        return banks.view(rows, cols)


def encode_csb(codes: torch.Tensor, mask: torch.Tensor, bank_size: int,
               name: str = "matrix", fill: int = 0) -> CSBMatrix:
    """BBS's CSB of a bank-balanced matrix; ``mask`` says which weights are kept (a kept weight
    may have code 0). Raises :class:`ConfigError` unless every bank keeps the same count."""
    rows, cols = codes.shape
    check(cols % bank_size == 0, "bank_size", f"a divisor of the row length {cols}", bank_size)
    banks = mask.bool().view(rows, cols // bank_size, bank_size)
    per_bank = banks.sum(dim=2)
    k = int(per_bank.flatten()[0]) if per_bank.numel() else 0
    if not bool((per_bank == k).all()):
        raise ConfigError(f"{name}: not bank-balanced (banks keep {int(per_bank.min())} to "
                          f"{int(per_bank.max())} weights); CSB needs bank_balanced pruning")
    positions = torch.sort(banks.to(torch.int8), dim=2, descending=True,
                           stable=True).indices[..., :k]
    positions = torch.sort(positions, dim=2).values
    values = torch.gather(codes.view(rows, cols // bank_size, bank_size), 2, positions)
    return CSBMatrix((rows, cols), bank_size, values.to(torch.int64), positions, fill)
