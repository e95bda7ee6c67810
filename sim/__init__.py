"""cocotb benches: the generated accelerator in Verilator / Icarus against the golden model."""
