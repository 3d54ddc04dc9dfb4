"""Autoregressive priors over the codes of any tokenizer: training, evaluation, sampling and
real compression (range coding with the prior's probabilities).

    layout.py       the one adapter from a model's codes to a token sequence (CodeLayout)
    base.py         PriorConfig, Block, KVCache, PriorBase; the registry of prior kinds (register_prior)
    transformer.py  CodePrior ("flat"): a small causal transformer with per-layer vocabularies and a KV cache
    depth.py        DepthPrior ("depth"): RQ-Transformer style (spatial + depth transformers) for residual stacks
    sampling.py     KV-cached generation: temperature, top-k, top-p
    config.py       PriorTrainConfig, the typed config of ``hqvae prior train``
    folder.py       the prior folder (run.json, codes cache, checkpoints); open_prior
    task.py         the prior's training task (the loop is hqvae.train.engine.fit)
    evaluate.py     test NLL against the uniform and histogram rates
    coding.py       range coding with constriction and the versioned ``.hqz`` container
    images.py       writing decoded items as PNG (and WAV) files
"""
from hqvae.priors.base import PriorBase, PriorConfig, build_prior, load_prior, register_prior
from hqvae.priors.depth import DepthPrior
from hqvae.priors.layout import CodeLayout, decode_layers
from hqvae.priors.sampling import sample
from hqvae.priors.transformer import CodePrior

__all__ = ["CodeLayout", "CodePrior", "DepthPrior", "PriorBase", "PriorConfig", "build_prior", "decode_layers",
           "load_prior", "register_prior", "sample"]
