"""What the generated engine's LUTs and flip-flops are spent on: Yosys' ECP5 flow with the
design split into one submodule per part of ``engine.sv`` (``stat`` per module).

The design (a folder written by ``asr-hw rtl``) goes through the flow's coarse section flat, as
``asr-hw synth`` runs it; every cell is then assigned to the part of ``engine.sv`` it comes
from (its ``src`` line, under the generator's section comments; a cell of an inlined function
goes with the cells it is wired to), ``submod`` moves each part into a module of its own, and
the rest of ``synth_ecp5`` maps them without flattening. Optimisation across the parts'
boundaries is lost, so the parts add up to more than the flat design: the split says where
the logic is, ``asr-hw synth`` how much there is.

    asr-hw rtl MODEL rtl_dir --engine ese --set num_pes=4 elementwise_lanes=1
    python benchmarks/rtl_breakdown.py rtl_dir [--out DIR] [--timeout S]
"""

from __future__ import annotations

import argparse
import collections
import json
import re
from pathlib import Path

from asr.tables import markdown_table
from hw.rtl.devices import get_device
from hw.rtl.synth import count_resources
from hw.rtl.tools import find_tool, relative, run_tool

# (pattern on an engine.sv line, the part it starts): the generator's section comments
SECTIONS = [
    (r"^  function automatic (logic|integer)", "functions"),
    (r"// weight, pointer, activation and per-row", "per-row constant and activation ROMs"),
    (r"^  // signals: ", "signal registers (y, pres, logits) and input buffer"),
    (r"^  // \S+'s projection: accumulators per PE", "projection memories, broadcast read (csc)"),
    (r"// the phases of a frame", "phase table"),
    (r"^  always_comb begin$", "phase constants"),
    (r"// csc: column broadcast|// csb: every PE", "PE queue registers"),
    (r"// PE memories", "PE weight memories"),
    (r"// pointers: read one cycle", "pointer memories"),
    (r"// accumulator memories", "accumulator memories"),
    (r"// cell k = eb", "element-wise accumulator selection"),
    (r"csc_decide|csb_decide", "broadcast, queues, PE decode"),
    (r"// multiply stage", "multiply stage"),
    (r"ph_last = run", "control"),
    (r"// control: input buffer", "control"),
    (r"// csc product state|// csb product state", "queue and PE state"),
    (r"// the accumulators: one MAC|// a row.s sum lands",
     "accumulate (read-modify-write), row memories' valid bits"),
    (r"// the element-wise unit, shared|^  // \S+: the cell state and m", "element-wise unit"),
    (r": bias and narrowing of row ocnt", "output layer"),
    (r"^endmodule", "end"),
]
# within the element-wise unit's block, by the line's contents
EW_PARTS = [
    (r"narrow_g\(pres|// the projection narrows|// its accumulators, kept|<= pres\[k\]",
     "projection narrowing"),
    (r"e1_g\[.*narrow_g|sr_al\(GW1|xs = sx_",
     "element-wise e1: gate alignment, bias, narrowing, row ROMs"),
    (r"e2_a\[.*act_y", "element-wise e2: sigmoid/tanh"),
    (r"cn\[ln\]|ta = |tc = |tb = |p[123] = |e3_|mw\[ln", "element-wise e3/e4: cell state, m"),
    (r"c_\d+\[|m_\d+\[|cr = |st2|st_\d+", "element-wise: c and m storage, input buffer"),
]


# memories (Yosys' $mem cells carry no source line): their part, by the array's name
MEMORIES = [
    (r"wm_\d+_\d+$", "PE weight memories"), (r"pm_\d+$", "pointer memories"),
    (r"acc_\d+_\d+_\d+$", "accumulator memories"),
    (r"(fbuf|c_\d+|m_\d+)$", "element-wise: c and m storage, input buffer"),
    (r"(sx|sr|sn|ba|ysh)_\d+$|^(osm|osn|oba)$", "per-row constant ROMs"),
    (r"^(sig_rom|tanh_rom)$", "sigmoid/tanh ROMs"), (r"^(qe0|qe1|qx)$", "queue and PE state"),
    (r"^y_\d+$", "projection outputs (y)"),
    (r"^yr_\d+_\d+$", "projection memories, broadcast read (csc)"),
    (r"^pres$", "projection and output accumulators (csb)"),
    (r"^logits$|^orr_\d+$", "output layer"),
]


def memory_part(memid: str) -> str | None:
    """The part of a memory cell named ``memid``."""
    name = memid.lstrip("\\")
    return next((part for pattern, part in MEMORIES if re.search(pattern, name)), None)


def sections(sv: Path) -> list[str]:
    """The part of each line of ``sv``."""
    out, cur = [], "header"
    for line in sv.read_text().splitlines():
        for pattern, name in SECTIONS:
            if re.search(pattern, line):
                cur = name
        part = cur
        if cur == "element-wise unit":
            part = next((n for p, n in EW_PARTS if re.search(p, line)),
                        "element-wise: stage registers, control")
        out.append(part)
    return out


def _parse(il: Path) -> tuple[dict[str, int | None], dict[str, set[str]], dict[str, set[str]],
                             dict[str, str]]:
    """Cells of module asr_engine (name -> src line), wire -> cells, wire aliases, memory
    cells' names."""
    tok = re.compile(r"(\\\S+|\$\S+)")
    cells: dict[str, int | None] = {}
    wire_cells: dict[str, set[str]] = collections.defaultdict(set)
    alias: dict[str, set[str]] = collections.defaultdict(set)
    memids: dict[str, str] = {}
    cur = src = mod = None
    for raw in il.open():
        s = raw.strip()
        if s.startswith("module "):
            mod = s.split()[1]
        if mod != "\\asr_engine":
            continue
        if s.startswith("attribute \\src"):
            src = s.split('"')[1]
            continue
        if s.startswith("cell "):
            cur = s.split()[2]
            m = re.search(r"engine\.sv:(\d+)", src or "")
            cells[cur] = int(m.group(1)) - 1 if m else None
        elif cur and s.startswith("connect "):
            for w in tok.findall(s.split(None, 2)[2]):
                wire_cells[w].add(cur)
        elif cur and s.startswith("parameter \\MEMID "):
            memids[cur] = s.split('"')[1]
        elif cur and s == "end":
            cur = None
        elif not cur and s.startswith("connect "):
            ws = tok.findall(s[8:])
            for a in ws:
                alias[a].update(w for w in ws if w != a)
        src = None
    return cells, wire_cells, alias, memids


def label_cells(il: Path, sv: Path) -> dict[str, str]:
    """Each cell's part: its src line's, or (a cell of an inlined function) its call site's,
    through the ``$func$engine.sv:LINE`` wires or the cells it is wired to."""
    part = sections(sv)
    func = {i for i, p in enumerate(part) if p in ("functions", "phase table")}
    cells, wire_cells, alias, memids = _parse(il)
    label = {c: part[ln] for c, ln in cells.items() if ln is not None and ln not in func}
    for c, memid in memids.items():
        mpart = memory_part(memid)
        if mpart:
            label[c] = mpart
    call = re.compile(r"\$func\$engine\.sv:(\d+)\$")
    for w, cs in wire_cells.items():
        lines = [int(m.group(1)) - 1 for m in call.finditer(w)]
        outer = [ln for ln in lines if ln not in func]
        if outer:
            for c in cs:
                label.setdefault(c, part[outer[0]])
    cell_wires: dict[str, set[str]] = collections.defaultdict(set)
    for w, cs in wire_cells.items():
        for c in cs:
            cell_wires[c].add(w)
    frontier = list(label)
    while frontier:
        nxt = []
        for c in frontier:
            for w in cell_wires[c]:
                for w2 in {w} | alias.get(w, set()):
                    for c2 in wire_cells.get(w2, ()):
                        if c2 not in label:
                            label[c2] = label[c]
                            nxt.append(c2)
        frontier = nxt
    return {c: label.get(c, "unattributed") for c in cells}


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def breakdown(rtl_dir: Path, out: Path, device_name: str, timeout: float | None,
              reuse: bool = False) -> list:
    """Each part's resources (name, counts), largest LUT count first; ``reuse``: the coarse
    netlist of an earlier run in ``out``."""
    device = get_device(device_name)
    if device.family != "ecp5":
        raise SystemExit(f"--device: the breakdown maps with synth_ecp5, got {device_name!r}")
    yosys = find_tool("yosys")
    out.mkdir(parents=True, exist_ok=True)
    sv = rtl_dir / "engine.sv"
    coarse = out / "coarse.il"
    reuse = reuse and coarse.is_file()
    # the flow's coarse section, flat, as asr-hw synth runs it
    cmds = device.yosys_commands()
    coarse_cmds = cmds[:cmds.index(next(c for c in cmds if "-run map_ram" in c))]
    script = out / "coarse.ys"
    script.write_text("\n".join([f"read_verilog -sv {relative(sv, rtl_dir)}",
                                 "hierarchy -check -top asr_engine", *coarse_cmds,
                                 f"write_rtlil {relative(coarse, rtl_dir)}", ""]))
    if not reuse:
        run_tool(yosys, ["-q", "-l", relative(out / "coarse.log", rtl_dir), "-s",
                         relative(script, rtl_dir)], rtl_dir, out / "coarse.log", timeout)
    labels = label_cells(coarse, sv)
    # asr_engine alone (the cell library is read again by synth_ecp5's begin section)
    keep, inside = [], False
    for line in coarse.open():
        if line.startswith("module "):
            inside = line.split()[1] == "\\asr_engine"
        if inside or line.startswith("autoidx"):
            keep.append(line)
        if inside and line.strip() == "end" and not line.startswith(" "):
            inside = False
    (out / "engine_only.il").write_text("".join(keep))
    lines = ["read_rtlil engine_only.il"]
    for name in sorted(set(labels.values())):
        sel = f"sel_{_slug(name)}.txt"
        (out / sel).write_text("".join(f"asr_engine/{c.lstrip(chr(92))}\n"
                                       for c, lab in labels.items() if lab == name))
        lines += [f"select -read {sel}", f'setattr -set submod "\\"{_slug(name)}\\"" %',
                  "select -clear"]
    lines += ["submod", "synth_ecp5 -noflatten -top asr_engine -run begin:coarse",
              "synth_ecp5 -noflatten -top asr_engine -run map_ram:",
              "tee -q -o stat_split.json stat -json", ""]
    (out / "split.ys").write_text("\n".join(lines))
    run_tool(yosys, ["-q", "-l", "split.log", "-s", "split.ys"], out, out / "split.log",
             timeout)
    stat = json.loads((out / "stat_split.json").read_text())
    names = {_slug(n): n for n in set(labels.values())}
    rows = []
    for mod, data in stat["modules"].items():
        key = mod.lstrip("\\").removeprefix("asr_engine_").strip('\\"')
        if key not in names:
            continue
        cells = {k: int(v) for k, v in data.get("num_cells_by_type", {}).items()}
        rows.append((names[key], count_resources(cells, device)))
    rows.sort(key=lambda r: -r[1]["lut"])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("rtl_dir", type=Path, help="a folder written by asr-hw rtl")
    ap.add_argument("--out", type=Path, default=None,
                    help="work folder (default: RTL_DIR/breakdown)")
    ap.add_argument("--device", default="ecp5-85k")
    ap.add_argument("--timeout", type=float, default=None, help="seconds per Yosys run")
    ap.add_argument("--reuse", action="store_true",
                    help="reuse the coarse netlist of an earlier run in --out")
    args = ap.parse_args()
    if not (args.rtl_dir / "engine.sv").is_file():
        raise SystemExit(f"{args.rtl_dir}: no engine.sv (write one with asr-hw rtl)")
    rows = breakdown(args.rtl_dir, args.out or args.rtl_dir / "breakdown", args.device,
                     args.timeout, args.reuse)
    total = {k: sum(r[k] for _, r in rows) for k in ("lut", "ff", "dsp", "bram")}
    table = [[name, f"{r['lut']:,}", f"{r['ff']:,}", f"{r['dsp']:g}", f"{r['bram']:g}"]
             for name, r in rows]
    table.append(["total (split; more than the flat design)", f"{total['lut']:,}",
                  f"{total['ff']:,}", f"{total['dsp']:g}", f"{total['bram']:g}"])
    print(markdown_table(["part of engine.sv", "LUT4", "FF", "MULT18X18D", "DP16KD"], table))


if __name__ == "__main__":
    main()
