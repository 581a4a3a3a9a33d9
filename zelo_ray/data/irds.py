"""Read a collection through ``ir_datasets`` (offline when ``IR_DATASETS_HOME`` holds its files).

Relevance is mapped to gains where the source's codes are not "higher = better". Cranfield's
qrels carry Cleverdon's codes, 1 (complete answer) .. 4 (minimum interest) and -1 (of no
interest), and ``ir_datasets`` passes them through unchanged (its ``qrels_defs`` even describe
the scale backwards); we map 1→4, 2→3, 3→2, 4→1, -1→0, the same gains as the shared BEIR copy.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

from zelo_ray.data.schema import DataError

__all__ = ["GAIN_MAPS", "import_ir_datasets", "load", "read_docs", "read_qrels", "read_queries"]


def _cranfield_gain(code: int) -> int:
    if code in (1, 2, 3, 4):
        return 5 - code
    if code == -1:
        return 0
    raise DataError(f"cranfield qrels: unknown relevance code {code} (expected -1, 1..4)")


GAIN_MAPS: dict[str, Callable[[int], int]] = {"cranfield": _cranfield_gain}
"""Dataset id prefix → code-to-gain mapping, for sources whose codes are not gains."""


def import_ir_datasets():
    """Import ``ir_datasets``; on machines with the shared offline copy (``../shared/ir_datasets``)
    and no ``IR_DATASETS_HOME``, point it there first — ir_datasets reads the variable once, at
    import, and otherwise tries to download."""
    if "IR_DATASETS_HOME" not in os.environ:
        shared = Path(__file__).resolve().parents[3] / "shared" / "ir_datasets"
        if shared.is_dir():
            os.environ["IR_DATASETS_HOME"] = str(shared)
    try:
        import ir_datasets
    except ImportError as exc:  # pragma: no cover - it is a core dependency
        raise DataError("ir_datasets is not installed; run scripts/setup.sh") from exc
    return ir_datasets


def load(dataset_id: str):
    ir_datasets = import_ir_datasets()
    try:
        return ir_datasets.load(dataset_id)
    except KeyError:
        raise DataError(f"unknown ir_datasets id {dataset_id!r}") from None


def read_docs(ds, dataset_id: str) -> Iterator[tuple[str, str, str, str]]:
    for n, doc in enumerate(ds.docs_iter(), 1):
        title = getattr(doc, "title", "") or ""
        text = getattr(doc, "text", None)
        if text is None:
            text = doc.default_text() if hasattr(doc, "default_text") else ""
        yield f"ir_datasets:{dataset_id} doc #{n}", str(doc.doc_id), title, text


def read_queries(ds, dataset_id: str) -> Iterator[tuple[str, str, str, str]]:
    for n, q in enumerate(ds.queries_iter(), 1):
        text = getattr(q, "text", None)
        if text is None:
            text = q.default_text() if hasattr(q, "default_text") else ""
        yield f"ir_datasets:{dataset_id} query #{n}", str(q.query_id), "", text


def read_qrels(ds, dataset_id: str) -> Iterator[tuple[str, str, str, int]]:
    gain = next((f for prefix, f in GAIN_MAPS.items() if dataset_id.startswith(prefix)), int)
    for n, r in enumerate(ds.qrels_iter(), 1):
        where = f"ir_datasets:{dataset_id} qrel #{n}"
        try:
            rel = gain(int(r.relevance))
        except DataError as exc:
            raise DataError(f"{where}: {exc}") from None
        yield where, str(r.query_id), str(r.doc_id), rel
