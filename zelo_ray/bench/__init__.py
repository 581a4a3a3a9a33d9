"""Benchmarks behind `zelo bench …`; results are recorded in docs/benchmarks.md."""
