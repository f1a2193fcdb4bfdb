"""Re-implemented baselines on the shared substrate (see baselines/README.md)."""

from baselines import group_sl, otov2, refill, rst_s  # noqa: F401  (registers the methods)
