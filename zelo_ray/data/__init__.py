"""Collections: BEIR folders and ir_datasets ids, converted once to Parquet."""

from zelo_ray.data.collection import Collection, open_collection, prepare, resolve_source
from zelo_ray.data.schema import DataError

__all__ = ["Collection", "DataError", "open_collection", "prepare", "resolve_source"]
