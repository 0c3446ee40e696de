/* quants_k.c — the K-quants (Q2_K..Q6_K) and Q8_K; the scale searches they
 * share with the imatrix paths live in quants_search.h.
 *
 * Bit-exactness notes (read before touching any expression):
 *   - every intermediate is float, evaluated left to right as written
 *     (a*b*c is (a*b)*c); integers enter float arithmetic by conversion at
 *     the same points as in ggml-quants.c;
 *   - levels are stored into uint8_t/int8_t at the same points ggml stores
 *     them, because later expressions read the truncated byte back;
 *   - f16 scales are rounded with sm_f32_to_f16 and read back with
 *     sm_f16_to_f32 where ggml re-reads y->d.
 * The build uses -ffp-contract=off so no multiply-add is fused. */
#include "quants_impl.h"
#include "quants_search.h"

#include <math.h>
#include <string.h>

/* ------------------------------------------------------------ packing */

/* 6-bit scale and min of sub-block j (0..7) from the 12-byte K4 layout:
 * j < 4: low 6 bits of bytes j and j+4; j >= 4: a nibble of byte j+4 plus
 * the top 2 bits of bytes j-4 (scale) and j (min). */
static void k4_get_scale_min(int j, const uint8_t *q, uint8_t *sc, uint8_t *mn)
{
    if (j < 4) {
        *sc = q[j] & 63;
        *mn = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *mn = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

static void k4_put_scale_min(int j, uint8_t *q, uint8_t ls, uint8_t lm)
{
    if (j < 4) {
        q[j] = ls;
        q[j + 4] = lm;
    } else {
        q[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
        q[j - 4] |= (uint8_t)((ls >> 4) << 6);
        q[j] |= (uint8_t)((lm >> 4) << 6);
    }
}

/* Q3_K: 16 six-bit scales (stored biased by +32): low nibbles in bytes 0..7,
 * high 2-bit pairs in bytes 8..11. */
static void q3k_put_scale(uint8_t *scales, int j, int l)
{
    if (j < 8)
        scales[j] = (uint8_t)(l & 0xF);
    else
        scales[j - 8] |= (uint8_t)((l & 0xF) << 4);
    l >>= 4;
    scales[j % 4 + 8] |= (uint8_t)(l << (2 * (j / 4)));
}

static int q3k_get_scale(const uint8_t *scales, int j)
{
    int lo = j < 8 ? (scales[j] & 0xF) : (scales[j - 8] >> 4);
    int hi = (scales[8 + j % 4] >> (2 * (j / 4))) & 3;
    return (lo | (hi << 4)) - 32;
}

/* Packs 2-bit levels: byte l of each 32-byte group holds elements l, l+32,
 * l+64, l+96 of a 128-element half. */
static void pack_2bit(const uint8_t *L, uint8_t *qs)
{
    for (int j = 0; j < SM_QK_K; j += 128)
        for (int l = 0; l < 32; l++)
            qs[j / 4 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) |
                                      (L[j + l + 96] << 6));
}

/* ------------------------------------------------------------ Q2_K */

/* Re-derives the 2-bit levels from the stored (rounded) scales and mins,
 * so the levels match what the decoder will multiply. */
static void q2k_requantize(const float *x, sm_block_q2_K *y, float dm, float mm, uint8_t *L)
{
    for (int j = 0; j < SM_QK_K / 16; j++) {
        const float d = dm * (float)(y->scales[j] & 0xF);
        if (d == 0)
            continue;
        const float m = mm * (float)(y->scales[j] >> 4);
        for (int ii = 0; ii < 16; ii++) {
            int l = sm_nearest_int((x[16 * j + ii] + m) / d);
            L[16 * j + ii] = (uint8_t)SM_QMAX(0, SM_QMIN(3, l));
        }
    }
}

void sm_quantize_row_q2_K_ref(const float *x, sm_block_q2_K *y, int64_t k)
{
    const int64_t nb = k / SM_QK_K;
    uint8_t L[SM_QK_K];
    uint8_t Laux[16];
    float weights[16];
    float mins[SM_QK_K / 16];
    float scales[SM_QK_K / 16];
    const float q4scale = 15.f;

    for (int64_t i = 0; i < nb; i++, x += SM_QK_K) {
        float max_scale = 0, max_min = 0; /* mins are subtracted: both >= 0 */
        for (int j = 0; j < SM_QK_K / 16; j++) {
            for (int l = 0; l < 16; l++)
                weights[l] = fabsf(x[16 * j + l]);
            scales[j] = sm_q_make_qkx2(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux,
                                       -0.5f, 0.1f, 15, 1);
            if (scales[j] > max_scale)
                max_scale = scales[j];
            if (mins[j] > max_min)
                max_min = mins[j];
        }
        if (max_scale > 0) {
            float iscale = q4scale / max_scale;
            for (int j = 0; j < SM_QK_K / 16; j++)
                y[i].scales[j] = sm_low_u8(sm_nearest_int(iscale * scales[j]));
            y[i].d = sm_f32_to_f16(max_scale / q4scale);
        } else {
            memset(y[i].scales, 0, sizeof y[i].scales);
            y[i].d = sm_f32_to_f16(0.f);
        }
        if (max_min > 0) {
            float iscale = q4scale / max_min;
            for (int j = 0; j < SM_QK_K / 16; j++) {
                int l = sm_nearest_int(iscale * mins[j]);
                y[i].scales[j] = sm_low_u8(y[i].scales[j] | (l << 4));
            }
            y[i].dmin = sm_f32_to_f16(max_min / q4scale);
        } else {
            y[i].dmin = sm_f32_to_f16(0.f);
        }
        q2k_requantize(x, &y[i], sm_f16_to_f32(y[i].d), sm_f16_to_f32(y[i].dmin), L);
        pack_2bit(L, y[i].qs);
    }
}

void sm_quantize_row_q2_K_imat(const float *x, sm_block_q2_K *y, int64_t n_per_row, const float *qw)
{
    if (!qw) { /* ggml asserts here; the reference is what a NULL means elsewhere */
        sm_quantize_row_q2_K_ref(x, y, n_per_row);
        return;
    }
    const int64_t nb = n_per_row / SM_QK_K;
    uint8_t L[SM_QK_K];
    uint8_t Laux[16];
    float mins[SM_QK_K / 16];
    float scales[SM_QK_K / 16];
    float sw[SM_QK_K / 16];
    float weight[16];
    uint8_t Ls[SM_QK_K / 16], Lm[SM_QK_K / 16];

    for (int64_t i = 0; i < nb; i++, x += SM_QK_K) {
        float sumx2 = 0;
        for (int j = 0; j < SM_QK_K; j++)
            sumx2 += x[j] * x[j];
        float sigma2 = sumx2 / SM_QK_K;
        for (int j = 0; j < SM_QK_K / 16; j++) {
            const float *w = qw + SM_QK_K * i + 16 * j;
            for (int l = 0; l < 16; l++)
                weight[l] = w[l] * sqrtf(sigma2 + x[16 * j + l] * x[16 * j + l]);
            sw[j] = 0;
            for (int l = 0; l < 16; l++)
                sw[j] += weight[l];
            scales[j] = sm_q_make_qkx3(16, 3, x + 16 * j, weight, L + 16 * j, &mins[j], Laux,
                                       -0.9f, 0.05f, 36, 0);
        }
        float dm = sm_q_make_qp(SM_QK_K / 16, 15, scales, Ls, sw);
        float mm = sm_q_make_qp(SM_QK_K / 16, 15, mins, Lm, sw);
        y[i].d = sm_f32_to_f16(dm);
        y[i].dmin = sm_f32_to_f16(mm);
        for (int j = 0; j < SM_QK_K / 16; j++)
            y[i].scales[j] = (uint8_t)(Ls[j] | (Lm[j] << 4));
        q2k_requantize(x, &y[i], sm_f16_to_f32(y[i].d), sm_f16_to_f32(y[i].dmin), L);
        pack_2bit(L, y[i].qs);
    }
}

void sm_dequantize_row_q2_K(const sm_block_q2_K *x, float *y, int64_t k)
{
    const int64_t nb = k / SM_QK_K;
    for (int64_t i = 0; i < nb; i++) {
        const float d = sm_f16_to_f32(x[i].d);
        const float mn = sm_f16_to_f32(x[i].dmin);
        /* element 128h + 32s + l sits in qs[32h + l] at bits 2s; each run of
         * 16 elements has its own scale/min nibble pair */
        for (int h = 0; h < 2; h++) {
            const uint8_t *q = x[i].qs + 32 * h;
            for (int s = 0; s < 4; s++) {
                for (int half = 0; half < 2; half++) {
                    uint8_t sc = x[i].scales[8 * h + 2 * s + half];
                    const float dl = d * (float)(sc & 0xF);
                    const float ml = mn * (float)(sc >> 4);
                    const uint8_t *qq = q + 16 * half;
                    for (int l = 0; l < 16; l++)
                        *y++ = dl * (float)((qq[l] >> (2 * s)) & 3) - ml;
                }
            }
        }
    }
}

/* ------------------------------------------------------------ Q3_K */

/* Levels from the stored scales, then the high bit goes to hmask (bit b of
 * byte m holds element 32*b + m) and the low 2 bits to qs. */
static void q3k_finish(const float *x, sm_block_q3_K *y, int8_t *L)
{
    const float d_all = sm_f16_to_f32(y->d);
    for (int j = 0; j < SM_QK_K / 16; j++) {
        float d = d_all * (float)q3k_get_scale(y->scales, j);
        if (d == 0)
            continue;
        for (int ii = 0; ii < 16; ii++) {
            int l = sm_nearest_int(x[16 * j + ii] / d);
            l = SM_QMAX(-4, SM_QMIN(3, l));
            L[16 * j + ii] = (int8_t)(l + 4);
        }
    }
    memset(y->hmask, 0, sizeof y->hmask);
    uint8_t Lu[SM_QK_K];
    for (int j = 0; j < SM_QK_K; j++) {
        int l = L[j];
        if (l > 3) {
            y->hmask[j % 32] |= (uint8_t)(1u << (j / 32));
            l -= 4;
        }
        Lu[j] = (uint8_t)l;
    }
    pack_2bit(Lu, y->qs);
}

void sm_quantize_row_q3_K_ref(const float *x, sm_block_q3_K *y, int64_t k)
{
    const int64_t nb = k / SM_QK_K;
    int8_t L[SM_QK_K];
    float scales[SM_QK_K / 16];

    for (int64_t i = 0; i < nb; i++, x += SM_QK_K) {
        float max_scale = 0, amax = 0;
        for (int j = 0; j < SM_QK_K / 16; j++) {
            scales[j] = sm_q_make_q3(16, 4, x + 16 * j, L + 16 * j, 1);
            float scale = fabsf(scales[j]);
            if (scale > amax) {
                amax = scale;
                max_scale = scales[j];
            }
        }
        memset(y[i].scales, 0, sizeof y[i].scales);
        if (max_scale != 0) {
            float iscale = -32.f / max_scale;
            for (int j = 0; j < SM_QK_K / 16; j++) {
                /* ggml keeps this level in an int8_t before clamping */
                int8_t l8 = sm_low_i8(sm_nearest_int(iscale * scales[j]));
                int l = SM_QMAX(-32, SM_QMIN(31, (int)l8)) + 32;
                q3k_put_scale(y[i].scales, j, l);
            }
            y[i].d = sm_f32_to_f16(1 / iscale);
        } else {
            y[i].d = sm_f32_to_f16(0.f);
        }
        q3k_finish(x, &y[i], L);
    }
}

void sm_quantize_row_q3_K_imat(const float *x, sm_block_q3_K *y, int64_t n_per_row, const float *qw)
{
    const int64_t nb = n_per_row / SM_QK_K;
    int8_t L[SM_QK_K];
    float scales[SM_QK_K / 16];
    float weight[16];
    float sw[SM_QK_K / 16];
    int8_t Ls[SM_QK_K / 16];

    for (int64_t i = 0; i < nb; i++, x += SM_QK_K) {
        float sumx2 = 0;
        for (int j = 0; j < SM_QK_K; j++)
            sumx2 += x[j] * x[j];
        float sigma2 = 2 * sumx2 / SM_QK_K;
        for (int j = 0; j < SM_QK_K / 16; j++) {
            if (qw) {
                const float *w = qw + SM_QK_K * i + 16 * j;
                for (int l = 0; l < 16; l++)
                    weight[l] = w[l] * sqrtf(sigma2 + x[16 * j + l] * x[16 * j + l]);
            } else {
                for (int l = 0; l < 16; l++)
                    weight[l] = x[16 * j + l] * x[16 * j + l];
            }
            float sumw = 0;
            for (int l = 0; l < 16; l++)
                sumw += weight[l];
            sw[j] = sumw;
            scales[j] = sm_q_make_qx(16, 4, x + 16 * j, L + 16 * j, 1, weight);
        }
        memset(y[i].scales, 0, sizeof y[i].scales);
        float d_block = sm_q_make_qx(SM_QK_K / 16, 32, scales, Ls, 1, sw);
        for (int j = 0; j < SM_QK_K / 16; j++)
            q3k_put_scale(y[i].scales, j, Ls[j]);
        y[i].d = sm_f32_to_f16(d_block);
        q3k_finish(x, &y[i], L);
    }
}

void sm_dequantize_row_q3_K(const sm_block_q3_K *x, float *y, int64_t k)
{
    const int64_t nb = k / SM_QK_K;
    for (int64_t i = 0; i < nb; i++) {
        const float d_all = sm_f16_to_f32(x[i].d);
        float dl[16];
        for (int j = 0; j < 16; j++)
            dl[j] = d_all * (float)q3k_get_scale(x[i].scales, j);
        /* element 128h + 32s + l: 2 low bits in qs[32h + l] at bits 2s, the
         * high bit in hmask[l] bit 4h + s (set means no -4 offset) */
        for (int h = 0; h < 2; h++) {
            const uint8_t *q = x[i].qs + 32 * h;
            for (int s = 0; s < 4; s++) {
                const uint8_t m = (uint8_t)(1u << (4 * h + s));
                for (int half = 0; half < 2; half++) {
                    const float dh = dl[8 * h + 2 * s + half];
                    for (int l = 16 * half; l < 16 * half + 16; l++) {
                        int v = ((q[l] >> (2 * s)) & 3) - ((x[i].hmask[l] & m) ? 0 : 4);
                        *y++ = dh * (float)v;
                    }
                }
            }
        }
    }
}

/* ------------------------------------------------------------ Q4_K / Q5_K */

/* Levels of sub-block j from the stored 6-bit scale/min, clamped to nmax. */
static void k4_requantize(const float *x, const uint8_t *scales, uint16_t d16, uint16_t dmin16,
                          int nmax, uint8_t *L)
{
    for (int j = 0; j < SM_QK_K / 32; j++) {
        uint8_t sc, m;
        k4_get_scale_min(j, scales, &sc, &m);
        const float d = sm_f16_to_f32(d16) * (float)sc;
        if (d == 0)
            continue;
        const float dm = sm_f16_to_f32(dmin16) * (float)m;
        for (int ii = 0; ii < 32; ii++) {
            int l = sm_nearest_int((x[32 * j + ii] + dm) / d);
            L[32 * j + ii] = (uint8_t)SM_QMAX(0, SM_QMIN(nmax, l));
        }
    }
}

/* The no-imatrix search shared by Q4_K and Q5_K: per sub-block weights
 * av_x + |x|, make_qkx2, then scales/mins quantized to 6 bits against the
 * largest of each. */
static void k4_ref_scales(const float *x, int nmax, float rmin, int nstep, uint8_t *L,
                          uint8_t *scales_out, uint16_t *d, uint16_t *dmin)
{
    uint8_t Laux[32];
    float weights[32];
    float mins[SM_QK_K / 32];
    float scales[SM_QK_K / 32];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < SM_QK_K / 32; j++) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++)
            sum_x2 += x[32 * j + l] * x[32 * j + l];
        float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++)
            weights[l] = av_x + fabsf(x[32 * j + l]);
        scales[j] = sm_q_make_qkx2(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux,
                                   rmin, 0.1f, nstep, 0);
        if (scales[j] > max_scale)
            max_scale = scales[j];
        if (mins[j] > max_min)
            max_min = mins[j];
    }
    float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    for (int j = 0; j < SM_QK_K / 32; j++) {
        uint8_t ls = sm_low_u8(sm_nearest_int(inv_scale * scales[j]));
        uint8_t lm = sm_low_u8(sm_nearest_int(inv_min * mins[j]));
        ls = SM_QMIN(63, ls);
        lm = SM_QMIN(63, lm);
        k4_put_scale_min(j, scales_out, ls, lm);
    }
    *d = sm_f32_to_f16(max_scale / 63.f);
    *dmin = sm_f32_to_f16(max_min / 63.f);
}

/* The imatrix search shared by Q4_K and Q5_K (make_qkx3 + make_qp). clamp63
 * repeats Q5_K's MIN(63, .) on the levels (a no-op unless a byte wrapped). */
static void k4_imat_scales(const float *x, const float *qw, int nmax, int clamp63, uint8_t *L,
                           uint8_t *scales_out, uint16_t *d, uint16_t *dmin)
{
    uint8_t Laux[32];
    uint8_t Ls[SM_QK_K / 32], Lm[SM_QK_K / 32];
    float weights[32];
    float sw[SM_QK_K / 32];
    float mins[SM_QK_K / 32];
    float scales[SM_QK_K / 32];

    float sum_x2 = 0;
    for (int l = 0; l < SM_QK_K; l++)
        sum_x2 += x[l] * x[l];
    float sigma2 = 2 * sum_x2 / SM_QK_K;
    float av_x = sqrtf(sigma2);
    for (int j = 0; j < SM_QK_K / 32; j++) {
        if (qw) {
            const float *w = qw + 32 * j;
            for (int l = 0; l < 32; l++)
                weights[l] = w[l] * sqrtf(sigma2 + x[32 * j + l] * x[32 * j + l]);
        } else {
            for (int l = 0; l < 32; l++)
                weights[l] = av_x + fabsf(x[32 * j + l]);
        }
        float sumw = 0;
        for (int l = 0; l < 32; l++)
            sumw += weights[l];
        sw[j] = sumw;
        scales[j] = sm_q_make_qkx3(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux,
                                   -0.9f, 0.05f, 36, 0);
    }
    float d_block = sm_q_make_qp(SM_QK_K / 32, 63, scales, Ls, sw);
    float m_block = sm_q_make_qp(SM_QK_K / 32, 63, mins, Lm, sw);
    for (int j = 0; j < SM_QK_K / 32; j++) {
        uint8_t ls = Ls[j], lm = Lm[j];
        if (clamp63) {
            ls = SM_QMIN(63, ls);
            lm = SM_QMIN(63, lm);
        }
        k4_put_scale_min(j, scales_out, ls, lm);
    }
    *d = sm_f32_to_f16(d_block);
    *dmin = sm_f32_to_f16(m_block);
}

static void q4k_pack(const uint8_t *L, uint8_t *qs)
{
    for (int j = 0; j < SM_QK_K; j += 64)
        for (int l = 0; l < 32; l++)
            qs[j / 2 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
}

/* Q5_K: low nibbles as Q4_K; the 5th bit of element 64*p + l (l < 32) goes
 * to qh[l] bit 2p, of element 64*p + 32 + l to bit 2p+1. */
static void q5k_pack(const uint8_t *L, uint8_t *qh, uint8_t *qs)
{
    memset(qh, 0, 32);
    for (int p = 0; p < 4; p++) {
        for (int j = 0; j < 32; j++) {
            int l1 = L[64 * p + j], l2 = L[64 * p + j + 32];
            if (l1 > 15) {
                l1 -= 16;
                qh[j] |= (uint8_t)(1u << (2 * p));
            }
            if (l2 > 15) {
                l2 -= 16;
                qh[j] |= (uint8_t)(2u << (2 * p));
            }
            qs[32 * p + j] = (uint8_t)(l1 | (l2 << 4));
        }
    }
}

void sm_quantize_row_q4_K_ref(const float *x, sm_block_q4_K *y, int64_t k)
{
    const int64_t nb = k / SM_QK_K;
    uint8_t L[SM_QK_K];
    for (int64_t i = 0; i < nb; i++, x += SM_QK_K) {
        memset(y[i].scales, 0, sizeof y[i].scales);
        k4_ref_scales(x, 15, -1.f, 20, L, y[i].scales, &y[i].d, &y[i].dmin);
        k4_requantize(x, y[i].scales, y[i].d, y[i].dmin, 15, L);
        q4k_pack(L, y[i].qs);
    }
}

void sm_quantize_row_q4_K_imat(const float *x, sm_block_q4_K *y, int64_t n_per_row, const float *qw)
{
    const int64_t nb = n_per_row / SM_QK_K;
    uint8_t L[SM_QK_K];
    for (int64_t i = 0; i < nb; i++, x += SM_QK_K) {
        memset(y[i].scales, 0, sizeof y[i].scales);
        k4_imat_scales(x, qw ? qw + SM_QK_K * i : NULL, 15, 0, L, y[i].scales, &y[i].d, &y[i].dmin);
        k4_requantize(x, y[i].scales, y[i].d, y[i].dmin, 15, L);
        q4k_pack(L, y[i].qs);
    }
}

void sm_quantize_row_q5_K_ref(const float *x, sm_block_q5_K *y, int64_t k)
{
    const int64_t nb = k / SM_QK_K;
    uint8_t L[SM_QK_K];
    for (int64_t i = 0; i < nb; i++, x += SM_QK_K) {
        memset(y[i].scales, 0, sizeof y[i].scales);
        k4_ref_scales(x, 31, -0.5f, 15, L, y[i].scales, &y[i].d, &y[i].dmin);
        k4_requantize(x, y[i].scales, y[i].d, y[i].dmin, 31, L);
        q5k_pack(L, y[i].qh, y[i].qs);
    }
}

void sm_quantize_row_q5_K_imat(const float *x, sm_block_q5_K *y, int64_t n_per_row, const float *qw)
{
    const int64_t nb = n_per_row / SM_QK_K;
    uint8_t L[SM_QK_K];
    for (int64_t i = 0; i < nb; i++, x += SM_QK_K) {
        memset(y[i].scales, 0, sizeof y[i].scales);
        k4_imat_scales(x, qw ? qw + SM_QK_K * i : NULL, 31, 1, L, y[i].scales, &y[i].d, &y[i].dmin);
        k4_requantize(x, y[i].scales, y[i].d, y[i].dmin, 31, L);
        q5k_pack(L, y[i].qh, y[i].qs);
    }
}

void sm_dequantize_row_q4_K_scalar(const sm_block_q4_K *x, float *y, int64_t k)
{
    const int64_t nb = k / SM_QK_K;
    for (int64_t i = 0; i < nb; i++) {
        const float d = sm_f16_to_f32(x[i].d);
        const float mn = sm_f16_to_f32(x[i].dmin);
        for (int j = 0; j < SM_QK_K / 32; j++) {
            uint8_t sc, m;
            k4_get_scale_min(j, x[i].scales, &sc, &m);
            const float d1 = d * (float)sc, m1 = mn * (float)m;
            const uint8_t *q = x[i].qs + 32 * (j / 2);
            int shift = 4 * (j % 2);
            for (int l = 0; l < 32; l++)
                *y++ = d1 * (float)((q[l] >> shift) & 0xF) - m1;
        }
    }
}

void sm_dequantize_row_q5_K(const sm_block_q5_K *x, float *y, int64_t k)
{
    const int64_t nb = k / SM_QK_K;
    for (int64_t i = 0; i < nb; i++) {
        const float d = sm_f16_to_f32(x[i].d);
        const float mn = sm_f16_to_f32(x[i].dmin);
        for (int j = 0; j < SM_QK_K / 32; j++) {
            uint8_t sc, m;
            k4_get_scale_min(j, x[i].scales, &sc, &m);
            const float d1 = d * (float)sc, m1 = mn * (float)m;
            const uint8_t *q = x[i].qs + 32 * (j / 2);
            const int shift = 4 * (j % 2);
            const uint8_t hbit = (uint8_t)(1u << j);
            for (int l = 0; l < 32; l++) {
                int v = ((q[l] >> shift) & 0xF) + ((x[i].qh[l] & hbit) ? 16 : 0);
                *y++ = d1 * (float)v - m1;
            }
        }
    }
}

/* ------------------------------------------------------------ Q6_K */

/* Shared tail of both Q6_K paths: 8-bit sub-scales against the largest
 * one, levels from the stored scales, 4+2-bit packing. */
static void q6k_finish(const float *x, sm_block_q6_K *y, const float *scales, float max_scale,
                       int8_t *L)
{
    float iscale = -128.f / max_scale;
    y->d = sm_f32_to_f16(1 / iscale);
    for (int ib = 0; ib < SM_QK_K / 16; ib++)
        y->scales[ib] = sm_low_i8(SM_QMIN(127, sm_nearest_int(iscale * scales[ib])));
    for (int j = 0; j < SM_QK_K / 16; j++) {
        float d = sm_f16_to_f32(y->d) * (float)y->scales[j];
        if (d == 0)
            continue;
        for (int ii = 0; ii < 16; ii++) {
            int l = sm_nearest_int(x[16 * j + ii] / d);
            l = SM_QMAX(-32, SM_QMIN(31, l));
            L[16 * j + ii] = (int8_t)(l + 32);
        }
    }
    /* byte l of ql[64h..] holds elements l (low) and l+64 (high nibble);
     * byte l+32 holds l+32 and l+96; qh[32h + l] the top 2 bits of all four */
    for (int h = 0; h < 2; h++) {
        const int8_t *Lh = L + 128 * h;
        uint8_t *ql = y->ql + 64 * h;
        uint8_t *qh = y->qh + 32 * h;
        for (int l = 0; l < 32; l++) {
            uint8_t q1 = Lh[l] & 0xF, q2 = Lh[l + 32] & 0xF;
            uint8_t q3 = Lh[l + 64] & 0xF, q4 = Lh[l + 96] & 0xF;
            ql[l] = (uint8_t)(q1 | (q3 << 4));
            ql[l + 32] = (uint8_t)(q2 | (q4 << 4));
            qh[l] = (uint8_t)((Lh[l] >> 4) | ((Lh[l + 32] >> 4) << 2) | ((Lh[l + 64] >> 4) << 4) |
                              ((Lh[l + 96] >> 4) << 6));
        }
    }
}

static void q6k_block(const float *x, sm_block_q6_K *y, const float *qw)
{
    int8_t L[SM_QK_K];
    float scales[SM_QK_K / 16];
    float max_scale = 0, max_abs_scale = 0;
    for (int ib = 0; ib < SM_QK_K / 16; ib++) {
        const float scale = sm_q_make_qx(16, 32, x + 16 * ib, L + 16 * ib, 1, qw ? qw + 16 * ib : NULL);
        scales[ib] = scale;
        const float abs_scale = fabsf(scale);
        if (abs_scale > max_abs_scale) {
            max_abs_scale = abs_scale;
            max_scale = scale;
        }
    }
    if (max_abs_scale < SM_GROUP_MAX_EPS) {
        memset(y, 0, sizeof *y);
        y->d = sm_f32_to_f16(0.f);
        return;
    }
    q6k_finish(x, y, scales, max_scale, L);
}

void sm_quantize_row_q6_K_ref(const float *x, sm_block_q6_K *y, int64_t k)
{
    const int64_t nb = k / SM_QK_K;
    for (int64_t i = 0; i < nb; i++)
        q6k_block(x + SM_QK_K * i, &y[i], NULL);
}

void sm_quantize_row_q6_K_imat(const float *x, sm_block_q6_K *y, int64_t n_per_row, const float *qw)
{
    const int64_t nb = n_per_row / SM_QK_K;
    for (int64_t i = 0; i < nb; i++)
        q6k_block(x + SM_QK_K * i, &y[i], qw ? qw + SM_QK_K * i : NULL);
}

void sm_dequantize_row_q6_K_scalar(const sm_block_q6_K *x, float *y, int64_t k)
{
    const int64_t nb = k / SM_QK_K;
    for (int64_t i = 0; i < nb; i++) {
        const float d = sm_f16_to_f32(x[i].d);
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = x[i].ql + 64 * h;
            const uint8_t *qh = x[i].qh + 32 * h;
            const int8_t *sc = x[i].scales + 8 * h;
            float *yh = y + i * SM_QK_K + 128 * h;
            for (int l = 0; l < 32; l++) {
                int is = l / 16;
                int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                yh[l] = d * (float)sc[is + 0] * (float)q1;
                yh[l + 32] = d * (float)sc[is + 2] * (float)q2;
                yh[l + 64] = d * (float)sc[is + 4] * (float)q3;
                yh[l + 96] = d * (float)sc[is + 6] * (float)q4;
            }
        }
    }
}

/* ------------------------------------------------------------ Q8_K */

void sm_quantize_row_q8_K_ref(const float *x, sm_block_q8_K *y, int64_t k)
{
    const int64_t nb = k / SM_QK_K;
    for (int64_t i = 0; i < nb; i++, x += SM_QK_K) {
        float max = 0, amax = 0;
        for (int j = 0; j < SM_QK_K; j++) {
            float ax = fabsf(x[j]);
            if (ax > amax) {
                amax = ax;
                max = x[j];
            }
        }
        if (amax == 0) {
            y[i].d = 0;
            memset(y[i].qs, 0, sizeof y[i].qs);
            /* ggml leaves bsums untouched here; zero is what they sum to */
            memset(y[i].bsums, 0, sizeof y[i].bsums);
            continue;
        }
        /* -127 (not -128) so the largest magnitude maps to -127 */
        const float iscale = -127.f / max;
        for (int j = 0; j < SM_QK_K; j++) {
            int v = sm_nearest_int(iscale * x[j]);
            y[i].qs[j] = sm_low_i8(SM_QMIN(127, v));
        }
        for (int j = 0; j < SM_QK_K / 16; j++) {
            int sum = 0;
            for (int ii = 0; ii < 16; ii++)
                sum += y[i].qs[16 * j + ii];
            y[i].bsums[j] = (int16_t)sum;
        }
        y[i].d = 1 / iscale;
    }
}

void sm_dequantize_row_q8_K(const sm_block_q8_K *x, float *y, int64_t k)
{
    const int64_t nb = k / SM_QK_K;
    for (int64_t i = 0; i < nb; i++)
        for (int j = 0; j < SM_QK_K; j++)
            *y++ = x[i].d * (float)x[i].qs[j];
}
