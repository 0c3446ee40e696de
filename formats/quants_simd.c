/* quants_simd.c — AVX2 kernels for the hot codecs, and the run-time
 * dispatch between them and the portable code.
 *
 * Each kernel performs the same IEEE operations on the same values as its
 * scalar twin (lane-wise mul/sub/round, exact integer ops), so results are
 * bit-identical; the tests compare both on random data. Blocks holding
 * NaN/inf go to the scalar code, whose x86 cast semantics the vector
 * instructions would not reproduce. Compiled for the baseline target; only
 * the functions marked target("avx2") use AVX2, and they run only after
 * __builtin_cpu_supports("avx2"). */
#include "quants_impl.h"

#include <float.h>
#include <math.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#define SM_HAVE_X86 1
#include <immintrin.h>
#else
#define SM_HAVE_X86 0
#endif

/* -1 unknown, 0 off, 1 on. Relaxed atomics: detection is idempotent. */
static int g_simd_state = -1;
static int g_simd_allowed = 1;

int sm_quants_simd_active(void)
{
    int s = __atomic_load_n(&g_simd_state, __ATOMIC_RELAXED);
    if (s < 0) {
#if SM_HAVE_X86
        __builtin_cpu_init();
        s = __builtin_cpu_supports("avx2") ? 1 : 0;
#else
        s = 0;
#endif
        __atomic_store_n(&g_simd_state, s, __ATOMIC_RELAXED);
    }
    return s && __atomic_load_n(&g_simd_allowed, __ATOMIC_RELAXED);
}

void sm_quants_set_simd(int enable)
{
    __atomic_store_n(&g_simd_allowed, enable ? 1 : 0, __ATOMIC_RELAXED);
}

#if SM_HAVE_X86

#define SM_AVX2 __attribute__((target("avx2")))

SM_AVX2 static __m256 abs_ps(__m256 v)
{
    return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v);
}

SM_AVX2 static float hmax_ps(__m256 v)
{
    __m128 m = _mm_max_ps(_mm256_extractf128_ps(v, 1), _mm256_castps256_ps128(v));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

/* Max |x| over n (multiple of 8) floats; returns 0 and sets *bad when any
 * element is NaN or infinite. Max is exact, so lane order does not matter. */
SM_AVX2 static float absmax_checked(const float *x, int n, int *bad)
{
    __m256 acc = _mm256_setzero_ps();
    __m256 nonfinite = _mm256_setzero_ps();
    const __m256 big = _mm256_set1_ps(FLT_MAX);
    for (int j = 0; j < n; j += 8) {
        __m256 a = abs_ps(_mm256_loadu_ps(x + j));
        nonfinite = _mm256_or_ps(nonfinite, _mm256_cmp_ps(a, big, _CMP_NLE_UQ));
        acc = _mm256_max_ps(acc, a);
    }
    *bad = _mm256_movemask_ps(nonfinite) != 0;
    return hmax_ps(acc);
}

/* 32 int32 lanes (already in int8 range or to be saturated) -> 32 int8 in
 * element order. packs work per 128-bit lane; the permute restores order. */
SM_AVX2 static void store_i8x32(int8_t *dst, __m256i i0, __m256i i1, __m256i i2, __m256i i3)
{
    __m256i a = _mm256_packs_epi32(i0, i1);
    __m256i b = _mm256_packs_epi32(i2, i3);
    __m256i c = _mm256_packs_epi16(a, b);
    c = _mm256_permutevar8x32_epi32(c, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)dst, c);
}

/* roundf (half away from zero) for finite |v| < 2^31: trunc, then step away
 * from zero when the exact remainder is at least one half. */
SM_AVX2 static __m256 roundf_ps(__m256 v)
{
    __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __m256 rem = abs_ps(_mm256_sub_ps(v, t));
    __m256 step = _mm256_and_ps(_mm256_cmp_ps(rem, _mm256_set1_ps(0.5f), _CMP_GE_OQ),
                                _mm256_or_ps(_mm256_and_ps(v, _mm256_set1_ps(-0.0f)),
                                             _mm256_set1_ps(1.0f)));
    return _mm256_add_ps(t, step);
}

SM_AVX2 void sm_q_avx2_quantize_q8_0_ref(const float *x, sm_block_q8_0 *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += 32) {
        int bad;
        const float amax = absmax_checked(x, 32, &bad);
        if (bad) {
            sm_quantize_row_q8_0_ref(x, &y[i], 32);
            continue;
        }
        const float d = amax / 127;
        const float id = d != 0 ? 1.0f / d : 0.0f;
        if (!(id <= FLT_MAX)) { /* near-zero block: 1/d overflowed */
            sm_quantize_row_q8_0_ref(x, &y[i], 32);
            continue;
        }
        y[i].d = sm_f32_to_f16(d);
        const __m256 mul = _mm256_set1_ps(id);
        __m256i q[4];
        for (int k = 0; k < 4; k++)
            q[k] = _mm256_cvttps_epi32(roundf_ps(_mm256_mul_ps(_mm256_loadu_ps(x + 8 * k), mul)));
        store_i8x32(y[i].qs, q[0], q[1], q[2], q[3]);
    }
}

SM_AVX2 void sm_q_avx2_quantize_q8_0_act(const float *x, sm_block_q8_0 *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += 32) {
        int bad;
        const float amax = absmax_checked(x, 32, &bad);
        if (bad) {
            sm_quantize_row_q8_0_act_scalar(x, &y[i], 32);
            continue;
        }
        const float d = amax / 127.f;
        const float id = amax != 0.0f ? 127.f / amax : 0.0f;
        if (!(id <= FLT_MAX)) {
            sm_quantize_row_q8_0_act_scalar(x, &y[i], 32);
            continue;
        }
        y[i].d = sm_f32_to_f16(d);
        const __m256 mul = _mm256_set1_ps(id);
        __m256i q[4];
        for (int k = 0; k < 4; k++)
            q[k] = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + 8 * k), mul),
                                                      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        store_i8x32(y[i].qs, q[0], q[1], q[2], q[3]);
    }
}

SM_AVX2 void sm_q_avx2_quantize_q8_1_act(const float *x, sm_block_q8_1 *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += 32) {
        int bad;
        const float amax = absmax_checked(x, 32, &bad);
        if (bad) {
            sm_quantize_row_q8_1_act_scalar(x, &y[i], 32);
            continue;
        }
        const float d = amax / 127.f;
        const float id = amax != 0.0f ? 127.f / amax : 0.0f;
        if (!(id <= FLT_MAX)) {
            sm_quantize_row_q8_1_act_scalar(x, &y[i], 32);
            continue;
        }
        y[i].d = sm_f32_to_f16(d);
        const __m256 mul = _mm256_set1_ps(id);
        __m256i q[4];
        for (int k = 0; k < 4; k++)
            q[k] = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + 8 * k), mul),
                                                      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        __m256i s = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
        int32_t lanes[8];
        _mm256_storeu_si256((__m256i *)lanes, s);
        uint32_t usum = 0;
        for (int k = 0; k < 8; k++)
            usum += (uint32_t)lanes[k];
        y[i].s = sm_f32_to_f16(d * (float)(int32_t)usum);
        store_i8x32(y[i].qs, q[0], q[1], q[2], q[3]);
    }
}

SM_AVX2 void sm_q_avx2_quantize_q8_K(const float *x, sm_block_q8_K *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += SM_QK_K) {
        int bad;
        const float amax = absmax_checked(x, SM_QK_K, &bad);
        if (bad || amax == 0) {
            sm_quantize_row_q8_K_ref(x, &y[i], SM_QK_K);
            continue;
        }
        /* the signed value of the first element of largest magnitude */
        float max = 0;
        for (int j = 0; j < SM_QK_K; j++) {
            if (fabsf(x[j]) == amax) {
                max = x[j];
                break;
            }
        }
        const float iscale = -127.f / max;
        const __m256 mul = _mm256_set1_ps(iscale);
        const __m256 magic = _mm256_set1_ps(12582912.f);
        const __m256i mant = _mm256_set1_epi32(0x007fffff);
        const __m256i bias = _mm256_set1_epi32(0x00400000);
        const __m256i hi = _mm256_set1_epi32(127);
        for (int j = 0; j < SM_QK_K; j += 32) {
            __m256i q[4];
            for (int k = 0; k < 4; k++) {
                /* nearest_int: the magic add leaves the integer in the low
                 * mantissa bits */
                __m256 v = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(x + j + 8 * k), mul), magic);
                __m256i n = _mm256_sub_epi32(_mm256_and_si256(_mm256_castps_si256(v), mant), bias);
                n = _mm256_min_epi32(n, hi);
                /* low byte, as the scalar store into int8_t: sign-extend it */
                n = _mm256_srai_epi32(_mm256_slli_epi32(n, 24), 24);
                q[k] = n;
            }
            store_i8x32(y[i].qs + j, q[0], q[1], q[2], q[3]);
        }
        for (int j = 0; j < SM_QK_K / 16; j++) {
            __m128i b = _mm_loadu_si128((const __m128i *)(y[i].qs + 16 * j));
            __m256i w = _mm256_cvtepi8_epi16(b);
            __m128i s = _mm_add_epi16(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1));
            s = _mm_add_epi16(s, _mm_srli_si128(s, 8));
            s = _mm_add_epi16(s, _mm_srli_si128(s, 4));
            s = _mm_add_epi16(s, _mm_srli_si128(s, 2));
            y[i].bsums[j] = (int16_t)_mm_extract_epi16(s, 0);
        }
        y[i].d = 1 / iscale;
    }
}

SM_AVX2 void sm_q_avx2_dequantize_q8_0(const sm_block_q8_0 *x, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, y += 32) {
        const __m256 d = _mm256_set1_ps(sm_f16_to_f32(x[i].d));
        for (int k = 0; k < 4; k++) {
            __m128i b = _mm_loadl_epi64((const __m128i *)(x[i].qs + 8 * k));
            __m256 q = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b));
            _mm256_storeu_ps(y + 8 * k, _mm256_mul_ps(q, d));
        }
    }
}

SM_AVX2 void sm_q_avx2_dequantize_q4_K(const sm_block_q4_K *x, float *y, int64_t nb)
{
    const __m256i low4 = _mm256_set1_epi32(0xF);
    for (int64_t i = 0; i < nb; i++) {
        const float d = sm_f16_to_f32(x[i].d);
        const float mn = sm_f16_to_f32(x[i].dmin);
        for (int j = 0; j < SM_QK_K / 32; j++) {
            uint8_t sc, m;
            if (j < 4) {
                sc = x[i].scales[j] & 63;
                m = x[i].scales[j + 4] & 63;
            } else {
                sc = (uint8_t)((x[i].scales[j + 4] & 0xF) | ((x[i].scales[j - 4] >> 6) << 4));
                m = (uint8_t)((x[i].scales[j + 4] >> 4) | ((x[i].scales[j] >> 6) << 4));
            }
            const __m256 d1 = _mm256_set1_ps(d * (float)sc);
            const __m256 m1 = _mm256_set1_ps(mn * (float)m);
            const uint8_t *q = x[i].qs + 32 * (j / 2);
            const int shift = 4 * (j % 2);
            for (int k = 0; k < 4; k++) {
                __m128i b = _mm_loadl_epi64((const __m128i *)(q + 8 * k));
                __m256i v = _mm256_and_si256(_mm256_srli_epi32(_mm256_cvtepu8_epi32(b), shift), low4);
                __m256 f = _mm256_sub_ps(_mm256_mul_ps(d1, _mm256_cvtepi32_ps(v)), m1);
                _mm256_storeu_ps(y + 8 * k, f);
            }
            y += 32;
        }
    }
}

SM_AVX2 void sm_q_avx2_dequantize_q6_K(const sm_block_q6_K *x, float *y, int64_t nb)
{
    /* element 128h + 32s + l: low nibble from ql[64h + l + 32*(s&1)] (high
     * nibble when s >= 2), top 2 bits from qh[32h + l] >> 2s; scale index
     * 8h + 2s + l/16 */
    for (int64_t i = 0; i < nb; i++) {
        const float d = sm_f16_to_f32(x[i].d);
        for (int h = 0; h < 2; h++) {
            for (int s = 0; s < 4; s++) {
                const uint8_t *ql = x[i].ql + 64 * h + 32 * (s & 1);
                const uint8_t *qh = x[i].qh + 32 * h;
                const int lshift = (s >= 2) ? 4 : 0;
                for (int k = 0; k < 4; k++) {
                    const int l0 = 8 * k;
                    const float dsc = d * (float)x[i].scales[8 * h + 2 * s + l0 / 16];
                    __m256i lo = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(ql + l0)));
                    __m256i hb = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(qh + l0)));
                    lo = _mm256_and_si256(_mm256_srli_epi32(lo, lshift), _mm256_set1_epi32(0xF));
                    hb = _mm256_and_si256(_mm256_srli_epi32(hb, 2 * s), _mm256_set1_epi32(3));
                    __m256i q = _mm256_sub_epi32(_mm256_or_si256(lo, _mm256_slli_epi32(hb, 4)),
                                                 _mm256_set1_epi32(32));
                    __m256 f = _mm256_mul_ps(_mm256_set1_ps(dsc), _mm256_cvtepi32_ps(q));
                    _mm256_storeu_ps(y + 128 * h + 32 * s + l0, f);
                }
            }
        }
        y += SM_QK_K;
    }
}

#endif /* SM_HAVE_X86 */

/* ------------------------------------------------------------ dispatchers */

void sm_quantize_row_q8_0(const float *x, sm_block_q8_0 *y, int64_t k)
{
#if SM_HAVE_X86
    if (sm_quants_simd_active()) {
        sm_q_avx2_quantize_q8_0_ref(x, y, k / SM_QK8_0);
        return;
    }
#endif
    sm_quantize_row_q8_0_ref(x, y, k);
}

void sm_quantize_row_q8_0_act(const float *x, sm_block_q8_0 *y, int64_t k)
{
#if SM_HAVE_X86
    if (sm_quants_simd_active()) {
        sm_q_avx2_quantize_q8_0_act(x, y, k / SM_QK8_0);
        return;
    }
#endif
    sm_quantize_row_q8_0_act_scalar(x, y, k);
}

void sm_quantize_row_q8_1_act(const float *x, sm_block_q8_1 *y, int64_t k)
{
#if SM_HAVE_X86
    if (sm_quants_simd_active()) {
        sm_q_avx2_quantize_q8_1_act(x, y, k / SM_QK8_1);
        return;
    }
#endif
    sm_quantize_row_q8_1_act_scalar(x, y, k);
}

void sm_quantize_row_q8_K(const float *x, sm_block_q8_K *y, int64_t k)
{
#if SM_HAVE_X86
    if (sm_quants_simd_active()) {
        sm_q_avx2_quantize_q8_K(x, y, k / SM_QK_K);
        return;
    }
#endif
    sm_quantize_row_q8_K_ref(x, y, k);
}

void sm_dequantize_row_q8_0(const sm_block_q8_0 *x, float *y, int64_t k)
{
#if SM_HAVE_X86
    if (sm_quants_simd_active()) {
        sm_q_avx2_dequantize_q8_0(x, y, k / SM_QK8_0);
        return;
    }
#endif
    sm_dequantize_row_q8_0_scalar(x, y, k);
}

void sm_dequantize_row_q4_K(const sm_block_q4_K *x, float *y, int64_t k)
{
#if SM_HAVE_X86
    if (sm_quants_simd_active()) {
        sm_q_avx2_dequantize_q4_K(x, y, k / SM_QK_K);
        return;
    }
#endif
    sm_dequantize_row_q4_K_scalar(x, y, k);
}

void sm_dequantize_row_q6_K(const sm_block_q6_K *x, float *y, int64_t k)
{
#if SM_HAVE_X86
    if (sm_quants_simd_active()) {
        sm_q_avx2_dequantize_q6_K(x, y, k / SM_QK_K);
        return;
    }
#endif
    sm_dequantize_row_q6_K_scalar(x, y, k);
}
