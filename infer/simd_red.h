/* simd_red.h — horizontal sums of 16 float lanes in the order of gcc's
 * _mm512_reduce_add_ps, which ggml's vec_dot and llamafile's tinyBLAS
 * reductions compile to: the two 256-bit halves added lane by lane, then
 * the two 128-bit quarters, then (q0+q2) + (q1+q3). Shared by the float
 * kernels (ops.c, mmf_x86.c) so there is one statement of that tree.
 *
 * Static inline with their own target attribute: call them only from
 * AVX-512 functions, after cpu_level() said so. */
#ifndef SMELT_INFER_SIMD_RED_H
#define SMELT_INFER_SIMD_RED_H

#if defined(__x86_64__)
#include <immintrin.h>

#define SIMD_T512 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl")))

/* The sum of v's 16 lanes. */
SIMD_T512 static inline float simd_red512(__m512 v)
{
    __m256 s = _mm256_add_ps(_mm512_extractf32x8_ps(v, 1), _mm512_castps512_ps256(v));
    __m128 q = _mm_add_ps(_mm256_extractf128_ps(s, 1), _mm256_castps256_ps128(s));
    q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    q = _mm_add_ss(q, _mm_movehdup_ps(q));
    return _mm_cvtss_f32(q);
}

/* simd_red512 of four vectors at once, with the same tree for each (lane
 * sums are commutative, so shuffled operand order changes no bit): the sum
 * of e_k lands in lane 4k. About a third of the instructions of four
 * single reductions, which matters when a dot is short (K = 64: the
 * reductions of a 4 x 6 tile cost more than its fmas). */
SIMD_T512 static inline __m512 simd_red512_x4(__m512 e0, __m512 e1, __m512 e2, __m512 e3)
{
    const __m512 t01 = _mm512_add_ps(_mm512_shuffle_f32x4(e0, e1, 0x44), _mm512_shuffle_f32x4(e0, e1, 0xEE));
    const __m512 t23 = _mm512_add_ps(_mm512_shuffle_f32x4(e2, e3, 0x44), _mm512_shuffle_f32x4(e2, e3, 0xEE));
    const __m512 u = _mm512_add_ps(_mm512_shuffle_f32x4(t01, t23, 0x88), _mm512_shuffle_f32x4(t01, t23, 0xDD));
    const __m512 v = _mm512_add_ps(u, _mm512_permute_ps(u, 0x4E));
    return _mm512_add_ps(v, _mm512_permute_ps(v, 0xB1));
}

/* The four sums of simd_red512_x4 (lanes 0, 4, 8, 12) as one xmm. */
SIMD_T512 static inline __m128 simd_red512_x4_pack(__m512 r)
{
    return _mm512_castps512_ps128(
        _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), r));
}

#endif
#endif
