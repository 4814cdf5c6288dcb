"""Console commands answer --help and --version without loading torch (checked by what is
imported, not by timing), and the Hydra apps have a --version like the argparse ones."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import REPO

# Printed at exit (also on SystemExit): which heavy modules the command imported.
PROBE = """
import atexit, sys
atexit.register(lambda: print("HEAVY:" + ",".join(sorted(
    m for m in ("torch", "pytorch_lightning", "pyctcdecode", "matplotlib") if m in sys.modules)),
    file=sys.stderr))
sys.argv = {argv!r}
{run}
"""


def run_probe(argv: list[str], run: str) -> tuple[int, str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv, run=run)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)
    heavy = done.stderr.rsplit("HEAVY:", 1)[1].strip()
    return done.returncode, done.stdout, heavy


ARGPARSE = {"asr-decode": "asr.cli.decode", "asr-eval": "asr.cli.evaluate",
            "asr-lm": "asr.cli.lm", "asr-data": "asr.cli.data", "asr-hw": "hw.cli"}


@pytest.mark.parametrize("command", sorted(ARGPARSE))
@pytest.mark.parametrize("flag", ["--help", "--version"])
def test_argparse_commands_answer_without_torch(command, flag):
    code, out, heavy = run_probe(
        [command, flag], f"from {ARGPARSE[command]} import main\nsys.exit(main())")
    assert code == 0 and heavy == "", heavy
    assert (f"usage: {command}" in out) if flag == "--help" else out.startswith(f"{command} (")


# The Hydra apps answer in their module's first lines when run as the command itself
# (sys.argv[0] names it), before torch or Lightning load.
HYDRA = {"asr-train": ("import asr.train.app", ""),
         "asr-hw report": ("from hw.cli import main\nsys.exit(main())", ""),
         "asr-compress": ("import asr.compress.app", "")}


@pytest.mark.parametrize("command", sorted(HYDRA))
@pytest.mark.parametrize("flag", ["--help", "--version"])
def test_hydra_apps_answer_before_loading_lightning(command, flag):
    run, allowed = HYDRA[command]
    code, out, heavy = run_probe([*command.split(), flag], run)
    assert code == 0 and heavy == allowed, heavy
    if flag == "--help":
        assert out.startswith(f"{command} is powered by Hydra.")
    else:
        assert out.startswith(f"{command} (asr-fpga ") and out.strip().endswith(")")


@pytest.mark.parametrize("command", ["asr-train", "asr-compress", "asr-hw report"])
def test_hydra_apps_have_a_version_in_process(command, monkeypatch, capsys):
    from asr.compress.app import main as compress_main
    from asr.train.app import main as train_main
    from hw.cli import main as hw_main

    main = {"asr-train": train_main, "asr-compress": compress_main,
            "asr-hw report": lambda: hw_main(["report", "--version"])}[command]
    monkeypatch.setattr(sys, "argv", ["python -m app", "--version"])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{command} (asr-fpga ") and out.strip().endswith(")")
