"""The constants of THEORY.md's proofs measured at one w on one probe set (for the local bounds of ``theory.local``).

:func:`observe` runs the model once at w (membrane traces, spikes, each spiking layer's
actual input after pooling, the readout's input, the logits) and, for T4, the exact
per-sample logit Jacobians J_i = dz(x_i)/dw (their C x C Gram matrices, from
C backward passes). :func:`measure` turns an observation into per-sample constants, each a
valid replacement of the worst-case constant it names:

- kappa_l, gam_l, sig1_l, sig2_l: max over the observed states of |g'|, |g''|, sig', |sig''|
  (the proofs use these derivatives at the states only; g' and g'' at u_0..u_{T-2});
- the unrolled recurrence of layer l: du_t = sum_{j<=t} P_{j->t} f_j with diagonal
  P_{j->t} = prod_{m=j}^{t-1} diag g'(u_m). Per neuron i it is a T x T lower-triangular
  matrix M_i (built from |g'|: exact where g' >= 0, an upper bound otherwise); K_l = max_t
  sum_j max_i M_i[t, j] (T4's time sum), ||M_l|| = max_i ||M_i|| and ||S_l|| = max_i
  ||diag(sig'_i) M_i|| (T3's recurrence and spike-recurrence norms);
- A_l = max_t ||a^l_t|| (the layer's actual input), the dense own-parameter Jacobian norm
  E_l = max_{t,i} ||sum_j M_i[t, j] (a_j, 1)||, J1_l = ||W^l diag(max_t sig'^{l-1})||,
  J2_l = ||W^l diag(max_t |sig''^{l-1}|)|| (dense, exact; W^l with its pooling folded in);
- T3's readout composite N = ||[W^o diag(c_j) W^D]_j||, c_{j,i} = (1/T) sum_{t>=j} sig'_{t,i} M_i[t, j]
  with M_i from the SIGNED g' (dense last layer; for D = 1 it is the exact input-Jacobian norm);
- for one dense spiking layer, T4's Z2 per neuron (:func:`one_layer_second_order`);
- the logit-Jacobian norm ||J_i||, the cross-entropy constants h_i = ||diag(p) - p p^T||,
  g_i = ||p - e_y|| and the Gauss-Newton norm ||J_i^T H_i J_i|| at the probe's logits.

On the rho-ball around w (T5) every state-dependent constant is taken as a sup over
[u - delta_l, u + delta_l] per element (``delta``), and every weight norm grows by rho.
"""

from __future__ import annotations

import dataclasses
import math
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from checks._memory import chunk_budget
from checks.constants import folded_dense_matrix
from sast.geometry import consumer, pools_before
from sast.model import SNN
from theory.scalar import g_derivative, g_derivative_sup_bound, sigmoid, sigmoid_derivative, sigmoid_derivative_sup

PAIR_CHUNK_BYTES = 32 * 2**20
"""Memory of one (pairs, T, T) float64 stack of per-neuron recurrence matrices: they are built for this many
(sample, neuron) pairs at once, whole samples at a time (a share of ``--max-memory`` where that is smaller;
a few such stacks are alive at once: M and its product with the input Gram, or the signed M of T3's c)."""


def _pair_chunk(n: int, T: int) -> int:
    """Samples whose n x T x T recurrence matrices fit :data:`PAIR_CHUNK_BYTES`; at least one."""
    return max(1, chunk_budget(PAIR_CHUNK_BYTES) // max(8 * T * T * n, 1))


@dataclass
class Observation:
    """One forward pass at w on the probe, in float64 numpy: per spiking layer u, s (B, T, n_l) and the input a (B, T, n_in)."""

    x: np.ndarray  # (B, T, *input_shape)
    u: list[np.ndarray]
    s: list[np.ndarray]
    inputs: list[np.ndarray]
    readout_in: np.ndarray
    logits: np.ndarray
    y: np.ndarray
    jz_gram: np.ndarray | None = None  # (B, C, C): J_i J_i^T, J_i = dz(x_i)/dw over every trainable parameter
    seconds: dict[str, float] = field(default_factory=dict)
    # what every measure() of this observation reads alike, whatever its delta (:func:`_at_states`)
    derived: dict[tuple[Any, ...], Any] = field(default_factory=dict, repr=False)



def _transition_blocks(g: np.ndarray, n: int, T: int) -> np.ndarray:
    """M[b, i, t, k] = prod_{k <= j < t} g[b, j, i] (1 on the diagonal, 0 above): how the state of neuron i at
    step k carries to step t through the recurrence's derivatives g (b samples, T steps, n neurons)."""
    M = np.zeros((g.shape[0], n, T, T))
    for t in range(T):
        if t > 0:
            M[:, :, t, :t] = M[:, :, t - 1, :t] * g[:, t - 1, :, None]
        M[:, :, t, t] = 1.0
    return M

def _time_sum(g: np.ndarray) -> np.ndarray:
    """K[b] = max_t sum_k max_i M[b, i, t, k] for :func:`_transition_blocks`' M of g (b, T, n), without forming M.

    Row t of every neuron's block is row t - 1 times g[:, t - 1] with a 1 appended on the diagonal,
    so the rows are carried one at a time: memory b x T x n instead of b x n x T x T. The rows are
    held as (b, k, i), neurons last, so that the max over neurons runs along contiguous memory.
    """
    B, T, n = g.shape
    K = np.zeros(B)
    row = np.zeros((B, T, n))
    for t in range(T):
        if t > 0:
            row[:, :t] *= g[:, t - 1, None, :]
        row[:, t] = 1.0
        K = np.maximum(K, row[:, :t + 1].max(axis=2).sum(axis=1))
    return K


def _plan_inputs(model: SNN, x: torch.Tensor, spikes: list[torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Each spiking layer's actual input (pooled, flattened: (B, T, n_in)) and the readout's, from the spikes."""
    B, T = x.shape[0], x.shape[1]
    a, inputs = x, []
    for spec in model.plan:
        if spec.kind == "pool":
            a = F.avg_pool2d(a.flatten(0, 1), spec.kernel).unflatten(0, (B, T))
        elif spec.kind == "flatten":
            a = a.flatten(2)
        else:
            inputs.append(a.flatten(2))
            a = spikes[spec.index]
    return inputs, a.flatten(2)


def logit_jacobian_grams(model: SNN, x: torch.Tensor, *, budget: int | None = None) -> np.ndarray:
    """Per sample J_i J_i^T (C x C, float64), J_i = dz(x_i)/dw over every trainable parameter (smooth mode).

    The probe runs in chunks of samples whose output gradients, patches and graph fit ``budget``
    bytes (default: as :func:`input_jacobian_grams`; :func:`_logit_chunk`): samples do not interact, so the
    result does not depend on the chunking (tested). How each chunk's Grams are formed:

    No Jacobian is formed: C backward passes (one per class k, of sum_i z_{ik}) give each
    sample's output gradients delta^k_{i,t} = dz_{ik}/dI_{i,t} at every layer's currents
    (samples do not interact), and a layer's share of <J_{ik}, J_{il}> is, for a dense layer
    with inputs a_t, sum_{t,s} (delta^k_t . delta^l_s)(a_t . a_s) plus the bias's
    (sum_t delta^k_t) . (sum_s delta^l_s); for a conv layer the per-sample kernel gradients
    sum_{t,p} delta_{t,p} patch_{t,p}^T (C_out x C_in k^2) are formed; the readout adds
    (||mean_t s_t||^2 + 1) I. Tested against ``torch.func.jacrev``.
    """
    per = _logit_chunk(model, x, chunk_budget(GRAM_CHUNK_BYTES) if budget is None else budget)
    return np.concatenate([_logit_grams(model, x[i:i + per]) for i in range(0, len(x), per)])


def _logit_chunk(model: SNN, x: torch.Tensor, budget: int) -> int:
    """Samples a chunk of :func:`logit_jacobian_grams` holds within ``budget`` bytes: its C output gradients of
    every layer (float32 and their float64 stack), each conv layer's patches (float64) and the graph (roughly
    four numbers per state, input and spike of every layer and step); at least one."""
    cfg, C = model.config, model.readout.weight.shape[0]
    T = cfg.T
    widths = sum(spec.width for spec in model.spiking_specs)
    patches = sum(model.layers[s.index].weight[0].numel() * (s.width // s.out_shape[0])
                  for s in model.spiking_specs if s.kind == "conv")
    per_sample = 12 * C * T * widths + 8 * T * patches + 16 * (T * widths + x[0].numel())
    return max(1, budget // max(per_sample, 1))


def _logit_grams(model: SNN, x: torch.Tensor) -> np.ndarray:
    """:func:`logit_jacobian_grams` of one chunk of samples."""
    specs = model.spiking_specs
    store: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    modules = [model.layers[s.index] for s in specs] + [model.readout]
    hooks = [mod.register_forward_hook(lambda _m, inp, out, j=j: store.__setitem__(j, (inp[0], out)))
             for j, mod in enumerate(modules)]
    try:
        with torch.enable_grad():
            z = model(x, mode="smooth", sparse_input=False)
    finally:
        for h in hooks:
            h.remove()
    B, C = z.shape
    outs = [store[j][1] for j in range(len(specs))]
    deltas: list[list[torch.Tensor]] = [[] for _ in specs]
    for k in range(C):
        grads = torch.autograd.grad(z[:, k].sum(), outs, retain_graph=k < C - 1, allow_unused=True)
        for l, g in enumerate(grads):
            deltas[l].append(torch.zeros_like(outs[l]) if g is None else g.detach())
    gram = torch.zeros(B, C, C, dtype=torch.float64)
    T = x.shape[1]
    for l, spec in enumerate(specs):
        mod = modules[l]
        inp = store[l][0].detach().double()
        Dk = torch.stack(deltas[l]).double()  # (C, B, T, n_out) dense; (C, B T, C_out, H, W) conv
        if spec.kind == "dense":
            if mod.weight.requires_grad:
                AA = inp @ inp.transpose(1, 2)  # (B, T, T)
                DD = torch.einsum("kbtn,lbsn->bklts", Dk, Dk)
                gram += torch.einsum("bklts,bts->bkl", DD, AA)
            Db = Dk.sum(dim=2)  # (C, B, n_out)
        else:
            Dk = Dk.reshape(C, B, T, Dk.shape[2], -1)  # (C, B, T, C_out, P)
            if mod.weight.requires_grad:
                patches = F.unfold(inp, spec.kernel, padding=spec.padding, stride=spec.stride)
                patches = patches.reshape(B, T, patches.shape[1], patches.shape[2])
                G = torch.einsum("kbtop,btip->kboi", Dk, patches)
                gram += torch.einsum("kboi,lboi->bkl", G, G)
            Db = Dk.sum(dim=(2, 4))
        if mod.bias is not None and mod.bias.requires_grad:
            gram += torch.einsum("kbn,lbn->bkl", Db, Db)
    ro_in = store[len(specs)][0].detach().double()  # (B, n_o): the time-mean spikes
    ro = model.readout
    eye = torch.eye(C, dtype=torch.float64)
    if ro.weight.requires_grad:
        gram += (ro_in * ro_in).sum(dim=1)[:, None, None] * eye
    if ro.bias is not None and ro.bias.requires_grad:
        gram += eye
    return gram.cpu().numpy()


GRAM_CHUNK_BYTES = 256 * 2**20
"""Memory for the rows of one chunk of :func:`input_jacobian_grams` (float64, C rows per sample and per Jacobian):
the probe is taken in chunks of samples that fit it, so its peak memory does not grow with the probe size."""


def _gram_chunk(model: SNN, x: torch.Tensor, layers: bool, budget: int) -> int:
    """How many samples a chunk of :func:`input_jacobian_grams` holds: their rows (C x every Jacobian's width,
    float64) and the retained graph (roughly four numbers per state, input and spike of every layer and step)
    within ``budget`` bytes; at least one."""
    C = model.readout.weight.shape[0]
    widths = [x[0].numel()] + ([model.config.T * spec.width for spec in model.spiking_specs[:-1]] if layers else [])
    states = model.config.T * sum(spec.width for spec in model.spiking_specs) + x[0].numel()
    per_sample = 8 * C * sum(widths) + 4 * 4 * states
    return max(1, budget // per_sample)


def input_jacobian_grams(model: SNN, x: torch.Tensor, *, layers: bool = False,
                         budget: int | None = None) -> np.ndarray | list[np.ndarray]:
    """Per sample J_i J_i^T (C x C, float64), J_i = dz(x_i)/dx_i over the whole input sequence (smooth mode; T3).

    C backward passes of sum_i z_{ik} give every sample's row k at once (samples do not interact
    in the model); the Gram of C rows is C x C, so ||J_i|| = sqrt(lambda_max(J_i J_i^T)) is exact up
    to the rounding of the backward pass, whatever the depth: T3's local certificate at the probe
    points without any proof factor. With ``layers``, the same passes also give the Grams of
    dz/ds^l for the spike sequences of layers l = 1..D-1: a list [x, s^1, .., s^{D-1}] of (B, C, C)
    stacks (the exact downstream norms of T3's per-layer budget). The probe runs in chunks of
    samples whose rows and graph fit ``budget`` bytes (:func:`_gram_chunk`; default: the share of
    ``--max-memory``, :func:`checks._memory.chunk_budget`, else :data:`GRAM_CHUNK_BYTES`; the result does
    not depend on it). Tested against ``torch.autograd.functional.jacobian``.
    """
    per = _gram_chunk(model, x, layers, chunk_budget(GRAM_CHUNK_BYTES) if budget is None else budget)
    chunks = [_grams(model, x[i:i + per], layers) for i in range(0, len(x), per)]
    grams = [np.concatenate([c[j] for c in chunks]) for j in range(len(chunks[0]))]
    return grams if layers else grams[0]


def _grams(model: SNN, x: torch.Tensor, layers: bool) -> list[np.ndarray]:
    """:func:`input_jacobian_grams` of one chunk of samples, always as the list [x, s^1, ..] (just [x] without layers)."""
    dtype = next(model.parameters()).dtype
    xs = x.detach().to(dtype).requires_grad_(True)
    with torch.enable_grad():
        z, trace = model(xs, mode="smooth", sparse_input=False, return_trace=True)
        wrt = [xs] + ([tr.s for tr in trace[:-1]] if layers else [])
        C = z.shape[1]
        rows: list[list[torch.Tensor]] = [[] for _ in wrt]
        for k in range(C):
            grads = torch.autograd.grad(z[:, k].sum(), wrt, retain_graph=k < C - 1, allow_unused=True)
            for j, g in enumerate(grads):
                rows[j].append(torch.zeros_like(wrt[j]).flatten(1).double() if g is None else g.flatten(1).double())
    grams = []
    for r in rows:
        J = torch.stack(r, dim=1)  # (B, C, n)
        grams.append((J @ J.transpose(1, 2)).cpu().numpy())
    return grams


def gram_norms(gram: np.ndarray) -> np.ndarray:
    """sqrt(lambda_max) of each C x C Gram of a (B, C, C) stack: the spectral norms of the Jacobians (exact, float64)."""
    return np.sqrt(np.maximum(np.linalg.eigvalsh(gram)[:, -1], 0.0))


_SHARED: dict[str, Any] | None = None
"""Inside :func:`sharing_observations`: the last observation with Jacobian Grams, its key and what it was made of."""


@contextmanager
def sharing_observations() -> Iterator[None]:
    """Within the block, :func:`observe` with ``jacobian=True`` hands back the last such observation where it
    was made of the same model, at the same parameters and buffers (same tensors, no in-place change since:
    their version counters), on the same probe tensors, in the same mode. ``checks.all`` runs its checks in
    one: T4's local bound and T5's on the rho-ball then read one forward pass, one set of logit-Jacobian Grams
    and the values :func:`measure` keeps on the observation. Outside, every call observes afresh and nothing is
    held. Blocks do not nest (an inner block would drop the outer one's observation on exit)."""
    global _SHARED
    _SHARED = {}
    try:
        yield
    finally:
        _SHARED = None


def release_shared() -> None:
    """Drop the observation :func:`sharing_observations` holds (the caller knows no later call will want it)."""
    if _SHARED is not None:
        _SHARED.clear()


def _share_key(model: SNN, x: torch.Tensor, y: torch.Tensor, mode: str) -> tuple[Any, ...]:
    tensors = [*model.parameters(), *model.buffers(), x, y]
    return (id(model), mode, tuple((id(t), t._version) for t in tensors))


@torch.no_grad()
def observe(model: SNN, x: torch.Tensor, y: torch.Tensor, *, mode: str = "smooth", jacobian: bool = True) -> Observation:
    """The forward pass at w on the probe (``mode``), and the logit-Jacobian Grams if ``jacobian`` (smooth mode).

    Inside :func:`sharing_observations` one observation with Grams serves every call at the same w and probe."""
    shared = _SHARED if jacobian else None
    key = None if shared is None else _share_key(model, x, y, mode)
    if shared is not None:
        if shared.get("key") == key:
            return shared["obs"]
        shared.clear()  # not held while the next one is made
    t0 = time.perf_counter()
    dtype = next(model.parameters()).dtype
    xs = x.detach().to(dtype)
    logits, trace = model(xs, mode=mode, return_trace=True)
    inputs, ro = _plan_inputs(model, xs, [tr.s for tr in trace])
    as_np = lambda t: t.detach().double().flatten(2).cpu().numpy()  # noqa: E731
    obs = Observation(x=xs.double().cpu().numpy(), u=[as_np(tr.u) for tr in trace], s=[as_np(tr.s) for tr in trace],
                      inputs=[as_np(a) for a in inputs], readout_in=as_np(ro),
                      logits=logits.double().cpu().numpy(), y=y.detach().cpu().numpy())
    obs.seconds["forward"] = time.perf_counter() - t0
    if jacobian:
        t0 = time.perf_counter()
        with torch.enable_grad():
            obs.jz_gram = logit_jacobian_grams(model, xs)
        obs.seconds["logit_jacobian"] = time.perf_counter() - t0
    if shared is not None:  # the tensors are held with it, so their ids cannot be reused while it is kept
        shared.update(key=key, obs=obs, made_of=(model, x, y))
    return obs


# ---------------------------------------------------------------------------
# elementwise sups over [u - delta, u + delta] (delta = 0: the values at the observed states)


def _sig1_sup(v: np.ndarray, beta: float, delta: float) -> np.ndarray:
    """sup of sig'(.) over [v - delta, v + delta]: sig' is even and peaks at 0, so at the point nearest 0."""
    return sigmoid_derivative(np.clip(0.0, v - delta, v + delta), 1, beta) if delta > 0 else sigmoid_derivative(v, 1, beta)


def _sig2_sup(v: np.ndarray, beta: float, delta: float) -> np.ndarray:
    """sup |sig''| over [v - delta, v + delta]: |sig''| is even, rises on [0, v*], falls after (v* = ln(2 + sqrt 3)/beta)."""
    f = lambda t: np.abs(sigmoid_derivative(t, 2, beta))  # noqa: E731
    if delta <= 0:
        return f(v)
    v_star = math.log(2.0 + math.sqrt(3.0)) / beta
    lo, hi = v - delta, v + delta
    peak = ((lo <= v_star) & (hi >= v_star)) | ((lo <= -v_star) & (hi >= -v_star))
    return np.where(peak, sigmoid_derivative_sup(2, beta), np.maximum(f(lo), f(hi)))


def _g_sup(u: np.ndarray, order: int, lam: Any, theta: Any, cfg: Any, delta: float,
           at: np.ndarray | None = None, u_max: float | None = None) -> np.ndarray:
    """|g^(order)(u)| + delta sup|g^(order+1)| (T1's closed form on |u| <= max|u| + delta): a sup over the interval.

    lam, theta: the layer's, numbers or per-neuron arrays (n_l,). The closed form of order >= 2 grows
    with lam (zero reset) and theta (subtract) and holds no other neuron parameter, so the layer's
    largest values bound it for every neuron. ``at`` and ``u_max`` may pass |g^(order)(u)| and max|u|
    computed before (:func:`_at_states`); ``at`` is returned itself where delta is 0 (never write to it).
    """
    if order < 1:
        raise ValueError("_g_sup needs order >= 1: the closed form of order 1 takes no max over neurons")
    val = np.abs(g_derivative(u, order, lam, theta, cfg.beta, cfg.reset)) if at is None else at
    if delta <= 0 or u.size == 0:
        return val
    B = (float(np.max(np.abs(u))) if u_max is None else u_max) + delta
    return val + delta * g_derivative_sup_bound(order + 1, float(np.max(lam)), float(np.max(theta)), cfg.beta,
                                                cfg.reset, B)


def _at_states(obs: Observation, l: int, what: Any, compute: Any) -> Any:
    """``compute()``, kept in ``obs.derived`` under (l, what): a value of layer l's observed states that every
    :func:`measure` of this observation reads alike (|g'| at the states, max|u|, min over t of |u - theta|),
    computed once (T5's search for delta measures the same observation up to nine times)."""
    key = (l, what)
    if key not in obs.derived:
        obs.derived[key] = compute()
    return obs.derived[key]


POWER_STEPS = 4
"""Power steps of :func:`_max_transition_norm`'s screening (more: tighter brackets, fewer exact solves)."""
SCREEN_MARGIN = 1e-6
"""Relative margin of the screening: a matrix is solved exactly unless its upper bound lies this far below the
best lower bound (rounding of the bounds cannot drop the maximiser)."""


def _carry(g: np.ndarray, v: np.ndarray) -> np.ndarray:
    """M_i v_i for every sample and neuron i at once, M_i neuron i's block of :func:`_transition_blocks` (g, v:
    (b, T, n)), without forming M: q_t = v_t + g_{t-1} q_{t-1}."""
    q = v.copy()
    for t in range(1, q.shape[1]):
        q[:, t] += g[:, t - 1] * q[:, t - 1]
    return q


def _carry_back(g: np.ndarray, z: np.ndarray) -> np.ndarray:
    """M_i^T z_i likewise (:func:`_carry`'s transpose): r_k = z_k + g_k r_{k+1}."""
    r = z.copy()
    for k in range(r.shape[1] - 2, -1, -1):
        r[:, k] += g[:, k] * r[:, k + 1]
    return r


def _max_transition_norm(g: np.ndarray, s: np.ndarray | None = None) -> np.ndarray:
    """max over neurons i of ||N_i||, N_i = M_i or diag(s_i) M_i (M_i: :func:`_transition_blocks` of g), per sample:
    (b,), exact. g, s: (b, T, n), entries >= 0.

    Equal to the maximum of every block's exact spectral norm (eigvalsh of N_i N_i^T), for a fraction of its
    cost: every A_i = N_i N_i^T (nonnegative, symmetric) gets a bracket lambda_max(A_i) in
    [v.A_i v / v.v, max_t (A_i v)_t / v_t] from a few power steps started at the all-ones vector (the
    Rayleigh quotient and the Collatz-Wielandt bound, which holds for nonnegative A and v > 0 on A's
    support; a zero row of A is a zero eigenvalue's and is left out). The products A_i v run through the
    recurrence itself (:func:`_carry`, :func:`_carry_back`: O(T) a neuron, no T x T block), and only the
    blocks whose upper bound reaches the best lower bound of their sample are formed and solved exactly
    (eigvalsh); the others cannot hold the maximum.
    """
    b, T, n = g.shape
    if b * n == 0:
        return np.zeros(b)

    def gram_apply(v: np.ndarray) -> np.ndarray:  # A v = N (N^T v)
        if s is None:
            return _carry(g, _carry_back(g, v))
        return s * _carry(g, _carry_back(g, s * v))

    v = np.ones((b, T, n))
    for _ in range(POWER_STEPS):
        w = gram_apply(v)
        top = w.max(axis=1, keepdims=True)
        v = np.where(top > 0, w / np.where(top > 0, top, 1.0), 0.0)
    Av = gram_apply(v)
    vv = (v * v).sum(axis=1)
    lower = np.where(vv > 0, (v * Av).sum(axis=1) / np.where(vv > 0, vv, 1.0), 0.0)  # (b, n)
    upper = np.where(v > 0, Av / np.where(v > 0, v, 1.0), 0.0).max(axis=1)
    best = lower.max(axis=1, keepdims=True)
    # best = 0: every A_i of the sample is 0 (a nonzero PSD A with entries >= 0 has v.Av > 0), its norm 0 without a solve
    rows, cols = np.nonzero((upper >= best * (1 - SCREEN_MARGIN)) & (best > 0))
    blocks = _transition_blocks(g[rows, :, cols][:, :, None], 1, T)[:, 0]  # (candidates, T, T)
    if s is not None:
        blocks *= s[rows, :, cols][:, :, None]  # row t scaled by s_t
    m = torch.from_numpy(blocks)  # torch: its batched products of small matrices beat numpy's several times
    exact = np.sqrt(np.maximum(np.linalg.eigvalsh((m @ m.transpose(-1, -2)).numpy())[..., -1], 0.0))
    out = np.zeros(b)
    np.maximum.at(out, rows, exact)
    return out


def _scaled_norms(W: np.ndarray, d: np.ndarray) -> np.ndarray:
    """||W diag(d_b)|| for each row d_b of d (B, n_in) (exact, float64)."""
    n_out, n_in = W.shape
    if n_out <= n_in:
        gram = (W[None] * (d * d)[:, None, :]) @ W.T
    else:
        gram = d[:, :, None] * (W.T @ W)[None] * d[:, None, :]
    return np.sqrt(np.maximum(np.linalg.eigvalsh(gram)[..., -1], 0.0))


@dataclass
class LayerConstants:
    """Per-sample measured constants of one spiking layer (arrays of shape (B,); None where not measured)."""

    kappa: np.ndarray
    gam: np.ndarray
    sig1: np.ndarray
    sig2: np.ndarray
    d1: np.ndarray  # (B, n): max_t sup sig' per neuron (J1 of the next layer, the readout)
    d2: np.ndarray  # (B, n): max_t sup |sig''| per neuron
    K: np.ndarray | None = None
    A: np.ndarray | None = None
    M_norm: np.ndarray | None = None
    S_norm: np.ndarray | None = None
    E: np.ndarray | None = None
    J1: np.ndarray | None = None
    J2: np.ndarray | None = None
    c: np.ndarray | None = None  # (B, T, n): T3's readout weights, last layer only


@dataclass
class Measured:
    """:func:`measure`'s result: per-layer constants and the readout's input (B, T, n_o) (upper bounds on the ball)."""

    layers: list[LayerConstants]
    readout_in: np.ndarray
    delta: list[float]
    rho: float
    # one-layer networks only (one_layer_second_order reads them; empty otherwise):
    sups: list[tuple[np.ndarray, ...]] = field(default_factory=list)  # per layer (|g'|, |g''|, sig', |sig''|) (B, T, n)
    inputs: list[np.ndarray] = field(default_factory=list)  # per layer the (upper bounds of the) inputs (B, T, n_in)


def _recurrence(gp: np.ndarray, sp: np.ndarray | None, gram: np.ndarray | None, *, norms: bool,
                g_signed: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per sample: K, and optionally ||M||, ||diag(sig') M||, E^2 (own-parameter Jacobian) and c (readout weights).

    gp, sp: (B, T, n) elementwise |g'| and sig' (sups; sp is read for the norms and c only); gram:
    (B, T, T) = a_j . a_k + 1 of the layer's input (dense own-parameter term), or None. K, the norms
    and E bound their signed counterparts (entrywise |M| >= |signed M|; a spectral norm, and a
    quadratic form with a nonnegative Gram, grow with the entries' absolute values). ``g_signed`` (B, T, n), the signed
    g' at the states, gives T3's readout weights c from the SIGNED transition blocks: c enters
    W^o diag(c_j) W^D between two signed matrices, where |c| would bound nothing (zero reset makes
    g' negative where u sig'(u - theta) beta > 1 - sig(u - theta)).
    """
    B, T, n = gp.shape
    K = _time_sum(gp)
    Mn = _max_transition_norm(gp) if norms else np.zeros(B)  # M and S are entrywise >= 0 (|g'| and sig' sups)
    Sn = _max_transition_norm(gp, sp) if norms else np.zeros(B)
    E2 = np.zeros(B)
    c = np.zeros((B, T, n)) if g_signed is not None else None
    per = _pair_chunk(n, T)
    for b0 in range(0, B, per):  # the formed blocks: E and c only (neither: nothing to do)
        g_, s_ = gp[b0:b0 + per], None if sp is None else sp[b0:b0 + per]
        b = g_.shape[0]
        if gram is not None:  # row t of M_i against (a_j . a_k + 1): ||sum_j M_i[t, j] (a_j, 1)||^2
            M = _transition_blocks(g_, n, T)
            E2[b0:b0 + b] = ((M @ gram[b0:b0 + b, None]) * M).sum(axis=3).max(axis=(1, 2))
            del M
        if c is not None:
            Ms = _transition_blocks(g_signed[b0:b0 + per], n, T)
            c[b0:b0 + b] = (np.swapaxes(s_, 1, 2)[:, :, None, :] @ Ms)[:, :, 0, :].transpose(0, 2, 1) / T
    return {"K": K, "M_norm": Mn, "S_norm": Sn, "E2": E2, "c": c}


def measure(model: SNN, obs: Observation, *, delta: list[float] | None = None, rho: float = 0.0,
            norms: bool = True, caps: list[tuple[float, float]] | None = None, second_order: bool = True) -> Measured:
    """Per layer the measured constants of :class:`LayerConstants` (see the module docstring).

    ``delta`` (per layer, default 0): states of w' lie within delta_l of those at w, elementwise;
    ``rho``: weights of w' lie within rho of w (J grows by rho max d). With delta > 0 T3's norms
    (which need the states themselves) are not measured; the dense own-parameter term E is, from
    the elementwise sups and the inputs' upper bounds (every a_j . a_k + 1 is >= 0, so the bound
    sum_{j,k} |P_j| |P_k| (a_j . a_k + 1) grows with each factor).
    ``caps`` (per layer (kappa_l, gam_l) of A4 on T2's interval, which holds every state of
    every w' the caller considers) caps the sups of |g'| and |g''|. ``second_order=False`` leaves
    the dense layers' J2 unmeasured (None: the chain then takes its worst case) and takes |g''| and
    |sig''| at T1's closed forms, for callers that need first-order quantities only (T5's search for
    delta reads U1, which neither enters). Values of the states that do not depend on delta are
    computed once per observation (``obs.derived``); each layer's elementwise sups are reduced
    before the next layer's are made, so the peak memory holds one layer's. The work runs in chunks of
    samples, side by side on torch's intra-op thread count (:func:`_each_chunk`), which share the chunk budget.
    """
    D = len(model.spiking_specs)
    delta = [0.0] * D if delta is None else [float(d) for d in delta]
    # max|u| over the whole probe: T1's closed form on the ball holds for every sample with one bound
    u_max = [_at_states(obs, l, "max|u|", lambda u=obs.u[l]: float(np.max(np.abs(u))) if u.size else 0.0)
             for l in range(D)]
    neuron = [model.neuron_numpy(l, flat=True) for l in range(D)]  # per layer (lam, theta): numbers or (n_l,)
    # each dense layer after the first: W^l with its pooling folded in (its J1, J2)
    folded = [folded_dense_matrix(model.layers[spec.index].weight, pools_before(model.plan, spec)).numpy()
              if l > 0 and spec.kind == "dense" else None for l, spec in enumerate(model.spiking_specs)]
    B = len(obs.u[0]) if D else 0
    workers = max(1, min(torch.get_num_threads(), B))
    per = _measure_chunk(model, chunk_budget(MEASURE_CHUNK_BYTES) // workers)  # the workers share the budget
    parts = _each_chunk(lambda sl: _measure_samples(model, obs, sl, delta, rho, norms, caps, second_order, u_max,
                                                    neuron, folded),
                        [slice(b0, min(B, b0 + per)) for b0 in range(0, B, per)], workers)
    layers = [LayerConstants(**{f.name: _stack([getattr(p[0][l], f.name) for p in parts])
                                for f in dataclasses.fields(LayerConstants)}) for l in range(D)]
    sups = [tuple(np.concatenate([p[2][l][k] for p in parts]) for k in range(4)) for l in range(len(parts[0][2]))]
    inputs = [np.concatenate([p[3][l] for p in parts]) for l in range(len(parts[0][3]))]
    return Measured(layers, np.concatenate([p[1] for p in parts]), delta, float(rho), sups, inputs)


MEASURE_CHUNK_BYTES = 128 * 2**20
"""Memory for the elementwise work of one chunk of samples of :func:`measure` (its chunk is a share of
``--max-memory`` where that is smaller, ``checks._memory.chunk_budget``); the result does not depend on it."""


def _measure_chunk(model: SNN, budget: int) -> int:
    """Samples a chunk of :func:`measure` holds within ``budget`` bytes: on the ball the spikes' upper bounds and
    inputs of every layer, and about a dozen float64 arrays (sups, their temporaries) of the widest layer;
    at least one."""
    widths = [spec.width for spec in model.spiking_specs]
    per_sample = 8 * model.config.T * (2 * sum(widths) + 12 * max(widths, default=1))
    return max(1, budget // max(per_sample, 1))


def _each_chunk(fn: Callable[[slice], Any], chunks: list[slice], workers: int) -> list[Any]:
    """[fn(c) for c in chunks], on up to ``workers`` threads (torch's intra-op thread count: what the user allows).

    :func:`measure`'s work is numpy's elementwise arithmetic and single-threaded LAPACK, which release the GIL but use
    one core each: its chunks of samples are independent, so they run side by side, each as it would alone (torch's
    own ops in them on one thread, restored after). The results, and their order, are those of the plain loop."""
    workers = min(workers, len(chunks))
    if workers <= 1:
        return [fn(c) for c in chunks]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(workers, thread_name_prefix="measure") as pool:
            return list(pool.map(fn, chunks))
    finally:
        torch.set_num_threads(threads)


def _stack(values: list[Any]) -> Any:
    return None if values[0] is None else np.concatenate(values)


def _measure_samples(model: SNN, obs: Observation, sl: slice, delta: list[float], rho: float, norms: bool,
                     caps: list[tuple[float, float]] | None, second_order: bool, u_max: list[float],
                     neuron: list[tuple[Any, Any]], folded: list[np.ndarray | None]
                     ) -> tuple[list[LayerConstants], np.ndarray, list[tuple[np.ndarray, ...]], list[np.ndarray]]:
    """:func:`measure` on the samples ``sl`` of the observation: (per-layer constants, readout input, sups, inputs).

    ``u_max``, ``neuron`` and ``folded``: what :func:`measure` reads once for every chunk (max|u| over the
    probe, (lam, theta), the folded dense matrices)."""
    cfg = model.config
    specs = model.spiking_specs
    D = len(specs)
    at_w = all(d == 0 for d in delta)
    keep = D == 1  # one_layer_second_order reads the elementwise sups and inputs (of a one-layer network only)
    if at_w:  # the actual inputs; on the ball, pooled upper bounds of the spikes (nonnegative: norms are monotone)
        inputs, ro = [a[sl] for a in obs.inputs], obs.readout_in[sl]
    else:
        spikes_up = [obs.s[l][sl] if delta[l] == 0 else sigmoid(obs.u[l][sl] - neuron[l][1] + delta[l], cfg.beta)
                     for l in range(D)]
        shaped = [torch.from_numpy(s).reshape(s.shape[0], s.shape[1], *spec.out_shape) for s, spec in zip(spikes_up, specs)]
        del spikes_up
        ins, ro_t = _plan_inputs(model, torch.from_numpy(obs.x[sl]), shaped)
        inputs, ro = [t.numpy() for t in ins], ro_t.numpy()
        del shaped, ins
    layers: list[LayerConstants] = []
    sups = []
    # one layer at a time: its (b, T, n_l) sups are reduced to per-sample constants before the next layer's are made
    for l, spec in enumerate(specs):
        u, dl = obs.u[l][sl], delta[l]
        B = len(u)
        lam, theta = neuron[l]
        g1 = _at_states(obs, l, ("|g'|", sl.start, sl.stop),
                        lambda: np.abs(g_derivative(u, 1, lam, theta, cfg.beta, cfg.reset)))
        gp = _g_sup(u, 1, lam, theta, cfg, dl, at=g1, u_max=u_max[l])
        v = u - theta
        if keep or (at_w and (norms or l == D - 1)):  # sig' at every state: T3's S-norms, the readout weights c
            sp = _sig1_sup(v, cfg.beta, dl)
            d1 = sp.max(axis=1)
        else:  # only its max over t: sig' is even and falls with |v|, so it peaks at min_t |v_t| less delta
            near = _at_states(obs, l, ("min_t|v|", sl.start, sl.stop), lambda: np.abs(v).min(axis=1))
            sp, d1 = None, sigmoid_derivative(np.maximum(near - dl, 0.0), 1, cfg.beta)
        if second_order:
            gpp = _g_sup(u, 2, lam, theta, cfg, dl, u_max=u_max[l])
            spp = _sig2_sup(v, cfg.beta, dl)
            if caps is not None:
                gpp = np.minimum(gpp, caps[l][1])
        else:  # not measured: T1's closed forms on |u| <= max|u| + delta, upper bounds at every state
            top = g_derivative_sup_bound(2, float(np.max(lam)), float(np.max(theta)), cfg.beta, cfg.reset,
                                         u_max[l] + dl)
            gpp = np.broadcast_to(top if caps is None else min(top, caps[l][1]), u.shape)
            spp = np.broadcast_to(sigmoid_derivative_sup(2, cfg.beta), u.shape)
        if caps is not None:
            gp = np.minimum(gp, caps[l][0])
        # the proofs use g'(u_{t-1}) and g''(u_{t-1}): the states u_0 .. u_{T-2} (none when T = 1)
        prior, prior2 = gp[:, :-1], gpp[:, :-1]
        lc = LayerConstants(
            kappa=prior.max(axis=(1, 2)) if prior.size else np.zeros(B),
            gam=prior2.max(axis=(1, 2)) if prior2.size else np.zeros(B),
            sig1=d1.max(axis=1), sig2=spp.max(axis=(1, 2)), d1=d1, d2=spp.max(axis=1))
        layers.append(lc)
        a = inputs[l]
        lc.A = np.linalg.norm(a, axis=2).max(axis=1)
        gram = np.einsum("btk,bsk->bts", a, a) + 1.0 if spec.kind == "dense" else None
        signed = g_derivative(u, 1, lam, theta, cfg.beta, cfg.reset) if at_w and l == D - 1 else None
        rec = _recurrence(gp, sp, gram, norms=norms and at_w, g_signed=signed)
        lc.K, lc.c = rec["K"], rec["c"]
        if norms and at_w:
            lc.M_norm, lc.S_norm = rec["M_norm"], rec["S_norm"]
        if gram is not None:
            lc.E = np.sqrt(rec["E2"])
        W = folded[l]
        if W is not None:
            prev = layers[l - 1]
            lc.J1 = _scaled_norms(W, prev.d1) + rho * prev.d1.max(axis=1)
            lc.J2 = _scaled_norms(W, prev.d2) + rho * prev.d2.max(axis=1) if second_order else None
        if keep:
            sups.append((gp, gpp, sp, spp))
        del gp, gpp, sp, spp, prior, prior2, gram, signed, rec
    return layers, ro, sups, list(inputs) if keep else []


def readout_weight(model: SNN) -> np.ndarray:
    """W^o with the pooling before the readout folded in (C x n_D, float64)."""
    _, tail = consumer(model.plan, model.spiking_specs[-1])
    return folded_dense_matrix(model.readout.weight, tail).numpy()


def readout_constants(model: SNN, m: Measured) -> dict[str, np.ndarray]:
    """own_o = sqrt(max_t ||s^D_t||^2 + 1), J1_o = ||W^o diag(max_t sig'^D)||, J2_o likewise with |sig''| (+ rho on the ball)."""
    last, ro, rho = m.layers[-1], m.readout_in, m.rho
    Wo = readout_weight(model)
    return {"own_o": np.sqrt(np.linalg.norm(ro, axis=2).max(axis=1) ** 2 + 1.0),
            "J1_o": _scaled_norms(Wo, last.d1) + rho * last.d1.max(axis=1),
            "J2_o": _scaled_norms(Wo, last.d2) + rho * last.d2.max(axis=1)}


def readout_composite(model: SNN, m: Measured) -> np.ndarray | None:
    """T3's N_b = ||[W^o diag(c_bj) W^D]_j|| per sample (dense last layer at w; None otherwise)."""
    spec, last = model.spiking_specs[-1], m.layers[-1]
    if spec.kind != "dense" or last.c is None:
        return None
    WD = folded_dense_matrix(model.layers[spec.index].weight, pools_before(model.plan, spec)).numpy()
    Wo = readout_weight(model)
    G = WD @ WD.T
    A = Wo[None, None] * last.c[:, :, None, :]  # (B, T, C, n_D): W^o diag(c_j)
    gram = np.einsum("btcn,btdn->bcd", A @ G, A)
    return np.sqrt(np.maximum(np.linalg.eigvalsh(gram)[:, -1], 0.0))


def one_layer_second_order(model: SNN, m: Measured) -> dict[str, np.ndarray] | None:
    """T4's Z2 for a network with ONE dense spiking layer, per neuron (None for any other network).

    Each neuron i has its own weight row and bias, so along a unit direction V (its layer part
    V_i with w_i = ||(V_i, v_i)||^2, sum_i w_i <= nu_1^2, readout part of norm nu_o):
    u'_{t,i} = V_i . c_{t,i} with c_{t,i} = sum_j M_i[t, j] (a_j, 1), hence
    |u'_{t,i}|^2 <= w_i C_{t,i}^2, |u''_{t,i}| <= w_i Q_{t,i}, Q_{t,i} = sum_{j>=1} M_i[t, j] |g''(u_{j-1,i})| C_{j-1,i}^2,
    |s''_{t,i}| <= w_i R_{t,i}, R = |sig''| C^2 + sig' Q, and z'' = 2 V^o sbar' + W^o mean_t s''_t gives
    ||z''|| <= 2 nu_o nu_1 S + nu_1^2 Z2own with Z2own = max_i ||W^o_{:,i}|| mean_t R_{t,i} (the w_i lie on a
    simplex) and S = max_i ||sum_j cbar_{j,i} (a_j, 1)||, cbar the time-mean spike weights of T3; the
    max over nu_o^2 + nu_1^2 <= 1 is (Z2own + sqrt(Z2own^2 + 4 S^2)) / 2. Compare THEORY.md's
    2 S1_D + R_o S2_D, which takes every factor at its own worst neuron, time and direction.
    From ``measure``'s elementwise sups (so valid on the rho-ball too, where W^o's columns grow by rho).
    """
    specs = model.spiking_specs
    if len(specs) != 1 or specs[0].kind != "dense":
        return None
    gp, gpp, sp, spp = m.sups[0]
    a = m.inputs[0]
    B, T, n = gp.shape
    col = np.linalg.norm(readout_weight(model), axis=0) + m.rho  # ||W^o_{:,i}|| (+ rho on the ball)
    gram = np.einsum("btk,bsk->bts", a, a) + 1.0
    Z2own, S = np.zeros(B), np.zeros(B)
    per = _pair_chunk(n, T)
    for b0 in range(0, B, per):
        sl = slice(b0, b0 + per)
        g_, s1, s2, gg = gp[sl], sp[sl].transpose(0, 2, 1), spp[sl].transpose(0, 2, 1), gpp[sl].transpose(0, 2, 1)
        b = g_.shape[0]
        M = _transition_blocks(g_, n, T)
        C2 = ((M @ gram[sl, None]) * M).sum(axis=3)  # (b, n, T): ||c_{t,i}||^2
        drive = np.zeros((b, n, T))
        drive[:, :, 1:] = gg[:, :, :-1] * C2[:, :, :-1]
        Q = (M @ drive[..., None])[..., 0]
        R = s2 * C2 + s1 * Q
        Z2own[sl] = (col[None, :] * R.mean(axis=2)).max(axis=1)
        cbar = (s1[:, :, None, :] @ M)[:, :, 0, :] / T  # (b, n, T): sum_t sig'_{t,i} M_i[t, j] / T
        S[sl] = np.sqrt((((cbar[:, :, None, :] @ gram[sl, None])[:, :, 0, :]) * cbar).sum(axis=2).max(axis=1))
    return {"Z2": (Z2own + np.sqrt(Z2own ** 2 + 4.0 * S ** 2)) / 2.0, "Z2own": Z2own, "S": S}


def loss_constants(obs: Observation) -> dict[str, np.ndarray]:
    """Per sample at the probe's logits: h = ||diag(p) - p p^T||, g = ||p - e_y||, ||J|| and the Gauss-Newton ||J^T H J||."""
    z = obs.logits - obs.logits.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    H = np.einsum("bc,cd->bcd", p, np.eye(p.shape[1])) - p[:, :, None] * p[:, None, :]
    w, V = np.linalg.eigh(H)
    out = {"h": np.maximum(w[:, -1], 0.0), "g": np.linalg.norm(p - np.eye(p.shape[1])[obs.y], axis=1)}
    if obs.jz_gram is not None:
        Hh = np.einsum("bck,bk,bdk->bcd", V, np.sqrt(np.maximum(w, 0.0)), V)  # H^{1/2}
        out["Z1"] = gram_norms(obs.jz_gram)
        out["GN"] = np.maximum(np.linalg.eigvalsh(Hh @ obs.jz_gram @ Hh)[:, -1], 0.0)
    return out
