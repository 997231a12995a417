"""Benchmarks run by `nox -s bench`; each module writes one section of
docs/BENCHMARKS.md."""
