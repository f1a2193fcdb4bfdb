"""The options of the `s2hpruner` method (`prune.options.*`), with their meaning.

Defaults are the paper's: Algorithm 1 ("ours"), the mean-threshold hard rule, A4's
coefficients (theta: 0.5 and 5 for CNNs, 1 and 1 for transformers, chosen from the model's
groups when left null; 5 for the resource gradient) and per-group gradient balancing, with
g_{G->soft->theta} off (Eq. 5).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from core.errors import ConfigError
from method.prefix import HARD_RULES, INITS

FORMULATIONS = ("ours", "alt1", "alt2", "soft_only")
BALANCES = ("per_group", "global", "none")
MASK_SCHEDULES = ("constant", "follow")


@dataclass
class S2HOptions:
    formulation: str = "ours"  # ours (Alg. 1) | alt1 (Eq. 6) | alt2 (Eq. 7) | soft_only
    mask_rule: str = "mean_threshold"  # mean_threshold (paper) | expected_width (official code)
    mask_init: str = "uniform"  # uniform: u = 0 | dense: a ramp favouring wide prefixes
    divisor: int = 1  # channels per mask logit (bucket size)
    mask_lr: float = 2.0  # SGD learning rate of the mask logits
    mask_momentum: float = 0.9
    mask_schedule: str = "constant"  # constant | follow (the weights' schedule, scaled to mask_lr)
    coef_l_theta: Optional[float] = None  # beta; null: 0.5 (CNN) or 1 (transformer)
    coef_g_theta: Optional[float] = None  # gamma; null: 5 (CNN) or 1 (transformer)
    coef_r: float = 5.0  # coefficient of g_{R->w} after balancing (A4)
    balance: str = "per_group"  # per_group (official code) | global | none (plain sum)
    g_l_theta: bool = True  # g_{L->theta*w->theta}
    g_g_hard_theta: bool = True  # g_{G->theta<m>->theta}
    g_g_soft_theta: bool = False  # g_{G->theta*w->theta} (off in Eq. 5; Table 5 ablation)
    g_l_w: bool = True  # g_{L->theta*w->w}
    g_g_w: bool = True  # g_{G->theta*w->w}
    reorder_every: int = 0  # epochs between importance re-orderings (0: order fixed at the start)
    recalibrate_bn: bool = True  # recompute BN statistics of evaluated/exported networks
    recalibrate_batches: int = 20  # training batches used for that
    widths_every: int = 50  # steps between lines of widths.jsonl (0: only at epoch ends)
    init_from: Optional[str] = None  # a finished run folder to start from (Table 7 fine-tuning)

    def validate(self) -> None:
        for key, value, choices in (
            ("formulation", self.formulation, FORMULATIONS),
            ("mask_rule", self.mask_rule, HARD_RULES),
            ("mask_init", self.mask_init, INITS),
            ("balance", self.balance, BALANCES),
            ("mask_schedule", self.mask_schedule, MASK_SCHEDULES),
        ):
            if value not in choices:
                raise ConfigError(f"prune.options.{key} must be one of {', '.join(choices)}, got {value!r}")
        if self.divisor < 1:
            raise ConfigError(f"prune.options.divisor must be >= 1, got {self.divisor}")
        if self.mask_lr <= 0:
            raise ConfigError(f"prune.options.mask_lr must be > 0, got {self.mask_lr}")
        if not 0 <= self.mask_momentum < 1:
            raise ConfigError(f"prune.options.mask_momentum must be in [0, 1), got {self.mask_momentum}")
        for key in ("reorder_every", "recalibrate_batches", "widths_every"):
            if getattr(self, key) < 0:
                raise ConfigError(f"prune.options.{key} must be >= 0, got {getattr(self, key)}")
        if self.formulation == "ours" and not (self.g_l_theta or self.g_g_hard_theta or self.g_g_soft_theta):
            raise ConfigError("prune.options: every gradient term of the weights is switched off")
