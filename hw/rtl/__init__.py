"""The engine as RTL: generated SystemVerilog, its co-simulation, and its synthesis with the
open FPGA flow (Yosys, nextpnr)."""
