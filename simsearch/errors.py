"""Typed errors. The library raises these; the CLI turns them into messages and exit codes."""
from __future__ import annotations

__all__ = ["SimsearchError", "DecodeError", "ModelError", "IndexStoreError", "ModelMismatchError",
           "IndexLockedError"]


class SimsearchError(Exception):
    """Base class: every error simsearch raises on purpose."""


class DecodeError(SimsearchError):
    """An image file could not be decoded. Carries the path and the reason."""

    def __init__(self, path, reason: str):
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class ModelError(SimsearchError):
    """A model file is missing, malformed, or does not fit the requested network."""


class IndexStoreError(SimsearchError):
    """An index folder is missing, malformed or inconsistent."""


class ModelMismatchError(IndexStoreError):
    """The index was built by another model than the one this run uses."""


class IndexLockedError(IndexStoreError):
    """Another process is writing to the index."""
