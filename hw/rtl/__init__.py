"""The engine as generated SystemVerilog: :mod:`hw.rtl.generate` writes it for one
:class:`~hw.config.EngineConfig` and artifact, :mod:`hw.rtl.cosim` builds it with Verilator
(:mod:`hw.rtl.verilator` finds the tool) and checks it bit for bit and cycle for cycle
against the Python engine and its timing model."""
