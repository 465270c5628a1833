"""Benchmarks: each runs Feast side by side in the same run and prints ratios."""
