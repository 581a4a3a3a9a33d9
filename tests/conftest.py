import os
from pathlib import Path

import numpy as np
import pytest

# Keep the compiled Elo kernel's thread pool small on 2-core CI machines.
os.environ.setdefault("NUMBA_NUM_THREADS", "2")
# ir_datasets reads this once at import: the offline copy, so no test ever downloads.
os.environ.setdefault("IR_DATASETS_HOME", str(Path(__file__).resolve().parents[2] / "shared" / "ir_datasets"))


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def ray_tmp():
    """A short temporary directory for RAY_TMPDIR: Ray's AF_UNIX socket paths must stay under
    108 bytes, which pytest's tmp_path names can exceed."""
    import shutil
    import tempfile

    path = tempfile.mkdtemp(prefix="zr", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def s3(monkeypatch):
    """A real S3-compatible server (moto) on 127.0.0.1 with an empty bucket ``zelo-runs``; the
    AWS variables point every client (pyarrow, boto3) at it and nowhere else."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ACCESS_KEY_ID": "zelo-test", "AWS_SECRET_ACCESS_KEY": "zelo-test-secret-7f3a",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": f"http://{host}:{port}",
           "AWS_EC2_METADATA_DISABLED": "true"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    boto3.client("s3").create_bucket(Bucket="zelo-runs")
    yield env
    server.stop()


def pytest_sessionfinish(session, exitstatus):
    """Stop Ray while the interpreter is whole: left to its exit handler, Ray shuts down during
    interpreter finalisation, with other libraries' threads half torn down (a clean-clone run
    once died there with a segmentation fault after every test had passed)."""
    import sys

    if "ray" in sys.modules:
        import ray

        if ray.is_initialized():
            ray.shutdown()
    session.config.stash[_EXIT] = int(exitstatus)


_EXIT = pytest.StashKey[int]()


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """End the process here, with pytest's exit status, once every report is written.

    Twice a full run (a clean clone, then CI) passed every test, printed its summary and then
    died with a segmentation fault during interpreter finalisation — exit 139 instead of 0, with
    no Python frame (native threads of the libraries under test, torn down in an order none of
    them controls); it never reproduced under gdb. Nothing a test checks runs after this point,
    so the finalisation is skipped rather than let it decide CI's verdict. A crash *during* a
    test still kills the run, with faulthandler's stack. ZELO_TEST_FINALIZE=1 keeps the normal
    exit (to hunt that crash)."""
    import logging
    import sys

    if os.environ.get("ZELO_TEST_FINALIZE") == "1" or _EXIT not in config.stash:
        return
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(config.stash[_EXIT])
