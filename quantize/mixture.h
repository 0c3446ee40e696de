/* mixture.h — which ggml type each tensor gets for a llama.cpp file type
 * ("Q4_K_M" ...), following llama.cpp c392e5094 (src/llama-quant.cpp:
 * llama_tensor_get_type and the loop of llama_model_quantize_impl).
 *
 * The rules are stateful: attn_v / ffn_down / ffn_gate / ffn_up counters
 * advance as tensors are visited, so callers must visit tensors in the model
 * loader's order (sm_mix_sort_names) and call sm_mix_choose exactly once per
 * tensor. Nothing here touches tensor data. */
#ifndef SMELT_QUANTIZE_MIXTURE_H
#define SMELT_QUANTIZE_MIXTURE_H

#include "err.h"

#include <stdint.h>

/* llama_ftype ids (llama.h); they are stored as general.file_type. */
enum sm_ftype {
    SM_FTYPE_ALL_F32 = 0,
    SM_FTYPE_F16 = 1,
    SM_FTYPE_Q4_0 = 2,
    SM_FTYPE_Q4_1 = 3,
    SM_FTYPE_Q8_0 = 7,
    SM_FTYPE_Q5_0 = 8,
    SM_FTYPE_Q5_1 = 9,
    SM_FTYPE_Q2_K = 10,
    SM_FTYPE_Q3_K_S = 11,
    SM_FTYPE_Q3_K_M = 12,
    SM_FTYPE_Q3_K_L = 13,
    SM_FTYPE_Q4_K_S = 14,
    SM_FTYPE_Q4_K_M = 15,
    SM_FTYPE_Q5_K_S = 16,
    SM_FTYPE_Q5_K_M = 17,
    SM_FTYPE_Q6_K = 18,
    SM_FTYPE_IQ2_XXS = 19,
    SM_FTYPE_IQ2_XS = 20,
    SM_FTYPE_Q2_K_S = 21,
    SM_FTYPE_IQ3_XS = 22,
    SM_FTYPE_IQ3_XXS = 23,
    SM_FTYPE_IQ1_S = 24,
    SM_FTYPE_IQ4_NL = 25,
    SM_FTYPE_IQ3_S = 26,
    SM_FTYPE_IQ3_M = 27,
    SM_FTYPE_IQ2_S = 28,
    SM_FTYPE_IQ2_M = 29,
    SM_FTYPE_IQ4_XS = 30,
    SM_FTYPE_IQ1_M = 31,
    SM_FTYPE_BF16 = 32,
    SM_FTYPE_TQ1_0 = 36,
    SM_FTYPE_TQ2_0 = 37,
    SM_FTYPE_GUESSED = 1024, /* or'ed in when the file type was guessed */
};

/* Parses a llama-quantize TYPE argument: a name from llama-quantize's table
 * (case-insensitive, aliases Q3_K/Q4_K/Q5_K included) or a numeric ftype id.
 * Only the file types smelt can produce are accepted (Q4_0 Q4_1 Q5_0 Q5_1
 * Q8_0 Q2_K Q3_K_S/M/L Q4_K_S/M Q5_K_S/M Q6_K IQ4_NL F16 BF16 F32, and COPY,
 * which has id 0 like F32: callers test *canon == "COPY").
 * *canon receives the table name llama.cpp would report (for a number, the
 * first table entry with that id, e.g. 15 -> "Q4_K"). Returns 0,
 * SM_EUNSUPP for a llama.cpp type smelt cannot produce (IQ2_XXS ...), or
 * SM_EINVAL for an unknown name; err lists the accepted names. */
int sm_mix_parse_ftype(const char *arg, uint32_t *ftype, const char **canon, sm_err *err);

/* The file type llama.cpp's loader guesses from tensor types (the most
 * frequent one, first to reach the maximum in visit order), or'ed with
 * SM_FTYPE_GUESSED; used by COPY when the input has no general.file_type. */
uint32_t sm_mix_guess_ftype(const uint32_t *types, uint64_t n);

/* The ggml type a file type quantizes to by default (Q4_K_M -> q4_K). */
uint32_t sm_mix_default_type(uint32_t ftype);

/* Orders tensor names as llama.cpp's model loader does (its weights_map):
 * by the layer number of a "blk.N." prefix (names without one first), then
 * by bytes. qsort comparator over `const char *` elements. */
int sm_mix_cmp_names(const void *a, const void *b);

/* The model facts the rules look at (from the input's KVs). */
typedef struct sm_mix_model {
    char arch[64];       /* general.architecture */
    int32_t n_layer;     /* <arch>.block_count */
    int32_t n_head;      /* <arch>.attention.head_count (layer 0) */
    int32_t n_head_kv;   /* <arch>.attention.head_count_kv (layer 0; defaults to n_head) */
    int32_t n_attn_layer;/* layers with a nonzero KV-head count */
    int32_t n_expert;    /* <arch>.expert_count, 0 when absent */
    int is_70b;          /* llama.cpp's LLM_TYPE_70B size class */
} sm_mix_model;

/* User choices that change the per-tensor type. */
typedef struct sm_mix_override {
    char *pattern;       /* lower-cased regex, matched anywhere in the name (owned) */
    void *code;          /* compiled pcre2_code (owned) */
    uint32_t type;
} sm_mix_override;

typedef struct sm_mix_params {
    uint32_t ftype;          /* enum sm_ftype */
    int pure;                /* --pure: no per-tensor mixture */
    int leave_output;        /* --leave-output-tensor */
    int only_copy;           /* COPY: no tensor is converted */
    int32_t output_type;     /* --output-tensor-type, -1 = rules */
    int32_t token_embd_type; /* --token-embedding-type, -1 = rules */
    int has_imatrix;         /* an imatrix is in use */
    uint32_t n_overrides;
    sm_mix_override *overrides; /* [n_overrides] --tensor-type, last match wins (owned) */
} sm_mix_params;

/* Running state over one model. */
typedef struct sm_mix {
    sm_mix_params p;         /* copied; overrides stay owned by the caller */
    sm_mix_model m;
    int has_output;          /* the model has its own output.weight */
    int n_attention_wv;      /* attn_v / attn_qkv / attn_kv_b weights in the model */
    int i_attention_wv, i_ffn_down, i_ffn_gate, i_ffn_up;
    int n_k_quantized, n_fallback;
    char note[256];          /* last fallback note ("tensor cols 64 x 32 ...") or "" */
} sm_mix;

/* Reads the model facts from the input file's metadata. g is a gguf_file *
 * (void * to keep gguf.h out of this header). */
int sm_mix_model_from_gguf(sm_mix_model *m, const void *g, sm_err *err);

/* Starts a pass: names[n] are all tensor names in visit order (used for the
 * attn_v count and the has-output test). Checks the attn_v count against the
 * model's attention layers as llama.cpp asserts. */
int sm_mix_init(sm_mix *mx, const sm_mix_params *p, const sm_mix_model *m, const char *const *names, uint64_t n,
                sm_err *err);

/* Decides the type of the next tensor. ne[4] is its shape (unused dims 1),
 * src_type its current type. *out_type is the type to write; *convert is 1
 * when the data must be converted (0: copy the bytes as they are). Fails
 * with SM_EUNSUPP ("tensor cols 172 x 64 are not divisible by 32, required
 * for q8_0") when no fallback exists, as llama.cpp refuses. */
int sm_mix_choose(sm_mix *mx, const char *name, const int64_t ne[4], uint32_t src_type, uint32_t *out_type,
                  int *convert, sm_err *err);

/* Compiles a --tensor-type "REGEX=TYPE" argument into *o (pattern lower-cased
 * as llama-quantize does). Returns 0 or SM_EINVAL naming what is wrong. */
int sm_mix_override_parse(sm_mix_override *o, const char *arg, sm_err *err);
void sm_mix_override_free(sm_mix_override *o);

/* Parses a ggml type name for --output-tensor-type and friends (any sized
 * ggml type name, case-insensitive). Returns the id or -1. */
int32_t sm_mix_parse_ggml_type(const char *arg);

/* ggml_n_dims: index of the last dimension > 1, plus one (at least 1). */
uint32_t sm_mix_n_dims(const int64_t ne[4]);

#endif
