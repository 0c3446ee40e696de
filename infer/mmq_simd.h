/* mmq_simd.h — small SIMD helpers shared by the quantized-product kernels
 * (mmq_k.c, mmq_k3.c, mmq_b32.c).
 *
 * Every helper is static inline with its own target attribute, so a file
 * may include this header and still be compiled without -march; call them
 * only from functions whose target includes the helper's (and only after
 * cpu_level() said so). */
#ifndef SMELT_INFER_MMQ_SIMD_H
#define SMELT_INFER_MMQ_SIMD_H

#if defined(__x86_64__)
#include "quants.h"

#include <immintrin.h>

#define MMQ_T_AVX2 __attribute__((target("avx2,fma,f16c")))
/* AVX-512 with VNNI: call only when cpu_has_vnni(). */
#define MMQ_T_AVX512 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")))

/* ggml's hsum_float_8: the two 128-bit halves added, then movehl, then
 * movehdup; the order of matmul.c's hsum8_scalar:
 * (v0+v4 + v2+v6) + (v1+v5 + v3+v7). */
MMQ_T_AVX2 static inline float mmq_hsum8(__m256 v)
{
    __m128 lo = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

/* The 16 bsums of a q8_K block summed in pairs: [8] int16, entry j = sum of
 * the activation quants of 32-element sub-block j (|.| <= 32*128 fits). */
MMQ_T_AVX2 static inline __m128i mmq_q8k_bsum32(const sm_block_q8_K *y)
{
    return _mm_hadd_epi16(_mm_loadu_si128((const __m128i *)(const void *)y->bsums),
                          _mm_loadu_si128((const __m128i *)(const void *)(y->bsums + 8)));
}

#endif

#endif
