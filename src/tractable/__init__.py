"""tractable: image generative models with exact (tractable) likelihoods."""

from tractable.compression import decompress
from tractable.config import __version__
from tractable.models import TractableModel, load

__all__ = ["TractableModel", "__version__", "decompress", "load"]
