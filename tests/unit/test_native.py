"""The compiled LIF loops (sast.native): their exp, their equality with the torch ops, their invariance to how a
batch is split, and how the library is built, cached and stepped around.

test_fast_path.py runs the model-level equalities (plain path, gradcheck, gradgradcheck, HVPs) with the loops on
and off; here the loops are compared with the torch ops one function at a time, over random shapes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sast import _fast, native
from sast.native import _build
from sast.neuron import MODES, RESETS, plain_lif

pytestmark = pytest.mark.skipif(_build.compiler() is None, reason="no C compiler: the loops cannot be built here")


@pytest.fixture(autouse=True)
def _require(monkeypatch):
    monkeypatch.setenv(native.ENV, "require")  # a build that fails fails the test instead of falling back


def test_exp_is_accurate_to_two_units_in_the_last_place():
    for dtype, lo, hi in ((torch.float32, -87.0, 88.0), (torch.float64, -708.0, 708.0)):
        x = torch.linspace(lo, hi, 400_001, dtype=dtype)
        want = torch.exp(x.double())
        got = native.exp(x).double()
        rel = ((got - want).abs() / want).max().item()
        assert rel <= 2 * torch.finfo(dtype).eps, (dtype, rel)
        # overflow gives inf (as torch's exp); far below, e^lo, which 1 + exp rounds away; NaN passes through
        edge = native.exp(torch.tensor([float("nan"), 1e4, float("inf"), -1e4, -float("inf")], dtype=dtype))
        assert torch.isnan(edge[0]) and torch.isinf(edge[1:3]).all()
        assert torch.equal(edge[3:], native.exp(torch.tensor([lo, lo], dtype=dtype)))
        assert (edge[3:] > 0).all() and (1 + edge[3:] == 1).all()


def _case(draw_shape, seed, dtype=torch.float64):
    B, T, N = draw_shape
    g = torch.Generator().manual_seed(seed)
    cur = (2.5 * torch.rand(B, T, N, generator=g, dtype=dtype) - 0.6)
    gu, gs, e = torch.randn(3, B, T, N, generator=g, dtype=dtype)
    lam_n = torch.linspace(0.5, 0.95, N, dtype=dtype)
    theta_n = torch.linspace(1.1, 0.4, N, dtype=dtype)
    return cur, gu, gs, e, lam_n, theta_n


shapes = st.tuples(st.integers(1, 4), st.integers(1, 7), st.integers(1, 41))


@settings(deadline=None, max_examples=60)
@given(shape=shapes, seed=st.integers(0, 2**16), reset=st.sampled_from(RESETS), mode=st.sampled_from(MODES),
       per_neuron=st.booleans(), grads=st.sampled_from(["gu", "gs", "both"]))
def test_loops_equal_the_torch_ops(shape, seed, reset, mode, per_neuron, grads):
    """Forward, adjoint and the adjoint's backward, float64, against the fast path's torch ops on the same inputs."""
    cur, gu, gs, e, lam_n, theta_n = _case(shape, seed)
    lam, theta = (lam_n, theta_n) if per_neuron else (0.8, 0.7)
    kw = dict(lam=lam, theta=theta, beta=2.0, reset=reset, mode=mode)
    u, s = native.forward(cur, **kw)
    with native.setting("off"):
        u_t, s_t = _fast._LIF.forward(cur, *kw.values())
    torch.testing.assert_close(u, u_t, rtol=4e-16, atol=4e-16)
    torch.testing.assert_close(s, s_t, rtol=4e-16, atol=4e-16)
    if mode != "smooth":  # no sigmoid in the forward: the same ops in the same order
        assert torch.equal(u, u_t) and torch.equal(s, s_t)

    gu_in = gu if grads in ("gu", "both") or mode == "hard" else None
    gs_in = gs if grads in ("gs", "both") and mode != "hard" else None
    d = native.adjoint(u, s, gu_in, gs_in, **kw)
    with native.setting("off"):
        d_t = _fast._adjoint_inplace(u, s, gu_in, gs_in, kw)
    torch.testing.assert_close(d, d_t, rtol=1e-13, atol=1e-13)

    if mode == "smooth":
        got = native.adjoint_backward(u, s, gs_in, d, e, lam, theta, 2.0, reset, gs_in is not None)
        ctx = SimpleNamespace(lam=lam, theta=theta, beta=2.0, reset=reset, has_gu=True, has_gs=gs_in is not None)
        want = _fast._LIFAdjoint._backward_recorded(u, s, gs_in, d, e, ctx)
        names = ("dL/du", "dL/ds", "dL/dgu", "dL/dgs")
        for name, a, b in zip(names, got, want[:4]):
            assert (a is None) == (b is None), name
            if a is not None:
                torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12, msg=name)


def _channels_last(t):
    """t (B, T, C, H, W) with each frame stored channels-last: as a conv layer's currents are on a CPU."""
    B, T, C, H, W = t.shape
    return t.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)


@settings(deadline=None, max_examples=30)
@given(c=st.integers(1, 4), h=st.integers(1, 5), w=st.integers(1, 5), seed=st.integers(0, 2**16),
       reset=st.sampled_from(RESETS), layouts=st.tuples(*[st.booleans()] * 4))
def test_the_loops_take_the_state_in_any_dense_layout(c, h, w, seed, reset, layouts):
    """A conv layer's state stored channels-last gives the same numbers as the same state stored plainly, with
    per-neuron lam and theta (of the logical C, H, W order), whatever the layout of each incoming gradient; results
    keep the layout of the state."""
    g = torch.Generator().manual_seed(seed)
    B, T = 2, 3
    cur = 2.5 * torch.rand(B, T, c, h, w, generator=g, dtype=torch.float64) - 0.6
    gu, gs, e = torch.randn(3, B, T, c, h, w, generator=g, dtype=torch.float64)
    lam = torch.rand(c, h, w, generator=g, dtype=torch.float64) * 0.5 + 0.45
    theta = torch.rand(c, h, w, generator=g, dtype=torch.float64) + 0.4
    kw = dict(lam=lam, theta=theta, beta=2.0, reset=reset, mode="smooth")
    u, s = native.forward(cur, **kw)
    u_c, s_c = native.forward(_channels_last(cur), **kw)
    assert u_c.stride() == _channels_last(cur).stride() and s_c.stride() == u_c.stride()
    assert torch.equal(u_c, u) and torch.equal(s_c, s)
    u_c, s_c, gu_c, gs_c, e_c = (_channels_last(t) if flip else t.clone()
                                 for t, flip in zip((u, s, gu, gs, e), (True, *layouts)))
    d = native.adjoint(u, s, gu, gs, **kw)
    d_c = native.adjoint(u_c, s_c, gu_c, gs_c, **kw)
    assert d_c.stride() == u_c.stride() and torch.equal(d_c, d)
    back = native.adjoint_backward(u, s, gs, d, e, lam, theta, 2.0, reset, True)
    back_c = native.adjoint_backward(u_c, s_c, gs_c, d_c, e_c, lam, theta, 2.0, reset, True)
    for a, b in zip(back, back_c):
        assert (a is None) == (b is None)
        if a is not None:
            assert b.stride() == u_c.stride() and torch.equal(a, b)


def test_float32_loops_match_float64():
    cur, gu, gs, *_ = _case((3, 20, 300), 7)
    for reset in RESETS:
        kw = dict(lam=0.9, theta=1.0, beta=5.0, reset=reset, mode="smooth")
        u64, s64 = plain_lif(cur, **kw)
        u32, s32 = native.forward(cur.float(), **kw)
        torch.testing.assert_close(u32.double(), u64, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(s32.double(), s64, rtol=1e-5, atol=1e-5)
        d64 = native.adjoint(u64, s64, gu, gs, **kw)
        d32 = native.adjoint(u32, s32, gu.float(), gs.float(), **kw)
        torch.testing.assert_close(d32.double(), d64, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_results_do_not_depend_on_the_split(monkeypatch, dtype):
    """One call on the batch, the batch cut over threads, and one sample at a time: the same bits (N = 37 leaves a
    scalar remainder after the vector loop)."""
    cur, gu, gs, e, lam_n, theta_n = _case((6, 9, 37), 11, dtype)
    kw = dict(lam=lam_n, theta=theta_n, beta=3.0, reset="zero", mode="smooth")

    def run():
        u, s = native.forward(cur, **kw)
        d = native.adjoint(u, s, gu, gs, **kw)
        back = native.adjoint_backward(u, s, gs, d, e, lam_n, theta_n, 3.0, "zero", True)
        return (u, s, d, *back)

    before = torch.get_num_threads()
    monkeypatch.setattr(native, "MIN_PER_THREAD", 1 << 40)
    whole = run()
    monkeypatch.setattr(native, "MIN_PER_THREAD", 1)
    torch.set_num_threads(3)
    try:
        split = run()
    finally:
        torch.set_num_threads(before)
    for a, b in zip(whole, split):
        assert torch.equal(a, b)
    monkeypatch.setattr(native, "MIN_PER_THREAD", 1 << 40)
    full = (cur, gu, gs, e)
    for b in range(cur.shape[0]):
        cur, gu, gs, e = (t[b:b + 1] for t in full)
        for a, one in zip(whole, run()):
            assert torch.equal(a[b:b + 1], one)


def test_the_fast_path_uses_the_loops_where_they_apply(monkeypatch):
    calls = []
    for name in ("forward", "adjoint", "adjoint_backward"):
        orig = getattr(native, name)
        monkeypatch.setattr(native, name, lambda *a, _o=orig, _n=name, **k: (calls.append(_n), _o(*a, **k))[1])
    c = torch.rand(2, 4, 3, dtype=torch.double, requires_grad=True)
    u, s = _fast.lif(c, lam=0.8, theta=0.7, beta=2.0, reset="zero", mode="smooth")
    (grad,) = torch.autograd.grad((u * s).sum(), c, create_graph=True)
    torch.autograd.grad(grad.sum(), c)
    # the second derivative flows through the adjoint's backward into u and s, and from them through the adjoint
    assert calls == ["forward", "adjoint", "adjoint_backward", "adjoint"]
    calls.clear()
    _fast.lif(c.to(torch.bfloat16), lam=0.8, theta=0.7, beta=2.0, reset="zero", mode="smooth")
    assert calls == []  # another dtype: the torch ops


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_the_loops_share_torchs_openmp_runtime():
    """Built with OpenMP, the library needs libgomp.so.1, which torch's CPU wheel has already loaded: one runtime,
    one pool of threads (two would make the loops compete with torch's idle threads for the cores). In a process
    of its own: other packages (scikit-learn) bring OpenMP runtimes of their own."""
    code = textwrap.dedent("""
        import torch
        from sast import native
        native.forward(torch.rand(2, 3, 5), 0.9, 1.0, 2.0, "zero", "smooth")
        print(native._state["openmp"])
        print(sorted({line.split()[-1] for line in open("/proc/self/maps") if "libgomp" in line}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "SAST_NATIVE": "require"})
    assert out.returncode == 0, out.stderr
    openmp, maps = out.stdout.strip().splitlines()
    if openmp != "True":
        pytest.skip(f"built without OpenMP here: {out.stdout}")
    torch_lib = os.path.join(os.path.dirname(torch.__file__), "lib")
    mapped = eval(maps)
    assert len(mapped) == 1 and mapped[0].startswith(torch_lib), mapped


# --------------------------------------------------------------------------- building


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """A process state with no library loaded yet and an empty cache of its own."""
    monkeypatch.setattr(native, "_state", {})
    monkeypatch.setenv("SAST_NATIVE_CACHE", str(tmp_path / "cache"))
    return tmp_path


def test_the_library_is_built_once_and_then_loaded_from_the_cache(fresh):
    _, first = _build.build()
    stamp = first.stat().st_mtime_ns
    _, again = _build.build()
    assert again == first and first.stat().st_mtime_ns == stamp
    assert first.parent == fresh / "cache"
    assert [p.name for p in first.parent.iterdir()] == [first.name]  # no temporary file left behind
    # a damaged cache entry (a new file at its name: this process keeps its mapping of the old one) fails to load
    # in a new process, which removes it and builds it again
    first.unlink()
    first.write_bytes(b"not a library")
    code = "from sast.native import _build; print(_build.build()[1])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(first) and first.read_bytes() != b"not a library"
    assert [p.name for p in first.parent.iterdir()] == [first.name]


def test_a_build_killed_midway_leaves_nothing_that_a_later_build_loads(fresh):
    """A killed build leaves its temporary file, never the library's name: the next build compiles afresh and
    removes temporary files older than an hour."""
    cache = fresh / "cache"
    cache.mkdir()
    stale, recent = cache / ".kernels-abc-old.so", cache / ".kernels-abc-new.so"
    for f in (stale, recent):
        f.write_bytes(b"\x7fELF half-written")
    os.utime(stale, (0, 0))
    _, path = _build.build()
    assert path.parent == cache and not stale.exists() and recent.exists()
    assert native.available()


def test_an_unwritable_cache_falls_back_to_a_temporary_directory(fresh, monkeypatch):
    blocker = fresh / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("SAST_NATIVE_CACHE", str(blocker / "cache"))  # a directory under a file cannot be made
    _, path = _build.build()
    assert not str(path).startswith(str(blocker))
    assert not path.parent.exists()  # the temporary directory is gone once the library is loaded
    assert native.available()
    u, s = native.forward(torch.rand(2, 3, 4), 0.9, 1.0, 2.0, "zero", "smooth")
    assert torch.isfinite(u).all() and torch.isfinite(s).all()


def test_without_a_compiler_the_torch_ops_run(fresh, monkeypatch):
    monkeypatch.setenv("PATH", str(fresh))  # no cc, gcc or clang here
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setenv(native.ENV, "auto")
    assert "no C compiler" in native.status()
    assert not native.available()
    c = torch.rand(2, 3, 4, dtype=torch.double)
    u, s = _fast.lif(c, lam=0.8, theta=0.7, beta=2.0, reset="zero", mode="smooth")
    u_p, s_p = plain_lif(c, lam=0.8, theta=0.7, beta=2.0, reset="zero", mode="smooth")
    assert torch.equal(u, u_p) and torch.equal(s, s_p)  # the torch ops: bit-equal to the plain loop
    monkeypatch.setenv(native.ENV, "require")
    with pytest.raises(RuntimeError, match="SAST_NATIVE=require"):
        native.available()


def test_a_failing_compiler_is_reported_and_stepped_around(fresh, monkeypatch):
    cc = fresh / "badcc"
    cc.write_text("#!/bin/sh\necho 'badcc: cannot compile this' >&2\nexit 1\n")
    cc.chmod(0o755)
    monkeypatch.setenv("CC", str(cc))
    monkeypatch.setenv(native.ENV, "auto")
    assert not native.available()
    assert "cannot compile this" in native.status() and "exit 1" in native.status()


def test_a_mistyped_setting_is_refused(monkeypatch):
    monkeypatch.setenv(native.ENV, "of")
    with pytest.raises(ValueError, match="SAST_NATIVE='of'"):
        native.available()
    with pytest.raises(ValueError, match="expected one of auto, off, require"):
        with native.setting("none"):
            pass
    with native.setting("off"):
        assert os.environ[native.ENV] == "off" and not native.available()
    assert os.environ[native.ENV] == "of"  # restored


def test_processes_building_at_once_share_the_cache(fresh):
    code = textwrap.dedent("""
        import torch
        from sast import native
        u, s = native.forward(torch.rand(2, 3, 5), 0.9, 1.0, 2.0, "zero", "smooth")
        print(native.status())
    """)
    env = {**os.environ, "SAST_NATIVE": "require"}
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(3)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    assert len({o[0] for o in outs}) == 1  # one library path
    files = list((fresh / "cache").iterdir())
    assert len(files) == 1 and files[0].suffix == ".so"


@settings(deadline=None, max_examples=60)
@given(m=st.integers(1, 3), c=st.integers(1, 5), h=st.integers(1, 11), w=st.integers(1, 11), k=st.integers(1, 4),
       seed=st.integers(0, 2**16), dtype=st.sampled_from([torch.float32, torch.float64]),
       layout=st.sampled_from([torch.contiguous_format, torch.channels_last]), grad_layout=st.booleans())
def test_avg_pool_equals_torch_bit_for_bit(m, c, h, w, k, seed, dtype, layout, grad_layout):
    """Forward and backward against F.avg_pool2d (remainder rows and columns dropped when k does not divide), on
    plain and channels-last input (the result and the gradient keep the input's layout, as torch's do)."""
    if k > min(h, w):
        return
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(m, c, h, w, generator=g, dtype=dtype).contiguous(memory_format=layout).requires_grad_()
    y, want = _fast.avg_pool(x, k), torch.nn.functional.avg_pool2d(x, k)
    assert y.grad_fn is not None and type(y.grad_fn).__name__ == "_AvgPoolBackward"
    assert torch.equal(y, want) and y.is_contiguous(memory_format=layout)
    v = torch.randn(want.shape, generator=g, dtype=dtype)
    if grad_layout:  # the incoming gradient in the other layout
        v = v.contiguous(memory_format=torch.channels_last if layout == torch.contiguous_format else
                         torch.contiguous_format)
    got = torch.autograd.grad(y, x, v)[0]
    assert torch.equal(got, torch.autograd.grad(want, x, v)[0]) and got.is_contiguous(memory_format=layout)


def test_avg_pool_gradcheck_and_gradgradcheck():
    x = torch.randn(2, 3, 5, 7, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: _fast.avg_pool(t, 2), (x,))
    assert torch.autograd.gradgradcheck(lambda t: _fast.avg_pool(t, 2), (x,))


def test_batched_gradients_take_the_torch_ops():
    """Vectorised Jacobians (batched grad_outputs) reach the fast path's backward as batched tensors, which have no
    storage for the loops: the torch ops run them, and the Jacobian equals the plain path's."""
    c = torch.rand(2, 3, 4, dtype=torch.double) * 2

    def f(fast):
        return lambda x: torch.cat(_fast.lif(x, lam=0.8, theta=0.7, beta=2.0, reset="zero", mode="smooth")
                                   if fast else plain_lif(x, lam=0.8, theta=0.7, beta=2.0, reset="zero", mode="smooth"))

    got = torch.autograd.functional.jacobian(f(True), c, vectorize=True)
    want = torch.autograd.functional.jacobian(f(False), c, vectorize=True)
    torch.testing.assert_close(got, want, rtol=1e-13, atol=1e-13)


def test_batched_gradients_through_the_pooling_take_the_torch_ops():
    x = torch.rand(2, 3, 5, 6, dtype=torch.double)
    got = torch.autograd.functional.jacobian(lambda t: _fast.avg_pool(t, 2) ** 2, x, vectorize=True)
    want = torch.autograd.functional.jacobian(lambda t: torch.nn.functional.avg_pool2d(t, 2) ** 2, x, vectorize=True)
    torch.testing.assert_close(got, want, rtol=1e-14, atol=1e-14)
    hess = torch.autograd.functional.hessian(lambda t: (_fast.avg_pool(t, 2) ** 3).sum(), x, vectorize=True)
    want = torch.autograd.functional.hessian(lambda t: (torch.nn.functional.avg_pool2d(t, 2) ** 3).sum(), x,
                                             vectorize=True)
    torch.testing.assert_close(hess, want, rtol=1e-14, atol=1e-14)


def test_a_mistyped_setting_is_refused_by_the_commands_before_any_work(monkeypatch, tmp_path, capsys):
    from apps.train import main as train_main
    from checks.all import main as checks_main

    monkeypatch.setenv(native.ENV, "of")
    assert checks_main(["--model", str(tmp_path / "ckpt.pt")]) == 2  # before the model is read
    assert train_main(["--epochs", "1", "--limit", "200", "--run-dir", str(tmp_path / "run"), "--no-progress",
                       "--monitor", "off"]) == 2
    assert not (tmp_path / "run").exists()  # refused before the run folder is made
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all("SAST_NATIVE='of'" in line for line in err), err
