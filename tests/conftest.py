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
