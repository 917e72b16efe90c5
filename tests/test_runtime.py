"""helpers.runtime: environment variables are validated, applied once, and reported."""

import os

import pytest
import torch

from helpers import runtime


@pytest.fixture
def environ(monkeypatch):
    for var in ("BOOK_MODE", "BOOK_DEVICE", "BOOK_THREADS"):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_mode_defaults_to_full_and_pick_follows_it(environ):
    assert runtime.get_mode() == "full" and runtime.pick(full=1, quick=2) == 1
    environ.setenv("BOOK_MODE", "quick")
    assert runtime.get_mode() == "quick" and runtime.pick(full=1, quick=2) == 2


@pytest.mark.parametrize("var, value, allowed", [
    ("BOOK_MODE", "fast", "quick|full"),
    ("BOOK_THREADS", "two", "positive integer"),
    ("BOOK_THREADS", "0", "positive integer"),
    ("BOOK_DEVICE", "tpu", "cpu|cuda"),
])
def test_bad_values_name_the_variable_and_the_allowed_values(environ, var, value, allowed):
    environ.setenv(var, value)
    with pytest.raises(ValueError, match=f"{var}.*{allowed}|{allowed}.*{value}"):
        runtime.setup(verbose=False)


def test_unavailable_cuda_is_refused(environ):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    environ.setenv("BOOK_DEVICE", "cuda")
    with pytest.raises(ValueError, match="BOOK_DEVICE.*no CUDA"):
        runtime.get_device()


def test_threads_one_per_parallel_worker_unless_set(environ):
    environ.setenv("PYTEST_XDIST_WORKER", "gw0")
    assert runtime.get_threads() == 1
    environ.setenv("BOOK_THREADS", "3")
    assert runtime.get_threads() == 3
    environ.delenv("PYTEST_XDIST_WORKER")
    environ.delenv("BOOK_THREADS")
    assert runtime.get_threads() == (os.cpu_count() or 1)


def test_setup_applies_and_prints_one_line(environ, capsys):
    environ.setenv("BOOK_MODE", "quick")
    environ.setenv("BOOK_THREADS", "1")
    environ.setenv("BOOK_DEVICE", "cpu")
    env = runtime.setup(seed=7)
    out = capsys.readouterr().out.strip()
    assert out == "mode=quick seed=7 threads=1 device=cpu" and "\n" not in out
    assert env.quick and torch.get_num_threads() == 1
    first = torch.rand(3)
    runtime.seed_everything(7)
    assert torch.equal(first, torch.rand(3))  # the seed was really applied


def test_seed_must_be_a_non_negative_integer():
    with pytest.raises(ValueError, match="seed"):
        runtime.seed_everything(-1)
