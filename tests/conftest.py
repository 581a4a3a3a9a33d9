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
