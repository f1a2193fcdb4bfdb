"""The options of the `s2hpruner` method (`prune.options.*`), with their meaning.

Where the official code (`opposj/S2HPruner`, `big_resnet_ddp.py`) is determinate, its
behaviour is the default and the reading of the paper's text an option; `method/README.md`
keeps the table (item / paper / official code / ours / option). Defaults: Algorithm 1
("ours"); the expected-width hard rule on buckets of channels; the soft mask of a CNN's
residual stream on each block's output (compounding along the identity path); the resource
loss on the hard widths of the prunable layers; the importance order re-sorted by L1 norm at
every step; A4's coefficients (theta: 0.5 and 5 for CNNs, 1 and 1 for transformers, chosen
from the model's groups when left null; 5 for the resource gradient) and per-group `bal_only`
balancing, with g_{G->soft->theta} off (Eq. 5); the mask optimizer's momentum and Nesterov
taken from the weights' optimizer.

The paper-text reading: `mask_rule=mean_threshold divisor=1 soft_residual=norm_output
resource=expected_network order=fixed mask_momentum=0.9 mask_nesterov=false` (`PAPER_TEXT`
below; `tests/method/test_algorithm.py` checks its gradients against the paper's equations).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from core.errors import ConfigError
from method.prefix import HARD_RULES, INITS
from method.streams import STREAMS

FORMULATIONS = ("ours", "alt1", "alt2", "soft_only")
BALANCES = ("per_group", "global", "none")
FUSES = ("bal_only", "default")
MASK_SCHEDULES = ("constant", "follow")
SOFT_RESIDUALS = ("block_output", "norm_output")
RESOURCES = ("hard_prunable", "expected_network")
ORDERS = ("l1_step", "fixed")
HARD_PASSES = ("sliced", "masked")
STEP_MEMORIES = ("fast", "low")

# The paper's text where the official code departs from it: `S2HOptions(**PAPER_TEXT)`.
PAPER_TEXT: dict = {
    "mask_rule": "mean_threshold", "divisor": 1, "soft_residual": "norm_output",
    "resource": "expected_network", "order": "fixed", "mask_momentum": 0.9, "mask_nesterov": False,
}


@dataclass
class S2HOptions:
    formulation: str = "ours"  # ours (Alg. 1) | alt1 (Eq. 6) | alt2 (Eq. 7) | soft_only
    mask_rule: str = "expected_width"  # expected_width (official code) | mean_threshold (paper)
    mask_init: str = "uniform"  # uniform: u = 0 | dense: a ramp favouring wide prefixes
    # channels per mask logit (bucket size); null: the architecture's (method.buckets), 1: per channel
    divisor: Optional[int] = None
    soft_residual: str = "block_output"  # block_output (official) | norm_output (paper text)
    resource: str = "hard_prunable"  # hard_prunable (official) | expected_network (paper text)
    order: str = "l1_step"  # l1_step (official: L1 re-sort every step) | fixed (reorder_every)
    mask_lr: float = 2.0  # SGD learning rate of the mask logits
    mask_momentum: Optional[float] = None  # null: the weights' optimizer's (official), else this
    mask_nesterov: Optional[bool] = None  # null: the weights' optimizer's (official), else this
    mask_weight_decay: float = 0.0  # the mask optimizer's own weight decay (official msk_weight_decay)
    mask_schedule: str = "constant"  # constant | follow (the weights' schedule, scaled to mask_lr)
    warmup_epochs: int = 0  # epochs of dense training before the masks exist (official st_warmup_epochs)
    hard_ft_epoch: Optional[int] = None  # from this epoch on only the hard network trains, masks frozen
    coef_l_theta: Optional[float] = None  # beta; null: 0.5 (CNN) or 1 (transformer)
    coef_g_theta: Optional[float] = None  # gamma; null: 5 (CNN) or 1 (transformer)
    coef_r: float = 5.0  # coefficient of g_{R->w} after balancing (A4)
    balance: str = "per_group"  # per_group (official code) | global | none (plain sum)
    fuse: str = "bal_only"  # bal_only (A4's text, official bal_only) | default (official: explores once R is small)
    flops_relax: float = 0.01  # `default` fuse: |ratio - target| under which the data term grows
    g_l_theta: bool = True  # g_{L->theta*w->theta}
    g_g_hard_theta: bool = True  # g_{G->theta<m>->theta}
    g_g_soft_theta: bool = False  # g_{G->theta*w->theta} (off in Eq. 5; Table 5 ablation)
    g_l_w: bool = True  # g_{L->theta*w->w}
    g_g_w: bool = True  # g_{G->theta*w->w}
    reorder_every: int = 0  # epochs between importance re-orderings (0: order fixed at the start)
    # how the hard network trains: at its kept widths sharing theta (`core.groups.sliced`), or
    # masked at full width; equal up to float rounding, so not in the run id
    hard_pass: str = field(default="sliced", metadata={"result": False})
    # sliced pass only: `fast` holds the soft graph and the sliced hard graph together; `low`
    # releases the soft graph before the hard one is built (the hard outputs d2 needs come from
    # one more forward pass without a graph): one graph at the peak, one more hard forward pass.
    # Equal results, so not in the run id
    step_memory: str = field(default="fast", metadata={"result": False})
    # Appendix F: `two` issues the hard forward pass on a CUDA stream of its own beside the soft
    # pass (`method.streams`; Algorithm 1 with step_memory=fast only). Off until `python -m bench
    # gpu-check` has compared it with the sequential step on a GPU. Equal results, not in the run id
    streams: str = field(default="one", metadata={"result": False})
    recalibrate_bn: bool = True  # recompute BN statistics of evaluated/exported networks
    recalibrate_batches: int = 20  # training batches used for that
    # steps between lines of widths.jsonl (0: only at epoch ends); logging only: not in the run id
    widths_every: int = field(default=50, metadata={"result": False})
    init_from: Optional[str] = None  # a finished run folder to start from (Table 7 fine-tuning)

    def validate(self) -> None:
        for key, value, choices in (
            ("formulation", self.formulation, FORMULATIONS),
            ("mask_rule", self.mask_rule, HARD_RULES),
            ("mask_init", self.mask_init, INITS),
            ("balance", self.balance, BALANCES),
            ("mask_schedule", self.mask_schedule, MASK_SCHEDULES),
            ("fuse", self.fuse, FUSES),
            ("soft_residual", self.soft_residual, SOFT_RESIDUALS),
            ("resource", self.resource, RESOURCES),
            ("order", self.order, ORDERS),
            ("hard_pass", self.hard_pass, HARD_PASSES),
            ("step_memory", self.step_memory, STEP_MEMORIES),
            ("streams", self.streams, STREAMS),
        ):
            if value not in choices:
                raise ConfigError(f"prune.options.{key} must be one of {', '.join(choices)}, got {value!r}")
        if self.divisor is not None and self.divisor < 1:
            raise ConfigError(f"prune.options.divisor must be >= 1 or null, got {self.divisor}")
        if self.mask_lr <= 0:
            raise ConfigError(f"prune.options.mask_lr must be > 0, got {self.mask_lr}")
        if self.mask_momentum is not None and not 0 <= self.mask_momentum < 1:
            raise ConfigError(f"prune.options.mask_momentum must be in [0, 1) or null, got {self.mask_momentum}")
        if self.mask_weight_decay < 0:
            raise ConfigError(f"prune.options.mask_weight_decay must be >= 0, got {self.mask_weight_decay}")
        if self.flops_relax <= 0:
            raise ConfigError(f"prune.options.flops_relax must be > 0, got {self.flops_relax}")
        if self.hard_ft_epoch is not None and self.hard_ft_epoch <= self.warmup_epochs:
            raise ConfigError(f"prune.options.hard_ft_epoch ({self.hard_ft_epoch}) must come after warmup_epochs ({self.warmup_epochs})")
        for key in ("reorder_every", "recalibrate_batches", "widths_every", "warmup_epochs"):
            if getattr(self, key) < 0:
                raise ConfigError(f"prune.options.{key} must be >= 0, got {getattr(self, key)}")
        if self.streams == "two" and (self.formulation != "ours" or self.step_memory != "fast"):
            raise ConfigError("prune.options.streams=two overlaps Algorithm 1's soft and hard passes: it needs "
                              f"formulation=ours and step_memory=fast (got {self.formulation}, {self.step_memory})")
        if self.formulation == "ours" and not (self.g_l_theta or self.g_g_hard_theta or self.g_g_soft_theta):
            raise ConfigError("prune.options: every gradient term of the weights is switched off")
