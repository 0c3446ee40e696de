/* quants_search.h — the scale searches of the K-quants and the imatrix
 * paths (ggml's make_qx_quants, make_q3_quants, make_qkx2/3_quants,
 * make_qp_quants), as static inline functions so each caller gets a copy
 * specialised for its constant group size and level count: llama.cpp's
 * compiler does the same with its file-static versions, and without it these
 * loops run at half speed. Internal to quants*.c.
 *
 * Bit-exactness: see the notes at the top of quants_k.c. */
#ifndef SMELT_QUANTS_SEARCH_H
#define SMELT_QUANTS_SEARCH_H

#include "quants_impl.h"

#include <math.h>
#include <string.h>

/* ------------------------------------------------------------ searches */

/* Weight of element i for make_qx: the caller's importance weight, or a
 * function of x picked by rmse_type (1: x^2, 2: 1, 3: |x|, else sqrt|x|). */
static inline float qx_weight(const float *qw, int rmse_type, const float *x, int i)
{
    if (qw)
        return qw[i];
    if (rmse_type == 1)
        return x[i] * x[i];
    if (rmse_type == 2)
        return 1.0f;
    if (rmse_type == 3)
        return fabsf(x[i]);
    return sqrtf(fabsf(x[i]));
}

/* Largest group any caller passes (K-quant sub-blocks are 16 or 32). The
 * weights are computed once into a buffer: the same float values ggml
 * recomputes inside every trial loop, so results are unchanged. */
#define QX_MAX_N 256

static inline float sm_q_make_qx(int n, int nmax, const float *x, int8_t *L, int rmse_type, const float *qw)
{
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++) {
        float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < SM_GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    /* the element of largest magnitude maps to level -nmax */
    float iscale = (float)-nmax / max;
    if (rmse_type == 0) {
        for (int i = 0; i < n; i++) {
            int l = sm_nearest_int(iscale * x[i]);
            L[i] = (int8_t)(nmax + SM_QMAX(-nmax, SM_QMIN(nmax - 1, l)));
        }
        return 1 / iscale;
    }
    int return_early = 0;
    if (rmse_type < 0) {
        rmse_type = -rmse_type;
        return_early = 1;
    }
    if (n > QX_MAX_N)
        n = QX_MAX_N; /* not reached: callers pass 16 or 32 */
    float w[QX_MAX_N];
    for (int i = 0; i < n; i++)
        w[i] = qx_weight(qw, rmse_type, x, i);
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = sm_nearest_int(iscale * x[i]);
        l = SM_QMAX(-nmax, SM_QMIN(nmax - 1, l));
        L[i] = (int8_t)(l + nmax);
        sumlx += w[i] * x[i] * (float)l;
        suml2 += w[i] * (float)l * (float)l;
    }
    float scale = suml2 != 0 ? sumlx / suml2 : 0.0f;
    if (return_early)
        return suml2 > 0 ? 0.5f * (scale + 1 / iscale) : 1 / iscale;
    float best = scale * sumlx;
    /* try 18 nearby scales; keep the one maximizing sumlx^2/suml2, i.e. the
     * least weighted squared error at the optimal scale */
    for (int is = -9; is <= 9; is++) {
        if (is == 0)
            continue;
        iscale = -((float)nmax + 0.1f * (float)is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; i++) {
            int l = sm_nearest_int(iscale * x[i]);
            l = SM_QMAX(-nmax, SM_QMIN(nmax - 1, l));
            sumlx += w[i] * x[i] * (float)l;
            suml2 += w[i] * (float)l * (float)l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++) {
                int l = sm_nearest_int(iscale * x[i]);
                L[i] = (int8_t)(nmax + SM_QMAX(-nmax, SM_QMIN(nmax - 1, l)));
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

static inline float sm_q_make_q3(int n, int nmax, const float *x, int8_t *L, int do_rmse)
{
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++) {
        float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < SM_GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    float iscale = (float)-nmax / max;
    if (do_rmse) {
        float sumlx = 0, suml2 = 0;
        for (int i = 0; i < n; i++) {
            int l = sm_nearest_int(iscale * x[i]);
            l = SM_QMAX(-nmax, SM_QMIN(nmax - 1, l));
            L[i] = (int8_t)l;
            float w = x[i] * x[i];
            sumlx += w * x[i] * (float)l;
            suml2 += w * (float)l * (float)l;
        }
        /* coordinate descent: move one level at a time if it improves the
         * fit at the optimal scale; at most 5 sweeps */
        for (int itry = 0; itry < 5; itry++) {
            int n_changed = 0;
            for (int i = 0; i < n; i++) {
                float w = x[i] * x[i];
                float slx = sumlx - w * x[i] * (float)L[i];
                if (slx > 0) {
                    float sl2 = suml2 - w * (float)L[i] * (float)L[i];
                    int new_l = sm_nearest_int(x[i] * sl2 / slx);
                    new_l = SM_QMAX(-nmax, SM_QMIN(nmax - 1, new_l));
                    if (new_l != L[i]) {
                        slx += w * x[i] * (float)new_l;
                        sl2 += w * (float)new_l * (float)new_l;
                        if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                            L[i] = (int8_t)new_l;
                            sumlx = slx;
                            suml2 = sl2;
                            n_changed++;
                        }
                    }
                }
            }
            if (!n_changed)
                break;
        }
        for (int i = 0; i < n; i++)
            L[i] = (int8_t)(L[i] + nmax);
        return sumlx / suml2;
    }
    for (int i = 0; i < n; i++) {
        int l = sm_nearest_int(iscale * x[i]);
        l = SM_QMAX(-nmax, SM_QMIN(nmax - 1, l));
        L[i] = (int8_t)(l + nmax);
    }
    return 1 / iscale;
}

/* Shared body of make_qkx2 (weights required, degenerate when max == min)
 * and make_qkx3 (NULL weights mean x^2, degenerate when max <= min). */
static inline float make_qkx(int n, int nmax, const float *x, const float *weights, uint8_t *L,
                      float *the_min, uint8_t *Laux, float rmin, float rdelta, int nstep,
                      int use_mad, int is_x3)
{
    if (n < 1) {
        *the_min = 0;
        return 0.f;
    }
    if (n > QX_MAX_N)
        n = QX_MAX_N; /* not reached: callers pass 16 or 32 */
    float wbuf[QX_MAX_N];
    if (!weights) {
        for (int i = 0; i < n; i++)
            wbuf[i] = x[i] * x[i];
        weights = wbuf;
    }
    float min = x[0], max = x[0];
    float sum_w = weights[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min)
            min = x[i];
        if (x[i] > max)
            max = x[i];
        float w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0)
        min = 0;
    if (is_x3 ? max <= min : max == min) {
        memset(L, 0, (size_t)n);
        *the_min = -min;
        return 0.f;
    }
    float iscale = (float)nmax / (max - min);
    float scale = 1 / iscale;
    float best_mad = 0;
    for (int i = 0; i < n; i++) {
        int l = sm_nearest_int(iscale * (x[i] - min));
        L[i] = (uint8_t)SM_QMAX(0, SM_QMIN(nmax, l));
        float diff = scale * (float)L[i] + min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        best_mad += weights[i] * diff;
    }
    if (nstep < 1) {
        *the_min = -min;
        return scale;
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * (float)is + (float)nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            int l = sm_nearest_int(iscale * (x[i] - min));
            l = SM_QMAX(0, SM_QMIN(nmax, l));
            Laux[i] = (uint8_t)l;
            float w = weights[i];
            sum_l += w * (float)l;
            sum_l2 += w * (float)l * (float)l;
            sum_xl += w * (float)l * x[i];
        }
        /* weighted least squares for x ~ scale * l + min */
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float mad = 0;
            for (int i = 0; i < n; i++) {
                float diff = this_scale * (float)Laux[i] + this_min - x[i];
                diff = use_mad ? fabsf(diff) : diff * diff;
                mad += weights[i] * diff;
            }
            if (mad < best_mad) {
                memcpy(L, Laux, (size_t)n);
                best_mad = mad;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

static inline float sm_q_make_qkx2(int n, int nmax, const float *x, const float *weights, uint8_t *L,
                     float *the_min, uint8_t *Laux, float rmin, float rdelta, int nstep, int use_mad)
{
    return make_qkx(n, nmax, x, weights, L, the_min, Laux, rmin, rdelta, nstep, use_mad, 0);
}

static inline float sm_q_make_qkx3(int n, int nmax, const float *x, const float *weights, uint8_t *L,
                     float *the_min, uint8_t *Laux, float rmin, float rdelta, int nstep, int use_mad)
{
    return make_qkx(n, nmax, x, weights, L, the_min, Laux, rmin, rdelta, nstep, use_mad, 1);
}

static inline float sm_q_make_qp(int n, int nmax, const float *x, uint8_t *L, const float *qw)
{
    float max = 0;
    for (int i = 0; i < n; i++)
        max = SM_QMAX(max, x[i]);
    if (max == 0) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    float iscale = (float)nmax / max;
    /* L holds bytes: ggml stores the unclamped level into uint8_t here and
     * reads the byte back below */
    for (int i = 0; i < n; i++)
        L[i] = sm_low_u8(sm_nearest_int(iscale * x[i]));
    float scale = 1 / iscale;
    float best_mse = 0;
    for (int i = 0; i < n; i++) {
        float diff = x[i] - scale * (float)L[i];
        float w = qw[i];
        best_mse += w * diff * diff;
    }
    for (int is = -4; is <= 4; is++) {
        if (is == 0)
            continue;
        float iscale_is = (0.1f * (float)is + (float)nmax) / max;
        float scale_is = 1 / iscale_is;
        float mse = 0;
        for (int i = 0; i < n; i++) {
            int l = sm_nearest_int(iscale_is * x[i]);
            l = SM_QMIN(nmax, l);
            float diff = x[i] - scale_is * (float)l;
            float w = qw[i];
            mse += w * diff * diff;
        }
        if (mse < best_mse) {
            best_mse = mse;
            iscale = iscale_is;
        }
    }
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = sm_nearest_int(iscale * x[i]);
        l = SM_QMIN(nmax, l);
        L[i] = sm_low_u8(l);
        float w = qw[i];
        sumlx += w * x[i] * (float)l;
        suml2 += w * (float)l * (float)l;
    }
    for (int itry = 0; itry < 5; itry++) {
        int n_changed = 0;
        for (int i = 0; i < n; i++) {
            float w = qw[i];
            float slx = sumlx - w * x[i] * (float)L[i];
            float sl2 = suml2 - w * (float)L[i] * (float)L[i];
            if (slx > 0 && sl2 > 0) {
                int new_l = sm_nearest_int(x[i] * sl2 / slx);
                new_l = SM_QMIN(nmax, new_l);
                if (new_l != L[i]) {
                    slx += w * x[i] * (float)new_l;
                    sl2 += w * (float)new_l * (float)new_l;
                    if (slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = sm_low_u8(new_l);
                        sumlx = slx;
                        suml2 = sl2;
                        n_changed++;
                    }
                }
            }
        }
        if (!n_changed)
            break;
    }
    return sumlx / suml2;
}

#endif
