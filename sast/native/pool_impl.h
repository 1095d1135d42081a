/* Average pooling of a conv SNN's spikes for one dtype T (kernels.c includes this once per dtype):
 * k x k windows, stride k, no padding, the last rows and columns dropped where k does not divide H or W
 * (torch's avg_pool2d(x, k)). x is (M, H, W) row-major, M the frames times the channels. The window's
 * sum runs over its rows in order, then divides by k^2, as torch's CPU kernel does. */

void FN(sast_avg_pool)(const T *x, T *y, int64_t m0, int64_t m1, int64_t h, int64_t w, int64_t k, int nth) {
    int64_t ho = h / k, wo = w / k;
    T kk = (T)(k * k);
    PARALLEL_FOR
    for (int64_t m = m0; m < m1; m++) {
        const T *xm = x + m * h * w;
        T *ym = y + m * ho * wo;
        for (int64_t i = 0; i < ho; i++) {
            T *yi = ym + i * wo;
            for (int64_t j = 0; j < wo; j++) yi[j] = (T)0;
            for (int64_t a = 0; a < k; a++) {
                const T *xr = xm + (i * k + a) * w;
                for (int64_t j = 0; j < wo; j++)
                    for (int64_t b = 0; b < k; b++) yi[j] += xr[j * k + b];
            }
            for (int64_t j = 0; j < wo; j++) yi[j] = yi[j] / kk;
        }
    }
}

/* The adjoint of sast_avg_pool: each output entry's g / k^2 spread over its window; the dropped rows and
 * columns get 0. */
void FN(sast_avg_unpool)(const T *g, T *x, int64_t m0, int64_t m1, int64_t h, int64_t w, int64_t k, int nth) {
    int64_t ho = h / k, wo = w / k;
    T kk = (T)(k * k);
    PARALLEL_FOR
    for (int64_t m = m0; m < m1; m++) {
        const T *gm = g + m * ho * wo;
        T *xm = x + m * h * w;
        for (int64_t r = 0; r < h; r++) {
            T *xr = xm + r * w;
            if (r >= ho * k) {
                for (int64_t c = 0; c < w; c++) xr[c] = (T)0;
                continue;
            }
            const T *gi = gm + (r / k) * wo;
            for (int64_t j = 0; j < wo; j++) {
                T v = gi[j] / kk;
                for (int64_t b = 0; b < k; b++) xr[j * k + b] = v;
            }
            for (int64_t c = wo * k; c < w; c++) xr[c] = (T)0;
        }
    }
}

/* The same pair in channels-last order: x is (M, H, W, C) row-major (torch's channels_last (M, C, H, W)), y is
 * (M, H / k, W / k, C). Each window's sum runs over its rows in order, as above; the loop over the C channels
 * of a pixel is innermost, so it vectorises. */
void FN(sast_avg_pool_nhwc)(const T *x, T *y, int64_t m0, int64_t m1, int64_t h, int64_t w, int64_t c, int64_t k,
                            int nth) {
    int64_t ho = h / k, wo = w / k;
    T kk = (T)(k * k);
    PARALLEL_FOR
    for (int64_t m = m0; m < m1; m++) {
        for (int64_t i = 0; i < ho; i++) {
            for (int64_t j = 0; j < wo; j++) {
                T *restrict yo = y + ((m * ho + i) * wo + j) * c;
                for (int64_t ch = 0; ch < c; ch++) yo[ch] = (T)0;
                for (int64_t a = 0; a < k; a++)
                    for (int64_t b = 0; b < k; b++) {
                        const T *restrict xi = x + ((m * h + i * k + a) * w + j * k + b) * c;
                        for (int64_t ch = 0; ch < c; ch++) yo[ch] += xi[ch];
                    }
                for (int64_t ch = 0; ch < c; ch++) yo[ch] = yo[ch] / kk;
            }
        }
    }
}

void FN(sast_avg_unpool_nhwc)(const T *g, T *x, int64_t m0, int64_t m1, int64_t h, int64_t w, int64_t c, int64_t k,
                              int nth) {
    int64_t ho = h / k, wo = w / k;
    T kk = (T)(k * k);
    PARALLEL_FOR
    for (int64_t m = m0; m < m1; m++) {
        for (int64_t r = 0; r < h; r++) {
            for (int64_t col = 0; col < w; col++) {
                T *restrict xo = x + ((m * h + r) * w + col) * c;
                if (r >= ho * k || col >= wo * k) {
                    for (int64_t ch = 0; ch < c; ch++) xo[ch] = (T)0;
                    continue;
                }
                const T *restrict gi = g + ((m * ho + r / k) * wo + col / k) * c;
                for (int64_t ch = 0; ch < c; ch++) xo[ch] = gi[ch] / kk;
            }
        }
    }
}
