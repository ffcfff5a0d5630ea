"""What the app does with one model, independent of the web page.

`AppModel` wraps a loaded model and, when its run recorded one, the test split of its
dataset (for picking images, the test-set bits/dim histogram and an invertible model's
attribute vectors).
Every interaction is one method returning uint8 images or numbers; the page
(`tractable.app.ui`) only turns them into pictures. All work runs in eval mode without
gradients; results are reproducible from the seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from tractable.app.cache import AppCache
from tractable.data import ImageDataset
from tractable.errors import ConfigError, DataError, ShapeError
from tractable.models import Completable, Invertible, PixelScorable, TractableModel
from tractable.models.capabilities import missing
from tractable.sampling import Callback

MAX_BATCH = 64
MAX_COMPLETIONS = 16
HISTOGRAM_BATCH = 10  # test images per step of the start-up histogram (its progress bar)


@dataclass
class Likelihood:
    """One image's score: bits/dim, per-pixel NLL map (autoregressive models), where it
    falls among the test images' bits/dim, and the class it was scored under."""

    bits_per_dim: float
    pixel_nll: Tensor | None  # nats [H, W], sums to the image's NLL
    test_bpd: np.ndarray
    percentile: float  # share of test images with lower bits/dim, in %
    scored_as: str


@dataclass
class AppModel:
    """A model as the app serves it."""

    name: str
    model: TractableModel
    test: ImageDataset | None = None
    histogram_images: int = 200
    attribute_images: int = 1000
    no_test_reason: str = ""  # why `test` is None, said on the page
    cache: AppCache | None = None  # where start-up results are kept (None: not kept)
    progress: bool = False  # progress bars (stderr) while computing them
    cached: dict[str, str] = field(default_factory=dict)  # result -> read | saved | unsaved
    cached_facts: dict[str, Any] = field(default_factory=dict, repr=False)
    _test_bpd: np.ndarray | None = field(default=None, repr=False)
    _attributes: list[list[Tensor] | None] | None = field(default=None, repr=False)

    # ---- what the page needs to lay itself out ----------------------------------------
    @property
    def family(self) -> str:
        return self.model.family

    @property
    def shape(self) -> tuple[int, int, int]:
        c, h, w = self.model.config.image_shape
        return int(c), int(h), int(w)

    @property
    def class_names(self) -> list[str]:
        cfg = self.model.config
        names = list(cfg.class_names) or ([] if self.test is None else list(self.test.class_names))
        k = cfg.num_classes or (len(names) if self.test is not None and self.test.has_labels
                                else 0)
        return names[:k] if len(names) >= k else [str(i) for i in range(k)]

    @property
    def conditional(self) -> bool:
        return self.model.config.num_classes > 0

    @property
    def can_complete(self) -> bool:
        return isinstance(self.model, Completable)

    @property
    def can_edit(self) -> bool:
        return isinstance(self.model, Invertible)

    @property
    def dark_background(self) -> bool | None:
        """Whether the model's data is light on dark (from its test images; None without
        them), so uploads can be brought to the same polarity."""
        from tractable.data.image_input import dataset_background

        if self.test is None:
            return None
        if "dark_background" not in self.cached_facts:
            self.cached_facts["dark_background"] = dataset_background(self.test.images[:256])
        return self.cached_facts["dark_background"]

    @property
    def test_size(self) -> int:
        return 0 if self.test is None else len(self.test)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def describe(self) -> str:
        c, h, w = self.shape
        kind = f"{self.model.config.num_classes} classes" if self.conditional else "unconditional"
        data = (f"{self.test.name} test, {len(self.test)} images" if self.test
                else f"no test images ({self.no_test_reason or 'no dataset recorded'}): "
                "upload images instead; no test-set histogram"
                + ("" if not self.can_edit else " and no attribute vectors"))
        return f"{self.name}: {self.family}, {c}x{h}x{w}, {kind}; {data}"

    # ---- inputs -------------------------------------------------------------------------
    def test_image(self, index: int) -> tuple[Tensor, int | None]:
        """Test image `index` (uint8 [C, H, W]) and its label (None if unlabelled)."""
        if self.test is None:
            raise DataError(f"{self.name} has no test images "
                            f"({self.no_test_reason or 'its run does not record a dataset'}): "
                            "upload an image instead")
        if not 0 <= index < len(self.test):
            raise DataError(f"test image index must be in 0..{len(self.test) - 1}, got {index}")
        label = int(self.test.labels[index])
        return self.test.images[index], (label if label >= 0 else None)

    def labels(self, class_a: int | None, class_b: int | None, weight_b: float, n: int
               ) -> Tensor | None:
        """y for `n` samples: class a, or the blend (1 − w)·a + w·b (soft labels)."""
        if not self.conditional:
            return None
        k = self.model.config.num_classes
        for c in (class_a, class_b):
            if c is not None and not 0 <= c < k:
                raise ShapeError(f"class {c} out of range 0..{k - 1}")
        if class_a is None:
            raise ShapeError("this model is class-conditional: choose a class")
        if class_b is None or class_b == class_a or weight_b <= 0:
            return torch.full((n,), class_a, dtype=torch.long, device=self.device)
        if not 0 <= weight_b <= 1:
            raise ShapeError(f"blend weight must be in 0..1, got {weight_b}")
        w = torch.zeros(k, dtype=next(self.model.parameters()).dtype)
        w[class_a], w[class_b] = 1.0 - weight_b, weight_b
        return w.expand(n, k).clone().to(self.device)

    # ---- Sample ---------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, temperature: float, seed: int, class_a: int | None = None,
               class_b: int | None = None, weight_b: float = 0.0,
               callback: Callback | None = None) -> Tensor:
        """`n` samples `uint8 [n, C, H, W]` of class a or a blend (`model.sample`, whose
        sampler checks the temperature; `callback` hears its progress)."""
        _check_count(n, MAX_BATCH, "batch")
        y = self.labels(class_a, class_b, weight_b, n)
        g = torch.Generator(device=self.device).manual_seed(int(seed))
        return self.model.sample(n, y=y, temperature=temperature, generator=g,
                                 callback=callback).cpu()

    # ---- Complete ---------------------------------------------------------------------------
    def complete(self, image: Tensor, rows: int, n: int, seed: int, temperature: float = 1.0,
                 label: int | None = None, callback: Callback | None = None) -> Tensor:
        """n completions `uint8 [n, C, H, W]` of `image` keeping its first `rows` rows."""
        if not isinstance(self.model, Completable):
            raise ConfigError(f"{self.name}: " + missing(Completable, "completion", self.family))
        _check_count(n, MAX_COMPLETIONS, "completions")
        y = self.labels(label if label is not None else 0, None, 0.0, 1)
        g = torch.Generator(device=self.device).manual_seed(int(seed))
        x = image[None].to(self.device)
        return self.model.eval().complete(x, rows=rows, n=n, y=y, temperature=temperature,
                                          generator=g, callback=callback).cpu()

    def seen(self, image: Tensor) -> Tensor:
        """The image as the model sees it (quantized for N-level models), uint8 [C, H, W]."""
        return self.model.as_seen(image[None])[0]

    # ---- Likelihood -------------------------------------------------------------------------
    @torch.no_grad()
    def test_bpd(self) -> np.ndarray:
        """Bits/dim of the first `histogram_images` test images (computed once)."""
        if self._test_bpd is None:
            if self.test is None:
                self._test_bpd = np.zeros(0)
            else:
                x = self.test.images[: self.histogram_images]
                key = self._key(x)
                cached = self.cache.load("test-bpd", key) if self.cache else None
                if cached is not None and "bpd" in cached:
                    self._test_bpd = cached["bpd"].numpy()
                    self.cached["test-bpd"] = "read"
                else:
                    steps = self._steps(range(0, len(x), HISTOGRAM_BATCH), f"{self.name}: "
                                        f"bits/dim of {len(x)} test images (histogram)")
                    self._test_bpd = np.concatenate(
                        [self._bpd(x[i:i + HISTOGRAM_BATCH].to(self.device))[0].cpu().numpy()
                         for i in steps])
                    if self.cache:
                        saved = self.cache.save("test-bpd", key,
                                                {"bpd": torch.from_numpy(self._test_bpd)})
                        self.cached["test-bpd"] = "saved" if saved else "unsaved"
        return self._test_bpd

    def _key(self, images: Tensor, extra: object = None) -> str:
        from tractable.app.cache import result_key

        return result_key(self.cache.weights, images, extra) if self.cache else ""

    def _steps(self, steps: Any, what: str) -> Any:
        """`steps` with a progress bar on stderr when `progress` (start-up work)."""
        from tqdm.auto import tqdm

        return tqdm(steps, desc=what, disable=not self.progress, leave=True)

    def _bpd(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """Bits/dim `[B]` (marginal over classes for a conditional model, uniform prior),
        and the most likely class `[B]` (None if unconditional)."""
        model = self.model.eval()
        if not self.conditional:
            lp = _seeded_log_prob(model, x, None)
            return lp.double().neg() / (model.num_dims * math.log(2)), None
        k = model.config.num_classes
        per_class = torch.stack([
            _seeded_log_prob(model, x, torch.full((len(x),), c, dtype=torch.long,
                                                  device=x.device))
            for c in range(k)]).double()
        marginal = torch.logsumexp(per_class, dim=0) - math.log(k)
        return -marginal / (model.num_dims * math.log(2)), per_class.argmax(0)

    @torch.no_grad()
    def likelihood(self, image: Tensor) -> Likelihood:
        x = image[None].to(self.device)
        self.model.check_images(x)
        bpd, best = self._bpd(x)
        scored_as = "marginal over classes (uniform prior)" if self.conditional else "p(x)"
        maps = None
        if isinstance(self.model, PixelScorable):
            y = None if best is None else best
            maps = -self.model.log_prob_pixels(x, y)[0].double().cpu()
            if best is not None:
                scored_as += f"; pixel map given the most likely class, " \
                             f"{self.class_names[int(best[0])]}"
        test = self.test_bpd()
        value = float(bpd[0])
        pct = float((test < value).mean() * 100) if test.size else float("nan")
        return Likelihood(value, maps, test, pct, scored_as)

    # ---- Edit (invertible models) --------------------------------------------------------------
    def _invertible(self) -> Invertible:
        if not isinstance(self.model, Invertible):
            raise ConfigError(f"{self.name}: " + missing(Invertible, "latent edits", self.family))
        self.model.eval()
        return self.model

    @torch.no_grad()
    def attribute_vectors(self) -> list[list[Tensor] | None]:
        """v_k = mean z of class-k test images − mean z of the others, per class (Glow §5.3);
        None for a class with no test image among those used (or only such images)."""
        from tractable.models.latents import attribute_vector, encode_batched

        if self._attributes is None:
            model = self._invertible()
            if self.test is None or not self.test.has_labels:
                self._attributes = []
                return self._attributes
            n = min(self.attribute_images, len(self.test))
            labels = self.test.labels[:n]
            key = self._key(self.test.images[:n], labels.tolist())
            cached = self.cache.load("attributes", key) if self.cache else None
            if cached is not None:
                self._attributes = [None if v is None else [t.to(self.device) for t in v]
                                    for v in _vectors_from(cached, len(self.class_names))]
                self.cached["attributes"] = "read"
                return self._attributes
            images = self.test.images[:n]
            steps = self._steps(range(0, n, 200), f"{self.name}: encoding {n} test images "
                                "(attribute vectors)")
            parts = [encode_batched(model, images[i:i + 200].to(self.device), 200)
                     for i in steps]
            z = [torch.cat(level, dim=0) for level in zip(*parts, strict=True)]
            self._attributes = [attribute_vector(z, labels == k)
                                if 0 < int((labels == k).sum()) < n else None
                                for k in range(len(self.class_names))]
            if self.cache:
                saved = self.cache.save("attributes", key, {
                    f"{k}.{level}": v for k, vector in enumerate(self._attributes)
                    if vector is not None for level, v in enumerate(vector)})
                self.cached["attributes"] = "saved" if saved else "unsaved"
        return self._attributes

    @torch.no_grad()
    def edit(self, image: Tensor, alphas: list[float]) -> Tensor:
        """decode(encode(x) + Σ_k α_k v_k), uint8 [C, H, W]."""
        model = self._invertible()
        vectors = self.attribute_vectors()
        z = model.encode(image[None].to(self.device))
        if len(alphas) < len(vectors):
            raise ShapeError(f"{len(vectors)} attribute weights needed, got {len(alphas)}")
        for alpha, v in zip(alphas, vectors, strict=False):
            if alpha and v is not None:
                z = [a + alpha * b for a, b in zip(z, v, strict=True)]
        return model.decode(z)[0].cpu()

    @torch.no_grad()
    def blend(self, a: Tensor, b: Tensor, t: float, steps: int = 8) -> tuple[Tensor, Tensor]:
        """decode((1 − t)·z_a + t·z_b) uint8 [C, H, W], and the strip t = 0..1 [steps, C, H, W]."""
        from tractable.models.latents import interpolate

        if not 0 <= t <= 1:
            raise ShapeError(f"interpolation weight must be in 0..1, got {t}")
        model = self._invertible()
        za, zb = model.encode(a[None].to(self.device)), model.encode(b[None].to(self.device))
        one = model.decode([(1 - t) * p + t * q for p, q in zip(za, zb, strict=True)])[0]
        return one.cpu(), model.decode(interpolate(za, zb, steps)).cpu()


def _vectors_from(saved: dict[str, Tensor], classes: int) -> list[list[Tensor] | None]:
    """Attribute vectors as `AppCache` keeps them (`"k.level"` tensors) -> per class."""
    out: list[list[Tensor] | None] = []
    for k in range(classes):
        levels = sorted((int(name.split(".")[1]), t) for name, t in saved.items()
                        if name.split(".")[0] == str(k))
        out.append([t for _, t in levels] or None)
    return out


def _seeded_log_prob(model: TractableModel, x: Tensor, y: Tensor | None) -> Tensor:
    """`model.log_prob(x, y)` with the random generators seeded 0 (and restored after): a
    family that draws noise in `log_prob` (a flow's dequantization) scores an image the
    same way each time; an exact discrete likelihood draws nothing."""
    device = x.device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(0)
        return model.log_prob(x, y)


def _check_count(n: int, limit: int, what: str) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= limit:
        raise ShapeError(f"{what} must be an integer in 1..{limit}, got {n!r}")


def load_app_model(path: str | Path, data: str | None = None, weights: str = "ema",
                   device: str = "auto", name: str | None = None,
                   options: dict[str, Any] | None = None, progress: bool = False,
                   cache: bool = True) -> AppModel:
    """A run or model folder (and the test split of its run's dataset, or `data`; a shipped
    model's record names its dataset too); `options` (`load_dataset`'s: root, size, ...)
    win over those the run trained with. A dataset that is not on this machine leaves the
    model without test images, and says why (`no_test_reason`). `cache`: keep start-up
    results in the model folder (`tractable.app.cache`).

    The folder is opened once (`open_folder`: its `run.json` migrated, dataset paths made
    absolute) and the model loaded from it with `tractable.load`.
    """
    from tractable.data import load_dataset
    from tractable.models import load
    from tractable.run_folder import open_folder

    folder = open_folder(path, weights=weights)
    model = load(folder, weights=weights, device=device)
    dataset = data or folder.data
    test, reason = None, ""
    if dataset:
        opts = {**({} if data else folder.data_options), **(options or {})}
        try:
            test = load_dataset(str(dataset), split="test", **opts)
        except DataError as e:
            if data:  # asked for by name: an error, as on every command
                raise
            reason = f"{dataset} is not on this machine: {e.for_command_line()}"
        if test is not None and tuple(test.shape) != tuple(model.config.image_shape):
            raise ShapeError(f"{dataset} images are {list(test.shape)}, the model in "
                             f"{folder.model_dir} takes {list(model.config.image_shape)}")
    label = name or (folder.run_dir.name if folder.run_dir else folder.model_dir.name)
    return AppModel(label, model, test, no_test_reason=reason, progress=progress,
                    cache=AppCache(folder.model_dir, model) if cache else None)
