"""The host path over a simulated UART: ``hw.host`` talking to ``hw.board.SimBoard`` in cocotb
(``python -m sim.host.run``; docs/board.md)."""
