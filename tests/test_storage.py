"""The run directory's durable copy on a flaky object store: a local S3-compatible server (moto)
behind a proxy that throttles (503 SlowDown), resets connections, cuts downloads short, stalls
past the client's timeout and goes down for a while. Copies come out whole and identical; an
outage that persists fails naming the URI."""

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.faulty_s3 import FaultyS3Proxy
from tests.helpers import write_beir
from zelo_ray.cli import main
from zelo_ray.storage import Retry, StorageError, pull, push


def _run_tree(root: Path) -> dict[str, bytes]:
    """A run directory's kinds of files: vote parts in partitions, a model of several upload
    parts (multipart), reports."""
    rng = np.random.default_rng(0)
    for p in range(12):
        d = root / "annotate" / "votes" / f"p{p:03d}"
        d.mkdir(parents=True)
        n = int(rng.integers(50, 400))
        pq.write_table(pa.table({"cache_key": rng.integers(0, 2**62, n), "score": rng.uniform(-1, 1, n)}),
                       d / f"part-{p}.parquet")
    (root / "train" / "model").mkdir(parents=True)
    (root / "train" / "model" / "model.safetensors").write_bytes(rng.bytes(11 << 20))
    (root / "metrics.json").write_text('{"reranker": {"ndcg@10": {"mean": 0.5}}}')
    (root / "annotate" / "report.json").write_text('{"missing_votes": 0}')
    return _files(root)


def _files(root: Path) -> dict[str, bytes]:
    return {str(f.relative_to(root)): f.read_bytes() for f in sorted(root.rglob("*")) if f.is_file()}


def _keys(uri: str) -> set[str]:
    from pyarrow import fs

    s3fs, root = fs.FileSystem.from_uri(uri)
    return {i.path[len(root):].lstrip("/") for i in s3fs.get_file_info(fs.FileSelector(root, recursive=True))
            if i.type == fs.FileType.File}


def test_a_flaky_object_store_moves_a_run_whole(s3, tmp_path, monkeypatch):
    """Push a run through throttling, resets, cut downloads, stalls and a 8 s outage at the start,
    then pull it to a fresh machine through the same: every file arrives whole and identical,
    nothing half-written is left on either side, and a second push sends nothing."""
    tree = _run_tree(tmp_path / "run")
    uri = "s3://zelo-runs/flaky"
    retry = Retry(attempts=6, backoff_s=0.5)
    with FaultyS3Proxy(s3["AWS_ENDPOINT_URL"], slowdown=0.15, reset=0.08, cut=0.15, stall=0.02, stall_s=4.0,
                       outage_s=8.0, seed=1) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        assert push(tmp_path / "run", uri, retry=retry) == len(tree)
        assert pull(uri, tmp_path / "fresh", retry=retry) == len(tree)
        assert push(tmp_path / "run", uri, retry=retry) == 0
        seen = dict(proxy.outcomes)
    assert all(seen.get(k, 0) > 0 for k in ("outage", "slowdown", "reset", "cut", "stall", "ok")), seen
    assert _files(tmp_path / "fresh") == tree
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3["AWS_ENDPOINT_URL"])
    assert _keys(uri) == set(tree)                                  # no partial or temporary object


def test_an_outage_that_persists_fails_naming_the_uri(s3, tmp_path, monkeypatch, capsys):
    """Every request refused: the copy gives up after data.storage_attempts and says which URI;
    through the CLI, the command stops with exit status 1 and that message."""
    _run_tree(tmp_path / "run")
    with FaultyS3Proxy(s3["AWS_ENDPOINT_URL"], fail="/zelo-runs") as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        with pytest.raises(StorageError, match=r"s3://zelo-runs/down.*failed 2 times"):
            push(tmp_path / "run", "s3://zelo-runs/down", retry=Retry(attempts=2, backoff_s=0.0))
        src = write_beir(tmp_path / "beir", [{"_id": "d", "text": "x"}], [{"_id": "q", "text": "x"}])
        rc = main(["index", "--dataset", str(src), "--workdir", str(tmp_path / "work"),
                   "--set", "data.output_uri=s3://zelo-runs/down/{dataset}", "--set", "data.storage_attempts=2",
                   "--set", "data.storage_backoff_s=0"])
    err = capsys.readouterr().err
    assert rc == 1 and "s3://zelo-runs/down/beir" in err and "failed 2 times" in err, err[-2000:]
    assert s3["AWS_SECRET_ACCESS_KEY"] not in err
    assert not (tmp_path / "work" / "index").exists()              # nothing ran on a run it could not pull
