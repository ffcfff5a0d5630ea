"""TarFlow hyperparameters (Zhai et al. 2025, "Normalizing Flows are Capable Generative
Models", §2.3 and §3).

The paper names a model TarFlow [P-Ch-T-K-σ]: patch size P, Transformer width Ch, T flow
blocks of K causal Transformer layers each, training noise σ (on its [-1, 1] pixel scale).
Its ImageNet 64×64 likelihood model is [2-768-8-8]; its generation models add σ = 0.05
(ImageNet 64) or 0.07 (AFHQ 256, P = 8). The defaults here are a small model for 28×28
digits; `TarFlow.presets` lists `small` and `paper`.

`log_scale_bound` is this project's addition: every log-scale is soft-clamped,
α = c·tanh(a/c), so one block scales a value by at most e^c either way and the inverse of
the whole flow by at most e^(T·c): bounded by construction, it cannot overflow float32
(e^88) wherever a latent comes from (the prior at any temperature, an edit, a blend).
"""

from __future__ import annotations

from dataclasses import dataclass

from tractable.config import ModelConfig, setting
from tractable.errors import ConfigError

# e^(T·c) must stay far below float32's largest value (about e^88.7).
MAX_TOTAL_LOG_SCALE = 64.0


@dataclass
class TarFlowConfig(ModelConfig):
    patch_size: int = setting(4, "patch side P: the image is a sequence of (H/P)·(W/P) "
                                 "patches of C·P² values (paper: 2 at 64×64)", minimum=1)
    width: int = setting(128, "channels of each flow block's Transformer (paper: 768)",
                         minimum=1)
    blocks: int = setting(4, "flow blocks T; the autoregression direction is reversed "
                             "between consecutive blocks (paper: 8)", minimum=1)
    layers: int = setting(2, "causal Transformer layers K in each flow block (paper: 8)",
                          minimum=1)
    heads: int = setting(4, "attention heads; width must be divisible by it (paper: 12, "
                            "64 channels each)", minimum=1)
    mlp_ratio: int = setting(4, "hidden channels of each MLP, as a multiple of width",
                             minimum=1)
    log_scale_bound: float = setting(4.0, "c in alpha = c·tanh(a/c): each block scales a "
                                          "value by at most e^c (inverse cannot overflow)",
                                     minimum=0.01)
    noise_std: float = setting(0.0, "std of Gaussian noise added to training images on the "
                                    "[-1, 1] scale (paper: 0.05); reported bits/dim never "
                                    "include it", minimum=0.0, maximum=1.0)
    label_drop: float = setting(0.1, "training probability of the 'no class' embedding "
                                     "(class-conditional models; enables guidance)",
                                minimum=0.0, maximum=1.0)

    def validate(self) -> None:
        super().validate()
        _, h, w = self.image_shape
        p = self.patch_size
        if h % p or w % p:
            raise ConfigError(f"patch_size {p} must divide the image's height and width; "
                              f"{h}x{w} is not divisible by it")
        if (h // p) * (w // p) < 2:
            raise ConfigError(f"patch_size {p} leaves a single patch of the {h}x{w} image; "
                              "an autoregressive flow needs at least 2")
        if self.width % self.heads:
            raise ConfigError(f"width {self.width} must be divisible by heads {self.heads}")
        if self.blocks * self.log_scale_bound > MAX_TOTAL_LOG_SCALE:
            raise ConfigError(
                f"blocks × log_scale_bound = {self.blocks * self.log_scale_bound:g} exceeds "
                f"{MAX_TOTAL_LOG_SCALE:g}: the inverse could scale a latent by e^that and "
                "overflow; lower log_scale_bound")
        if not 0.0 <= self.label_drop < 1.0:
            raise ConfigError(f"label_drop must be in [0, 1), got {self.label_drop}")
