"""Reuse a stage's saved output when the inputs it was made from have not changed.

Every resumable step saves a small JSON state beside its output (a model card, a fusion file,
retrieve's state, a reranking's key) holding a fingerprint of its inputs; a re-run computes the
fingerprint again and reuses the output only when the two match. This is the one place that
reads such a state, so "unchanged" means the same thing everywhere.

    >>> import json, tempfile
    >>> from pathlib import Path
    >>> p = Path(tempfile.mkdtemp()) / "state.json"
    >>> key = fingerprint("model-a", {"lr": 1e-4})
    >>> _ = p.write_text(json.dumps({"key": key, "steps": 3}))
    >>> saved_if_unchanged(p, key)["steps"], saved_if_unchanged(p, fingerprint("model-b"))
    (3, None)
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

__all__ = ["fingerprint", "saved_if_unchanged"]


def fingerprint(*parts) -> str:
    """A short stable hash of JSON-serialisable inputs (dict order does not matter)."""
    blob = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def saved_if_unchanged(path: str | Path, key, *, field: str = "key") -> dict | None:
    """The JSON object saved at ``path`` when its ``field`` equals ``key``; None when the file is
    missing or unreadable, or was made from other inputs (then the output is recomputed)."""
    if key is None:
        return None
    try:
        state = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) and state.get(field) == key else None
