"""Glow (Kingma & Dhariwal 2018): a flow with exact encode/decode and log-likelihoods.

actnorm (§3.1) · invconv (§3.2) · coupling (§3.3) · step (Figure 2a) · multiscale (Figure 2b:
squeeze, split with learned prior) · prior (top prior, class conditioning) · quantize
(n_bits, dequantization) · model (`Glow`). `latents` only re-exports
`tractable.models.latents` (interpolation, attribute vectors for every `Invertible` model),
kept for imports written against 0.1.0.
"""

from tractable.models.glow.config import GlowConfig
from tractable.models.glow.model import Glow

__all__ = ["Glow", "GlowConfig"]
