"""Benchmarks: each script prints a table side by side with its peer."""
