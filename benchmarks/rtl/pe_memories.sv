// One PE's memories as the generated engine (hw/rtl/generate.py) declares and reads them:
// the weight memory (one word an entry), the column-pointer memory read at two addresses and
// NSLOT gate-accumulator memories, each read on the clock edge. SEL picks the weights (1),
// the pointers (2), the accumulators (4). benchmarks/rtl_synth.py --pe-memories runs it.
module pe_memories #(
  parameter int SEL = 7, WDEPTH = 2, EB = 16, PDEPTH = 2, PB = 8, NSLOT = 8, DEP = 32, A = 32
) (
  input logic clk,
  input logic [31:0] addr,
  input logic [NSLOT-1:0] we,
  input logic [A-1:0] din,
  output logic [EB-1:0] wq,
  output logic [PB-1:0] pq0, pq1,
  output logic [NSLOT-1:0][A-1:0] aq
);
  if (SEL[0]) begin : weights
    (* ram_style = "block" *) logic [EB-1:0] wm [0:WDEPTH-1];
    initial $readmemh("mem/pe0.w0.hex", wm);
    always_ff @(posedge clk) wq <= wm[addr[$clog2(WDEPTH)-1:0]];
  end
  if (SEL[1]) begin : pointers
    (* ram_style = "block" *) logic [PB-1:0] pm [0:PDEPTH-1];
    initial $readmemh("mem/pe0.ptr.hex", pm);
    always_ff @(posedge clk) begin
      pq0 <= pm[addr[$clog2(PDEPTH)-1:0]];
      pq1 <= pm[addr[$clog2(PDEPTH)-1:0] + 1'b1];
    end
  end
  if (SEL[2]) for (genvar s = 0; s < NSLOT; s++) begin : slot
    (* ram_style = "block", no_rw_check *) logic [A-1:0] acc [0:DEP-1];
    always_ff @(posedge clk) begin
      if (we[s]) acc[addr[$clog2(DEP)-1:0]] <= din;
      aq[s] <= acc[addr[16 +: $clog2(DEP)]];
    end
  end
endmodule
