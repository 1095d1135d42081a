"""SAST's step (THEORY.md T6) against a hand computation on a tiny SNN."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad

from sast.model import SNN, SNNConfig
from sast.sam import make_optimizer, sam_step, sgd_step


def _model(seed=0):
    torch.manual_seed(seed)
    return SNN(SNNConfig(input_shape=(6,), layers=["dense:5"], T=3, beta=2.0, num_classes=3)).double()


def _loss(model, batch):
    x, y = batch
    return F.cross_entropy(model(x), y)


def _batches():
    g = torch.Generator().manual_seed(1)
    a = (torch.rand(4, 3, 6, generator=g, dtype=torch.double) * 2, torch.tensor([0, 1, 2, 1]))
    b = (torch.rand(4, 3, 6, generator=g, dtype=torch.double) * 2, torch.tensor([2, 2, 0, 1]))
    return a, b


def _hand_sam(model, a, b, rho, lr):
    params = {k: v.detach().clone() for k, v in model.named_parameters()}

    def loss_at(p, batch):
        return F.cross_entropy(functional_call(model, p, (batch[0],)), batch[1])

    g1 = grad(loss_at)(params, a)
    norm = torch.sqrt(sum((g ** 2).sum() for g in g1.values()))
    perturbed = {k: params[k] + rho * g1[k] / norm for k in params}
    g2 = grad(loss_at)(perturbed, b)
    return {k: params[k] - lr * g2[k] for k in params}, float(norm)


@pytest.mark.parametrize("rho", [0.05, 0.3])
def test_sam_step_equals_hand_computation_with_independent_batches(rho):
    model = _model()
    a, b = _batches()
    want, norm = _hand_sam(model, a, b, rho, lr=0.1)
    opt = make_optimizer("sgd", model.parameters(), 0.1)
    stats = sam_step(model, opt, _loss, a, b, rho)
    for k, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), want[k], rtol=1e-12, atol=1e-14)
    assert stats.grad_evals == 2 and stats.grad_norm == pytest.approx(norm, rel=1e-12)
    # the batches play different roles: swapping them changes the result
    swapped, _ = _hand_sam(_model(), b, a, rho, lr=0.1)
    assert any(not torch.allclose(swapped[k], want[k]) for k in want)


def test_parameters_restored_bit_for_bit_after_perturbed_pass():
    model = _model(2)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    a, b = _batches()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # no update: what is left is the restore
    sam_step(model, opt, _loss, a, b, rho=0.7)
    for k, p in model.named_parameters():
        assert torch.equal(p.detach(), before[k]), k  # w + eps - eps would not be bit-exact


def test_zero_gradient_gives_zero_perturbation_and_no_nan():
    model = _model(3)
    a, b = _batches()

    def flat_loss(model, batch):  # a loss whose gradient is exactly zero
        return sum((p * 0).sum() for p in model.parameters()) + 1.0

    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    opt = make_optimizer("sgd", model.parameters(), 0.1)
    stats = sam_step(model, opt, flat_loss, a, b, rho=0.3)
    assert stats.grad_norm == 0.0
    for k, p in model.named_parameters():
        assert torch.equal(p.detach(), before[k])


def test_rho_zero_is_the_base_step_on_the_update_batch():
    a, b = _batches()
    m1, m2 = _model(4), _model(4)
    sam_step(m1, make_optimizer("sgd", m1.parameters(), 0.2), _loss, a, b, rho=0.0)
    sgd_step(m2, make_optimizer("sgd", m2.parameters(), 0.2), _loss, b)
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        torch.testing.assert_close(p1, p2, rtol=0, atol=0)


@pytest.mark.parametrize("name", ["sgd", "momentum", "adam"])
def test_base_steps_accept_the_perturbed_gradient(name):
    model = _model(5)
    a, b = _batches()
    opt = make_optimizer(name, model.parameters(), 0.01)
    first = _loss(model, b).item()
    for _ in range(20):
        sam_step(model, opt, _loss, a, b, rho=0.01)
    assert _loss(model, b).item() < first


def test_bad_arguments():
    model = _model()
    with pytest.raises(ValueError, match="unknown optimizer"):
        make_optimizer("rmsprop", model.parameters(), 0.1)
    a, b = _batches()
    with pytest.raises(ValueError, match="rho must be >= 0"):
        sam_step(model, make_optimizer("sgd", model.parameters(), 0.1), _loss, a, b, rho=-1.0)
