"""The versioned pairwise-judging prompt.

The version string is part of every cache key: change the wording, bump ``PROMPT_VERSION``, and
a re-run asks again instead of reusing answers to a different question.

Two questions share one answer format (a score in [-1, 1], negative when the first-shown item
is the better one):

* *within a query* — which of two documents is more relevant to the query (the zELO pairs);
* *across queries* — which of two (query, document) pairs is the better match (the
  calibration pairs: "which document answers its query better?").

Example::

    >>> from zelo_ray.judges.prompt import build_messages
    >>> msgs = build_messages("what is bm25", "BM25 is a ranking function", "A cake recipe")
    >>> [m["role"] for m in msgs]
    ['system', 'user']
"""

from __future__ import annotations

__all__ = ["PROMPT_VERSION", "SLM_PROMPT_VERSION", "RESPONSE_SCHEMA", "build_messages", "response_format"]

PROMPT_VERSION = "pairwise-v1"
SLM_PROMPT_VERSION = "pairwise-slm-v1"
"""The pairwise small model's prompt (:mod:`zelo_ray.judges.vllm_pairwise`)."""

_SYSTEM = (
    "You are an expert search relevance assessor. You compare two candidates carefully and "
    "impartially; the order in which they are shown says nothing about their quality."
)

_SCALE = (
    "Give a score from -1 to 1: -1 means {a} is clearly better, 1 means {b} is clearly better, "
    "0 means they are equally good; values in between express how confident you are."
)

_WITHIN = (
    "Query:\n{query}\n\nDocument A:\n{first}\n\nDocument B:\n{second}\n\n"
    "Which document is more relevant to the query? Think briefly about what the query asks "
    "for and what each document offers. " + _SCALE.format(a="Document A", b="Document B")
)

_CROSS = (
    "Pair A\nQuery:\n{query}\nDocument:\n{first}\n\nPair B\nQuery:\n{query_b}\nDocument:\n{second}\n\n"
    "In which pair does the document answer its own query better? Judge each document only "
    "against its own query. " + _SCALE.format(a="pair A", b="pair B")
)

_FORMAT = {
    "json_schema": '\n\nReply with JSON: {"reasoning": "<one short paragraph>", "score": <number>}.',
    "json_object": '\n\nReply with JSON: {"reasoning": "<one short paragraph>", "score": <number>}.',
    "text": "\n\nWrite your reasoning, then end with the score on its own line as <score>NUMBER</score>.",
}

RESPONSE_SCHEMA = {
    "name": "pairwise_judgment",
    "strict": True,
    "schema": {
        "type": "object",
        "properties": {"reasoning": {"type": "string"}, "score": {"type": "number"}},
        "required": ["reasoning", "score"],
        "additionalProperties": False,
    },
}


def _cut(text: str, max_chars: int) -> str:
    return text if len(text) <= max_chars else text[:max_chars] + " …"


def build_messages(query: str, first: str, second: str, *, query_b: str | None = None,
                   max_doc_chars: int = 4000, fmt: str = "json_schema") -> list[dict]:
    """Chat messages asking for a score; ``query_b`` set asks the cross-query question."""
    template = _CROSS if query_b is not None else _WITHIN
    user = template.format(query=query, query_b=query_b, first=_cut(first, max_doc_chars),
                           second=_cut(second, max_doc_chars)) + _FORMAT[fmt]
    return [{"role": "system", "content": _SYSTEM}, {"role": "user", "content": user}]


def response_format(fmt: str) -> dict | None:
    """The ``response_format`` request field for a configured format (None: plain text)."""
    if fmt == "json_schema":
        return {"type": "json_schema", "json_schema": RESPONSE_SCHEMA}
    if fmt == "json_object":
        return {"type": "json_object"}
    return None
