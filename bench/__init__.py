"""Benchmarks of a running Pushwire instance: `python -m bench [push_api] [fanout] [memory]`.

Each scenario starts its own server subprocess pinned to CPU 0 (taskset), drives it from this
process pinned to CPU 1, prints a table and writes `bench/results/<date>-<scenario>.json`.
Benchmarks print figures; they never assert on them. See bench/README.md.
"""
