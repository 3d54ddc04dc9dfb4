"""The configuration of ``hqvae prior train``: typed sections (data, model, optim, train, logging; each
a dataclass below, whose docstring says what its keys mean) with dotted ``key=value`` overrides.

Values come from the dataclass defaults, then the overrides (each value read as a YAML scalar,
e.g. ``train.steps=3000 model.d_model=192 data.limit=null``). Unknown keys and values of the
wrong type are rejected with the valid keys of the section, as in ``hqvae.train.config``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

from hqvae.priors.base import PRIORS
from hqvae.train.config import SectionedConfig, apply_overrides, check_ranges


@dataclass
class PriorDataConfig:
    """``data``: the codes to train on.

    checkpoint: the tokenizer checkpoint whose codes are modelled (best | last).
    limit: train on this many evenly spaced items of the run's train split; null: all.
    val_items: validate on this many evenly spaced items of the val split; null: all; 0: never.
    encode_batch_size: batch size of the one-off encoding of the splits (cached in the folder).
    root: where the run's data set is now, if not at the root recorded in its run.json.
    """

    checkpoint: Literal["best", "last"] = "best"
    limit: int | None = None
    val_items: int | None = 2000
    encode_batch_size: int = 256
    root: str | None = None


@dataclass
class PriorModelConfig:
    """``model``: the transformer (``hqvae.priors.transformer``).

    kind: a ``hqvae.priors.register_prior`` name: flat (one causal sequence over all tokens, layers coarse to fine) | depth (RQ-Transformer
        style for layers that share one grid: a spatial transformer over positions and a
        depth_layers-block depth transformer over each position's codes; hqvae.priors.depth) |
        auto (the default: depth for an HQ-VAE whose layers all share one grid, a residual stack
        such as rqvae / rsqvae, where it reached a much lower test NLL in less training time
        (benchmarks/results/prior-kinds-fashion_mnist.json); flat otherwise, and for PQ-VAE tokens,
        which keep their own order).
    d_model, n_layer, n_head: width, blocks and heads. dropout: on attention and residual branches.
    class_conditional: condition on the data set's class labels (the start token is the class);
        the prior also learns the unconditional distribution (the label is dropped with
        probability class_dropout), which compression uses.
    """

    kind: str = "auto"
    depth_layers: int = 1
    d_model: int = 128
    n_layer: int = 4
    n_head: int = 4
    dropout: float = 0.0
    class_conditional: bool = False
    class_dropout: float = 0.1


@dataclass
class PriorOptimConfig:
    """``optim``: AdamW with ``warmup_steps`` of linear warm-up, then constant or cosine decay from
    lr to min_lr (schedule); weight decay on matrices only; the global gradient norm clipped to
    grad_clip (null: no clipping)."""

    lr: float = 1e-3
    schedule: Literal["constant", "cosine"] = "cosine"
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.01
    grad_clip: float | None = 1.0
    warmup_steps: int = 100
    min_lr: float = 1e-4


@dataclass
class PriorLoopConfig:
    """``train``: steps, batch_size (sequences per step, over all processes), seed,
    device (auto | cpu | cuda), dtype (fp32 | bf16: autocast on CUDA only), log_every,
    val_every (0: never), checkpoint_every."""

    steps: int = 2000
    batch_size: int = 32
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["fp32", "bf16"] = "fp32"
    log_every: int = 50
    val_every: int = 500
    checkpoint_every: int = 500


@dataclass
class PriorLoggingConfig:
    """``logging``: progress: a tqdm progress bar."""

    progress: bool = True


@dataclass
class PriorTrainConfig(SectionedConfig):
    """Everything ``hqvae prior train`` needs besides the run and the output folder."""

    what = "prior config"

    data: PriorDataConfig = field(default_factory=PriorDataConfig)
    model: PriorModelConfig = field(default_factory=PriorModelConfig)
    optim: PriorOptimConfig = field(default_factory=PriorOptimConfig)
    train: PriorLoopConfig = field(default_factory=PriorLoopConfig)
    logging: PriorLoggingConfig = field(default_factory=PriorLoggingConfig)

    def validate(self) -> None:
        """Range checks across keys; a ValueError names the key."""
        check_ranges([
            ("data.limit", self.data.limit, lambda v: v is None or v >= 1, "≥ 1 or null"),
            ("data.val_items", self.data.val_items, lambda v: v is None or v >= 0, "≥ 0 or null"),
            ("data.encode_batch_size", self.data.encode_batch_size, lambda v: v >= 1, "≥ 1"),
            ("model.kind", self.model.kind, lambda v: v == "auto" or v in PRIORS, f"auto or {' or '.join(PRIORS)}"),
            ("model.class_dropout", self.model.class_dropout, lambda v: 0 <= v <= 1, "in [0, 1]"),
            ("optim.lr", self.optim.lr, lambda v: v > 0, "> 0"),
            ("optim.weight_decay", self.optim.weight_decay, lambda v: v >= 0, "≥ 0"),
            ("optim.grad_clip", self.optim.grad_clip, lambda v: v is None or v > 0, "> 0 or null"),
            ("optim.warmup_steps", self.optim.warmup_steps, lambda v: v >= 0, "≥ 0"),
            ("optim.min_lr", self.optim.min_lr, lambda v: v >= 0, "≥ 0"),
            ("train.steps", self.train.steps, lambda v: v >= 1, "≥ 1"),
            ("train.batch_size", self.train.batch_size, lambda v: v >= 1, "≥ 1"),
            ("train.log_every", self.train.log_every, lambda v: v >= 1, "≥ 1"),
            ("train.val_every", self.train.val_every, lambda v: v >= 0, "≥ 0"),
            ("train.checkpoint_every", self.train.checkpoint_every, lambda v: v >= 1, "≥ 1"),
        ])


def load_prior_config(overrides: Sequence[str] = (), base: dict[str, Any] | None = None) -> PriorTrainConfig:
    """The defaults (or ``base``, a stored config) with ``overrides`` applied."""
    return PriorTrainConfig.from_dict(apply_overrides(base or {}, overrides, PriorTrainConfig, "train.steps=3000"))
