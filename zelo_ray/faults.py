"""Per-record fault isolation: one bad record never kills a stage.

A stage hands each batch to :func:`isolate`. When the batch raises, it is split in halves until
the records that raise are alone (a single bad record in a batch of ``n`` costs about ``2 log2 n``
extra calls on shrinking slices); those records go to an :class:`ErrorLog` with their id and
error, and every other record's output is kept. After the stage, :func:`check_failures` compares
the failed share with ``errors.max_fraction`` and fails the stage with a message that says how
many records failed, the most common error and where the errors table is; nothing that succeeded
is thrown away first.

The errors table (:data:`ERRORS_SCHEMA`) is a Parquet file next to the stage's output. While a
stage runs, each failing batch appends one part (atomic rename) under ``<table>.parts/``, from
any process — the driver or a Ray actor — so a crash loses no error already found;
:meth:`ErrorLog.finish` gathers the parts into the table.

Record ids per stage: ``retrieve`` and ``examples`` and ``rerank`` — the query id; ``annotate`` —
``<pair_id>/<judge>`` (``/probe`` appended for position-bias probes).

Example::

    >>> import pyarrow as pa, pyarrow.compute as pc, tempfile, pathlib
    >>> from zelo_ray.faults import ErrorLog, isolate
    >>> log = ErrorLog(pathlib.Path(tempfile.mkdtemp()) / "errors.parquet", "demo")
    >>> def square(t):
    ...     if 3 in t["x"].to_pylist():
    ...         raise ValueError("three is bad")
    ...     return t.append_column("y", pc.multiply(t["x"], t["x"]))
    >>> out = isolate(square, pa.table({"x": [1, 2, 3, 4]}), lambda t: t["x"].to_pylist(), log)
    >>> out["y"].to_pylist(), log.finish()["record_id"].to_pylist()
    ([1, 4, 16], ['3'])
"""

from __future__ import annotations

import os
import shutil
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

__all__ = ["ERRORS_SCHEMA", "ErrorLog", "FaultInjector", "InjectedFault", "IsolatedBatches", "StageFailed", "check_failures",
           "isolate"]

ERRORS_SCHEMA = pa.schema([
    pa.field("stage", pa.string(), nullable=False),
    pa.field("record_id", pa.string(), nullable=False),
    pa.field("error_type", pa.string(), nullable=False),
    pa.field("error", pa.string(), nullable=False),
    pa.field("traceback", pa.string()),
    pa.field("time", pa.timestamp("ms", tz="UTC"), nullable=False),
])
"""One row per failed record: the stage, the record's id, the exception's type and message (cut
at 2,000 characters) and the innermost frames of its traceback."""

_MAX_MESSAGE = 2000


class StageFailed(RuntimeError):
    """More records failed than ``errors.max_fraction`` allows; the message says where to look."""


class InjectedFault(RuntimeError):
    """A failure forced by ``errors.inject`` (for testing fault isolation end to end)."""


class FaultInjector:
    """Raises :class:`InjectedFault` for the records named ``"<stage>:<record_id>"`` in
    ``errors.inject``; a no-op when that list is empty."""

    def __init__(self, stage: str, inject: Iterable[str] = ()) -> None:
        prefix = f"{stage}:"
        self.stage = stage
        self.ids = frozenset(s[len(prefix):] for s in inject if s.startswith(prefix))

    def check(self, record_ids: Iterable[str]) -> None:
        if not self.ids:
            return
        hit = sorted(self.ids.intersection(map(str, record_ids)))
        if hit:
            raise InjectedFault(f"injected failure of {self.stage} record {hit[0]!r} (errors.inject)")

    def wrap(self, fn: Callable, record_ids: Callable) -> Callable:
        """``fn`` that first fails when its batch holds an injected record."""
        if not self.ids:
            return fn

        def guarded(batch):
            self.check(record_ids(batch))
            return fn(batch)
        return guarded


def _cut(text: str) -> str:
    return text if len(text) <= _MAX_MESSAGE else text[:_MAX_MESSAGE] + "…"


def describe_errors(errors: Sequence[BaseException]) -> tuple[list[str], list[str], list[str | None]]:
    """(type names, messages, short tracebacks) of ``errors`` — what an errors table stores, and
    what a worker that cannot write the table sends back instead."""
    return ([type(e).__name__ for e in errors], [_cut(f"{e}") for e in errors],
            ["".join(traceback.format_tb(e.__traceback__, limit=-4)) or None for e in errors])


class ErrorLog:
    """The errors table of one stage at ``path`` (``….parquet``), written part by part."""

    def __init__(self, path: str | Path, stage: str) -> None:
        self.path = Path(path)
        self.stage = stage
        self.parts_dir = self.path.with_name(self.path.name + ".parts")

    def reset(self) -> None:
        """Forget the parts of an earlier, interrupted run (the table itself stays until finish)."""
        shutil.rmtree(self.parts_dir, ignore_errors=True)

    def record(self, record_ids: Sequence, errors: Sequence[BaseException]) -> None:
        """Append one part: ``errors[i]`` is what record ``record_ids[i]`` raised."""
        self.record_reported(record_ids, *describe_errors(errors))

    def record_reported(self, record_ids: Sequence, error_types: Sequence[str], messages: Sequence[str],
                        tracebacks: Sequence[str | None]) -> None:
        """Append one part of errors a worker reported as text (a worker on another node cannot
        write this table itself)."""
        if not len(record_ids):
            return
        now = datetime.now(timezone.utc)
        table = pa.table({
            "stage": pa.array([self.stage] * len(record_ids), pa.string()),
            "record_id": pa.array([str(r) for r in record_ids], pa.string()),
            "error_type": pa.array(list(error_types), pa.string()),
            "error": pa.array([_cut(m) for m in messages], pa.string()),
            "traceback": pa.array(list(tracebacks), pa.string()),
            "time": pa.array([now] * len(record_ids), pa.timestamp("ms", tz="UTC")),
        }, schema=ERRORS_SCHEMA)
        self.parts_dir.mkdir(parents=True, exist_ok=True)
        name = f"part-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"
        tmp = self.parts_dir / f".tmp-{name}"
        pq.write_table(table, tmp)
        os.replace(tmp, self.parts_dir / name)

    def _parts(self) -> pa.Table:
        parts = sorted(self.parts_dir.glob("part-*.parquet")) if self.parts_dir.exists() else []
        if not parts:
            return ERRORS_SCHEMA.empty_table()
        return pa.concat_tables(pq.read_table(p, schema=ERRORS_SCHEMA) for p in parts)

    def finish(self) -> pa.Table:
        """This run's errors as the stage's table (replacing the last run's); parts removed.
        With no errors the table is removed, so its presence always means failed records."""
        table = self._parts().sort_by([("record_id", "ascending")])
        if table.num_rows:
            tmp = self.path.with_name(self.path.name + ".tmp")
            pq.write_table(table, tmp)
            os.replace(tmp, self.path)
        else:
            self.path.unlink(missing_ok=True)
        shutil.rmtree(self.parts_dir, ignore_errors=True)
        return table

    def read(self) -> pa.Table:
        """The errors table of the last finished run (empty when none failed)."""
        if not self.path.exists():
            return ERRORS_SCHEMA.empty_table()
        return pq.read_table(self.path, schema=ERRORS_SCHEMA)

    def failed_ids(self) -> list[str]:
        return self.read()["record_id"].to_pylist()


def _slice(batch, start: int, stop: int):
    return batch.slice(start, stop - start) if isinstance(batch, pa.Table) else batch[start:stop]


def isolate(fn: Callable, batch, record_ids: Callable[[object], Sequence], log: ErrorLog,
            injector: FaultInjector | None = None, *, concat: Callable | None = None):
    """``fn(batch)``, or — when it raises — the output of every record that does not raise, with
    each raising record written to ``log``. ``batch`` is a ``pa.Table`` or a sequence;
    ``record_ids(batch)`` names its records in order; ``concat`` joins outputs of slices
    (default: ``pa.concat_tables`` / list concatenation). Returns ``fn(batch[:0])`` when every
    record failed, so the output keeps its schema."""
    if injector is not None:
        fn = injector.wrap(fn, record_ids)
    outputs: list = []
    failed_ids: list = []
    failed: list[BaseException] = []

    def run(part) -> None:
        n = len(part) if not isinstance(part, pa.Table) else part.num_rows
        try:
            outputs.append(fn(part))
            return
        except Exception as exc:  # noqa: BLE001 - isolation is the point
            if n <= 1:
                failed_ids.extend(record_ids(part))
                failed.append(exc)
                return
        mid = n // 2
        run(_slice(part, 0, mid))
        run(_slice(part, mid, n))

    run(batch)
    if failed:
        log.record(failed_ids, failed)
    if not outputs:
        return fn(_slice(batch, 0, 0))
    if len(outputs) == 1:
        return outputs[0]
    if concat is not None:
        return concat(outputs)
    if isinstance(outputs[0], pa.Table):
        return pa.concat_tables(outputs, promote_options="default")
    return [x for out in outputs for x in out]


def check_failures(errors: pa.Table, total: int, max_fraction: float, *, stage: str, path: Path,
                   what: str = "records") -> dict:
    """A summary of the stage's failed records; raises :class:`StageFailed` above ``max_fraction``."""
    failed = errors.num_rows
    summary = {"failed": failed, "total": total, "errors": str(path) if failed else None}
    if failed:
        kinds = Counter(errors["error_type"].to_pylist())
        top, count = kinds.most_common(1)[0]
        example = errors.filter(pc.equal(errors["error_type"], top)).slice(0, 1)
        summary["most_common"] = (f"{top} ×{count}: {example['error'][0].as_py()} "
                                  f"(record {example['record_id'][0].as_py()!r})")
        share = failed / max(total, 1)
        if share > max_fraction:
            raise StageFailed(
                f"{stage}: {failed:,} of {total:,} {what} failed ({share:.1%} > errors.max_fraction="
                f"{max_fraction:g}); most common: {summary['most_common']}. Every failed record is "
                f"listed in {path}; what succeeded is kept, and a re-run retries only the failed "
                f"{what}.")
    return summary


class IsolatedBatches:
    """A Ray Data ``map_batches`` callable around another: builds ``inner(**inner_kwargs)`` once
    per actor and runs each batch through :func:`isolate`, so a record that raises lands in the
    errors table at ``errors`` (record id: column ``id_column``) instead of failing the job."""

    def __init__(self, inner: Callable, inner_kwargs: dict | None = None, *, stage: str, id_column: str,
                 errors: str, inject: Sequence[str] = ()) -> None:
        self.inner = inner(**(inner_kwargs or {}))
        self.id_column = id_column
        self.log = ErrorLog(errors, stage)
        self.injector = FaultInjector(stage, inject)

    def _ids(self, batch: pa.Table) -> list:
        return batch.column(self.id_column).to_pylist()

    def __call__(self, batch: pa.Table) -> pa.Table:
        return isolate(self.inner, batch, self._ids, self.log, self.injector)
