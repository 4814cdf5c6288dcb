import json

import pytest

from asr.config_errors import ConfigError
from asr.data.manifest import ManifestError, Utterance, read_manifest, write_manifest
from asr.data.split import split_by_speaker
from asr.data.stats import corpus_stats


def corpus(n_speakers=20, per_speaker=10):
    return [Utterance(f"/a/{s}_{i}.wav", 1.0 + i % 3, "hello world", f"spk{s}", f"{s}_{i}")
            for s in range(n_speakers) for i in range(per_speaker)]


def test_split_is_speaker_disjoint_and_sized():
    splits = split_by_speaker(corpus(), dev_fraction=0.1, test_fraction=0.2, seed=3)
    speakers = {k: {u.speaker for u in v} for k, v in splits.items()}
    assert not speakers["train"] & speakers["dev"]
    assert not speakers["train"] & speakers["test"]
    assert not speakers["dev"] & speakers["test"]
    assert (len(splits["train"]), len(splits["dev"]), len(splits["test"])) == (140, 20, 40)
    assert split_by_speaker(corpus(), 0.1, 0.2, seed=3) == splits
    assert split_by_speaker(corpus(), 0.1, 0.2, seed=4)["test"] != splits["test"]


def test_named_speakers_go_where_asked():
    splits = split_by_speaker(corpus(), 0.0, 0.0, test_speakers=["spk3"], dev_speakers=["spk5"])
    assert {u.speaker for u in splits["test"]} == {"spk3"}
    assert {u.speaker for u in splits["dev"]} == {"spk5"}
    with pytest.raises(ConfigError, match=r"test_speakers: unknown speaker\(s\) \['nobody'\]"):
        split_by_speaker(corpus(), test_speakers=["nobody"])


def test_split_refuses_missing_speaker_and_bad_fractions():
    utts = corpus(2, 2) + [Utterance("/a/x.wav", 1.0, "x", None, "x")]
    with pytest.raises(ConfigError, match="utterance x has no speaker"):
        split_by_speaker(utts)
    with pytest.raises(ConfigError, match="dev_fraction \\+ test_fraction"):
        split_by_speaker(corpus(), 0.5, 0.5)


def test_manifest_round_trip_and_relative_paths(tmp_path):
    utts = corpus(2, 2)
    utts[0].extra["take"] = 3
    write_manifest(tmp_path / "m.jsonl", utts)
    assert read_manifest(tmp_path / "m.jsonl") == utts
    (tmp_path / "rel.jsonl").write_text(
        json.dumps({"audio_filepath": "a/b.wav", "duration": 1.0, "text": "x"}) + "\n")
    assert read_manifest(tmp_path / "rel.jsonl")[0].audio_filepath == str(tmp_path / "a/b.wav")


def test_bad_manifest_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"audio_filepath": "a.wav", "duration": 1, "text": "x"}\n{"text": "y"}\n')
    with pytest.raises(ManifestError, match=r"bad.jsonl:2: missing field\(s\)"):
        read_manifest(bad)
    bad.write_text("{not json\n")
    with pytest.raises(ManifestError, match="bad.jsonl:1: invalid JSON"):
        read_manifest(bad)


def test_corpus_stats():
    s = corpus_stats(corpus(3, 4))
    assert (s.utterances, s.speakers, s.words, s.word_types) == (12, 3, 24, 2)
    assert s.hours == pytest.approx((3 * (1 + 2 + 3 + 1)) / 3600, abs=1e-4)
    assert (s.duration_min, s.duration_max, s.duration_median) == (1.0, 3.0, 1.5)
    assert "".join(s.characters) == " dehlorw"


def test_split_by_field_and_where_parsing():
    from asr.data.split import parse_where, split_by_field

    utts = [Utterance(f"/a/{t}.wav", 1.0, "x", "s", str(t), {"take": t}) for t in range(12)]
    field, values = parse_where("take=0-4")
    assert (field, values) == ("take", ["0", "1", "2", "3", "4"])
    splits = split_by_field(utts, field, values, parse_where("take=5,6")[1])
    assert [u.extra["take"] for u in splits["test"]] == [0, 1, 2, 3, 4]
    assert [u.extra["take"] for u in splits["dev"]] == [5, 6]
    assert len(splits["train"]) == 5
    with pytest.raises(ConfigError, match="expected FIELD=V1,V2"):
        parse_where("take")
    with pytest.raises(ConfigError, match="has no field 'session'"):
        split_by_field(utts, "session", ["1"])
    with pytest.raises(ConfigError, match=r"values \['3'\] are in both"):
        split_by_field(utts, "take", ["3"], ["3"])
