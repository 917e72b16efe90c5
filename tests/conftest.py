import os

import numpy as np
import pytest

# Unit tests and any kernel they start run in quick mode; each xdist worker uses one thread.
os.environ.setdefault("BOOK_MODE", "quick")
if os.environ.get("PYTEST_XDIST_WORKER"):
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    threadpool_limits(limits=1)


@pytest.fixture(autouse=True)
def _global_numpy_seed():
    """Seed numpy's global generator before each test, as helpers.runtime.setup() does in a
    notebook: a helper called with seed=None then draws the same numbers in every run."""
    np.random.seed(0)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny networks: one torch thread for the module (two ran 10-30x slower on a shared 2-core
    machine); the caller's thread count is restored after."""
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)
