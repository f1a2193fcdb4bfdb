"""Re-implemented baselines on the shared substrate (see baselines/README.md)."""

from baselines import group_sl, rst_s  # noqa: F401  (registers the methods)
