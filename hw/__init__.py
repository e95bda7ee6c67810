"""Amaranth gateware of the accelerator. Never imports torch; reads compiled model files."""
