"""Autoregressive samplers. They see models only through `AutoregressiveModel`'s surface."""
