"""helpers.runtime: environment variables are validated, applied once, and reported."""

import os
import re

import pytest
import torch

from helpers import runtime


@pytest.fixture
def environ(monkeypatch):
    for var in ("BOOK_MODE", "BOOK_DEVICE", "BOOK_THREADS", "BOOK_SEED", "BOOK_STRICT"):
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
    ("BOOK_SEED", "-1", "non-negative integer"),
    ("BOOK_SEED", "one", "non-negative integer"),
    ("BOOK_STRICT", "yes", "0 or 1"),
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
    environ.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "3"))  # restored after the test
    saved = torch.get_num_threads()
    torch.set_num_threads(3)  # not 1 (what a test worker already has): setup's change must be visible
    try:
        env = runtime.setup(seed=7)
        out = capsys.readouterr().out.strip()
        assert out.startswith("mode=quick seed=7 threads=1 device=cpu ") and "\n" not in out
        assert re.search(r" date=\d{4}-\d\d-\d\d$", out)  # provenance: the build's date (and commit)
        assert env.quick and torch.get_num_threads() == 1 and os.environ["OMP_NUM_THREADS"] == "1"
        first = torch.rand(3)
        runtime.seed_everything(7)
        assert torch.equal(first, torch.rand(3))  # the seed was really applied
    finally:
        runtime.set_threads(saved)  # leave the process as it was


def test_seed_must_be_a_non_negative_integer():
    with pytest.raises(ValueError, match="seed"):
        runtime.seed_everything(-1)


def test_book_seed_sets_the_base_seed_and_an_explicit_seed_wins(environ):
    assert runtime.setup(verbose=False).seed == 0
    environ.setenv("BOOK_SEED", "5")
    assert runtime.setup(verbose=False).seed == 5
    assert runtime.setup(seed=2, verbose=False).seed == 2
    assert runtime.current().seed == 2  # the last setup is what claims record


def test_derived_streams_follow_the_base_seed_and_the_tags(environ):
    a, b = runtime.setup(seed=1, verbose=False), runtime.setup(seed=2, verbose=False)
    assert a.seed_for("vae", 0) == runtime.setup(seed=1, verbose=False).seed_for("vae", 0)
    seeds = {a.seed_for("vae", 0), a.seed_for("vae", 1), a.seed_for("split"), b.seed_for("vae", 0)}
    assert len(seeds) == 4 and all(0 <= s < 2**63 for s in seeds)
    assert a.rng("x", 3).random() == runtime.setup(seed=1, verbose=False).rng("x", 3).random()
    assert a.rng("x", 3).random() != b.rng("x", 3).random()
    g1, g2 = a.torch_gen("z"), a.torch_gen("z")
    assert torch.equal(torch.randn(4, generator=g1), torch.randn(4, generator=g2))
    assert a.torch_gen("z").initial_seed() == a.seed_for("z")


def test_seed_tags_are_strings_or_non_negative_integers():
    env = runtime.setup(seed=0, verbose=False)
    with pytest.raises(TypeError, match="strings or integers"):
        env.seed_for(1.5)
    with pytest.raises(ValueError, match="non-negative"):
        env.seed_for(-3)


def test_string_tags_hash_the_same_in_another_process():
    import subprocess
    import sys

    code = "from helpers.runtime import derive_seed; print(derive_seed(7, 'proposals', 2))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": "123"})
    assert int(other.stdout) == runtime.derive_seed(7, "proposals", 2)


def test_strict_reads_book_strict(environ):
    assert not runtime.strict()
    environ.setenv("BOOK_STRICT", "1")
    assert runtime.strict()


def test_setup_turns_tf32_off_and_names_the_device(environ):
    environ.setenv("BOOK_DEVICE", "cpu")
    env = runtime.setup(seed=0, verbose=False)
    assert torch.backends.cudnn.conv.fp32_precision == "ieee"
    assert torch.backends.cuda.matmul.fp32_precision == "ieee"
    assert env.exact_dtype == torch.float64
    assert env.device_name and str(env.threads) in env.device_name


def test_provenance_names_the_commit_in_a_repository_and_only_the_date_outside(tmp_path, monkeypatch):
    assert re.fullmatch(r"commit=[0-9a-f]{4,}(\+changes)? date=\d{4}-\d\d-\d\d", runtime.provenance())
    monkeypatch.chdir(tmp_path)  # not a git repository, as on Colab
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert re.fullmatch(r"date=\d{4}-\d\d-\d\d", runtime.provenance())


def test_random_state_fits_scikit_learn():
    from sklearn.utils import check_random_state

    env = runtime.setup(seed=0, verbose=False)
    rs = env.random_state("kmeans", 3)
    assert 0 <= rs < 2**32 and rs == env.seed_for("kmeans", 3) % 2**32
    check_random_state(rs)  # scikit-learn accepts it
