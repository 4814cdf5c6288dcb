"""Bit-accurate engine run against float PyTorch inference of the same LSTM, same input.

The model is a ``conf/model`` LSTM preset (default ``lstm_ese``: 2 layers, 1024 cells,
projection 512, ESE's shape) with random weights, compressed with ``conf/compress/ese.yaml``
and run on the ``ese`` engine; the float reference is the model's own ``forward`` (``nn.LSTM``
with projection) in inference mode. Target: engine / float <= 1.0. Also times the timing and
energy model of a test set (per-frame timing once, then every utterance).

    python benchmarks/hw_speed.py [--model lstm_ese] [--frames 300] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import torch
from hydra import compose, initialize_config_dir

from asr.compress.artifact import build_artifact
from asr.compress.config import compress_preset, validate_against_model
from asr.compress.pruning import prune_model
from asr.models import LSTMCTC
from asr.train.config import CONF_DIR
from hw.config import load_engine
from hw.engine import EngineModule
from hw.functional import run_engine
from hw.integer_model import compile_model


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="lstm_ese")
    parser.add_argument("--frames", type=int, default=300, help="3 s of audio at 10 ms")
    parser.add_argument("--inputs", type=int, default=80)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        mcfg = compose(f"model/{args.model}").model
    ccfg = compress_preset("ese")
    torch.manual_seed(0)
    model = LSTMCTC(args.inputs, 29, hidden_size=mcfg.hidden_size, proj_size=mcfg.proj_size,
                    num_layers=mcfg.num_layers).eval()
    views = model.matrices()
    densities = validate_against_model(ccfg, views, "lstm")
    masks = prune_model(views, densities, ccfg.prune)
    feats = torch.randn(args.frames, args.inputs)
    art = build_artifact(model, masks, densities, ccfg, [feats])
    engine = compile_model(art, load_engine("ese"))
    with torch.inference_mode():
        float_s = best_of(lambda: model(feats[None], torch.tensor([args.frames])),
                          args.repeats)
    run_engine(engine, feats[:5])   # operands prepared once, as a loaded engine would
    engine_s = best_of(lambda: run_engine(engine, feats), args.repeats)
    print(f"{args.model} ({mcfg.num_layers} x {mcfg.hidden_size} cells, projection "
          f"{mcfg.proj_size}), {args.frames} frames, {torch.get_num_threads()} threads")
    print(f"float PyTorch forward   {1e3 * float_s:8.1f} ms")
    print(f"bit-accurate engine     {1e3 * engine_s:8.1f} ms")
    print(f"ratio engine / float    {engine_s / float_s:8.2f}   (target <= 1.0)")
    # Timing and energy of a test set: 1,000 utterances of 300 frames.
    module = EngineModule(engine)
    t0 = time.perf_counter()
    frame, energy = module.frame_cost()
    run = run_engine(engine, feats[:3])
    for _ in range(1000):
        run.logits = feats       # only the frame count is read
        module.utterance_cost(run, args.frames / 100)
    print(f"timing + energy model, 1,000 utterances: {time.perf_counter() - t0:.2f} s "
          f"({frame.latency_us:.1f} us and {energy.total_pj / 1e6:.2f} uJ per frame on ese)")


if __name__ == "__main__":
    main()
