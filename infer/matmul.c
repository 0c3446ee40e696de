#include "matmul.h"

#include "fp16.h"
#include "types.h"

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

void mm_unpack_row(uint32_t type, const uint8_t *src, int64_t n, mm_row *r)
{
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
        for (int64_t b = 0; b < n / 256; b++) {
            const int16_t *w = r->w + b * 256, *x = a16 + b * 256;
            __m256i s = _mm256_setzero_si256();
            for (int k = 0; k < 256; k += 32) {
                s = _mm256_add_epi32(s, _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)(const void *)(w + k)),
                                                          _mm256_loadu_si256((const __m256i *)(const void *)(x + k))));
                s = _mm256_add_epi32(s, _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)(const void *)(w + k + 16)),
                                                          _mm256_loadu_si256((const __m256i *)(const void *)(x + k + 16))));
            }
            const int16_t *mn = r->mn + b * 16;
            int32_t msum = 0;
            for (int g = 0; g < 16; g++)
                msum += mn[g] * y[b].bsums[g];
            acc = _mm256_fmadd_ps(_mm256_set1_ps(y[b].d * r->d[b]), _mm256_cvtepi32_ps(s), acc);
            extra -= (y[b].d * r->m[b]) * (float)msum;
        }
    } else {
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
        for (int64_t b = 0; b < n / 256; b++) {
            const int16_t *mn = r->mn + b * 16;
            int32_t isum = idot(r->w + b * 256, a16 + b * 256, 256), msum = 0;
            for (int g = 0; g < 16; g++)
                msum += mn[g] * y[b].bsums[g];
            sumf += (y[b].d * r->d[b]) * (float)isum - (y[b].d * r->m[b]) * (float)msum;
        }
    } else if (kind == MM_B32) {
        const sm_block_q8_0 *y = act;
        for (int64_t b = 0; b < n / 32; b++)
            sumf += (r->d[b] * h2f(y[b].d)) * (float)idot(r->w + b * 32, a16 + b * 32, 32);
    } else if (kind == MM_B32M) {
        const sm_block_q8_1 *y = act;
        float summs = 0.0f;
        for (int64_t b = 0; b < n / 32; b++) {
            sumf += (r->d[b] * h2f(y[b].d)) * (float)idot(r->w + b * 32, a16 + b * 32, 32);
            summs += r->m[b] * h2f(y[b].s);
        }
        sumf += summs;
    }
    return sumf;
}
