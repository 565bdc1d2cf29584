"""In-process consensus simulation harness (no network, fake clock): see tests/sim/world.py."""
