"""Benchmarks: each prints its measured figures beside a baseline measured in the same run, and
writes them as JSON under bench/results/. Run all with `make bench`, one with `python -m bench NAME`."""
