#include "ops.h"

#include "fp16.h"
#include "quants.h"
#include "types.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#define OPS_X86 1
#else
#define OPS_X86 0
#endif

float ops_f16_table[65536];
static int ops_have_avx2;
static int ops_have_f16c;

void ops_init(void)
{
    static int done;
    if (done)
        return;
    for (uint32_t i = 0; i < 65536; i++)
        ops_f16_table[i] = sm_f16_to_f32((uint16_t)i);
#if OPS_X86
    __builtin_cpu_init();
    /* SMELT_NO_AVX2=1 forces the portable kernels (debugging, comparisons) */
    ops_have_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && !getenv("SMELT_NO_AVX2");
    /* clang's __builtin_cpu_supports does not know "f16c": ask CPUID leaf 1 (ECX bit 29) */
    unsigned int a = 0, b = 0, cx = 0, dx = 0;
    ops_have_f16c = ops_have_avx2 && __get_cpuid(1, &a, &b, &cx, &dx) && (cx & (1u << 29));
#endif
    done = 1;
}

/* ------------------------------------------------------------ dequantize */

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

int ops_type_supported(uint32_t type)
{
    switch (type) {
    case SM_TYPE_F32:
    case SM_TYPE_F16:
    case SM_TYPE_BF16:
    case SM_TYPE_Q8_0:
        return 1;
    case SM_TYPE_Q8_1:
    case SM_TYPE_Q8_K:
        return 0; /* activation-only types never hold weights */
    default:
        return sm_dequantize_supported(type) ? 1 : 0;
    }
}

int ops_act_for_type(uint32_t type)
{
    switch (type) {
    case SM_TYPE_F16: return OPS_ACT_F16;
    case SM_TYPE_BF16: return OPS_ACT_BF16;
    case SM_TYPE_Q4_0:
    case SM_TYPE_Q5_0:
    case SM_TYPE_Q8_0:
    case SM_TYPE_IQ4_NL: return OPS_ACT_Q8_0;
    case SM_TYPE_Q4_1:
    case SM_TYPE_Q5_1: return OPS_ACT_Q8_1;
    case SM_TYPE_Q2_K:
    case SM_TYPE_Q3_K:
    case SM_TYPE_Q4_K:
    case SM_TYPE_Q5_K:
    case SM_TYPE_Q6_K:
    case SM_TYPE_IQ4_XS: return OPS_ACT_Q8_K;
    default: return OPS_ACT_F32;
    }
}

int32_t ops_act_block(int act)
{
    switch (act) {
    case OPS_ACT_Q8_0:
    case OPS_ACT_Q8_1: return 32;
    case OPS_ACT_Q8_K: return 256;
    default: return 1;
    }
}

void ops_dequant_row(uint32_t type, const void *src, float *dst, int64_t n)
{
    const uint8_t *s = src;
    switch (type) {
    case SM_TYPE_F32:
        memcpy(dst, src, (size_t)n * sizeof(float));
        break;
    case SM_TYPE_F16:
        for (int64_t i = 0; i < n; i++)
            dst[i] = ops_f16_table[rd16(s + 2 * i)];
        break;
    case SM_TYPE_BF16:
        for (int64_t i = 0; i < n; i++)
            dst[i] = sm_bf16_to_f32(rd16(s + 2 * i));
        break;
    case SM_TYPE_Q8_0:
        /* block: f16 d, int8 qs[32] */
        for (int64_t b = 0; b < n / 32; b++, s += 34) {
            float d = ops_f16_table[rd16(s)];
            for (int j = 0; j < 32; j++)
                dst[b * 32 + j] = d * (float)(int8_t)s[2 + j];
        }
        break;
    default:
        /* every other type goes through the codecs (formats/quants.c);
         * ops_type_supported() was checked at load time */
        if (sm_dequantize_row(type, src, dst, n) != 0)
            memset(dst, 0, (size_t)n * sizeof(float));
        break;
    }
}

/* ------------------------------------------------- activation rounding */

/* Round half to even for |v| < 2^22, as ggml's nearest_int. */
static int nearest_int(float v)
{
    float t = v + 12582912.f;
    int32_t i;
    memcpy(&i, &t, 4);
    return (i & 0x007fffff) - 0x00400000;
}

/* ggml's x86 quantize_row_q8_0 (AVX2 path): d = amax/127 stored as f16,
 * q = round-to-nearest-even(x * 127/amax). The value seen by the dot product
 * is f16(d) * q. */
static void round_q8_0(const float *x, float *y, int64_t n)
{
    for (int64_t b = 0; b < n; b += 32) {
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) {
            float a = fabsf(x[b + j]);
            amax = a > amax ? a : amax;
        }
        float d = amax / 127.f;
        float dh = sm_f16_to_f32(sm_f32_to_f16(d));
        float id = amax != 0.0f ? 127.f / amax : 0.0f;
        for (int j = 0; j < 32; j++) {
            float q = nearbyintf(x[b + j] * id);
            y[b + j] = dh * q;
        }
    }
}

/* ggml's quantize_row_q8_K_ref: the signed value of largest magnitude sets
 * iscale = -127/max, q = min(127, nearest(iscale*x)), d = 1/iscale. */
static void round_q8_K(const float *x, float *y, int64_t n)
{
    for (int64_t b = 0; b < n; b += 256) {
        float max = 0.0f, amax = 0.0f;
        for (int j = 0; j < 256; j++) {
            float a = fabsf(x[b + j]);
            if (a > amax) {
                amax = a;
                max = x[b + j];
            }
        }
        if (amax == 0.0f) {
            for (int j = 0; j < 256; j++)
                y[b + j] = 0.0f;
            continue;
        }
        float iscale = -127.f / max;
        float d = 1 / iscale;
        for (int j = 0; j < 256; j++) {
            int v = nearest_int(iscale * x[b + j]);
            y[b + j] = d * (float)(v < 127 ? v : 127);
        }
    }
}

void ops_act_round(int act, const float *x, float *y, int64_t n)
{
    switch (act) {
    case OPS_ACT_F16:
        for (int64_t i = 0; i < n; i++)
            y[i] = ops_f16_table[sm_f32_to_f16(x[i])];
        break;
    case OPS_ACT_BF16:
        for (int64_t i = 0; i < n; i++)
            y[i] = sm_bf16_to_f32(sm_f32_to_bf16(x[i]));
        break;
    case OPS_ACT_Q8_0:
    case OPS_ACT_Q8_1:
        round_q8_0(x, y, n);
        break;
    case OPS_ACT_Q8_K:
        round_q8_K(x, y, n);
        break;
    default:
        if (y != x)
            memcpy(y, x, (size_t)n * sizeof(float));
        break;
    }
}

/* ------------------------------------------------------------ elementwise */

void ops_rmsnorm(const float *x, const float *w, float *y, int64_t n, float eps)
{
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++)
        sum += (double)(x[i] * x[i]);
    const float mean = (float)(sum / (double)n);
    const float scale = 1.0f / sqrtf(mean + eps);
    for (int64_t i = 0; i < n; i++)
        y[i] = (x[i] * scale) * w[i];
}

void ops_swiglu(float *g, const float *u, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        float v = g[i];
        g[i] = (v / (1.0f + expf(-v))) * u[i];
    }
}

void ops_rope_table(float *cs, int32_t n_rot, int32_t pos, float freq_base,
                    float freq_scale, const float *ff)
{
    const float theta_scale = powf(freq_base, -2.0f / (float)n_rot);
    float theta = (float)pos;
    for (int32_t i = 0; i < n_rot; i += 2) {
        float f = ff ? ff[i / 2] : 1.0f;
        float t = freq_scale * (theta / f);
        cs[i] = cosf(t);
        cs[i + 1] = sinf(t);
        theta *= theta_scale;
    }
}

void ops_rope(float *x, const float *cs, int32_t n_rot, int neox)
{
    if (neox) {
        int32_t h = n_rot / 2;
        for (int32_t i = 0; i < h; i++) {
            float c = cs[2 * i], s = cs[2 * i + 1];
            float a = x[i], b = x[i + h];
            x[i] = a * c - b * s;
            x[i + h] = a * s + b * c;
        }
    } else {
        for (int32_t i = 0; i < n_rot; i += 2) {
            float c = cs[i], s = cs[i + 1];
            float a = x[i], b = x[i + 1];
            x[i] = a * c - b * s;
            x[i + 1] = a * s + b * c;
        }
    }
}

/* ------------------------------------------------------------ dot products */

static float dot_scalar(const float *a, const float *b, int64_t n)
{
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int64_t i = 0;
    for (; i + 3 < n; i += 4) {
        s0 += a[i] * b[i];
        s1 += a[i + 1] * b[i + 1];
        s2 += a[i + 2] * b[i + 2];
        s3 += a[i + 3] * b[i + 3];
    }
    for (; i < n; i++)
        s0 += a[i] * b[i];
    return (s0 + s1) + (s2 + s3);
}

#if OPS_X86
__attribute__((target("avx2,fma"))) static float hsum256(__m256 v)
{
    __m128 lo = _mm256_castps256_ps128(v);
    __m128 hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

__attribute__((target("avx2,fma"))) static float dot_avx2(const float *a, const float *b, int64_t n)
{
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 15 < n; i += 16) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
    }
    for (; i + 7 < n; i += 8)
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    float s = hsum256(_mm256_add_ps(acc0, acc1));
    for (; i < n; i++)
        s += a[i] * b[i];
    return s;
}

#endif

#if OPS_X86
__attribute__((target("avx2,fma"))) static void gemv_t_avx2(const float *a, int64_t lda, const float *x, int64_t k,
                                                             int64_t n, float *y)
{
    int64_t s = 0;
    for (; s + 15 < n; s += 16) {
        __m256 y0 = _mm256_setzero_ps(), y1 = _mm256_setzero_ps();
        for (int64_t i = 0; i < k; i++) {
            __m256 xv = _mm256_set1_ps(x[i]);
            y0 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(a + i * lda + s), y0);
            y1 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(a + i * lda + s + 8), y1);
        }
        _mm256_storeu_ps(y + s, y0);
        _mm256_storeu_ps(y + s + 8, y1);
    }
    for (; s + 7 < n; s += 8) {
        __m256 y0 = _mm256_setzero_ps();
        for (int64_t i = 0; i < k; i++)
            y0 = _mm256_fmadd_ps(_mm256_set1_ps(x[i]), _mm256_loadu_ps(a + i * lda + s), y0);
        _mm256_storeu_ps(y + s, y0);
    }
    for (; s < n; s++) {
        float acc = 0.0f;
        for (int64_t i = 0; i < k; i++)
            acc += x[i] * a[i * lda + s];
        y[s] = acc;
    }
}

__attribute__((target("avx2,fma,f16c"))) static void scale_round_f16c(float *p, float sc, int64_t n)
{
    __m256 sv = _mm256_set1_ps(sc);
    int64_t i = 0;
    for (; i + 7 < n; i += 8) {
        __m256 v = _mm256_mul_ps(_mm256_loadu_ps(p + i), sv);
        __m128i h = _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        _mm256_storeu_ps(p + i, _mm256_cvtph_ps(h));
    }
    for (; i < n; i++)
        p[i] = ops_f16_table[sm_f32_to_f16(p[i] * sc)];
}

/* exp(x) for x <= 0 (softmax arguments): 2^k * p(r), r = x - k ln2,
 * degree-7 Taylor polynomial on |r| <= ln2/2 (relative error < 2e-7). */
__attribute__((target("avx2,fma"))) static __m256 exp256(__m256 x)
{
    const __m256 lo = _mm256_set1_ps(-87.0f);
    __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    x = _mm256_max_ps(x, lo);
    __m256 k = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(0.693145751953125f), x);
    r = _mm256_fnmadd_ps(k, _mm256_set1_ps(1.428606765330187045e-06f), r);
    __m256 p = _mm256_set1_ps(1.0f / 5040.0f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
    __m256 res = _mm256_mul_ps(p, _mm256_castsi256_ps(e));
    return _mm256_andnot_ps(under, res);
}

__attribute__((target("avx2,fma"))) static double exp_sum_avx2(float *x, float mx, int64_t n)
{
    double sum = 0.0;
    __m256 m = _mm256_set1_ps(mx);
    int64_t i = 0;
    for (; i + 7 < n; i += 8) {
        __m256 v = exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), m));
        _mm256_storeu_ps(x + i, v);
        sum += (double)hsum256(v);
    }
    for (; i < n; i++) {
        x[i] = expf(x[i] - mx);
        sum += (double)x[i];
    }
    return sum;
}

__attribute__((target("avx2,fma"))) static float scale_max_avx2(float *x, float scale, int64_t n)
{
    __m256 sv = _mm256_set1_ps(scale), mv = _mm256_set1_ps(-INFINITY);
    int64_t i = 0;
    for (; i + 7 < n; i += 8) {
        __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + i), sv);
        _mm256_storeu_ps(x + i, v);
        mv = _mm256_max_ps(mv, v);
    }
    float buf[8], mx = -INFINITY;
    _mm256_storeu_ps(buf, mv);
    for (int k = 0; k < 8; k++)
        mx = buf[k] > mx ? buf[k] : mx;
    for (; i < n; i++) {
        x[i] *= scale;
        mx = x[i] > mx ? x[i] : mx;
    }
    return mx;
}

__attribute__((target("avx2,fma"))) static void dot8t_avx2(const float *wt, const float *x, int64_t k, float *out)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 3 < k; i += 4) {
        a0 = _mm256_fmadd_ps(_mm256_set1_ps(x[i]), _mm256_loadu_ps(wt + 8 * i), a0);
        a1 = _mm256_fmadd_ps(_mm256_set1_ps(x[i + 1]), _mm256_loadu_ps(wt + 8 * i + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_set1_ps(x[i + 2]), _mm256_loadu_ps(wt + 8 * i + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_set1_ps(x[i + 3]), _mm256_loadu_ps(wt + 8 * i + 24), a3);
    }
    for (; i < k; i++)
        a0 = _mm256_fmadd_ps(_mm256_set1_ps(x[i]), _mm256_loadu_ps(wt + 8 * i), a0);
    _mm256_storeu_ps(out, _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
}

__attribute__((target("avx2,fma"))) static void axpy_avx2(float *y, float a, const float *x, int64_t n)
{
    __m256 av = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 7 < n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++)
        y[i] += a * x[i];
}
#endif

void ops_gemv_t(const float *a, int64_t lda, const float *x, int64_t k, int64_t n, float *y)
{
#if OPS_X86
    if (ops_have_avx2) {
        gemv_t_avx2(a, lda, x, k, n, y);
        return;
    }
#endif
    for (int64_t s = 0; s < n; s++)
        y[s] = 0.0f;
    for (int64_t i = 0; i < k; i++)
        for (int64_t s = 0; s < n; s++)
            y[s] += x[i] * a[i * lda + s];
}

void ops_scale_round_f16(float *p, float s, int64_t n)
{
#if OPS_X86
    if (ops_have_f16c) {
        scale_round_f16c(p, s, n);
        return;
    }
#endif
    for (int64_t i = 0; i < n; i++)
        p[i] = ops_f16_table[sm_f32_to_f16(p[i] * s)];
}

float ops_scale_max(float *x, float scale, int64_t n)
{
#if OPS_X86
    if (ops_have_avx2)
        return scale_max_avx2(x, scale, n);
#endif
    float mx = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        x[i] *= scale;
        mx = x[i] > mx ? x[i] : mx;
    }
    return mx;
}

double ops_exp_sum(float *x, float mx, int64_t n)
{
#if OPS_X86
    if (ops_have_avx2)
        return exp_sum_avx2(x, mx, n);
#endif
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - mx);
        sum += (double)x[i];
    }
    return sum;
}

void ops_dot8t(const float *wt, const float *x, int64_t k, float *out)
{
#if OPS_X86
    if (ops_have_avx2) {
        dot8t_avx2(wt, x, k, out);
        return;
    }
#endif
    for (int r = 0; r < 8; r++) {
        float acc = 0.0f;
        for (int64_t i = 0; i < k; i++)
            acc += wt[i * 8 + r] * x[i];
        out[r] = acc;
    }
}

void ops_axpy(float *y, float a, const float *x, int64_t n)
{
#if OPS_X86
    if (ops_have_avx2) {
        axpy_avx2(y, a, x, n);
        return;
    }
#endif
    for (int64_t i = 0; i < n; i++)
        y[i] += a * x[i];
}

float ops_dot(const float *a, const float *b, int64_t n)
{
#if OPS_X86
    if (ops_have_avx2)
        return dot_avx2(a, b, n);
#endif
    return dot_scalar(a, b, n);
}

