"""Seeds: one run seed, and independent streams derived from it by purpose.

Every random choice of a run traces back to `RunConfig.seed`. Streams that must not depend on
how far another stream has advanced (the data order of epoch 7, the augmentation of one
sample) get their own seed from `derive_seed(run_seed, purpose, ...)`, so a run resumed in
the middle of an epoch draws exactly what an uninterrupted one would.
"""

from __future__ import annotations

import random

import numpy as np
import torch

# Purposes of derived streams; fixed numbers so derived seeds never change across versions.
DATA_ORDER = 1
SAMPLE_AUGMENT = 2
SYNTHETIC_PROTOTYPES = 3
SYNTHETIC_TRAIN = 4
SYNTHETIC_TEST = 5
LOADER = 6
PRUNE_SELECTION = 7  # which units a baseline removes at random (RST-S)


def derive_seed(*keys: int) -> int:
    """A 63-bit seed determined by `keys` (non-negative integers), well mixed."""
    state = np.random.SeedSequence(list(keys)).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 ^ int(state[1])


def derive_seeds(count: int, *keys: int) -> np.ndarray:
    """`count` 32-bit seeds from one derived stream (e.g. one per sample of an epoch)."""
    return np.random.SeedSequence(list(keys)).generate_state(count, dtype=np.uint32)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices) with `seed`; 0 is a valid seed."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
