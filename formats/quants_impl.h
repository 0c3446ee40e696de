/* quants_impl.h — internals shared by quants.c, quants_k.c, quants_simd.c.
 * Not part of the public API. */
#ifndef SMELT_QUANTS_IMPL_H
#define SMELT_QUANTS_IMPL_H

#include "quants.h"
#include "fp16.h"

#include <stdint.h>
#include <string.h>

#define SM_QMIN(a, b) ((a) < (b) ? (a) : (b))
#define SM_QMAX(a, b) ((a) > (b) ? (a) : (b))

/* A group whose largest magnitude is below this counts as all zero
 * (ggml's GROUP_MAX_EPS). */
#define SM_GROUP_MAX_EPS 1e-15f

/* Round to nearest (ties to even) for |f| <= 2^22 by adding 1.5 * 2^23:
 * the sum's low mantissa bits are then the integer. Same trick, same result
 * as ggml's nearest_int, also for out-of-range inputs (no UB: bit ops only). */
static inline int sm_nearest_int(float f)
{
    float v = f + 12582912.f;
    int32_t i;
    memcpy(&i, &v, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

/* float -> int32 the way x86's cvttss2si truncates: NaN and out-of-range
 * values give INT32_MIN. ggml's casts like (int8_t)(x + 8.5f) compile to
 * exactly this followed by taking the low byte; writing it out keeps the
 * degenerate cases (inf/NaN scales) identical and free of C-level UB. */
static inline int32_t sm_cvtt(float f)
{
    if (!(f > -2147483904.0f && f < 2147483648.0f))
        return INT32_MIN;
    return (int32_t)f;
}

/* Low byte of an int, as the C conversion to int8_t does on every target
 * gcc/clang support (two's complement, modulo). */
static inline int8_t sm_low_i8(int32_t v) { return (int8_t)(uint8_t)((uint32_t)v & 0xffu); }
static inline uint8_t sm_low_u8(int32_t v) { return (uint8_t)((uint32_t)v & 0xffu); }

/* The search helpers (sm_q_make_qx, sm_q_make_q3, sm_q_make_qkx2,
 * sm_q_make_qkx3, sm_q_make_qp) live in quants_search.h. Names follow
 * ggml's so a reader can compare:
 * make_qx: symmetric signed levels [-nmax, nmax-1], weighted RMSE search
 *   over 19 trial scales; L gets level + nmax. rmse_type 1 (weights x^2 or
 *   qw when given) is the only mode llama.cpp's weight paths use.
 * make_q3: symmetric with iterative per-element refinement (Q3_K ref).
 * make_qkx2/qkx3: asymmetric levels [0, nmax] with a min, scale/min least
 *   squares over nstep trial scales. qkx3 takes NULL weights = x^2.
 * make_qp: positive levels [0, nmax] for quantizing scales/mins.
 * Group sizes n are at most 256 (callers use 16 or 32). */

/* AVX2 kernels (quants_simd.c); only called when sm_quants_simd_active(). */
void sm_q_avx2_quantize_q8_0_ref(const float *x, sm_block_q8_0 *y, int64_t nb);
void sm_q_avx2_quantize_q8_0_act(const float *x, sm_block_q8_0 *y, int64_t nb);
void sm_q_avx2_quantize_q8_1_act(const float *x, sm_block_q8_1 *y, int64_t nb);
void sm_q_avx2_quantize_q8_K(const float *x, sm_block_q8_K *y, int64_t nb);
void sm_q_avx2_dequantize_q8_0(const sm_block_q8_0 *x, float *y, int64_t nb);
void sm_q_avx2_dequantize_q4_K(const sm_block_q4_K *x, float *y, int64_t nb);
void sm_q_avx2_dequantize_q6_K(const sm_block_q6_K *x, float *y, int64_t nb);

#endif
