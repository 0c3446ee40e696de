/* ops.h — numeric kernels of the forward pass (ops.c, matmul.c).
 *
 * Numerics follow ggml's CPU backend where it matters for agreement with
 * llama.cpp: activations are rounded to the weight type's "vec_dot type"
 * (F16, BF16, Q8_0, Q8_1 or Q8_K, quantized exactly as ggml does on x86-64)
 * before a matrix product; RMSNorm sums squares in double; softmax sums in
 * double; K/Q and softmax probabilities pass through F16 as with llama.cpp's
 * default F16 KV cache. Sums are in f32 with a different order than ggml,
 * which changes results by rounding only. */
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
/* y[s] = sum_i x[i] * a[i*lda + s] for s < n, i < k (a transposed matrix
 * times a vector: attention scores over a position-major K cache). */
void ops_gemv_t(const float *a, int64_t lda, const float *x, int64_t k, int64_t n, float *y);
/* p[i] = f16-round(p[i] * s) for i < n (softmax probabilities as llama.cpp
 * hands them to the F16 V product). */
void ops_scale_round_f16(float *p, float s, int64_t n);
/* x[i] *= scale for i < n; returns the maximum. */
float ops_scale_max(float *x, float scale, int64_t n);
/* x[i] = exp(x[i] - mx) for i < n; returns the sum in double, summed as
 * ggml does (f32 partial sums of 8 added in double). The vector path uses a
 * polynomial exp within 2 ulp of expf, like ggml's own ggml_v_expf. */
double ops_exp_sum(float *x, float mx, int64_t n);
/* y[n] += a * x[n]. */
void ops_axpy(float *y, float a, const float *x, int64_t n);
/* out[r] = sum_k wt[k*8 + r] * x[k] for r < 8: eight weight rows stored
 * transposed (k-major), so no horizontal sums are needed. */
void ops_dot8t(const float *wt, const float *x, int64_t k, float *out);
/* Plain dot product in f32. */
float ops_dot(const float *a, const float *b, int64_t n);
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

#endif
