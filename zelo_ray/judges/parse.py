"""Read a judge's score out of whatever it answered.

Accepted, in this order: a JSON object with a ``score`` field (whole reply, or the last
``{…}`` in it, e.g. after a code fence), a ``<score>…</score>`` tag (the last one wins), a final
line ``score: …``. Numbers may be written ``-1``, ``1``, ``0.5``, ``+.3``. Anything else — no
score, a score outside [-1, 1], an empty reply — raises :class:`ScoreParseError`; the caller
records a missing vote with that message, never a guessed score.

Example::

    >>> from zelo_ray.judges.parse import parse_score
    >>> parse_score('{"reasoning": "B covers it", "score": 0.8}')
    0.8
    >>> parse_score("A is on topic.\\n<score>+.3</score>")
    0.3
"""

from __future__ import annotations

import json
import math
import re

__all__ = ["ScoreParseError", "parse_score"]

_NUM = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_TAG = re.compile(r"<score>\s*(" + _NUM + r")\s*</score>", re.IGNORECASE)
_LINE = re.compile(r"^\W*score\W*[:=]\s*\**\s*(" + _NUM + r")\s*\**\s*$", re.IGNORECASE | re.MULTILINE)
_OBJ = re.compile(r"\{[^{}]*\}", re.DOTALL)


class ScoreParseError(ValueError):
    """The reply holds no usable score."""


def _snippet(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= 120 else text[:117] + "..."


def _from_json(text: str) -> float | None:
    candidates = [text.strip()] + [m.group(0) for m in reversed(list(_OBJ.finditer(text)))]
    for c in candidates:
        try:
            obj = json.loads(c)
        except (ValueError, RecursionError):
            continue
        if isinstance(obj, dict) and "score" in obj:
            v = obj["score"]
            if isinstance(v, bool) or not isinstance(v, (int, float, str)):
                raise ScoreParseError(f"JSON score is not a number: {v!r}")
            try:
                return float(v)
            except ValueError:
                raise ScoreParseError(f"JSON score is not a number: {v!r}") from None
    return None


def parse_score(text: str | None) -> float:
    """The score in [-1, 1] (negative: the first-shown item is better)."""
    if text is None or not text.strip():
        raise ScoreParseError("empty reply")
    value = _from_json(text)
    if value is None:
        tags = _TAG.findall(text)
        lines = _LINE.findall(text)
        if tags:
            value = float(tags[-1])
        elif lines:
            value = float(lines[-1])
        else:
            raise ScoreParseError(f"no score in reply: {_snippet(text)!r}")
    if not math.isfinite(value) or not -1.0 <= value <= 1.0:
        raise ScoreParseError(f"score {value} outside [-1, 1]")
    return value
