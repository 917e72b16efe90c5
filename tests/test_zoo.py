"""helpers.zoo: every architecture builds, is deterministic, CPA in eval mode, and agrees with autodiff."""

import pytest
import torch

from helpers.jvp import jvp
from helpers.zoo import ZOO, build


@pytest.mark.parametrize("name", list(ZOO))
def test_zoo_model_is_seeded_eval_and_cpa(name):
    model, shape = build(name, seed=3, dtype=torch.float64)
    again, _ = build(name, seed=3, dtype=torch.float64)
    assert not model.training
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    x = torch.randn(2, *shape, dtype=torch.float64)
    v = torch.randn_like(x)
    with torch.no_grad():
        y, jv = jvp(model, x, v)
        _, ref = torch.func.jvp(model, (x,), (v,))
    assert torch.equal(y, model(x))
    assert ((jv - ref).abs().max() / ref.abs().max()).item() < 1e-10


def test_batchnorm_statistics_are_not_the_identity():
    model, _ = build("ResNet (eval BN)")
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all((bn.running_var != 1).any() and (bn.weight != 1).any() for bn in bns)


def test_unknown_name_lists_the_choices():
    with pytest.raises(ValueError, match=r"unknown zoo model .transformer.; choose one of .*MLP"):
        build("transformer")
