"""Lloyd's k-means on the first training batch: the codebook start of the VQ layers (and the SQ layers'
``init="kmeans"``)."""
from __future__ import annotations

import torch
from torch import Tensor

from .base import nearest_code


def kmeans(x: Tensor, num_clusters: int, iters: int) -> tuple[Tensor, Tensor]:
    """Lloyd's k-means on rows x (N, d) -> (centroids (K, d), cluster sizes (K,)).

    Centroids start at random rows (with replacement when N < K); empty clusters keep their
    previous centroid.
    """
    centroids = x[torch.randint(x.shape[0], (num_clusters,), device=x.device)]  # (a copy)
    sizes = torch.zeros(num_clusters, device=x.device)
    for _ in range(iters):
        assign = nearest_code(x, centroids)
        sizes = torch.bincount(assign, minlength=num_clusters).float()
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)
        filled = sizes > 0
        centroids[filled] = sums[filled] / sizes[filled, None]
    return centroids, sizes
