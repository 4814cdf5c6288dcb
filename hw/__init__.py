"""hw: a bit-accurate, cycle-level model of an FPGA sparse engine (ESE/BBS/EIE style)."""
