"""Training: the model-agnostic trainer, optimizer defaults, EMA, checkpoints, DDP, logs."""

from tractable.training.api import load_split, make_model, resume, train
from tractable.training.config import TrainConfig
from tractable.training.trainer import Trainer, TrainingInterrupted

__all__ = ["TrainConfig", "Trainer", "TrainingInterrupted", "load_split", "make_model",
           "resume", "train"]
