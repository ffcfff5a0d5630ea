"""TarFlow (Zhai et al. 2025): a normalizing flow of causal Transformer blocks on patches.

config (`TarFlowConfig`) · transformer (causal layers, key/value caches) · block (one
autoregressive affine flow block, its incremental form) · model (`TarFlow`: patches,
likelihood, latents, denoising). Sampling: `tractable.sampling.flow`.
"""

from tractable.models.tarflow.config import TarFlowConfig
from tractable.models.tarflow.model import TarFlow

__all__ = ["TarFlow", "TarFlowConfig"]
