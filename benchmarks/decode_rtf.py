"""Decoding speed and accuracy: greedy, pyctcdecode (``beam``) and flashlight-text (``flashlight``).

The beam searches decode the same posteriors with the same ARPA 3-gram (built by the project's
``build_arpa``), the same beam width and beam threshold, and LM weights tuned for each over the
same alpha/beta grid on the dev half of the utterances; WER/CER and speed are reported on the
test half. pyctcdecode runs twice: open-vocabulary (as ``--decoder beam``) and limited to the
LM's words (``--words``), as flashlight's lexicon search is. RTF = seconds / audio seconds:

* front end = reading the audio, features and the model's forward pass (``asr-eval``'s part
  before decoding), timed over the test half's files;
* search = the decoder alone over the posteriors (log-softmax included);
* end to end = front end + search.

Timings are the best of ``--repeats`` rounds; within a round every decoder runs once, in turn.

What runs on a fresh clone (no corpus, no trained model), each choice printed:

* model: ``--model``, else ``exp/speechocean762_lstm/model.ckpt`` or ``exp/demo_lstm/model.ckpt``
  when present, else a randomly initialized model of ``--preset`` (``conf/model/*.yaml``);
* audio: ``--data`` (a manifest), else ``data/speechocean762/dev.jsonl`` or
  ``data/demo/test.jsonl`` when present, else a corpus synthesized with espeak-ng from the
  built-in text (``asr-data synth``) under ``exp/bench/``; without espeak-ng, noise files of
  speech-like lengths with built-in sentences as transcripts (for the timing of the front end);
* posteriors: ``--posteriors model`` (the model's), or ``synthetic``: peaked CTC posteriors built
  from the reference transcripts with Gaussian noise and a fraction of characters confused with
  another or dropped to blank, at the model's frame counts; the default is ``model`` for a
  trained model and ``synthetic`` for a random one (whose posteriors make WER meaningless);
* LM: ``--lm``, else a 3-gram built from ``--lm-text``, by default the transcripts of the
  manifest's sibling ``train.jsonl`` (else of the manifest), or the built-in text for
  synthesized audio (which then includes the test sentences).

    .venv/bin/python benchmarks/decode_rtf.py                          # fresh clone: all fallbacks
    .venv/bin/python benchmarks/decode_rtf.py --model exp/demo_lstm/model.ckpt \\
        --data data/demo/test.jsonl --posteriors synthetic
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

import asr.decode.beam as beam_module
from asr.cli.loading import load_model
from asr.data.manifest import Utterance, read_manifest, write_manifest
from asr.data.synth import SynthConfig, read_sentences, synthesize_corpus
from asr.decode.beam import BeamConfig
from asr.decode.flashlight import arpa_words
from asr.decode.recognizer import Posteriors, Recognizer, make_decoder
from asr.features.config import FeatureConfig
from asr.lm.kneser_ney import build_arpa
from asr.metrics import error_rates
from asr.models.acoustic import AcousticModel
from asr.text.normalize import normalize_text
from asr.text.vocab import CharVocab

BENCH_DIR = Path("exp/bench")
TRAINED = ("exp/speechocean762_lstm/model.ckpt", "exp/demo_lstm/model.ckpt")
MANIFESTS = ("data/speechocean762/dev.jsonl", "data/demo/test.jsonl")
# Decoders: greedy; pyctcdecode open-vocabulary (``beam``) and limited to the LM's words
# (``beam-words``, as flashlight's lexicon search is); flashlight-text (``flashlight``).
TARGET = 0.01  # end-to-end RTF of greedy and of the faster beam search
NAMES = {"beam": "pyctcdecode", "beam-words": "pyctcdecode, LM words only",
         "flashlight": "flashlight"}


# ---------------------------------------------------------------------------------------------
# What to run on: a model, audio, posteriors and an LM, with fallbacks for a fresh clone.


def random_model(preset: str, features: str) -> AcousticModel:
    """A randomly initialized model of a ``conf/model`` preset on a ``conf/features`` preset."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from asr.train.config import CONF_DIR
    from asr.train.module import build_model

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"model={preset}", f"features={features}"])
    feature_cfg = FeatureConfig(**OmegaConf.to_container(cfg.features, resolve=True))
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    vocab = CharVocab()
    torch.manual_seed(0)
    model = build_model(model_cfg, feature_cfg.dim, len(vocab)).eval()
    return AcousticModel(model, vocab, feature_cfg, model_cfg, f"random:{preset}")


def choose_model(args: argparse.Namespace) -> tuple[AcousticModel, bool, str]:
    """The model, whether it is trained, and a line saying which it is."""
    path = args.model or next((p for p in TRAINED if Path(p).is_file()), None)
    if path is not None:
        if not Path(path).is_file():
            sys.exit(f"decode_rtf: --model {path}: missing")
        return load_model(path), True, f"trained model {path}"
    model = random_model(args.preset, args.features)
    return model, False, (f"randomly initialized {args.preset} on {args.features} (no trained "
                          f"model: none of {', '.join(TRAINED)})")


def noise_corpus(out: Path, sentences: list[str], n: int) -> list[Utterance]:
    """Low-level noise files 0.075 s per character long, one per sentence (no TTS needed)."""
    rng = np.random.default_rng(0)
    utts = []
    (out / "audio").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        text = sentences[i % len(sentences)]
        seconds = 0.3 + 0.075 * len(text)
        path = out / "audio" / f"noise{i:04d}.flac"
        if not path.is_file():
            sf.write(path, 0.01 * rng.standard_normal(int(16000 * seconds)), 16000)
        utts.append(Utterance(str(path.resolve()), round(seconds, 4), text, utt_id=path.stem))
    write_manifest(out / "all.jsonl", utts)
    return utts


def choose_audio(args: argparse.Namespace) -> tuple[list[Utterance], list[str], str]:
    """The utterances, the default LM text (sentences) and a line saying what the audio is."""
    path = args.data or next((p for p in MANIFESTS if Path(p).is_file()), None)
    if path is not None:
        utts = read_manifest(path)
        train = Path(path).with_name("train.jsonl")
        lm_text = [u.text for u in (read_manifest(train) if train.is_file() else utts)]
        source = train if train.is_file() else path
        return utts, lm_text, f"manifest {path}; LM text: the transcripts of {source}"
    sentences = read_sentences(None)
    if shutil.which("espeak-ng"):
        out = BENCH_DIR / "synth"
        cfg = SynthConfig(num_utts=args.max_utterances, seed=0)
        print(f"synthesizing {cfg.num_utts} utterances with espeak-ng into {out} (= asr-data "
              f"synth --out {out} --num-utts {cfg.num_utts} --seed 0; reused when present)",
              flush=True)
        result = synthesize_corpus(out, cfg)
        utts = sorted((u for split in result.splits.values() for u in split),
                      key=lambda u: u.utt_id)
        return utts, sentences, (f"{len(utts)} utterances synthesized with espeak-ng from the "
                                 f"built-in text ({out}); LM text: the built-in text")
    utts = noise_corpus(BENCH_DIR / "noise", sentences, args.max_utterances)
    return utts, sentences, ("noise files of speech-like lengths with built-in sentences as "
                             "transcripts (espeak-ng is not installed: `make setup` installs it); "
                             "LM text: the built-in text")


def synthetic_logits(text: str, frames: int, vocab: CharVocab, rng: np.random.Generator,
                     args: argparse.Namespace) -> np.ndarray:
    """Peaked ``(frames, vocab)`` CTC scores spelling ``text``: each character on 1-2 frames
    at evenly spaced slots, blank elsewhere, ``args.peak`` above Gaussian noise; a
    ``args.confuse`` fraction of characters is outscored by another token and a ``args.drop``
    fraction by blank, the true character staying second."""
    ids = vocab.encode(text)
    n_tokens = len(vocab)
    frames = max(frames, 2 * len(ids) + 1)
    logits = rng.normal(0.0, args.noise, (frames, n_tokens))
    best = np.full(frames, vocab.blank_id)
    slot = frames / max(len(ids), 1)
    for k, tok in enumerate(ids):
        start = int(k * slot)
        run = 1 if slot < 3 else int(rng.integers(1, 3))
        best[start:start + run] = tok
        u = rng.random()
        if u < args.confuse + args.drop:
            rival = (vocab.blank_id if u >= args.confuse
                     else int(rng.choice([t for t in range(1, n_tokens) if t != tok])))
            logits[start:start + run, rival] += args.peak + rng.uniform(0.2, 1.5)
    logits[np.arange(frames), best] += args.peak
    return logits.astype(np.float32)


def synthetic_batches(batches: list[Posteriors], texts: dict[str, str], vocab: CharVocab,
                      args: argparse.Namespace) -> list[Posteriors]:
    """Batches like ``batches`` (same files and frame counts) with synthetic posteriors."""
    rng = np.random.default_rng(args.seed)
    out = []
    for post in batches:
        rows = [torch.from_numpy(synthetic_logits(texts[p], int(n), vocab, rng, args))
                for p, n in zip(post.paths, post.lengths.tolist())]
        lengths = torch.tensor([r.shape[0] for r in rows])
        logits = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True)
        out.append(Posteriors(post.paths, logits, lengths, post.durations, post.seconds))
    return out


# ---------------------------------------------------------------------------------------------
# Decoding, tuning, timing.


@contextlib.contextmanager
def quiet_stderr():
    """Silence C-level stderr (KenLM's loading banner) for the block."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def build(kind: str, model: AcousticModel, cfg: BeamConfig, lm: str) -> Callable:
    if kind == "greedy":
        return make_decoder(kind, model)
    words = arpa_words(lm) if kind == "beam-words" else None
    with quiet_stderr():
        return make_decoder(kind.removesuffix("-words"), model, cfg, lm, words)


def decode_all(decoder: Callable, batches: list[Posteriors]) -> tuple[list[str], float]:
    t0 = time.perf_counter()
    hyps = [h.text for post in batches for h in decoder(post.logits, post.lengths)]
    return hyps, time.perf_counter() - t0


def tune(kind: str, model: AcousticModel, args: argparse.Namespace, lm: str,
         batches: list[Posteriors], refs: list[str]) -> tuple[BeamConfig, list[str]]:
    """The grid point of lowest dev WER (ties: the earlier point), and a line per point."""
    best, lines = None, []
    for alpha in args.alphas:
        for beta in args.betas:
            cfg = BeamConfig(beam_width=args.beam_width, alpha=alpha, beta=beta)
            hyps, _ = decode_all(build(kind, model, cfg, lm), batches)
            wer = error_rates(refs, hyps).wer
            lines.append(f"{alpha:g}/{beta:g}: {100 * wer:.1f}")
            if best is None or wer < best[0]:
                best = (wer, cfg)
    return best[1], lines


def frontend(recognizer: Recognizer, paths: list[str]) -> tuple[list[Posteriors], float]:
    t0 = time.perf_counter()
    batches = list(recognizer.posteriors(paths))
    return batches, time.perf_counter() - t0


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model file (default: a trained recipe model if "
                                        "present, else a random --preset model)")
    parser.add_argument("--preset", default="lstm_small", help="conf/model preset of the "
                                                               "random model")
    parser.add_argument("--features", default="fbank_stack3", help="its conf/features preset")
    parser.add_argument("--data", help="manifest (default: a recipe's if present, else "
                                       "synthesized audio)")
    parser.add_argument("--posteriors", choices=("auto", "model", "synthetic"), default="auto")
    parser.add_argument("--lm", help="ARPA LM (default: a 3-gram built from --lm-text)")
    parser.add_argument("--lm-text", help="text file for the LM, one sentence a line")
    parser.add_argument("--decoders", default="greedy,beam,beam-words,flashlight",
                        help="greedy, beam (pyctcdecode), beam-words (pyctcdecode limited to "
                             "the LM's words), flashlight")
    parser.add_argument("--max-utterances", type=int, default=100)
    parser.add_argument("--beam-width", type=int, default=32)
    parser.add_argument("--alphas", type=floats, default=floats("0.3,0.6,1,1.5"),
                        help="LM weight grid (weight of ln P(word | history))")
    parser.add_argument("--betas", type=floats, default=floats("0,1,2"),
                        help="word insertion bonus grid")
    parser.add_argument("--repeats", type=int, default=3, help="timing rounds (best taken)")
    parser.add_argument("--peak", type=float, default=6.0, help="synthetic: peak score")
    parser.add_argument("--noise", type=float, default=1.0, help="synthetic: noise std")
    parser.add_argument("--confuse", type=float, default=0.06,
                        help="synthetic: fraction of characters outscored by another token")
    parser.add_argument("--drop", type=float, default=0.02,
                        help="synthetic: fraction of characters outscored by blank")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--python-lm", action="store_true",
                        help="pyctcdecode scores the LM in pure Python even if kenlm is installed")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads of the forward pass (default 1: on a shared machine "
                             "more threads spin-wait; the searches run on one thread)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.python_lm:
        beam_module._kenlm = lambda: None
    kinds = args.decoders.split(",")
    if "flashlight" in kinds:
        try:
            import flashlight.lib.text  # noqa: F401
        except ImportError:
            print("decode_rtf: flashlight-text is not installed (pip install '.[lm]'); "
                  "skipping the flashlight decoder", file=sys.stderr)
            kinds.remove("flashlight")

    model, trained, model_line = choose_model(args)
    utts, lm_sentences, audio_line = choose_audio(args)
    utts = utts[:args.max_utterances]
    source = args.posteriors if args.posteriors != "auto" else (
        "model" if trained else "synthetic")
    recognizer = Recognizer(model, batch_size=16)
    params = sum(p.numel() for p in model.model.parameters())
    print(f"model: {model_line} ({params:,} params)")
    print(f"audio: {audio_line}")

    # The LM: --lm, or a 3-gram of --lm-text / the default text.
    if args.lm:
        lm = args.lm
        lm_line = f"LM: {lm}"
    else:
        sentences = (Path(args.lm_text).read_text("utf-8").splitlines() if args.lm_text
                     else lm_sentences)
        words = [normalize_text(s).split() for s in sentences if s.strip()]
        words = [w for w in words if w]
        BENCH_DIR.mkdir(parents=True, exist_ok=True)
        lm = str(BENCH_DIR / "lm_3gram.arpa")
        build_arpa(words, 3, lm)
        lm_line = (f"LM: 3-gram built by build_arpa from {len(words)} sentences "
                   f"({len({w for s in words for w in s})} words) -> {lm}")
    pyctc_lm = "kenlm" if beam_module._kenlm() is not None else "pure-Python LM"
    print(lm_line)

    # Dev half (even positions) to tune, test half (odd) to report.
    dev, test = utts[0::2], utts[1::2]
    texts = {u.audio_filepath: normalize_text(u.text) for u in utts}
    dev_batches, _ = frontend(recognizer, [u.audio_filepath for u in dev])
    test_paths = [u.audio_filepath for u in test]
    frontend(recognizer, test_paths[:4])  # warm-up
    test_batches, _ = frontend(recognizer, test_paths)
    if source == "synthetic":
        dev_batches = synthetic_batches(dev_batches, texts, model.vocab, args)
        test_batches = synthetic_batches(test_batches, texts, model.vocab, args)
        print(f"posteriors: synthetic, from the reference transcripts at the model's frame "
              f"counts (peak {args.peak:g}, noise std {args.noise:g}, {100 * args.confuse:g}% "
              f"of characters confused, {100 * args.drop:g}% dropped, seed {args.seed})")
    else:
        print("posteriors: the model's"
              + ("" if trained else " (a random model: WER is meaningless)"))
    dev_refs = [texts[p] for post in dev_batches for p in post.paths]
    test_refs = [texts[p] for post in test_batches for p in post.paths]
    audio = sum(d for post in test_batches for d in post.durations)
    print(f"{len(dev_refs)} dev / {len(test_refs)} test utterances ({audio:.1f} s of test "
          f"audio), beam width {args.beam_width}, torch threads: {torch.get_num_threads()}")

    decoders, notes = {}, {}
    for kind in kinds:
        if kind == "greedy":
            decoders[kind] = build(kind, model, BeamConfig(), lm)
            continue
        cfg, lines = tune(kind, model, args, lm, dev_batches, dev_refs)
        decoders[kind] = build(kind, model, cfg, lm)
        notes[kind] = f"{cfg.alpha:g}/{cfg.beta:g}"
        print(f"dev WER % by alpha/beta, {NAMES[kind]}: {', '.join(lines)}")

    # Timing: rounds of front end then every decoder in turn; best of the rounds.
    best = dict.fromkeys(["frontend", *decoders], math.inf)
    hyps = {}
    for _ in range(args.repeats):
        _, seconds = frontend(recognizer, test_paths)
        best["frontend"] = min(best["frontend"], seconds)
        for kind, decoder in decoders.items():
            hyps[kind], seconds = decode_all(decoder, test_batches)
            best[kind] = min(best[kind], seconds)

    front = best["frontend"] / audio
    print(f"\nfront end (read, features, forward): RTF {front:.4f}")
    labels = {"greedy": "greedy",
              "beam": f"pyctcdecode beam {args.beam_width} + 3-gram ({pyctc_lm})",
              "beam-words": "  the same, LM words only",
              "flashlight": f"flashlight beam {args.beam_width} + 3-gram (KenLM)"}
    width = max(len(labels[k]) for k in decoders)
    print(f"\n{'decoder':<{width}} {'WER %':>6} {'CER %':>6} {'search RTF':>11} "
          f"{'end-to-end RTF':>15} {'target':>7} {'of target':>10}  alpha/beta")
    e2e = {}
    for kind in decoders:
        rates = error_rates(test_refs, hyps[kind])
        search = best[kind] / audio
        e2e[kind] = front + search
        print(f"{labels[kind]:<{width}} {100 * rates.wer:6.1f} {100 * rates.cer:6.1f} "
              f"{search:11.5f} {e2e[kind]:15.4f} {TARGET:7g} "
              f"{e2e[kind] / TARGET:10.2f}  {notes.get(kind, '')}")
    for kind in ("beam", "beam-words"):
        if kind in best and "flashlight" in best:
            print(f"{NAMES[kind]} / flashlight time ratio: search "
                  f"{best[kind] / best['flashlight']:.1f}, end to end "
                  f"{e2e[kind] / e2e['flashlight']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
