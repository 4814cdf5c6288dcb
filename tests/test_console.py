"""What the console commands print: their own words, not the libraries' advertisements."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import tiny_overrides

BIN = Path(sys.executable).parent


def test_asr_train_output_is_free_of_library_noise(tone_manifests, tmp_path):
    proc = subprocess.run([str(BIN / "asr-train"), "experiment=demo_lstm",
                           *tiny_overrides(tone_manifests, tmp_path / "run",
                                           "trainer.max_epochs=1")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout + proc.stderr
    assert (tmp_path / "run" / "model.ckpt").is_file()
    assert "litlogger" not in out and "LeafSpec" not in out
