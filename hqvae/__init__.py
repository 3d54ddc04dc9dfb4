"""hqvae: hierarchical discrete representation learning (VQ-VAE, SQ-VAE, HQ-VAE, PQ-VAE)."""
from .models import HQVAE, ModelOutput, create_model, from_pretrained, list_models
from .quantizers import QuantizerOutput, ResidualQuantizer, StochasticQuantizer, VectorQuantizer
from .version import __version__

__all__ = [
    "HQVAE",
    "ModelOutput",
    "QuantizerOutput",
    "ResidualQuantizer",
    "StochasticQuantizer",
    "VectorQuantizer",
    "create_model",
    "from_pretrained",
    "list_models",
]
