/* forward.h — the llama/qwen2 forward pass over a KV cache.
 *
 * One sm_ctx holds everything a run needs, allocated once by ctx_init: the
 * F16 K/V cache for n_ctx positions, activation buffers for up to n_batch
 * tokens, per-thread scratch and the thread pool. ctx_eval() then allocates
 * nothing, so decoding one token at a time costs no malloc.
 *
 * The graph is llama.cpp's llm_build_llama / qwen2: RMSNorm, Q/K/V
 * projections (+ biases for qwen2), RoPE (normal for llama, neox for qwen2),
 * K and V rounded to F16 into the cache, causal softmax(QK^T * 1/sqrt(d))
 * with GQA, output projection, residual, RMSNorm, SwiGLU FFN, residual;
 * final RMSNorm and the output (or tied token_embd) projection. */
#ifndef SMELT_INFER_FORWARD_H
#define SMELT_INFER_FORWARD_H

#include "err.h"
#include "model.h"
#include "threads.h"

#include <stdint.h>

/* Called for every matrix multiplication before its input is rounded for
 * the weight type: name is the weight tensor's GGUF name, x[n_tokens, n_in]
 * the f32 input rows. For the output projection only the rows whose logits
 * are requested are passed. Unset (NULL) costs nothing. Runs on the calling
 * thread, never concurrently with itself. */
typedef void (*sm_mm_hook)(void *user, const char *name, const float *x, int32_t n_tokens, int64_t n_in);

typedef struct sm_ctx {
    const sm_model *m;
    int32_t n_ctx;         /* KV cache positions */
    int32_t n_batch;       /* max tokens per ctx_eval */
    int32_t n_pos;         /* positions currently held in the cache */
    sm_pool *pool;
    uint16_t *k_cache;     /* [n_layer, n_ctx, n_head_kv*n_embd_head] F16, as llama.cpp's K cache */
    uint16_t *v_cache;     /* [n_layer, n_head_kv*n_embd_head, n_ctx] F16, transposed like llama.cpp's V */
    float *x;              /* [n_batch, n_embd] residual stream */
    float *xn;             /* [n_batch, n_embd] normed input of a block */
    float *xr;             /* [n_batch, max_in] input rounded for one weight type */
    float *q;              /* [n_batch, n_head*n_embd_head] */
    float *k;              /* [n_batch, n_head_kv*n_embd_head] */
    float *v;              /* [n_batch, n_head_kv*n_embd_head] */
    float *att;            /* [n_batch, n_head*n_embd_head] attention output */
    float *tmp;            /* [n_batch, n_embd] projection output */
    float *gate;           /* [n_batch, n_ff] */
    float *up;             /* [n_batch, n_ff] */
    float *rope_cs;        /* [n_batch, n_rot] cos/sin per position */
    float *scratch;        /* [n_threads, scratch_stride] per-thread work space */
    int64_t scratch_stride;
    int64_t scratch_rows;  /* max row length (weight row buffers in scratch) */
    float *logits;         /* [n_batch, n_vocab] output of the last ctx_eval */
    int32_t *tok_buf;      /* [n_batch] token staging for callers (eval_chunk) */
    uint8_t *xq;           /* [n_batch, act bytes of max_in] quantized activations */
    uint64_t xq_stride;    /* bytes per token row of xq */
    int16_t *xq16;         /* [n_batch, max_in] the same quants widened to int16 */
    int32_t n_threads;
    int8_t *uq;            /* [n_threads, max_in] unpacked weight row levels */
    float *ud;             /* [n_threads, max_in/32] unpacked block scales */
    float *um;             /* [n_threads, max_in/32] unpacked mins */
    int16_t *usc;          /* [n_threads, max_in/16] unpacked sub-block scales */
    int16_t *umn;          /* [n_threads, max_in/16] unpacked sub-block mins */
    int16_t *uw;           /* [n_threads, max_in] unpacked levels as int16 (times scale) */
    int64_t u_stride;      /* elements of uq per thread (max_in) */
    int32_t n_logits;      /* rows of logits filled by the last ctx_eval */
    uint64_t kv_bytes;     /* bytes of the K and V caches (F16, llama.cpp's size) */
    uint64_t buf_bytes;    /* bytes of every other buffer */
    sm_mm_hook hook;
    void *hook_user;
} sm_ctx;

/* Allocates the context for m (which must outlive it): n_ctx cache
 * positions (1..n_ctx_train is not enforced here; callers check), batches of
 * up to n_batch tokens, n_threads threads. err on allocation failure. */
int ctx_init(sm_ctx *c, const sm_model *m, int32_t n_ctx, int32_t n_batch, int32_t n_threads, sm_err *err);
void ctx_free(sm_ctx *c);
/* Forgets every cached position (llama_kv_cache_clear). */
void ctx_clear(sm_ctx *c);
/* Evaluates tokens[n] at positions n_pos..n_pos+n-1 and appends them to the
 * cache. Logits of tokens [out_first, n) are written to c->logits (row 0 =
 * token out_first); out_first == n computes none. Fails with SM_ERANGE when
 * n > n_batch, the cache would overflow, or a token id is out of range. */
int ctx_eval(sm_ctx *c, const int32_t *tokens, int32_t n, int32_t out_first, sm_err *err);
/* Bytes ctx_init would allocate (KV cache, other buffers) for a model. */
void ctx_estimate(const sm_model *m, int32_t n_ctx, int32_t n_batch, int32_t n_threads, uint64_t *kv_bytes,
                  uint64_t *buf_bytes);

#endif
