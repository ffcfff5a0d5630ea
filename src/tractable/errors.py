"""Errors the user can act on.

Every failure caused by input (a file, a shape, a flag) is raised as a subclass of
`TractableError` with a message that names the problem and, where possible, the fix. The
command line prints these messages without a traceback (see `tractable.cli`).
"""

from __future__ import annotations


class TractableError(Exception):
    """Base class of every error whose message is meant for the user.

    `command_line`: the same message worded for `tractable ...` (flags such as `--root`
    instead of Python's `root=`), which the command line prints instead. `exit_status`: what
    the command line exits with (2: bad input; a stop asked for by a signal sets 128 + n).
    """

    exit_status: int = 2

    def __init__(self, *args: object, command_line: str | None = None) -> None:
        super().__init__(*args)
        self.command_line = command_line

    def for_command_line(self) -> str:
        """The message as the command line prints it."""
        return self.command_line or str(self)


class DataError(TractableError):
    """A dataset is unknown, missing, corrupt or inconsistent."""


class ChecksumError(DataError):
    """A downloaded or cached file does not match its published checksum."""


class ShapeError(TractableError, ValueError):
    """A tensor has the wrong shape, dtype, range or channel count for this model."""


class ConfigError(TractableError):
    """A config is invalid, from an unknown version, or names an unknown model family."""


class CheckpointError(TractableError):
    """A saved model or training checkpoint is missing, corrupt or unsafe to load."""


class TrainingError(TractableError):
    """Training cannot continue (e.g. repeated NaN/inf losses)."""


class NumericalError(TractableError):
    """A computation left the range floating point can represent faithfully: non-finite
    samples, or an image a flow cannot invert back exactly at the working precision."""


class CompressedFileError(TractableError):
    """A compressed image file is empty, corrupt or truncated, was written for another
    model, or does not decode to the pixels it was made from."""


class NonFiniteDecodeError(NumericalError):
    """Latents a flow's inverse turned into NaN/inf: `bad` of `total` images, with the
    remedy that fits the caller (an edit has no temperature to lower, a sample has)."""

    def __init__(self, bad: int, total: int, remedy: str) -> None:
        self.bad, self.total = bad, total
        super().__init__(f"{bad} of {total} decoded images came out of the flow's inverse as "
                         f"NaN or inf, so they have no pixel values; {remedy}")

    def with_remedy(self, remedy: str) -> NonFiniteDecodeError:
        """The same failure, told with another remedy."""
        return NonFiniteDecodeError(self.bad, self.total, remedy)
