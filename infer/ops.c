#include "ops.h"

#include "cpu.h"
#include "fp16.h"
#include "quants.h"
#include "simd_red.h"
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
    (void)cpu_level(); /* detect once here, single-threaded (cpu.h) */
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

/* ggml_v_expf (ggml-cpu.c, AVX-512 build) for one lane: the same fma chain,
 * 2^n applied like _mm512_scalef_ps (ldexpf rounds the same way). Explicit
 * fmaf because our build does not contract. */
float ops_expf_ggml(float x)
{
    const float r = 0x1.8p23f;
    const float z = fmaf(x, 0x1.715476p+0f, r);
    const float n = z - r;
    const float b = fmaf(-n, 0x1.7f7d1cp-20f, fmaf(-n, 0x1.62e4p-1f, x));
    const float u = b * b;
    const float j = fmaf(fmaf(fmaf(0x1.0e4020p-7f, b, 0x1.573e2ep-5f), u, fmaf(0x1.555e66p-3f, b, 0x1.fffdb6p-2f)),
                         u, fmaf(0x1.ffffecp-1f, b, 1.0f));
    if (isnan(n))
        return n; /* NaN in, NaN out, as the vector code gives (and no NaN -> int conversion) */
    if (fabsf(n) > 192.0f)
        return n <= 0.0f ? 0.0f : INFINITY;
    return ldexpf(j, (int)n);
}

#if OPS_X86
/* Eight lanes of ggml_v_expf; lanes are independent, so any vector width
 * gives the AVX-512 results. *big is set when a lane has |n| > 126 (the
 * exponent trick below would be wrong there: the caller redoes it in C). */
__attribute__((target("avx2,fma"))) static __m256 expf8(__m256 x, int *big)
{
    const __m256 r = _mm256_set1_ps(0x1.8p23f);
    __m256 z = _mm256_fmadd_ps(x, _mm256_set1_ps(0x1.715476p+0f), r);
    __m256 n = _mm256_sub_ps(z, r);
    __m256 b = _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.7f7d1cp-20f),
                                _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.62e4p-1f), x));
    __m256 u = _mm256_mul_ps(b, b);
    __m256 j = _mm256_fmadd_ps(
        _mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_set1_ps(0x1.0e4020p-7f), b, _mm256_set1_ps(0x1.573e2ep-5f)), u,
                        _mm256_fmadd_ps(_mm256_set1_ps(0x1.555e66p-3f), b, _mm256_set1_ps(0x1.fffdb6p-2f))),
        u, _mm256_fmadd_ps(_mm256_set1_ps(0x1.ffffecp-1f), b, _mm256_set1_ps(1.0f)));
    __m256 an = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), n);
    *big |= _mm256_movemask_ps(_mm256_cmp_ps(an, _mm256_set1_ps(126.0f), _CMP_GT_OQ)) != 0;
    /* 2^n as exponent bits: exact for |n| <= 126, so j * 2^n rounds once */
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(j, _mm256_castsi256_ps(e));
}

/* e[16] = ggml_v_expf(s[k] - mx) for k < 16 */
__attribute__((target("avx2,fma"))) static void exp16_avx2(const float *s, float mx, float *e)
{
    for (int h = 0; h < 2; h++) {
        int big = 0;
        __m256 v = expf8(_mm256_sub_ps(_mm256_loadu_ps(s + 8 * h), _mm256_set1_ps(mx)), &big);
        if (big)
            for (int k = 0; k < 8; k++)
                e[8 * h + k] = ops_expf_ggml(s[8 * h + k] - mx);
        else
            _mm256_storeu_ps(e + 8 * h, v);
    }
}

__attribute__((target("avx2,fma"))) static void swiglu_avx2(float *g, const float *u, int64_t n16)
{
    for (int64_t i = 0; i < n16; i += 8) {
        __m256 v = _mm256_loadu_ps(g + i);
        int big = 0;
        __m256 e = expf8(_mm256_sub_ps(_mm256_setzero_ps(), v), &big);
        if (big) {
            for (int k = 0; k < 8; k++) {
                float vk = g[i + k];
                g[i + k] = (vk / (1.0f + ops_expf_ggml(0.0f - vk))) * u[i + k];
            }
            continue;
        }
        __m256 s = _mm256_div_ps(v, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
        _mm256_storeu_ps(g + i, _mm256_mul_ps(s, _mm256_loadu_ps(u + i)));
    }
}
#endif

/* ggml_vec_silu_f32 on an AVX-512 build: ggml_v_silu on whole 16-lane
 * vectors, libm expf on the tail; then ggml_mul with up. */
void ops_swiglu(float *g, const float *u, int64_t n)
{
    const int64_t n16 = n & ~(int64_t)15;
    int64_t i = 0;
#if OPS_X86
    if (ops_have_avx2) {
        swiglu_avx2(g, u, n16);
        i = n16;
    }
#endif
    for (; i < n16; i++) {
        float v = g[i];
        g[i] = (v / (1.0f + ops_expf_ggml(0.0f - v))) * u[i];
    }
    for (; i < n; i++) {
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
            x[i] = fmaf(a, c, -(b * s));
            x[i + h] = fmaf(a, s, b * c);
        }
    } else {
        for (int32_t i = 0; i < n_rot; i += 2) {
            float c = cs[i], s = cs[i + 1];
            float a = x[i], b = x[i + 1];
            /* gcc contracts ggml's x0*cos - x1*sin this way (-march=native) */
            x[i] = fmaf(a, c, -(b * s));
            x[i + 1] = fmaf(a, s, b * c);
        }
    }
}

/* ------------------------------------------------------------ dot products */

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

#endif

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

/* ------------------------------------------- ggml AVX-512 dot products
 *
 * The reference outputs were made by ggml built for an AVX-512 CPU. Its f32
 * sums run in 16 lanes (lane = element index % 16) with fused multiply-adds,
 * reduced in the order gcc emits for _mm512_reduce_add_ps. Lanes are
 * independent, so two 8-lane AVX2 accumulators or a 16-entry array with
 * fmaf give the same bits; only the reduction order matters. */

/* _mm512_reduce_add_ps as gcc expands it: halves, quarters, then pairs. */
static float red16(const float *v)
{
    float t8[8], t4[4];
    for (int i = 0; i < 8; i++)
        t8[i] = v[8 + i] + v[i];
    for (int i = 0; i < 4; i++)
        t4[i] = t8[4 + i] + t8[i];
    return (t4[0] + t4[2]) + (t4[1] + t4[3]);
}

/* ggml's GGML_F32x16_REDUCE of four accumulators (s0+=s2, s1+=s3, s0+=s1). */
static float red4x16(float s[4][16])
{
    float v[16];
    for (int k = 0; k < 16; k++)
        v[k] = (s[0][k] + s[2][k]) + (s[1][k] + s[3][k]);
    return red16(v);
}

static float tb16_scalar(const float *a, const float *b, int64_t n)
{
    float acc[16] = {0};
    for (int64_t l = 0; l < n; l += 16)
        for (int k = 0; k < 16; k++)
            acc[k] = fmaf(a[l + k], b[l + k], acc[k]);
    return red16(acc);
}

/* the 4 x 16 accumulators of ggml_vec_dot_f16/f32 over n & ~63 */
static float vec64_scalar(const float *a, const float *b, int64_t np)
{
    float s[4][16] = {{0}};
    for (int64_t i = 0; i < np; i += 64)
        for (int j = 0; j < 4; j++)
            for (int k = 0; k < 16; k++)
                s[j][k] = fmaf(a[i + j * 16 + k], b[i + j * 16 + k], s[j][k]);
    return red4x16(s);
}

#if OPS_X86
__attribute__((target("avx2,fma"))) static float tb16_avx2(const float *a, const float *b, int64_t n)
{
    __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
    for (int64_t l = 0; l < n; l += 16) {
        lo = _mm256_fmadd_ps(_mm256_loadu_ps(a + l), _mm256_loadu_ps(b + l), lo);
        hi = _mm256_fmadd_ps(_mm256_loadu_ps(a + l + 8), _mm256_loadu_ps(b + l + 8), hi);
    }
    /* red16 == hsum256(lo + hi) (see red16) */
    return hsum256(_mm256_add_ps(lo, hi));
}

__attribute__((target("avx2,fma"))) static void tb16x4_avx2(const float *w, int64_t ldw, const float *x, int64_t n,
                                                             float *out)
{
    __m256 l0 = _mm256_setzero_ps(), h0 = _mm256_setzero_ps(), l1 = _mm256_setzero_ps(), h1 = _mm256_setzero_ps();
    __m256 l2 = _mm256_setzero_ps(), h2 = _mm256_setzero_ps(), l3 = _mm256_setzero_ps(), h3 = _mm256_setzero_ps();
    const float *w0 = w, *w1 = w + ldw, *w2 = w + 2 * ldw, *w3 = w + 3 * ldw;
    for (int64_t l = 0; l < n; l += 16) {
        __m256 xl = _mm256_loadu_ps(x + l), xh = _mm256_loadu_ps(x + l + 8);
        l0 = _mm256_fmadd_ps(_mm256_loadu_ps(w0 + l), xl, l0);
        h0 = _mm256_fmadd_ps(_mm256_loadu_ps(w0 + l + 8), xh, h0);
        l1 = _mm256_fmadd_ps(_mm256_loadu_ps(w1 + l), xl, l1);
        h1 = _mm256_fmadd_ps(_mm256_loadu_ps(w1 + l + 8), xh, h1);
        l2 = _mm256_fmadd_ps(_mm256_loadu_ps(w2 + l), xl, l2);
        h2 = _mm256_fmadd_ps(_mm256_loadu_ps(w2 + l + 8), xh, h2);
        l3 = _mm256_fmadd_ps(_mm256_loadu_ps(w3 + l), xl, l3);
        h3 = _mm256_fmadd_ps(_mm256_loadu_ps(w3 + l + 8), xh, h3);
    }
    out[0] = hsum256(_mm256_add_ps(l0, h0));
    out[1] = hsum256(_mm256_add_ps(l1, h1));
    out[2] = hsum256(_mm256_add_ps(l2, h2));
    out[3] = hsum256(_mm256_add_ps(l3, h3));
}

/* The reduction of ggml_vec_dot_f16/f32's 4x16 accumulators held as 4x2
 * ymm (AVX-512's zmm halves): (0+2)+(1+3) per half, halves added, then the
 * 8-lane horizontal sum. */
__attribute__((target("avx2,fma"))) static float red4x2_avx2(__m256 s[4][2])
{
    __m256 v0 = _mm256_add_ps(_mm256_add_ps(s[0][0], s[2][0]), _mm256_add_ps(s[1][0], s[3][0]));
    __m256 v1 = _mm256_add_ps(_mm256_add_ps(s[0][1], s[2][1]), _mm256_add_ps(s[1][1], s[3][1]));
    return hsum256(_mm256_add_ps(v0, v1));
}

__attribute__((target("avx2,fma"))) static float vec64_avx2(const float *a, const float *b, int64_t np)
{
    __m256 s[4][2];
    for (int j = 0; j < 4; j++)
        s[j][0] = s[j][1] = _mm256_setzero_ps();
    for (int64_t i = 0; i < np; i += 64)
        for (int j = 0; j < 4; j++)
            for (int h = 0; h < 2; h++) {
                const int64_t o = i + j * 16 + h * 8;
                s[j][h] = _mm256_fmadd_ps(_mm256_loadu_ps(a + o), _mm256_loadu_ps(b + o), s[j][h]);
            }
    return red4x2_avx2(s);
}
#endif

float ops_dot_tb16(const float *a, const float *b, int64_t n)
{
#if OPS_X86
    if (ops_have_avx2)
        return tb16_avx2(a, b, n);
#endif
    return tb16_scalar(a, b, n);
}

void ops_dot_tb16x4(const float *w, int64_t ldw, const float *x, int64_t n, float *out)
{
#if OPS_X86
    if (ops_have_avx2) {
        tb16x4_avx2(w, ldw, x, n, out);
        return;
    }
#endif
    for (int r = 0; r < 4; r++)
        out[r] = tb16_scalar(w + r * ldw, x, n);
}

static float vec64(const float *a, const float *b, int64_t np)
{
    if (np == 0)
        return 0.0f;
#if OPS_X86
    if (ops_have_avx2)
        return vec64_avx2(a, b, np);
#endif
    return vec64_scalar(a, b, np);
}

float ops_dot_vf16(const float *a, const float *b, int64_t n)
{
    const int64_t np = n & ~(int64_t)63;
    double sum = (double)vec64(a, b, np);
    for (int64_t i = np; i < n; i++)
        sum += (double)(a[i] * b[i]);
    return (float)sum;
}

/* ggml's leftover loop is `sumf += x[i]*y[i]` in gnu11, where gcc may
 * contract. gcc 12 -O3 -march=native (the reference build, disassembled)
 * vectorizes it: groups of 16, then one of 8, multiply in a vector (each
 * product rounded to f32) and add the products to sumf one by one in
 * order; only the scalar remainder, the last n % 8, becomes an fma chain.
 * Fusing every tail element instead moved stories260K F32's perplexity by
 * ~1e-4 (172-wide ffn_down rows have a 44-element tail: 40 + 4). */
float ops_dot_vf32(const float *a, const float *b, int64_t n)
{
    const int64_t np = n & ~(int64_t)63, nf = ops_vf32_fma_from(n);
    float sum = vec64(a, b, np);
    int64_t i = np;
    for (; i < nf; i++)
        sum += a[i] * b[i]; /* -ffp-contract=off: rounded product, then add */
    for (; i < n; i++)
        sum = fmaf(a[i], b[i], sum);
    return sum;
}

/* ggml_soft_max_ext then the F16 rounding of the probabilities:
 * p = exp(s*scale - max) in 16-lane vectors (zeros past n: llama.cpp's
 * masked KV padding), each vector reduced and added to a double sum,
 * p *= (float)(1/sum). */
#if OPS_X86
static void softmax_512(float *s, int64_t n, float scale);
static void softmax_avx2(float *s, int64_t n, float scale);
#endif

void ops_softmax_ggml(float *s, int64_t n, float scale)
{
#if OPS_X86
    if (ops_have_f16c && cpu_level() >= CPU_AVX512) {
        softmax_512(s, n, scale);
        return;
    }
    if (ops_have_f16c && cpu_level() >= CPU_AVX2) {
        softmax_avx2(s, n, scale);
        return;
    }
#endif
    float mx = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        s[i] *= scale;
        mx = s[i] > mx ? s[i] : mx;
    }
    double sum = 0.0;
    for (int64_t b = 0; b < n; b += 16) {
        float e[16];
        int64_t m = n - b < 16 ? n - b : 16;
#if OPS_X86
        if (ops_have_avx2 && m == 16) {
            exp16_avx2(s + b, mx, e);
        } else
#endif
        {
            for (int k = 0; k < 16; k++)
                e[k] = k < m ? ops_expf_ggml(s[b + k] - mx) : 0.0f;
        }
        for (int k = 0; k < m; k++)
            s[b + k] = e[k];
        sum += (double)red16(e);
    }
    const float inv = (float)(1.0 / sum);
    ops_scale_round_f16(s, inv, n);
}

void ops_force_portable(int on)
{
    ops_init();
#if OPS_X86
    if (on)
        ops_have_avx2 = ops_have_f16c = 0;
    else {
        ops_have_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && !getenv("SMELT_NO_AVX2");
        unsigned int a = 0, b = 0, cx = 0, dx = 0;
        ops_have_f16c = ops_have_avx2 && __get_cpuid(1, &a, &b, &cx, &dx) && (cx & (1u << 29));
    }
#else
    (void)on;
#endif
}

int ops_fast_path(void) { return ops_have_avx2; }

/* One vdpbf16ps step on 16 lanes: lane k adds the product of elements
 * 2k+1, then of 2k (bf16 products are exact in f32, so fma or not is the
 * same; the instruction's DAZ/FTZ only matters for subnormal sums). */
static void dpbf16_step(float *acc, const float *a, const float *b)
{
    for (int k = 0; k < 16; k++)
        acc[k] = (acc[k] + a[2 * k + 1] * b[2 * k + 1]) + a[2 * k] * b[2 * k];
}

float ops_dot_tb32bf(const float *a, const float *b, int64_t n)
{
    float acc[16] = {0};
    for (int64_t l = 0; l + 32 <= n; l += 32)
        dpbf16_step(acc, a + l, b + l);
    return red16(acc);
}

float ops_dot_vbf16(const float *a, const float *b, int64_t n)
{
    float c1[16] = {0}, c2[16] = {0};
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        dpbf16_step(c1, a + i, b + i);
        dpbf16_step(c2, a + i + 32, b + i + 32);
    }
    double sum = 0.0;
    sum += (double)red16(c1);
    sum += (double)red16(c2);
    for (; i < n; i++)
        sum += (double)(a[i] * b[i]);
    return (float)sum;
}

/* ---- the same tinyBLAS<16> dot reading one side straight from F16 (the
 * KV cache): lanes convert exactly, so the bits equal ops_dot_tb16 on the
 * widened row. */

#if OPS_X86
__attribute__((target("avx2,fma,f16c"))) static float tb16_hf_f16c(const uint16_t *h, const float *f, const float *b,
                                                                    int64_t nh, int64_t n)
{
    __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
    int64_t l = 0;
    for (; l < nh; l += 16) {
        __m256 h0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(h + l)));
        __m256 h1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(h + l + 8)));
        lo = _mm256_fmadd_ps(h0, _mm256_loadu_ps(b + l), lo);
        hi = _mm256_fmadd_ps(h1, _mm256_loadu_ps(b + l + 8), hi);
    }
    for (; l < n; l += 16) {
        lo = _mm256_fmadd_ps(_mm256_loadu_ps(f + l), _mm256_loadu_ps(b + l), lo);
        hi = _mm256_fmadd_ps(_mm256_loadu_ps(f + l + 8), _mm256_loadu_ps(b + l + 8), hi);
    }
    return hsum256(_mm256_add_ps(lo, hi));
}
#endif

float ops_dot_tb16_hf(const uint16_t *h, const float *f, const float *b, int64_t nh, int64_t n)
{
#if OPS_X86
    if (ops_have_f16c)
        return tb16_hf_f16c(h, f, b, nh, n);
#endif
    float acc[16] = {0};
    for (int64_t l = 0; l < n; l += 16)
        for (int k = 0; k < 16; k++)
            acc[k] = fmaf(l < nh ? ops_f16_table[h[l + k]] : f[l + k], b[l + k], acc[k]);
    return red16(acc);
}

float ops_dot_tb16_h(const uint16_t *h, const float *b, int64_t n)
{
    return ops_dot_tb16_hf(h, NULL, b, n, n);
}

#if OPS_X86
__attribute__((target("avx2,f16c"))) static void f16_row_f16c(const uint16_t *h, float *f, int64_t n)
{
    int64_t i = 0;
    for (; i + 7 < n; i += 8)
        _mm256_storeu_ps(f + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(h + i))));
    for (; i < n; i++)
        f[i] = ops_f16_table[h[i]];
}
#endif

void ops_f16_row(const uint16_t *h, float *f, int64_t n)
{
#if OPS_X86
    if (ops_have_f16c) {
        f16_row_f16c(h, f, n);
        return;
    }
#endif
    for (int64_t i = 0; i < n; i++)
        f[i] = ops_f16_table[h[i]];
}

/* ------------------------------------------------------ attention kernels
 *
 * The attention of one query (forward.c) as llama.cpp computes it without
 * flash attention: KQ scores with the F16 mul_mat kernel, ggml's softmax,
 * then KQV. The SIMD versions run the same per-cell arithmetic, only
 * across several KV cells (KQ) or several output dimensions (KQV) at once:
 * each result keeps its reference order of f32 fma lanes, reduction tree
 * and double sums. Products of two F16 values are exact in f32, so no
 * partial sum that starts at +0 can become -0: the zero products of padded
 * cells change nothing and are skipped. */

#if OPS_X86
/* the kernels' level: ops_force_portable also turns them off */
static int attn_level(void) { return ops_have_avx2 ? cpu_level() : CPU_PORTABLE; }
#endif

/* One KQ score from a row k(i) (i < H) and q, as ops_dot_tb16 (tb16) or
 * ops_dot_vf16 (else). The portable reference of the kernels below. */
#define KQ_CELL(KV)                                                                                                 \
    do {                                                                                                            \
        if (tb16) {                                                                                                 \
            float acc[16] = {0};                                                                                    \
            for (int64_t l = 0; l < H; l += 16)                                                                     \
                for (int k = 0; k < 16; k++)                                                                        \
                    acc[k] = fmaf(KV(l + k), q[l + k], acc[k]);                                                     \
            res = red16(acc);                                                                                       \
        } else {                                                                                                    \
            const int64_t np = H & ~(int64_t)63;                                                                    \
            float s4[4][16] = {{0}};                                                                                \
            for (int64_t l = 0; l < np; l += 64)                                                                    \
                for (int jj = 0; jj < 4; jj++)                                                                      \
                    for (int k = 0; k < 16; k++)                                                                    \
                        s4[jj][k] = fmaf(KV(l + jj * 16 + k), q[l + jj * 16 + k], s4[jj][k]);                       \
            double sum = (double)(np ? red4x16(s4) : 0.0f);                                                         \
            for (int64_t i = np; i < H; i++)                                                                        \
                sum += (double)(KV(i) * q[i]);                                                                      \
            res = (float)sum;                                                                                       \
        }                                                                                                           \
    } while (0)

static void kq_t_scalar(const uint16_t *kt, int64_t ldk, const float *q, int64_t H, int64_t s0, int64_t n, int tb16,
                        float *out)
{
    for (int64_t s = s0; s < n; s++) {
        float res;
#define KT_AT(i) ops_f16_table[kt[(i) * ldk + s]]
        KQ_CELL(KT_AT);
#undef KT_AT
        out[s] = res;
    }
}

static void kq_t64_scalar(const double *kt, int64_t ldk, const float *q, int64_t H, int64_t s0, int64_t n, float *out)
{
    const int tb16 = 0;
    for (int64_t s = s0; s < n; s++) {
        float res;
#define KT_AT(i) ((float)kt[(i) * ldk + s])
        KQ_CELL(KT_AT);
#undef KT_AT
        out[s] = res;
    }
}

static void kq_rows_scalar(const uint16_t *kp, int64_t ldk, const float *q, int64_t H, int64_t n, int tb16,
                           float *out)
{
    for (int64_t s = 0; s < n; s++) {
        const uint16_t *kr = kp + s * ldk;
        float res;
#define KR_AT(i) ops_f16_table[kr[i]]
        KQ_CELL(KR_AT);
#undef KR_AT
        out[s] = res;
    }
}

/* KQV reference: row v(s) of one output dimension against p over n cells
 * (cells past n count as 0), tinyBLAS<16> or ggml_vec_dot_f16 over npad. */
static float pv_scalar(const uint16_t *v, const float *p, int64_t n, int64_t npad, int tb16)
{
    if (tb16) {
        float acc[16] = {0};
        for (int64_t s = 0; s < n; s++)
            acc[s % 16] = fmaf(ops_f16_table[v[s]], p[s], acc[s % 16]);
        return red16(acc);
    }
    const int64_t np = npad & ~(int64_t)63;
    const int64_t nv = n < np ? n : np;
    float s4[4][16] = {{0}};
    for (int64_t s = 0; s < nv; s++)
        s4[(s % 64) / 16][s % 16] = fmaf(ops_f16_table[v[s]], p[s], s4[(s % 64) / 16][s % 16]);
    double sum = (double)(np ? red4x16(s4) : 0.0f);
    for (int64_t s = np; s < n; s++)
        sum += (double)(ops_f16_table[v[s]] * p[s]);
    return (float)sum;
}

#if OPS_X86
#define T_AVX2 __attribute__((target("avx2,fma,f16c")))
#define T_AVX512 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl")))

/* ---- AVX2: 8 cells per vector */

T_AVX2 static inline __m256 ld8h(const uint16_t *p)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)p));
}

/* red16 of 16 vectors lane by lane (lane = cell): halves, quarters, pairs */
T_AVX2 static inline __m256 red16_v8(__m256 *a)
{
    __m256 t8[8], t4[4];
    for (int i = 0; i < 8; i++)
        t8[i] = _mm256_add_ps(a[8 + i], a[i]);
    for (int i = 0; i < 4; i++)
        t4[i] = _mm256_add_ps(t8[4 + i], t8[i]);
    return _mm256_add_ps(_mm256_add_ps(t4[0], t4[2]), _mm256_add_ps(t4[1], t4[3]));
}

T_AVX2 static void kq_t_avx2(const uint16_t *kt, int64_t ldk, const float *q, int64_t H, int64_t n, int tb16,
                             float *out)
{
    const int64_t n8 = n & ~(int64_t)7;
    for (int64_t s = 0; s < n8; s += 8) {
        const uint16_t *c = kt + s;
        __m256 r;
        if (tb16) {
            __m256 a[16];
            for (int k = 0; k < 16; k++)
                a[k] = _mm256_setzero_ps();
            for (int64_t l = 0; l < H; l += 16)
                for (int k = 0; k < 16; k++)
                    a[k] = _mm256_fmadd_ps(ld8h(c + (l + k) * ldk), _mm256_set1_ps(q[l + k]), a[k]);
            r = red16_v8(a);
        } else {
            const int64_t np = H & ~(int64_t)63;
            __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
            if (np) {
                __m256 v[16];
                for (int k = 0; k < 16; k++) {
                    __m256 s4[4];
                    for (int jj = 0; jj < 4; jj++)
                        s4[jj] = _mm256_setzero_ps();
                    for (int64_t l = 0; l < np; l += 64)
                        for (int jj = 0; jj < 4; jj++)
                            s4[jj] = _mm256_fmadd_ps(ld8h(c + (l + jj * 16 + k) * ldk),
                                                     _mm256_set1_ps(q[l + jj * 16 + k]), s4[jj]);
                    v[k] = _mm256_add_ps(_mm256_add_ps(s4[0], s4[2]), _mm256_add_ps(s4[1], s4[3]));
                }
                __m256 f = red16_v8(v);
                lo = _mm256_cvtps_pd(_mm256_castps256_ps128(f));
                hi = _mm256_cvtps_pd(_mm256_extractf128_ps(f, 1));
            }
            for (int64_t i = np; i < H; i++) {
                __m256 p = _mm256_mul_ps(ld8h(c + i * ldk), _mm256_set1_ps(q[i]));
                lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(p)));
                hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(p, 1)));
            }
            r = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm256_cvtpd_ps(lo)), _mm256_cvtpd_ps(hi), 1);
        }
        _mm256_storeu_ps(out + s, r);
    }
    kq_t_scalar(kt, ldk, q, H, n8, n, tb16, out);
}

/* ops_dot_vf16 / tb16 of one F16 row against f32 q (the row kernel) */
T_AVX2 static float kq_row_avx2(const uint16_t *k, const float *q, int64_t H, int tb16)
{
    if (tb16) {
        __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
        for (int64_t l = 0; l < H; l += 16) {
            lo = _mm256_fmadd_ps(ld8h(k + l), _mm256_loadu_ps(q + l), lo);
            hi = _mm256_fmadd_ps(ld8h(k + l + 8), _mm256_loadu_ps(q + l + 8), hi);
        }
        return hsum256(_mm256_add_ps(lo, hi));
    }
    const int64_t np = H & ~(int64_t)63;
    double sum = 0.0;
    if (np) {
        __m256 s[4][2];
        for (int jj = 0; jj < 4; jj++)
            s[jj][0] = s[jj][1] = _mm256_setzero_ps();
        for (int64_t l = 0; l < np; l += 64)
            for (int jj = 0; jj < 4; jj++)
                for (int h = 0; h < 2; h++) {
                    const int64_t o = l + jj * 16 + h * 8;
                    s[jj][h] = _mm256_fmadd_ps(ld8h(k + o), _mm256_loadu_ps(q + o), s[jj][h]);
                }
        sum = (double)red4x2_avx2(s);
    }
    for (int64_t i = np; i < H; i++)
        sum += (double)(ops_f16_table[k[i]] * q[i]);
    return (float)sum;
}

/* KQV, one output dimension (row of v) at a time */
T_AVX2 static void pv_avx2(const uint16_t *v, int64_t ldv, const float *p, int64_t n, int64_t npad, int64_t H,
                           int tb16, float *out)
{
    if (tb16) {
        const int64_t n16 = n & ~(int64_t)15;
        for (int64_t i = 0; i < H; i++) {
            const uint16_t *r = v + i * ldv;
            __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
            for (int64_t s = 0; s < n16; s += 16) {
                lo = _mm256_fmadd_ps(ld8h(r + s), _mm256_loadu_ps(p + s), lo);
                hi = _mm256_fmadd_ps(ld8h(r + s + 8), _mm256_loadu_ps(p + s + 8), hi);
            }
            if (n16 == n) {
                out[i] = hsum256(_mm256_add_ps(lo, hi));
                continue;
            }
            float acc[16];
            _mm256_storeu_ps(acc, lo);
            _mm256_storeu_ps(acc + 8, hi);
            for (int64_t s = n16; s < n; s++)
                acc[s - n16] = fmaf(ops_f16_table[r[s]], p[s], acc[s - n16]);
            out[i] = red16(acc);
        }
        return;
    }
    const int64_t np = npad & ~(int64_t)63;
    const int64_t nv = n < np ? n : np;
    const int64_t n64 = nv & ~(int64_t)63;
    for (int64_t i = 0; i < H; i++) {
        const uint16_t *r = v + i * ldv;
        double sum = 0.0;
        if (np) {
            __m256 s[4][2];
            for (int jj = 0; jj < 4; jj++)
                s[jj][0] = s[jj][1] = _mm256_setzero_ps();
            for (int64_t l = 0; l < n64; l += 64)
                for (int jj = 0; jj < 4; jj++)
                    for (int h = 0; h < 2; h++) {
                        const int64_t o = l + jj * 16 + h * 8;
                        s[jj][h] = _mm256_fmadd_ps(ld8h(r + o), _mm256_loadu_ps(p + o), s[jj][h]);
                    }
            float s4[4][16];
            for (int jj = 0; jj < 4; jj++) {
                _mm256_storeu_ps(s4[jj], s[jj][0]);
                _mm256_storeu_ps(s4[jj] + 8, s[jj][1]);
            }
            for (int64_t e = n64; e < nv; e++)
                s4[(e % 64) / 16][e % 16] = fmaf(ops_f16_table[r[e]], p[e], s4[(e % 64) / 16][e % 16]);
            sum = (double)red4x16(s4);
        }
        for (int64_t e = np; e < n; e++)
            sum += (double)(ops_f16_table[r[e]] * p[e]);
        out[i] = (float)sum;
    }
}

/* ---- AVX-512: 16 cells per vector, masked tails */

T_AVX512 static inline __m512 ld16h(const uint16_t *p, __mmask16 m)
{
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
}

T_AVX512 static inline __m512 red16_v16(__m512 *a)
{
    __m512 t8[8], t4[4];
    for (int i = 0; i < 8; i++)
        t8[i] = _mm512_add_ps(a[8 + i], a[i]);
    for (int i = 0; i < 4; i++)
        t4[i] = _mm512_add_ps(t8[4 + i], t8[i]);
    return _mm512_add_ps(_mm512_add_ps(t4[0], t4[2]), _mm512_add_ps(t4[1], t4[3]));
}

/* red16 of one zmm in gcc's _mm512_reduce_add_ps order */
T_AVX512 static inline float hsum512(__m512 v)
{
    return hsum256(_mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1)));
}

static inline __mmask16 tail_mask(int64_t left) { return left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1u); }

/* ops_dot_vf16 of 64 cells (four 16-cell blocks, masks m) of a transposed
 * K head: the 4x16-lane part over H & ~63, then the tail summed in double
 * in index order. Four blocks give the double sums independent chains. */
T_AVX512 static void kq_t_512_vf64(const uint16_t *c, int64_t ldk, const float *q, int64_t H, const __mmask16 *m,
                                   float *out)
{
    const int64_t np = H & ~(int64_t)63;
    __m512d lo[4], hi[4];
    for (int bk = 0; bk < 4; bk++) {
        lo[bk] = _mm512_setzero_pd();
        hi[bk] = _mm512_setzero_pd();
        if (!np || !m[bk])
            continue;
        __m512 v[16];
        for (int k = 0; k < 16; k++) {
            __m512 s4[4];
            for (int jj = 0; jj < 4; jj++)
                s4[jj] = _mm512_setzero_ps();
            for (int64_t l = 0; l < np; l += 64)
                for (int jj = 0; jj < 4; jj++)
                    s4[jj] = _mm512_fmadd_ps(ld16h(c + (l + jj * 16 + k) * ldk + 16 * bk, m[bk]),
                                             _mm512_set1_ps(q[l + jj * 16 + k]), s4[jj]);
            v[k] = _mm512_add_ps(_mm512_add_ps(s4[0], s4[2]), _mm512_add_ps(s4[1], s4[3]));
        }
        __m512 f = red16_v16(v);
        lo[bk] = _mm512_cvtps_pd(_mm512_castps512_ps256(f));
        hi[bk] = _mm512_cvtps_pd(_mm512_extractf32x8_ps(f, 1));
    }
    /* named accumulators: kept in registers (an indexed array was not) */
    __m512d l0 = lo[0], l1 = lo[1], l2 = lo[2], l3 = lo[3], h0 = hi[0], h1 = hi[1], h2 = hi[2], h3 = hi[3];
    const __mmask16 m0 = m[0], m1 = m[1], m2 = m[2], m3 = m[3];
#define KQ_TAIL_STEP(bk, mk, L, Hh)                                                                                \
    do {                                                                                                           \
        __m512 p = _mm512_mul_ps(ld16h(c + i * ldk + 16 * (bk), mk), qv);                                          \
        L = _mm512_add_pd(L, _mm512_cvtps_pd(_mm512_castps512_ps256(p)));                                          \
        Hh = _mm512_add_pd(Hh, _mm512_cvtps_pd(_mm512_extractf32x8_ps(p, 1)));                                     \
    } while (0)
    for (int64_t i = np; i < H; i++) {
        const __m512 qv = _mm512_set1_ps(q[i]);
        KQ_TAIL_STEP(0, m0, l0, h0);
        KQ_TAIL_STEP(1, m1, l1, h1);
        KQ_TAIL_STEP(2, m2, l2, h2);
        KQ_TAIL_STEP(3, m3, l3, h3);
    }
#undef KQ_TAIL_STEP
    lo[0] = l0, lo[1] = l1, lo[2] = l2, lo[3] = l3;
    hi[0] = h0, hi[1] = h1, hi[2] = h2, hi[3] = h3;
    for (int bk = 0; bk < 4; bk++) {
        __m512 r = _mm512_insertf32x8(_mm512_castps256_ps512(_mm512_cvtpd_ps(lo[bk])), _mm512_cvtpd_ps(hi[bk]), 1);
        _mm512_mask_storeu_ps(out + 16 * bk, m[bk], r);
    }
}

T_AVX512 static void kq_t_512(const uint16_t *kt, int64_t ldk, const float *q, int64_t H, int64_t n, int tb16,
                              float *out)
{
    if (!tb16) {
        for (int64_t s = 0; s < n; s += 64) {
            __mmask16 m[4];
            for (int bk = 0; bk < 4; bk++)
                m[bk] = s + 16 * bk < n ? tail_mask(n - s - 16 * bk) : 0;
            kq_t_512_vf64(kt + s, ldk, q, H, m, out + s);
        }
        return;
    }
    for (int64_t s = 0; s < n; s += 16) {
        const __mmask16 m = tail_mask(n - s);
        const uint16_t *c = kt + s;
        __m512 a[16];
        for (int k = 0; k < 16; k++)
            a[k] = _mm512_setzero_ps();
        for (int64_t l = 0; l < H; l += 16)
            for (int k = 0; k < 16; k++)
                a[k] = _mm512_fmadd_ps(ld16h(c + (l + k) * ldk, m), _mm512_set1_ps(q[l + k]), a[k]);
        _mm512_mask_storeu_ps(out + s, m, red16_v16(a));
    }
}

T_AVX512 static void pv_512(const uint16_t *v, int64_t ldv, const float *p, int64_t n, int64_t npad, int64_t H,
                            int tb16, float *out)
{
    if (tb16) {
        /* four output dimensions at a time: independent fma chains */
        int64_t i = 0;
        for (; i + 4 <= H; i += 4) {
            const uint16_t *r = v + i * ldv;
            __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(),
                   a3 = _mm512_setzero_ps();
            for (int64_t s = 0; s < n; s += 16) {
                const __mmask16 m = tail_mask(n - s);
                const __m512 pv = _mm512_maskz_loadu_ps(m, p + s);
                a0 = _mm512_fmadd_ps(ld16h(r + s, m), pv, a0);
                a1 = _mm512_fmadd_ps(ld16h(r + ldv + s, m), pv, a1);
                a2 = _mm512_fmadd_ps(ld16h(r + 2 * ldv + s, m), pv, a2);
                a3 = _mm512_fmadd_ps(ld16h(r + 3 * ldv + s, m), pv, a3);
            }
            out[i] = hsum512(a0);
            out[i + 1] = hsum512(a1);
            out[i + 2] = hsum512(a2);
            out[i + 3] = hsum512(a3);
        }
        for (; i < H; i++) {
            const uint16_t *r = v + i * ldv;
            __m512 a0 = _mm512_setzero_ps();
            for (int64_t s = 0; s < n; s += 16) {
                const __mmask16 m = tail_mask(n - s);
                a0 = _mm512_fmadd_ps(ld16h(r + s, m), _mm512_maskz_loadu_ps(m, p + s), a0);
            }
            out[i] = hsum512(a0);
        }
        return;
    }
    const int64_t np = npad & ~(int64_t)63;
    const int64_t nv = n < np ? n : np;
    for (int64_t i = 0; i < H; i++) {
        const uint16_t *r = v + i * ldv;
        double sum = 0.0;
        if (np) {
            __m512 s4[4];
            for (int jj = 0; jj < 4; jj++)
                s4[jj] = _mm512_setzero_ps();
            for (int64_t l = 0; l < nv; l += 64)
                for (int jj = 0; jj < 4; jj++) {
                    const int64_t o = l + jj * 16;
                    const __mmask16 m = o < nv ? tail_mask(nv - o) : 0;
                    s4[jj] = _mm512_fmadd_ps(ld16h(r + o, m), _mm512_maskz_loadu_ps(m, p + o), s4[jj]);
                }
            sum = (double)hsum512(_mm512_add_ps(_mm512_add_ps(s4[0], s4[2]), _mm512_add_ps(s4[1], s4[3])));
        }
        for (int64_t e = np; e < n; e++)
            sum += (double)(ops_f16_table[r[e]] * p[e]);
        out[i] = (float)sum;
    }
}

/* ggml_v_expf on 16 lanes as ggml's AVX-512 build computes it (the bits of
 * ops_expf_ggml: _mm512_scalef_ps rounds like ldexpf).
 *
 * Results below 2^-126 (n <= -126: attention rows where a cell trails the
 * maximum by more than ~87) are subnormal, and an Intel core takes a
 * microcode assist of ~100 cycles for each instruction that produces one;
 * a few percent of such cells made the softmax ~1.7x slower. Those lanes
 * are computed without a subnormal result: scalef by n + 149 instead of n
 * lands j * 2^(n+149) in [2^-32, 2^24), exactly (a power-of-two scaling of
 * a normal float), and its round-to-nearest-even integer m is the bit
 * pattern of j * 2^n rounded to the 2^-149 grid that subnormals and the
 * lowest binade share — the very rounding scalef would do. */
T_AVX512 static inline __m512 expf16_512(__m512 x)
{
    const __m512 r = _mm512_set1_ps(0x1.8p23f);
    const __m512 z = _mm512_fmadd_ps(x, _mm512_set1_ps(0x1.715476p+0f), r);
    const __m512 n = _mm512_sub_ps(z, r);
    const __m512 b = _mm512_fnmadd_ps(n, _mm512_set1_ps(0x1.7f7d1cp-20f),
                                      _mm512_fnmadd_ps(n, _mm512_set1_ps(0x1.62e4p-1f), x));
    const __mmask16 d = _mm512_cmp_ps_mask(_mm512_abs_ps(n), _mm512_set1_ps(192.0f), _CMP_GT_OQ);
    const __m512 u = _mm512_mul_ps(b, b);
    const __m512 j = _mm512_fmadd_ps(
        _mm512_fmadd_ps(_mm512_fmadd_ps(_mm512_set1_ps(0x1.0e4020p-7f), b, _mm512_set1_ps(0x1.573e2ep-5f)), u,
                        _mm512_fmadd_ps(_mm512_set1_ps(0x1.555e66p-3f), b, _mm512_set1_ps(0x1.fffdb6p-2f))),
        u, _mm512_fmadd_ps(_mm512_set1_ps(0x1.ffffecp-1f), b, _mm512_set1_ps(1.0f)));
    const __mmask16 low = _mm512_cmp_ps_mask(n, _mm512_set1_ps(-125.5f), _CMP_LT_OQ);
    __m512 res;
    if (!low) {
        res = _mm512_scalef_ps(j, n);
    } else {
        /* n clamped to -180 (lanes below give 0 either way, and the d
         * lanes are replaced below): n + 149 >= -31 */
        res = _mm512_scalef_ps(j, _mm512_max_ps(n, _mm512_set1_ps(-125.0f)));
        const __m512 sh =
            _mm512_scalef_ps(j, _mm512_add_ps(_mm512_max_ps(n, _mm512_set1_ps(-180.0f)), _mm512_set1_ps(149.0f)));
        res = _mm512_mask_mov_ps(res, low, _mm512_castsi512_ps(_mm512_cvtps_epi32(sh)));
    }
    if (!d)
        return res;
    const __mmask16 neg = _mm512_cmp_ps_mask(n, _mm512_setzero_ps(), _CMP_LE_OQ);
    const __m512 alt = _mm512_mask_blend_ps(neg, _mm512_set1_ps(INFINITY), _mm512_setzero_ps());
    return _mm512_mask_blend_ps(d, res, alt);
}

T_AVX512 static void expf16_512_store(const float *x, float *out)
{
    _mm512_storeu_ps(out, expf16_512(_mm512_loadu_ps(x)));
}

T_AVX512 static void softmax_512(float *s, int64_t n, float scale)
{
    const __m512 sv = _mm512_set1_ps(scale);
    __m512 mv = _mm512_set1_ps(-INFINITY);
    for (int64_t b = 0; b < n; b += 16) {
        const __mmask16 m = tail_mask(n - b);
        __m512 x = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, s + b), sv);
        _mm512_mask_storeu_ps(s + b, m, x);
        /* x > max ? x : max, per lane (a NaN never wins, as in the scalar loop) */
        mv = _mm512_mask_max_ps(mv, m, x, mv);
    }
    /* the lanes' maxima in any order: only the sign of a zero maximum can
     * differ, and exp(s - (+0)) == exp(s - (-0)) */
    const float mx = _mm512_reduce_max_ps(mv);
    const __m512 mxv = _mm512_set1_ps(mx);
    double sum = 0.0;
    /* 64 cells a step; the per-block sums are added in block order */
    for (int64_t b = 0; b < n; b += 64) {
        __m512 e[4];
        for (int k = 0; k < 4; k++) {
            const __mmask16 m = b + 16 * k < n ? tail_mask(n - b - 16 * k) : 0;
            e[k] = _mm512_maskz_mov_ps(m, expf16_512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, s + b + 16 * k), mxv)));
            _mm512_mask_storeu_ps(s + b + 16 * k, m, e[k]);
        }
        float r[16];
        _mm512_storeu_ps(r, simd_red512_x4(e[0], e[1], e[2], e[3]));
        /* blocks past n are all zeros: adding +0 to the (positive) sum
         * changes nothing */
        sum += (double)r[0];
        sum += (double)r[4];
        sum += (double)r[8];
        sum += (double)r[12];
    }
    /* sum >= 1 (the maximum's cell is exp(0) = 1), so iv <= 1: a cell below
     * 2^-26 ends below 2^-26, which rounds to F16 zero. Those lanes are
     * zeroed instead of multiplied, as a subnormal factor or product would
     * cost an assist (above); the product of the others is >= 2^-26 / n. */
    const __m512 iv = _mm512_set1_ps((float)(1.0 / sum));
    const __m512i tiny = _mm512_set1_epi32(0x32800000); /* 2^-26 */
    for (int64_t b = 0; b < n; b += 16) {
        const __mmask16 m = tail_mask(n - b);
        const __m512 e = _mm512_maskz_loadu_ps(m, s + b);
        const __mmask16 big = _mm512_cmpge_epi32_mask(_mm512_castps_si512(e), tiny);
        __m512 x = _mm512_maskz_mul_ps(big, e, iv);
        x = _mm512_cvtph_ps(_mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        _mm512_mask_storeu_ps(s + b, m, x);
    }
}

T_AVX2 static void softmax_avx2(float *s, int64_t n, float scale)
{
    const __m256 sv = _mm256_set1_ps(scale);
    __m256 mv = _mm256_set1_ps(-INFINITY);
    const int64_t n8 = n & ~(int64_t)7;
    for (int64_t i = 0; i < n8; i += 8) {
        __m256 x = _mm256_mul_ps(_mm256_loadu_ps(s + i), sv);
        _mm256_storeu_ps(s + i, x);
        mv = _mm256_max_ps(x, mv);
    }
    float lanes[8];
    _mm256_storeu_ps(lanes, mv);
    float mx = -INFINITY;
    for (int k = 0; k < 8; k++)
        mx = lanes[k] > mx ? lanes[k] : mx;
    for (int64_t i = n8; i < n; i++) {
        s[i] *= scale;
        mx = s[i] > mx ? s[i] : mx;
    }
    double sum = 0.0;
    for (int64_t b = 0; b < n; b += 16) {
        float e[16];
        if (n - b >= 16) {
            exp16_avx2(s + b, mx, e);
            memcpy(s + b, e, sizeof e);
        } else {
            /* the last partial block: zeros past n (masked cells) */
            const int64_t m = n - b;
            float t[16];
            for (int k = 0; k < 16; k++)
                t[k] = k < m ? s[b + k] : mx;
            exp16_avx2(t, mx, e);
            for (int k = 0; k < 16; k++)
                e[k] = k < m ? e[k] : 0.0f;
            memcpy(s + b, e, (size_t)m * sizeof(float));
        }
        sum += (double)red16(e);
    }
    scale_round_f16c(s, (float)(1.0 / sum), n);
}

/* ---- KQ over a transposed K head held as doubles (the vec_dot_f16 case).
 * A product of two F16 values is exact in f32 and in double, so
 * fma(k, q, sum) in double adds exactly the f32 product the reference
 * converts: one fma per cell and dimension instead of a convert chain. */

/* the 4x16-lane f32 part of one 16-cell block (H >= 64: rare head sizes
 * that are not multiples of 16) */
T_AVX512 static __m512 kq_t64_512_vec64(const double *c, int64_t ldk, const float *q, int64_t np, __mmask16 m)
{
    __m512 v[16];
    for (int k = 0; k < 16; k++) {
        __m512 s4[4];
        for (int jj = 0; jj < 4; jj++)
            s4[jj] = _mm512_setzero_ps();
        for (int64_t l = 0; l < np; l += 64)
            for (int jj = 0; jj < 4; jj++) {
                const double *r = c + (l + jj * 16 + k) * ldk;
                __m512 kv = _mm512_insertf32x8(
                    _mm512_castps256_ps512(_mm512_cvtpd_ps(_mm512_maskz_loadu_pd((__mmask8)m, r))),
                    _mm512_cvtpd_ps(_mm512_maskz_loadu_pd((__mmask8)(m >> 8), r + 8)), 1);
                s4[jj] = _mm512_fmadd_ps(kv, _mm512_set1_ps(q[l + jj * 16 + k]), s4[jj]);
            }
        v[k] = _mm512_add_ps(_mm512_add_ps(s4[0], s4[2]), _mm512_add_ps(s4[1], s4[3]));
    }
    return red16_v16(v);
}

T_AVX512 static void kq_t64_512(const double *kt, int64_t ldk, const float *q, int64_t H, int64_t n, float *out)
{
    const int64_t np = H & ~(int64_t)63;
    for (int64_t s = 0; s < n; s += 32) {
        /* 32 cells: four 8-lane double chains */
        const __mmask16 ma = tail_mask(n - s), mb = s + 16 < n ? tail_mask(n - s - 16) : 0;
        const __mmask8 m0 = (__mmask8)ma, m1 = (__mmask8)(ma >> 8), m2 = (__mmask8)mb, m3 = (__mmask8)(mb >> 8);
        const double *c = kt + s;
        __m512d a0 = _mm512_setzero_pd(), a1 = _mm512_setzero_pd(), a2 = _mm512_setzero_pd(),
                a3 = _mm512_setzero_pd();
        if (np) {
            __m512 fa = kq_t64_512_vec64(c, ldk, q, np, ma);
            a0 = _mm512_cvtps_pd(_mm512_castps512_ps256(fa));
            a1 = _mm512_cvtps_pd(_mm512_extractf32x8_ps(fa, 1));
            if (mb) {
                __m512 fb = kq_t64_512_vec64(c + 16, ldk, q, np, mb);
                a2 = _mm512_cvtps_pd(_mm512_castps512_ps256(fb));
                a3 = _mm512_cvtps_pd(_mm512_extractf32x8_ps(fb, 1));
            }
        }
        for (int64_t i = np; i < H; i++) {
            const double *r = c + i * ldk;
            const __m512d qv = _mm512_set1_pd((double)q[i]);
            a0 = _mm512_fmadd_pd(_mm512_maskz_loadu_pd(m0, r), qv, a0);
            a1 = _mm512_fmadd_pd(_mm512_maskz_loadu_pd(m1, r + 8), qv, a1);
            a2 = _mm512_fmadd_pd(_mm512_maskz_loadu_pd(m2, r + 16), qv, a2);
            a3 = _mm512_fmadd_pd(_mm512_maskz_loadu_pd(m3, r + 24), qv, a3);
        }
        _mm512_mask_storeu_ps(out + s, ma,
                              _mm512_insertf32x8(_mm512_castps256_ps512(_mm512_cvtpd_ps(a0)), _mm512_cvtpd_ps(a1), 1));
        if (mb)
            _mm512_mask_storeu_ps(out + s + 16, mb,
                                  _mm512_insertf32x8(_mm512_castps256_ps512(_mm512_cvtpd_ps(a2)),
                                                     _mm512_cvtpd_ps(a3), 1));
    }
}

T_AVX2 static void kq_t64_avx2(const double *kt, int64_t ldk, const float *q, int64_t H, int64_t n, float *out)
{
    const int64_t np = H & ~(int64_t)63;
    if (np) {
        /* rare head sizes: the portable code (same bits) */
        kq_t64_scalar(kt, ldk, q, H, 0, n, out);
        return;
    }
    const int64_t n16 = n & ~(int64_t)15;
    for (int64_t s = 0; s < n16; s += 16) {
        const double *c = kt + s;
        __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd(), a2 = _mm256_setzero_pd(),
                a3 = _mm256_setzero_pd();
        for (int64_t i = 0; i < H; i++) {
            const double *r = c + i * ldk;
            const __m256d qv = _mm256_set1_pd((double)q[i]);
            a0 = _mm256_fmadd_pd(_mm256_loadu_pd(r), qv, a0);
            a1 = _mm256_fmadd_pd(_mm256_loadu_pd(r + 4), qv, a1);
            a2 = _mm256_fmadd_pd(_mm256_loadu_pd(r + 8), qv, a2);
            a3 = _mm256_fmadd_pd(_mm256_loadu_pd(r + 12), qv, a3);
        }
        _mm_storeu_ps(out + s, _mm256_cvtpd_ps(a0));
        _mm_storeu_ps(out + s + 4, _mm256_cvtpd_ps(a1));
        _mm_storeu_ps(out + s + 8, _mm256_cvtpd_ps(a2));
        _mm_storeu_ps(out + s + 12, _mm256_cvtpd_ps(a3));
    }
    kq_t64_scalar(kt, ldk, q, H, n16, n, out);
}
#endif

void ops_kq_t64(const double *kt, int64_t ldk, const float *q, int64_t H, int64_t n, float *out)
{
#if OPS_X86
    const int lv = attn_level();
    if (lv >= CPU_AVX512) {
        kq_t64_512(kt, ldk, q, H, n, out);
        return;
    }
    if (lv >= CPU_AVX2) {
        kq_t64_avx2(kt, ldk, q, H, n, out);
        return;
    }
#endif
    kq_t64_scalar(kt, ldk, q, H, 0, n, out);
}

void ops_kq_t(const uint16_t *kt, int64_t ldk, const float *q, int64_t H, int64_t n, int tb16, float *out)
{
#if OPS_X86
    const int lv = attn_level();
    if (lv >= CPU_AVX512) {
        kq_t_512(kt, ldk, q, H, n, tb16, out);
        return;
    }
    if (lv >= CPU_AVX2) {
        kq_t_avx2(kt, ldk, q, H, n, tb16, out);
        return;
    }
#endif
    kq_t_scalar(kt, ldk, q, H, 0, n, tb16, out);
}

void ops_kq_rows(const uint16_t *k, int64_t ldk, const float *q, int64_t H, int64_t n, int tb16, float *out)
{
#if OPS_X86
    if (attn_level() >= CPU_AVX2) {
        for (int64_t s = 0; s < n; s++)
            out[s] = kq_row_avx2(k + s * ldk, q, H, tb16);
        return;
    }
#endif
    kq_rows_scalar(k, ldk, q, H, n, tb16, out);
}

void ops_pv(const uint16_t *v, int64_t ldv, const float *p, int64_t n, int64_t npad, int64_t H, int tb16,
            float *out)
{
#if OPS_X86
    const int lv = attn_level();
    if (lv >= CPU_AVX512) {
        pv_512(v, ldv, p, n, npad, H, tb16, out);
        return;
    }
    if (lv >= CPU_AVX2) {
        pv_avx2(v, ldv, p, n, npad, H, tb16, out);
        return;
    }
#endif
    for (int64_t i = 0; i < H; i++)
        out[i] = pv_scalar(v + i * ldv, p, n, npad, tb16);
}

void ops_expf16_ggml(const float *x, float *out)
{
#if OPS_X86
    if (ops_have_f16c && cpu_level() >= CPU_AVX512) {
        expf16_512_store(x, out);
        return;
    }
    if (ops_have_avx2) {
        exp16_avx2(x, 0.0f, out); /* x - 0 is x */
        return;
    }
#endif
    for (int k = 0; k < 16; k++)
        out[k] = ops_expf_ggml(x[k]);
}
