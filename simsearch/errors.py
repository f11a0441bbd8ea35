"""Typed errors. The library raises these; the CLI turns them into messages and exit codes.

Every error simsearch raises on purpose is defined here, so that a caller can catch one family
(`SimsearchError`) or one kind without importing the module that raises it (which may need
torch)."""
from __future__ import annotations

__all__ = ["SimsearchError", "DecodeError", "MissingLibraryError", "ModelError", "IndexStoreError",
           "TooManyPairsError",
           "ModelMismatchError", "IndexLockedError", "CalibrationError", "TrainingError",
           "NoTripletsError", "CollapseError", "MissingDependencyError", "PlanError", "JournalError"]


class SimsearchError(Exception):
    """Base class: every error simsearch raises on purpose."""


class DecodeError(SimsearchError):
    """An image file could not be decoded. Carries the path and the reason."""

    def __init__(self, path, reason: str):
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class MissingLibraryError(DecodeError):
    """A file in a format whose optional decoding library is not installed. Carries the format
    and the command that installs the library, so that a run can name it once."""

    def __init__(self, path, format: str, install: str):
        self.format = format
        self.install = install
        super().__init__(path, f"{format} needs a library that is not installed ({install})")


class ModelError(SimsearchError):
    """A model file is missing, malformed, or does not fit the requested network."""


class PrecisionError(ModelError):
    """The precision asked for (--precision, SIMSEARCH_PRECISION) cannot run the model here."""


class PrecisionUnavailable(PrecisionError):
    """A valid precision this model or this CPU does not offer (int8 without a file this CPU
    runs correctly): what runs the network is refused; its identity is still known."""


class IndexStoreError(SimsearchError):
    """An index folder is missing, malformed or inconsistent."""


class ModelMismatchError(IndexStoreError):
    """The index was built by another model than the one this run uses."""


class IndexLockedError(IndexStoreError):
    """Another process is writing to the index."""


class TooManyPairsError(SimsearchError):
    """Dedupe found more near pairs than memory can group: raised while searching, before
    memory runs out (`simsearch.pairs`)."""


class CalibrationError(SimsearchError):
    """No score threshold reaches the requested precision."""


class TrainingError(SimsearchError):
    """A training run cannot start or cannot go on: bad data, no triplets, collapse, bad resume."""


class NoTripletsError(TrainingError):
    """The batch holds no valid triplet at all: no label with two items, or only one label."""


class CollapseError(TrainingError):
    """The embedding space collapsed and `stop_on_collapse` was set."""


class MissingDependencyError(SimsearchError, ImportError):
    """An optional dependency is not installed: torch and torchvision for training and model
    export (the `train` extra). Also an ImportError, so `except ImportError` still catches it."""

    def __init__(self, needs: str, missing: str, extra: str = "train"):
        self.missing = missing
        self.extra = extra
        super().__init__(f"{needs} needs {missing}, which is not installed (the light install "
                         f"leaves it out); install it with: pip install 'simsearch[{extra}]'")


class PlanError(SimsearchError):
    """A plan file (what `apply` would do) is missing, malformed, or asks for something unsafe."""


class JournalError(SimsearchError):
    """An apply journal (what `undo` restores from) is missing, malformed or in use."""
