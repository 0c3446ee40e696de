/* matmul.h — integer-exact block dot products for quantized weights.
 *
 * llama.cpp multiplies a quantized weight row with activations quantized to
 * Q8_0 / Q8_1 / Q8_K: each block's product is an exact integer sum, scaled
 * by the block scales in f32. Doing the same here (rather than a float dot
 * of dequantized values) keeps rounding differences at the level of the
 * final f32 accumulation, which matters because each layer re-quantizes its
 * activations: a single flipped rounding changes every later value.
 *
 * A weight row is first unpacked (mm_unpack_row) into int8 levels plus
 * per-block scales; the unpacked row is then reused for every token. */
#ifndef SMELT_INFER_MATMUL_H
#define SMELT_INFER_MATMUL_H

#include "quants.h"
#include "types.h"

#include <stdint.h>

enum mm_kind {
    MM_FLOAT = 0, /* F32/F16/BF16: float dot of (rounded) activations */
    MM_B32,       /* Q4_0, Q5_0, Q8_0, IQ4_NL with Q8_0 activations */
    MM_B32M,      /* Q4_1, Q5_1 with Q8_1 activations */
    MM_K,         /* Q2_K..Q6_K with Q8_K activations */
};

/* One unpacked weight row of n elements. */
typedef struct mm_row {
    int8_t *q;      /* [n] integer levels */
    float *d;       /* [n/32] (B32) or [n/256] (K) block scale */
    float *m;       /* [n/32] min (B32M) or [n/256] dmin (K) */
    int16_t *sc;    /* [n/16] sub-block scale (K) */
    int16_t *mn;    /* [n/16] sub-block min (K: q2_K, q4_K, q5_K) */
    int16_t *w;     /* [n] q widened to int16, times sc for K (|q*sc| < 2^15) */
    uint32_t type;  /* the row's ggml type (set by mm_unpack_row) */
} mm_row;

int mm_kind_of(uint32_t type);
/* Allocates the buffers of r for rows of up to n elements (every field the
 * portable unpack fills). Returns 0, or -1 when out of memory (r is then
 * empty and mm_row_free(r) is still safe). */
int mm_row_alloc(mm_row *r, int64_t n);
/* Frees what mm_row_alloc allocated; r becomes empty. */
void mm_row_free(mm_row *r);
/* Bytes of activation blocks for n elements of the kind's activation type. */
uint64_t mm_act_bytes(int kind, int64_t n);
/* Quantizes one activation row x[n] for kind into dst (ggml's x86 way). */
void mm_quantize_act(int kind, const float *x, void *dst, int64_t n);
/* Unpacks one row of a quantized type. Buffers in r must hold n entries.
 * w, d, m, sc and mn are always filled; q only by the portable path (the
 * AVX2 path writes w directly for Q4_K, Q6_K and Q8_0). */
void mm_unpack_row(uint32_t type, const uint8_t *src, int64_t n, mm_row *r);
/* Widens the int8 quants of activation blocks act (n elements) to int16. */
void mm_widen_act(int kind, const void *act, int16_t *act16, int64_t n);
/* Dot product of an unpacked row with quantized activations act (and their
 * int16 copy act16 from mm_widen_act). The f32 accumulation follows ggml's
 * x86 kernels (AVX2 ggml_vec_dot_qX_K_q8_K, tinyBLAS_Q0_AVX): each block's
 * exact integer products are grouped in 8 lanes of 4 consecutive elements,
 * scaled into 8 f32 lanes with fma, mins handled per type, one horizontal
 * sum at the end; the AVX2 and portable paths give the same bits. */
float mm_dot(int kind, const mm_row *r, const void *act, const int16_t *act16, int64_t n);
/* An IQ4_NL row against one token when the whole product has one token:
 * llama.cpp then runs ggml_vec_dot_iq4_nl_q8_0 instead of tinyBLAS (whose
 * order mm_dot follows), and its AVX2 kernel puts even blocks into one
 * 8-lane accumulator and odd blocks into another, adds the two before the
 * reduction, and fuses an odd last block in after it:
 *   y = fma((float)dot(last block), dw * dx, hsum8(acc_even + acc_odd)). */
float mm_dot_iq4nl_vec(const mm_row *r, const void *act, const int16_t *act16, int64_t n);
/* llama.cpp on an AVX2 CPU repacks a Q4_0 matrix whose row count is a
 * multiple of 8 (8 rows interleaved, its "CPU_AARCH64" buffer) and runs
 * its own gemv/gemm on it: per (row, token) one exact integer dot per block
 * and acc = fma((float)dot, dw * dx, acc) in block order: no lanes, no
 * final reduction. mmq_rows takes MM_TYPE_Q4_0_X8 for such weights
 * (mm_weight_type) and computes this; mm_dot_q4_0_x8 is the portable dot. */
#define MM_TYPE_Q4_0_X8 0x40000000u
static inline uint32_t mm_weight_type(uint32_t type, int64_t n_rows)
{
    return type == SM_TYPE_Q4_0 && n_rows % 8 == 0 ? MM_TYPE_Q4_0_X8 : type;
}
float mm_dot_q4_0_x8(const mm_row *r, const void *act, const int16_t *act16, int64_t n);

/* Tests: 1 forces the portable kernels, 0 restores the CPU's choice. */
void mm_force_portable(int on);

/* ---- whole products (mmq.c): the kernel is chosen by type and CPU level */

/* Rows [r0, r1) of a quantized weight w (row_bytes per row, K elements per
 * row) times n_tok activation rows act + t*act_stride, quantized by
 * mm_quantize_act for mm_kind_of(type); act16 + t*K are their int16 copies
 * (mm_widen_act), read only when mmq_needs_act16(type):
 *   y[t*ldy + r] = mm_dot(row r, token t) (+ bias[r] when bias != NULL)
 * The results are bit-identical at every CPU level (cpu.h). u holds the
 * caller's per-thread unpack buffers (K entries each) for the portable
 * path. Never fails; the type must have mm_kind_of(type) != MM_FLOAT. */
void mmq_rows(uint32_t type, const uint8_t *w, uint64_t row_bytes, int64_t K, int64_t r0, int64_t r1,
              const uint8_t *act, uint64_t act_stride, const int16_t *act16, int32_t n_tok, float *y, int64_t ldy,
              const float *bias, mm_row *u);
/* 1 when mmq_rows would read act16 for this type at the current CPU level. */
int mmq_needs_act16(uint32_t type);

#endif
