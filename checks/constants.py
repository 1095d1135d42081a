"""The constants of THEORY.md (A1-A3, T4's conv geometry) read off a torch SNN.

``model_constants(model, x)`` returns :class:`theory.ModelConstants`:

- R_l = ||W^l||, the operator 2-norm of layer l with the average pooling before it
  folded in. Dense layers: exact (largest eigenvalue of the float64 Gram matrix). Conv layers: a rigorous
  upper bound, never a power-iteration estimate: Singla and Feizi's reshaped-kernel
  bound ("Fantastic Four", ICLR 2021), ||conv|| <= sqrt(h w) min_i ||R_i|| over the four
  reshapings of the kernel, which holds for circular padding and so for zero padding
  (a zero-padded conv is a restriction of a circular one on a larger grid) and for
  strides (a subsampling); times ||P|| = 1/k for each k x k average pooling before it.
- ||W^l||_inf exactly (largest absolute row sum of the folded dense matrix; for a conv
  the largest, over output channels, sum of absolute kernel weights, as THEORY.md
  defines it: pooling before a conv keeps it, since the taps land in disjoint blocks);
  ||b^l||_inf and ||b^l|| (a conv bias is broadcast over the P_l positions);
- R_o = ||W^o|| exactly; A = max_t ||x_t|| and X_inf = max x over the probe batch x;
- m_l (m_l^2: the largest number of output positions whose receptive field holds one
  input element, counted exactly by :func:`sast.geometry.receptive_overlap`) and P_l
  (output positions) for conv layers.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F

from sast.geometry import consumer, pools_before, receptive_overlap
from sast.model import SNN, LayerSpec
from theory import ModelConstants


def _unpool_rows(w: torch.Tensor, shape_after: tuple[int, ...], k: int, shape_before: tuple[int, ...]) -> torch.Tensor:
    """Rows of W (n_out, prod(shape_after)) mapped to rows of W P (n_out, prod(shape_before)), P = avgpool(k).

    P^T spreads each pooled value over its k x k block with weight 1/k^2; positions
    cropped by the pooling (sizes not divisible by k) get zero.
    """
    c, h, wd = shape_after
    rows = w.reshape(-1, c, h, wd).repeat_interleave(k, dim=2).repeat_interleave(k, dim=3) / (k * k)
    out = torch.zeros(w.shape[0], *shape_before, dtype=w.dtype)
    out[:, :, : h * k, : wd * k] = rows
    return out.reshape(w.shape[0], -1)


def spectral_norm(w: torch.Tensor) -> float:
    """||W||_2 (float64): sqrt of the largest eigenvalue of the smaller Gram matrix W W^T or W^T W.

    As exact as an SVD for the largest singular value (the Gram matrix is formed in float64,
    whose rounding, ~1e-16 ||W||^2, is far below what any check resolves) and about 20x faster
    on a 256 x 2312 layer, which matters for the live monitor.
    """
    w = w.detach().double()
    gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
    return math.sqrt(max(torch.linalg.eigvalsh(gram)[-1].item(), 0.0))


def folded_dense_matrix(weight: torch.Tensor, pools: list[LayerSpec]) -> torch.Tensor:
    """The dense matrix W P_1 ... P_j (float64) of a dense layer with average pooling before it."""
    w = weight.detach().double().cpu()
    for pool in reversed(pools):
        w = _unpool_rows(w, pool.out_shape, pool.kernel, pool.in_shape)
    return w


def conv_norm_bound(kernel: torch.Tensor) -> float:
    """Singla and Feizi's bound on the 2-norm of a conv with ``kernel`` (c_o, c_i, h, w).

    ||conv|| <= sqrt(h w) min(||R1||, ||R2||, ||R3||, ||R4||), with R1 (c_o h x c_i w),
    R2 (c_o w x c_i h), R3 (c_o x c_i h w), R4 (c_o h w x c_i) the kernel's reshapings.
    """
    k = kernel.detach().double().cpu()
    co, ci, h, w = k.shape
    r1 = k.permute(0, 2, 1, 3).reshape(co * h, ci * w)
    r2 = k.permute(0, 3, 1, 2).reshape(co * w, ci * h)
    r3 = k.reshape(co, ci * h * w)
    r4 = k.permute(0, 2, 3, 1).reshape(co * h * w, ci)
    norms = [torch.linalg.matrix_norm(r, ord=2).item() for r in (r1, r2, r3, r4)]
    return math.sqrt(h * w) * min(norms)


def model_constants(model: SNN, x: torch.Tensor, mode: str = "smooth") -> ModelConstants:
    """A1-A3 and T4's geometry for ``model``, with A and X_inf from the probe batch ``x`` (B, T, ...)."""
    cfg = model.config
    expected = (cfg.T, *cfg.input_shape)
    if x.dim() != 2 + len(cfg.input_shape) or tuple(x.shape[1:]) != expected:
        raise ValueError(f"probe batch must have shape (B, {', '.join(map(str, expected))}), got {tuple(x.shape)}")
    if x.numel() and float(x.min()) < 0:
        raise ValueError("probe inputs must be >= 0 (assumption A2: entries in [0, X_inf])")
    xd = x.detach().double().cpu()
    A = float(xd.flatten(2).norm(dim=2).max()) if xd.numel() else 0.0
    X_inf = float(xd.max()) if xd.numel() else 0.0
    R, R_inf, b_inf, b_norm, n, kinds, m, P = [], [], [], [], [], [], [], []
    for spec in model.spiking_specs:
        layer = model.layers[spec.index]
        pools = pools_before(model.plan, spec)
        bias = layer.bias.detach().double().cpu() if layer.bias is not None else torch.zeros(spec.size, dtype=torch.float64)
        n.append(spec.width)
        if spec.kind == "dense":
            w = folded_dense_matrix(layer.weight, pools)
            R.append(spectral_norm(w))
            R_inf.append(w.abs().sum(dim=1).max().item())
            b_inf.append(bias.abs().max().item())
            b_norm.append(bias.norm().item())
            kinds.append("dense")
            m.append(1.0)
            P.append(1)
        else:
            pool_norm = math.prod(1.0 / p.kernel for p in pools)  # ||avgpool(k)|| = 1/k
            R.append(conv_norm_bound(layer.weight) * pool_norm)
            R_inf.append(layer.weight.detach().double().abs().sum(dim=(1, 2, 3)).max().item())
            positions = spec.out_shape[1] * spec.out_shape[2]
            b_inf.append(bias.abs().max().item())
            b_norm.append(bias.norm().item() * math.sqrt(positions))
            _, h_in, w_in = spec.in_shape
            mh = receptive_overlap(h_in, spec.kernel, spec.stride, spec.padding)
            mw = receptive_overlap(w_in, spec.kernel, spec.stride, spec.padding)
            kinds.append("conv")
            m.append(math.sqrt(mh * mw))
            P.append(positions)
    _, tail_pools = consumer(model.plan, model.spiking_specs[-1])  # the readout's pools
    R_o = spectral_norm(folded_dense_matrix(model.readout.weight, tail_pools))
    pairs = cfg.neuron_pairs()  # per layer the distinct (lam, theta) of its neurons
    per_layer = not (isinstance(cfg.lam, float) and isinstance(cfg.theta, float))
    return ModelConstants(
        lam=tuple(max(a for a, _ in p) for p in pairs) if per_layer else cfg.lam,
        theta=tuple(max(b for _, b in p) for p in pairs) if per_layer else cfg.theta,
        neurons=tuple(tuple(p) for p in pairs) if any(len(p) > 1 for p in pairs) else None,
        beta=cfg.beta, reset=cfg.reset, T=cfg.T, n=tuple(n),
        n_0=math.prod(cfg.input_shape), R=tuple(R), R_inf=tuple(R_inf), b_inf=tuple(b_inf), b_norm=tuple(b_norm),
        R_o=R_o, A=A, X_inf=X_inf, kinds=tuple(kinds), m=tuple(m), P=tuple(P), mode=mode,
    )


def exact_conv_matrix(spec: LayerSpec, weight: torch.Tensor) -> torch.Tensor:
    """The dense matrix of a conv layer without bias (float64), for tests on tiny shapes."""
    n_in = math.prod(spec.in_shape)
    eye = torch.eye(n_in, dtype=torch.float64).reshape(n_in, *spec.in_shape)
    out = F.conv2d(eye, weight.detach().double().cpu(), stride=spec.stride, padding=spec.padding)
    return out.reshape(n_in, -1).T


def ball_constants(model: SNN, c: ModelConstants, rho: float) -> ModelConstants:
    """A3 on the ball ||w' - w|| <= rho around the model's weights (THEORY.md A3: "... plus rho").

    Every norm of ``c`` (the constants at w) enlarged by what a parameter perturbation E
    of norm at most rho can add, so that T4's L computed from the result bounds the
    Hessian at every w + eps of the ball, as T5's Taylor arguments need:

    - dense (n_in inputs after pooling): ||W + E|| <= R + rho (pooling has norm <= 1),
      ||W + E||_inf <= R_inf + sqrt(n_in) rho (a row's l1 norm is at most sqrt(n_in) times
      its l2 norm), ||b + e||_inf <= b_inf + rho, ||b + e|| <= r + rho;
    - conv (kernel c_o x c_i x k x k): each reshaped kernel's norm grows by at most
      ||E||_F <= rho, so the reshaped-kernel bound grows by sqrt(k^2) rho (times the
      pooling norm); R_inf by sqrt(c_i k^2) rho; the broadcast bias norm by sqrt(P) rho;
    - readout: R_o + rho.
    """
    if not (rho >= 0 and math.isfinite(rho)):
        raise ValueError(f"rho must be a finite number >= 0, got {rho}")
    R, R_inf, b_inf, b_norm = list(c.R), list(c.R_inf), list(c.b_inf), list(c.b_norm)
    for l, spec in enumerate(model.spiking_specs):
        if spec.kind == "dense":
            R[l] += rho
            R_inf[l] += math.sqrt(math.prod(spec.in_shape)) * rho
            b_norm[l] += rho
        else:
            pool_norm = math.prod(1.0 / p.kernel for p in pools_before(model.plan, spec))
            R[l] += spec.kernel * rho * pool_norm
            R_inf[l] += math.sqrt(spec.in_shape[0] * spec.kernel ** 2) * rho
            b_norm[l] += math.sqrt(spec.out_shape[1] * spec.out_shape[2]) * rho
        b_inf[l] += rho
    return dataclasses.replace(c, R=tuple(R), R_inf=tuple(R_inf), b_inf=tuple(b_inf), b_norm=tuple(b_norm),
                               R_o=c.R_o + rho)
