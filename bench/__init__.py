"""Benchmarks: scripts that print numbers. No timed assertions live in tests/."""
