"""Which config a run starts or continues with: shared by ``hqvae train`` and ``hqvae prior train``.

    resume None       a new run: the config from its source (``--config`` for a tokenizer, the
                      defaults for a prior) with the overrides
    resume "always"   continue the run in ``out``: the config stored in its run.json with the
                      overrides, which may change the schedule or the logging, not the model
    resume "auto"     continue the run in ``out`` when there is one (its source must describe the
                      same model), else start it: what a scheduler resubmits after a pre-emption

Each returns ``(config, resume)`` with ``resume`` a bool for ``hqvae.train.engine.fit``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from hqvae.priors.config import PriorTrainConfig, load_prior_config
from hqvae.train.config import SectionedConfig, TrainConfig, apply_overrides, load_config
from hqvae.train.run_dir import RunDir


def stored_config(out: str | os.PathLike, overrides: list[str], described: SectionedConfig | None,
                  load: Callable[[dict, list[str]], SectionedConfig]) -> SectionedConfig:
    """The config stored in ``out``'s run.json, checked, with ``overrides`` applied by ``load``. A resumed
    run keeps its model: ``described`` (the config the command line describes, with --resume auto)
    must have the run's model, and the model keys are dropped; without it they are refused."""
    model_keys = [o for o in overrides if o.split("=", 1)[0].startswith("model.")]
    if described is None and model_keys:
        raise ValueError(f"{model_keys}: a resumed run keeps its model (it comes from checkpoints/last); "
                         f"drop the model.* overrides")
    stored = RunDir(out).resumable().config
    if described is not None:
        wanted = described.to_dict()["model"]
        if wanted != stored.get("model"):
            raise ValueError(f"{out} holds a run of model {stored.get('model')}, but the command line describes "
                             f"{wanted}; choose another --out, or pass --force to delete that run and start over")
        overrides = [o for o in overrides if o not in model_keys]
    try:
        load(stored, [])  # the stored config alone, so that its errors are told apart from the overrides'
    except ValueError as error:
        raise ValueError(f"{RunDir(out).run_file} holds a config this hqvae cannot use ({error}); fix the file, or "
                         f"start the run over with --force") from None
    return load(stored, overrides)


def starts(out: str | os.PathLike, resume: str | None) -> bool:
    """Whether the command starts a new run (``resume`` "auto" does when ``out`` holds none)."""
    return resume is None or (resume == "auto" and not RunDir(out).exists())


def train_config(out: str | os.PathLike, resume: str | None, config_file: str | None,
                 overrides: list[str]) -> tuple[TrainConfig, bool]:
    """The config of ``hqvae train`` (``config_file``: --config)."""
    load = lambda stored, extra: TrainConfig.from_dict(apply_overrides(stored, extra))  # noqa: E731
    if starts(out, resume):
        if not config_file:
            raise ValueError("--config is required (e.g. --config configs/fashion_mnist.yaml model.name=sqvae2)")
        return load_config(config_file, overrides), False
    if resume == "always" and config_file:
        raise ValueError("--resume takes the config from the run's run.json; drop --config "
                         "(pass changes as key=value overrides), or use --resume auto")
    described = load_config(config_file, overrides) if config_file else None  # --resume auto: the same command line
    return stored_config(out, overrides, described, load), True


def prior_config(out: str | os.PathLike, resume: str | None, run: str | None,
                 overrides: list[str]) -> tuple[PriorTrainConfig, str, bool]:
    """(config, tokenizer run, resume) of ``hqvae prior train`` (``run``: --run)."""
    if starts(out, resume):
        if not run:
            raise ValueError("--run is required: the tokenizer run whose codes the prior models")
        return load_prior_config(overrides), run, False
    info = RunDir(out).resumable()
    tokenizer = info.extra["tokenizer"]["run"]
    if run and Path(run).resolve() != Path(tokenizer):
        raise ValueError(f"{out} was trained on {tokenizer}; drop --run or pass that run")
    described = load_prior_config(overrides) if resume == "auto" else None  # the same command line again
    config = stored_config(out, overrides, described, lambda stored, extra: load_prior_config(extra, stored))
    return config, tokenizer, True
