"""S2HPruner: the method package (see `algorithm.py` for Algorithm 1, `pruner.py` for the
registered `s2hpruner` method, `scratch.py` for Table 8's from-scratch training and `api.py`
for pruning your own model in your own training loop)."""

from method import pruner, scratch  # noqa: F401  (registers the methods)
