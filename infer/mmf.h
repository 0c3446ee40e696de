/* mmf.h — matrix products of float weights (F32, F16, BF16).
 *
 * llama.cpp's CPU backend multiplies float weights with one of two kernel
 * families, and the choice shows in the low bits of the result: llamafile's
 * tinyBLAS (16 fma lanes, or vdpbf16ps for BF16 on an AVX512-BF16 CPU) when
 * the product has at least 2 tokens and the row length fits its step, else
 * the type's ggml_vec_dot. mmf_rows makes the same choice and reproduces
 * the chosen kernel's summation order (ops.h) bit for bit. */
#ifndef SMELT_INFER_MMF_H
#define SMELT_INFER_MMF_H

#include <stdint.h>

/* Rows [r0, r1) of a float weight w (type F32/F16/BF16, row_bytes per row,
 * K elements) times n_tok input rows x + t*ldx, already rounded to the
 * type's vec_dot type (ops_act_round):
 *   y[t*ldy + r] = dot(row r, x_t) (+ bias[r] when bias != NULL)
 * The kernel is chosen as llama.cpp would for a product of n_tok tokens.
 * scratch: per-thread space of at least mmf_scratch_floats(K) floats. */
void mmf_rows(uint32_t type, const uint8_t *w, uint64_t row_bytes, int64_t K, int64_t r0, int64_t r1,
              const float *x, int64_t ldx, int32_t n_tok, float *y, int64_t ldy, const float *bias, float *scratch);
/* Floats of per-thread scratch mmf_rows needs for rows of K elements. */
int64_t mmf_scratch_floats(int64_t K);

#endif
