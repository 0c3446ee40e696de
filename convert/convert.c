/* convert.c — the converter driver: config.json -> KVs, safetensors ->
 * tensors, tokenizer -> vocab KVs (vocab.c), streamed into a GGUF. */
#include "convert.h"

#include "fp16.h"
#include "gguf.h"
#include "naming.h"
#include "quants.h"
#include "safetensors.h"
#include "types.h"
#include "vocab.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

/* config.json is small; 16 MiB is far beyond any real one. */
#define CV_MAX_CONFIG (16u << 20)

/* GGUF general.file_type values (llama.cpp's LlamaFileType). */
enum { FTYPE_ALL_F32 = 0, FTYPE_MOSTLY_F16 = 1, FTYPE_MOSTLY_Q8_0 = 7, FTYPE_MOSTLY_BF16 = 32 };

typedef struct arch_desc {
    const char *hf_class;   /* config.json architectures[0] */
    const char *name;       /* general.architecture */
    int permute_qk;         /* llama: Q/K rows re-laid for GGML's RoPE */
} arch_desc;

static const arch_desc archs[] = {
    {"LlamaForCausalLM", "llama", 1},
    {"LLaMAForCausalLM", "llama", 1},
    {"MistralForCausalLM", "llama", 1},
    {"Qwen2ForCausalLM", "qwen2", 0},
};

int cv_outtype_parse(const char *s)
{
    static const char *names[] = {"f32", "f16", "bf16", "q8_0", "auto"};
    for (int i = 0; i < 5; i++)
        if (strcasecmp(s, names[i]) == 0)
            return i;
    return -1;
}

const char *cv_outtype_name(int t)
{
    static const char *names[] = {"f32", "f16", "bf16", "q8_0", "auto"};
    return t >= 0 && t < 5 ? names[t] : "?";
}

int cv_permute_qk(const void *src, void *dst, int64_t rows, int64_t cols, uint32_t es, uint32_t n_head)
{
    if (n_head == 0 || rows % (2 * (int64_t)n_head) != 0)
        return SM_EINVAL;
    int64_t hd = rows / n_head, half = hd / 2;
    size_t row_bytes = (size_t)cols * es;
    const uint8_t *s = src;
    uint8_t *d = dst;
    /* dst row h*hd + 2*i + j  <-  src row h*hd + j*half + i */
    for (int64_t h = 0; h < n_head; h++)
        for (int64_t i = 0; i < half; i++)
            for (int64_t j = 0; j < 2; j++)
                memcpy(d + (size_t)(h * hd + 2 * i + j) * row_bytes, s + (size_t)(h * hd + j * half + i) * row_bytes,
                       row_bytes);
    return SM_OK;
}

/* ------------------------------------------------------------ config */

typedef struct hparams {
    json_t *root;
    const char *path;
} hparams;

static json_t *hp_get(const hparams *h, const char *key) { return json_object_get(h->root, key); }

/* find_hparam: the first present key of a list. */
static json_t *hp_find(const hparams *h, const char *const *keys)
{
    for (; *keys; keys++) {
        json_t *v = json_object_get(h->root, *keys);
        if (v && !json_is_null(v))
            return v;
    }
    return NULL;
}

static int hp_uint(const hparams *h, json_t *v, const char *what, uint32_t *out, sm_err *err)
{
    double d = json_is_integer(v) ? (double)json_integer_value(v) : json_is_real(v) ? json_real_value(v) : -1;
    if (!json_is_number(v) || d < 0 || d > 4294967295.0 || d != floor(d))
        return sm_err_set(err, SM_EFORMAT, "%s: \"%s\" must be a non-negative integer", h->path, what);
    *out = (uint32_t)d;
    return SM_OK;
}

static int hp_float(const hparams *h, json_t *v, const char *what, float *out, sm_err *err)
{
    if (!json_is_number(v))
        return sm_err_set(err, SM_EFORMAT, "%s: \"%s\" must be a number", h->path, what);
    /* Python packs the double with struct "<f": round to nearest float */
    *out = (float)json_number_value(v);
    return SM_OK;
}

typedef struct model_info {
    const arch_desc *arch;
    uint32_t n_layer, n_embd, n_head, n_head_kv, vocab_size, head_dim;
    int has_head_kv, has_vocab_size;
} model_info;

#define KEYS(...) ((const char *const[]){__VA_ARGS__, NULL})

static int set_u32(gguf_writer *w, const char *arch, const char *suffix, uint32_t v, sm_err *err)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int rc = gguf_writer_set_u32(w, key, v);
    return rc ? sm_err_set(err, rc, "cannot add key %s", key) : SM_OK;
}

static int set_f32(gguf_writer *w, const char *arch, const char *suffix, float v, sm_err *err)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int rc = gguf_writer_set_f32(w, key, v);
    return rc ? sm_err_set(err, rc, "cannot add key %s", key) : SM_OK;
}

/* Model.set_gguf_parameters + LlamaModel/Qwen2Model extras, in order. */
static int write_hparams(gguf_writer *w, const hparams *h, const model_info *mi, uint32_t ftype, sm_err *err)
{
    const char *a = mi->arch->name;
    int rc;
    json_t *v;
    uint32_t u;
    float f = 0;
    if ((rc = set_u32(w, a, "block_count", mi->n_layer, err)))
        return rc;
    if ((v = hp_find(h, KEYS("max_position_embeddings", "n_ctx")))) {
        if ((rc = hp_uint(h, v, "max_position_embeddings", &u, err)) || (rc = set_u32(w, a, "context_length", u, err)))
            return rc;
    }
    if ((v = hp_find(h, KEYS("hidden_size", "n_embd")))) {
        if ((rc = hp_uint(h, v, "hidden_size", &u, err)) || (rc = set_u32(w, a, "embedding_length", u, err)))
            return rc;
    }
    if ((v = hp_find(h, KEYS("intermediate_size", "n_inner")))) {
        if ((rc = hp_uint(h, v, "intermediate_size", &u, err)) || (rc = set_u32(w, a, "feed_forward_length", u, err)))
            return rc;
    }
    if ((v = hp_find(h, KEYS("num_attention_heads", "n_head")))) {
        if ((rc = hp_uint(h, v, "num_attention_heads", &u, err)) || (rc = set_u32(w, a, "attention.head_count", u, err)))
            return rc;
    }
    if ((v = hp_get(h, "num_key_value_heads")) && !json_is_null(v)) {
        if ((rc = hp_uint(h, v, "num_key_value_heads", &u, err)) ||
            (rc = set_u32(w, a, "attention.head_count_kv", u, err)))
            return rc;
    }
    if ((v = hp_get(h, "rope_theta")) && !json_is_null(v)) {
        if ((rc = hp_float(h, v, "rope_theta", &f, err)) || (rc = set_f32(w, a, "rope.freq_base", f, err)))
            return rc;
    }
    if ((v = hp_get(h, "rms_norm_eps")) && !json_is_null(v)) {
        if ((rc = hp_float(h, v, "rms_norm_eps", &f, err)) ||
            (rc = set_f32(w, a, "attention.layer_norm_rms_epsilon", f, err)))
            return rc;
    }
    if ((v = hp_find(h, KEYS("layer_norm_eps", "layer_norm_epsilon", "norm_epsilon")))) {
        if ((rc = hp_float(h, v, "layer_norm_eps", &f, err)) ||
            (rc = set_f32(w, a, "attention.layer_norm_epsilon", f, err)))
            return rc;
    }
    if ((v = hp_get(h, "num_local_experts")) && !json_is_null(v)) {
        if ((rc = hp_uint(h, v, "num_local_experts", &u, err)) || (rc = set_u32(w, a, "expert_count", u, err)))
            return rc;
    }
    if ((v = hp_get(h, "num_experts_per_tok")) && !json_is_null(v)) {
        if ((rc = hp_uint(h, v, "num_experts_per_tok", &u, err)) || (rc = set_u32(w, a, "expert_used_count", u, err)))
            return rc;
    }
    if ((v = hp_get(h, "head_dim")) && !json_is_null(v)) {
        if ((rc = hp_uint(h, v, "head_dim", &u, err)) || (rc = set_u32(w, a, "attention.key_length", u, err)) ||
            (rc = set_u32(w, a, "attention.value_length", u, err)))
            return rc;
    }
    if ((rc = gguf_writer_set_u32(w, "general.file_type", ftype)))
        return sm_err_set(err, rc, "cannot add general.file_type");

    json_t *rs = hp_get(h, "rope_scaling");
    if (strcmp(a, "llama") == 0) {
        if (!mi->has_vocab_size)
            return sm_err_set(err, SM_EMISSING, "%s: \"vocab_size\" is missing (required for llama)", h->path);
        if ((rc = set_u32(w, a, "vocab_size", mi->vocab_size, err)) ||
            (rc = set_u32(w, a, "rope.dimension_count", mi->head_dim, err)))
            return rc;
        if (json_is_object(rs) && json_object_get(rs, "factor")) {
            const char *type = json_string_value(json_object_get(rs, "type"));
            if (type && strcmp(type, "linear") == 0) {
                char key[128];
                snprintf(key, sizeof key, "%s.rope.scaling.type", a);
                if ((rc = gguf_writer_set_str(w, key, "linear")))
                    return sm_err_set(err, rc, "cannot add %s", key);
                if ((rc = hp_float(h, json_object_get(rs, "factor"), "rope_scaling.factor", &f, err)) ||
                    (rc = set_f32(w, a, "rope.scaling.factor", f, err)))
                    return rc;
            }
        }
    } else if (strcmp(a, "qwen2") == 0) {
        if (json_is_object(rs) && json_object_get(rs, "factor")) {
            const char *type = json_string_value(json_object_get(rs, "type"));
            if (type && strcmp(type, "yarn") == 0) {
                char key[128];
                snprintf(key, sizeof key, "%s.rope.scaling.type", a);
                if ((rc = gguf_writer_set_str(w, key, "yarn")))
                    return sm_err_set(err, rc, "cannot add %s", key);
                if ((rc = hp_float(h, json_object_get(rs, "factor"), "rope_scaling.factor", &f, err)) ||
                    (rc = set_f32(w, a, "rope.scaling.factor", f, err)))
                    return rc;
                json_t *oc = json_object_get(rs, "original_max_position_embeddings");
                if (!oc)
                    return sm_err_set(err, SM_EMISSING, "%s: rope_scaling.original_max_position_embeddings is missing",
                                      h->path);
                if ((rc = hp_uint(h, oc, "rope_scaling.original_max_position_embeddings", &u, err)) ||
                    (rc = set_u32(w, a, "rope.scaling.original_context_length", u, err)))
                    return rc;
            }
        }
    }
    return SM_OK;
}

static int read_model_info(const hparams *h, model_info *mi, sm_err *err)
{
    memset(mi, 0, sizeof *mi);
    json_t *archs_j = hp_get(h, "architectures");
    const char *cls = json_string_value(json_array_get(archs_j, 0));
    if (!cls)
        return sm_err_set(err, SM_EMISSING, "%s: \"architectures\" is missing or empty", h->path);
    for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++)
        if (strcmp(cls, archs[i].hf_class) == 0)
            mi->arch = &archs[i];
    if (!mi->arch)
        return sm_err_set(err, SM_EUNSUPP,
                          "%s: architecture '%s' is not supported (supported: LlamaForCausalLM, MistralForCausalLM, "
                          "Qwen2ForCausalLM)",
                          h->path, cls);
    int rc;
    json_t *v = hp_find(h, KEYS("n_layers", "num_hidden_layers", "n_layer", "num_layers"));
    if (!v)
        return sm_err_set(err, SM_EMISSING, "%s: \"num_hidden_layers\" is missing", h->path);
    if ((rc = hp_uint(h, v, "num_hidden_layers", &mi->n_layer, err)))
        return rc;
    if (!(v = hp_get(h, "hidden_size")))
        return sm_err_set(err, SM_EMISSING, "%s: \"hidden_size\" is missing", h->path);
    if ((rc = hp_uint(h, v, "hidden_size", &mi->n_embd, err)))
        return rc;
    if (!(v = hp_get(h, "num_attention_heads")))
        return sm_err_set(err, SM_EMISSING, "%s: \"num_attention_heads\" is missing", h->path);
    if ((rc = hp_uint(h, v, "num_attention_heads", &mi->n_head, err)))
        return rc;
    if (mi->n_head == 0)
        return sm_err_set(err, SM_EFORMAT, "%s: \"num_attention_heads\" is 0", h->path);
    mi->n_head_kv = mi->n_head;
    if ((v = hp_get(h, "num_key_value_heads")) && !json_is_null(v)) {
        if ((rc = hp_uint(h, v, "num_key_value_heads", &mi->n_head_kv, err)))
            return rc;
        if (mi->n_head_kv == 0)
            return sm_err_set(err, SM_EFORMAT, "%s: \"num_key_value_heads\" is 0", h->path);
        mi->has_head_kv = 1;
    }
    if ((v = hp_get(h, "vocab_size")) && !json_is_null(v)) {
        if ((rc = hp_uint(h, v, "vocab_size", &mi->vocab_size, err)))
            return rc;
        mi->has_vocab_size = 1;
    }
    if ((v = hp_get(h, "head_dim")) && !json_is_null(v)) {
        if ((rc = hp_uint(h, v, "head_dim", &mi->head_dim, err)))
            return rc;
    } else {
        mi->head_dim = mi->n_embd / mi->n_head;
    }
    return SM_OK;
}

/* ------------------------------------------------------------ tensors */

/* HF -> GGUF names of llama/qwen2 (gguf-py tensor_mapping.py). */
static int map_name(const char *hf, char *out, size_t cap, int *bid)
{
    static const struct {
        const char *hf, *gguf;
    } fixed[] = {
        {"model.embed_tokens", "token_embd"},
        {"model.norm", "output_norm"},
        {"lm_head", "output"},
    };
    static const struct {
        const char *hf, *gguf;
    } layer[] = {
        {"input_layernorm", "attn_norm"},     {"self_attn.q_proj", "attn_q"},
        {"self_attn.k_proj", "attn_k"},       {"self_attn.v_proj", "attn_v"},
        {"self_attn.o_proj", "attn_output"},  {"post_attention_layernorm", "ffn_norm"},
        {"mlp.gate_proj", "ffn_gate"},        {"mlp.up_proj", "ffn_up"},
        {"mlp.down_proj", "ffn_down"},
    };
    *bid = -1;
    const char *dot = strrchr(hf, '.');
    if (!dot)
        return SM_EUNSUPP;
    const char *suffix = dot; /* ".weight" or ".bias" */
    if (strcmp(suffix, ".weight") != 0 && strcmp(suffix, ".bias") != 0)
        return SM_EUNSUPP;
    size_t base_len = (size_t)(dot - hf);
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        if (strlen(fixed[i].hf) == base_len && strncmp(hf, fixed[i].hf, base_len) == 0) {
            snprintf(out, cap, "%s%s", fixed[i].gguf, suffix);
            return SM_OK;
        }
    unsigned n;
    int consumed = 0;
    if (sscanf(hf, "model.layers.%u.%n", &n, &consumed) == 1 && consumed > 0) {
        const char *rest = hf + consumed;
        size_t rest_len = (size_t)(dot - rest);
        for (size_t i = 0; i < sizeof layer / sizeof layer[0]; i++)
            if (strlen(layer[i].hf) == rest_len && strncmp(rest, layer[i].hf, rest_len) == 0) {
                snprintf(out, cap, "blk.%u.%s%s", n, layer[i].gguf, suffix);
                *bid = (int)n;
                return SM_OK;
            }
    }
    return SM_EUNSUPP;
}

static int has_suffix(const char *s, const char *suf)
{
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && strcmp(s + n - k, suf) == 0;
}

typedef struct out_tensor {
    char name[256];
    int64_t src;          /* index in st_model, or -1 for generated */
    float *gen;           /* generated data (rope_freqs) [ne0] */
    uint32_t n_dims;
    int64_t ne[4];        /* GGUF order */
    uint32_t type;        /* SM_TYPE_* */
    int permute;          /* 0 none, else head count to permute with */
    int q8_fallback;      /* wanted Q8_0 but row not a multiple of 32 */
} out_tensor;

/* Generated llama3 rope frequency factors (LlamaModel.generate_extra_tensors),
 * computed in float32 step by step as torch does. */
static float *llama3_rope_factors(const hparams *h, const model_info *mi, json_t *rs, int64_t *n_out)
{
    float base = 10000.0f;
    json_t *v = hp_get(h, "rope_theta");
    if (json_is_number(v))
        base = (float)json_number_value(v);
    uint32_t dim = mi->head_dim;
    double factor = json_is_number(json_object_get(rs, "factor")) ? json_number_value(json_object_get(rs, "factor")) : 8.0;
    double lff = json_is_number(json_object_get(rs, "low_freq_factor")) ? json_number_value(json_object_get(rs, "low_freq_factor")) : 1.0;
    double hff = json_is_number(json_object_get(rs, "high_freq_factor")) ? json_number_value(json_object_get(rs, "high_freq_factor")) : 4.0;
    double old_ctx = json_is_number(hp_get(h, "original_max_position_embeddings"))
                         ? json_number_value(hp_get(h, "original_max_position_embeddings"))
                         : 8192.0;
    double low_wl = old_ctx / lff, high_wl = old_ctx / hff;
    int64_t n = dim / 2;
    float *out = malloc((size_t)(n ? n : 1) * sizeof *out);
    if (!out)
        return NULL;
    for (int64_t i = 0; i < n; i++) {
        float e = (float)(2 * i) / (float)dim;
        float freq = 1.0f / powf(base, e);
        float wavelen = (float)(2.0 * M_PI) / freq;
        if (wavelen < high_wl)
            out[i] = 1.0f;
        else if (wavelen > low_wl)
            out[i] = (float)factor;
        else {
            float smooth = ((float)old_ctx / wavelen - (float)lff) / (float)(hff - lff);
            out[i] = 1.0f / ((1.0f - smooth) / (float)factor + smooth);
        }
    }
    *n_out = n;
    return out;
}

static uint32_t out_type_for(int outtype)
{
    switch (outtype) {
    case CV_OUT_F32: return SM_TYPE_F32;
    case CV_OUT_BF16: return SM_TYPE_BF16;
    case CV_OUT_Q8_0: return SM_TYPE_Q8_0;
    default: return SM_TYPE_F16;
    }
}

static uint32_t ftype_for(int outtype)
{
    switch (outtype) {
    case CV_OUT_F32: return FTYPE_ALL_F32;
    case CV_OUT_BF16: return FTYPE_MOSTLY_BF16;
    case CV_OUT_Q8_0: return FTYPE_MOSTLY_Q8_0;
    default: return FTYPE_MOSTLY_F16;
    }
}

static int plan_tensors(const st_model *st, const hparams *h, const model_info *mi, int outtype, out_tensor **out,
                        uint64_t *n_out, sm_err *err)
{
    out_tensor *ts = calloc((size_t)st->n_tensors + 1, sizeof *ts);
    if (!ts)
        return sm_err_set(err, SM_ENOMEM, "out of memory");
    uint64_t n = 0;
    int rc = SM_OK;
    json_t *rs = hp_get(h, "rope_scaling");
    if (strcmp(mi->arch->name, "llama") == 0 && json_is_object(rs)) {
        const char *rt = json_string_value(json_object_get(rs, "rope_type"));
        if (rt && strcasecmp(rt, "llama3") == 0) {
            out_tensor *t = &ts[n++];
            snprintf(t->name, sizeof t->name, "rope_freqs.weight");
            t->src = -1;
            t->gen = llama3_rope_factors(h, mi, rs, &t->ne[0]);
            if (!t->gen) {
                rc = sm_err_set(err, SM_ENOMEM, "out of memory");
                goto done;
            }
            t->n_dims = 1;
            t->type = SM_TYPE_F32;
        }
    }
    for (uint64_t i = 0; i < st->n_tensors; i++) {
        const st_tensor *s = &st->tensors[i];
        if (has_suffix(s->name, ".attention.masked_bias") || has_suffix(s->name, ".attention.bias") ||
            has_suffix(s->name, ".rotary_emb.inv_freq"))
            continue;
        if (strstr(s->name, "block_sparse_moe") || strstr(s->name, ".experts.")) {
            rc = sm_err_set(err, SM_EUNSUPP, "%s: tensor '%s': mixture-of-experts checkpoints are not supported",
                            st->shards[s->shard].path, s->name);
            goto done;
        }
        if (s->dtype != ST_F32 && s->dtype != ST_F16 && s->dtype != ST_BF16) {
            rc = sm_err_set(err, SM_ETYPE, "%s: tensor '%s': dtype %s is not supported (F32, F16 and BF16 are)",
                            st->shards[s->shard].path, s->name, st_dtype_name(s->dtype));
            goto done;
        }
        out_tensor *t = &ts[n];
        int bid;
        if (map_name(s->name, t->name, sizeof t->name, &bid) != SM_OK) {
            rc = sm_err_set(err, SM_EUNSUPP, "%s: cannot map tensor '%s' to a %s GGUF name",
                            st->shards[s->shard].path, s->name, mi->arch->name);
            goto done;
        }
        if (s->n_dims == 0 || s->n_dims > 4) {
            rc = sm_err_set(err, SM_EFORMAT, "%s: tensor '%s': %u dimensions, expected 1 to 4",
                            st->shards[s->shard].path, s->name, s->n_dims);
            goto done;
        }
        t->src = (int64_t)i;
        t->n_dims = s->n_dims;
        for (uint32_t d = 0; d < 4; d++)
            t->ne[d] = d < s->n_dims ? s->shape[s->n_dims - 1 - d] : 1;
        if (t->ne[0] == 0 || s->n_elements == 0) {
            rc = sm_err_set(err, SM_EFORMAT, "%s: tensor '%s' is empty", st->shards[s->shard].path, s->name);
            goto done;
        }
        if (mi->arch->permute_qk) {
            if (has_suffix(s->name, "q_proj.weight") || has_suffix(s->name, "q_proj.bias"))
                t->permute = (int)mi->n_head;
            else if (has_suffix(s->name, "k_proj.weight") || has_suffix(s->name, "k_proj.bias"))
                t->permute = (int)mi->n_head_kv;
            int64_t rows = s->shape[0];
            if (t->permute && rows % (2 * (int64_t)t->permute) != 0) {
                rc = sm_err_set(err, SM_EFORMAT, "%s: tensor '%s': %lld rows cannot be split into %d heads of even size",
                                st->shards[s->shard].path, s->name, (long long)rows, t->permute);
                goto done;
            }
        }
        if (t->n_dims <= 1 || has_suffix(t->name, "_norm.weight") || !has_suffix(t->name, ".weight")) {
            t->type = SM_TYPE_F32;
        } else {
            t->type = out_type_for(outtype);
            if (t->type == SM_TYPE_Q8_0 && t->ne[0] % 32 != 0) {
                /* gguf-py: "Can't quantize tensor ... falling back to F16" */
                t->type = SM_TYPE_F16;
                t->q8_fallback = 1;
            }
        }
        n++;
    }
    for (uint64_t i = 0; i < n; i++)
        for (uint64_t j = 0; j < i; j++)
            if (strcmp(ts[i].name, ts[j].name) == 0) {
                rc = sm_err_set(err, SM_EDUP, "two source tensors map to '%s'", ts[i].name);
                goto done;
            }
done:
    if (rc) {
        for (uint64_t i = 0; i < n + 1 && i <= st->n_tensors; i++)
            free(ts[i].gen);
        free(ts);
        return rc;
    }
    *out = ts;
    *n_out = n;
    return SM_OK;
}

/* ------------------------------------------------------------ driver */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void note_f16_range(cv_summary *sum, const char *name, const float *x, uint64_t n, int *noted)
{
    uint64_t over = 0, under = 0;
    for (uint64_t i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        if (isfinite(a) && a >= 65520.0f)
            over++;
        else if (a != 0.0f && a < 0x1p-25f) /* rounds to zero in f16 (2^-25 ties to 0) */
            under++;
        else if (a == 0x1p-25f)
            under++;
    }
    sum->f16_overflow += over;
    sum->f16_underflow += under;
    if ((over || under) && !*noted) {
        size_t len = strlen(sum->f16_tensors);
        if (len + strlen(name) + 3 < sizeof sum->f16_tensors)
            snprintf(sum->f16_tensors + len, sizeof sum->f16_tensors - len, "%s%s", len ? ", " : "", name);
        *noted = 1;
    }
}

/* Elements converted per step: 4 Mi floats keeps the working buffers at
 * ~16 MiB each whatever the tensor size. */
#define CV_CHUNK_ELEMS (4u << 20)

/* Converts one tensor and streams it to w in row chunks, releasing the
 * source pages behind it, so memory stays near two chunk buffers. */
static int convert_tensor(const st_model *st, const out_tensor *t, gguf_writer *w, cv_summary *sum, float **f32buf,
                          size_t *f32cap, uint8_t **outbuf, size_t *outcap, uint64_t *out_bytes, sm_err *err)
{
    int64_t nel = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
    int64_t cols = t->ne[0], rows = nel / cols;
    uint64_t row_out = sm_type_row_size(t->type, cols, NULL);
    *out_bytes = row_out * (uint64_t)rows;
    if (t->src < 0)
        return gguf_writer_write_tensor(w, t->gen, (uint64_t)nel * 4, err);
    const st_tensor *s = &st->tensors[t->src];
    /* permutation moves rows within one head: chunks hold whole heads */
    int64_t group = t->permute ? rows / t->permute : 1;
    int64_t chunk_rows = (int64_t)(CV_CHUNK_ELEMS / (uint64_t)cols);
    chunk_rows = chunk_rows < group ? group : chunk_rows / group * group;
    if (chunk_rows > rows)
        chunk_rows = rows;
    size_t need_f = (size_t)(chunk_rows * cols) * sizeof(float);
    size_t need_o = (size_t)(chunk_rows * cols) * 4 > (size_t)row_out * (size_t)chunk_rows
                        ? (size_t)(chunk_rows * cols) * 4 : (size_t)row_out * (size_t)chunk_rows;
    if (need_f > *f32cap) {
        float *p = realloc(*f32buf, need_f);
        if (!p)
            return sm_err_set(err, SM_ENOMEM, "tensor '%s': out of memory", t->name);
        *f32buf = p;
        *f32cap = need_f;
    }
    if (need_o > *outcap) {
        uint8_t *p = realloc(*outbuf, need_o);
        if (!p)
            return sm_err_set(err, SM_ENOMEM, "tensor '%s': out of memory", t->name);
        *outbuf = p;
        *outcap = need_o;
    }
    float *x = *f32buf;
    uint8_t *y = *outbuf;
    uint32_t es = st_dtype_size(s->dtype);
    int noted = 0, rc;
    sum->bytes_in += s->nbytes;
    for (int64_t r0 = 0; r0 < rows; r0 += chunk_rows) {
        int64_t nr = rows - r0 < chunk_rows ? rows - r0 : chunk_rows;
        uint64_t n = (uint64_t)(nr * cols), first = (uint64_t)(r0 * cols);
        uint32_t nh = t->permute ? (uint32_t)(nr / group) : 0;
        if (s->dtype == ST_F16 && t->type == SM_TYPE_F16) {
            /* numpy keeps F16 sources as they are: copy the bits (NaN payloads too) */
            const uint8_t *src = s->data + first * 2;
            if (nh)
                cv_permute_qk(src, y, nr, cols, 2, nh);
            else
                memcpy(y, src, (size_t)n * 2);
        } else {
            if ((rc = st_tensor_read_f32(s, first, n, x, err)))
                return rc;
            if (nh) {
                cv_permute_qk(x, y, nr, cols, 4, nh);
                memcpy(x, y, (size_t)n * 4);
            }
            switch (t->type) {
            case SM_TYPE_F32:
                memcpy(y, x, (size_t)n * 4);
                break;
            case SM_TYPE_F16: {
                note_f16_range(sum, t->name, x, n, &noted);
                uint16_t *h = (uint16_t *)y;
                for (uint64_t i = 0; i < n; i++)
                    h[i] = sm_f32_to_f16(x[i]);
                break;
            }
            case SM_TYPE_BF16: {
                uint16_t *h = (uint16_t *)y;
                for (uint64_t i = 0; i < n; i++)
                    h[i] = sm_f32_to_bf16(x[i]);
                break;
            }
            case SM_TYPE_Q8_0:
                sm_quantize_rows(SM_TYPE_Q8_0, x, y, nr, cols, NULL);
                break;
            default:
                return sm_err_set(err, SM_ETYPE, "tensor '%s': unexpected output type", t->name);
            }
        }
        if ((rc = gguf_writer_write_tensor_part(w, y, row_out * (uint64_t)nr, err)))
            return rc;
        sm_map_release(&st->shards[s->shard].map, s->file_off + first * es, n * es);
    }
    return SM_OK;
}

/* config.json text -> h->root (an object); h->path names it in messages. */
static int parse_config(hparams *h, const char *text, uint64_t len, sm_err *err)
{
    if (len > CV_MAX_CONFIG)
        return sm_err_set(err, SM_ERANGE, "%s: %llu bytes, more than the %llu allowed", h->path,
                          (unsigned long long)len, (unsigned long long)CV_MAX_CONFIG);
    json_error_t je;
    h->root = json_loadb(text, (size_t)len, JSON_REJECT_DUPLICATES, &je);
    if (!h->root)
        return sm_err_set(err, SM_EFORMAT, "%s: invalid JSON at line %d column %d: %s", h->path, je.line, je.column,
                          je.text);
    if (!json_is_object(h->root)) {
        json_decref(h->root);
        h->root = NULL;
        return sm_err_set(err, SM_EFORMAT, "%s: not a JSON object", h->path);
    }
    return SM_OK;
}

static int load_config(const char *dir, hparams *h, char *path, size_t cap, sm_err *err)
{
    snprintf(path, cap, "%s/config.json", dir);
    h->path = path;
    char *text = NULL;
    uint64_t len;
    int rc = sm_read_file(path, CV_MAX_CONFIG, &text, &len, err);
    if (rc)
        return rc;
    rc = parse_config(h, text, len, err);
    free(text);
    return rc;
}

/* general.name & co. as gguf-py's Metadata derives them: from config's
 * _name_or_path (a model id, at most one '/'), then the directory name
 * `base`; size label from the parameter count. SM_ENOMEM or SM_OK. */
static int name_model(sm_naming *nm, const hparams *h, const char *base, uint64_t total_params)
{
    const char *name_or_path = json_string_value(hp_get(h, "_name_or_path"));
    if (name_or_path) {
        int slashes = 0;
        for (const char *c = name_or_path; *c; c++)
            slashes += *c == '/';
        if (slashes <= 1 && sm_naming_from_id(nm, name_or_path, (int64_t)total_params))
            return SM_ENOMEM;
    }
    if (sm_naming_from_id(nm, base, (int64_t)total_params))
        return SM_ENOMEM;
    if (!nm->name && !(nm->name = strdup(base)))
        return SM_ENOMEM;
    if (!nm->size_label && total_params > 0) {
        char lbl[32];
        sm_size_label(total_params, lbl, sizeof lbl);
        if (!(nm->size_label = strdup(lbl)))
            return SM_ENOMEM;
    }
    return SM_OK;
}

/* The KVs before the vocabulary: general.* (Metadata.set_gguf_meta_model
 * order) and the hyper-parameters. */
static int write_header(gguf_writer *w, const hparams *h, const model_info *mi, const sm_naming *nm, int vocab_only,
                        uint32_t ftype, sm_err *err)
{
    if (gguf_writer_set_str(w, "general.architecture", mi->arch->name) || gguf_writer_set_str(w, "general.type", "model"))
        goto oom;
    if (gguf_writer_set_str(w, "general.name", nm->name))
        goto oom;
    if (nm->version && gguf_writer_set_str(w, "general.version", nm->version))
        goto oom;
    if (nm->organization && gguf_writer_set_str(w, "general.organization", nm->organization))
        goto oom;
    if (nm->finetune && gguf_writer_set_str(w, "general.finetune", nm->finetune))
        goto oom;
    if (nm->basename && gguf_writer_set_str(w, "general.basename", nm->basename))
        goto oom;
    if (!vocab_only && nm->size_label && gguf_writer_set_str(w, "general.size_label", nm->size_label))
        goto oom;
    return write_hparams(w, h, mi, ftype, err);
oom:
    return sm_err_set(err, SM_ENOMEM, "out of memory");
}

int cv_config_kv(gguf_writer *w, const char *text, uint64_t len, const char *path, const char *dir_name,
                 int outtype, int vocab_only, cv_config_info *info, sm_err *err)
{
    hparams h = {NULL, path};
    model_info mi;
    sm_naming nm = {0};
    memset(info, 0, sizeof *info);
    int rc;
    if ((rc = parse_config(&h, text, len, err)) || (rc = read_model_info(&h, &mi, err)))
        goto done;
    if ((rc = name_model(&nm, &h, dir_name, 0))) {
        rc = sm_err_set(err, SM_ENOMEM, "out of memory");
        goto done;
    }
    if ((rc = write_header(w, &h, &mi, &nm, vocab_only, ftype_for(outtype), err)))
        goto done;
    info->arch = mi.arch->name;
    info->vocab_size = mi.has_vocab_size ? mi.vocab_size : 0;
done:
    sm_naming_free(&nm);
    json_decref(h.root);
    return rc;
}

/* Last path component of a directory, ignoring trailing slashes. */
static void dir_basename(const char *dir, char *out, size_t cap)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", dir);
    size_t n = strlen(tmp);
    while (n > 1 && tmp[n - 1] == '/')
        tmp[--n] = 0;
    if (strcmp(tmp, ".") == 0 || strcmp(tmp, "..") == 0) {
        char *real = realpath(tmp, NULL);
        if (real) {
            snprintf(tmp, sizeof tmp, "%s", real);
            free(real);
        }
    }
    const char *b = strrchr(tmp, '/');
    b = b ? b + 1 : tmp;
    size_t bl = strlen(b);
    if (bl >= cap) /* a directory name longer than NAME_MAX cannot exist */
        bl = cap - 1;
    memcpy(out, b, bl);
    out[bl] = 0;
}

int cv_convert(const cv_opts *o, cv_summary *sum, sm_err *err)
{
    memset(sum, 0, sizeof *sum);
    double t0 = now_s();
    int rc;
    hparams h = {0};
    char cfg_path[4200];
    st_model st;
    memset(&st, 0, sizeof st);
    model_info mi;
    out_tensor *ts = NULL;
    uint64_t n_ts = 0;
    gguf_writer *w = NULL;
    sm_naming nm = {0};
    float *f32buf = NULL;
    uint8_t *outbuf = NULL;
    size_t f32cap = 0, outcap = 0;

    if ((rc = load_config(o->model_dir, &h, cfg_path, sizeof cfg_path, err)))
        goto done;
    if ((rc = read_model_info(&h, &mi, err)))
        goto done;
    snprintf(sum->arch, sizeof sum->arch, "%s", mi.arch->name);
    if (!o->vocab_only || o->outtype == CV_OUT_AUTO) {
        if ((rc = st_open(&st, o->model_dir, err)))
            goto done;
    }
    int outtype = o->outtype;
    if (outtype == CV_OUT_AUTO) {
        /* llama.cpp's "auto": f16 when the first tensor is F16, else bf16 */
        outtype = (st.n_tensors && st.tensors[0].dtype == ST_F16) ? CV_OUT_F16 : CV_OUT_BF16;
    }
    sum->outtype = outtype;
    if (!o->vocab_only) {
        if ((rc = plan_tensors(&st, &h, &mi, outtype, &ts, &n_ts, err)))
            goto done;
    }

    /* general.* naming needs the parameter count of what is written */
    uint64_t total_params = 0;
    for (uint64_t i = 0; i < n_ts; i++)
        total_params += (uint64_t)(ts[i].ne[0] * ts[i].ne[1] * ts[i].ne[2] * ts[i].ne[3]);
    char base[1024];
    dir_basename(o->model_dir, base, sizeof base);
    if (name_model(&nm, &h, base, total_params))
        goto oom;

    /* output path */
    if (o->outfile) {
        snprintf(sum->outfile, sizeof sum->outfile, "%s", o->outfile);
    } else {
        char fname[1024];
        const char *ot = outtype == CV_OUT_F32 ? "F32" : outtype == CV_OUT_BF16 ? "BF16" : outtype == CV_OUT_Q8_0 ? "Q8_0" : "F16";
        if (o->vocab_only) {
            sm_naming vn = nm;
            vn.size_label = NULL;
            sm_default_filename(&vn, NULL, "vocab", fname, sizeof fname);
        } else {
            sm_default_filename(&nm, ot, NULL, fname, sizeof fname);
        }
        snprintf(sum->outfile, sizeof sum->outfile, "%s/%s", o->model_dir, fname);
    }
    struct stat sb;
    if (stat(sum->outfile, &sb) == 0) {
        for (uint32_t i = 0; i < st.n_shards; i++)
            if (sm_same_file(sum->outfile, st.shards[i].path)) {
                rc = sm_err_set(err, SM_EINVAL, "%s: the output would overwrite an input file", sum->outfile);
                goto done;
            }
        if (!o->force) {
            rc = sm_err_set(err, SM_EINVAL, "%s: output exists (pass --force to overwrite it)", sum->outfile);
            goto done;
        }
    }

    w = gguf_writer_init();
    if (!w)
        goto oom;
    if ((rc = write_header(w, &h, &mi, &nm, o->vocab_only, ftype_for(outtype), err)))
        goto done;
    cv_vocab_opts vo = {o->pre, mi.has_vocab_size ? mi.vocab_size : 0, mi.arch->name};
    if ((rc = cv_vocab_add_kv(w, o->model_dir, &vo, err)))
        goto done;
    if (gguf_writer_set_u32(w, "general.quantization_version", 2))
        goto oom;

    for (uint64_t i = 0; i < n_ts; i++)
        if ((rc = gguf_writer_add_tensor(w, ts[i].name, ts[i].n_dims, ts[i].ne, ts[i].type, err)))
            goto done;
    if ((rc = gguf_writer_begin(w, sum->outfile, err)))
        goto done;
    uint64_t total_bytes = gguf_writer_file_size(w), done_bytes = 0;
    for (uint64_t i = 0; i < n_ts; i++) {
        uint64_t nb = 0;
        if ((rc = convert_tensor(&st, &ts[i], w, sum, &f32buf, &f32cap, &outbuf, &outcap, &nb, err)))
            goto done;
        done_bytes += nb;
        if (o->progress) {
            const char *sd = ts[i].src >= 0 ? st_dtype_name(st.tensors[ts[i].src].dtype) : "F32";
            o->progress(o->progress_ctx, i, n_ts, ts[i].name, sd, sm_type_name(ts[i].type), ts[i].ne, ts[i].n_dims,
                        done_bytes, total_bytes);
        }
    }
    if ((rc = gguf_writer_finish(w, err)))
        goto done;
    sum->n_tensors = n_ts;
    sum->bytes_out = total_bytes;
    sum->seconds = now_s() - t0;
    rc = SM_OK;
    goto done;
oom:
    rc = sm_err_set(err, SM_ENOMEM, "out of memory");
done:
    if (rc && w)
        gguf_writer_abort(w);
    gguf_writer_free(w);
    for (uint64_t i = 0; i < n_ts; i++)
        free(ts[i].gen);
    free(ts);
    free(f32buf);
    free(outbuf);
    sm_naming_free(&nm);
    st_close(&st);
    json_decref(h.root);
    return rc;
}
