"""The energy model: counted operations and memory accesses times the preset's table.

Per frame, for every matrix product: one multiply (``weight_bits x activation_bits``) and one
accumulator add (``accumulator_bits``) and one accumulator register update per processed entry
(padding included: the multiplier fires on it), the stored entry read from SRAM (value and
index bits), weights that stream from DDR read from DRAM as well, one activation read per
broadcast column and one write per output row. The element-wise stage of an LSTM cell does
five activation-unit look-ups, three multiplies and two adds; a gated residual channel two
look-ups, one multiply and two adds; a delta unit, per input or output value, a subtraction
and a comparison against the threshold (two adds). A delta engine reads only the stored
entries of the columns it fetches (``read_bytes``) and those columns' deltas
(``columns_read``), each frame's figures averaged over the frames.

Static power (``energy.static_w``) is the whole chip's; a chip with ``channels`` replicated
engines serves that many utterances at once, so one channel is charged ``static_w / channels``
for the frame's latency. Dynamic and static energy are kept apart everywhere they are shown.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from hw.config import EngineConfig
from hw.timing import FrameTiming

# (look-ups, multiplies, adds) per cell of each element-wise stage
ELEMENTWISE_OPS = {"lstm": (5, 3, 2), "gated": (2, 1, 2), "delta": (0, 0, 2)}


@dataclass
class EnergyBreakdown:
    """pJ per frame by kind; ``static_pj`` is one channel's share of the chip's static power
    over the frame's latency."""

    mult_pj: float = 0.0
    add_pj: float = 0.0
    register_pj: float = 0.0
    sram_pj: float = 0.0
    dram_pj: float = 0.0
    lut_pj: float = 0.0
    static_pj: float = 0.0

    @property
    def dynamic_pj(self) -> float:
        return (self.mult_pj + self.add_pj + self.register_pj + self.sram_pj + self.dram_pj
                + self.lut_pj)

    @property
    def total_pj(self) -> float:
        return self.dynamic_pj + self.static_pj

    def as_dict(self) -> dict:
        return {**asdict(self), "dynamic_pj": self.dynamic_pj, "total_pj": self.total_pj}


def frame_energy(frame: FrameTiming, cfg: EngineConfig) -> EnergyBreakdown:
    """Energy of one frame."""
    e = cfg.energy
    out = EnergyBreakdown()
    ab, wb, acc = cfg.activation_bits, cfg.weight_bits, cfg.accumulator_bits
    for m in frame.matrices:
        out.mult_pj += m.macs * e.mult(wb, ab)
        out.add_pj += m.macs * e.add(acc)
        out.register_pj += m.macs * e.per_bit("register") * acc
        read = m.bytes if m.read_bytes is None else m.read_bytes
        columns = m.shape[1] if m.columns_read is None else m.columns_read
        out.sram_pj += read * 8 * e.per_bit("sram_read")
        out.sram_pj += (columns + m.shape[0]) * ab * e.per_bit("sram_read")
        if not m.on_chip:
            out.dram_pj += read * 8 * e.per_bit("dram_read")
    for stage in frame.elementwise:
        lookups, mults, adds = ELEMENTWISE_OPS[stage.kind]
        n = stage.cells
        out.lut_pj += n * lookups * ab * e.per_bit("lut_read")
        out.mult_pj += n * mults * e.mult(ab, ab)
        out.add_pj += n * adds * e.add(acc)
    out.static_pj = e.static_w / cfg.channels * frame.latency_us * 1e6   # W * us = 1e6 pJ
    return out


def energy_summary(frame: FrameTiming, energy: EnergyBreakdown, frames: int,
                   audio_seconds: float | None) -> dict:
    """Per frame, per utterance, per second of audio, average power and GOP/s per W."""
    latency_s = frames * frame.latency_us * 1e-6
    total_j = frames * energy.total_pj * 1e-12
    power_w = total_j / latency_s if latency_s else 0.0
    return {
        "frame_pj": energy.as_dict(),
        "utterance_uj": total_j * 1e6,
        "dynamic_uj": frames * energy.dynamic_pj * 1e-6,
        "static_uj": frames * energy.static_pj * 1e-6,
        "uj_per_audio_second": total_j * 1e6 / audio_seconds if audio_seconds else None,
        "average_power_w": power_w,
        "gops_per_w": frame.gops() / frame.channels / power_w if power_w else None,
    }
