"""Executors: where candidates are trained (in this process, or Ray Tune workers)."""
