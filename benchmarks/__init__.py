"""Benchmarks: each prints a table and a last JSON line."""
