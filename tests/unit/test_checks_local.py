"""checks.local and the local fields of the checks: the ghost Jacobian Gram against jacrev, the records, T6, the CLI line."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.func import functional_call

from checks import convergence, lipschitz, mechanism, smoothness, state_bounds
from checks._cli import format_results
from checks.local import gram_norms, input_jacobian_grams, logit_jacobian_grams
from sast.model import SNN, SNNConfig

LAYERS = {"dense": (["dense:5", "dense:3"], (6,)), "conv": (["conv:2:3:2", "pool:2", "dense:3"], (1, 7, 7))}


def _net(kind: str, seed: int = 0, reset: str = "zero") -> SNN:
    layers, shape = LAYERS[kind]
    torch.manual_seed(seed)
    cfg = SNNConfig(input_shape=shape, layers=layers, T=4, lam=0.8, theta=0.5, beta=3.0, reset=reset, num_classes=3)
    return SNN(cfg).double()


def _probe(kind: str, n: int = 4, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shape = LAYERS[kind][1]
    return torch.rand((n, 4, *shape), generator=g, dtype=torch.float64) * 2, torch.randint(3, (n,), generator=g)


@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_ghost_gram_equals_the_jacrev_gram(kind: str) -> None:
    model = _net(kind)
    x, _ = _probe(kind)
    params = {n: p.detach() for n, p in model.named_parameters()}

    def z_one(p, xi):
        return functional_call(model, p, (xi.unsqueeze(0),), {"mode": "smooth"})[0]

    J = torch.func.vmap(torch.func.jacrev(z_one), in_dims=(None, 0))(params, x)
    ref = sum(torch.einsum("bkp,blp->bkl", j.flatten(2), j.flatten(2)) for j in J.values()).numpy()
    # float64 throughout: the two differ by summation order only
    assert logit_jacobian_grams(model, x) == pytest.approx(ref, rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_input_jacobian_gram_equals_the_autograd_jacobian(kind: str) -> None:
    model = _net(kind)
    x, _ = _probe(kind)
    ref = []
    for b in range(len(x)):
        J = torch.autograd.functional.jacobian(lambda xb: model(xb[None], mode="smooth")[0], x[b]).reshape(3, -1)
        ref.append((J @ J.T).numpy())
    assert input_jacobian_grams(model, x) == pytest.approx(np.stack(ref), rel=1e-10, abs=1e-12)
    assert gram_norms(np.stack(ref)) == pytest.approx(
        [torch.linalg.matrix_norm(torch.from_numpy(r), ord=2).sqrt().item() for r in ref], rel=1e-10)


@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_input_jacobian_grams_do_not_depend_on_the_chunking(kind: str) -> None:
    """A budget of one byte takes the probe one sample at a time: the Grams are the same numbers."""
    model = _net(kind)
    x, _ = _probe(kind, n=5)
    whole = input_jacobian_grams(model, x, layers=True)
    one_by_one = input_jacobian_grams(model, x, layers=True, budget=1)
    assert len(whole) == len(one_by_one) == len(model.spiking_specs)
    for a, b in zip(whole, one_by_one):
        assert a.shape == (5, 3, 3) and b == pytest.approx(a, rel=1e-12, abs=1e-14)


@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_t3_gram_estimate_equals_the_lanczos_estimate(kind: str) -> None:
    """T3's exact Gram norms (the default) and the Krylov iteration give one record: same estimate and bounds."""
    model = _net(kind)
    probe = _probe(kind, n=6)
    gram = lipschitz.run(model, probe, adversarial=0)
    krylov = lipschitz.run(model, probe, adversarial=0, jacobian="lanczos", tol=1e-10)
    assert gram.details["jacobian_method"] == "gram" and krylov.details["jacobian_method"] == "lanczos"
    assert gram.details["jacobian_norm"] == pytest.approx(krylov.details["jacobian_norm"], rel=1e-8)
    assert gram.estimate == pytest.approx(krylov.estimate, rel=1e-8) and gram.bound == krylov.bound
    assert gram.local_bound == pytest.approx(krylov.local_bound, rel=1e-12)
    assert gram.status == krylov.status and gram.converged is True and gram.n_products == 3  # one pass a class


def test_t3_refuses_an_unknown_jacobian_method() -> None:
    with pytest.raises(ValueError, match="jacobian must be one of gram, lanczos"):
        lipschitz.run(_net("dense"), _probe("dense"), jacobian="svd")


@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_checks_record_local_bounds_and_budgets(kind: str) -> None:
    model, probe = _net(kind, reset="subtract"), _probe(kind)
    for check in (state_bounds, lipschitz, smoothness):
        r = check.run(model, probe)
        assert r.local_bound is not None and r.bound is not None and r.local_bound <= r.bound * (1 + 1e-9)
        assert r.looseness[-1]["factor"].startswith("remaining proof slack")
        assert "scope" in r.details["local"] and r.details["local"]["order"]
        total = sum(e["log10_ratio"] for e in r.looseness)
        assert total == pytest.approx(math.log10(r.bound / r.estimate), abs=1e-9)
        back = type(r).from_json(json.loads(json.dumps(r.to_json())))
        assert back.local_bound == r.local_bound and back.looseness == r.looseness
        off = check.run(model, probe, local=False)
        assert off.local_bound is None and off.looseness == [] and "local=False" in off.details["local"]["reason"]


def test_t7_local_bound_lies_between() -> None:
    model = _net("dense")
    x = torch.rand((3, 4, 6), generator=torch.Generator().manual_seed(3), dtype=torch.float64) + 0.1
    r = mechanism.run(model, (x, torch.tensor([0, 1, 2])))
    assert r.estimate <= r.local_bound * (1 + 1e-9) and r.local_bound <= r.bound * (1 + 1e-9)


def test_cli_prints_one_local_line_per_check() -> None:
    model, probe = _net("dense"), _probe("dense")
    out = format_results([smoothness.run(model, probe), smoothness.run(model, probe, local=False)])
    lines = out.splitlines()
    assert sum("top factor:" in line for line in lines) == 1
    local = [line for line in lines if "top factor:" in line][0]
    assert all(word in local for word in ("global ", ", local ", ", estimate ", " global, ", " local;"))
    assert any("local bound: - (not requested (local=False))" in line for line in lines)


def _t6_run(tmp_path: Path, t4_records: list[dict], method: str = "sast", rho: float = 0.05) -> Path:
    """A run folder with three probe records (steps 0, 10, 20; lr 0.1) and the given logged T4 results."""
    run = tmp_path / "run"
    run.mkdir()
    train = {"method": method, "rho": rho, "sam_batch": "independent", "optimizer": "sgd", "lr": 0.1, "batch_size": 16}
    (run / "config.json").write_text(json.dumps({"train": train, "model": {}}))
    lines = [{"kind": "probe", "step": s, "loss": f, "grad_norm_sq": g, "sigma2": 4.0, "n_probe": 64}
             for s, f, g in ((0, 2.3, 0.5), (10, 1.9, 0.3), (20, 1.5, 0.2))]
    lines += [{"kind": "check", "step": step, "result": {"id": "T4", "assumptions": {}, **res}} for step, res in t4_records]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return run


def test_t6_records_per_step_premises_with_logged_local_bounds(tmp_path: Path) -> None:
    run = _t6_run(tmp_path, [(10, {"bound": 400.0, "estimate": 1.0, "local_bound": 5.0}),
                             (20, {"bound": 500.0, "estimate": 1.0, "local_bound": 12.0})])
    r = convergence.run_folder(run)
    d = r.details
    assert [p["holds"] for p in d["premise_local"]] == [True, False]  # eta L_local = 0.5, then 1.2
    assert d["L_local_bound"] == [5.0, 5.0, 12.0]  # the largest logged up to each step (the first before any)
    assert r.local_bound == pytest.approx(d["rhs_local_bound"][d["steps"].index(d["step_worst"])])
    assert r.local_bound < r.bound
    assert sum(e["log10_ratio"] for e in r.looseness) == pytest.approx(math.log10(r.bound / r.estimate), abs=1e-9)
    assert r.local_kind == "conditional"
    assert "premise eta <= 1/L_local FAILS at every logged step" in format_results([r])


def test_t6_takes_t4s_local_certificate_where_the_log_has_none(tmp_path: Path) -> None:
    """checks.all hands T6 the T4 result it computed at the checkpoint: its local bound decides the premise."""
    from checks._result import make_result

    run = _t6_run(tmp_path, [(10, {"bound": 400.0, "estimate": 1.0})], method="sf", rho=0.0)
    assert convergence.run_folder(run).local_bound is None
    t4 = make_result("T4", "smoothness", bound=400.0, estimate=1.0, local_bound=2.0, local_kind="probabilistic",
                     local_failure_probability=1e-3)
    r = convergence.run(None, None, run_dir=run, t4_result=t4)
    assert [(p["step"], p["L_local"], p["holds"]) for p in r.details["premise_local"]] == [(20, 2.0, True)]
    assert "premise eta <= 1/L_local holds at every logged step" in format_results([r])


def _soft_band_zero_reset_net(seed: int) -> tuple[SNN, torch.Tensor, torch.Tensor]:
    """One dense hidden layer, zero reset, weights at 2x the usual scale: states in the soft band, where g' < 0."""
    gen = torch.Generator().manual_seed(seed)
    cfg = SNNConfig(input_shape=(3,), layers=["dense:3"], T=3, lam=0.7, theta=1.0, beta=1.8, reset="zero",
                    num_classes=3)
    model = SNN(cfg).double()
    with torch.no_grad():
        for mod in (*model.layers, model.readout):
            mod.weight.copy_(torch.randn(mod.weight.shape, generator=gen, dtype=torch.float64) * 2.0
                             / math.sqrt(mod.weight.shape[1]))
            mod.bias.copy_(torch.randn(mod.bias.shape, generator=gen, dtype=torch.float64) * 0.3)
    x = torch.rand((2, 3, 3), generator=gen, dtype=torch.float64) * 2.0
    return model, x, torch.randint(3, (2,), generator=gen)


def test_t3_local_bound_holds_where_zero_reset_makes_g_prime_negative() -> None:
    """The readout composite takes the SIGNED transition blocks: with |g'| it fell below the exact Jacobian norm
    (by up to 15% on 31 of these 300 nets). For one spiking layer it is the exact norm, so local == exact."""
    from theory.scalar import g_derivative

    negative = 0
    for seed in range(60):
        model, x, y = _soft_band_zero_reset_net(seed)
        with torch.no_grad():
            u = model(x, mode="smooth", return_trace=True)[1][0].u
        negative += bool((g_derivative(u[:, :-1].numpy(), 1, 0.7, 1.0, 1.8, "zero") < 0).any())
        r = lipschitz.run(model, (x, y), adversarial=0)
        exact = [torch.linalg.matrix_norm(torch.autograd.functional.jacobian(
            lambda xb: model(xb[None], mode="smooth")[0], x[b]).reshape(3, -1), ord=2).item() for b in range(2)]
        per_sample = r.details["local"]["per_sample"]
        for e, loc in zip(exact, per_sample):
            assert e <= loc * (1 + 1e-9), f"seed {seed}: exact {e!r} > local {loc!r}"
            assert loc <= e * (1 + 1e-9), f"seed {seed}: one layer, the composite is exact: {loc!r} vs {e!r}"
        assert r.status != "violated" and r.local_holds is True
    assert negative >= 10  # the family reaches g' < 0, where the bug was


def _spectral_by_eigvalsh(mats: np.ndarray) -> np.ndarray:
    """The reference: the largest singular value of every matrix of a (..., p, q) stack, from its smaller Gram."""
    p, q = mats.shape[-2:]
    gram = mats @ np.swapaxes(mats, -1, -2) if p <= q else np.swapaxes(mats, -1, -2) @ mats
    return np.sqrt(np.maximum(np.linalg.eigvalsh(gram)[..., -1], 0.0))


@pytest.mark.parametrize("seed", range(4))
def test_screened_transition_norm_equals_the_exact_one(seed: int) -> None:
    """The screening through the recurrence drops no maximiser: the numbers of eigvalsh on every formed block
    (ties, zero spike derivatives, |g'| above 1, a clear maximiser among small ones, T = 1)."""
    from checks.local import _max_transition_norm, _transition_blocks

    rng = np.random.default_rng(seed)
    for b, T, n in [(3, 6, 50), (2, 9, 40), (2, 1, 10)]:
        g = rng.random((b, T, n)) * 1.3
        s = rng.random((b, T, n))
        g[0, :, 5] = g[0, :, 7]  # a tie for the maximum is no problem
        s[0, :, 5] = s[0, :, 7]
        s[1, T // 2] = 0.0  # a spike derivative that underflowed: a zero row of diag(s) M
        g[-1, :, 3:] *= 1e-3  # a clear maximiser among small ones
        M = _transition_blocks(g, n, T)  # (b, n, T, T)
        S = M * np.swapaxes(s, 1, 2)[:, :, :, None]
        assert _max_transition_norm(g) == pytest.approx(_spectral_by_eigvalsh(M).max(axis=1), rel=1e-12)
        assert _max_transition_norm(g, s) == pytest.approx(_spectral_by_eigvalsh(S).max(axis=1), rel=1e-12)
    assert _max_transition_norm(np.zeros((2, 4, 3)), np.zeros((2, 4, 3))) == pytest.approx([0.0, 0.0])


@pytest.mark.parametrize("seed", range(3))
def test_time_sum_row_by_row_equals_the_transition_blocks(seed: int) -> None:
    """K from the carried rows equals K read off the formed T x T blocks (max over neurons, sum over k, max over t)."""
    from checks.local import _time_sum, _transition_blocks

    g = np.random.default_rng(seed).random((3, 7, 11)) * 1.3  # some |g'| above 1, as early in training
    M = _transition_blocks(g, 11, 7)
    assert _time_sum(g) == pytest.approx(M.max(axis=1).sum(axis=2).max(axis=1), rel=1e-13)


@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_logit_jacobian_grams_do_not_depend_on_the_chunking(kind: str) -> None:
    model = _net(kind)
    x, _ = _probe(kind, n=5)
    whole = logit_jacobian_grams(model, x, budget=2**40)
    assert logit_jacobian_grams(model, x, budget=1) == pytest.approx(whole, rel=1e-12, abs=1e-14)
    assert whole.shape == (5, 3, 3)
