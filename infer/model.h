/* model.h — a llama/qwen2 GGUF opened for inference.
 *
 * model_load() mmaps the file (through gguf_open), reads the hyper-parameters
 * llama.cpp reads for these architectures and binds every tensor as a
 * borrowed view into the map: weights are never copied. Only the small 1-D
 * vectors (norms, biases, rope factors) are widened to owned f32 arrays.
 * Missing keys or tensors, a wrong shape for the declared sizes, a type the
 * kernels cannot read, or another architecture fail with a message that
 * names the key or tensor. */
#ifndef SMELT_INFER_MODEL_H
#define SMELT_INFER_MODEL_H

#include "err.h"
#include "gguf.h"

#include <stdint.h>

enum sm_arch {
    SM_ARCH_LLAMA = 0,
    SM_ARCH_QWEN2 = 1,
};

typedef struct sm_hparams {
    int32_t arch;          /* enum sm_arch */
    int32_t n_vocab;       /* rows of token_embd */
    int32_t n_ctx_train;   /* {arch}.context_length */
    int32_t n_embd;        /* hidden size */
    int32_t n_layer;
    int32_t n_head;
    int32_t n_head_kv;
    int32_t n_ff;
    int32_t n_embd_head;   /* key/value length per head */
    int32_t n_rot;         /* rotated dimensions per head */
    int32_t rope_neox;     /* 1: pairs (i, i+n_rot/2) (qwen2), 0: adjacent (llama) */
    float rms_eps;
    float rope_freq_base;
    float rope_freq_scale; /* 1/rope.scaling.factor, 1 when absent */
    float kq_scale;        /* 1/sqrt(n_embd_head) */
    int32_t bos_id;        /* -1 when the vocab has none */
    int32_t eos_id;
    int32_t add_bos;       /* llama_vocab_get_add_bos */
} sm_hparams;

/* A weight matrix [n_out rows, n_in columns] (ggml ne = {n_in, n_out}). */
typedef struct sm_weight {
    const uint8_t *data;   /* [n_out * row_bytes] in the map */
    uint32_t type;         /* enum sm_type */
    int64_t n_in;          /* row length */
    int64_t n_out;         /* rows */
    uint64_t row_bytes;
    const char *name;      /* NUL-terminated (owned by the model) */
} sm_weight;

typedef struct sm_layer {
    float *attn_norm;      /* [n_embd] */
    sm_weight wq;          /* [n_head*n_embd_head, n_embd] */
    sm_weight wk;          /* [n_head_kv*n_embd_head, n_embd] */
    sm_weight wv;          /* [n_head_kv*n_embd_head, n_embd] */
    sm_weight wo;          /* [n_embd, n_head*n_embd_head] */
    float *bq;             /* [n_head*n_embd_head] or NULL */
    float *bk;             /* [n_head_kv*n_embd_head] or NULL */
    float *bv;             /* [n_head_kv*n_embd_head] or NULL */
    float *bo;             /* [n_embd] or NULL */
    float *ffn_norm;       /* [n_embd] */
    sm_weight ffn_gate;    /* [n_ff, n_embd] */
    sm_weight ffn_up;      /* [n_ff, n_embd] */
    sm_weight ffn_down;    /* [n_embd, n_ff] */
} sm_layer;

typedef struct sm_model {
    gguf_file gguf;        /* owns the map */
    sm_hparams hp;
    sm_weight tok_embd;    /* [n_vocab, n_embd] */
    float *output_norm;    /* [n_embd] */
    sm_weight output;      /* [n_vocab, n_embd]; token_embd when tied */
    int32_t tied;          /* 1 when output.weight is absent */
    float *rope_freqs;     /* [n_rot/2] or NULL */
    sm_layer *layers;      /* [n_layer] */
    char **tnames;         /* [gguf.n_tensors] NUL-terminated tensor names (owned) */
    uint64_t weight_bytes; /* bytes of all tensor data in the file */
    uint64_t n_params;     /* elements of all tensors */
} sm_model;

/* Opens path and binds the model. On failure *m is left closed (safe to
 * model_free) and err names what is wrong. */
int model_load(sm_model *m, const char *path, sm_err *err);
/* Same on a GGUF already parsed by the caller; takes ownership of *g on
 * success and on failure (g is closed either way). */
int model_load_gguf(sm_model *m, gguf_file *g, sm_err *err);
void model_free(sm_model *m);

/* "llama" / "qwen2". */
const char *model_arch_name(int32_t arch);

#endif
