/* The LIF loops for one dtype T (kernels.c includes this once for float, once for double). Each row
 * function handles one time step of one sample, over its n neurons; its int arguments are constants
 * at every call site, so after inlining each variant is a branch-free loop that the compiler
 * vectorises. */

/* exp of the sigmoid's loops, exported for the accuracy test */
void FN(sast_exp)(const T *restrict x, T *restrict y, int64_t n) {
    for (int64_t j = 0; j < n; j++) y[j] = EXP(x[j]);
}

/* u_0 = I_0; u_t = lam u_{t-1} (1 - s_{t-1}) + I_t (zero) or lam u_{t-1} - theta s_{t-1} + I_t (subtract);
 * s_t = sig(beta (u_t - theta)) (smooth) or H(u_t - theta) (hard, HFSB): the plain loop's order of ops. */
AIN void FN(fwd_row)(const T *restrict it, const T *restrict up, const T *restrict sp, T *restrict ut,
                     T *restrict st, int64_t n, const T *restrict lam, const T *restrict theta, T beta,
                     int first, int reset, int smooth) {
    for (int64_t j = 0; j < n; j++) {
        T v;
        if (first)
            v = it[j];
        else if (reset == 0)
            v = lam[j] * up[j] * ((T)1 - sp[j]) + it[j];
        else
            v = lam[j] * up[j] - theta[j] * sp[j] + it[j];
        ut[j] = v;
        T x = v - theta[j];
        st[j] = smooth ? (T)1 / ((T)1 + EXP(-(x * beta))) : (x > (T)0 ? (T)1 : (T)0);
    }
}

void FN(sast_lif_forward)(const T *cur, T *u, T *s, int64_t b0, int64_t b1, int64_t steps, int64_t n,
                          const T *lam, const T *theta, T beta, int reset, int mode, int nth) {
    int smooth = mode == 0;
    PARALLEL_FOR
    for (int64_t b = b0; b < b1; b++) {
        for (int64_t t = 0; t < steps; t++) {
            int64_t o = (b * steps + t) * n;
            const T *it = cur + o;
            T *ut = u + o, *st = s + o;
            if (t == 0) {
                if (smooth) FN(fwd_row)(it, 0, 0, ut, st, n, lam, theta, beta, 1, 0, 1);
                else FN(fwd_row)(it, 0, 0, ut, st, n, lam, theta, beta, 1, 0, 0);
            } else if (reset == 0) {
                if (smooth) FN(fwd_row)(it, ut - n, st - n, ut, st, n, lam, theta, beta, 0, 0, 1);
                else FN(fwd_row)(it, ut - n, st - n, ut, st, n, lam, theta, beta, 0, 0, 0);
            } else {
                if (smooth) FN(fwd_row)(it, ut - n, st - n, ut, st, n, lam, theta, beta, 0, 1, 1);
                else FN(fwd_row)(it, ut - n, st - n, ut, st, n, lam, theta, beta, 0, 1, 0);
            }
        }
    }
}

/* dI = d: d_t = G_t + M_t d_{t+1}, d_{T-1} = G_{T-1}, G = gs sig' + gu, M = lam ((1 - s) - sig' u) (zero)
 * or lam - theta sig' (subtract), sig' = beta s (1 - s) (smooth), beta (sig - sig^2) at
 * sig = sig(beta (u - theta)) (HFSB); in hard mode G = gu, M = lam (1 - s) or lam. */
AIN void FN(adj_row)(const T *restrict ut, const T *restrict st, const T *restrict gut, const T *restrict gst,
                     T *restrict dt, const T *restrict dn, int64_t n, const T *restrict lam,
                     const T *restrict theta, T beta, int last, int reset, int mode, int has_gu, int has_gs) {
    for (int64_t j = 0; j < n; j++) {
        T oms = (T)1 - st[j], dsig = (T)0, g, m;
        if (mode == 0) {
            dsig = st[j] * oms * beta;
        } else if (mode == 2) {
            T sg = (T)1 / ((T)1 + EXP(-((ut[j] - theta[j]) * beta)));
            dsig = (sg - sg * sg) * beta;
        }
        if (has_gs && has_gu) g = gst[j] * dsig + gut[j];
        else if (has_gs) g = gst[j] * dsig;
        else g = gut[j];
        if (mode == 1) m = reset == 0 ? oms * lam[j] : lam[j];
        else m = reset == 0 ? (oms - dsig * ut[j]) * lam[j] : dsig * -theta[j] + lam[j];
        dt[j] = last ? g : g + m * dn[j];
    }
}

#define ADJ(L, R, M, HU, HS) FN(adj_row)(ut, st, gut, gst, dt, L ? 0 : dt + n, n, lam, theta, beta, L, R, M, HU, HS)
#define ADJ_G(L, R, M)                                  \
    do {                                                \
        if (gu && gs) ADJ(L, R, M, 1, 1);               \
        else if (gs) ADJ(L, R, M, 0, 1);                \
        else ADJ(L, R, M, 1, 0);                        \
    } while (0)
#define ADJ_M(L, R)                                     \
    do {                                                \
        if (mode == 0) ADJ_G(L, R, 0);                  \
        else if (mode == 2) ADJ_G(L, R, 2);             \
        else ADJ(L, R, 1, 1, 0);                        \
    } while (0)

/* gu or gs may be NULL (not both; the caller passes no gs in hard mode, and gu there) */
void FN(sast_lif_adjoint)(const T *u, const T *s, const T *gu, const T *gs, T *d, int64_t b0, int64_t b1,
                          int64_t steps, int64_t n, const T *lam, const T *theta, T beta, int reset, int mode,
                          int nth) {
    PARALLEL_FOR
    for (int64_t b = b0; b < b1; b++) {
        for (int64_t t = steps - 1; t >= 0; t--) {
            int64_t o = (b * steps + t) * n;
            const T *ut = u + o, *st = s + o, *gut = gu ? gu + o : 0, *gst = gs ? gs + o : 0;
            T *dt = d + o;
            if (t == steps - 1) {
                if (reset == 0) ADJ_M(1, 0);
                else ADJ_M(1, 1);
            } else {
                if (reset == 0) ADJ_M(0, 0);
                else ADJ_M(0, 1);
            }
        }
    }
}
#undef ADJ
#undef ADJ_G
#undef ADJ_M

/* The adjoint's backward (smooth mode), for an incoming e = dL/dd: a_0 = e_0, a_t = e_t + M_{t-1} a_{t-1};
 * gm_t = a_t d_{t+1} (0 at the last step); dL/du = -lam sig' gm (zero reset; not written for subtract),
 * dL/ds = (a gs - lam u gm) beta (1 - 2 s) - lam gm (zero) or (a gs - theta gm) beta (1 - 2 s)
 * (subtract), dL/dgu = a, dL/dgs = a sig' (written where gs is given). */
AIN void FN(adjb_row)(const T *restrict ut, const T *restrict st, const T *restrict gst, const T *restrict dn,
                      const T *restrict et, const T *restrict up, const T *restrict sp, const T *restrict ap,
                      T *restrict at, T *restrict gut, T *restrict gsout, T *restrict ggst, int64_t n,
                      const T *restrict lam, const T *restrict theta, T beta, int first, int last, int reset,
                      int has_gs) {
    for (int64_t j = 0; j < n; j++) {
        T oms = (T)1 - st[j];
        T dsig = st[j] * oms * beta;
        T av = et[j];
        if (!first) {
            T spm = (T)1 - sp[j], dsp = sp[j] * spm * beta;
            T mp = reset == 0 ? (spm - up[j] * dsp) * lam[j] : dsp * -theta[j] + lam[j];
            av = av + mp * ap[j];
        }
        at[j] = av;
        T gm = last ? (T)0 : av * dn[j];
        T gsig = reset == 0 ? ut[j] * gm * -lam[j] : gm * -theta[j];
        if (has_gs) gsig = gsig + av * gst[j];
        T gsv = gsig * (oms - st[j]) * beta;
        if (reset == 0) {
            gsv = gsv - gm * lam[j];
            gut[j] = dsig * gm * -lam[j];
        }
        gsout[j] = gsv;
        if (has_gs) ggst[j] = av * dsig;
    }
}

#define ADJB(F, L, R, H)                                                                                \
    FN(adjb_row)(ut, st, gst, L ? 0 : dt + n, et, F ? 0 : ut - n, F ? 0 : st - n, F ? 0 : at - n, at, gut, gst_out, \
                 ggst, n, lam, theta, beta, F, L, R, H)
#define ADJB_H(F, L, R)                                 \
    do {                                                \
        if (gs) ADJB(F, L, R, 1);                       \
        else ADJB(F, L, R, 0);                          \
    } while (0)
#define ADJB_R(F, L)                                    \
    do {                                                \
        if (reset == 0) ADJB_H(F, L, 0);                \
        else ADJB_H(F, L, 1);                           \
    } while (0)

void FN(sast_lif_adjoint_backward)(const T *u, const T *s, const T *gs, const T *d, const T *e, T *g_u, T *g_s,
                                   T *a, T *g_gs, int64_t b0, int64_t b1, int64_t steps, int64_t n,
                                   const T *lam, const T *theta, T beta, int reset, int nth) {
    PARALLEL_FOR
    for (int64_t b = b0; b < b1; b++) {
        for (int64_t t = 0; t < steps; t++) {
            int64_t o = (b * steps + t) * n;
            const T *ut = u + o, *st = s + o, *gst = gs ? gs + o : 0, *dt = d + o, *et = e + o;
            T *at = a + o, *gut = g_u ? g_u + o : 0, *gst_out = g_s + o, *ggst = g_gs ? g_gs + o : 0;
            int first = t == 0, last = t == steps - 1;
            if (first && last) ADJB_R(1, 1);
            else if (first) ADJB_R(1, 0);
            else if (last) ADJB_R(0, 1);
            else ADJB_R(0, 0);
        }
    }
}
#undef ADJB
#undef ADJB_H
#undef ADJB_R
