import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import tone, write

from asr.cli.data import main as data_main
from asr.data.importers import CorpusFormatError, detect_format, import_corpus
from asr.data.manifest import read_manifest


def corrupt(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not audio at all" * 10)
    return path


@pytest.fixture
def kaldi_dir(tmp_path):
    data = tmp_path / "corpus" / "train"
    write(data / "flac" / "u1.flac", tone(1.0, 16000), 16000)
    write(data / "flac" / "u2.flac", tone(2.0, 48000), 48000)
    write(tmp_path / "abs.wav", tone(0.5, 8000), 8000)
    corrupt(data / "flac" / "u3.flac")
    (data / "wav.scp").write_text(
        "u1 flac/u1.flac\nu2 flac/u2.flac\nu3 flac/u3.flac\n"
        f"u4 {tmp_path / 'abs.wav'}\nu5 flac/missing.flac\n"
        "u6 flac -c -d -s flac/u1.flac |\nu7 some-command |\n"
    )
    (data / "text").write_text(
        "u1 WE CALL IT BEAR\nu2 ZERO THREE 5\nu3 BROKEN\nu4 Absolute, path!\nu5 GONE\n"
        "u6 PIPED\nu7 PIPED TOO\nu8 NOT IN SCP\n")
    (data / "utt2spk").write_text("u1 s1\nu2 s1\nu3 s2\nu4 s2\nu5 s3\nu6 s3\nu7 s3\nu8 s3\n")
    return data


def test_kaldi_import_reads_resolves_and_skips(kaldi_dir):
    assert detect_format(kaldi_dir) == "kaldi"
    result = import_corpus(kaldi_dir)
    by_id = {u.utt_id: u for u in result.utterances}
    assert sorted(by_id) == ["u1", "u2", "u4", "u6"]
    assert by_id["u1"].text == "we call it bear" and by_id["u1"].speaker == "s1"
    assert by_id["u2"].text == "zero three five" and by_id["u2"].duration == pytest.approx(2.0)
    assert by_id["u2"].extra["text_raw"] == "ZERO THREE 5"
    assert by_id["u4"].duration == pytest.approx(0.5)
    assert by_id["u6"].audio_filepath == by_id["u1"].audio_filepath  # path taken from the pipe
    assert Path(by_id["u1"].audio_filepath).is_absolute()
    reasons = dict(result.skipped)
    assert len(result.skipped) == 4
    assert any("u3.flac" in p and "unreadable" in r for p, r in reasons.items())
    assert any("missing.flac" in p and "no such file" in r for p, r in reasons.items())
    assert "piped wav.scp entry" in reasons["u7"]
    assert reasons["u8"] == "in text but not in wav.scp"
    assert result.hours == pytest.approx(4.5 / 3600, rel=1e-3)  # u1 + u2 + u4 + u6


@pytest.fixture
def segmented_dir(tmp_path):
    """A Kaldi dir whose utterances are segments of two longer recordings."""
    data = tmp_path / "segmented"
    rng = np.random.default_rng(0)
    write(data / "rec1.wav", rng.uniform(-0.5, 0.5, 3 * 16000), 16000, "PCM_16")
    write(data / "audio" / "rec2.flac", tone(2.0, 8000), 8000, "PCM_16")
    (data / "wav.scp").write_text("rec1 rec1.wav\nrec2\taudio/rec2.flac\nrec3 gone.wav\n")
    (data / "segments").write_text("a1 rec1 0.0 1.25\na2\trec1  1.25 3.0\nb1 rec2 0.5 -1\n"
                                   "b2 rec2 0 2.005\nc1 rec3 0 1\n")
    (data / "text").write_text("a1 FIRST PART\na2 Second part, 2\nb1 THIRD\nb2 FOURTH\n"
                               "c1 GONE\nx9 NOT SEGMENTED\n")
    (data / "utt2spk").write_text("a1 s1\na2 s1\nb1 s2\nb2 s2\nc1 s3\nx9 s3\n")
    return data


def test_kaldi_segments_are_cut_into_their_own_files(segmented_dir, tmp_path, capsys):
    out = tmp_path / "data" / "seg.jsonl"
    assert data_main(["import", str(segmented_dir), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "b2': end 2.005 s is beyond the 2 s of recording 'rec2'" in printed
    assert "cut at 2 s" in printed
    by_id = {u.utt_id: u for u in read_manifest(out)}
    assert sorted(by_id) == ["a1", "a2", "b1", "b2"]
    assert {k: (u.duration, u.text, u.speaker) for k, u in by_id.items()} == {
        "a1": (1.25, "first part", "s1"), "a2": (1.75, "second part two", "s1"),
        "b1": (1.5, "third", "s2"), "b2": (2.0, "fourth", "s2")}
    assert by_id["b1"].extra == {"recording": "rec2", "segment_start": 0.5,
                                 "segment_end": 2.0, "text_raw": "THIRD"}
    # each segment is a WAV file of its own, under the manifest's _segments folder, holding
    # exactly the recording's samples [start, end)
    rec1, _ = sf.read(segmented_dir / "rec1.wav", dtype="int16")
    for utt, (lo, hi) in {"a1": (0, 20000), "a2": (20000, 48000)}.items():
        path = Path(by_id[utt].audio_filepath)
        assert path == tmp_path / "data" / "seg_segments" / f"{utt}.wav"
        cut, rate = sf.read(path, dtype="int16")
        assert rate == 16000 and np.array_equal(cut, rec1[lo:hi])
    assert sf.info(by_id["b1"].audio_filepath).samplerate == 8000
    skipped = (tmp_path / "data" / "seg.jsonl.skipped.tsv").read_text().splitlines()
    assert skipped[0] == "x9\tin text but not in segments"
    assert skipped[1].startswith("c1\trecording 'rec3': ") and "gone.wav" in skipped[1]
    assert not [p for p in (tmp_path / "data").rglob("*") if p.name.endswith(".tmp")]


def test_kaldi_segments_need_a_folder_for_the_cut_audio(segmented_dir):
    with pytest.raises(CorpusFormatError, match=r"segments: the segments are cut out of"):
        import_corpus(segmented_dir)


def test_kaldi_malformed_table_names_file_and_line(kaldi_dir):
    (kaldi_dir / "text").write_text("u1 OK\nu2\n")
    with pytest.raises(CorpusFormatError, match=r"text:2: expected"):
        import_corpus(kaldi_dir)


def test_librispeech_tree(tmp_path):
    root = tmp_path / "LibriSpeech" / "dev-clean"
    for spk, chap, n in (("84", "121123", 2), ("174", "50561", 1)):
        folder = root / spk / chap
        lines = []
        for i in range(n):
            utt = f"{spk}-{chap}-{i:04d}"
            write(folder / f"{utt}.flac", tone(1.0 + i, 16000), 16000)
            lines.append(f"{utt} HELLO NUMBER {i}")
        (folder / f"{spk}-{chap}.trans.txt").write_text("\n".join(lines) + "\n")
    assert detect_format(tmp_path / "LibriSpeech") == "librispeech"
    result = import_corpus(tmp_path / "LibriSpeech")
    assert len(result.utterances) == 3 and not result.skipped
    utt = next(u for u in result.utterances if u.utt_id == "84-121123-0001")
    assert (utt.speaker, utt.text, utt.duration) == ("84", "hello number one", 2.0)


def test_fsdd_folder(tmp_path):
    rec = tmp_path / "fsdd" / "recordings"
    for name in ("0_george_0.wav", "7_jackson_12.wav", "3_lucas_4.wav"):
        write(rec / name, tone(0.4, 8000), 8000)
    corrupt(rec / "9_theo_1.wav")
    assert detect_format(tmp_path / "fsdd") == "fsdd"
    result = import_corpus(tmp_path / "fsdd")
    got = {(u.text, u.speaker, u.extra["take"]) for u in result.utterances}
    assert got == {("zero", "george", 0), ("seven", "jackson", 12), ("three", "lucas", 4)}
    assert [p.endswith("9_theo_1.wav") for p, _ in result.skipped] == [True]


def test_folder_with_transcripts(tmp_path):
    root = tmp_path / "mine"
    write(root / "alice" / "a1.ogg", tone(1.0, 22050), 22050, "VORBIS")
    (root / "alice" / "a1.txt").write_text("Good morning, Dave.\n")
    write(root / "b.wav", tone(1.0, 44100), 44100)
    (root / "b.txt").write_text("It's 2 o'clock")
    write(root / "notext.wav", tone(1.0, 16000), 16000)
    (root / "empty.txt").write_text("?!")
    write(root / "empty.wav", tone(1.0, 16000), 16000)
    assert detect_format(root) == "folder"
    result = import_corpus(root)
    by_id = {u.utt_id: u for u in result.utterances}
    assert by_id["alice_a1"].text == "good morning dave" and by_id["alice_a1"].speaker == "alice"
    assert by_id["b"].text == "it's two o'clock" and by_id["b"].speaker is None
    reasons = [r for _, r in result.skipped]
    assert any("no transcript" in r for r in reasons)
    assert any("empty transcript" in r for r in reasons)


def test_unknown_layout_and_bad_format(tmp_path):
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "readme.md").write_text("hi")
    with pytest.raises(CorpusFormatError, match="no known corpus layout"):
        detect_format(tmp_path / "junk")
    with pytest.raises(CorpusFormatError, match="not a folder"):
        detect_format(tmp_path / "nope")
    with pytest.raises(CorpusFormatError, match="format: expected one of"):
        import_corpus(tmp_path / "junk", format="timit")


def test_kaldi_tables_split_on_any_whitespace(kaldi_dir):
    # Kaldi separates a key from its value by any whitespace: tabs and runs of spaces
    (kaldi_dir / "wav.scp").write_text("u1\tflac/u1.flac\nu2   flac/u2.flac\n")
    (kaldi_dir / "text").write_text("u1\tWE CALL IT BEAR\nu2 \t ZERO THREE 5\n")
    (kaldi_dir / "utt2spk").write_text("u1\ts1\nu2  s1\n")
    result = import_corpus(kaldi_dir)
    by_id = {u.utt_id: u for u in result.utterances}
    assert sorted(by_id) == ["u1", "u2"] and not result.skipped
    assert by_id["u1"].text == "we call it bear" and by_id["u2"].text == "zero three five"
    assert by_id["u1"].speaker == "s1" == by_id["u2"].speaker


def test_a_corpus_of_mixed_or_narrow_band_rates_is_imported_with_a_warning(kaldi_dir, tmp_path):
    result = import_corpus(kaldi_dir)
    mixed = [w for w in result.warnings if w.startswith("mixed sample rates")]
    assert len(mixed) == 1
    per_rate = {int(r): int(n) for r, n in re.findall(r"(\d+) Hz: (\d+) files", mixed[0])}
    assert set(per_rate) == {48000, 16000, 8000}
    assert sum(per_rate.values()) == len(result.utterances)
    assert "features.sample_rate" in mixed[0]
    narrow = tmp_path / "narrow"
    write(narrow / "a.wav", tone(0.5, 4000), 4000)
    (narrow / "a.txt").write_text("one\n")
    low = import_corpus(narrow, format="folder")
    assert [w for w in low.warnings if "below 8000 Hz" in w and "a.wav" in w]
    assert not [w for w in low.warnings if w.startswith("mixed")]


def test_audio_below_the_model_rate_is_upsampled_with_one_warning(tmp_path):
    import asr.audio as audio

    audio._WARNED_RATES.clear()
    for name in ("a.wav", "b.wav"):
        write(tmp_path / name, tone(0.5, 8000), 8000)
    with pytest.warns(audio.AudioWarning, match=r"a\.wav: 8000 Hz audio upsampled to the "
                                                r"model's 16000 Hz"):
        assert audio.load_audio(tmp_path / "a.wav", 16000).shape == (8000,)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")     # once per pair of rates, not once per file
        audio.load_audio(tmp_path / "b.wav", 16000)
        audio.load_audio(tmp_path / "b.wav", 8000)
        stream = audio.AudioStream(tmp_path / "b.wav", 8000)
        assert stream.num_samples == 4000
