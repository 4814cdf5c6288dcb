import json

from conftest import requires_espeak, tone, write

from asr.cli.data import main
from asr.data.manifest import read_manifest


def test_import_stats_split(tmp_path, capsys):
    rec = tmp_path / "fsdd" / "recordings"
    for d in range(3):
        for spk in ("ann", "bob", "cid", "dee"):
            write(rec / f"{d}_{spk}_0.wav", tone(0.5, 8000, 300 + 100 * d), 8000)
    (rec / "5_eve_1.wav").write_bytes(b"broken")
    out = tmp_path / "m.jsonl"
    assert main(["import", str(tmp_path / "fsdd"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "fsdd corpus, 12 utterances" in printed and "skipped 1" in printed
    assert "5_eve_1.wav" in (tmp_path / "m.jsonl.skipped.tsv").read_text()
    assert len(read_manifest(out)) == 12

    assert main(["stats", str(out), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)[str(out)]
    assert (stats["utterances"], stats["speakers"], stats["word_types"]) == (12, 4, 3)
    assert stats["hours"] == round(6.0 / 3600, 4)
    assert main(["stats", str(out)]) == 0
    assert "corpus statistics" in capsys.readouterr().out

    assert main(["split", str(out), "--out-dir", str(tmp_path / "s"), "--test-speakers", "ann",
                 "--dev-speakers", "bob"]) == 0
    test = read_manifest(tmp_path / "s" / "test.jsonl")
    assert {u.speaker for u in test} == {"ann"}
    assert len(read_manifest(tmp_path / "s" / "train.jsonl")) == 6


def test_errors_exit_2_and_name_the_input(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["import", str(tmp_path / "empty"), "--out", str(tmp_path / "m.jsonl")]) == 2
    assert f"{tmp_path / 'empty'}: no known corpus layout" in capsys.readouterr().err
    assert main(["stats", str(tmp_path / "missing.jsonl")]) == 2
    assert "missing.jsonl: no such manifest" in capsys.readouterr().err
    assert main(["synth", "--out", str(tmp_path / "x"), "--num-voices", "3",
                 "--test-voices", "3"]) == 2
    assert "synth.num_voices" in capsys.readouterr().err


@requires_espeak
def test_synth_command(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path / "c"), "--num-utts", "20", "--num-voices", "6",
                 "--test-voices", "2", "--dev-voices", "1", "--seed", "5"]) == 0
    assert "wrote 20 utterances" in capsys.readouterr().out
    total = sum(len(read_manifest(tmp_path / "c" / f"{s}.jsonl")) for s in ("train", "dev",
                                                                          "test"))
    assert total == 20
