/* mmq_impl.h — the contract between mmq.c and the SIMD kernel files.
 *
 * A fast kernel computes exactly what the portable mm_unpack_row + mm_dot
 * compute (same bits), straight from the packed blocks in the mmapped file
 * and the int8 activation blocks, tiling rows and tokens as it likes. */
#ifndef SMELT_INFER_MMQ_IMPL_H
#define SMELT_INFER_MMQ_IMPL_H

#include <stdint.h>

typedef struct mmq_args {
    uint32_t type;         /* ggml type of the weight rows */
    const uint8_t *w;      /* row 0 of the weight; row r at w + r*row_bytes */
    uint64_t row_bytes;
    int64_t K;             /* elements per row (a multiple of the block size) */
    int64_t r0, r1;        /* rows to compute: [r0, r1) */
    const uint8_t *act;    /* [n_tok] activation rows (q8_0/q8_1/q8_K blocks) */
    uint64_t act_stride;   /* bytes between activation rows */
    int32_t n_tok;
    float *y;              /* y[t*ldy + r] */
    int64_t ldy;
    const float *bias;     /* [rows] added after the dot, or NULL */
} mmq_args;

/* mmq_k.c: Q4_K, Q5_K, Q6_K. Returns 1 when it computed the
 * product, 0 when it has no kernel for this type at the current CPU level
 * (mmq.c then falls back to the portable path). */
int mmq_k_rows(const mmq_args *a);
/* mmq_k3.c: Q2_K, Q3_K; same contract. */
int mmq_k3_rows(const mmq_args *a);
/* mmq_b32.c: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL; same contract. */
int mmq_b32_rows(const mmq_args *a);
/* mmq_b32.c: repacked-order Q4_0 (MM_TYPE_Q4_0_X8; a->type is SM_TYPE_Q4_0);
 * same contract. */
int mmq_b32_q4_0_x8_rows(const mmq_args *a);
/* 1 when mmq_k_rows / mmq_b32_rows would handle type at this CPU level. */
int mmq_k_handles(uint32_t type);
int mmq_k3_handles(uint32_t type);
int mmq_b32_handles(uint32_t type);

#endif
