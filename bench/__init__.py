"""Benchmarks for newsbeam: `python -m bench` (or `make bench`) prints a table."""
