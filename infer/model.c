#include "model.h"

#include "ops.h"
#include "types.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *model_arch_name(int32_t arch)
{
    return arch == SM_ARCH_QWEN2 ? "qwen2" : "llama";
}

/* Reads {arch}.suffix as u32 into *out; absent keys keep the default unless
 * required. */
static int key_u32(const sm_model *m, const char *arch, const char *suffix, int required,
                   int32_t *out, sm_err *err)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    const gguf_kv *kv = gguf_get(&m->gguf, key);
    if (!kv) {
        if (required)
            return sm_err_set(err, SM_EMISSING, "%s: required key '%s' is missing", m->gguf.path, key);
        return SM_OK;
    }
    if (kv->type == GGUF_VT_ARRAY)
        return sm_err_set(err, SM_EUNSUPP, "%s: key '%s' is a per-layer array; only a single value is supported",
                          m->gguf.path, key);
    uint32_t v;
    int rc = gguf_get_u32(&m->gguf, key, &v, err);
    if (rc)
        return rc;
    if (v > (uint32_t)INT32_MAX)
        return sm_err_set(err, SM_ERANGE, "%s: key '%s' = %u is too large", m->gguf.path, key, v);
    *out = (int32_t)v;
    return SM_OK;
}

static int key_f32(const sm_model *m, const char *key, int required, float *out, sm_err *err)
{
    if (!gguf_get(&m->gguf, key)) {
        if (required)
            return sm_err_set(err, SM_EMISSING, "%s: required key '%s' is missing", m->gguf.path, key);
        return SM_OK;
    }
    return gguf_get_f32(&m->gguf, key, out, err);
}

static const gguf_tensor *find_tensor(const sm_model *m, const char *name, int64_t *idx)
{
    int64_t i = gguf_find_tensor(&m->gguf, name);
    *idx = i;
    return i < 0 ? NULL : &m->gguf.tensors[i];
}

/* smelt-infer reads weights in place, through fp16/float fields of the block
 * structs: their data must sit at a 4-byte aligned address. A GGUF keeps
 * tensor data at multiples of general.alignment (32 unless set; llama.cpp
 * writes 32), so only a file declaring an alignment of 1 or 2 can fail. */
static int check_aligned(const sm_model *m, const char *name, const gguf_tensor *t, sm_err *err)
{
    if ((uintptr_t)t->data % 4 == 0)
        return SM_OK;
    return sm_err_set(err, SM_EFORMAT,
                      "%s: tensor '%s': data at file offset %llu is not 4-byte aligned (general.alignment %u); smelt-infer reads weights in place",
                      m->gguf.path, name, (unsigned long long)(m->gguf.data_offset + t->offset), m->gguf.alignment);
}

/* Binds a matrix tensor with ggml shape {n_in, n_out}. Returns 1 when bound,
 * 0 when absent and optional, <0 on error. */
static int bind_weight(sm_model *m, const char *name, int64_t n_in, int64_t n_out, int required,
                       sm_weight *w, sm_err *err)
{
    int64_t idx;
    const gguf_tensor *t = find_tensor(m, name, &idx);
    if (!t) {
        if (required)
            return sm_err_set(err, SM_EMISSING, "%s: required tensor '%s' is missing", m->gguf.path, name);
        return 0;
    }
    if (t->ne[0] != n_in || t->ne[1] != n_out || t->ne[2] != 1 || t->ne[3] != 1)
        return sm_err_set(err, SM_EMISMATCH,
                          "%s: tensor '%s' has shape [%lld, %lld, %lld, %lld], expected [%lld, %lld] for the declared hyper-parameters",
                          m->gguf.path, name, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                          (long long)t->ne[3], (long long)n_in, (long long)n_out);
    if (!ops_type_supported(t->type))
        return sm_err_set(err, SM_ETYPE, "%s: tensor '%s' has type %s (%u), which smelt-infer cannot compute with",
                          m->gguf.path, name, sm_type_name(t->type), t->type);
    int ok = 0;
    uint64_t rb = sm_type_row_size(t->type, n_in, &ok);
    if (!ok || rb * (uint64_t)n_out != t->nbytes)
        return sm_err_set(err, SM_EFORMAT, "%s: tensor '%s': row length %lld does not fit type %s", m->gguf.path,
                          name, (long long)n_in, sm_type_name(t->type));
    int rc = check_aligned(m, name, t, err);
    if (rc)
        return rc;
    int32_t act_blk = ops_act_block(ops_act_for_type(t->type));
    if (n_in % act_blk != 0)
        return sm_err_set(err, SM_EFORMAT, "%s: tensor '%s': row length %lld is not a multiple of %d", m->gguf.path,
                          name, (long long)n_in, (int)act_blk);
    w->data = t->data;
    w->type = t->type;
    w->n_in = n_in;
    w->n_out = n_out;
    w->row_bytes = rb;
    w->name = m->tnames[idx];
    return 1;
}

/* Binds a 1-D vector of n elements, widened to an owned f32 array. */
static int bind_vec(sm_model *m, const char *name, int64_t n, int required, float **out, sm_err *err)
{
    int64_t idx;
    const gguf_tensor *t = find_tensor(m, name, &idx);
    *out = NULL;
    if (!t) {
        if (required)
            return sm_err_set(err, SM_EMISSING, "%s: required tensor '%s' is missing", m->gguf.path, name);
        return 0;
    }
    if (t->ne[0] != n || t->ne[1] != 1 || t->ne[2] != 1 || t->ne[3] != 1)
        return sm_err_set(err, SM_EMISMATCH, "%s: tensor '%s' has shape [%lld, %lld], expected [%lld]", m->gguf.path,
                          name, (long long)t->ne[0], (long long)t->ne[1], (long long)n);
    if (!ops_type_supported(t->type))
        return sm_err_set(err, SM_ETYPE, "%s: tensor '%s' has unsupported type %s (%u)", m->gguf.path, name,
                          sm_type_name(t->type), t->type);
    int ok = 0;
    uint64_t rb = sm_type_row_size(t->type, n, &ok);
    if (!ok || rb != t->nbytes)
        return sm_err_set(err, SM_EFORMAT, "%s: tensor '%s': %lld elements do not fit type %s", m->gguf.path, name,
                          (long long)n, sm_type_name(t->type));
    int rc = check_aligned(m, name, t, err);
    if (rc)
        return rc;
    float *v = malloc((size_t)n * sizeof(float));
    if (!v)
        return sm_err_set(err, SM_ENOMEM, "%s: out of memory for '%s'", m->gguf.path, name);
    ops_dequant_row(t->type, t->data, v, n);
    *out = v;
    return 1;
}

static int check_pos(const sm_model *m, const char *what, int32_t v, sm_err *err)
{
    if (v <= 0)
        return sm_err_set(err, SM_ERANGE, "%s: %s = %d, expected > 0", m->gguf.path, what, (int)v);
    return SM_OK;
}

static int load_hparams(sm_model *m, sm_err *err)
{
    sm_hparams *hp = &m->hp;
    sm_str a;
    int rc = gguf_get_str(&m->gguf, "general.architecture", &a, err);
    if (rc == SM_EMISSING)
        return sm_err_set(err, SM_EMISSING, "%s: required key 'general.architecture' is missing", m->gguf.path);
    if (rc)
        return rc;
    const char *arch;
    if (sm_str_eq(a, "llama")) {
        hp->arch = SM_ARCH_LLAMA;
        arch = "llama";
    } else if (sm_str_eq(a, "qwen2")) {
        hp->arch = SM_ARCH_QWEN2;
        arch = "qwen2";
    } else {
        return sm_err_set(err, SM_EUNSUPP, "%s: architecture '%.*s' is not supported (supported: llama, qwen2)",
                          m->gguf.path, (int)(a.len > 64 ? 64 : a.len), a.ptr);
    }
    if ((rc = key_u32(m, arch, "context_length", 1, &hp->n_ctx_train, err)) ||
        (rc = key_u32(m, arch, "embedding_length", 1, &hp->n_embd, err)) ||
        (rc = key_u32(m, arch, "block_count", 1, &hp->n_layer, err)) ||
        (rc = key_u32(m, arch, "feed_forward_length", 1, &hp->n_ff, err)) ||
        (rc = key_u32(m, arch, "attention.head_count", 1, &hp->n_head, err)))
        return rc;
    if ((rc = check_pos(m, "context_length", hp->n_ctx_train, err)) ||
        (rc = check_pos(m, "embedding_length", hp->n_embd, err)) ||
        (rc = check_pos(m, "block_count", hp->n_layer, err)) ||
        (rc = check_pos(m, "feed_forward_length", hp->n_ff, err)) ||
        (rc = check_pos(m, "attention.head_count", hp->n_head, err)))
        return rc;
    if (hp->n_layer > 4096 || hp->n_head > 4096 || hp->n_embd > (1 << 20) || hp->n_ff > (1 << 22))
        return sm_err_set(err, SM_ERANGE, "%s: hyper-parameters out of range (layers %d, heads %d, embd %d, ff %d)",
                          m->gguf.path, (int)hp->n_layer, (int)hp->n_head, (int)hp->n_embd, (int)hp->n_ff);
    hp->n_head_kv = hp->n_head;
    if ((rc = key_u32(m, arch, "attention.head_count_kv", 0, &hp->n_head_kv, err)))
        return rc;
    if (hp->n_head_kv <= 0 || hp->n_head % hp->n_head_kv != 0)
        return sm_err_set(err, SM_ERANGE, "%s: attention.head_count_kv = %d does not divide head_count %d",
                          m->gguf.path, (int)hp->n_head_kv, (int)hp->n_head);
    if (hp->n_embd % hp->n_head != 0)
        return sm_err_set(err, SM_ERANGE, "%s: embedding_length %d is not a multiple of head_count %d", m->gguf.path,
                          (int)hp->n_embd, (int)hp->n_head);
    hp->n_embd_head = hp->n_embd / hp->n_head;
    int32_t kl = hp->n_embd_head, vl = hp->n_embd_head;
    if ((rc = key_u32(m, arch, "attention.key_length", 0, &kl, err)) ||
        (rc = key_u32(m, arch, "attention.value_length", 0, &vl, err)))
        return rc;
    if (kl != hp->n_embd_head || vl != hp->n_embd_head)
        return sm_err_set(err, SM_EUNSUPP, "%s: attention key/value length %d/%d differ from n_embd/n_head = %d",
                          m->gguf.path, (int)kl, (int)vl, (int)hp->n_embd_head);
    hp->n_rot = hp->n_embd_head;
    if ((rc = key_u32(m, arch, "rope.dimension_count", 0, &hp->n_rot, err)))
        return rc;
    if (hp->n_rot <= 0 || hp->n_rot > hp->n_embd_head || hp->n_rot % 2 != 0 ||
        (hp->arch == SM_ARCH_LLAMA && hp->n_rot != hp->n_embd_head))
        return sm_err_set(err, SM_ERANGE, "%s: rope.dimension_count = %d invalid for head size %d", m->gguf.path,
                          (int)hp->n_rot, (int)hp->n_embd_head);
    hp->rope_neox = hp->arch == SM_ARCH_QWEN2;
    char key[128];
    snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", arch);
    if ((rc = key_f32(m, key, 1, &hp->rms_eps, err)))
        return rc;
    hp->rope_freq_base = 10000.0f;
    snprintf(key, sizeof key, "%s.rope.freq_base", arch);
    if ((rc = key_f32(m, key, 0, &hp->rope_freq_base, err)))
        return rc;
    float ropescale = 0.0f;
    snprintf(key, sizeof key, "%s.rope.scaling.factor", arch);
    if ((rc = key_f32(m, key, 0, &ropescale, err)))
        return rc;
    if (ropescale == 0.0f) {
        snprintf(key, sizeof key, "%s.rope.scale_linear", arch);
        if ((rc = key_f32(m, key, 0, &ropescale, err)))
            return rc;
    }
    hp->rope_freq_scale = ropescale == 0.0f ? 1.0f : 1.0f / ropescale;
    snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
    sm_str st;
    if (gguf_get(&m->gguf, key) && gguf_get_str(&m->gguf, key, &st, NULL) == 0 && !sm_str_eq(st, "linear") &&
        !sm_str_eq(st, "none"))
        return sm_err_set(err, SM_EUNSUPP, "%s: rope scaling type '%.*s' is not supported", m->gguf.path,
                          (int)(st.len > 32 ? 32 : st.len), st.ptr);
    hp->kq_scale = 1.0f / sqrtf((float)hp->n_embd_head);

    /* special tokens: llama.cpp's defaults per tokenizer model */
    sm_str tm = {"", 0};
    gguf_get_str(&m->gguf, "tokenizer.ggml.model", &tm, NULL);
    int spm = sm_str_eq(tm, "llama");
    hp->bos_id = spm ? 1 : -1;
    hp->eos_id = spm ? 2 : -1;
    hp->add_bos = spm;
    uint32_t u;
    if (gguf_get_u32(&m->gguf, "tokenizer.ggml.bos_token_id", &u, NULL) == 0)
        hp->bos_id = (int32_t)u;
    if (gguf_get_u32(&m->gguf, "tokenizer.ggml.eos_token_id", &u, NULL) == 0)
        hp->eos_id = (int32_t)u;
    bool b;
    if (gguf_get_bool(&m->gguf, "tokenizer.ggml.add_bos_token", &b, NULL) == 0)
        hp->add_bos = b;
    return SM_OK;
}

static int bind_all(sm_model *m, sm_err *err)
{
    sm_hparams *hp = &m->hp;
    int rc;
    int64_t idx;
    const gguf_tensor *te = find_tensor(m, "token_embd.weight", &idx);
    if (!te)
        return sm_err_set(err, SM_EMISSING, "%s: required tensor 'token_embd.weight' is missing", m->gguf.path);
    if (te->ne[1] <= 0 || te->ne[1] > INT32_MAX)
        return sm_err_set(err, SM_ERANGE, "%s: token_embd.weight has %lld rows", m->gguf.path, (long long)te->ne[1]);
    hp->n_vocab = (int32_t)te->ne[1];
    const int64_t E = hp->n_embd, H = hp->n_embd_head;
    const int64_t nq = H * hp->n_head, nkv = H * hp->n_head_kv;
    if ((rc = bind_weight(m, "token_embd.weight", E, hp->n_vocab, 1, &m->tok_embd, err)) < 0)
        return rc;
    if ((rc = bind_vec(m, "output_norm.weight", E, 1, &m->output_norm, err)) < 0)
        return rc;
    if ((rc = bind_weight(m, "output.weight", E, hp->n_vocab, 0, &m->output, err)) < 0)
        return rc;
    if (rc == 0) {
        m->output = m->tok_embd;
        m->tied = 1;
    }
    if ((rc = bind_vec(m, "rope_freqs.weight", hp->n_rot / 2, 0, &m->rope_freqs, err)) < 0)
        return rc;
    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers)
        return sm_err_set(err, SM_ENOMEM, "%s: out of memory", m->gguf.path);
    const int bias_req = hp->arch == SM_ARCH_QWEN2;
    for (int32_t il = 0; il < hp->n_layer; il++) {
        sm_layer *L = &m->layers[il];
        char n[96];
#define NAME(s) (snprintf(n, sizeof n, "blk.%d." s, (int)il), n)
        if ((rc = bind_vec(m, NAME("attn_norm.weight"), E, 1, &L->attn_norm, err)) < 0 ||
            (rc = bind_weight(m, NAME("attn_q.weight"), E, nq, 1, &L->wq, err)) < 0 ||
            (rc = bind_weight(m, NAME("attn_k.weight"), E, nkv, 1, &L->wk, err)) < 0 ||
            (rc = bind_weight(m, NAME("attn_v.weight"), E, nkv, 1, &L->wv, err)) < 0 ||
            (rc = bind_weight(m, NAME("attn_output.weight"), nq, E, 1, &L->wo, err)) < 0 ||
            (rc = bind_vec(m, NAME("attn_q.bias"), nq, bias_req, &L->bq, err)) < 0 ||
            (rc = bind_vec(m, NAME("attn_k.bias"), nkv, bias_req, &L->bk, err)) < 0 ||
            (rc = bind_vec(m, NAME("attn_v.bias"), nkv, bias_req, &L->bv, err)) < 0 ||
            (rc = bind_vec(m, NAME("attn_output.bias"), E, 0, &L->bo, err)) < 0 ||
            (rc = bind_vec(m, NAME("ffn_norm.weight"), E, 1, &L->ffn_norm, err)) < 0 ||
            (rc = bind_weight(m, NAME("ffn_gate.weight"), E, hp->n_ff, 1, &L->ffn_gate, err)) < 0 ||
            (rc = bind_weight(m, NAME("ffn_up.weight"), E, hp->n_ff, 1, &L->ffn_up, err)) < 0 ||
            (rc = bind_weight(m, NAME("ffn_down.weight"), hp->n_ff, E, 1, &L->ffn_down, err)) < 0)
            return rc;
#undef NAME
    }
    return SM_OK;
}

int model_load_gguf(sm_model *m, gguf_file *g, sm_err *err)
{
    memset(m, 0, sizeof *m);
    m->gguf = *g;
    memset(g, 0, sizeof *g);
    ops_init();
    int rc = SM_OK;
    m->tnames = calloc(m->gguf.n_tensors ? m->gguf.n_tensors : 1, sizeof *m->tnames);
    if (!m->tnames) {
        rc = sm_err_set(err, SM_ENOMEM, "%s: out of memory", m->gguf.path);
        goto fail;
    }
    for (uint64_t i = 0; i < m->gguf.n_tensors; i++) {
        const gguf_tensor *t = &m->gguf.tensors[i];
        m->tnames[i] = sm_str_dup(t->name);
        if (!m->tnames[i]) {
            rc = sm_err_set(err, SM_ENOMEM, "%s: out of memory", m->gguf.path);
            goto fail;
        }
        m->weight_bytes += t->nbytes;
        m->n_params += (uint64_t)(t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3]);
    }
    if ((rc = load_hparams(m, err)) || (rc = bind_all(m, err)))
        goto fail;
    return SM_OK;
fail:
    model_free(m);
    return rc;
}

int model_load(sm_model *m, const char *path, sm_err *err)
{
    gguf_file g;
    memset(m, 0, sizeof *m);
    int rc = gguf_open(&g, path, err);
    if (rc)
        return rc;
    return model_load_gguf(m, &g, err);
}

void model_free(sm_model *m)
{
    if (!m)
        return;
    if (m->layers) {
        for (int32_t i = 0; i < m->hp.n_layer; i++) {
            sm_layer *L = &m->layers[i];
            free(L->attn_norm);
            free(L->ffn_norm);
            free(L->bq);
            free(L->bk);
            free(L->bv);
            free(L->bo);
        }
        free(m->layers);
    }
    if (m->tnames) {
        for (uint64_t i = 0; i < m->gguf.n_tensors; i++)
            free(m->tnames[i]);
        free(m->tnames);
    }
    free(m->output_norm);
    free(m->rope_freqs);
    gguf_close(&m->gguf);
    memset(m, 0, sizeof *m);
}
