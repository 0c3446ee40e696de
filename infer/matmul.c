#include "matmul.h"

#include "fp16.h"
#include "types.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int mm_kind_of(uint32_t type)
{
    switch (type) {
    case SM_TYPE_Q4_0:
    case SM_TYPE_Q5_0:
    case SM_TYPE_Q8_0:
    case SM_TYPE_IQ4_NL: return MM_B32;
    case SM_TYPE_Q4_1:
    case SM_TYPE_Q5_1: return MM_B32M;
    case SM_TYPE_Q2_K:
    case SM_TYPE_Q3_K:
    case SM_TYPE_Q4_K:
    case SM_TYPE_Q5_K:
    case SM_TYPE_Q6_K: return MM_K;
    default: return MM_FLOAT;
    }
}

int mm_row_alloc(mm_row *r, int64_t n)
{
    memset(r, 0, sizeof *r);
    const size_t e = (size_t)(n > 0 ? n : 1);
    r->q = malloc(e);
    r->d = malloc((e / 32 + 1) * sizeof(float));
    r->m = malloc((e / 32 + 1) * sizeof(float));
    r->sc = malloc((e / 16 + 1) * sizeof(int16_t));
    r->mn = malloc((e / 16 + 1) * sizeof(int16_t));
    r->w = malloc(e * sizeof(int16_t));
    if (r->q && r->d && r->m && r->sc && r->mn && r->w)
        return 0;
    mm_row_free(r);
    return -1;
}

void mm_row_free(mm_row *r)
{
    free(r->q);
    free(r->d);
    free(r->m);
    free(r->sc);
    free(r->mn);
    free(r->w);
    memset(r, 0, sizeof *r);
}

uint64_t mm_act_bytes(int kind, int64_t n)
{
    switch (kind) {
    case MM_B32: return (uint64_t)(n / 32) * sizeof(sm_block_q8_0);
    case MM_B32M: return (uint64_t)(n / 32) * sizeof(sm_block_q8_1);
    case MM_K: return (uint64_t)(n / 256) * sizeof(sm_block_q8_K);
    default: return (uint64_t)n * sizeof(float);
    }
}

void mm_quantize_act(int kind, const float *x, void *dst, int64_t n)
{
    switch (kind) {
    case MM_B32: sm_quantize_row_q8_0_act(x, dst, n); break;
    case MM_B32M: sm_quantize_row_q8_1_act(x, dst, n); break;
    case MM_K: sm_quantize_row_q8_K(x, dst, n); break;
    default: memcpy(dst, x, (size_t)n * sizeof(float)); break;
    }
}

static float h2f(uint16_t h) { return sm_f16_to_f32(h); }

/* ------------------------------------------------------------ unpack */

static void unpack_b32(uint32_t type, const uint8_t *src, int64_t n, mm_row *r)
{
    for (int64_t b = 0; b < n / 32; b++) {
        int8_t *q = r->q + b * 32;
        switch (type) {
        case SM_TYPE_Q4_0: {
            const sm_block_q4_0 *x = (const sm_block_q4_0 *)(const void *)src + b;
            r->d[b] = h2f(x->d);
            for (int j = 0; j < 16; j++) {
                q[j] = (int8_t)((x->qs[j] & 0xF) - 8);
                q[j + 16] = (int8_t)((x->qs[j] >> 4) - 8);
            }
            break;
        }
        case SM_TYPE_Q4_1: {
            const sm_block_q4_1 *x = (const sm_block_q4_1 *)(const void *)src + b;
            r->d[b] = h2f(x->d);
            r->m[b] = h2f(x->m);
            for (int j = 0; j < 16; j++) {
                q[j] = (int8_t)(x->qs[j] & 0xF);
                q[j + 16] = (int8_t)(x->qs[j] >> 4);
            }
            break;
        }
        case SM_TYPE_Q5_0:
        case SM_TYPE_Q5_1: {
            const uint8_t *qh_p, *qs;
            int off;
            if (type == SM_TYPE_Q5_0) {
                const sm_block_q5_0 *x = (const sm_block_q5_0 *)(const void *)src + b;
                r->d[b] = h2f(x->d);
                qh_p = x->qh;
                qs = x->qs;
                off = 16;
            } else {
                const sm_block_q5_1 *x = (const sm_block_q5_1 *)(const void *)src + b;
                r->d[b] = h2f(x->d);
                r->m[b] = h2f(x->m);
                qh_p = x->qh;
                qs = x->qs;
                off = 0;
            }
            uint32_t qh = (uint32_t)qh_p[0] | (uint32_t)qh_p[1] << 8 | (uint32_t)qh_p[2] << 16 |
                          (uint32_t)qh_p[3] << 24;
            for (int j = 0; j < 16; j++) {
                int h0 = (int)((qh >> j) & 1u) << 4;
                int h1 = (int)((qh >> (j + 16)) & 1u) << 4;
                q[j] = (int8_t)(((qs[j] & 0xF) | h0) - off);
                q[j + 16] = (int8_t)(((qs[j] >> 4) | h1) - off);
            }
            break;
        }
        case SM_TYPE_Q8_0: {
            const sm_block_q8_0 *x = (const sm_block_q8_0 *)(const void *)src + b;
            r->d[b] = h2f(x->d);
            memcpy(q, x->qs, 32);
            break;
        }
        case SM_TYPE_IQ4_NL: {
            const sm_block_iq4_nl *x = (const sm_block_iq4_nl *)(const void *)src + b;
            r->d[b] = h2f(x->d);
            for (int j = 0; j < 16; j++) {
                q[j] = sm_iq4nl_values[x->qs[j] & 0xF];
                q[j + 16] = sm_iq4nl_values[x->qs[j] >> 4];
            }
            break;
        }
        default: break;
        }
    }
}

/* 6-bit scale and min j of a q4_K/q5_K block (12 packed bytes). */
static void scale_min_k4(int j, const uint8_t *s, int *sc, int *mn)
{
    if (j < 4) {
        *sc = s[j] & 63;
        *mn = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
        *mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

static void unpack_k(uint32_t type, const uint8_t *src, int64_t n, mm_row *r)
{
    for (int64_t b = 0; b < n / 256; b++) {
        int8_t *q = r->q + b * 256;
        int16_t *sc = r->sc + b * 16, *mn = r->mn + b * 16;
        switch (type) {
        case SM_TYPE_Q2_K: {
            const sm_block_q2_K *x = (const sm_block_q2_K *)(const void *)src + b;
            r->d[b] = h2f(x->d);
            r->m[b] = h2f(x->dmin);
            for (int g = 0; g < 16; g++) {
                sc[g] = x->scales[g] & 0xF;
                mn[g] = x->scales[g] >> 4;
            }
            for (int h = 0; h < 2; h++)
                for (int j = 0; j < 4; j++)
                    for (int l = 0; l < 32; l++)
                        q[h * 128 + j * 32 + l] = (int8_t)((x->qs[h * 32 + l] >> (2 * j)) & 3);
            break;
        }
        case SM_TYPE_Q3_K: {
            const sm_block_q3_K *x = (const sm_block_q3_K *)(const void *)src + b;
            r->d[b] = h2f(x->d);
            r->m[b] = 0.0f;
            const uint8_t *s = x->scales;
            for (int g = 0; g < 16; g++) {
                /* low 4 bits: bytes 0..7 (nibble by g/8), high 2 bits: bytes 8..11 */
                int lo = g < 8 ? (s[g] & 0xF) : (s[g - 8] >> 4);
                int hi = (s[8 + (g % 4)] >> (2 * (g / 4))) & 3;
                sc[g] = (int16_t)((lo | (hi << 4)) - 32);
                mn[g] = 0;
            }
            for (int h = 0; h < 2; h++)
                for (int j = 0; j < 4; j++)
                    for (int l = 0; l < 32; l++) {
                        int v = (x->qs[h * 32 + l] >> (2 * j)) & 3;
                        int hb = x->hmask[l] & (1 << (h * 4 + j));
                        q[h * 128 + j * 32 + l] = (int8_t)(v - (hb ? 0 : 4));
                    }
            break;
        }
        case SM_TYPE_Q4_K:
        case SM_TYPE_Q5_K: {
            const uint8_t *scales, *qs, *qh = NULL;
            if (type == SM_TYPE_Q4_K) {
                const sm_block_q4_K *x = (const sm_block_q4_K *)(const void *)src + b;
                r->d[b] = h2f(x->d);
                r->m[b] = h2f(x->dmin);
                scales = x->scales;
                qs = x->qs;
            } else {
                const sm_block_q5_K *x = (const sm_block_q5_K *)(const void *)src + b;
                r->d[b] = h2f(x->d);
                r->m[b] = h2f(x->dmin);
                scales = x->scales;
                qs = x->qs;
                qh = x->qh;
            }
            for (int j = 0; j < 8; j++) {
                int s, m;
                scale_min_k4(j, scales, &s, &m);
                sc[2 * j] = sc[2 * j + 1] = (int16_t)s;
                mn[2 * j] = mn[2 * j + 1] = (int16_t)m;
            }
            for (int c = 0; c < 4; c++) /* 64-element chunks */
                for (int l = 0; l < 32; l++) {
                    int v0 = qs[c * 32 + l] & 0xF, v1 = qs[c * 32 + l] >> 4;
                    if (qh) {
                        v0 |= ((qh[l] >> (2 * c)) & 1) << 4;
                        v1 |= ((qh[l] >> (2 * c + 1)) & 1) << 4;
                    }
                    q[c * 64 + l] = (int8_t)v0;
                    q[c * 64 + 32 + l] = (int8_t)v1;
                }
            break;
        }
        case SM_TYPE_Q6_K: {
            const sm_block_q6_K *x = (const sm_block_q6_K *)(const void *)src + b;
            r->d[b] = h2f(x->d);
            r->m[b] = 0.0f;
            for (int g = 0; g < 16; g++) {
                sc[g] = x->scales[g];
                mn[g] = 0;
            }
            for (int h = 0; h < 2; h++) {
                const uint8_t *ql = x->ql + h * 64, *qh = x->qh + h * 32;
                int8_t *o = q + h * 128;
                for (int l = 0; l < 32; l++) {
                    o[l] = (int8_t)(((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32);
                    o[l + 32] = (int8_t)(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
                    o[l + 64] = (int8_t)(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
                    o[l + 96] = (int8_t)(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
                }
            }
            break;
        }
        default: break;
        }
    }
}

#if defined(__x86_64__)
#include <immintrin.h>

static int mm_avx2 = -1;

void mm_force_portable(int on)
{
    mm_avx2 = on ? 0 : -1;
}

static int have_avx2(void)
{
    if (mm_avx2 < 0)
        mm_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && !getenv("SMELT_NO_AVX2");
    return mm_avx2;
}

/* Stores 32 int8 lanes v times scales s0 (lanes 0..15) and s1 (16..31) as
 * int16 into w[32]. */
__attribute__((target("avx2"))) static void store_scaled(int16_t *w, __m256i v, int s0, int s1)
{
    __m256i a = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(v));
    __m256i b = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(v, 1));
    _mm256_storeu_si256((__m256i *)(void *)w, _mm256_mullo_epi16(a, _mm256_set1_epi16((int16_t)s0)));
    _mm256_storeu_si256((__m256i *)(void *)(w + 16), _mm256_mullo_epi16(b, _mm256_set1_epi16((int16_t)s1)));
}

/* Vector unpack of the row types that dominate real files straight into
 * w (levels times sub-block scale); q is not filled. Returns 0 when the
 * type has no vector path. */
__attribute__((target("avx2"))) static int unpack_avx2(uint32_t type, const uint8_t *src, int64_t n, mm_row *r)
{
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    if (type == SM_TYPE_Q4_K) {
        for (int64_t b = 0; b < n / 256; b++) {
            const sm_block_q4_K *x = (const sm_block_q4_K *)(const void *)src + b;
            int16_t *sc = r->sc + b * 16, *mn = r->mn + b * 16, *w = r->w + b * 256;
            r->d[b] = h2f(x->d);
            r->m[b] = h2f(x->dmin);
            int s8[8];
            for (int j = 0; j < 8; j++) {
                int sv, mv;
                scale_min_k4(j, x->scales, &sv, &mv);
                s8[j] = sv;
                sc[2 * j] = sc[2 * j + 1] = (int16_t)sv;
                mn[2 * j] = mn[2 * j + 1] = (int16_t)mv;
            }
            for (int c = 0; c < 4; c++) {
                __m256i qb = _mm256_loadu_si256((const __m256i *)(const void *)(x->qs + c * 32));
                __m256i lo = _mm256_and_si256(qb, m4);
                __m256i hi = _mm256_and_si256(_mm256_srli_epi16(qb, 4), m4);
                store_scaled(w + c * 64, lo, s8[2 * c], s8[2 * c]);
                store_scaled(w + c * 64 + 32, hi, s8[2 * c + 1], s8[2 * c + 1]);
            }
        }
        return 1;
    }
    if (type == SM_TYPE_Q6_K) {
        const __m256i m2 = _mm256_set1_epi8(3), k32 = _mm256_set1_epi8(32);
        for (int64_t b = 0; b < n / 256; b++) {
            const sm_block_q6_K *x = (const sm_block_q6_K *)(const void *)src + b;
            int16_t *sc = r->sc + b * 16, *mn = r->mn + b * 16, *w = r->w + b * 256;
            r->d[b] = h2f(x->d);
            r->m[b] = 0.0f;
            for (int g = 0; g < 16; g++) {
                sc[g] = x->scales[g];
                mn[g] = 0;
            }
            for (int h = 0; h < 2; h++) {
                const uint8_t *ql = x->ql + h * 64, *qh = x->qh + h * 32;
                const int16_t *s = sc + h * 8;
                __m256i l0 = _mm256_loadu_si256((const __m256i *)(const void *)ql);
                __m256i l1 = _mm256_loadu_si256((const __m256i *)(const void *)(ql + 32));
                __m256i hb = _mm256_loadu_si256((const __m256i *)(const void *)qh);
                __m256i q1 = _mm256_or_si256(_mm256_and_si256(l0, m4),
                                             _mm256_slli_epi16(_mm256_and_si256(hb, m2), 4));
                __m256i q2 = _mm256_or_si256(_mm256_and_si256(l1, m4),
                                             _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2), m2), 4));
                __m256i q3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                                             _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 4), m2), 4));
                __m256i q4 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                             _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 6), m2), 4));
                int16_t *o = w + h * 128;
                store_scaled(o, _mm256_sub_epi8(q1, k32), s[0], s[1]);
                store_scaled(o + 32, _mm256_sub_epi8(q2, k32), s[2], s[3]);
                store_scaled(o + 64, _mm256_sub_epi8(q3, k32), s[4], s[5]);
                store_scaled(o + 96, _mm256_sub_epi8(q4, k32), s[6], s[7]);
            }
        }
        return 1;
    }
    if (type == SM_TYPE_Q8_0) {
        for (int64_t b = 0; b < n / 32; b++) {
            const sm_block_q8_0 *x = (const sm_block_q8_0 *)(const void *)src + b;
            r->d[b] = h2f(x->d);
            store_scaled(r->w + b * 32, _mm256_loadu_si256((const __m256i *)(const void *)x->qs), 1, 1);
        }
        return 1;
    }
    return 0;
}
#endif

#if !defined(__x86_64__)
void mm_force_portable(int on) { (void)on; }
#endif

void mm_unpack_row(uint32_t type, const uint8_t *src, int64_t n, mm_row *r)
{
    r->type = type;
#if defined(__x86_64__)
    if (have_avx2() && unpack_avx2(type, src, n, r))
        return;
#endif
    if (mm_kind_of(type) == MM_K) {
        unpack_k(type, src, n, r);
        for (int64_t e = 0; e < n; e++)
            r->w[e] = (int16_t)(r->q[e] * r->sc[e / 16]);
    } else {
        unpack_b32(type, src, n, r);
        for (int64_t e = 0; e < n; e++)
            r->w[e] = r->q[e];
    }
}

void mm_widen_act(int kind, const void *act, int16_t *act16, int64_t n)
{
    if (kind == MM_K) {
        const sm_block_q8_K *y = act;
        for (int64_t e = 0; e < n; e++)
            act16[e] = y[e / 256].qs[e % 256];
    } else if (kind == MM_B32) {
        const sm_block_q8_0 *y = act;
        for (int64_t e = 0; e < n; e++)
            act16[e] = y[e / 32].qs[e % 32];
    } else if (kind == MM_B32M) {
        const sm_block_q8_1 *y = act;
        for (int64_t e = 0; e < n; e++)
            act16[e] = y[e / 32].qs[e % 32];
    }
}

/* ------------------------------------------------------------ dots */

/* hsum_float_8: 128-bit halves, then movehl, then movehdup. */
static float hsum8_scalar(const float *v)
{
    float q[4];
    for (int i = 0; i < 4; i++)
        q[i] = v[4 + i] + v[i];
    return (q[0] + q[2]) + (q[1] + q[3]);
}

/* Q4_K/Q5_K mins: the 8 mins of 32-element sub-blocks (mn holds each
 * twice) times the 32-element bsums, paired into 4 lanes; Q4_K keeps the 4
 * lanes (acc_m), Q5_K adds their integer sum into a scalar. */
static void k_mins4(const int16_t *mn, const int16_t *bsums, float dmin, uint32_t type, float *m4, float *summs)
{
    int32_t p[4];
    for (int k = 0; k < 4; k++) {
        int32_t s0 = bsums[4 * k] + bsums[4 * k + 1], s1 = bsums[4 * k + 2] + bsums[4 * k + 3];
        p[k] = mn[4 * k] * s0 + mn[4 * k + 2] * s1;
    }
    if (type == SM_TYPE_Q4_K) {
        for (int k = 0; k < 4; k++)
            m4[k] = fmaf(dmin, (float)p[k], m4[k]);
    } else {
        *summs = fmaf(dmin, (float)(p[0] + p[1] + p[2] + p[3]), *summs);
    }
}

/* One 256-block of a K-quant row into the accumulators, as ggml's AVX2
 * kernel of that type: lanes[8] are the block's integer lane sums (scales
 * applied), a8 the 8 f32 lanes, m4 (Q4_K) the 4 lanes of mins, summs
 * (Q5_K) the scalar sum of mins. */
static void k_block_acc(const mm_row *r, const sm_block_q8_K *y, int64_t b, const int32_t *lanes, float *a8,
                        float *m4, float *summs)
{
    const float d = y->d * r->d[b];
    const float dmin = -y->d * r->m[b];
    const int16_t *mn = r->mn + b * 16;
    if (r->type == SM_TYPE_Q2_K) {
        /* mins of the 16 sub-blocks times bsums, pairwise, before the quants */
        for (int k = 0; k < 8; k++) {
            int32_t p = mn[2 * k] * y->bsums[2 * k] + mn[2 * k + 1] * y->bsums[2 * k + 1];
            a8[k] = fmaf(dmin, (float)p, a8[k]);
        }
    } else if (r->type == SM_TYPE_Q4_K || r->type == SM_TYPE_Q5_K) {
        k_mins4(mn, y->bsums, dmin, r->type, m4, summs);
    }
    for (int k = 0; k < 8; k++)
        a8[k] = fmaf(d, (float)lanes[k], a8[k]);
}

/* What ggml adds after hsum_float_8(acc) for a K type. */
static float k_tail(uint32_t type, const float *m4, float summs)
{
    if (type == SM_TYPE_Q4_K)
        return (m4[0] + m4[2]) + (m4[1] + m4[3]);
    if (type == SM_TYPE_Q5_K)
        return summs;
    return 0.0f;
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) static float hsum8(__m256 v)
{
    __m128 lo = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

/* Like ggml's AVX2 kernels: exact int32 lane sums per block, scaled into
 * eight f32 lane accumulators, one horizontal sum at the end. */
__attribute__((target("avx2,fma"))) static float dot_avx2(int kind, const mm_row *r, const void *act,
                                                          const int16_t *a16, int64_t n)
{
    __m256 acc = _mm256_setzero_ps();
    float extra = 0.0f;
    if (kind == MM_K) {
        const sm_block_q8_K *y = act;
        float m4[4], summs = 0.0f;
        __m128 m4v = _mm_setzero_ps();
        for (int64_t b = 0; b < n / 256; b++) {
            const int16_t *w = r->w + b * 256, *x = a16 + b * 256;
            __m256i s0 = _mm256_setzero_si256(), s1 = _mm256_setzero_si256();
            for (int k = 0; k < 256; k += 32) {
                s0 = _mm256_add_epi32(s0, _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)(const void *)(w + k)),
                                                            _mm256_loadu_si256((const __m256i *)(const void *)(x + k))));
                s1 = _mm256_add_epi32(s1,
                                      _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)(const void *)(w + k + 16)),
                                                        _mm256_loadu_si256((const __m256i *)(const void *)(x + k + 16))));
            }
            /* lane i = products 4i..4i+3 of every 32 (ggml's maddubs + madd
             * grouping); integer sums, so regrouping once per block is exact */
            __m256i s = _mm256_permute4x64_epi64(_mm256_hadd_epi32(s0, s1), 0xD8);
            /* the mins as k_block_acc does them, the quants in the vector */
            const float d = y[b].d * r->d[b];
            const float dmin = -y[b].d * r->m[b];
            const int16_t *mn = r->mn + b * 16;
            if (r->type == SM_TYPE_Q2_K) {
                __m256i p = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)(const void *)mn),
                                              _mm256_loadu_si256((const __m256i *)(const void *)y[b].bsums));
                acc = _mm256_fmadd_ps(_mm256_set1_ps(dmin), _mm256_cvtepi32_ps(p), acc);
            } else if (r->type == SM_TYPE_Q4_K || r->type == SM_TYPE_Q5_K) {
                /* k_mins4 with hardware fma (fmaf would be a libm call here) */
                const int16_t *bs = y[b].bsums;
                int32_t p[4];
                for (int k = 0; k < 4; k++)
                    p[k] = mn[4 * k] * (bs[4 * k] + bs[4 * k + 1]) + mn[4 * k + 2] * (bs[4 * k + 2] + bs[4 * k + 3]);
                if (r->type == SM_TYPE_Q4_K)
                    m4v = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(_mm_loadu_si128((const __m128i *)(void *)p)),
                                       m4v);
                else
                    summs = _mm_cvtss_f32(_mm_fmadd_ss(_mm_set_ss(dmin), _mm_set_ss((float)(p[0] + p[1] + p[2] + p[3])),
                                                       _mm_set_ss(summs)));
            }
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(s), acc);
        }
        _mm_storeu_ps(m4, m4v);
        return hsum8(acc) + k_tail(r->type, m4, summs);
    }
    {
        for (int64_t b = 0; b < n / 32; b++) {
            const int16_t *w = r->w + b * 32, *x = a16 + b * 32;
            __m256i s0 = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)(const void *)w),
                                           _mm256_loadu_si256((const __m256i *)(const void *)x));
            __m256i s1 = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)(const void *)(w + 16)),
                                           _mm256_loadu_si256((const __m256i *)(const void *)(x + 16)));
            /* lane i = products 4i..4i+3, the grouping of ggml's x86
             * kernels (maddubs/dpbusd), so the f32 lane sums match */
            __m256i s = _mm256_permute4x64_epi64(_mm256_hadd_epi32(s0, s1), 0xD8);
            float dy;
            if (kind == MM_B32) {
                dy = h2f(((const sm_block_q8_0 *)act)[b].d);
            } else {
                const sm_block_q8_1 *y = act;
                dy = h2f(y[b].d);
                extra += r->m[b] * h2f(y[b].s);
            }
            acc = _mm256_fmadd_ps(_mm256_set1_ps(r->d[b] * dy), _mm256_cvtepi32_ps(s), acc);
        }
    }
    return hsum8(acc) + extra;
}
#endif

static int32_t idot(const int16_t *a, const int16_t *b, int n)
{
    int32_t s = 0;
    for (int i = 0; i < n; i++)
        s += (int32_t)a[i] * (int32_t)b[i];
    return s;
}

float mm_dot(int kind, const mm_row *r, const void *act, const int16_t *a16, int64_t n)
{
#if defined(__x86_64__)
    if (have_avx2())
        return dot_avx2(kind, r, act, a16, n);
#endif
    float sumf = 0.0f;
    if (kind == MM_K) {
        const sm_block_q8_K *y = act;
        float a8[8] = {0}, m4[4] = {0, 0, 0, 0}, summs = 0.0f;
        for (int64_t b = 0; b < n / 256; b++) {
            const int16_t *w = r->w + b * 256, *x = a16 + b * 256;
            int32_t lanes[8] = {0};
            for (int e = 0; e < 256; e++)
                lanes[(e % 32) / 4] += (int32_t)w[e] * (int32_t)x[e];
            k_block_acc(r, &y[b], b, lanes, a8, m4, &summs);
        }
        return hsum8_scalar(a8) + k_tail(r->type, m4, summs);
    }
    /* 32-blocks: the AVX2 path's 8 lanes of 4 consecutive products */
    float a8[8] = {0}, extra = 0.0f;
    for (int64_t b = 0; b < n / 32; b++) {
        const int16_t *w = r->w + b * 32, *x = a16 + b * 32;
        float dy;
        if (kind == MM_B32) {
            dy = h2f(((const sm_block_q8_0 *)act)[b].d);
        } else {
            const sm_block_q8_1 *y = act;
            dy = h2f(y[b].d);
            extra += r->m[b] * h2f(y[b].s);
        }
        const float db = r->d[b] * dy;
        for (int k = 0; k < 8; k++)
            a8[k] = fmaf(db, (float)idot(w + 4 * k, x + 4 * k, 4), a8[k]);
    }
    sumf = hsum8_scalar(a8) + extra;
    return sumf;
}

float mm_dot_q4_0_x8(const mm_row *r, const void *act, const int16_t *a16, int64_t n)
{
    const sm_block_q8_0 *y = act;
    float acc = 0.0f;
    for (int64_t b = 0; b < n / 32; b++)
        acc = fmaf((float)idot(r->w + b * 32, a16 + b * 32, 32), r->d[b] * h2f(y[b].d), acc);
    return acc;
}

float mm_dot_iq4nl_vec(const mm_row *r, const void *act, const int16_t *a16, int64_t n)
{
    const sm_block_q8_0 *y = act;
    const int64_t nb = n / 32, np = nb & ~(int64_t)1;
    float acc[2][8] = {{0}}, s8[8];
    for (int64_t b = 0; b < np; b++) {
        const int16_t *w = r->w + b * 32, *x = a16 + b * 32;
        const float db = r->d[b] * h2f(y[b].d);
        for (int k = 0; k < 8; k++)
            acc[b & 1][k] = fmaf(db, (float)idot(w + 4 * k, x + 4 * k, 4), acc[b & 1][k]);
    }
    for (int k = 0; k < 8; k++)
        s8[k] = acc[0][k] + acc[1][k];
    float sumf = hsum8_scalar(s8);
    if (nb & 1) {
        const int64_t b = nb - 1;
        sumf = fmaf((float)idot(r->w + b * 32, a16 + b * 32, 32), r->d[b] * h2f(y[b].d), sumf);
    }
    return sumf;
}
