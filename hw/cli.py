"""``asr-hw``: run a compressed model on the modeled FPGA engine.

    asr-hw run ARTIFACT AUDIO... [--engine ese|bbs|eie_like|FILE.yaml] [--decoder greedy|beam]
               [--set KEY=VALUE ...] [--json]
    asr-hw trace ARTIFACT AUDIO [--engine ...] [--formats 1-7,0-8,2-6] [--plot out.png]
    asr-hw eval ARTIFACT MANIFEST [--engine ...] [--json]
    asr-hw timing ARTIFACT [--engine ...] [--audio FILE] [--json]
    asr-hw export ARTIFACT OUT_DIR [--engine ...] [--audio FILE] [--frames 3]
    asr-hw rtl ARTIFACT OUT_DIR [--engine ...]
    asr-hw cosim ARTIFACT AUDIO... [--engine ...] [--json] [--max-frames N]
    asr-hw synth ARTIFACT [--engine ...] [--device ecp5-85k|xcku060|...] [--json]
    asr-hw synth --sources FILE.sv... [--top NAME] [--param KEY=INT ...] [--device ...]
    asr-hw report [-m] KEY=VALUE ...     (a Hydra app: see hw/report/app.py, docs/report.md)

``run`` prints what ``asr-decode`` prints plus each file's modeled latency and energy;
``trace`` compares the float graph and the engine layer by layer (SQNR, max error, saturations,
first values) and, with ``--formats``, sweeps integer-fraction splits of the activations;
``eval`` scores a manifest (greedy WER/CER from the engine's outputs, mean latency and energy);
``timing`` prints the per-matrix table (ESE's columns) of one frame and the distribution of
cycles per frame (data-dependent on engines that skip zero activations or deltas: ``--audio``
times that utterance's frames); ``eval`` prints the same distribution over the test set and a
delta model's temporal sparsity; ``export`` writes the
per-PE weight memories (``$readmemh`` hex), the activation tables and golden vectors;
``rtl`` writes the engine as synthesizable SystemVerilog (docs/rtl.md); ``cosim`` builds it
with Verilator and checks it against the Python engine, bit for bit and cycle for cycle;
``synth`` synthesizes the engine's RTL (or given files) with Yosys and, on ECP5, places and
routes it with nextpnr: LUT/FF/DSP/BRAM used and available, whether it fits, and Fmax;
``report`` evaluates models x engines x decoders into report.md/html/json with figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from asr import CONF_DIR, atomic
from asr.config_errors import ConfigError
from asr.console import add_version, hydra_early_exit, quiet_broken_pipe
from asr.decode.options import (
    DECODERS,
    add_decoder_args,
    beam_settings,
    read_words,
    report_failures,
)
from hw.presets import preset_names
from hw.rtl.devices import DEVICES

DEVICE_NAMES = list(DEVICES)

if TYPE_CHECKING:
    import torch

    from asr.compress.artifact import Artifact
    from asr.compress.fixed_point import FixedPointFormat

# The engine, the artifacts and the model code load torch: they are imported by the commands
# that use them, so that --help answers at once.


def _engine_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--engine", default="ese",
                        help=f"preset ({', '.join(preset_names())}) or a .yaml file")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="engine overrides, e.g. clock_mhz=250 activation_bits=12")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="asr-hw", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_version(parser)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="decode audio through the engine")
    run.add_argument("artifact")
    run.add_argument("audio", nargs="+")
    run.add_argument("--decoder", choices=DECODERS, default="greedy")
    run.add_argument("--json", action="store_true")
    _engine_args(run)
    add_decoder_args(run)
    trace = sub.add_parser("trace", help="float vs fixed point, layer by layer")
    trace.add_argument("artifact")
    trace.add_argument("audio")
    trace.add_argument("--formats", default=None,
                       help="integer-fraction splits of the activations, e.g. 1-7,0-8,2-6")
    trace.add_argument("--plot", default=None, help="PNG of the --formats sweep")
    trace.add_argument("--values", type=int, default=3, help="first values shown per layer")
    trace.add_argument("--json", action="store_true")
    _engine_args(trace)
    evaluate = sub.add_parser("eval", help="WER/CER, latency and energy on a manifest")
    evaluate.add_argument("artifact")
    evaluate.add_argument("manifest")
    evaluate.add_argument("--max-utterances", type=int, default=0)
    evaluate.add_argument("--json", action="store_true")
    _engine_args(evaluate)
    timing = sub.add_parser("timing", help="per-matrix timing of one frame")
    timing.add_argument("artifact")
    timing.add_argument("--audio", default=None,
                        help="time this utterance's frames (engines whose cycles depend on the "
                             "data; without it every activation and delta counts as non-zero)")
    timing.add_argument("--json", action="store_true")
    _engine_args(timing)
    export = sub.add_parser("export", help="memory images, tables and golden vectors")
    export.add_argument("artifact")
    export.add_argument("out_dir")
    export.add_argument("--audio", default=None, help="utterance for the golden vectors")
    export.add_argument("--frames", type=int, default=3)
    _engine_args(export)
    rtl = sub.add_parser("rtl", help="the engine as synthesizable SystemVerilog")
    rtl.add_argument("artifact")
    rtl.add_argument("out_dir")
    _engine_args(rtl)
    cosim = sub.add_parser("cosim", help="the generated RTL against the Python engine "
                                         "(Verilator), bit for bit and cycle for cycle")
    cosim.add_argument("artifact")
    cosim.add_argument("audio", nargs="+")
    cosim.add_argument("--out", default=None,
                       help="folder for the generated design (default: under the cache)")
    cosim.add_argument("--cache", default=None,
                       help="build cache (default: ~/.cache/asr-fpga/rtl)")
    cosim.add_argument("--max-frames", type=int, default=0,
                       help="simulate at most this many frames of each utterance (0: all)")
    cosim.add_argument("--json", action="store_true")
    cosim.add_argument("--report", default=None, metavar="REPORT.md",
                       help="put the co-simulation's row into this report's RTL section")
    _engine_args(cosim)
    synth = sub.add_parser("synth", help="FPGA resources and Fmax of the engine's RTL")
    synth.add_argument("artifact", nargs="?", help="the compressed model (or use --sources)")
    synth.add_argument("--device", default="ecp5-85k", help=f"one of {', '.join(DEVICE_NAMES)}")
    synth.add_argument("--rtl-dir", default=None,
                       help="where asr-hw rtl writes the design (default: a temporary folder)")
    synth.add_argument("--sources", nargs="+", default=None, metavar="FILE.sv",
                       help="synthesize these files instead of the generated engine")
    synth.add_argument("--top", default=None, help="top module (default: the uninstantiated one)")
    synth.add_argument("--clock", default=None, metavar="PORT",
                       help="with --sources: the top's clock input, placed on a clock pin of "
                            "an ECP5 part (the generated engine's clk always is)")
    synth.add_argument("--include-dir", default=None,
                       help="folder $readmemh paths are relative to (default: the first "
                            "source's)")
    synth.add_argument("--param", nargs="*", default=[], metavar="KEY=INT",
                       help="top-level parameter overrides (with --top)")
    synth.add_argument("--freq", type=float, default=None,
                       help="place-and-route target clock in MHz (default: the engine's "
                            "clock_mhz)")
    synth.add_argument("--no-pnr", action="store_true",
                       help="Yosys counts only, also on ECP5 (no nextpnr)")
    synth.add_argument("--router", default="router1",
                       help="nextpnr's router: router1 (its default) or router2 (its newer, "
                            "multi-threaded one)")
    synth.add_argument("--threads", type=int, default=1,
                       help="nextpnr's threads (placement and router2)")
    synth.add_argument("--cache-dir", default=None,
                       help="synthesis cache (default: ~/.cache/asr-fpga/synth)")
    synth.add_argument("--force", action="store_true", help="ignore a cached result")
    synth.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                       help="stop Yosys or nextpnr after this long (default: no limit)")
    synth.add_argument("--json", action="store_true")
    synth.add_argument("--report", default=None, metavar="REPORT.md",
                       help="put the synthesis' row into this report's RTL section (with a "
                            "compressed model)")
    _engine_args(synth)
    sub.add_parser("report", add_help=False,
                   help="models x engines x decoders -> report.md/html/json (a Hydra app: "
                        "asr-hw report [-m] KEY=VALUE ..., asr-hw report --help)")
    return parser


def _features(artifact: Artifact, path: str) -> torch.Tensor:
    from asr.audio import load_audio
    from asr.features.config import FeatureConfig
    from asr.features.extract import FeatureExtractor

    cfg = FeatureConfig(**artifact.features)
    return FeatureExtractor(cfg)(load_audio(path, cfg.sample_rate))


def cmd_run(args: argparse.Namespace) -> int:
    from asr.decode.inputs import expand_inputs
    from asr.decode.recognizer import make_decoder
    from hw.config import load_engine
    from hw.engine import decode_with_cost, engine_acoustic_model

    cfg = load_engine(args.engine, args.set)
    beam, lm = beam_settings(args)
    kind = "beam" if (lm or args.words) and args.decoder == "greedy" else args.decoder
    model = engine_acoustic_model(args.artifact, cfg)
    decoder = make_decoder(kind, model, beam, lm, read_words(args.words))
    failures: list[tuple[str, str]] = []
    paths = expand_inputs(args.audio, failures)
    from hw.timing import cycle_distribution

    for d, cost in decode_with_cost(model, paths, decoder, failures, args.batch_size):
        cost["cycles_per_frame"] = cycle_distribution(cost.pop("frame_cycles"), cfg.clock_hz)
        if args.json:
            print(json.dumps({"path": d.path, **d.hypothesis.to_dict(),
                              "duration": round(d.duration, 3), "engine": cfg.name,
                              "hardware": cost}), flush=True)
        else:
            print(f"{d.path}\t{d.hypothesis.text}\t[{cfg.name}: "
                  f"{cost['latency_s'] * 1e3:.3f} ms, RTF {cost['rtf']:.5f}, "
                  f"{cost['utterance_uj']:.1f} uJ ({cost['dynamic_uj']:.1f} dynamic, "
                  f"{cost['static_uj']:.1f} static), "
                  f"{cost['saturations']} saturations, "
                  f"{cost['accumulator_overflows']} accumulator overflows]", flush=True)
    return report_failures("asr-hw run", failures)


def cmd_eval(args: argparse.Namespace) -> int:
    """Greedy WER/CER of the engine's own outputs on a manifest, with the mean modeled cost."""
    from asr.data.manifest import read_manifest
    from asr.decode.recognizer import make_decoder
    from asr.metrics import error_rates
    from hw.config import load_engine
    from hw.engine import decode_with_cost, engine_acoustic_model, summarize_costs
    from hw.timing import format_distribution

    cfg = load_engine(args.engine, args.set)
    model = engine_acoustic_model(args.artifact, cfg)
    utts = read_manifest(args.manifest)
    if args.max_utterances:
        utts = utts[:args.max_utterances]
    texts = {u.audio_filepath: u.text for u in utts}
    refs, hyps, costs = [], [], []
    audio = 0.0
    failures: list[tuple[str, str]] = []
    start = time.perf_counter()   # the simulator's own speed: audio read to decoded text
    for d, cost in decode_with_cost(model, list(texts), make_decoder("greedy", model),
                                    failures):
        refs.append(texts[d.path])
        hyps.append(d.hypothesis.text)
        costs.append(cost)
        audio += d.duration
    wall = time.perf_counter() - start
    rates = error_rates(refs, hyps)
    summary = {"artifact": args.artifact, "engine": cfg.name, "utterances": len(refs),
               "wer": rates.wer, "cer": rates.cer, **summarize_costs(costs, audio, cfg),
               "simulation_seconds": wall,
               "simulation_utterances_per_second": len(refs) / wall,
               "simulation_x_realtime": audio / wall}
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"{args.artifact} on {cfg.name}: {len(refs)} utterances, WER {100 * rates.wer:.2f}%"
              f" CER {100 * rates.cer:.2f}%; latency {summary['latency_ms']:.3f} ms per "
              f"utterance ({summary['latency_per_frame_us']:.2f} us per frame), RTF "
              f"{summary['rtf']:.5f}; {summary['uj_per_utterance']:.1f} uJ per utterance, "
              f"{summary['uj_per_audio_second']:.1f} uJ per audio second, "
              f"{summary['dynamic_power_w']:.3f} W dynamic + {summary['static_power_w']:.3f} W "
              f"static (the chip's static power over its {summary['channels']} channel(s)); "
              f"{summary['saturations']} saturations, "
              f"{summary['accumulator_overflows']} accumulator overflows")
        print(format_distribution(summary["cycles_per_frame"]))
        if summary["temporal_sparsity_by_layer"]:
            print("temporal sparsity (zero deltas): " + ", ".join(
                f"{k} {100 * v:.1f}%" for k, v in summary["temporal_sparsity_by_layer"].items()))
        print(f"simulated at {summary['simulation_utterances_per_second']:.2f} utterances/s, "
              f"{summary['simulation_x_realtime']:.2f}x real time on this machine "
              f"({wall:.1f} s wall clock)")
    return report_failures("asr-hw eval", failures)


def parse_formats(text: str) -> list[FixedPointFormat]:
    """``"1-7,0-8"`` (integer bits incl. sign, fraction bits; ``Q1.7`` is read too) -> the
    formats, in order."""
    from asr.compress.fixed_point import FixedPointFormat

    out = []
    for item in text.split(","):
        try:
            out.append(FixedPointFormat.parse(item))
        except ConfigError as err:
            raise ConfigError(f"--formats: {err}; the formats are comma-separated INT-FRAC "
                              f"pairs like 1-7,0-8 with at least 2 bits") from None
    return out


def cmd_trace(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from asr.compress.artifact import read_artifact
    from hw.config import load_engine
    from hw.trace import trace_layers

    cfg = load_engine(args.engine, args.set)
    artifact = read_artifact(args.artifact)
    feats = _features(artifact, args.audio)
    console = Console(width=max(160, Console().width))
    rows = trace_layers(artifact, cfg, feats, args.values)
    if args.json:
        print(json.dumps({"layers": rows}))
    else:
        table = Table(title=f"{args.artifact} on {cfg.name}: float vs fixed point")
        for col in ("layer", "format", "SQNR dB", "max error", "saturations", "overflows",
                    "float", "fixed"):
            table.add_column(col)
        for r in rows:
            table.add_row(r["layer"], r["format"], f"{r['sqnr_db']:.1f}", f"{r['max_error']:.4g}",
                          str(r["saturations"]), str(r["overflows"]), str(r["float"]),
                          str(r["fixed"]))
        console.print(table)
    if args.formats:
        sweep = []
        for fmt in parse_formats(args.formats):
            last = trace_layers(artifact, cfg, feats, 0, fmt)[-1]
            sweep.append({"format": fmt.dashed(), "sqnr_db": last["sqnr_db"],
                          "max_error": last["max_error"]})
            print(f"{fmt.dashed()}\toutput SQNR {last['sqnr_db']:.2f} dB\tmax error "
                  f"{last['max_error']:.4g}", flush=True)
        if args.plot:
            plot_format_sweep(sweep, args.plot)
            print(f"asr-hw trace: wrote {args.plot}")
    return 0


def plot_format_sweep(sweep: list[dict], path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    names = [s["format"] for s in sweep]
    sqnr = [max(-20.0, min(120.0, s["sqnr_db"])) for s in sweep]
    ax.bar(names, sqnr, color="#4477aa")
    ax.set_xlabel("activation format (integer-fraction bits)")
    ax.set_ylabel("output SQNR (dB)")
    ax.set_title("Engine output error by activation format")
    fig.tight_layout()
    # Rendered into a temporary file (hence the explicit format) that replaces ``path`` once
    # complete: a failed or interrupted plot leaves the previous figure.
    with atomic.atomic_open(path, "wb") as f:
        fig.savefig(f, format=Path(path).suffix.lstrip(".").lower() or "png", dpi=120)
    plt.close(fig)


def cmd_timing(args: argparse.Namespace) -> int:
    from asr.compress.artifact import read_artifact
    from hw.config import load_engine
    from hw.integer_model import compile_model
    from hw.timing import format_distribution, frame_timing, timing_table_markdown

    cfg = load_engine(args.engine, args.set)
    artifact = read_artifact(args.artifact)
    model = compile_model(artifact, cfg)
    acts = None
    if args.audio and cfg.data_dependent:
        from hw.engine import activity
        from hw.functional import run_engine

        acts = activity(model, run_engine(model, _features(artifact, args.audio), trace=True))
    frame = frame_timing(model, acts)
    if args.json:
        print(json.dumps(frame.as_dict()))
        return 0
    print(timing_table_markdown(frame))
    print(format_distribution(frame.as_dict()["cycles_per_frame"]))
    if cfg.data_dependent and acts is None:
        print("(every activation and delta taken as non-zero: the worst case; --audio FILE "
              "times an utterance's frames)")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from asr.compress.artifact import read_artifact
    from hw.config import load_engine
    from hw.export import export_engine

    cfg = load_engine(args.engine, args.set)
    artifact = read_artifact(args.artifact)
    feats = _features(artifact, args.audio) if args.audio else None
    written = export_engine(artifact, cfg, Path(args.out_dir), feats, args.frames)
    print(f"asr-hw export: wrote {len(written)} files to {args.out_dir}")
    return 0


def cmd_rtl(args: argparse.Namespace) -> int:
    from asr.compress.artifact import read_artifact
    from hw.config import load_engine
    from hw.rtl.generate import write_rtl

    cfg = load_engine(args.engine, args.set)
    design = write_rtl(read_artifact(args.artifact), cfg, Path(args.out_dir))
    print(f"asr-hw rtl: wrote {Path(args.out_dir) / 'engine.sv'} ({design.sparse_format}, "
          f"{len(design.matrices)} matrices, {len(design.phases)} phases a frame), its "
          f"testbench tb.sv and memory images")
    return 0


def cmd_cosim(args: argparse.Namespace) -> int:
    from asr.compress.artifact import read_artifact
    from asr.decode.inputs import expand_inputs
    from asr.tables import markdown_table
    from hw.config import load_engine
    from hw.integer_model import compile_model
    from hw.rtl.cosim import build, cosimulate, default_cache
    from hw.rtl.generate import check_supported, generate_rtl
    from hw.rtl.tools import find_verilator

    _check_report(args.report)
    cfg = load_engine(args.engine, args.set)
    artifact = read_artifact(args.artifact)
    model = compile_model(artifact, cfg)
    check_supported(model)
    find_verilator()          # a missing tool is named before any work
    failures: list[tuple[str, str]] = []
    paths = expand_inputs(args.audio, failures)
    cache = Path(args.cache) if args.cache else default_cache()
    out = (Path(args.out) if args.out
           else cache / "designs" / f"{cfg.name}-{Path(args.artifact).stem}")
    design = generate_rtl(model, out)
    binary = build(design, cache)
    status = 0
    results = []
    for path in paths:
        feats = _features(artifact, path)
        if args.max_frames:
            feats = feats[:args.max_frames]
        res = cosimulate(model, design, binary, feats, path)
        results.append(res.as_dict())
        if not res.bit_exact:
            status = 1
        if args.json:
            print(json.dumps(res.as_dict()), flush=True)
            continue
        frames = max(1, res.frames)
        print(f"{path}: {res.frames} frames, bit-exact {'yes' if res.bit_exact else 'NO'}; "
              f"RTL {res.rtl_cycles / frames:.1f} cycles a frame, model "
              f"{res.model_cycles / frames:.1f} (RTL/model "
              f"{res.rtl_cycles / max(1e-9, res.model_cycles):.4f}); simulated "
              f"{res.sim_cycles} cycles in {res.sim_seconds:.2f} s "
              f"({res.sim_cycles / max(1e-9, res.sim_seconds):.0f} cycles/s)")
        rows = [[p["name"], p["kind"], _cycles_text(p["rtl_cycles"]), p["model_cycles"]]
                for p in res.phases]
        if design.lookahead:
            # a WaveNet engine's steps run each layer on its own frame: a frame is the mean
            rows.append([f"frame (the mean over {len(res.frame_cycles)} steps, "
                         f"{design.lookahead} of them the look-ahead's)", "",
                         f"{res.rtl_cycles / frames:.1f}", res.model_cycles / frames])
        else:
            rows.append(["frame", "", _cycles_text(res.frame_cycles),
                         res.model_cycles / frames])
        print(markdown_table(["phase", "kind", "RTL cycles (per frame)", "model cycles"], rows))
        if res.first_difference:
            print(f"asr-hw cosim: first difference: {res.first_difference}", file=sys.stderr)
    if args.report and results:
        from hw.report.rtl_section import add_rtl_row, cosim_row

        add_rtl_row(Path(args.report), cosim_row(_model_label(args.artifact),
                                                 _engine_label(args.engine, args.set),
                                                 results))
    return max(status, report_failures("asr-hw cosim", failures))


def _check_report(report: str | None) -> None:
    if report is not None and not Path(report).is_file():
        raise ConfigError(f"--report {report}: no such report (asr-hw report writes it)")


def _model_label(artifact: str) -> str:
    """A compressed model as the report's RTL section names it: its folder and file."""
    path = Path(artifact)
    return f"{path.parent.name}/{path.name}" if path.parent.name else path.name


def _engine_label(engine: str, overrides: list[str] | None) -> str:
    return engine + (f" ({' '.join(overrides)})" if overrides else "")


def _cycles_text(values: list[int]) -> str:
    """One number when every frame took the same, else min-max."""
    if not values:
        return ""
    lo, hi = min(values), max(values)
    return str(lo) if lo == hi else f"{lo}-{hi}"


def _params(items: list[str]) -> dict[str, int]:
    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        try:
            out[key] = int(value, 0)
        except ValueError:
            raise ConfigError(f"--param: expected KEY=INTEGER (e.g. LANES=4), got {item!r}"
                              ) from None
        if not eq or not key:
            raise ConfigError(f"--param: expected KEY=INTEGER (e.g. LANES=4), got {item!r}")
    return out


def cmd_synth(args: argparse.Namespace) -> int:
    """Exit 0 when the design fits the device, 1 when it does not (the numbers are printed
    either way)."""
    import tempfile

    from hw.config import load_engine
    from hw.rtl.design import RtlSources, generate_design
    from hw.rtl.devices import get_device
    from hw.rtl.synth import (
        check_nextpnr_options,
        default_cache_dir,
        resource_rows,
        synthesize,
    )
    from hw.rtl.tools import synth_tools

    # every input is checked before any work
    device = get_device(args.device)
    params = _params(args.param)
    if (args.artifact is None) == (args.sources is None):
        raise ConfigError("give a compressed model (ARTIFACT) or --sources FILE.sv..., "
                          "not both")
    check_nextpnr_options(args.router, args.threads)
    _check_report(args.report)
    if args.report and args.artifact is None:
        raise ConfigError("--report: give a compressed model (ARTIFACT), not --sources")
    synth_tools(device.place_route and not args.no_pnr)
    target = args.freq
    with tempfile.TemporaryDirectory(prefix="asr-hw-rtl-") as tmp:
        if args.sources is not None:
            design = RtlSources.from_files(args.sources, args.top, args.include_dir,
                                           args.clock)
        else:
            from asr.compress.artifact import read_artifact
            from hw.integer_model import compile_model

            cfg = load_engine(args.engine, args.set)
            # read (a corrupt artifact names its file here) and compiled once: the RTL and
            # the timing below are both of this model
            model = compile_model(read_artifact(args.artifact), cfg)
            target = target or cfg.clock_mhz
            design = generate_design(model, Path(args.rtl_dir or tmp), args.top)
        result = synthesize(design.sources, device, top=design.top,
                            include_dir=design.include_dir, params=params,
                            place_route=not args.no_pnr, target_mhz=target,
                            cache_dir=Path(args.cache_dir) if args.cache_dir
                            else default_cache_dir(), force=args.force,
                            timeout=args.timeout, router=args.router,
                            threads=args.threads, clock=design.clock)
    out = result.as_dict()
    if args.artifact is not None:
        # the timing model's cycles of one frame, at the preset's clock and at the routed Fmax
        from hw.timing import frame_timing

        frame = frame_timing(model)
        out.update(frame_cycles=frame.cycles, clock_mhz=cfg.clock_mhz,
                   latency_per_frame_us=frame.latency_us,
                   latency_per_frame_us_at_fmax=frame.cycles / result.fmax_mhz
                   if result.fmax_mhz else None)
    if args.json:
        print(json.dumps(out))
    else:
        from asr.tables import markdown_table

        how = ("Yosys counts (estimates; not placed and routed)" if result.estimate else
               f"placed and routed: Fmax {result.fmax_mhz} MHz"
               + (f" (target {result.target_mhz:g} MHz)" if result.target_mhz else ""))
        print(f"{result.top} on {result.device} ({result.part}): {how}")
        print(markdown_table(*resource_rows(result.resources)))
        print(f"{'fits' if result.fits else 'does NOT fit'}"
              f"{': ' + result.reason if result.reason else ''}; "
              f"{', '.join(result.tools.values())}; "
              f"{', '.join(f'{k} {v:.1f} s' for k, v in result.seconds.items())}"
              f"{' (cached)' if result.cached else ''}; logs: {result.log_dir}")
        if "frame_cycles" in out:
            at_fmax = out["latency_per_frame_us_at_fmax"]
            print(f"one frame: {out['frame_cycles']:,.0f} cycles (timing model), "
                  f"{out['latency_per_frame_us']:.2f} us at the preset's {cfg.clock_mhz:g} MHz"
                  + (f", {at_fmax:.2f} us at the routed {result.fmax_mhz:g} MHz"
                     if at_fmax is not None else ""))
    if args.report:
        from hw.report.rtl_section import add_rtl_row, synth_row

        add_rtl_row(Path(args.report), synth_row(_model_label(args.artifact),
                                                 _engine_label(args.engine, args.set), out))
    if not result.fits:
        print(f"asr-hw synth: {result.top} does not fit {result.device}", file=sys.stderr)
        return 1
    return 0


COMMANDS = {"run": cmd_run, "eval": cmd_eval, "trace": cmd_trace, "timing": cmd_timing,
            "export": cmd_export, "rtl": cmd_rtl, "cosim": cmd_cosim, "synth": cmd_synth}


@quiet_broken_pipe
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["report"]:  # a Hydra app of its own (conf/asr_hw_report)
        # --version and --help before the report's modules load torch
        hydra_early_exit("asr-hw report", CONF_DIR / "asr_hw_report", "report", argv[1:])
        from hw.report.app import main as report_main

        report_main(argv[1:])
        return 0
    args = build_parser().parse_args(argv)
    from asr.audio import AudioError
    from asr.compress.artifact import ArtifactError
    from hw.rtl.tools import ToolError

    try:
        return COMMANDS[args.command](args)
    except (ConfigError, ArtifactError, AudioError, ToolError, ValueError, OSError) as err:
        print(f"asr-hw {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
