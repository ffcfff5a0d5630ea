"""Datasets in their official formats, behind one contract (see `base.ImageDataset`).

`load_dataset(name, split, root=None, download=False)` reads MNIST, Fashion-MNIST, CIFAR-10/100,
downsampled ImageNet 32/64, SVHN, the bundled `mnist-mini` and folders of images
(`folder:<path>`), by default as a memory-mapped prepared copy (`prepared`);
`as_image_dataset` / `from_hf` bring any map-style `Dataset` or Hugging Face dataset;
`transforms` holds batch augmentations and bit-depth reduction.
"""

from tractable.data.base import ImageDataset
from tractable.data.custom import as_image_dataset, from_hf
from tractable.data.folder import load_image_folder
from tractable.data.registry import known_datasets, load_dataset
from tractable.data.transforms import expand_bits, random_hflip, random_shift, reduce_bits

__all__ = [
    "ImageDataset",
    "as_image_dataset",
    "from_hf",
    "expand_bits",
    "known_datasets",
    "load_dataset",
    "load_image_folder",
    "random_hflip",
    "random_shift",
    "reduce_bits",
]
