"""simsearch: image embedding search and near-duplicate detection.

    >>> import simsearch
    >>> index = simsearch.open_index("indexes/photos", create=True)
    >>> report = index.add_paths(["~/Pictures"])
    >>> index.search(["query.jpg"], k=5)[0].matches
    >>> index.duplicates().groups

Importing this package is cheap: the public names load on first use, and torch is imported
only by training and model export.
"""
from simsearch.errors import (CalibrationError, DecodeError, IndexLockedError, IndexStoreError,
                              MissingDependencyError, ModelError, ModelMismatchError,
                              SimsearchError, TrainingError)

__version__ = "0.1.0"
__all__ = ["open_index", "Index", "Match", "QueryResult", "Group", "DuplicateReport",
           "SimsearchError", "DecodeError", "ModelError", "IndexStoreError", "ModelMismatchError",
           "IndexLockedError", "CalibrationError", "TrainingError", "MissingDependencyError"]

_LAZY = {"open_index": "simsearch.index", "Index": "simsearch.index", "Match": "simsearch.index",
         "QueryResult": "simsearch.index", "Group": "simsearch.dedupe",
         "DuplicateReport": "simsearch.dedupe"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'simsearch' has no attribute {name!r}")
