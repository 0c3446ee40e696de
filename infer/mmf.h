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
 * The kernel is chosen as llama.cpp would for a product of n_tok tokens;
 * the result has the same bits at every CPU level (cpu.h). The SIMD
 * kernels read the weight rows in place; the portable path dequantizes
 * groups of 4 rows into scratch, which must hold at least
 * mmf_scratch_floats(K) floats (per thread). */
void mmf_rows(uint32_t type, const uint8_t *w, uint64_t row_bytes, int64_t K, int64_t r0, int64_t r1,
              const float *x, int64_t ldx, int32_t n_tok, float *y, int64_t ldy, const float *bias, float *scratch);
/* Floats of per-thread scratch mmf_rows needs for rows of K elements. */
int64_t mmf_scratch_floats(int64_t K);

/* ---- internal: the SIMD kernels (mmf_x86.c), called by mmf_rows only. */

/* The reference dot a product uses (ops.h), decided by mmf_rows. */
enum mmf_kernel {
    MMF_TB16,   /* ops_dot_tb16: tinyBLAS<16>, F32/F16, n_tok >= 2, K % 16 == 0 */
    MMF_TB32BF, /* ops_dot_tb32bf: tinyBLAS<32> vdpbf16ps, BF16, n_tok >= 2, K % 32 == 0 */
    MMF_VF16,   /* ops_dot_vf16: ggml_vec_dot_f16 */
    MMF_VBF16,  /* ops_dot_vbf16: ggml_vec_dot_bf16 */
    MMF_VF32,   /* ops_dot_vf32: ggml_vec_dot_f32 */
};

/* One call of mmf_rows (same meaning as its arguments). */
typedef struct mmf_job {
    uint32_t type;      /* SM_TYPE_F32, F16 or BF16 */
    int kernel;         /* enum mmf_kernel */
    const uint8_t *w;   /* [rows, row_bytes] weight rows (row r at w + r*row_bytes) */
    uint64_t row_bytes;
    int64_t K;          /* elements per row */
    int64_t r0, r1;     /* row range */
    const float *x;     /* [n_tok, ldx] rounded activations */
    int64_t ldx;
    int32_t n_tok;
    float *y;           /* [n_tok, ldy] output */
    int64_t ldy;
    const float *bias;  /* [rows] or NULL */
    float *scratch;     /* [mmf_scratch_floats(K)] per-thread work space */
} mmf_job;

/* Computes the whole job with the AVX-512 or AVX2 kernels when cpu_level()
 * allows them and returns 1; returns 0 (nothing written) otherwise. */
int mmf_x86_rows(const mmf_job *j);

#endif
