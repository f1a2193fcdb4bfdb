"""Benchmarks: training cost per method and inference speed of slimmed networks (`make bench`)."""
