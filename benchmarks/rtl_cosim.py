"""The generated RTL of an LSTM and of a WaveNet on the ``ese`` and ``bbs`` engines,
co-simulated with Verilator against the Python engine: bit-exactness, RTL cycles per frame
against the timing model's (target: within 2%), and Verilator's simulation speed.

With trained artifacts (the demo's ``exp/demo/report/points/*/{lstm,wavenet}.model``) and
utterances, each engine runs its own artifact on the utterances; without, a random LSTM of
``conf/model/lstm_small`` size (256 cells, projection 128, 2 layers, 128 inputs) and a random
WaveNet of ``conf/model/wavenet_small`` size (64 channels, 2 blocks of dilations 1-16, kernel
5) are compressed with each engine's preset and run on random features.

    python benchmarks/rtl_cosim.py [--frames 20]
    python benchmarks/rtl_cosim.py --ese-model ESE.model --bbs-model BBS.model \\
        --wavenet-ese-model WN_ESE.model --wavenet-bbs-model WN_BBS.model --audio A.flac ...
    python benchmarks/rtl_cosim.py --ese-layer     # ESE's layer: RTL times beside ESE's table
    python benchmarks/rtl_cosim.py --write-ese-layer ESE_LAYER.model   # the layer, for asr-hw
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from asr.audio import load_audio
from asr.compress.artifact import Artifact, build_artifact, read_artifact, save_artifact
from asr.compress.config import compress_preset, validate_against_model
from asr.compress.pruning import prune_model
from asr.features.config import FeatureConfig
from asr.features.extract import FeatureExtractor
from asr.models import LSTMCTC, WaveNetCTC
from asr.tables import markdown_table
from asr.train.config import CONF_DIR
from hw.config import load_engine
from hw.integer_model import compile_model
from hw.rtl.cosim import build, cosimulate, default_cache
from hw.rtl.generate import generate_rtl
from hw.validation import ESE_TABLE, ese_shaped_artifact

ESE_INPUTS = 153


def ese_layer_artifact() -> Artifact:
    """ESE's layer (153 inputs, 1024 cells, projection 512, ESE's per-matrix densities, random
    weights; 32 outputs) compressed with the ``ese`` preset and calibrated on random features,
    so that ``asr-hw rtl`` / ``synth`` take it as a file like any compressed model."""
    torch.manual_seed(2)
    art = ese_shaped_artifact(compress_preset("ese"),
                              calibration=[torch.randn(100, ESE_INPUTS) * 2])
    art.vocab_tokens = [str(i) for i in range(32)]
    return art


def ese_layer(cache: Path | None, frames: int) -> None:
    """ESE's layer (153 inputs, 1024 cells, projection 512) on the ``ese`` engine: each
    matrix's RTL time per frame beside the model's and ESE's published total."""
    cfg = load_engine("ese")
    # the layer is not calibrated: one activation format (Q4.11) for every signal
    model = compile_model(ese_shaped_artifact(compress_preset("ese")), cfg,
                          cfg.activation_format(11))
    clock = model.cfg.clock_mhz
    with tempfile.TemporaryDirectory() as tmp:
        design = generate_rtl(model, Path(tmp))
        t0 = time.perf_counter()
        binary = build(design, cache or default_cache())
        build_s = time.perf_counter() - t0
        torch.manual_seed(1)
        r = cosimulate(model, design, binary, torch.randn(frames, ESE_INPUTS) * 2, "random")
    rows = []
    for ph in r.phases:
        key = ph["name"].rsplit(".", 1)[-1]
        ese = ESE_TABLE.get(key)
        rtl = ph["rtl_cycles"][0]
        rows.append([ph["name"], rtl, ph["model_cycles"], f"{rtl / clock:.2f}",
                     "" if ese is None else f"{ese[2]}"])
    print(markdown_table(["phase", "RTL cycles", "model cycles", "RTL us", "ESE total us"],
                         rows))
    print(f"bit-exact {'yes' if r.bit_exact else 'NO'} over {r.frames} frames; RTL "
          f"{r.rtl_cycles / r.frames:.1f} cycles a frame ({r.rtl_cycles / r.frames / clock:.2f}"
          f" us), model {r.model_cycles / r.frames:.1f}; {r.sim_cycles / r.sim_seconds:,.0f} "
          f"simulated cycles/s; build {build_s:.0f} s")


def random_artifact(preset: str, inputs: int, model_type: str = "lstm"):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        mcfg = compose(f"model/{model_type}_small").model
    torch.manual_seed(0)
    if model_type == "wavenet":
        model = WaveNetCTC(inputs, 29, channels=mcfg.channels, blocks=mcfg.blocks,
                           dilations=tuple(mcfg.dilations), kernel=mcfg.kernel).eval()
    else:
        model = LSTMCTC(inputs, 29, hidden_size=mcfg.hidden_size, proj_size=mcfg.proj_size,
                        num_layers=mcfg.num_layers).eval()
    ccfg = compress_preset(preset)
    views = model.matrices()
    densities = validate_against_model(ccfg, views, model_type)
    masks = prune_model(views, densities, ccfg.prune)
    art = build_artifact(model, masks, densities, ccfg, [torch.randn(100, inputs) * 2])
    art.vocab_tokens = [str(i) for i in range(29)]
    return art


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ese-model", default=None)
    parser.add_argument("--bbs-model", default=None)
    parser.add_argument("--wavenet-ese-model", default=None)
    parser.add_argument("--wavenet-bbs-model", default=None)
    parser.add_argument("--audio", nargs="*", default=[])
    parser.add_argument("--frames", type=int, default=20, help="random features' frames")
    parser.add_argument("--inputs", type=int, default=128)
    parser.add_argument("--cache", default=None)
    parser.add_argument("--ese-layer", action="store_true",
                        help="co-simulate ESE's layer on the ese engine instead")
    parser.add_argument("--write-ese-layer", default=None, metavar="PATH",
                        help="only save ESE's layer as a compressed model at PATH")
    args = parser.parse_args()
    if args.write_ese_layer:
        print(save_artifact(args.write_ese_layer, ese_layer_artifact()))
        return
    if args.ese_layer:
        ese_layer(Path(args.cache) if args.cache else None, min(args.frames, 3))
        return
    rows = []
    for preset, path, kind in (("ese", args.ese_model, "lstm"), ("bbs", args.bbs_model, "lstm"),
                               ("ese", args.wavenet_ese_model, "wavenet"),
                               ("bbs", args.wavenet_bbs_model, "wavenet")):
        art = read_artifact(path) if path else random_artifact(preset, args.inputs, kind)
        model = compile_model(art, load_engine(preset))
        if path and args.audio:
            fcfg = FeatureConfig(**art.features)
            extract = FeatureExtractor(fcfg)
            inputs = [(a, extract(load_audio(a, fcfg.sample_rate))) for a in args.audio]
        else:
            torch.manual_seed(1)
            inputs = [("random", torch.randn(args.frames, args.inputs) * 2)]
        with tempfile.TemporaryDirectory() as tmp:
            design = generate_rtl(model, Path(tmp))
            t0 = time.perf_counter()
            binary = build(design, Path(args.cache) if args.cache else default_cache())
            build_s = time.perf_counter() - t0
            for name, feats in inputs:
                r = cosimulate(model, design, binary, feats, name)
                per = r.rtl_cycles / r.frames
                rows.append([f"{kind} {preset}", Path(name).name, r.frames,
                             "yes" if r.bit_exact else "NO",
                             f"{per:.1f}", f"{r.model_cycles / r.frames:.1f}",
                             f"{r.rtl_cycles / r.model_cycles:.4f}",
                             f"{r.sim_cycles / r.sim_seconds:,.0f}", f"{build_s:.0f}"])
                print(" | ".join(map(str, rows[-1])), flush=True)
                if r.first_difference:
                    print(f"  first difference: {r.first_difference}")
    print(markdown_table(["model, engine", "input", "frames", "bit-exact", "RTL cycles/frame",
                          "model cycles/frame", "RTL/model", "sim cycles/s", "build s"],
                         rows))


if __name__ == "__main__":
    main()
