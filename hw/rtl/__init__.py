"""The engine as RTL: :mod:`hw.rtl.generate` writes the SystemVerilog of one
:class:`~hw.config.EngineConfig` and artifact, :mod:`hw.rtl.cosim` builds it with Verilator
(:mod:`hw.rtl.tools` finds the tools) and checks it bit for bit and cycle for cycle against
the Python engine and its timing model, and :mod:`hw.rtl.synth` synthesizes it with the open
FPGA flow (Yosys, nextpnr)."""
