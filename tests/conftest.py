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
