/* quants.h — ggml block codecs: quantize and dequantize, bit-identical to
 * llama.cpp at c392e5094.
 *
 * Why bit-identical: a GGUF written by smelt-quantize must equal the one
 * llama-quantize writes for the same input and imatrix, byte for byte. The
 * quantizers therefore follow ggml-quants.c's arithmetic exactly: the same
 * float (never double) expressions in the same order, the same float->int
 * conversions (truncating casts, roundf, the nearest_int magic-number trick),
 * and every f16 scale rounded through sm_f32_to_f16. The whole library is
 * built with -ffp-contract=off, as ggml's base library is effectively built
 * (generic x86-64, no FMA).
 *
 * Two paths per weight type, chosen as ggml_quantize_chunk chooses them:
 *   - no importance weights -> the "_ref" quantizer (deterministic reference),
 *     except IQ4_NL/IQ4_XS, whose search runs with or without weights;
 *   - importance weights (imatrix, one float per column) -> the "_imat"
 *     quantizer (ggml's quantize_row_<t>_impl). Q8_0 ignores the weights.
 *
 * Activation quantizers (what an inference engine applies to the input
 * vector of a matrix product):
 *   - Q8_K: sm_quantize_row_q8_K is ggml's reference, which is also what
 *     ggml's CPU backend runs on x86;
 *   - Q8_0/Q8_1: ggml's CPU backend on AVX/AVX2 machines does NOT use the
 *     reference (it scales by 127/amax and rounds half to even). The "_act"
 *     functions reproduce that variant; the "_ref" ones the reference.
 *
 * Functions named *_ref, *_imat and *_scalar are plain portable C. The
 * unsuffixed dispatchers may take an AVX2 path picked at run time
 * (__builtin_cpu_supports); it produces the same bytes/floats as the scalar
 * code, which the tests check.
 *
 * Block layouts are the on-disk GGUF layouts (little-endian f16 fields). */
#ifndef SMELT_QUANTS_H
#define SMELT_QUANTS_H

#include "err.h"
#include "types.h"

#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SM_QK4_0 32
#define SM_QK4_1 32
#define SM_QK5_0 32
#define SM_QK5_1 32
#define SM_QK8_0 32
#define SM_QK8_1 32
#define SM_QK4_NL 32
#define SM_K_SCALE_SIZE 12

/* ------------------------------------------------------ block layouts */

typedef struct sm_block_q4_0 {
    uint16_t d;       /* f16 scale */
    uint8_t qs[16];   /* [32] 4-bit quants: low nibbles = elements 0..15, high = 16..31 */
} sm_block_q4_0;

typedef struct sm_block_q4_1 {
    uint16_t d;       /* f16 scale */
    uint16_t m;       /* f16 minimum (added) */
    uint8_t qs[16];   /* [32] 4-bit quants, same packing as q4_0 */
} sm_block_q4_1;

typedef struct sm_block_q5_0 {
    uint16_t d;       /* f16 scale */
    uint8_t qh[4];    /* [32] 5th bits, bit j = element j (little-endian u32) */
    uint8_t qs[16];   /* [32] low 4 bits, packed as q4_0 */
} sm_block_q5_0;

typedef struct sm_block_q5_1 {
    uint16_t d;       /* f16 scale */
    uint16_t m;       /* f16 minimum */
    uint8_t qh[4];    /* [32] 5th bits */
    uint8_t qs[16];   /* [32] low 4 bits */
} sm_block_q5_1;

typedef struct sm_block_q8_0 {
    uint16_t d;       /* f16 scale */
    int8_t qs[32];    /* [32] quants */
} sm_block_q8_0;

typedef struct sm_block_q8_1 {
    uint16_t d;       /* f16 scale */
    uint16_t s;       /* f16 of d * sum(qs) */
    int8_t qs[32];    /* [32] quants */
} sm_block_q8_1;

typedef struct sm_block_iq4_nl {
    uint16_t d;       /* f16 scale */
    uint8_t qs[16];   /* [32] 4-bit indices into sm_iq4nl_values, packed as q4_0 */
} sm_block_iq4_nl;

/* K-quants: super-blocks of SM_QK_K = 256 elements. */
typedef struct sm_block_q2_K {
    uint8_t scales[16]; /* [16 sub-blocks] low nibble scale, high nibble min */
    uint8_t qs[64];     /* [256] 2-bit quants */
    uint16_t d;         /* f16 super-scale of the scales */
    uint16_t dmin;      /* f16 super-scale of the mins */
} sm_block_q2_K;

typedef struct sm_block_q3_K {
    uint8_t hmask[32];  /* [256] high bits */
    uint8_t qs[64];     /* [256] low 2 bits */
    uint8_t scales[12]; /* [16] 6-bit scales, packed */
    uint16_t d;         /* f16 super-scale */
} sm_block_q3_K;

typedef struct sm_block_q4_K {
    uint16_t d;         /* f16 super-scale of the scales */
    uint16_t dmin;      /* f16 super-scale of the mins */
    uint8_t scales[SM_K_SCALE_SIZE]; /* [8 sub-blocks] 6-bit scale + 6-bit min, packed */
    uint8_t qs[128];    /* [256] 4-bit quants */
} sm_block_q4_K;

typedef struct sm_block_q5_K {
    uint16_t d;         /* f16 super-scale of the scales */
    uint16_t dmin;      /* f16 super-scale of the mins */
    uint8_t scales[SM_K_SCALE_SIZE]; /* [8] packed as q4_K */
    uint8_t qh[32];     /* [256] 5th bits */
    uint8_t qs[128];    /* [256] low 4 bits */
} sm_block_q5_K;

typedef struct sm_block_q6_K {
    uint8_t ql[128];    /* [256] low 4 bits */
    uint8_t qh[64];     /* [256] high 2 bits */
    int8_t scales[16];  /* [16 sub-blocks] 8-bit scales */
    uint16_t d;         /* f16 super-scale */
} sm_block_q6_K;

typedef struct sm_block_iq4_xs {
    uint16_t d;         /* f16 super-scale */
    uint16_t scales_h;  /* [8 groups] high 2 bits of the 6-bit group scales */
    uint8_t scales_l[4];/* [8 groups] low 4 bits of the group scales (+32 bias) */
    uint8_t qs[128];    /* [256] 4-bit indices into sm_iq4nl_values, 16 bytes per group */
} sm_block_iq4_xs;

typedef struct sm_block_q8_K {
    float d;            /* f32 scale */
    int8_t qs[256];     /* [256] quants */
    int16_t bsums[16];  /* [16] sum of each group of 16 quants */
} sm_block_q8_K;

static_assert(sizeof(sm_block_q4_0) == 18, "q4_0 block");
static_assert(sizeof(sm_block_q4_1) == 20, "q4_1 block");
static_assert(sizeof(sm_block_q5_0) == 22, "q5_0 block");
static_assert(sizeof(sm_block_q5_1) == 24, "q5_1 block");
static_assert(sizeof(sm_block_q8_0) == 34, "q8_0 block");
static_assert(sizeof(sm_block_q8_1) == 36, "q8_1 block");
static_assert(sizeof(sm_block_iq4_nl) == 18, "iq4_nl block");
static_assert(sizeof(sm_block_q2_K) == 84, "q2_K block");
static_assert(sizeof(sm_block_q3_K) == 110, "q3_K block");
static_assert(sizeof(sm_block_q4_K) == 144, "q4_K block");
static_assert(sizeof(sm_block_q5_K) == 176, "q5_K block");
static_assert(sizeof(sm_block_q6_K) == 210, "q6_K block");
static_assert(sizeof(sm_block_iq4_xs) == 136, "iq4_xs block");
static_assert(sizeof(sm_block_q8_K) == 292, "q8_K block");

/* The 16 non-linear levels of IQ4_NL (a GGUF format constant). */
extern const int8_t sm_iq4nl_values[16];

/* ------------------------------------------------------ generic entry points */

/* 1 when sm_quantize_rows can produce type (F32, F16, BF16, Q4_0, Q4_1,
 * Q5_0, Q5_1, Q8_0, IQ4_NL, IQ4_XS, Q2_K..Q6_K). Q8_K/Q8_1 are
 * activation-only and not listed here (use their row functions). */
bool sm_quantize_supported(uint32_t type);

/* 1 when sm_dequantize_row can decode type (the above plus Q8_1, Q8_K). */
bool sm_dequantize_supported(uint32_t type);

/* Mirrors ggml_quantize_requires_imatrix: true for IQ2_XXS, IQ2_XS, IQ1_S,
 * none of which smelt quantizes. Every supported type works without one. */
bool sm_quantize_requires_imatrix(uint32_t type);

/* Whether the imatrix changes the result for type (false for Q8_0, F16,
 * BF16, F32, which ignore it, as in llama.cpp). */
bool sm_quantize_uses_imatrix(uint32_t type);

/* Checks that sm_quantize_rows(type, ..., nrows, n_per_row, imatrix) will
 * succeed: supported type, nrows >= 0, n_per_row > 0 and a multiple of the
 * block size, and the byte size fits. Returns 0 or a negative sm_code with
 * err naming the type and the offending number. */
int sm_quantize_check(uint32_t type, int64_t nrows, int64_t n_per_row, sm_err *err);

/* Quantizes nrows rows of n_per_row floats from src into dst, exactly as
 * ggml_quantize_chunk(type, src, dst, 0, nrows, n_per_row, imatrix) does,
 * including which types use or ignore imatrix ([n_per_row] weights shared by
 * every row, or NULL). dst must hold nrows * row size bytes. Rows are
 * independent, so callers may split a matrix across threads by rows.
 * Returns the bytes written, or 0 when sm_quantize_check fails (nothing is
 * written then). Thread-safe; no allocation. */
size_t sm_quantize_rows(uint32_t type, const float *src, void *dst, int64_t nrows,
                        int64_t n_per_row, const float *imatrix);

/* Decodes n elements of type from src (n a multiple of the block size) into
 * dst[n]. Types: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1,
 * IQ4_NL, IQ4_XS, Q2_K..Q6_K, Q8_K. Returns 0, SM_ETYPE for another type,
 * SM_EINVAL for a bad n. Results equal ggml's dequantize_row_* bit for bit.
 * src may be at any address (a misaligned row is decoded through an
 * aligned copy of each block). */
int sm_dequantize_row(uint32_t type, const void *src, float *dst, int64_t n);

/* ------------------------------------------------------ per-type functions
 *
 * Row functions take k = element count, a multiple of the block size
 * (unchecked: the generic entry points check). "_imat" variants take the
 * importance weights qw[n_per_row] of one row and quantize one row. With
 * qw == NULL the 32-block types and Q2_K run their _ref quantizer, while
 * Q3_K..Q6_K run ggml's weighted search with its built-in weights (which
 * is NOT the _ref result; sm_quantize_rows never does that). */

void sm_quantize_row_q4_0_ref(const float *x, sm_block_q4_0 *y, int64_t k);
void sm_quantize_row_q4_1_ref(const float *x, sm_block_q4_1 *y, int64_t k);
void sm_quantize_row_q5_0_ref(const float *x, sm_block_q5_0 *y, int64_t k);
void sm_quantize_row_q5_1_ref(const float *x, sm_block_q5_1 *y, int64_t k);
void sm_quantize_row_q8_0_ref(const float *x, sm_block_q8_0 *y, int64_t k);
void sm_quantize_row_q8_1_ref(const float *x, sm_block_q8_1 *y, int64_t k);
void sm_quantize_row_q2_K_ref(const float *x, sm_block_q2_K *y, int64_t k);
void sm_quantize_row_q3_K_ref(const float *x, sm_block_q3_K *y, int64_t k);
void sm_quantize_row_q4_K_ref(const float *x, sm_block_q4_K *y, int64_t k);
void sm_quantize_row_q5_K_ref(const float *x, sm_block_q5_K *y, int64_t k);
void sm_quantize_row_q6_K_ref(const float *x, sm_block_q6_K *y, int64_t k);
/* Q8_K reference = ggml's CPU-backend activation quantizer on x86. All-zero
 * blocks get bsums 0 (ggml leaves them unwritten there). */
void sm_quantize_row_q8_K_ref(const float *x, sm_block_q8_K *y, int64_t k);

void sm_quantize_row_q4_0_imat(const float *x, sm_block_q4_0 *y, int64_t n_per_row, const float *qw);
void sm_quantize_row_q4_1_imat(const float *x, sm_block_q4_1 *y, int64_t n_per_row, const float *qw);
void sm_quantize_row_q5_0_imat(const float *x, sm_block_q5_0 *y, int64_t n_per_row, const float *qw);
void sm_quantize_row_q5_1_imat(const float *x, sm_block_q5_1 *y, int64_t n_per_row, const float *qw);
void sm_quantize_row_q2_K_imat(const float *x, sm_block_q2_K *y, int64_t n_per_row, const float *qw);
void sm_quantize_row_q3_K_imat(const float *x, sm_block_q3_K *y, int64_t n_per_row, const float *qw);
void sm_quantize_row_q4_K_imat(const float *x, sm_block_q4_K *y, int64_t n_per_row, const float *qw);
void sm_quantize_row_q5_K_imat(const float *x, sm_block_q5_K *y, int64_t n_per_row, const float *qw);
void sm_quantize_row_q6_K_imat(const float *x, sm_block_q6_K *y, int64_t n_per_row, const float *qw);

/* IQ4_NL as quantize_iq4_nl does it (weighted search, 7 trial scales);
 * qw[n_per_row] or NULL (then weights are x^2). */
void sm_quantize_row_iq4_nl(const float *x, sm_block_iq4_nl *y, int64_t n_per_row, const float *qw);
/* IQ4_XS as quantize_iq4_xs does it (same search per 32-group, then 6-bit
 * group scales in 256-element super-blocks); qw or NULL as above. */
void sm_quantize_row_iq4_xs(const float *x, sm_block_iq4_xs *y, int64_t n_per_row, const float *qw);

/* Fast dispatchers with the same output as the _ref functions. */
void sm_quantize_row_q8_0(const float *x, sm_block_q8_0 *y, int64_t k);
void sm_quantize_row_q8_K(const float *x, sm_block_q8_K *y, int64_t k);

/* ggml CPU backend's x86 (AVX/AVX2) activation quantizers: d = amax/127,
 * values scaled by 127/amax and rounded half to even. Use these to feed a
 * Q8_0/Q8_1 dot product the way llama.cpp on x86 does. _scalar is portable;
 * the unsuffixed one may use AVX2 and agrees bit for bit. */
void sm_quantize_row_q8_0_act_scalar(const float *x, sm_block_q8_0 *y, int64_t k);
void sm_quantize_row_q8_0_act(const float *x, sm_block_q8_0 *y, int64_t k);
void sm_quantize_row_q8_1_act_scalar(const float *x, sm_block_q8_1 *y, int64_t k);
void sm_quantize_row_q8_1_act(const float *x, sm_block_q8_1 *y, int64_t k);

void sm_dequantize_row_q4_0(const sm_block_q4_0 *x, float *y, int64_t k);
void sm_dequantize_row_q4_1(const sm_block_q4_1 *x, float *y, int64_t k);
void sm_dequantize_row_q5_0(const sm_block_q5_0 *x, float *y, int64_t k);
void sm_dequantize_row_q5_1(const sm_block_q5_1 *x, float *y, int64_t k);
void sm_dequantize_row_q8_0(const sm_block_q8_0 *x, float *y, int64_t k);
void sm_dequantize_row_q8_1(const sm_block_q8_1 *x, float *y, int64_t k);
void sm_dequantize_row_iq4_nl(const sm_block_iq4_nl *x, float *y, int64_t k);
void sm_dequantize_row_iq4_xs(const sm_block_iq4_xs *x, float *y, int64_t k);
void sm_dequantize_row_q2_K(const sm_block_q2_K *x, float *y, int64_t k);
void sm_dequantize_row_q3_K(const sm_block_q3_K *x, float *y, int64_t k);
void sm_dequantize_row_q4_K(const sm_block_q4_K *x, float *y, int64_t k);
void sm_dequantize_row_q5_K(const sm_block_q5_K *x, float *y, int64_t k);
void sm_dequantize_row_q6_K(const sm_block_q6_K *x, float *y, int64_t k);
void sm_dequantize_row_q8_K(const sm_block_q8_K *x, float *y, int64_t k);

/* Scalar dequantizers of the types that also have an AVX2 path inside
 * sm_dequantize_row (Q8_0, Q4_K, Q6_K); exposed for the agreement tests. */
void sm_dequantize_row_q8_0_scalar(const sm_block_q8_0 *x, float *y, int64_t k);
void sm_dequantize_row_q4_K_scalar(const sm_block_q4_K *x, float *y, int64_t k);
void sm_dequantize_row_q6_K_scalar(const sm_block_q6_K *x, float *y, int64_t k);

/* Set to 0 to force the portable code everywhere (tests, debugging); the
 * default 1 means "use AVX2 when the CPU has it". Not thread-safe to flip
 * while other threads quantize. */
void sm_quants_set_simd(int enable);
/* 1 when the AVX2 paths are active right now. */
int sm_quants_simd_active(void);

#endif
