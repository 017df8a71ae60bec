"""Benchmarks: each module prints its measured figures next to a reference measured in the same run."""
