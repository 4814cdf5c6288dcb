"""``asr-hw report``: sweeps through the joblib launcher, the three formats, cached points, a
failing point, bad input, and the HTML in a headless browser."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from asr.data.manifest import read_manifest
from hw.report.document import REPORT_SCHEMA_VERSION, report_rows
from hw.report.plots import pareto_front

REPO = Path(__file__).resolve().parents[1]
ASR_HW = Path(sys.executable).parent / "asr-hw"
PLOTS = {"wer_vs_density.png", "wer_vs_bits.png", "energy_vs_wer.png", "layer_sqnr.png",
         "pe_utilization.png"}


def run_report(*overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(ASR_HW), "report", *overrides], capture_output=True, text=True,
                          cwd=REPO, timeout=900)


def tiny_report_args(model: Path, corpus: Path, out: Path, *skip: str) -> list[str]:
    """The tone model (48 cells) on an 8-PE engine, scored on 6 dev utterances (minus the
    overrides starting with one of ``skip``)."""
    args = [f"+models.tiny={model}", "data=synthetic", f"data.train_manifest={corpus}/train.jsonl",
            f"data.val_manifest={corpus}/train.jsonl", f"data.test_manifest={corpus}/dev.jsonl",
            "data.cache_dir=null", "hw.num_pes=8", "compress.prune.num_pes=8",
            "max_utterances=6", f"out={out}", "hydra.launcher.n_jobs=2"]
    return [a for a in args if not a.startswith(skip)] if skip else args


@pytest.fixture(scope="module")
def density_sweep(tone_model, tone_manifests, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    proc = run_report("-m", "compress.prune.density=0.25,0.5",
                      *tiny_report_args(tone_model, tone_manifests, out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


def test_two_point_sweep_writes_every_format(density_sweep):
    out, proc = density_sweep
    for name in ("report.md", "report.html", "report.json", *PLOTS):
        assert (out / name).stat().st_size > 500, name
    report = json.loads((out / "report.json").read_text())
    assert report["schema_version"] == REPORT_SCHEMA_VERSION
    assert [p["status"] for p in report["points"]] == ["ok", "ok"]
    engine = sorted((r for r in report["rows"] if r["kind"] == "engine"),
                    key=lambda r: r["density"])
    assert len(engine) == 2 and all(r["engine"] == "ese" for r in engine)
    # load-balanced pruning keeps the same count per PE row block: densities as configured
    # (the dense output layer adds a little)
    assert 0.25 <= engine[0]["density"] < 0.30 and 0.5 <= engine[1]["density"] < 0.55
    assert engine[0]["storage_bytes"] < engine[1]["storage_bytes"]
    for r in engine:
        assert 0.0 <= r["cer"] <= 1.0 and r["utterances"] == 6
        assert r["latency_per_frame_us"] > 0 and r["uj_per_audio_second"] > 0
        assert r["throughput_x_realtime"] == pytest.approx(32 / r["rtf"])  # ese: 32 channels
        assert r["power_w"] == pytest.approx(r["uj_per_audio_second"] * 1e-6 / r["rtf"],
                                             rel=1e-6)
    # the denser model does more work per frame
    assert engine[0]["latency_per_frame_us"] < engine[1]["latency_per_frame_us"]
    floats = [r for r in report["rows"] if r["kind"] == "float"]
    assert len(floats) == 1 and floats[0]["density"] == 1.0   # one reference row, not one per point
    assert len([r for r in report["rows"] if r["kind"] == "quantized"]) == 2
    md = (out / "report.md").read_text()
    assert "| tiny | engine | ese |" in md and "Per-matrix latency" in md
    assert "| saturations | overflows |" in md
    assert all(f"]({name})" in md for name in PLOTS)
    html = (out / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') == len(PLOTS)
    assert "http://" not in html and "https://" not in html     # renders offline
    assert "| tiny | engine | ese |" in proc.stdout and "report.md" in proc.stdout
    # every point keeps its resolved config and its compressed model
    for p in report["points"]:
        assert (out / "points" / p["id"] / "tiny.model").is_file()
        assert p["config"]["hw"]["num_pes"] == 8
        # numbers as numbers, the timing table too
        timing = p["models"]["tiny"]["timing"]
        assert timing[-1]["matrix"] == "total" and isinstance(timing[-1]["total_us"], float)


def test_a_finished_point_is_reused(density_sweep, tone_model, tone_manifests):
    out, _ = density_sweep
    results = sorted((out / "points").glob("*/result.json"))
    stamps = [p.stat().st_mtime_ns for p in results]
    proc = run_report("compress.prune.density=0.25",
                      *tiny_report_args(tone_model, tone_manifests, out, "hydra."))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "finished earlier, reused" in proc.stdout + proc.stderr
    assert [p.stat().st_mtime_ns for p in results] == stamps
    assert len(json.loads((out / "report.json").read_text())["points"]) == 2


def _tree(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder``: (size, mtime) by relative path (folders as (-1, 0))."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            if p.is_file() else (-1, 0) for p in folder.rglob("*")}


def _rewrite_unchanged(path: Path) -> None:
    """What a recipe's rerun does to an input: the same bytes written again, a newer mtime."""
    data = path.read_bytes()
    path.write_bytes(data)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))


def test_a_rerun_over_rewritten_inputs_reuses_the_point_and_adds_no_files(
        tone_model, tone_manifests, tmp_path):
    # the demo's rerun: asr-data synth rewrites the manifests, and a model may be saved again
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    model = inputs / "model.ckpt"
    shutil.copy(tone_model, model)
    for name in ("train.jsonl", "dev.jsonl"):
        shutil.copy(tone_manifests / name, inputs / name)
    out = tmp_path / "report"
    args = ["-m", "hw=ese", *tiny_report_args(model, inputs, out)]
    proc = run_report(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    first = _tree(out)
    reports = {n: (out / n).read_bytes() for n in ("report.md", "report.html", "report.json")}
    for path in (model, inputs / "train.jsonl", inputs / "dev.jsonl"):
        _rewrite_unchanged(path)
    proc = run_report(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "finished earlier, reused" in proc.stdout + proc.stderr
    assert "compressing" not in proc.stdout + proc.stderr
    second = _tree(out)
    assert sorted(second) == sorted(first)            # no new point, no new file anywhere
    assert len(list((out / "points").iterdir())) == 1
    # nothing rewritten but Hydra's own record of the sweep
    changed = {k for k in first if first[k] != second[k]}
    assert changed <= {"multirun/multirun.yaml"}, changed
    assert {n: (out / n).read_bytes() for n in reports} == reports


def test_point_id_hashes_contents_not_times(tone_model, tone_manifests, tmp_path):
    from omegaconf import OmegaConf

    from hw.report.point import point_id

    model = tmp_path / "model.ckpt"
    shutil.copy(tone_model, model)
    audio = tmp_path / "a.wav"
    shutil.copy(read_manifest(tone_manifests / "dev.jsonl")[0].audio_filepath, audio)
    manifest = tmp_path / "test.jsonl"
    manifest.write_text(json.dumps({"audio_filepath": "a.wav", "duration": 1.0, "text": "a"})
                        + "\n")
    cfg = OmegaConf.create({"hw": {"name": "ese"}, "compress": {"name": "ese"},
                            "models": {"m": str(model)},
                            "data": {"test_manifest": str(manifest)}})
    pid = point_id(cfg)
    for path in (model, manifest, audio):
        _rewrite_unchanged(path)
    assert point_id(cfg) == pid
    for path in (model, audio):                       # one byte more: another point
        data = path.read_bytes()
        path.write_bytes(data + b"\0")
        assert point_id(cfg) != pid
        path.write_bytes(data)
        assert point_id(cfg) == pid


def test_a_failing_point_is_reported_and_the_other_finishes(tone_model, tone_manifests,
                                                           tmp_path):
    # 7 PEs cannot share the 48 rows of the tone model's matrices: that point fails in
    # asr-compress's validation; the 8-PE point runs to the end.
    proc = run_report("-m", "compress.prune.num_pes=7,8",
                      *tiny_report_args(tone_model, tone_manifests, tmp_path,
                                        "compress.prune.num_pes"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    status = {p["config"]["compress"]["prune"]["num_pes"]: p for p in report["points"]}
    assert status[7]["status"] == "failed" and status[8]["status"] == "ok"
    assert "compress.prune.num_pes" in status[7]["failures"][0]["error"]
    assert any(r["kind"] == "engine" for r in status[8]["rows"])
    md = (tmp_path / "report.md").read_text()
    assert "## Failures" in md and "compress.prune.num_pes" in md
    assert "failed" in proc.stderr


def test_a_sweep_whose_every_point_failed_exits_non_zero(tone_model, tone_manifests,
                                                        tmp_path):
    proc = run_report("-m", "compress.prune.num_pes=5,7",
                      *tiny_report_args(tone_model, tone_manifests, tmp_path,
                                        "compress.prune.num_pes"))
    assert proc.returncode == 1 and "every point failed" in proc.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert {p["status"] for p in report["points"]} == {"failed"}


def test_bad_input_stops_before_any_work_naming_the_key(tone_model, tone_manifests, tmp_path):
    args = tiny_report_args(tone_model, tone_manifests, tmp_path, "hydra.")
    proc = run_report(*tiny_report_args(tone_model, tone_manifests, tmp_path, "+models", "hydra."),
                      f"+models.tiny={tmp_path}/missing.ckpt")
    assert proc.returncode == 2 and "models.tiny" in proc.stderr and "missing.ckpt" in proc.stderr
    proc = run_report(*args, "decoders=[greedy,viterbi]")
    assert proc.returncode == 2 and "decoders" in proc.stderr
    assert not (tmp_path / "points").exists()


def test_rows_deduplicate_reference_rows_and_pareto_front():
    row = {"model": "m", "decoder": "greedy", "engine": None, "compress": "ese",
           "density": 1.0, "weight_bits": 32, "storage_bytes": 10, "point": "a"}
    points = [{"rows": [{**row, "kind": "float"}, {**row, "kind": "engine", "engine": "ese"}]},
              {"rows": [{**row, "kind": "float", "point": "b"},
                        {**row, "kind": "engine", "engine": "bbs", "point": "b"}]}]
    kinds = [r["kind"] for r in report_rows(points)]
    assert kinds == ["float", "engine", "engine"]
    assert pareto_front([(1, 5), (2, 3), (3, 4), (4, 1), (2, 6)]) == [0, 1, 3]


@pytest.mark.skipif(shutil.which("chromium") is None,
                    reason="chromium is not installed (make test installs it where it can: "
                           "root and apt-get)")
def test_report_html_renders_in_headless_chromium(density_sweep, tmp_path):
    out, _ = density_sweep
    page = (out / "report.html").as_uri()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000"]
    dom = subprocess.run(["chromium", *flags, "--dump-dom", page], capture_output=True,
                         text=True, timeout=120).stdout
    body = re.search(r"<body[^>]*>", dom).group(0)
    # the page's script counts the figures that decoded
    assert f'data-plots="{len(PLOTS)}"' in body and f'data-plots-loaded="{len(PLOTS)}"' in body
    assert "<table>" in dom and "<th>WER %</th>" in dom
    shot = tmp_path / "report.png"
    subprocess.run(["chromium", *flags, "--window-size=1400,2400", f"--screenshot={shot}", page],
                   capture_output=True, timeout=120)
    assert shot.stat().st_size > 20_000



@pytest.mark.parametrize("n_jobs, omp, expected", [(1, None, 2), (2, None, 1), (1, "1", 1),
                                                    (-1, "4", 1), (1, "junk", 2)])
def test_sweep_threads_share_the_cores_and_respect_omp_num_threads(monkeypatch, n_jobs, omp,
                                                                   expected):
    """A sweep's points split the cores; a recipe that runs other jobs beside the report caps
    each point with OMP_NUM_THREADS."""
    import torch
    from omegaconf import OmegaConf

    import hw.report.app as app

    monkeypatch.setattr(app.HydraConfig, "get",
                        staticmethod(lambda: OmegaConf.create({"launcher": {"n_jobs": n_jobs}})))
    monkeypatch.setattr(app.os, "cpu_count", lambda: 2)
    if omp is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", omp)
    before = torch.get_num_threads()
    try:
        app._limit_threads()
        assert torch.get_num_threads() == expected
    finally:
        torch.set_num_threads(before)
