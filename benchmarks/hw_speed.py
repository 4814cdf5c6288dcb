"""Bit-accurate engine run against float PyTorch inference of the same LSTM, same input.

The model is a ``conf/model`` LSTM preset (default ``lstm_ese``: 2 layers, 1024 cells,
projection 512, ESE's shape) with random weights, compressed with ``conf/compress/ese.yaml``
and run on the ``ese`` engine; the float reference is the model's own ``forward`` (``nn.LSTM``
with projection) in inference mode. Two comparisons, each the best of ``--repeats``:

* one utterance of ``--frames`` frames, alone (the engine steps one utterance);
* a test set of ``--utterances`` synthesized utterances (espeak-ng, the built-in text, under
  ``exp/bench/hw_speed``; noise of speech-like lengths without espeak-ng), 80 log-mel
  features, in batches of ``--batch-size`` as ``asr-hw eval`` runs them: the float model on
  padded batches, the engine with the batch's utterances side by side
  (:func:`hw.functional.run_engine_batch`). Prints utterances per second and x real time of
  both. Target: engine / float <= 1.0.

Also times the timing and energy model of a test set (per-frame timing once, then every
utterance).

    python benchmarks/hw_speed.py [--model lstm_ese] [--frames 300] [--utterances 50]
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from asr.audio import read_audio
from asr.compress.artifact import build_artifact
from asr.compress.config import compress_preset, validate_against_model
from asr.compress.pruning import prune_model
from asr.data.synth import SynthConfig, synthesize_corpus
from asr.features.config import FeatureConfig
from asr.features.extract import FeatureExtractor
from asr.models import LSTMCTC
from asr.models.graph import LSTMOp
from asr.train.config import CONF_DIR
from hw.config import load_engine
from hw.engine import EngineModule
from hw.functional import EngineRun, run_engine, run_engine_batch
from hw.integer_model import compile_model


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


BENCH_DIR = Path("exp/bench/hw_speed")


def test_set(count: int) -> tuple[list[torch.Tensor], float, str]:
    """``count`` utterances' 80 log-mel features (10 ms frames), their audio seconds, and
    where they came from."""
    extract = FeatureExtractor(FeatureConfig(kind="fbank", n_mels=80))
    if shutil.which("espeak-ng"):
        result = synthesize_corpus(BENCH_DIR, SynthConfig(num_utts=count, seed=0))
        utts = sorted((u for split in result.splits.values() for u in split),
                      key=lambda u: u.utt_id)[:count]
        feats = [extract(read_audio(u.audio_filepath)[0]) for u in utts]
        seconds = sum(u.duration for u in utts)
        return feats, seconds, f"{len(utts)} utterances synthesized with espeak-ng ({BENCH_DIR})"
    gen = torch.Generator().manual_seed(0)
    lengths = torch.randint(100, 400, (count,), generator=gen).tolist()
    feats = [torch.randn(n, 80, generator=gen) for n in lengths]
    return feats, sum(lengths) / 100, f"{count} noise feature sequences of 1-4 s (no espeak-ng)"


def check_compiled_steps(engine, batch: list[torch.Tensor], timed: list[EngineRun]) -> None:
    """The ``timed`` runs stepped every LSTM layer through compiled kernels
    (:class:`hw.lstm_cell.LayerKernels`), none falling back to eager steps, and their integers
    equal the eager steps' (which the MAC-by-MAC reference tests hold), here on this very
    model."""
    compiled = run_engine_batch(engine, batch)
    layers = [op.name for op in engine.graph.ops if type(op) is LSTMOp]
    runs = [*timed, *compiled]
    if any(run.compiled_layers != layers or run.fallbacks for run in runs):
        failed = {k: v for run in runs for k, v in run.fallbacks.items()}
        raise SystemExit(f"hw_speed: the LSTM layers {layers} did not all step compiled "
                         f"(failures: {failed or 'none; not compiled'})")
    eager = run_engine_batch(engine, batch, compiled=False)
    same = all(torch.equal(c.logits, e.logits) and c.events == e.events
               for c, e in zip(compiled, eager))
    print(f"compiled steps ({len(layers)} layers) bit-exact against the eager steps "
          f"({len(batch)} utterances): "
          f"{'yes' if same else 'NO'}")
    if not same:
        raise SystemExit("hw_speed: the compiled LSTM step computed other integers")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="lstm_ese")
    parser.add_argument("--frames", type=int, default=300, help="3 s of audio at 10 ms")
    parser.add_argument("--inputs", type=int, default=80)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--utterances", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=16)
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
    # Operands prepared once, as a loaded engine would, and (layers of 512 cells or more) each
    # layer's step compiled, once for any number of rows; a batch's first run of its own.
    t0 = time.perf_counter()
    run_engine(engine, feats[:5])
    run_engine_batch(engine, [feats[:5], feats[:3]])
    warmup_s = time.perf_counter() - t0
    timed: list[EngineRun] = []   # every timed engine run, checked to have stepped compiled
    engine_s = best_of(lambda: timed.append(run_engine(engine, feats)), args.repeats)
    print(f"{args.model} ({mcfg.num_layers} x {mcfg.hidden_size} cells, projection "
          f"{mcfg.proj_size}), {args.frames} frames, {torch.get_num_threads()} threads")
    print(f"warm-up (operands; compiling each LSTM layer's step, cached on disk) {warmup_s:.1f} s")
    print(f"float PyTorch forward   {1e3 * float_s:8.1f} ms")
    print(f"bit-accurate engine     {1e3 * engine_s:8.1f} ms")
    print(f"ratio engine / float    {engine_s / float_s:8.2f}   (one utterance alone)")
    feats_set, seconds, source = test_set(args.utterances)
    batches = [feats_set[i:i + args.batch_size]
               for i in range(0, len(feats_set), args.batch_size)]

    def float_set() -> None:
        with torch.inference_mode():
            for batch in batches:
                padded = torch.nn.utils.rnn.pad_sequence(batch, batch_first=True)
                model(padded, torch.tensor([len(f) for f in batch]))

    def engine_set() -> None:
        for batch in batches:
            timed.extend(run_engine_batch(engine, batch))

    float_set_s = best_of(float_set, args.repeats)
    engine_set_s = best_of(engine_set, args.repeats)
    n = len(feats_set)
    print(f"test set: {source}, {seconds:.1f} s of audio, batches of {args.batch_size}")
    for label, secs in (("float PyTorch", float_set_s), ("bit-accurate engine", engine_set_s)):
        print(f"{label:<23} {secs:8.2f} s   {n / secs:7.1f} utterances/s   "
              f"{seconds / secs:7.1f} x real time")
    print(f"ratio engine / float    {engine_set_s / float_set_s:8.2f}   (target <= 1.0)")
    check_compiled_steps(engine, batches[0], timed)
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
