/* Compiled loops of the fast path (sast/_fast.py holds the same formulas as torch ops, with their
 * derivations): the LIF recurrence of THEORY.md fused into one pass over (B, T, N) for the forward,
 * the adjoint (first-order backward) and the adjoint's own backward (what double-backward
 * Hessian-vector products run); and average pooling of the spikes with its adjoint.
 *
 * Layout: row-major (B, T, N), N the neurons of one sample at one step. Every function handles the
 * samples [b0, b1) (frames [m0, m1) for pooling) on nth threads; each element's arithmetic never
 * depends on the split, on the vector width or on alignment (see exp_f32:
 * no libm, no contraction), so results are the same bit for bit however the work is cut. lam and
 * theta are per-neuron arrays of N (a shared value repeated). mode: 0 smooth (s = sig(beta (u -
 * theta))), 1 hard and 2 HFSB (s = H(u - theta); HFSB's backward uses sig_beta'). reset: 0 zero,
 * 1 subtract.
 *
 * The loops are in lif_impl.h and pool_impl.h, included once per dtype. sast/native/_build.py
 * compiles this file at first use, with -ffp-contract=off and without -ffast-math.
 */
#include <stdint.h>
#include <string.h>

/* exp(x) in +, -, *, / and integer bit operations only, so that a vectorised loop and its scalar
 * remainder compute the same bits. Cody-Waite reduction x = n ln2 + r, |r| <= ln2 / 2, a Taylor
 * polynomial for exp(r) (truncation below 1e-8 in float, 1e-17 in double) and 2^n built in the
 * exponent bits. Above 88 (float) or 709 (double) exp is inf, as torch's overflows (a sigmoid of the
 * other sign is then exactly 0); below -87 (-708) it stays at e^-87 (e^-708), where 1 + exp is
 * exactly 1 (a sigmoid is then exactly 1). NaN passes through. */
static inline float exp_f32(float x) {
    float big = x > 88.0f ? __builtin_inff() : 0.0f; /* overflow: inf, as torch's exp (a sigmoid then 0) */
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    const float magic = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer in the low bits */
    float t = x * 1.44269504088896341f + magic;
    float n = t - magic;
    float r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t tb, mb;
    memcpy(&tb, &t, 4);
    memcpy(&mb, &magic, 4);
    int32_t e = (tb - mb + 127) << 23;
    float scale;
    memcpy(&scale, &e, 4);
    return big > 0.0f ? big : p * scale;
}

static inline double exp_f64(double x) {
    double big = x > 709.0 ? __builtin_inf() : 0.0;
    x = x < -708.0 ? -708.0 : x;
    x = x > 709.0 ? 709.0 : x;
    const double magic = 6755399441055744.0; /* 1.5 * 2^52 */
    double t = x * 1.4426950408889634074 + magic;
    double n = t - magic;
    double r = (x - n * 6.93145751953125e-1) - n * 1.42860682030941723212e-6;
    double p = 1.0 / 6227020800.0; /* 1/13! */
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    int64_t tb, mb;
    memcpy(&tb, &t, 8);
    memcpy(&mb, &magic, 8);
    int64_t e = (tb - mb + 1023) << 52;
    double scale;
    memcpy(&scale, &e, 8);
    return big > 0.0 ? big : p * scale;
}

/* The samples (frames) of one call, over nth threads of OpenMP: the runtime torch itself runs on where the
 * library is loaded into a process that has loaded torch (one libgomp.so.1), so the loops never compete
 * with torch's idle threads for the cores. Without OpenMP the caller splits the samples over threads. */
#ifdef _OPENMP
#define PARALLEL_FOR _Pragma("omp parallel for num_threads(nth) schedule(static) if(nth > 1)")
#else
#define PARALLEL_FOR (void)nth;
#endif

int sast_openmp(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

#define CAT2(a, b) a##_##b
#define CAT(a, b) CAT2(a, b)
#define FN(name) CAT(name, SUF)
#define AIN static inline __attribute__((always_inline))

#define T float
#define SUF f32
#define EXP exp_f32
#include "lif_impl.h"
#include "pool_impl.h"
#undef T
#undef SUF
#undef EXP

#define T double
#define SUF f64
#define EXP exp_f64
#include "lif_impl.h"
#include "pool_impl.h"
