"""One report point: every model compressed (when given as a checkpoint) and scored three ways,
per decoder: the float model and the quantized model in PyTorch (reference rows), and the engine's
own bit-accurate outputs with the modeled latency, throughput and energy.

A point is one ``hw`` x ``compress`` x ``quant`` choice; it lives in ``<out>/points/<id>/``
(its compressed models and ``result.json``). The id hashes everything that changes its numbers
(configs, the *contents* of the models' files, the manifests, the test audio and the LM, never
their modification times), so a finished point is reused as it stands, also when a rerun of a
recipe rewrote its inputs unchanged, and a changed one is evaluated afresh. A model that fails is
recorded with its error; the point's other models still run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import traceback
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from asr import atomic
from asr.audio import AudioError, load_audio
from asr.compress.accounting import storage_table, totals
from asr.compress.artifact import Artifact, compressed_acoustic_model, read_artifact
from asr.data.manifest import Utterance, read_manifest
from asr.decode.beam import BeamConfig
from asr.decode.recognizer import Decoder, Recognizer, make_decoder
from asr.features.config import FeatureConfig
from asr.features.extract import FeatureExtractor
from asr.metrics import error_rates
from asr.models.acoustic import AcousticModel
from asr.train.checkpoint import load_checkpoint
from hw.config import EngineConfig
from hw.engine import engine_acoustic_model, posteriors_with_cost, summarize_costs
from hw.report.config import ReportJob, apply_quant_bits, validate_report_config
from hw.timing import timing_records
from hw.trace import trace_layers

log = logging.getLogger("asr-hw report")

RESULT = "result.json"
# The columns of every row, in the report's order (None where a kind has no such figure).
ROW_FIELDS = ("model", "kind", "engine", "compress", "decoder", "density", "weight_bits", "wer",
              "cer", "utterances", "latency_per_frame_us", "latency_p99_us",
              "temporal_sparsity", "latency_ms", "rtf",
              "throughput_x_realtime", "gops", "uj_per_utterance", "uj_per_audio_second",
              "power_w", "dynamic_power_w", "static_power_w", "channels", "storage_bytes",
              "compression_ratio", "saturations", "accumulator_overflows", "point")
# The keys that change a point's numbers (``out``, ``title`` and ``resume`` do not).
_KEY_FIELDS = ("hw", "compress", "data", "trainer", "models", "decoders", "lm", "beam_width",
               "max_utterances", "seed", "quant", "finetune", "calibration")


# sha256 of a file's bytes by (resolved path, size, mtime): each file is read once per process
# (a sweep's points share the models and the test set), and a rewritten one is read again.
_DIGESTS: dict[tuple[str, int, int], str] = {}


def _digest(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def _file_stamp(path: str | None) -> list:
    """The path, size and content hash of a file (not its mtime: a recipe that rewrites a file
    unchanged keeps the point); the path alone when there is no such file."""
    p = Path(str(path))
    return [str(p), p.stat().st_size, _digest(p)] if p.is_file() else [str(p)]


def _audio_stamp(manifest: str | None) -> str | None:
    """One hash over the size and content of every audio file the manifest lists, in order
    (a re-made corpus with the same manifest text may hold other audio)."""
    try:
        utts = read_manifest(str(manifest))
    except Exception:  # no manifest, or a bad one: the point records that error itself
        return None
    h = hashlib.sha256()
    for u in utts:
        h.update(json.dumps(_file_stamp(u.audio_filepath)).encode())
    return h.hexdigest()


def _labels(raw: dict[str, Any]) -> dict[str, Any]:
    """What names a point (engine, compression, nominal density, weight bits), read from the
    resolved config without validating it (a point that fails validation is named too)."""
    compress = raw.get("compress") or {}
    return {"hw": (raw.get("hw") or {}).get("name", "hw"),
            "compress": compress.get("name", "compress"),
            "density": compress.get("prune", {}).get("density"),
            "weight_bits": (raw.get("quant") or {}).get("bits")
            or compress.get("quant", {}).get("weights", {}).get("bits")}


def point_id(cfg: DictConfig) -> str:
    """``<hw>_<compress>_d<density>_w<bits>_<hash>``: readable, and unique per config and
    inputs' contents."""
    raw = OmegaConf.to_container(cfg, resolve=True)
    key = {k: raw.get(k) for k in _KEY_FIELDS}
    if (raw.get("synth") or {}).get("enabled"):
        # only then: a point evaluated without synthesis keeps its id
        key["synth"] = raw["synth"]
    key["models"] = {name: _file_stamp(str(p)) for name, p in (raw.get("models") or {}).items()}
    data = raw.get("data") or {}
    key["test"] = _file_stamp(data.get("test_manifest"))
    key["test_audio"] = _audio_stamp(data.get("test_manifest"))
    key["inputs"] = {k: _file_stamp(v) for k, v in (
        ("train", data.get("train_manifest")), ("val", data.get("val_manifest")),
        ("calibration", (raw.get("calibration") or {}).get("manifest")),
        ("lm", raw.get("lm"))) if v}
    digest = hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()
    lab = _labels(raw)
    return (f"{lab['hw']}_{lab['compress']}_d{lab['density']}_w{lab['weight_bits']}"
            f"_{digest[:8]}")


def _artifact_for(name: str, path: Path, cfg: DictConfig, job: ReportJob, point_dir: Path,
                  in_launcher: bool) -> tuple[Artifact, str | None]:
    """The compressed model (made here from a checkpoint, once per point) and the float
    checkpoint it came from, if that file is at hand."""
    if path.suffix == ".model":
        log.info("%s: %s is compressed already; the compress and quant keys do not apply",
                 name, path)
        artifact = read_artifact(path)
        source = artifact.source
        return artifact, source if source and Path(source).is_file() else None
    out = point_dir / f"{name}.model"
    if not out.is_file():
        from asr.compress.app import compress

        finetune = job.finetune.max_epochs > 0
        calibration = OmegaConf.to_container(cfg.calibration)
        calibration["manifest"] = calibration.get("manifest") or job.data.val_manifest
        if not Path(calibration["manifest"]).is_file():
            calibration["manifest"] = job.data.test_manifest  # a report with a test set only
            log.warning("%s: no dev manifest; calibrating activations on the test set", name)
        log.info("%s: compressing %s with %s%s", name, path, job.compress.name,
                 f" ({job.finetune.max_epochs} fine-tuning epochs)" if finetune else "")
        data = OmegaConf.to_container(cfg.data)
        if in_launcher:
            # a launcher's worker process (joblib's loky) cannot fork DataLoader workers
            data["batch"]["num_workers"] = 0
        compress(OmegaConf.create({
            "compress": OmegaConf.to_container(cfg.compress),
            "data": data if finetune else None,
            "trainer": OmegaConf.to_container(cfg.trainer), "model": str(path),
            "out": str(out), "seed": cfg.seed, "resume": True,
            "finetune": OmegaConf.to_container(cfg.finetune), "calibration": calibration,
            "evaluate": False, "max_eval_utterances": 0}))
    return read_artifact(out), str(path)


def _decoders(model: AcousticModel, job: ReportJob) -> dict[str, Decoder]:
    """The job's decoders by row name; built once per model (its vocabulary and frame shift),
    so an LM is read once for the float, quantized and engine rows."""
    beam = BeamConfig(beam_width=job.beam_width)
    return {("beam+lm" if kind == "beam" and job.lm else kind):
            make_decoder(kind, model, beam, job.lm if kind == "beam" else None)
            for kind in job.decoders}


def score(model: AcousticModel, utts: list[Utterance], decoders: dict[str, Decoder], desc: str,
          engine: bool = False) -> dict[str, Any]:
    """WER/CER per decoder of ``model`` on ``utts`` (one forward pass shared by the
    decoders); with ``engine``, the modeled cost of every utterance too."""
    texts = {u.audio_filepath: u.text for u in utts}
    failures: list[tuple[str, str]] = []
    batches = (posteriors_with_cost(model, list(texts), failures) if engine else
               ((p, []) for p in Recognizer(model).posteriors(list(texts), failures)))
    refs: list[str] = []
    hyps: dict[str, list[str]] = {k: [] for k in decoders}
    costs: list[dict] = []
    audio = 0.0
    with tqdm(total=len(texts), desc=desc, unit="utt", leave=False) as bar:
        for post, batch_costs in batches:
            refs += [texts[p] for p in post.paths]
            audio += sum(post.durations)
            for kind, decoder in decoders.items():
                hyps[kind] += [d.hypothesis.text for d in Recognizer.decode(post, decoder)]
            costs += batch_costs
            bar.update(len(post.paths))
    if not refs:
        raise AudioError(f"{desc}: none of the {len(texts)} test files could be read "
                         f"(first: {failures[0] if failures else '-'})")
    return {"rates": {k: error_rates(refs, h) for k, h in hyps.items()}, "costs": costs,
            "audio_seconds": audio, "skipped": len(failures)}


def _row(**values: Any) -> dict[str, Any]:
    return {k: values.get(k) for k in ROW_FIELDS}


def _finite(x: float) -> float | None:
    """JSON has no infinity: an exact layer (infinite SQNR) is stored as null."""
    return x if x == x and abs(x) != float("inf") else None


def evaluate_model(name: str, path: Path, cfg: DictConfig, job: ReportJob, point_dir: Path,
                   utts: list[Utterance], pid: str, in_launcher: bool = False
                   ) -> tuple[list[dict], dict[str, Any]]:
    """Rows (float, quantized, engine per decoder) and details (per-layer SQNR, per-PE work,
    the per-matrix timing table, storage) of one model at one point."""
    artifact, source = _artifact_for(name, path, cfg, job, point_dir, in_launcher)
    store = totals(storage_table(artifact))
    wq = artifact.compress.quant.weights
    common = {"model": name, "point": pid}
    compressed = artifact.compress.name
    quantized = compressed_acoustic_model(artifact)
    decoders = _decoders(quantized, job)
    rows = []
    if source is not None:
        flt = score(load_checkpoint(source), utts, decoders, f"{name} float")
        rows += [_row(**common, kind="float", decoder=k, density=1.0, weight_bits=32,
                      wer=r.wer, cer=r.cer, utterances=r.utterances,
                      storage_bytes=store["float32_bytes"], compression_ratio=1.0)
                 for k, r in flt["rates"].items()]
    quant = {**common, "compress": compressed, "density": store["density"],
             "weight_bits": wq.bits,
             "storage_bytes": store["bytes"], "compression_ratio": store["ratio"]}
    q = score(quantized, utts, decoders, f"{name} quantized")
    rows += [_row(**quant, kind="quantized", decoder=k, wer=r.wer, cer=r.cer,
                  utterances=r.utterances) for k, r in q["rates"].items()]
    model = engine_acoustic_model(artifact, job.hw)
    e = score(model, utts, decoders, f"{name} on {job.hw.name}", engine=True)
    cost = summarize_costs(e["costs"], e["audio_seconds"], job.hw)
    rows += [_row(**quant, **cost, kind="engine", engine=job.hw.name, decoder=k, wer=r.wer,
                  cer=r.cer, utterances=r.utterances) for k, r in e["rates"].items()]
    frame, _ = model.model.frame_cost()
    pe_busy = [sum(m.pe_work[p] for m in frame.matrices) for p in range(job.hw.num_pes)]
    details = {"storage": store, "skipped_files": e["skipped"],
               "pe_utilization": [b / frame.cycles for b in pe_busy],
               "timing": timing_records(frame), "gops": frame.gops(),
               "gops_dense": frame.gops(True), "layers": _layer_sqnr(artifact, job.hw, utts)}
    return rows, details


def _layer_sqnr(artifact: Artifact, hw: EngineConfig, utts: list[Utterance]) -> list[dict]:
    """Per-layer SQNR of the engine against the float graph on the first readable test file."""
    cfg = FeatureConfig(**artifact.features)
    for utt in utts:
        try:
            feats = FeatureExtractor(cfg)(load_audio(utt.audio_filepath, cfg.sample_rate))
        except AudioError:
            continue
        return [{"layer": r["layer"], "sqnr_db": _finite(r["sqnr_db"]),
                 "saturations": r["saturations"], "file": utt.audio_filepath}
                for r in trace_layers(artifact, hw, feats, values=0)]
    return []


def evaluate_point(cfg: DictConfig, overrides: list[str], out: Path, in_launcher: bool = False
                   ) -> dict[str, Any]:
    """Evaluate (or reuse) one point; failures are recorded in the result, never raised.
    ``in_launcher``: running as a sweep job in a launcher's worker process."""
    pid = point_id(cfg)
    point_dir = out / "points" / pid
    result_path = point_dir / RESULT
    if cfg.get("resume", True) and result_path.is_file():
        cached = json.loads(result_path.read_text())
        if cached.get("status") == "ok":
            log.info("point %s: finished earlier, reused", pid)
            return cached
    point_dir.mkdir(parents=True, exist_ok=True)
    raw = OmegaConf.to_container(cfg, resolve=True)
    result: dict[str, Any] = {"id": pid, "overrides": list(overrides), **_labels(raw),
                              "config": raw, "rows": [], "models": {}, "failures": []}
    t0 = time.time()
    try:
        cfg = apply_quant_bits(cfg)
        result["config"] = OmegaConf.to_container(cfg)
        job = validate_report_config(cfg)
        utts = read_manifest(job.data.test_manifest)
        utts = utts[:job.max_utterances] if job.max_utterances else utts
        for name, path in job.models.items():
            try:
                rows, details = evaluate_model(name, path, cfg, job, point_dir, utts, pid,
                                               in_launcher)
                result["rows"] += rows
                result["models"][name] = details
                if job.synth is not None:   # a failure here keeps the model's rows
                    from hw.report.resources import synthesize_engine

                    model_file = path if path.suffix == ".model" else point_dir / f"{name}.model"
                    details["synth"] = synthesize_engine(model_file, job.hw, job.synth,
                                                         point_dir / "synth" / name)
            except Exception as err:  # recorded; the point's other models go on
                log.error("point %s, model %s failed: %s", pid, name, err)
                result["failures"].append(_failure(err, name))
    except Exception as err:  # a bad point is recorded; the sweep goes on
        log.error("point %s failed: %s", pid, err)
        result["failures"].append(_failure(err, None))
    result["status"] = ("ok" if not result["failures"] else
                        "partial" if result["rows"] else "failed")
    result["seconds"] = round(time.time() - t0, 1)
    atomic.write_text(result_path, json.dumps(result, indent=1))  # never a torn result.json
    return result


def _failure(err: BaseException, model: str | None) -> dict[str, Any]:
    return {"model": model, "error": f"{type(err).__name__}: {err}",
            "traceback": traceback.format_exc(limit=-3)}


def load_points(out: Path) -> list[dict[str, Any]]:
    """Every point evaluated under ``out``, in the order they were first made."""
    paths = sorted((out / "points").glob(f"*/{RESULT}"), key=lambda p: p.stat().st_ctime)
    return [json.loads(p.read_text()) for p in paths]
