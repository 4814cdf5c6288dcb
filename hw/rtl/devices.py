"""The FPGA parts ``asr-hw synth`` knows: how Yosys maps to each, whether nextpnr places and
routes it, and its capacity in the four resources the report compares (LUT, FF, DSP, block RAM).

Capacities: the ECP5 parts' are nextpnr-ecp5's own device database (``--report``'s
``available`` counts, nextpnr 0.11.1); XCKU060's are the figures in
``../shared/reference/anchors.md``; XC7Z100's are AMD's Zynq-7000 product table (Zynq-7100:
277,400 LUTs, 554,800 flip-flops, 2,020 DSP48E1, 755 36 Kb block RAMs).
"""

from __future__ import annotations

from dataclasses import dataclass

from asr.config_errors import ConfigError

RESOURCES = ("lut", "ff", "dsp", "bram")


@dataclass(frozen=True)
class Device:
    """One FPGA part. ``nextpnr``: the part's nextpnr-ecp5 options (None: no open place and
    route, the counts are Yosys estimates). ``labels``: each resource's primitive name."""

    name: str
    part: str
    family: str                      # "ecp5" or "xilinx"
    synth: str                       # the Yosys synthesis command, without -top
    nextpnr: tuple[str, ...] | None
    capacity: dict[str, int]
    labels: dict[str, str]
    coarse: tuple[str, ...] = ()     # the synthesis script's coarse section, without share
    after_coarse: str = ""           # the script's label after it
    clock_site: str | None = None    # a package pin that reaches the global clock network

    def yosys_commands(self, write: str = "") -> list[str]:
        """The synthesis script with its resource-sharing pass left out: on the generated
        engine (hundreds of shifters, multipliers and array reads under conditions) its SAT
        search over pairs of cells takes tens of minutes; the engine's units are not shared
        between its phases in the RTL either."""
        return [f"{self.synth} -run :coarse", *self.coarse,
                f"{self.synth} -run {self.after_coarse}:{write}"]

    @property
    def place_route(self) -> bool:
        return self.nextpnr is not None


_ECP5_LABELS = {"lut": "LUT4", "ff": "FF", "dsp": "MULT18X18D", "bram": "DP16KD"}


# Yosys 0.70's synth_ecp5 (synth_lattice -family ecp5) coarse section, less share
_ECP5_COARSE = (
    "proc -latches error", "check", "flatten", "tribuf -logic", "deminout", "opt_expr", "check",
    "opt_clean", "opt -nodffe -nosdff", "fsm", "opt", "wreduce", "peepopt", "opt_clean",
    "techmap -map +/cmp2lut.v -D LUT_WIDTH=4", "opt_expr", "opt_clean",
    "techmap -map +/mul2dsp.v -map +/lattice/dsp_map_18x18.v -D DSP_A_MAXWIDTH=18 "
    "-D DSP_B_MAXWIDTH=18 -D DSP_A_MINWIDTH=2 -D DSP_B_MINWIDTH=2 -D DSP_NAME=$__MUL18X18",
    "chtype -set $mul t:$__soft_mul", "alumacc", "opt", "memory -nomap", "opt_clean")
# synth_xilinx's (UltraScale and 7 series: 6-input LUTs)
_XILINX_COARSE = ("techmap -map +/cmp2lut.v -map +/cmp2lcu.v -D LUT_WIDTH=6", "alumacc", "opt",
                  "memory -nomap", "opt_clean")


def _ecp5(size: str, luts: int, mults: int, ebrs: int) -> Device:
    # every ECP5 slice holds two LUT4s and two flip-flops
    return Device(f"ecp5-{size}", f"LFE5U-{size[:-1]}F", "ecp5", "synth_ecp5",
                  (f"--{size}", "--package", "CABGA381"),
                  {"lut": luts, "ff": luts, "dsp": mults, "bram": ebrs}, _ECP5_LABELS,
                  # G2: PCLKT6_0 of the CABGA381 package, a primary clock input (a clock on
                  # a pin nextpnr picks may have no route to the clock network)
                  _ECP5_COARSE, "map_ram", "G2")


DEVICES: dict[str, Device] = {d.name: d for d in (
    _ecp5("25k", 24288, 28, 56),
    _ecp5("45k", 43848, 72, 108),
    _ecp5("85k", 83640, 156, 208),
    Device("xcku060", "XCKU060", "xilinx", "synth_xilinx -family xcu", None,
           {"lut": 331680, "ff": 663360, "dsp": 2760, "bram": 1080},
           {"lut": "LUT6", "ff": "FF", "dsp": "DSP48E2", "bram": "RAMB36"},
           _XILINX_COARSE, "map_memory"),
    Device("xc7z100", "XC7Z100", "xilinx", "synth_xilinx -family xc7", None,
           {"lut": 277400, "ff": 554800, "dsp": 2020, "bram": 755},
           {"lut": "LUT6", "ff": "FF", "dsp": "DSP48E1", "bram": "RAMB36"},
           _XILINX_COARSE, "map_memory"),
)}


def get_device(name: str, key: str = "--device") -> Device:
    """The device called ``name``; an unknown name is an error naming ``key`` and the known
    devices."""
    if name not in DEVICES:
        raise ConfigError(f"{key}: unknown device {name!r}; allowed: {', '.join(DEVICES)}")
    return DEVICES[name]
