"""asr-decode's output formats (tsv, jsonl, kaldi, trn, ctm) and utterance ids, and asr-eval's
sclite/Kaldi references (--ref) and per-speaker or per-utterance breakdown (--details)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import tone_corpus

from asr.cli.decode import main as decode_main
from asr.cli.evaluate import main as eval_main
from asr.cli.evaluate import read_references
from asr.data.manifest import read_manifest, write_manifest
from asr.decode import BeamConfig, BeamSearchDecoder, greedy_hypotheses
from asr.decode.formats import format_hypothesis
from asr.decode.inputs import AudioInput, unique_ids
from asr.text import CharVocab

FRAME_SHIFT = 0.02   # the tone model's: 10 ms hops, every 2nd frame kept
CTM_LINE = re.compile(r"^(\S+) 1 (\d+\.\d{3}) (\d+\.\d{3}) (\S+) (\d\.\d{4})$")


def decode_to_file(tmp_path: Path, capsys, *args: str) -> list[str]:
    out = tmp_path / f"out_{len(list(tmp_path.glob('out_*')))}.txt"
    assert decode_main([*args, "--output", str(out)]) == 0, capsys.readouterr().err
    assert capsys.readouterr().out == ""   # everything went to the file
    return out.read_text().splitlines()


def on_the_frame_grid(seconds: float) -> bool:
    return abs(seconds / FRAME_SHIFT - round(seconds / FRAME_SHIFT)) < 1e-6


def test_each_output_format_has_its_exact_shape(tone_model, tone_manifests, tmp_path, capsys):
    manifest = tone_manifests / "dev.jsonl"
    utts = read_manifest(manifest)
    ids = [u.utt_id for u in utts]
    model = str(tone_model)
    tsv = decode_to_file(tmp_path, capsys, model, str(manifest))
    assert [line.split("\t")[0] for line in tsv] == [u.audio_filepath for u in utts]
    texts = [line.split("\t")[1] for line in tsv]

    records = [json.loads(line) for line in
               decode_to_file(tmp_path, capsys, model, str(manifest), "--output-format", "jsonl")]
    assert [r["utt_id"] for r in records] == ids and [r["text"] for r in records] == texts
    for r in records:
        assert set(r) == {"path", "utt_id", "text", "words", "confidence", "duration",
                          "decode_seconds"}
        assert all(0 <= w["confidence"] <= 1 for w in r["words"])  # greedy: per word
    alias = [json.loads(line) for line in decode_to_file(tmp_path, capsys, model, str(manifest),
                                                          "--json")]
    assert [{**r, "decode_seconds": 0} for r in alias] == [
        {**r, "decode_seconds": 0} for r in records]

    kaldi = decode_to_file(tmp_path, capsys, model, str(manifest), "--output-format", "kaldi")
    assert kaldi == [f"{i} {t}" if t else i for i, t in zip(ids, texts)]

    trn = decode_to_file(tmp_path, capsys, model, str(manifest), "--output-format", "trn")
    assert trn == [f"{t} ({i})" if t else f"({i})" for i, t in zip(ids, texts)]
    # and asr-eval reads it back as references
    (tmp_path / "hyp.trn").write_text("\n".join(trn) + "\n")
    assert read_references(tmp_path / "hyp.trn") == (dict(zip(ids, texts)), "trn")

    ctm = decode_to_file(tmp_path, capsys, model, str(manifest), "--output-format", "ctm")
    by_utt: dict[str, list[tuple[float, float, str, float]]] = {}
    for line in ctm:
        match = CTM_LINE.match(line)
        assert match, line
        utt, start, dur, word, conf = match.groups()
        by_utt.setdefault(utt, []).append((float(start), float(dur), word, float(conf)))
    assert list(by_utt) == [i for i, t in zip(ids, texts) if t]   # in order, no empty ones
    duration = {r["utt_id"]: r["duration"] for r in records}
    for utt, words in by_utt.items():
        assert " ".join(w for _, _, w, _ in words) == texts[ids.index(utt)]
        ends = [s + d for s, d, _, _ in words]
        starts = [s for s, _, _, _ in words]
        assert starts == sorted(starts) and all(e <= s for e, s in zip(ends, starts[1:]))
        for start, dur, _, conf in words:
            assert 0 <= start and dur > 0 and start + dur <= duration[utt] + 1e-9
            assert on_the_frame_grid(start)
            # a word's end is on the grid unless clipped to the file's end
            assert on_the_frame_grid(start + dur) or start + dur == pytest.approx(duration[utt])
            assert 0 <= conf <= 1


@pytest.mark.parametrize("decoder", ["greedy", "beam"])
def test_ctm_of_several_words_follows_the_alignment(decoder):
    vocab = CharVocab()
    probs = np.full((14, len(vocab)), 1e-4)
    path = "__ab_ _c__d ee"   # '_' is a blank frame
    for t, ch in enumerate(path):
        probs[t, vocab.blank_id if ch == "_" else vocab.tokens.index(ch)] = 1.0
    logits = torch.tensor(np.log(probs / probs.sum(1, keepdims=True)))[None].float()
    lengths = torch.tensor([14])
    if decoder == "greedy":
        (hyp,) = greedy_hypotheses(logits, lengths, vocab, frame_shift=0.04)
    else:
        (hyp,) = BeamSearchDecoder(vocab, BeamConfig(beam_width=4), frame_shift=0.04
                                   ).decode(logits, lengths)
    assert hyp.text == "ab cd e"
    lines = format_hypothesis("ctm", "x.wav", "utt1", hyp, duration=14 * 0.04,
                              decode_seconds=0.0)
    fields = [CTM_LINE.match(line).groups() for line in lines]
    assert [f[3] for f in fields] == ["ab", "cd", "e"]
    starts = [float(f[1]) for f in fields]
    ends = [float(f[1]) + float(f[2]) for f in fields]
    assert starts == sorted(starts) and all(e <= s + 1e-9 for e, s in zip(ends, starts[1:]))
    assert starts[0] == pytest.approx(0.08)      # 'a' on frame 2
    assert ends[-1] <= 14 * 0.04 + 1e-9


def test_utterance_ids_are_unique_and_say_how(tone_model, tmp_path, capsys):
    utt = tone_corpus(tmp_path / "src", 1, seed=3)[0]
    data = sf.read(utt.audio_filepath)[0]
    files = []
    for folder, name in (("a", "take.wav"), ("b", "take.wav"), ("c", "take-2.wav"),
                         ("d", "my take.wav")):
        (tmp_path / folder).mkdir()
        sf.write(tmp_path / folder / name, data, 16000)
        files.append(str(tmp_path / folder / name))
    assert decode_main([str(tone_model), *files, "--output-format", "kaldi"]) == 0
    captured = capsys.readouterr()
    ids = [line.split()[0] for line in captured.out.splitlines()]
    # the second 'take' cannot be take-2: a real file has that name
    assert ids == ["take", "take-3", "take-2", "my_take"]
    assert "1 utterance id(s) repeated an earlier one" in captured.err
    # manifest utt_ids win over file names
    assert unique_ids([AudioInput("/x/a.wav", "spk1 u1"), AudioInput("/y/a.wav")]) == (
        ["spk1_u1", "a"], 0)


def test_bad_output_flags_get_clear_errors(tone_model, tone_manifests, tmp_path, capsys):
    wav = str(tone_manifests / "audio" / "u1_0.wav")
    cases = [
        (["--output-format", "xml"],
         ["argument --output-format: invalid choice:", "xml", "tsv", "jsonl", "ctm"]),
        (["--json", "--output-format", "ctm"],
         ["--json: the same as --output-format jsonl, but --output-format is 'ctm'"]),
        (["--output", str(tmp_path / "missing" / "out.txt")],
         ["--output: cannot write", "missing/out.txt"]),
        (["--chunk-seconds", "-1"],
         ["argument --chunk-seconds: expected a finite number >= 0, got -1"]),
        (["--chunk-seconds", "some"], ["argument --chunk-seconds: expected a number >= 0, got "
                                       "'some'"]),
    ]
    for extra, fragments in cases:
        try:
            code = decode_main([str(tone_model), wav, *extra])
        except SystemExit as exit_:   # argparse's own errors
            code = exit_.code
        err = capsys.readouterr().err
        assert code == 2 and all(f in err for f in fragments), (extra, err)


def _trn(utts, upper: bool = True) -> str:
    return "".join(f"{u.text.upper() if upper else u.text} ({u.utt_id})\n" for u in utts)


def test_eval_scores_against_sclite_references(tone_model, tone_manifests, tmp_path, capsys):
    manifest = tone_manifests / "dev.jsonl"
    utts = read_manifest(manifest)
    assert eval_main([str(tone_model), str(manifest), "--decoder", "greedy",
                      "--out", str(tmp_path / "manifest")]) == 0
    expected = json.loads((tmp_path / "manifest" / "eval.json").read_text())
    capsys.readouterr()
    refs = tmp_path / "refs.trn"
    refs.write_text(_trn(reversed(utts)) + "extra words (not_in_data)\n")
    # the audio as a glob: ids are the file names, which are the manifest's utt_ids here
    pattern = str(tone_manifests / "audio" / "u1_*.wav")
    assert eval_main([str(tone_model), pattern, "--ref", str(refs), "--decoder", "greedy",
                      "--details", "--out", str(tmp_path / "trn")]) == 0
    captured = capsys.readouterr()
    report = json.loads((tmp_path / "trn" / "eval.json").read_text())
    assert report["decoders"]["greedy"]["wer"] == expected["decoders"]["greedy"]["wer"]
    assert "1 of the 13 references in" in captured.err     # the one with no audio
    # --details: one row per utterance (a glob names no speakers), in the table and the report
    assert "per utterance" in captured.out
    rows = report["details"]["rows"]
    assert report["details"]["by"] == "utterance"
    assert sorted(r["key"] for r in rows) == sorted(u.utt_id for u in utts)
    assert sum(r["decoders"]["greedy"]["errors"] for r in rows) == sum(
        expected["decoders"]["greedy"][k] for k in ("substitutions", "deletions", "insertions"))
    for r in rows:
        assert r["key"] in captured.out
        assert r["decoders"]["greedy"]["wer"] == r["decoders"]["greedy"]["errors"] / r["words"]

    # a Kaldi text file works the same way, with the manifest's own ids
    kaldi = tmp_path / "text"
    kaldi.write_text("".join(f"{u.utt_id}\t{u.text}\n" for u in utts))
    assert eval_main([str(tone_model), str(manifest), "--ref", str(kaldi), "--decoder",
                      "greedy", "--out", str(tmp_path / "kaldi")]) == 0
    report = json.loads((tmp_path / "kaldi" / "eval.json").read_text())
    assert report["decoders"]["greedy"]["wer"] == expected["decoders"]["greedy"]["wer"]


def test_eval_details_per_speaker(tone_model, tone_manifests, tmp_path, capsys):
    utts = read_manifest(tone_manifests / "dev.jsonl")
    for i, u in enumerate(utts):
        u.speaker = "alice" if i % 3 else "bob"
    write_manifest(tmp_path / "two.jsonl", utts)
    assert eval_main([str(tone_model), str(tmp_path / "two.jsonl"), "--decoder",
                      "greedy,beam", "--details", "--out", str(tmp_path / "e")]) == 0
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "e" / "eval.json").read_text())
    rows = {r["key"]: r for r in report["details"]["rows"]}
    assert report["details"]["by"] == "speaker" and set(rows) == {"alice", "bob"}
    assert rows["alice"]["utterances"] == 8 and rows["bob"]["utterances"] == 4
    assert "per speaker" in out and "alice" in out and "beam WER %" in out
    for kind in ("greedy", "beam"):
        total = report["decoders"][kind]
        assert sum(r["decoders"][kind]["errors"] for r in rows.values()) == (
            total["substitutions"] + total["deletions"] + total["insertions"])
        assert sum(r["words"] for r in rows.values()) == total["ref_words"]


def test_bad_references_get_clear_errors(tone_model, tone_manifests, tmp_path, capsys):
    manifest = tone_manifests / "dev.jsonl"
    utts = read_manifest(manifest)
    (tmp_path / "bad.trn").write_text("aa (u1_0)\nhello\n")
    (tmp_path / "twice.trn").write_text(_trn(utts) + _trn(utts[:1]))
    (tmp_path / "short.trn").write_text(_trn(utts[1:]))
    cases = [
        (tmp_path / "missing.trn", "--ref: cannot read"),
        (tmp_path / "bad.trn", "bad.trn line 2: expected sclite's 'text (utt_id)', got 'hello'"),
        (tmp_path / "twice.trn", f"line {len(utts) + 1}: utterance id 'u1_0' appears twice"),
        (tmp_path / "short.trn", f"has no reference for 1 of the {len(utts)} utterance(s) of "
                                 "DATA: u1_0"),
    ]
    for ref, message in cases:
        assert eval_main([str(tone_model), str(manifest), "--ref", str(ref),
                          "--out", str(tmp_path / "e")]) == 2
        assert message in capsys.readouterr().err


def test_an_interrupted_decode_keeps_the_previous_output_whole(tone_model, tone_manifests,
                                                               tmp_path, monkeypatch, capsys):
    import asr.cli.decode as cli

    wavs = [str(p) for p in sorted((tone_manifests / "audio").glob("*.wav"))[:3]]
    out = tmp_path / "hyp.txt"
    out.write_text("the previous run's output\n")
    calls = []

    def failing(*args, **kwargs):
        calls.append(args)
        if len(calls) == 2:
            raise KeyboardInterrupt      # as a Ctrl-C after the first file
        return format_hypothesis(*args, **kwargs)

    monkeypatch.setattr(cli, "format_hypothesis", failing)
    with pytest.raises(KeyboardInterrupt):
        decode_main([str(tone_model), *wavs, "--output", str(out), "--batch-size", "1"])
    assert out.read_text() == "the previous run's output\n"
    assert [p.name for p in tmp_path.iterdir()] == ["hyp.txt"]    # no temporary file left
    monkeypatch.setattr(cli, "format_hypothesis", format_hypothesis)
    assert decode_main([str(tone_model), *wavs, "--output", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 3
