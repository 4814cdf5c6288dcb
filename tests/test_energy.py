"""The energy report: dynamic and static energy apart, static power charged per channel, and
numbers (not strings) in the report's JSON."""

from __future__ import annotations

from dataclasses import replace

import pytest
from test_hw import make_artifact, small_lstm

from hw.config import load_engine
from hw.energy import energy_summary, frame_energy
from hw.engine import summarize_costs
from hw.integer_model import compile_model
from hw.report.document import _channels_note, summary_table
from hw.report.point import ROW_FIELDS
from hw.timing import TIMING_COLUMNS, frame_timing, timing_records, timing_table_rows


@pytest.fixture(scope="module")
def frame_and_cfg():
    cfg = load_engine("ese", ["num_pes=8"])
    model = compile_model(make_artifact(small_lstm(), "ese", "compress.prune.num_pes=8"), cfg)
    return frame_timing(model), cfg


def test_static_power_is_shared_by_the_channels(frame_and_cfg):
    frame, cfg = frame_and_cfg
    one = frame_energy(frame, replace(cfg, channels=1))
    many = frame_energy(frame, replace(cfg, channels=32))
    assert many.dynamic_pj == pytest.approx(one.dynamic_pj)
    assert many.static_pj == pytest.approx(one.static_pj / 32)
    # one channel's static energy per frame is static_w / channels over the frame's latency
    assert many.static_pj == pytest.approx(cfg.energy.static_w / 32 * frame.latency_us * 1e6)


def test_summary_splits_power_into_dynamic_and_static(frame_and_cfg):
    frame, cfg = frame_and_cfg
    energy = frame_energy(frame, cfg)
    cost = {**energy_summary(frame, energy, 100, 1.0), "latency_s": 100 * frame.latency_us
            * 1e-6, "frames": 100, "gops": frame.gops(), "saturations": 3,
            "accumulator_overflows": 1}
    assert cost["dynamic_uj"] + cost["static_uj"] == pytest.approx(cost["utterance_uj"])
    s = summarize_costs([cost, cost], 2.0, cfg)
    assert s["dynamic_power_w"] + s["static_power_w"] == pytest.approx(s["power_w"])
    assert s["static_power_w"] == pytest.approx(cfg.energy.static_w / cfg.channels)
    assert s["channels"] == cfg.channels == 32
    assert (s["saturations"], s["accumulator_overflows"]) == (6, 2)


def test_timing_records_are_numbers_and_render_as_the_table(frame_and_cfg):
    frame, _ = frame_and_cfg
    recs = timing_records(frame)
    matrices = [r for r in recs if r["rows"] is not None]
    assert matrices and all(isinstance(r["total_us"], float) and isinstance(r["bytes"], int)
                            for r in matrices)
    assert recs[-1]["matrix"] == "total"
    assert recs[-1]["total_us"] == pytest.approx(frame.latency_us)
    rows = timing_table_rows(frame)
    assert all(len(row) == len(TIMING_COLUMNS) for row in rows)
    assert rows[0][1] == f"{matrices[0]['rows']}x{matrices[0]['cols']}"


def test_report_table_shows_dynamic_static_and_saturations():
    row = {k: None for k in ROW_FIELDS}
    row |= {"model": "m", "kind": "engine", "engine": "ese", "compress": "ese", "decoder": "g",
           "density": 0.11, "weight_bits": 12, "wer": 0.1, "cer": 0.05, "power_w": 0.33,
           "dynamic_power_w": 0.0123, "static_power_w": 0.3125, "saturations": 1234,
           "accumulator_overflows": 5678, "channels": 32}
    header, cells = summary_table([row])
    values = dict(zip(header, cells[0]))
    assert values["dynamic W"] == "0.012" and values["static W"] == "0.312"
    assert values["saturations"] == "1,234" and values["overflows"] == "5,678"
    assert "W" not in header
    assert _channels_note([row, {**row, "engine": "bbs", "channels": 1}]) == \
        "bbs 1 channel, ese 32 channels"


def test_the_report_opens_with_a_table_a_newcomer_reads_at_a_glance():
    from hw.report.document import build_blocks, glance_table

    def row(**kw):
        return {**{k: None for k in ROW_FIELDS}, "decoder": "greedy", **kw}

    rows = [row(model="lstm", kind="float", wer=0.1942, density=1.0, compression_ratio=1.0),
            row(model="lstm", kind="quantized", compress="bbs", wer=0.1897, density=0.13),
            row(model="lstm", kind="engine", engine="bbs", compress="bbs", wer=0.192,
                density=0.13, latency_per_frame_us=1.6, uj_per_audio_second=286.5,
                compression_ratio=12.4, channels=1),
            row(model="lstm", kind="engine", engine="bbs", compress="bbs", decoder="beam",
                wer=0.15, density=0.13, latency_per_frame_us=1.6, uj_per_audio_second=286.5,
                compression_ratio=12.4, channels=1)]
    header, cells = glance_table(rows)
    assert header[:4] == ["model", "engine", "float WER %", "engine WER %"]
    assert cells == [["lstm", "bbs (bbs)", "19.42", "19.20", "13.0", "1.60", "286.5", "12.4x"]]
    blocks = build_blocks([], rows, [], "t")
    headings = [b[1] for b in blocks if b[0] == "h2"]
    assert headings[:2] == ["At a glance", "Results"]
