/* quants.c — 32-element block codecs (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1,
 * IQ4_NL) and the generic quantize/dequantize entry points.
 *
 * The arithmetic mirrors ggml-quants.c expression by expression; see the
 * notes at the top of quants_k.c. Casts like ggml's (int8_t)(x + 8.5f) are
 * written as sm_cvtt() + low byte, which is what they compile to on x86. */
#include "quants_impl.h"
#include "quants_search.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

const int8_t sm_iq4nl_values[16] = {
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
};

/* ------------------------------------------------------------ helpers */

/* Signed value of the first element of largest magnitude; its magnitude
 * goes to *amax_out. */
static float block_signed_absmax(const float *x, int n, float *amax_out)
{
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < n; j++) {
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    *amax_out = amax;
    return max;
}

static void block_min_max(const float *x, int n, float *min_out, float *max_out)
{
    float min = FLT_MAX, max = -FLT_MAX;
    for (int j = 0; j < n; j++) {
        if (x[j] < min)
            min = x[j];
        if (x[j] > max)
            max = x[j];
    }
    *min_out = min;
    *max_out = max;
}

/* 5th bits of 32 levels into the little-endian qh word: bit j = element j. */
static void pack_q5(const uint8_t *L, uint8_t *qs, uint8_t *qh_out)
{
    uint32_t qh = 0;
    for (int j = 0; j < 16; j++) {
        uint8_t a = L[j], b = L[j + 16];
        qs[j] = (uint8_t)((a & 0x0F) | ((b & 0x0F) << 4));
        qh |= ((a & 0x10u) >> 4) << j;
        qh |= ((b & 0x10u) >> 4) << (j + 16);
    }
    for (int i = 0; i < 4; i++)
        qh_out[i] = (uint8_t)(qh >> (8 * i));
}

static uint32_t load_qh(const uint8_t *qh)
{
    return (uint32_t)qh[0] | ((uint32_t)qh[1] << 8) | ((uint32_t)qh[2] << 16) | ((uint32_t)qh[3] << 24);
}

/* sigma2 = mean of x^2 over the row, as the imatrix paths of the 32-block
 * types compute it (float sum, then divided by the row length). */
static float row_sigma2(const float *x, int64_t n)
{
    float sum_x2 = 0;
    for (int64_t j = 0; j < n; j++)
        sum_x2 += x[j] * x[j];
    return sum_x2 / (float)n;
}

static void imat_weights(const float *xb, const float *qw, float sigma2, float *weight)
{
    for (int j = 0; j < 32; j++)
        weight[j] = qw[j] * sqrtf(sigma2 + xb[j] * xb[j]);
}

/* ------------------------------------------------------------ Q4_0 */

void sm_quantize_row_q4_0_ref(const float *x, sm_block_q4_0 *y, int64_t k)
{
    const int64_t nb = k / SM_QK4_0;
    for (int64_t i = 0; i < nb; i++, x += SM_QK4_0) {
        float amax;
        const float max = block_signed_absmax(x, SM_QK4_0, &amax);
        /* the largest magnitude maps to level -8 (the only unpaired one) */
        const float d = max / -8;
        const float id = d != 0 ? 1.0f / d : 0.0f;
        y[i].d = sm_f32_to_f16(d);
        for (int j = 0; j < 16; j++) {
            const float x0 = x[j] * id;
            const float x1 = x[16 + j] * id;
            uint8_t q0 = sm_low_u8(SM_QMIN(15, (int)sm_low_i8(sm_cvtt(x0 + 8.5f))));
            uint8_t q1 = sm_low_u8(SM_QMIN(15, (int)sm_low_i8(sm_cvtt(x1 + 8.5f))));
            y[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

void sm_quantize_row_q4_0_imat(const float *x, sm_block_q4_0 *y, int64_t n_per_row, const float *qw)
{
    if (!qw) {
        sm_quantize_row_q4_0_ref(x, y, n_per_row);
        return;
    }
    float weight[32];
    int8_t L[32];
    const float sigma2 = row_sigma2(x, n_per_row);
    const int64_t nb = n_per_row / SM_QK4_0;
    for (int64_t ib = 0; ib < nb; ib++) {
        const float *xb = x + SM_QK4_0 * ib;
        imat_weights(xb, qw + SM_QK4_0 * ib, sigma2, weight);
        float d = sm_q_make_qx(SM_QK4_0, 8, xb, L, 1, weight);
        y[ib].d = sm_f32_to_f16(d);
        for (int j = 0; j < 16; j++)
            y[ib].qs[j] = (uint8_t)(L[j] | (L[j + 16] << 4));
    }
}

void sm_dequantize_row_q4_0(const sm_block_q4_0 *x, float *y, int64_t k)
{
    const int64_t nb = k / SM_QK4_0;
    for (int64_t i = 0; i < nb; i++, y += SM_QK4_0) {
        const float d = sm_f16_to_f32(x[i].d);
        for (int j = 0; j < 16; j++) {
            y[j] = (float)((x[i].qs[j] & 0x0F) - 8) * d;
            y[j + 16] = (float)((x[i].qs[j] >> 4) - 8) * d;
        }
    }
}

/* ------------------------------------------------------------ Q4_1 */

void sm_quantize_row_q4_1_ref(const float *x, sm_block_q4_1 *y, int64_t k)
{
    const int64_t nb = k / SM_QK4_1;
    for (int64_t i = 0; i < nb; i++, x += SM_QK4_1) {
        float min, max;
        block_min_max(x, SM_QK4_1, &min, &max);
        const float d = (max - min) / 15;
        const float id = d != 0 ? 1.0f / d : 0.0f;
        y[i].d = sm_f32_to_f16(d);
        y[i].m = sm_f32_to_f16(min);
        for (int j = 0; j < 16; j++) {
            const float x0 = (x[j] - min) * id;
            const float x1 = (x[16 + j] - min) * id;
            uint8_t q0 = sm_low_u8(SM_QMIN(15, (int)sm_low_i8(sm_cvtt(x0 + 0.5f))));
            uint8_t q1 = sm_low_u8(SM_QMIN(15, (int)sm_low_i8(sm_cvtt(x1 + 0.5f))));
            y[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

void sm_quantize_row_q4_1_imat(const float *x, sm_block_q4_1 *y, int64_t n_per_row, const float *qw)
{
    if (!qw) {
        sm_quantize_row_q4_1_ref(x, y, n_per_row);
        return;
    }
    float weight[32];
    uint8_t L[32], Laux[32];
    const float sigma2 = row_sigma2(x, n_per_row);
    const int64_t nb = n_per_row / SM_QK4_1;
    for (int64_t ib = 0; ib < nb; ib++) {
        const float *xb = x + SM_QK4_1 * ib;
        imat_weights(xb, qw + SM_QK4_1 * ib, sigma2, weight);
        float min;
        float d = sm_q_make_qkx3(SM_QK4_1, 15, xb, weight, L, &min, Laux, -0.9f, 0.05f, 36, 0);
        y[ib].d = sm_f32_to_f16(d);
        y[ib].m = sm_f32_to_f16(-min);
        for (int j = 0; j < 16; j++)
            y[ib].qs[j] = (uint8_t)(L[j] | (L[j + 16] << 4));
    }
}

void sm_dequantize_row_q4_1(const sm_block_q4_1 *x, float *y, int64_t k)
{
    const int64_t nb = k / SM_QK4_1;
    for (int64_t i = 0; i < nb; i++, y += SM_QK4_1) {
        const float d = sm_f16_to_f32(x[i].d);
        const float m = sm_f16_to_f32(x[i].m);
        for (int j = 0; j < 16; j++) {
            y[j] = (float)(x[i].qs[j] & 0x0F) * d + m;
            y[j + 16] = (float)(x[i].qs[j] >> 4) * d + m;
        }
    }
}

/* ------------------------------------------------------------ Q5_0 */

void sm_quantize_row_q5_0_ref(const float *x, sm_block_q5_0 *y, int64_t k)
{
    const int64_t nb = k / SM_QK5_0;
    uint8_t L[32];
    for (int64_t i = 0; i < nb; i++, x += SM_QK5_0) {
        float amax;
        const float max = block_signed_absmax(x, SM_QK5_0, &amax);
        const float d = max / -16;
        const float id = d != 0 ? 1.0f / d : 0.0f;
        y[i].d = sm_f32_to_f16(d);
        for (int j = 0; j < 32; j++) {
            const float v = x[j] * id;
            L[j] = sm_low_u8(SM_QMIN(31, (int)sm_low_i8(sm_cvtt(v + 16.5f))));
        }
        pack_q5(L, y[i].qs, y[i].qh);
    }
}

void sm_quantize_row_q5_0_imat(const float *x, sm_block_q5_0 *y, int64_t n_per_row, const float *qw)
{
    if (!qw) {
        sm_quantize_row_q5_0_ref(x, y, n_per_row);
        return;
    }
    float weight[32];
    int8_t L[32];
    uint8_t Lu[32];
    const float sigma2 = row_sigma2(x, n_per_row);
    const int64_t nb = n_per_row / SM_QK5_0;
    for (int64_t ib = 0; ib < nb; ib++) {
        const float *xb = x + SM_QK5_0 * ib;
        imat_weights(xb, qw + SM_QK5_0 * ib, sigma2, weight);
        float d = sm_q_make_qx(SM_QK5_0, 16, xb, L, 1, weight);
        y[ib].d = sm_f32_to_f16(d);
        for (int j = 0; j < 32; j++)
            Lu[j] = (uint8_t)L[j];
        pack_q5(Lu, y[ib].qs, y[ib].qh);
    }
}

void sm_dequantize_row_q5_0(const sm_block_q5_0 *x, float *y, int64_t k)
{
    const int64_t nb = k / SM_QK5_0;
    for (int64_t i = 0; i < nb; i++, y += SM_QK5_0) {
        const float d = sm_f16_to_f32(x[i].d);
        const uint32_t qh = load_qh(x[i].qh);
        for (int j = 0; j < 16; j++) {
            int h0 = (int)((qh >> j) & 1u) << 4;
            int h1 = (int)((qh >> (j + 16)) & 1u) << 4;
            y[j] = (float)(((x[i].qs[j] & 0x0F) | h0) - 16) * d;
            y[j + 16] = (float)(((x[i].qs[j] >> 4) | h1) - 16) * d;
        }
    }
}

/* ------------------------------------------------------------ Q5_1 */

void sm_quantize_row_q5_1_ref(const float *x, sm_block_q5_1 *y, int64_t k)
{
    const int64_t nb = k / SM_QK5_1;
    uint8_t L[32];
    for (int64_t i = 0; i < nb; i++, x += SM_QK5_1) {
        float min, max;
        block_min_max(x, SM_QK5_1, &min, &max);
        const float d = (max - min) / 31;
        const float id = d != 0 ? 1.0f / d : 0.0f;
        y[i].d = sm_f32_to_f16(d);
        y[i].m = sm_f32_to_f16(min);
        for (int j = 0; j < 32; j++) {
            const float v = (x[j] - min) * id;
            L[j] = sm_low_u8(sm_cvtt(v + 0.5f)); /* ggml: no clamp here */
        }
        pack_q5(L, y[i].qs, y[i].qh);
    }
}

void sm_quantize_row_q5_1_imat(const float *x, sm_block_q5_1 *y, int64_t n_per_row, const float *qw)
{
    if (!qw) {
        sm_quantize_row_q5_1_ref(x, y, n_per_row);
        return;
    }
    float weight[32];
    uint8_t L[32], Laux[32];
    const float sigma2 = row_sigma2(x, n_per_row);
    const int64_t nb = n_per_row / SM_QK5_1;
    for (int64_t ib = 0; ib < nb; ib++) {
        const float *xb = x + SM_QK5_1 * ib;
        imat_weights(xb, qw + SM_QK5_1 * ib, sigma2, weight);
        float min;
        float d = sm_q_make_qkx3(SM_QK5_1, 31, xb, weight, L, &min, Laux, -0.9f, 0.05f, 36, 0);
        y[ib].d = sm_f32_to_f16(d);
        y[ib].m = sm_f32_to_f16(-min);
        pack_q5(L, y[ib].qs, y[ib].qh);
    }
}

void sm_dequantize_row_q5_1(const sm_block_q5_1 *x, float *y, int64_t k)
{
    const int64_t nb = k / SM_QK5_1;
    for (int64_t i = 0; i < nb; i++, y += SM_QK5_1) {
        const float d = sm_f16_to_f32(x[i].d);
        const float m = sm_f16_to_f32(x[i].m);
        const uint32_t qh = load_qh(x[i].qh);
        for (int j = 0; j < 16; j++) {
            int h0 = (int)((qh >> j) & 1u) << 4;
            int h1 = (int)((qh >> (j + 16)) & 1u) << 4;
            y[j] = (float)((x[i].qs[j] & 0x0F) | h0) * d + m;
            y[j + 16] = (float)((x[i].qs[j] >> 4) | h1) * d + m;
        }
    }
}

/* ------------------------------------------------------------ Q8_0 / Q8_1 */

static float block_absmax(const float *x, int n)
{
    float amax = 0.0f;
    for (int j = 0; j < n; j++)
        amax = SM_QMAX(amax, fabsf(x[j]));
    return amax;
}

void sm_quantize_row_q8_0_ref(const float *x, sm_block_q8_0 *y, int64_t k)
{
    const int64_t nb = k / SM_QK8_0;
    for (int64_t i = 0; i < nb; i++, x += SM_QK8_0) {
        const float amax = block_absmax(x, SM_QK8_0);
        const float d = amax / 127;
        const float id = d != 0 ? 1.0f / d : 0.0f;
        y[i].d = sm_f32_to_f16(d);
        for (int j = 0; j < SM_QK8_0; j++)
            y[i].qs[j] = sm_low_i8(sm_cvtt(roundf(x[j] * id)));
    }
}

void sm_quantize_row_q8_1_ref(const float *x, sm_block_q8_1 *y, int64_t k)
{
    const int64_t nb = k / SM_QK8_1;
    for (int64_t i = 0; i < nb; i++, x += SM_QK8_1) {
        const float amax = block_absmax(x, SM_QK8_1);
        const float d = amax / 127;
        const float id = d != 0 ? 1.0f / d : 0.0f;
        y[i].d = sm_f32_to_f16(d);
        int sum = 0;
        for (int j = 0; j < SM_QK8_1; j++) {
            y[i].qs[j] = sm_low_i8(sm_cvtt(roundf(x[j] * id)));
            sum += y[i].qs[j];
        }
        y[i].s = sm_f32_to_f16((float)sum * d);
    }
}

/* x86 activation variant: note 127/amax instead of 1/(amax/127), and
 * round-half-even (vroundps) with saturating packs (vpackssdw/vpacksswb). */
static int8_t act_round_i8(float v)
{
    float r = rintf(v); /* default rounding mode: half to even */
    int32_t i = sm_cvtt(r);  /* vcvtps2dq gives INT32_MIN for NaN/overflow too */
    if (i > 127)
        i = 127;
    if (i < -128)
        i = -128;
    return (int8_t)i;
}

void sm_quantize_row_q8_0_act_scalar(const float *x, sm_block_q8_0 *y, int64_t k)
{
    const int64_t nb = k / SM_QK8_0;
    for (int64_t i = 0; i < nb; i++, x += SM_QK8_0) {
        const float amax = block_absmax(x, SM_QK8_0);
        const float d = amax / 127.f;
        y[i].d = sm_f32_to_f16(d);
        const float id = amax != 0.0f ? 127.f / amax : 0.0f;
        for (int j = 0; j < SM_QK8_0; j++)
            y[i].qs[j] = act_round_i8(x[j] * id);
    }
}

void sm_quantize_row_q8_1_act_scalar(const float *x, sm_block_q8_1 *y, int64_t k)
{
    const int64_t nb = k / SM_QK8_1;
    for (int64_t i = 0; i < nb; i++, x += SM_QK8_1) {
        const float amax = block_absmax(x, SM_QK8_1);
        const float d = amax / 127.f;
        y[i].d = sm_f32_to_f16(d);
        const float id = amax != 0.0f ? 127.f / amax : 0.0f;
        /* ggml sums the rounded int32 values before the int8 saturation,
         * with wrapping vector adds */
        uint32_t usum = 0;
        for (int j = 0; j < SM_QK8_1; j++) {
            usum += (uint32_t)sm_cvtt(rintf(x[j] * id));
            y[i].qs[j] = act_round_i8(x[j] * id);
        }
        y[i].s = sm_f32_to_f16(d * (float)(int32_t)usum);
    }
}

void sm_dequantize_row_q8_0_scalar(const sm_block_q8_0 *x, float *y, int64_t k)
{
    const int64_t nb = k / SM_QK8_0;
    for (int64_t i = 0; i < nb; i++) {
        const float d = sm_f16_to_f32(x[i].d);
        for (int j = 0; j < SM_QK8_0; j++)
            *y++ = (float)x[i].qs[j] * d;
    }
}

void sm_dequantize_row_q8_1(const sm_block_q8_1 *x, float *y, int64_t k)
{
    const int64_t nb = k / SM_QK8_1;
    for (int64_t i = 0; i < nb; i++) {
        const float d = sm_f16_to_f32(x[i].d);
        for (int j = 0; j < SM_QK8_1; j++)
            *y++ = (float)x[i].qs[j] * d;
    }
}

/* ------------------------------------------------------------ IQ4_NL */

/* Index of the level nearest to v in the sorted table (ties go up, as in
 * ggml's best_index_int8; NaN ends at the top). */
static int iq4nl_best_index(float v)
{
    const int8_t *val = sm_iq4nl_values;
    if (v <= val[0])
        return 0;
    if (v >= val[15])
        return 15;
    int ml = 0, mu = 15;
    while (mu - ml > 1) {
        int mav = (ml + mu) / 2;
        if (v < val[mav])
            mu = mav;
        else
            ml = mav;
    }
    return v - (float)val[mu - 1] < (float)val[mu] - v ? mu - 1 : mu;
}

/* Best scale for one 32-element group against the non-linear levels:
 * start from the largest magnitude mapped to level 0, then try 15 scales
 * around it, keeping the best weighted least-squares fit. Returns 0 for an
 * all-zero group. (ggml's quantize_row_iq4_nl_impl, ntry = 7.) */
static float iq4_group_scale(const float *xb, const float *weight)
{
    const int ntry = 7;
    const int8_t *values = sm_iq4nl_values;
    float amax = 0, max = 0;
    for (int j = 0; j < 32; j++) {
        float ax = fabsf(xb[j]);
        if (ax > amax) {
            amax = ax;
            max = xb[j];
        }
    }
    if (amax < SM_GROUP_MAX_EPS)
        return 0;
    float d = -max / (float)values[0];
    float id = 1 / d;
    float sumqx = 0, sumq2 = 0;
    for (int j = 0; j < 32; j++) {
        float al = id * xb[j];
        float q = (float)values[iq4nl_best_index(al)];
        float w = weight[j];
        sumqx += w * q * xb[j];
        sumq2 += w * q * q;
    }
    d = sumqx / sumq2;
    float best = d * sumqx;
    for (int itry = -ntry; itry <= ntry; itry++) {
        id = (float)(itry + values[0]) / max;
        sumqx = sumq2 = 0;
        for (int j = 0; j < 32; j++) {
            float al = id * xb[j];
            float q = (float)values[iq4nl_best_index(al)];
            float w = weight[j];
            sumqx += w * q * xb[j];
            sumq2 += w * q * q;
        }
        if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
            d = sumqx / sumq2;
            best = d * sumqx;
        }
    }
    return d;
}

/* Weights of one 32-group: imatrix * sqrt(sigma2 + x^2), or x^2. */
static void iq4_group_weights(const float *xb, const float *qw, float sigma2, float *weight)
{
    if (qw) {
        for (int j = 0; j < 32; j++)
            weight[j] = qw[j] * sqrtf(sigma2 + xb[j] * xb[j]);
    } else {
        for (int j = 0; j < 32; j++)
            weight[j] = xb[j] * xb[j];
    }
}

/* Mean-square-based sigma2 over a super-block (2/n * sum x^2). */
static float iq4_sigma2(const float *x, int n)
{
    float sigma2 = 0;
    for (int j = 0; j < n; j++)
        sigma2 += x[j] * x[j];
    sigma2 *= 2.f / (float)n;
    return sigma2;
}

/* Packs 32 levels: byte j holds elements j (low) and j+16 (high). */
static void iq4_pack(const uint8_t *L, uint8_t *qs)
{
    for (int j = 0; j < 16; j++)
        qs[j] = (uint8_t)(L[j] | (L[16 + j] << 4));
}

/* One IQ4_NL block (super-block = block = 32): the scale is stored as is
 * and every level re-picked against it. */
static void iq4nl_block(const float *x, sm_block_iq4_nl *y, const float *qw)
{
    float weight[32];
    uint8_t L[32];
    iq4_group_weights(x, qw, iq4_sigma2(x, 32), weight);
    float scale = iq4_group_scale(x, weight);
    y->d = sm_f32_to_f16(scale);
    float id = scale != 0 ? 1 / scale : 0;
    for (int j = 0; j < 32; j++)
        L[j] = (uint8_t)iq4nl_best_index(id * x[j]);
    iq4_pack(L, y->qs);
}

/* One IQ4_XS super-block: 8 group scales, then 6-bit group scales relative
 * to the largest one (d = -max/32, unrounded d used for the levels). */
static void iq4xs_block(const float *x, sm_block_iq4_xs *y, const float *qw)
{
    float weight[32];
    float scales[8];
    uint8_t L[32];
    const float sigma2 = iq4_sigma2(x, SM_QK_K);
    float max_scale = 0, amax_scale = 0;
    for (int ib = 0; ib < 8; ib++) {
        iq4_group_weights(x + 32 * ib, qw ? qw + 32 * ib : NULL, sigma2, weight);
        scales[ib] = iq4_group_scale(x + 32 * ib, weight);
        float abs_d = fabsf(scales[ib]);
        if (abs_d > amax_scale) {
            amax_scale = abs_d;
            max_scale = scales[ib];
        }
    }
    y->scales_h = 0;
    memset(y->scales_l, 0, sizeof y->scales_l);
    float d = -max_scale / 32;
    y->d = sm_f32_to_f16(d);
    float id = d != 0 ? 1 / d : 0.f;
    for (int ib = 0; ib < 8; ib++) {
        int l = sm_nearest_int(id * scales[ib]);
        l = SM_QMAX(-32, SM_QMIN(31, l));
        float dl = d * (float)l;
        float idl = dl != 0 ? 1 / dl : 0.f;
        const float *xb = x + 32 * ib;
        for (int j = 0; j < 32; j++)
            L[j] = (uint8_t)iq4nl_best_index(idl * xb[j]);
        iq4_pack(L, y->qs + 16 * ib);
        l += 32;
        if (ib % 2 == 0)
            y->scales_l[ib / 2] = (uint8_t)(l & 0xf);
        else
            y->scales_l[ib / 2] |= (uint8_t)((l & 0xf) << 4);
        y->scales_h |= (uint16_t)((l >> 4) << (2 * ib));
    }
}

void sm_quantize_row_iq4_xs(const float *x, sm_block_iq4_xs *y, int64_t n_per_row, const float *qw)
{
    const int64_t nb = n_per_row / SM_QK_K;
    for (int64_t ib = 0; ib < nb; ib++)
        iq4xs_block(x + SM_QK_K * ib, &y[ib], qw ? qw + SM_QK_K * ib : NULL);
}

void sm_dequantize_row_iq4_xs(const sm_block_iq4_xs *x, float *y, int64_t k)
{
    const int64_t nb = k / SM_QK_K;
    for (int64_t i = 0; i < nb; i++) {
        const float d = sm_f16_to_f32(x[i].d);
        for (int ib = 0; ib < 8; ib++, y += 32) {
            int ls = ((x[i].scales_l[ib / 2] >> (4 * (ib % 2))) & 0xf) | (((x[i].scales_h >> (2 * ib)) & 3) << 4);
            const float dl = d * (float)(ls - 32);
            const uint8_t *qs = x[i].qs + 16 * ib;
            for (int j = 0; j < 16; j++) {
                y[j] = dl * (float)sm_iq4nl_values[qs[j] & 0xf];
                y[j + 16] = dl * (float)sm_iq4nl_values[qs[j] >> 4];
            }
        }
    }
}

void sm_quantize_row_iq4_nl(const float *x, sm_block_iq4_nl *y, int64_t n_per_row, const float *qw)
{
    const int64_t nb = n_per_row / SM_QK4_NL;
    for (int64_t ib = 0; ib < nb; ib++)
        iq4nl_block(x + SM_QK4_NL * ib, &y[ib], qw ? qw + SM_QK4_NL * ib : NULL);
}

void sm_dequantize_row_iq4_nl(const sm_block_iq4_nl *x, float *y, int64_t k)
{
    const int64_t nb = k / SM_QK4_NL;
    for (int64_t i = 0; i < nb; i++, y += SM_QK4_NL) {
        const float d = sm_f16_to_f32(x[i].d);
        for (int j = 0; j < 16; j++) {
            y[j] = d * (float)sm_iq4nl_values[x[i].qs[j] & 0xf];
            y[j + 16] = d * (float)sm_iq4nl_values[x[i].qs[j] >> 4];
        }
    }
}

/* ------------------------------------------------------------ dispatch */

bool sm_quantize_supported(uint32_t type)
{
    switch (type) {
    case SM_TYPE_F32: case SM_TYPE_F16: case SM_TYPE_BF16:
    case SM_TYPE_Q4_0: case SM_TYPE_Q4_1: case SM_TYPE_Q5_0: case SM_TYPE_Q5_1:
    case SM_TYPE_Q8_0: case SM_TYPE_IQ4_NL: case SM_TYPE_IQ4_XS:
    case SM_TYPE_Q2_K: case SM_TYPE_Q3_K: case SM_TYPE_Q4_K: case SM_TYPE_Q5_K: case SM_TYPE_Q6_K:
        return true;
    default:
        return false;
    }
}

bool sm_dequantize_supported(uint32_t type)
{
    return sm_quantize_supported(type) || type == SM_TYPE_Q8_1 || type == SM_TYPE_Q8_K;
}

bool sm_quantize_requires_imatrix(uint32_t type)
{
    return type == SM_TYPE_IQ2_XXS || type == SM_TYPE_IQ2_XS || type == SM_TYPE_IQ1_S;
}

bool sm_quantize_uses_imatrix(uint32_t type)
{
    return sm_quantize_supported(type) && type != SM_TYPE_Q8_0 && type != SM_TYPE_F32 &&
           type != SM_TYPE_F16 && type != SM_TYPE_BF16;
}

int sm_quantize_check(uint32_t type, int64_t nrows, int64_t n_per_row, sm_err *err)
{
    if (!sm_quantize_supported(type))
        return sm_err_set(err, SM_ETYPE, "quantize: type %s (%u) is not supported for quantization",
                          sm_type_name(type), type);
    const sm_type_info *ti = sm_type_get(type);
    if (nrows < 0 || n_per_row <= 0)
        return sm_err_set(err, SM_EINVAL, "quantize %s: bad shape %lld rows x %lld columns",
                          ti->name, (long long)nrows, (long long)n_per_row);
    if (n_per_row % ti->blck != 0)
        return sm_err_set(err, SM_EINVAL,
                          "quantize %s: row length %lld is not a multiple of the block size %u",
                          ti->name, (long long)n_per_row, ti->blck);
    uint64_t row_bytes = (uint64_t)(n_per_row / ti->blck) * ti->size;
    if (nrows > 0 && (row_bytes > (uint64_t)SIZE_MAX / (uint64_t)nrows || n_per_row > INT64_MAX / nrows))
        return sm_err_set(err, SM_ERANGE, "quantize %s: %lld rows of %llu bytes overflow size_t",
                          ti->name, (long long)nrows, (unsigned long long)row_bytes);
    return SM_OK;
}

size_t sm_quantize_rows(uint32_t type, const float *src, void *dst, int64_t nrows,
                        int64_t n_per_row, const float *imatrix)
{
    if (sm_quantize_check(type, nrows, n_per_row, NULL) < 0)
        return 0;
    const sm_type_info *ti = sm_type_get(type);
    const size_t row_size = (size_t)(n_per_row / ti->blck) * ti->size;
    const int64_t n = nrows * n_per_row;
    uint8_t *out = dst;

    switch (type) {
    case SM_TYPE_F32:
        memcpy(dst, src, (size_t)n * sizeof(float));
        return (size_t)n * sizeof(float);
    case SM_TYPE_F16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h = sm_f32_to_f16(src[i]);
            memcpy(out + 2 * i, &h, 2);
        }
        return (size_t)n * 2;
    case SM_TYPE_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h = sm_f32_to_bf16(src[i]);
            memcpy(out + 2 * i, &h, 2);
        }
        return (size_t)n * 2;
    case SM_TYPE_Q8_0:
        /* Q8_0 ignores the imatrix in llama.cpp */
        sm_quantize_row_q8_0(src, dst, n);
        return (size_t)nrows * row_size;
    default:
        break;
    }

    /* Without weights the K-quants and the 32-blocks run their reference
     * over the whole chunk (blocks are independent, so row by row is the
     * same); with weights each row runs the weighted search. IQ4_NL always
     * runs its search. */
    for (int64_t r = 0; r < nrows; r++) {
        const float *x = src + r * n_per_row;
        void *y = out + (size_t)r * row_size;
        const float *qw = imatrix;
        switch (type) {
        case SM_TYPE_Q4_0:
            if (qw) sm_quantize_row_q4_0_imat(x, y, n_per_row, qw);
            else sm_quantize_row_q4_0_ref(x, y, n_per_row);
            break;
        case SM_TYPE_Q4_1:
            if (qw) sm_quantize_row_q4_1_imat(x, y, n_per_row, qw);
            else sm_quantize_row_q4_1_ref(x, y, n_per_row);
            break;
        case SM_TYPE_Q5_0:
            if (qw) sm_quantize_row_q5_0_imat(x, y, n_per_row, qw);
            else sm_quantize_row_q5_0_ref(x, y, n_per_row);
            break;
        case SM_TYPE_Q5_1:
            if (qw) sm_quantize_row_q5_1_imat(x, y, n_per_row, qw);
            else sm_quantize_row_q5_1_ref(x, y, n_per_row);
            break;
        case SM_TYPE_Q2_K:
            if (qw) sm_quantize_row_q2_K_imat(x, y, n_per_row, qw);
            else sm_quantize_row_q2_K_ref(x, y, n_per_row);
            break;
        case SM_TYPE_Q3_K:
            if (qw) sm_quantize_row_q3_K_imat(x, y, n_per_row, qw);
            else sm_quantize_row_q3_K_ref(x, y, n_per_row);
            break;
        case SM_TYPE_Q4_K:
            if (qw) sm_quantize_row_q4_K_imat(x, y, n_per_row, qw);
            else sm_quantize_row_q4_K_ref(x, y, n_per_row);
            break;
        case SM_TYPE_Q5_K:
            if (qw) sm_quantize_row_q5_K_imat(x, y, n_per_row, qw);
            else sm_quantize_row_q5_K_ref(x, y, n_per_row);
            break;
        case SM_TYPE_Q6_K:
            if (qw) sm_quantize_row_q6_K_imat(x, y, n_per_row, qw);
            else sm_quantize_row_q6_K_ref(x, y, n_per_row);
            break;
        case SM_TYPE_IQ4_NL:
            sm_quantize_row_iq4_nl(x, y, n_per_row, qw);
            break;
        case SM_TYPE_IQ4_XS:
            sm_quantize_row_iq4_xs(x, y, n_per_row, qw);
            break;
        default:
            return 0; /* unreachable: sm_quantize_check filtered the type */
        }
    }
    return (size_t)nrows * row_size;
}

int sm_dequantize_row(uint32_t type, const void *src, float *dst, int64_t n)
{
    if (!sm_dequantize_supported(type))
        return SM_ETYPE;
    const sm_type_info *ti = sm_type_get(type);
    if (n < 0 || n % ti->blck != 0)
        return SM_EINVAL;
    const uint8_t *in = src;
    if (ti->blck > 1 && (uintptr_t)src % 8 != 0) {
        /* The block structs hold fp16/float fields and are read in place
         * only at an aligned address: the mapped tensor of a GGUF whose
         * general.alignment is 1 or 2 need not be (fuzz_quantize found it).
         * Such a row is decoded block by block from an aligned copy. */
        _Alignas(8) uint8_t blk[512];
        if (ti->size > sizeof blk)
            return SM_ETYPE;
        for (int64_t b = 0; b < n / ti->blck; b++) {
            memcpy(blk, in + (uint64_t)b * ti->size, ti->size);
            sm_dequantize_row(type, blk, dst + b * ti->blck, ti->blck);
        }
        return SM_OK;
    }
    switch (type) {
    case SM_TYPE_F32:
        memcpy(dst, src, (size_t)n * sizeof(float));
        break;
    case SM_TYPE_F16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, in + 2 * i, 2);
            dst[i] = sm_f16_to_f32(h);
        }
        break;
    case SM_TYPE_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, in + 2 * i, 2);
            dst[i] = sm_bf16_to_f32(h);
        }
        break;
    case SM_TYPE_Q4_0: sm_dequantize_row_q4_0(src, dst, n); break;
    case SM_TYPE_Q4_1: sm_dequantize_row_q4_1(src, dst, n); break;
    case SM_TYPE_Q5_0: sm_dequantize_row_q5_0(src, dst, n); break;
    case SM_TYPE_Q5_1: sm_dequantize_row_q5_1(src, dst, n); break;
    case SM_TYPE_Q8_0: sm_dequantize_row_q8_0(src, dst, n); break;
    case SM_TYPE_Q8_1: sm_dequantize_row_q8_1(src, dst, n); break;
    case SM_TYPE_IQ4_NL: sm_dequantize_row_iq4_nl(src, dst, n); break;
    case SM_TYPE_IQ4_XS: sm_dequantize_row_iq4_xs(src, dst, n); break;
    case SM_TYPE_Q2_K: sm_dequantize_row_q2_K(src, dst, n); break;
    case SM_TYPE_Q3_K: sm_dequantize_row_q3_K(src, dst, n); break;
    case SM_TYPE_Q4_K: sm_dequantize_row_q4_K(src, dst, n); break;
    case SM_TYPE_Q5_K: sm_dequantize_row_q5_K(src, dst, n); break;
    case SM_TYPE_Q6_K: sm_dequantize_row_q6_K(src, dst, n); break;
    case SM_TYPE_Q8_K: sm_dequantize_row_q8_K(src, dst, n); break;
    default:
        return SM_ETYPE;
    }
    return SM_OK;
}
