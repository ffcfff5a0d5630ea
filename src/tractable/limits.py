"""Upper bounds of every size and count a user can give, checked before anything is built.

A number past these is a typo or a crafted input, never a real setting: each bound sits
far above what any paper or this project uses, and below where building the model's
modules or allocating the images would hang the process or exhaust its memory. Config
fields declare them as `setting(maximum=...)` (checked on loading and by the command
line), command-line flags through `tractable.cli.limits`; the parameter memory of a model
is estimated on the meta device on top of these (`models.base.check_parameter_memory`).
"""

from __future__ import annotations

MAX_INT_FLAG = 2**31 - 1  # any integer flag without a tighter bound
MAX_SEED = 2**63 - 1  # torch's generators take 64-bit seeds
MAX_STEPS = 10**9  # optimizer steps, and every "every N steps" interval
MAX_DATASET_IMAGES = 10**9  # --limit and friends: more than any dataset holds
MAX_IMAGES = 10_000  # images drawn or shown in one command (one grid)
MAX_BATCH = 65_536  # images in one batch
MAX_SIDE = 4096  # pixels of an image side (--size, image_shape)
MAX_CHANNELS = 4  # image channels (greyscale, RGB, RGBA)
MAX_BLOCKS = 64  # repeated blocks per stage (nr_resnet; the paper uses 5)
MAX_LAYERS = 256  # layers or flow steps (n_layers: paper 15-20; Glow K: paper 32)
MAX_FLOW_STEPS = 512  # Glow K x L in all (paper: at most 32 x 6)
MAX_LEVELS = 12  # Glow levels (L: paper 3-6); 2^L must divide the image side anyway
MAX_WIDTH = 65_536  # channels of a layer
MAX_MIXTURE = 1024  # logistic mixture components (paper: 10)
MAX_KERNEL = 63  # convolution kernel side
MAX_BOOTSTRAP = 1_000_000  # bootstrap batches of the typicality test
MAX_BOOTSTRAP_VALUES = 10**8  # batches x batch size held at once (800 MB of float64)
MAX_CLASSES = 100_000  # classes a model is conditioned on (ImageNet: 1,000)
