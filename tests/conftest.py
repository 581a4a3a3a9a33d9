import os

import numpy as np
import pytest

# Keep the compiled Elo kernel's thread pool small on 2-core CI machines.
os.environ.setdefault("NUMBA_NUM_THREADS", "2")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
