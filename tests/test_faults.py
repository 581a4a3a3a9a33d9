"""Per-record fault isolation (zelo_ray/faults.py), without Ray."""

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from zelo_ray.faults import ErrorLog, FaultInjector, StageFailed, check_failures, isolate


def _double(t: pa.Table) -> pa.Table:
    bad = [x for x in t["x"].to_pylist() if x % 7 == 0]
    if bad:
        raise ValueError(f"record {bad[0]} is bad")
    return t.append_column("y", pc.multiply(t["x"], 2))


def test_isolate_keeps_every_good_record_in_order(tmp_path):
    log = ErrorLog(tmp_path / "errors.parquet", "demo")
    calls = []

    def fn(t):
        calls.append(t.num_rows)
        return _double(t)
    batch = pa.table({"x": list(range(1, 65))})
    out = isolate(fn, batch, lambda t: t["x"].to_pylist(), log)
    good = [x for x in range(1, 65) if x % 7]
    assert out["x"].to_pylist() == good and out["y"].to_pylist() == [2 * x for x in good]
    errors = log.finish()
    assert sorted(errors["record_id"].to_pylist(), key=int) == [str(x) for x in range(7, 65, 7)]
    assert set(errors["error_type"].to_pylist()) == {"ValueError"}
    assert errors.filter(pc.equal(errors["record_id"], "14"))["error"][0].as_py() == "record 14 is bad"
    assert "_double" in errors["traceback"][0].as_py()
    assert sum(calls) < 64 * 8  # bisection, not one call per record and not a blow-up


def test_isolate_all_failed_keeps_schema_and_lists(tmp_path):
    log = ErrorLog(tmp_path / "e.parquet", "demo")
    out = isolate(_double, pa.table({"x": [7, 14]}), lambda t: t["x"].to_pylist(), log)
    assert out.num_rows == 0 and out.column_names == ["x", "y"]
    assert log.finish().num_rows == 2 and log.failed_ids() == ["14", "7"]


def test_isolate_on_sequences_and_no_errors_removes_table(tmp_path):
    log = ErrorLog(tmp_path / "e.parquet", "demo")
    (tmp_path / "e.parquet").write_bytes(b"stale")  # last run's table goes when nothing failed
    out = isolate(lambda xs: [x + 1 for x in xs], [1, 2, 3], lambda xs: xs, log)
    assert out == [2, 3, 4]
    assert log.finish().num_rows == 0 and not (tmp_path / "e.parquet").exists()


def test_injector_and_parts_survive_until_finish(tmp_path):
    log = ErrorLog(tmp_path / "e.parquet", "retrieve")
    inj = FaultInjector("retrieve", ["retrieve:q2", "annotate:q1"])
    out = isolate(lambda t: t, pa.table({"q": ["q1", "q2", "q3"]}), lambda t: t["q"].to_pylist(), log, inj)
    assert out["q"].to_pylist() == ["q1", "q3"]
    assert list(log.parts_dir.glob("part-*.parquet"))  # written as found, before finish
    assert log.finish()["error_type"].to_pylist() == ["InjectedFault"]
    assert FaultInjector("retrieve", []).wrap(len, list) is len  # no injection: no wrapper


def test_check_failures_threshold_message(tmp_path):
    log = ErrorLog(tmp_path / "e.parquet", "demo")
    log.record(["a", "b"], [KeyError("x"), KeyError("y")])
    errors = log.finish()
    ok = check_failures(errors, 100, 0.05, stage="demo", path=log.path)
    assert ok["failed"] == 2 and "KeyError ×2" in ok["most_common"] and ok["errors"] == str(log.path)
    with pytest.raises(StageFailed, match=r"demo: 2 of 10 queries failed \(20.0% > errors.max_fraction=0.1\)"):
        check_failures(errors, 10, 0.1, stage="demo", path=log.path, what="queries")
    assert check_failures(ErrorLog(tmp_path / "none.parquet", "x").read(), 5, 0.0, stage="x",
                          path=tmp_path)["failed"] == 0
