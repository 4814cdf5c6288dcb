"""The wheel: built from the checkout, installed outside it and run from another folder with the
checkout off ``sys.path``. The Hydra configs and the text resources ship inside the packages, so
the installed commands find them there."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
import yaml
from conftest import APP_GROUPS, help_groups

from asr.compress.artifact import build_artifact, save_artifact
from asr.compress.config import compress_preset, validate_against_model
from asr.compress.pruning import prune_model
from asr.models import LSTMCTC

REPO = Path(__file__).resolve().parents[1]
# What the build reads: the package sources, the configs asr/conf links to, the metadata.
SOURCES = ("pyproject.toml", "README.md", "asr", "hw", "conf")
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built offline with the environment's setuptools from a copy of the sources
    (the build leaves build/ and *.egg-info behind, and a stale build/ could leak into a later
    wheel: not in the checkout)."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    src.mkdir()
    for name in SOURCES:
        path = REPO / name
        if path.is_dir() and not path.is_symlink():
            shutil.copytree(path, src / name, symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(path, src / name)
    done = subprocess.run([*PIP, "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                           "-w", str(root / "dist"), str(src)],
                          cwd=src, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (found,) = (root / "dist").glob("asr_fpga-*.whl")
    return found


@pytest.fixture(scope="module")
def site(wheel, tmp_path_factory) -> Path:
    """The wheel installed into a folder of its own (pip --target: packages and bin/)."""
    target = tmp_path_factory.mktemp("site")
    done = subprocess.run([*PIP, "install", "--no-deps", "--no-index", "--target", str(target),
                           str(wheel)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return target


def run_installed(site: Path, cwd: Path, command: str, *args: str) -> str:
    """``command`` (a console script of the wheel, or ``python``) run from ``cwd`` with the
    installed packages first on the path: the environment supplies only the dependencies."""
    exe = sys.executable if command == "python" else str(site / "bin" / command)
    env = {**os.environ, "PYTHONPATH": str(site), "PYTHONNOUSERSITE": "1"}
    done = subprocess.run([exe, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_wheel_holds_the_packages_configs_and_resources(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    packages = {p.parent.relative_to(REPO).as_posix() for top in ("asr", "hw")
                for p in (REPO / top).rglob("__init__.py")}
    assert packages and all(f"{p}/__init__.py" in names for p in packages)
    # every YAML under conf/ (the per-app roots' linked groups included) as asr/conf/...
    configs = {Path(dirpath, f).relative_to(REPO).as_posix()
               for dirpath, _, files in os.walk(REPO / "conf", followlinks=True)
               for f in files if f.endswith(".yaml")}
    assert "conf/asr_train/model/lstm_small.yaml" in configs
    assert {f"asr/{c}" for c in configs} <= names
    resources = {f"asr/resources/{p.name}" for p in (REPO / "asr" / "resources").glob("*.txt")}
    assert resources and resources <= names
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    assert "Requires-Python: <3.13,>=3.10" in zipfile.ZipFile(wheel).read(metadata).decode()


def test_installed_commands_run_outside_the_checkout(site, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # the packages (and their configs) come from the installed folder, not the checkout
    where = run_installed(site, elsewhere, "python", "-c",
                          "import sys, asr, hw; print(asr.__file__); print(hw.__file__); "
                          "print(asr.CONF_DIR); print(*sys.path, sep='\\n')").splitlines()
    for path in where[:3]:
        assert Path(path).is_relative_to(site), where
    assert str(REPO) not in where[3:]
    assert (Path(where[2]) / "asr_train" / "train.yaml").is_file()

    # asr-train composes an experiment preset from the packaged configs
    job = yaml.safe_load(run_installed(site, elsewhere, "asr-train", "--cfg", "job",
                                       "experiment=demo_lstm"))
    assert job["name"] == "demo_lstm" and job["data"]["name"] == "demo"
    assert job["model"]["_target_"] == "asr.models.LSTMCTC"
    assert {"hidden_size", "proj_size", "num_layers"} <= set(job["model"])
    assert job["features"]["kind"] == "fbank" and job["features"]["stack"] == 3

    # asr-compress and asr-hw report: their own config roots and names
    for command, args in (("asr-compress", ["--help"]), ("asr-hw report", ["report", "--help"])):
        text = run_installed(site, elsewhere, command.split()[0], *args)
        assert text.startswith(f"{command} is powered by Hydra."), text[:200]
        assert help_groups(text) == APP_GROUPS[command]
        assert "compress: bbs, deep_compression, delta, eie_like, ese, none, spartus" in text

    # asr-hw timing reads an engine preset from the packaged conf/hw
    torch.manual_seed(0)
    model = LSTMCTC(16, 12, hidden_size=32, proj_size=16, num_layers=1).eval()
    cfg = compress_preset("ese", "compress.prune.num_pes=4")
    views = model.matrices()
    densities = validate_against_model(cfg, views, "lstm")
    body = build_artifact(model, prune_model(views, densities, cfg.prune), densities, cfg,
                          [torch.randn(20, 16)])
    art = save_artifact(tmp_path / "tiny.model", body, vocab_tokens=[str(i) for i in range(12)],
                        source="test")
    table = run_installed(site, elsewhere, "asr-hw", "timing", str(art), "--engine", "ese",
                          "--set", "num_pes=4")
    rows = [line for line in table.splitlines() if line.startswith("|")]
    assert len(rows) >= 2 + len(body.matrices), table   # header, rule, a row per matrix
    assert any("W_ix" in line for line in rows) and "GOP/s" in table
    assert not list(elsewhere.iterdir())   # nothing written where the commands ran
