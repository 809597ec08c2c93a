"""Standalone benchmark scripts; each prints its figures (see ``benchmarks/README.md``)."""
