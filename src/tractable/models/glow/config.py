"""Glow hyperparameters (Kingma & Dhariwal 2018, §5 and Appendix; openai/glow `train.py`).

Defaults are a small model for 28×28 digits. The paper's CIFAR-10 model is
`K=32, L=3, width=512` (affine coupling, learned top prior); its 5-bit CelebA-HQ runs use
`n_bits=5`. `tractable.recipes` lists the exact settings of the published runs.

Three fields reproduce details of openai/glow's code that the paper does not state; they
default off so that models saved before they existed load and score unchanged:
`edge_bias` (border channel on every 3×3 convolution, `tfops.add_edge_padding`),
`border_top_prior` (the learned top prior as a zero convolution over zeros plus that border
channel, `model.prior` with `learntop`), `hidden_init_std` (N(0, 0.05) initial weights of the
coupling networks' hidden convolutions, `tfops.default_initializer`). openai/glow also runs
the 1×1 convolution as a plain matrix (its LU branch is switched off in the code): `lu=False`.
"""

from __future__ import annotations

from dataclasses import dataclass

from tractable.config import ModelConfig, setting
from tractable.errors import ConfigError
from tractable.limits import MAX_FLOW_STEPS, MAX_LAYERS, MAX_LEVELS, MAX_WIDTH
from tractable.models.glow.coupling import COUPLINGS


@dataclass
class GlowConfig(ModelConfig):
    n_bits: int = setting(8, "keep the top n_bits of each 8-bit value (paper: 5 for "
                             "CelebA-HQ)", minimum=1, maximum=8)
    K: int = setting(8, "flow steps per level (paper: 32)", minimum=1,
                     maximum=MAX_LAYERS)
    L: int = setting(2, "levels of the multi-scale architecture (paper: 3)", minimum=1,
                     maximum=MAX_LEVELS)
    width: int = setting(128, "hidden channels of each coupling network (paper: 512)",
                         minimum=1, maximum=MAX_WIDTH)
    coupling: str = setting("affine", "affine or additive coupling", choices=COUPLINGS)
    lu: bool = setting(True, "LU-decomposed 1x1 convolutions (else plain, float64 log-det)")
    learn_top: bool = setting(True, "learned mean/log-std of the top prior (else N(0, I))")
    y_condition: bool = setting(True, "class-conditional top prior and classifier when "
                                      "num_classes > 0")
    weight_y: float = setting(0.01, "weight of the classification loss (bits) on the top "
                                    "latent", minimum=0.0)
    checkpoint_grads: bool = setting(False, "recompute each flow step in backward (less "
                                            "memory)")
    edge_bias: bool = setting(False, "openai/glow: 3x3 convs see an extra channel marking "
                                     "the border")
    border_top_prior: bool = setting(False, "learned top prior = zero conv (edge bias) over "
                                            "zeros")
    hidden_init_std: float | None = setting(None, "N(0, std^2) init of the hidden coupling "
                                                  "convs (openai: 0.05)", minimum=0.0)
    coupling_scale_floor: float = setting(0.05, "affine scale = f + (1-f)*sigmoid(h+2) "
                                                "in (f, 1); 0: openai's unbounded form",
                                          minimum=0.0, maximum=0.99)
    split_max_log_std: float | None = setting(2.0, "cap on the split priors' log-std "
                                                   "(decoding multiplies by at most e^cap); "
                                                   "None: uncapped, as openai")

    def validate(self) -> None:
        super().validate()
        _, h, w = self.image_shape
        if self.K * self.L > MAX_FLOW_STEPS:
            raise ConfigError(f"K x L = {self.K} x {self.L} flow steps; at most "
                              f"{MAX_FLOW_STEPS} are supported")
        if self.border_top_prior and not (self.learn_top and self.edge_bias):
            raise ConfigError("border_top_prior needs learn_top and edge_bias (it is the "
                              "learned top prior's border channel)")
        if self.hidden_init_std is not None and not self.hidden_init_std > 0:
            raise ConfigError(f"hidden_init_std must be > 0 (or unset), got "
                              f"{self.hidden_init_std}")
        f = 2**self.L
        if h % f or w % f:
            fits = max(n for n in range(1, self.L + 1) if h % 2**n == 0 and w % 2**n == 0) \
                if h % 2 == 0 and w % 2 == 0 else 0
            raise ConfigError(
                f"Glow with L={self.L} levels halves the image {self.L} times, so height and "
                f"width must be divisible by {f}; {h}x{w} is not"
                + (f": use L <= {fits}" if fits else ": use an even image size")
            )
