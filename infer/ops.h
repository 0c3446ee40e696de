/* ops.h — numeric kernels of the forward pass (ops.c, matmul.c).
 *
 * Numerics are ggml's CPU backend as built on the machine that made the
 * reference outputs (x86-64, AVX-512 with AVX512-BF16, gcc -march=native):
 * activations are rounded to the weight type's "vec_dot type" (F16, BF16,
 * Q8_0, Q8_1 or Q8_K, quantized exactly as ggml does on x86-64) before a
 * matrix product; float dots run in ggml's 16 lanes with its reduction
 * order; RMSNorm sums squares in double; softmax uses ggml_v_expf and sums
 * 16-lane blocks in double; K/Q and softmax probabilities pass through F16
 * as with llama.cpp's default F16 KV cache. */
#ifndef SMELT_INFER_OPS_H
#define SMELT_INFER_OPS_H

#include <stdint.h>

/* How activations are rounded before a product with a weight of some type. */
enum ops_act {
    OPS_ACT_F32 = 0,  /* plain f32 */
    OPS_ACT_F16,      /* rounded to f16 (F16 weights) */
    OPS_ACT_BF16,     /* rounded to bf16 (BF16 weights) */
    OPS_ACT_Q8_0,     /* 32-blocks, f16 scale (Q4_0, Q5_0, Q8_0, IQ4_NL) */
    OPS_ACT_Q8_1,     /* same rounding as Q8_0 (Q4_1, Q5_1) */
    OPS_ACT_Q8_K,     /* 256-blocks, f32 scale (K-quants, IQ4_XS) */
};

/* 1 when rows of type t can be dequantized by ops_dequant_row. */
int ops_type_supported(uint32_t type);
/* Activation rounding used with weights of type t (OPS_ACT_F32 if unknown). */
int ops_act_for_type(uint32_t type);
/* Elements per block the rounding needs (1, 32 or 256). */
int32_t ops_act_block(int act);
/* Dequantizes n elements (a whole number of blocks) of type t into dst. */
void ops_dequant_row(uint32_t type, const void *src, float *dst, int64_t n);
/* Rounds one activation row x[n] the way ggml quantizes it for kind act and
 * writes the dequantized values to y[n] (y may equal x). n must be a
 * multiple of ops_act_block(act) for the block kinds. */
void ops_act_round(int act, const float *x, float *y, int64_t n);

/* F16 -> F32 through a 64K-entry table (ops_init must have run). */
extern float ops_f16_table[65536];
void ops_init(void);

/* y[n] = x[n] / sqrt(mean(x^2) + eps) * w[n] (ggml_rms_norm then ggml_mul). */
void ops_rmsnorm(const float *x, const float *w, float *y, int64_t n, float eps);
/* p[i] = f16-round(p[i] * s) for i < n (softmax probabilities as llama.cpp
 * hands them to the F16 V product). */
void ops_scale_round_f16(float *p, float s, int64_t n);
/* x/(1+exp(-x)) * u, element-wise, into g. */
void ops_swiglu(float *g, const float *u, int64_t n);

/* Rotary embedding of one head vector x[head_dim] in place, with the
 * precomputed cos/sin table cs[n_rot] (pairs). neox: pairs (i, i+n_rot/2),
 * else adjacent pairs (2i, 2i+1). Dimensions past n_rot are untouched. */
void ops_rope(float *x, const float *cs, int32_t n_rot, int neox);
/* cos/sin table for position pos like ggml_rope_cache_init (cumulative
 * theta *= theta_scale, optional frequency factors ff[n_rot/2]). */
void ops_rope_table(float *cs, int32_t n_rot, int32_t pos, float freq_base,
                    float freq_scale, const float *ff);

/* ---- ggml AVX-512 numerics (what llama.cpp c392e5094 computes on the
 * reference machine). Each has an AVX2+FMA path and a portable fmaf path
 * that give identical bits. */

/* ggml_v_expf for one value (polynomial, within 1.5 ulp of exp). */
float ops_expf_ggml(float x);
/* 16 lanes of ggml_v_expf at the current CPU level: out[k] has the bits of
 * ops_expf_ggml(x[k]) (tests compare the vector kernels with it). */
void ops_expf16_ggml(const float *x, float *out);
/* llamafile tinyBLAS<16> dot (batched F32/F16/BF16 products, n >= 2
 * tokens): 16 fma lanes (lane = index % 16), gcc's 512-bit reduction.
 * n must be a multiple of 16. */
float ops_dot_tb16(const float *a, const float *b, int64_t n);
/* The same for four rows w + r*ldw (r < 4) against one x. */
void ops_dot_tb16x4(const float *w, int64_t ldw, const float *x, int64_t n, float *out);
/* ops_dot_tb16 with a read from F16 values h[n] (n a multiple of 16). */
float ops_dot_tb16_h(const uint16_t *h, const float *b, int64_t n);
/* The same over elements [0, nh) from F16 h and [nh, n) from f32 f (both
 * multiples of 16): one lane set, as one tinyBLAS dot over the whole row. */
float ops_dot_tb16_hf(const uint16_t *h, const float *f, const float *b, int64_t nh, int64_t n);
/* f[i] = F16 h[i] widened (exact), i < n. */
void ops_f16_row(const uint16_t *h, float *f, int64_t n);
/* ggml_vec_dot_f16 (AVX-512): 4x16 lanes over n & ~63, tail in double. */
float ops_dot_vf16(const float *a, const float *b, int64_t n);
/* ggml_vec_dot_f32 (AVX-512): as vf16, then the tail into an f32 sum the
 * way the reference build compiled it: elements [n & ~63, n & ~7) as a
 * rounded product added in order, the last n % 8 fused (fma). */
float ops_dot_vf32(const float *a, const float *b, int64_t n);
/* Where ggml_vec_dot_f32's fused (fma) tail starts: see ops_dot_vf32. */
static inline int64_t ops_vf32_fma_from(int64_t n) { return n & ~(int64_t)7; }
/* tinyBLAS<32> for BF16 on an AVX512-BF16 CPU (the reference machine):
 * 16 lanes of vdpbf16ps over 32-element steps, n a multiple of 32. */
float ops_dot_tb32bf(const float *a, const float *b, int64_t n);
/* ggml_vec_dot_bf16 with AVX512-BF16: two vdpbf16ps accumulators over
 * 64-element steps, each reduced into a double, tail in double. */
float ops_dot_vbf16(const float *a, const float *b, int64_t n);
/* Softmax of s[n]*scale as ggml_soft_max_ext (16-lane ggml_v_expf blocks,
 * double sum), probabilities then rounded to F16 (the KQV input). */
void ops_softmax_ggml(float *s, int64_t n, float scale);
/* Tests: 1 forces the portable kernels, 0 restores the CPU's choice. */
void ops_force_portable(int on);
/* 1 when the AVX2/FMA kernels are in use. */
int ops_fast_path(void);

/* ---- attention of one query (forward.c), llama.cpp's non-flash path.
 * Each has AVX-512 and AVX2 kernels giving the portable result's bits
 * (ops_force_portable / cpu_force_level select them in tests). */

/* KQ scores of one query q[H] (values already rounded to F16) against n KV
 * cells whose K rows are stored transposed as F16: element i of cell s at
 * kt[i*ldk + s]. out[s] (s < n) = ops_dot_tb16(row s, q, H) when tb16 (the
 * batched tinyBLAS path; H a multiple of 16), else ops_dot_vf16(row s, q, H). */
void ops_kq_t(const uint16_t *kt, int64_t ldk, const float *q, int64_t H, int64_t n, int tb16, float *out);
/* ops_kq_t's vec_dot_f16 case (tb16 = 0) with the transposed K held as
 * doubles (the exact values of F16 cells): same bits, much less work per
 * cell, as a product of two F16 values is exact in f32 and double alike.
 * q must hold F16 values (this is what makes the shortcut exact). */
void ops_kq_t64(const double *kt, int64_t ldk, const float *q, int64_t H, int64_t n, float *out);
/* The same with the K rows stored as rows: cell s at k + s*ldk (H elements). */
void ops_kq_rows(const uint16_t *k, int64_t ldk, const float *q, int64_t H, int64_t n, int tb16, float *out);
/* KQV of one query: out[i] (i < H) = dot of V row i (F16, v + i*ldv, one
 * element per cell) with the probabilities p[n], cells past n counting as
 * 0 (llama.cpp's masked padding): tb16 -> tinyBLAS<16> (ops_dot_tb16_hf over
 * n rounded up to 16), else ops_dot_vf16 over npad cells (npad >= n; the
 * padded length decides which cells fall in the double-summed tail). */
void ops_pv(const uint16_t *v, int64_t ldv, const float *p, int64_t n, int64_t npad, int64_t H, int tb16,
            float *out);

#endif
