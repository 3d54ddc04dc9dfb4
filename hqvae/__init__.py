"""hqvae: hierarchical discrete representation learning (VQ-VAE, SQ-VAE, HQ-VAE, PQ-VAE)."""
from ._version import __version__
from .codec import compress, decompress
from .models import HQVAE, ModelOutput, create_model, from_pretrained, list_models
from .quantizers import QuantizerOutput, ResidualQuantizer, StochasticQuantizer, VectorQuantizer

__all__ = [
    "HQVAE",
    "ModelOutput",
    "QuantizerOutput",
    "ResidualQuantizer",
    "StochasticQuantizer",
    "VectorQuantizer",
    "__version__",
    "compress",
    "create_model",
    "decompress",
    "from_pretrained",
    "list_models",
]
