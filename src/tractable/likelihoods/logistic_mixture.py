"""Discretized logistic mixture likelihood (Salimans et al., 2017, §2.1–2.2).

Each pixel is a mixture of M components over whole pixels. Within component k, channel c
is a logistic with mean `μ_kc + Σ_{c'<c} α_k,cc' · x_c'` (the linear R→G→B coupling of
§2.2, `α = tanh(raw)`) and scale `s_kc = exp(max(log_s, −7))`, discretized to the 256
bins of width 2/255 covering [−1, 1]:

    P(x_c | k) = σ((x + 1/255 − μ)/s) − σ((x − 1/255 − μ)/s)   (x scaled to [−1, 1])

with bin 0 taking the whole left tail and bin 255 the whole right tail (eq. 2). When the
probability of an interior bin is below 1e-5 its log is replaced by the log-density at the
bin centre plus log(bin width), as openai/pixel-cnn does. Everything is computed in at
least float32 even if the network ran in bfloat16.

Parameter layout (`params`: `[B, P, H, W]`, `P = M · (1 + 2C + C(C−1)/2)`), in order:
mixture logits `[M]`, means `[C, M]`, log-scales `[C, M]`, coupling coefficients
`[C(C−1)/2, M]` for the pairs (1,0), (2,0), (2,1), ... (channel, earlier channel).
C = 3 gives 10·M parameters, C = 1 gives 3·M.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from tractable.checks import check_temperature
from tractable.errors import ShapeError

MIN_LOG_SCALE = -7.0
TINY_BIN_PROB = 1e-5
UNIFORM_EPS = 1e-5  # noise is drawn in [eps, 1 − eps], as in openai/pixel-cnn


def _at_least_float32(t: Tensor) -> Tensor:
    return t if t.dtype == torch.float64 else t.float()


def _pair_index(c: int, earlier: int) -> int:
    """Index of the coupling coefficient of channel `c` on channel `earlier` (< c)."""
    return c * (c - 1) // 2 + earlier


class DiscretizedLogisticMixture:
    """Per-pixel mixture of discretized logistics over `num_channels` coupled channels."""

    def __init__(self, num_channels: int, num_mixtures: int, num_bins: int = 256) -> None:
        self.num_channels = num_channels
        self.num_mixtures = num_mixtures
        self.num_bins = num_bins
        self.num_coeffs = num_channels * (num_channels - 1) // 2

    @property
    def num_params(self) -> int:
        """Channels of `params` per pixel: M · (1 + 2C + C(C−1)/2)."""
        return self.num_mixtures * (1 + 2 * self.num_channels + self.num_coeffs)

    @property
    def half_range(self) -> float:
        """Integer values k map to k / half_range − 1 in [−1, 1] (127.5 for 8 bits)."""
        return (self.num_bins - 1) / 2

    def unpack(self, params: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Split `[B, P, H, W]` into logits `[B, M, H, W]`, means and (floored) log-scales
        `[B, C, M, H, W]`, and tanh'd coupling coefficients `[B, C(C−1)/2, M, H, W]`."""
        b, p, h, w = self._check_params(params)
        m, c = self.num_mixtures, self.num_channels
        params = _at_least_float32(params)
        logits = params[:, :m]
        means = params[:, m:m + c * m].reshape(b, c, m, h, w)
        log_scales = params[:, m + c * m:m + 2 * c * m].reshape(b, c, m, h, w)
        coeffs = torch.tanh(params[:, m + 2 * c * m:].reshape(b, self.num_coeffs, m, h, w))
        return logits, means, log_scales.clamp(min=MIN_LOG_SCALE), coeffs

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        """log P(pixel) in nats, `[B, H, W]`, for integer pixels `x` `[B, C, H, W]`."""
        logits, means, log_scales, coeffs = self.unpack(params)
        self._check_values(x, params)
        xs = x.to(means.dtype) / self.half_range - 1.0  # [B, C, H, W]
        means = self._coupled_means(means, coeffs, xs)
        per_channel = self._discretized_log_prob(x.unsqueeze(2), xs.unsqueeze(2), means,
                                                 log_scales)
        per_component = per_channel.sum(dim=1) + F.log_softmax(logits, dim=1)  # [B, M, H, W]
        return torch.logsumexp(per_component, dim=1)

    def log_prob_terms(self, params: Tensor, x: Tensor) -> Tensor:
        """The finest factorization of the log-likelihood: per whole pixel, `[B, H, W]`."""
        return self.log_prob(params, x)

    def log_prob_image(self, params: Tensor, x: Tensor) -> Tensor:
        """log P(image) in nats, `[B]`: the sum of the per-pixel terms."""
        return self.log_prob(params, x).sum(dim=(1, 2))

    def bits_per_dim(self, params: Tensor, x: Tensor) -> Tensor:
        """−log₂ P(image) / (C·H·W), `[B]`."""
        return -self.log_prob_image(params, x) / (x[0].numel() * math.log(2.0))

    def _coupled_means(self, means: Tensor, coeffs: Tensor, xs: Tensor) -> Tensor:
        """μ_kc + Σ_{c'<c} α_k,cc' · x_c' for every channel c (§2.2)."""
        rows = []
        for c in range(self.num_channels):
            mean = means[:, c]
            for earlier in range(c):
                mean = mean + coeffs[:, _pair_index(c, earlier)] * xs[:, earlier].unsqueeze(1)
            rows.append(mean)
        return torch.stack(rows, dim=1)

    def _discretized_log_prob(
        self, x: Tensor, xs: Tensor, means: Tensor, log_scales: Tensor
    ) -> Tensor:
        """log P(bin x) under each logistic; edge bins take the tails (eq. 2)."""
        half_bin = 1.0 / (self.num_bins - 1)
        centered = xs - means
        inv_scale = torch.exp(-log_scales)
        plus_in = inv_scale * (centered + half_bin)
        min_in = inv_scale * (centered - half_bin)
        log_cdf_plus = F.logsigmoid(plus_in)  # log P(≤ bin 0's upper edge)
        log_one_minus_cdf_min = F.logsigmoid(-min_in)  # log P(≥ bin 255's lower edge)
        cdf_delta = torch.sigmoid(plus_in) - torch.sigmoid(min_in)
        mid_in = inv_scale * centered
        log_pdf_mid = mid_in - log_scales - 2.0 * F.softplus(mid_in)
        interior = torch.where(
            cdf_delta > TINY_BIN_PROB,
            torch.log(cdf_delta.clamp(min=1e-12)),  # clamp: keeps the unused branch finite
            log_pdf_mid - math.log(self.half_range),
        )
        return torch.where(
            x == 0, log_cdf_plus, torch.where(x == self.num_bins - 1, log_one_minus_cdf_min,
                                              interior)
        )

    def channel_probs(self, params: Tensor, channel: int, earlier: Tensor) -> Tensor:
        """P(x_c = k | x_<c) of one sub-pixel for every bin k, `[B, num_bins]` float64.

        `params`: the mixture params of one pixel per image, `[B, P]`; `earlier`: that
        pixel's channels < c, integers `[B, c]`. The mixture is over whole pixels (§2.2),
        so channel c's conditional is a mixture of its logistics whose weights are the
        posterior of the components given the earlier channels:

            P(x_c | x_<c) = Σ_k w_k P_k(x_c | x_<c),  w_k ∝ π_k Π_{c'<c} P_k(x_c')

        and the product of these conditionals over the channels is the joint of eq. 2
        exactly. Bins are exact CDF differences (no tiny-bin density shortcut), each taken
        on the side of the logistic where it is small, so tails keep their precision.
        """
        if params.dim() != 2 or params.shape[1] != self.num_params:
            raise ShapeError(f"one pixel's logistic-mixture params must be [B, "
                             f"{self.num_params}], got {list(params.shape)}")
        if not 0 <= channel < self.num_channels or tuple(earlier.shape) != (len(params),
                                                                            channel):
            raise ShapeError(f"channel {channel} of {self.num_channels} needs the earlier "
                             f"channels as [{len(params)}, {channel}], got "
                             f"{list(earlier.shape)}")
        logits, means, log_scales, coeffs = self.unpack(params.double()[:, :, None, None])
        logits, means = logits[..., 0, 0], means[..., 0, 0]  # [B, M], [B, C, M]
        log_scales, coeffs = log_scales[..., 0, 0], coeffs[..., 0, 0]
        scaled = earlier.double() / self.half_range - 1.0  # [B, c]
        log_w = F.log_softmax(logits, dim=1)
        for c in range(channel + 1):
            mean = means[:, c]
            for e in range(c):
                mean = mean + coeffs[:, _pair_index(c, e)] * scaled[:, e:e + 1]
            bins = self._bin_probs(mean, log_scales[:, c])  # [B, M, K]
            if c == channel:
                w = torch.softmax(log_w, dim=1)
                return (w.unsqueeze(2) * bins).sum(dim=1)
            seen = bins.gather(2, earlier[:, c].long()[:, None, None].expand(-1, bins.shape[1], 1))
            log_w = log_w + torch.log(seen[:, :, 0].clamp(min=1e-300))
        raise AssertionError("unreachable: the loop returns at c == channel")

    def _bin_probs(self, mean: Tensor, log_scale: Tensor) -> Tensor:
        """Each logistic's probability of every bin, `[B, M, K]` (eq. 2, edges to ±∞)."""
        k = self.num_bins
        edges = (torch.arange(1, k, dtype=mean.dtype, device=mean.device) - 0.5) \
            / self.half_range - 1.0  # the K − 1 inner bin edges
        z = (edges - mean.unsqueeze(2)) * torch.exp(-log_scale).unsqueeze(2)  # [B, M, K-1]
        zero = z.new_zeros(*z.shape[:2], 1)
        cdf = torch.cat([zero, torch.sigmoid(z), zero + 1.0], dim=2)  # P(X < edge)
        tail = torch.cat([zero + 1.0, torch.sigmoid(-z), zero], dim=2)  # P(X > edge)
        centres = torch.arange(k, dtype=mean.dtype, device=mean.device) / self.half_range - 1.0
        right = centres > mean.unsqueeze(2)  # right of the mean: differences of 1 − CDF
        return torch.where(right, tail[..., :-1] - tail[..., 1:], cdf[..., 1:] - cdf[..., :-1])

    def sample(
        self, params: Tensor, temperature: float = 1.0, generator: torch.Generator | None = None
    ) -> Tensor:
        """Draw integer pixels `[B, C, H, W]` (long, 0..num_bins−1) exactly from the mixture.

        Temperature T divides the mixture logits and multiplies every logistic scale
        (after the log-scale floor); T = 1 leaves both untouched. Noise is consumed from
        `generator` in a fixed order, as float64 uniforms: first `[B, M, H, W]` for the
        Gumbel-max choice of component, then `[B, C, H, W]` for the inverse-CDF logistic
        draws. Each channel's draw is rounded to its bin before it feeds the coupling of the
        next channel, so samples follow exactly the distribution `log_prob` scores.
        """
        temperature = check_temperature(temperature)
        logits, means, log_scales, coeffs = self.unpack(params)
        if temperature != 1.0:
            logits = logits / temperature
            log_scales = log_scales + math.log(temperature)
        gumbel_u = self._uniform(logits.shape, logits, generator)
        component = torch.argmax(logits - torch.log(-torch.log(gumbel_u)), dim=1)  # [B, H, W]
        logistic_u = self._uniform(means[:, :, 0].shape, means, generator)  # [B, C, H, W]
        noise = torch.log(logistic_u) - torch.log1p(-logistic_u)

        def pick(t: Tensor) -> Tensor:  # [B, K, M, H, W] -> component's [B, K, H, W]
            index = component[:, None, None].expand(t.shape[0], t.shape[1], 1, *t.shape[3:])
            return t.gather(2, index).squeeze(2)

        mean, log_scale, coeff = pick(means), pick(log_scales), pick(coeffs)
        values: list[Tensor] = []
        scaled: list[Tensor] = []
        for c in range(self.num_channels):
            mu = mean[:, c]
            for earlier in range(c):
                mu = mu + coeff[:, _pair_index(c, earlier)] * scaled[earlier]
            continuous = mu + torch.exp(log_scale[:, c]) * noise[:, c]
            k = torch.round((continuous + 1.0) * self.half_range).clamp(0, self.num_bins - 1)
            values.append(k.long())
            scaled.append(k / self.half_range - 1.0)
        return torch.stack(values, dim=1)

    @staticmethod
    def _uniform(
        shape: torch.Size, like: Tensor, generator: torch.Generator | None
    ) -> Tensor:
        # float64 draws: the same generator gives the same noise whatever the model dtype.
        u = torch.rand(shape, generator=generator, device=like.device, dtype=torch.float64)
        return u.clamp(UNIFORM_EPS, 1.0 - UNIFORM_EPS).to(like.dtype)

    def _check_params(self, params: Tensor) -> tuple[int, int, int, int]:
        if params.dim() != 4 or params.shape[1] != self.num_params:
            raise ShapeError(
                f"logistic-mixture params must be [B, {self.num_params}, H, W] for "
                f"C={self.num_channels}, M={self.num_mixtures}; got {list(params.shape)}"
            )
        b, p, h, w = params.shape
        return b, p, h, w

    def _check_values(self, x: Tensor, params: Tensor) -> None:
        b, _, h, w = params.shape
        if tuple(x.shape) != (b, self.num_channels, h, w):
            raise ShapeError(
                f"pixel values must be [{b}, {self.num_channels}, {h}, {w}] to match params, "
                f"got {list(x.shape)}"
            )
        if x.is_floating_point():
            raise ShapeError(f"pixel values must be integers 0..{self.num_bins - 1}, "
                             f"got dtype {x.dtype}")
