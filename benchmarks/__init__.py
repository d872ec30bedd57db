"""Benchmarks: each prints its figures beside the raw library doing the same work in the same run. Helpers
shared with the tests come from ``devkit``; nothing here imports ``tests``."""
