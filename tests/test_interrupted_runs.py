"""No good file is lost: atomic writes, one run per folder, resumes that check their config,
and a SIGKILL in the middle of writing an artifact."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from conftest import REPO, compose_train, tiny_overrides
from test_compress import compose_compress, tone_data

from asr import atomic
from asr.compress.app import compress
from asr.compress.artifact import read_artifact
from asr.config_errors import ConfigError
from asr.run_lock import FolderInUseError, run_lock
from asr.train.app import train
from asr.train.resume import config_differences


def _env(*front: Path) -> dict[str, str]:
    """The environment of a child Python: ``front`` folders, then this checkout, on its path."""
    path = [str(p) for p in front] + [str(REPO), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in path if p)}


# -- atomic writes --------------------------------------------------------------------------

def test_an_interrupted_write_leaves_the_previous_file(tmp_path):
    target = tmp_path / "sub" / "metrics.json"
    atomic.write_text(target, '{"wer": 0.1}')
    with pytest.raises(RuntimeError), atomic.atomic_open(target) as f:
        f.write('{"wer": ')
        raise RuntimeError("killed mid-write")
    assert target.read_text() == '{"wer": 0.1}'
    with pytest.raises(RuntimeError), atomic.replacing(target) as tmp:
        tmp.write_text("torn")
        raise RuntimeError
    assert target.read_text() == '{"wer": 0.1}'
    assert sorted(p.name for p in target.parent.iterdir()) == ["metrics.json"]  # no temp left
    # the mode a plain open() gives, not mkstemp's 0600
    plain = tmp_path / "plain"
    plain.write_text("x")
    assert target.stat().st_mode == plain.stat().st_mode
    atomic.copy_file(plain, target)
    assert target.read_text() == "x"



@pytest.fixture
def fail_before_rename(monkeypatch):
    """``fail_before_rename(name)``: from now on the atomic write of a file called ``name``
    fails once its bytes are in the temporary file, before the rename (a full disk, a kill)."""
    real = atomic._fsync_file

    def _arm(name: str) -> None:
        def fsync(tmp: Path) -> None:
            if tmp.name.startswith(f".{name}."):
                raise OSError(f"no space left writing {name}")
            real(tmp)
        monkeypatch.setattr(atomic, "_fsync_file", fsync)
    return _arm


def _no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


def test_an_interrupted_arpa_build_keeps_the_previous_model(tmp_path, monkeypatch,
                                                            fail_before_rename, capsys):
    from asr.cli.lm import main as lm_main
    from asr.lm import kneser_ney

    (tmp_path / "a.txt").write_text("the cat sat\nthe dog sat\n")
    (tmp_path / "b.txt").write_text("a bird flew\na bird sang\n")
    arpa = tmp_path / "lm" / "lm.arpa"
    assert lm_main(["build", str(tmp_path / "a.txt"), "--order", "2", "--out", str(arpa)]) == 0
    before = arpa.read_bytes()
    calls = []

    def log10_then_fail(x: float) -> float:   # fails half-way through the n-gram lines
        calls.append(x)
        if len(calls) == 6:
            raise RuntimeError("killed mid-write")
        return math.log10(x) if x > 0 else -99.0

    monkeypatch.setattr(kneser_ney, "_log10", log10_then_fail)
    with pytest.raises(RuntimeError, match="killed mid-write"):
        lm_main(["build", str(tmp_path / "b.txt"), "--order", "2", "--out", str(arpa)])
    assert arpa.read_bytes() == before and _no_temp_files(arpa.parent)
    monkeypatch.undo()
    fail_before_rename(arpa.name)   # written in full, then the disk fills before the rename
    capsys.readouterr()
    assert lm_main(["build", str(tmp_path / "b.txt"), "--order", "2", "--out", str(arpa)]) == 2
    assert "asr-lm: error: no space left writing lm.arpa" in capsys.readouterr().err
    assert arpa.read_bytes() == before and _no_temp_files(arpa.parent)
    monkeypatch.undo()
    assert lm_main(["build", str(tmp_path / "b.txt"), "--order", "2", "--out", str(arpa)]) == 0
    assert b" bird" in arpa.read_bytes() and b" cat" not in arpa.read_bytes()


def test_a_failed_report_figure_keeps_the_previous_one(tmp_path, fail_before_rename):
    from hw.report.plots import pe_utilization

    png = tmp_path / "report" / "pe_utilization.png"
    assert pe_utilization([("lstm / ese", [0.5, 0.7])], png) == png
    before = png.read_bytes()
    assert before.startswith(b"\x89PNG")
    fail_before_rename(png.name)
    with pytest.raises(OSError, match="no space left"):
        pe_utilization([("lstm / ese", [0.9, 0.1, 0.4])], png)
    assert png.read_bytes() == before and _no_temp_files(png.parent)


def test_a_failed_trace_plot_keeps_the_previous_one(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    from hw.cli import plot_format_sweep

    sweep = [{"format": "4-12", "sqnr_db": 30.0}, {"format": "2-6", "sqnr_db": 8.0}]
    png, svg = tmp_path / "formats.png", tmp_path / "formats.svg"
    plot_format_sweep(sweep, str(png))
    plot_format_sweep(sweep, str(svg))   # the format follows the suffix, not the temp name
    before = png.read_bytes()
    assert before.startswith(b"\x89PNG") and b"<svg" in svg.read_bytes()[:500]
    real = Figure.savefig

    def savefig_then_fail(self, fname, *args, **kwargs):
        real(self, fname, *args, **kwargs)
        raise RuntimeError("killed after rendering")

    monkeypatch.setattr(Figure, "savefig", savefig_then_fail)
    with pytest.raises(RuntimeError, match="killed after rendering"):
        plot_format_sweep(sweep[:1], str(png))
    assert png.read_bytes() == before and _no_temp_files(tmp_path)


def test_a_failed_memory_image_export_keeps_the_previous_images(tmp_path, monkeypatch):
    from test_hw import make_artifact, small_lstm

    from hw import export
    from hw.config import load_engine

    art = make_artifact(small_lstm(), "ese", "compress.prune.num_pes=4")
    out = tmp_path / "export"
    written = export.export_engine(art, load_engine("ese", ["num_pes=4"]), out)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert set(written) == set(before) and (out / "manifest.json") in before
    assert any(".pe3." in p.name for p in written)
    real = export._write_images

    def dies_halfway(model, cfg, folder, *args):
        real(model, cfg, folder, *args)
        raise OSError("no space left writing manifest.json")
    monkeypatch.setattr(export, "_write_images", dies_halfway)
    with pytest.raises(OSError, match="no space left"):
        export.export_engine(art, load_engine("ese", ["num_pes=2"]), out)
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before                                # every old image, byte for byte
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]   # no temporary folder
    # a finished export replaces the folder whole: the 4-PE images do not outlive it
    monkeypatch.setattr(export, "_write_images", real)
    written = export.export_engine(art, load_engine("ese", ["num_pes=2"]), out)
    assert {p for p in out.rglob("*") if p.is_file()} == set(written)
    assert not any(".pe3." in p.name for p in written)


def test_a_folder_replacement_killed_between_its_renames_is_undone(tmp_path):
    out = tmp_path / "images"
    with atomic.replacing_dir(out, "a.hex") as tmp:
        (tmp / "a.hex").write_text("old")
    # a writer killed after moving the old folder aside, before moving the new one in
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    os.rename(out, tmp_path / f".images.{dead}.deadbeef.old")
    (tmp_path / f".images.{dead}.0badcafe.tmp").mkdir()   # and its half-written folder
    # a sibling's leftovers ("images.7": a name that ends in digits) are not this writer's
    sibling = tmp_path / f".images.7.{dead}.deadbeef.old"
    sibling.mkdir()
    with pytest.raises(RuntimeError), atomic.replacing_dir(out, "a.hex") as tmp:
        (tmp / "a.hex").write_text("torn")
        raise RuntimeError("killed")
    assert (out / "a.hex").read_text() == "old"            # the old folder is back
    assert sorted(p.name for p in tmp_path.iterdir()) == [sibling.name, "images"]


def test_a_folder_replacement_refuses_a_folder_it_did_not_write(tmp_path, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.ckpt").write_text("weights")
    with pytest.raises(FileExistsError, match=r"run: holds files that this command did not "
                                              r"write \(no manifest.json\)"):
        with atomic.replacing_dir(run, "manifest.json"):
            pass
    assert (run / "model.ckpt").read_text() == "weights"
    monkeypatch.chdir(run)
    for here in (Path("."), tmp_path):
        with pytest.raises(FileExistsError, match="the working folder or one above it"):
            with atomic.replacing_dir(here, "manifest.json"):
                pass
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="is a file"):
        with atomic.replacing_dir(tmp_path / "file", "manifest.json"):
            pass
    with atomic.replacing_dir(tmp_path / "empty", "manifest.json") as tmp:   # new: fine
        (tmp / "manifest.json").write_text("{}")
    assert (run / "model.ckpt").is_file() and (tmp_path / "empty" / "manifest.json").is_file()


def test_a_failed_skipped_list_keeps_the_previous_one(tmp_path, fail_before_rename):
    from conftest import tone, write

    from asr.cli.data import main as data_main

    src = tmp_path / "corpus"
    write(src / "good.wav", tone(0.5, 16000), 16000, "PCM_16")
    (src / "good.txt").write_text("good")
    (src / "bad.wav").write_bytes(b"not audio" * 20)
    (src / "bad.txt").write_text("bad")
    out = tmp_path / "data" / "c.jsonl"
    assert data_main(["import", str(src), "--out", str(out)]) == 0
    skipped = tmp_path / "data" / "c.jsonl.skipped.tsv"
    before = skipped.read_bytes()
    assert b"bad.wav\t" in before
    (src / "worse.wav").write_bytes(b"")
    (src / "worse.txt").write_text("worse")
    fail_before_rename(skipped.name)
    with pytest.raises(OSError, match="no space left"):
        data_main(["import", str(src), "--out", str(out)])
    assert skipped.read_bytes() == before and _no_temp_files(tmp_path / "data")


# -- one run per folder ---------------------------------------------------------------------

HOLD = textwrap.dedent("""
    import sys, time
    from asr.run_lock import run_lock
    with run_lock(sys.argv[1], "folder", "wait"):
        print("locked", flush=True)
        time.sleep(600)
""")


@pytest.fixture
def hold_lock():
    """``hold_lock(path)`` -> a child process holding ``path``'s lock (killed at the end)."""
    children = []

    def _hold(lock: Path) -> subprocess.Popen:
        child = subprocess.Popen([sys.executable, "-c", HOLD, str(lock)], env=_env(),
                                 stdout=subprocess.PIPE, text=True)
        children.append(child)
        assert child.stdout.readline().strip() == "locked"
        return child

    yield _hold
    for child in children:
        child.kill()
        child.wait()


def test_a_held_lock_stops_a_second_run_and_a_dead_holders_does_not(tmp_path, hold_lock):
    lock = tmp_path / "run" / ".lock"
    holder = hold_lock(lock)
    with pytest.raises(FolderInUseError, match=rf"run_dir x is in use by PID {holder.pid} "
                       r"\(started .*\); wait for it or pass another run_dir"):
        with run_lock(lock, "run_dir x", "pass another run_dir"):
            pass
    holder.send_signal(signal.SIGKILL)   # no clean-up runs: the lock file stays behind
    holder.wait()
    assert lock.exists()
    with run_lock(lock, "run_dir x", "pass another run_dir"):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert not lock.exists()            # removed by its holder when the run ends
    with run_lock(lock, "run_dir x", "hint", enabled=False):   # a DDP rank > 0
        assert not lock.exists()


def test_train_and_compress_refuse_a_folder_in_use(tone_manifests, tone_model, tmp_path,
                                                   hold_lock):
    run = tmp_path / "run"
    holder = hold_lock(run / ".lock")
    start = time.time()
    with pytest.raises(FolderInUseError, match=rf"run_dir {run} is in use by PID {holder.pid}"):
        train(compose_train(*tiny_overrides(tone_manifests, run, "trainer.max_epochs=1")))
    assert time.time() - start < 10 and not (run / "config.yaml").exists()
    holder.kill()   # SIGKILL: its lock file stays, and does not block
    holder.wait()
    train(compose_train(*tiny_overrides(tone_manifests, run, "trainer.max_epochs=1")))
    assert (run / "model.ckpt").is_file() and not (run / ".lock").exists()
    out = tmp_path / "ese.model"
    holder = hold_lock(Path(f"{out}.lock"))
    with pytest.raises(FolderInUseError, match=rf"out {out} is in use by PID {holder.pid}.*"
                       "pass another out"):
        compress(compose_compress(f"model={tone_model}", "compress=ese",
                                  "compress.prune.num_pes=8", f"out={out}"))
    assert not out.exists()
    holder.kill()
    holder.wait()
    compress(compose_compress(f"model={tone_model}", "compress=ese", "compress.prune.num_pes=8",
                              f"out={out}"))
    assert read_artifact(out).compress.name == "ese"
    assert not Path(f"{out}.lock").exists()


# -- resume checks the config ---------------------------------------------------------------

def test_config_differences_name_the_keys():
    saved = {"model": {"hidden_size": 48, "layers": 1}, "resume": False, "trainer": {
        "max_epochs": 1}, "features": {"global_mean": [0.5]}, "run_dir": "a"}
    current = {"model": {"hidden_size": 64, "layers": 1, "dropout": 0.1}, "resume": True,
               "trainer": {"max_epochs": 2}, "features": {"global_mean": None}, "run_dir": "b"}
    diffs = config_differences(saved, current, free=("resume", "trainer.max_epochs", "run_dir"),
                               derived=("features.global_mean",))
    assert [(k, a, b) for k, a, b in diffs if k != "model.dropout"] == [
        ("model.hidden_size", 48, 64)]
    assert [k for k, _, _ in diffs] == ["model.dropout", "model.hidden_size"]


def test_checkpoint_callbacks_restore_the_state_of_lightnings_own(tmp_path):
    # a run started before these callbacks (Lightning's ModelCheckpoint) resumes its records
    from pytorch_lightning.callbacks import ModelCheckpoint

    from asr.train.checkpoint import LastCheckpoint, RunCheckpoint

    best = {"monitor": "val_wer", "mode": "min", "save_top_k": 2}
    assert RunCheckpoint(tmp_path, **best).state_key == ModelCheckpoint(tmp_path,
                                                                        **best).state_key
    assert LastCheckpoint(tmp_path, 50).state_key == ModelCheckpoint(
        tmp_path, save_last=True, save_top_k=0, every_n_train_steps=50).state_key


def test_train_resume_refuses_another_config_and_survives_a_moved_folder(tone_manifests,
                                                                       tmp_path):
    run = tmp_path / "run"
    first = train(compose_train(*tiny_overrides(tone_manifests, run, "trainer.max_epochs=1")))
    with pytest.raises(ConfigError, match=rf"resume: the run in {run} was started with a "
                       r"different config: model.hidden_size 48 -> 64; optim.optimizer.lr "
                       r"0.005 -> 0.001; resume it with that config, or pass resume=false "
                       "overwrite=true to start over"):
        train(compose_train(*tiny_overrides(tone_manifests, run, "trainer.max_epochs=2",
                                            "resume=true", "model.hidden_size=64",
                                            "optim.optimizer.lr=0.001")))
    # A moved run folder resumes: the best checkpoint's record follows it (Lightning keeps
    # the old path without its score, and keeping the best epoch failed with a TypeError).
    moved = tmp_path / "moved"
    shutil.copytree(run, moved)
    (moved / "model.ckpt").unlink()
    again = train(compose_train(*tiny_overrides(tone_manifests, moved, "trainer.max_epochs=1",
                                                "resume=true")))
    assert again["best_val_wer"] == first["best_val_wer"]
    assert (moved / "model.ckpt").is_file()


def test_a_finished_finetuning_rebuilds_a_missing_model_and_refuses_another_preset(
        tone_model, tone_manifests, tmp_path):
    out = tmp_path / "ese.model"
    args = [f"model={tone_model}", "compress=ese", "compress.prune.density=0.3",
            "compress.prune.num_pes=8", "compress.schedule.frequency=2",
            "finetune.max_epochs=2", f"out={out}", *tone_data(tone_manifests)]
    summary = compress(compose_compress(*args))
    original = read_artifact(out)
    assert (tmp_path / "ese.finetune" / "config.yaml").is_file()
    out.unlink()
    # another preset over the ese masks: refused, naming the keys
    with pytest.raises(ConfigError, match=r"resume: the run in .*ese.finetune was started with "
                       r'a different config: compress.name "ese" -> "bbs"; .*pass resume=false'):
        compress(compose_compress(*args, "compress=bbs", "compress.prune.bank_size=8",
                                  "resume=true"))
    assert not out.exists()

    def same_model(path: Path) -> None:
        rebuilt = read_artifact(path)
        for name, entry in original.matrices.items():
            assert torch.equal(rebuilt.matrices[name].codes, entry.codes), name

    # the fine-tuning finished: a resume rebuilds the .model from it, no training
    resumed = compress(compose_compress(*args, "resume=true"))
    same_model(out)
    assert resumed["finetune"]["checkpoint"] == summary["finetune"]["checkpoint"]
    rows = (tmp_path / "ese.finetune" / "logs" / "metrics.csv").read_text().splitlines()
    assert sum(1 for r in rows[1:] if r.split(",")[rows[0].split(",").index("val_wer")]) == 2
    # ... from a moved folder too (this crashed with a TypeError, and the recipe was stuck)
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.copytree(tmp_path / "ese.finetune", moved / "ese.finetune")
    compress(compose_compress(*args, f"out={moved / 'ese.model'}", "resume=true"))
    same_model(moved / "ese.model")


# -- SIGKILL while the artifact is written --------------------------------------------------

# Loaded by the child's interpreter at start-up (sitecustomize on its PYTHONPATH): the first
# write of a .model, whether by torch.save (half the bytes are written, then it stops) or by
# a rename onto it, tells the test and waits to be killed. Nothing in the product changes.
KILL_HOOK = textwrap.dedent("""
    import io, os, sys, time
    from pathlib import Path

    MARK = os.environ["ASR_TEST_KILL_MARK"]

    def _stop():
        Path(MARK).write_text(str(os.getpid()))
        while True:
            time.sleep(1)

    def _model(path):
        return isinstance(path, (str, os.PathLike)) and ".model" in os.path.basename(path)

    _replace, _rename = os.replace, os.rename

    def replace(src, dst, *args, **kwargs):
        if _model(dst) and str(dst).endswith(".model"):
            _stop()
        return _replace(src, dst, *args, **kwargs)

    def rename(src, dst, *args, **kwargs):
        if _model(dst) and str(dst).endswith(".model"):
            _stop()
        return _rename(src, dst, *args, **kwargs)

    os.replace, os.rename = replace, rename

    import torch
    _save = torch.save

    def save(obj, f, *args, **kwargs):
        target = f if isinstance(f, (str, os.PathLike)) else getattr(f, "name", None)
        if not _model(target):
            return _save(obj, f, *args, **kwargs)
        buffer = io.BytesIO()
        _save(obj, buffer, *args, **kwargs)
        data = buffer.getvalue()
        if isinstance(f, (str, os.PathLike)):
            with open(f, "wb") as out:
                out.write(data[:len(data) // 2])
        else:
            f.write(data[:len(data) // 2])
            f.flush()
        _stop()

    torch.save = save
""")


def test_a_sigkill_while_writing_keeps_the_previous_model(tone_model, tmp_path):
    out = tmp_path / "exp" / "m.model"
    compress(compose_compress(f"model={tone_model}", "compress=ese", "compress.prune.num_pes=8",
                              f"out={out}"))
    before = out.read_bytes()
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(KILL_HOOK)
    mark = tmp_path / "writing"
    command = [str(Path(sys.executable).parent / "asr-compress"), f"model={tone_model}",
               "compress=bbs", "compress.prune.bank_size=8", f"out={out}"]
    child = subprocess.Popen(command, cwd=tmp_path, env={**_env(hooks),
                             "ASR_TEST_KILL_MARK": str(mark)},
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 300
        while not mark.exists() and child.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        assert mark.exists(), (f"asr-compress never wrote {out} (exit {child.poll()}):\n"
                               + (child.stdout.read() if child.poll() is not None else ""))
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    # The previous artifact is whole and loads; the killed run's lock does not block.
    assert out.read_bytes() == before
    assert read_artifact(out).compress.name == "ese"
    assert Path(f"{out}.lock").exists()
    done = subprocess.run(command, cwd=tmp_path, env=_env(), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert read_artifact(out).compress.name == "bbs"
    # the killed writer's temporary file went with the next write of the file
    assert not list(out.parent.glob(".*.tmp"))


def test_export_and_rtl_refuse_a_folder_of_other_files(tmp_path, capsys):
    from test_hw import make_artifact, small_lstm

    from asr.compress.artifact import save_artifact
    from hw.cli import main as hw_main

    art = save_artifact(tmp_path / "m.model",
                        make_artifact(small_lstm(), "ese", "compress.prune.num_pes=4"))
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.ckpt").write_text("weights")
    for command in ("export", "rtl"):
        assert hw_main([command, str(art), str(run), "--set", "num_pes=4"]) == 2
        err = capsys.readouterr().err
        assert f"asr-hw {command}: error: {run}: holds files that this command did not write" \
            in " ".join(err.split()), err
    assert sorted(p.name for p in run.iterdir()) == ["model.ckpt"]
    # an export's folder is the export's to replace, not the RTL's
    assert hw_main(["export", str(art), str(tmp_path / "ex"), "--set", "num_pes=4"]) == 0
    assert hw_main(["rtl", str(art), str(tmp_path / "ex"), "--set", "num_pes=4"]) == 2
    assert "(no rtl.json)" in capsys.readouterr().err
    assert hw_main(["export", str(art), str(tmp_path / "ex"), "--set", "num_pes=4"]) == 0
