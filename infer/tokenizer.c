/* tokenizer.c — vocabulary loading, special-token partition, encode /
 * decode entry points (llama.cpp's llama_vocab::impl::load, tokenize,
 * token_to_piece and detokenize, c392e5094). */
#include "infer/tok_internal.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

/* llama.cpp's LLAMA_TOKEN_TYPE_* values in tokenizer.ggml.token_type */
enum {
    TT_UNDEFINED = 0,
    TT_NORMAL = 1,
    TT_UNKNOWN = 2,
    TT_CONTROL = 3,
    TT_USER_DEFINED = 4,
    TT_UNUSED = 5,
    TT_BYTE = 6,
};

#define ATTR_SPECIAL (TOK_ATTR_UNKNOWN | TOK_ATTR_CONTROL)

/* ------------------------------------------------------------ hashing */

static uint64_t hash_bytes(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < len; i++) {
        h ^= (uint8_t)s[i];
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

static uint64_t hash_u64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

int32_t tok_lookup(const tok_vocab *v, const char *s, size_t len)
{
    if (len > v->max_token_len || !v->tok_ht)
        return TOK_NULL;
    uint64_t i = hash_bytes(s, len) & v->tok_ht_mask;
    for (;;) {
        uint32_t e = v->tok_ht[i];
        if (e == 0)
            return TOK_NULL;
        uint32_t id = e - 1;
        if (v->text_len[id] == len && memcmp(v->arena + v->text_off[id], s, len) == 0)
            return (int32_t)id;
        i = (i + 1) & v->tok_ht_mask;
    }
}

int32_t tok_merge_rank(const tok_vocab *v, int32_t left, int32_t right)
{
    if (!v->merge_keys)
        return -1;
    uint64_t key = (((uint64_t)(uint32_t)left << 32) | (uint32_t)right) + 1;
    uint64_t i = hash_u64(key) & v->merge_ht_mask;
    for (;;) {
        uint64_t e = v->merge_keys[i];
        if (e == 0)
            return -1;
        if (e == key)
            return v->merge_rank[i];
        i = (i + 1) & v->merge_ht_mask;
    }
}

int tok_ids_push(tok_ids *o, int32_t id)
{
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 64;
        int32_t *nv = realloc(o->v, cap * sizeof *nv);
        if (!nv)
            return SM_ENOMEM;
        o->v = nv;
        o->cap = cap;
    }
    o->v[o->n++] = id;
    return 0;
}

static uint64_t table_size(uint64_t n)
{
    uint64_t s = 16;
    while (s < n * 2)
        s <<= 1;
    return s;
}

/* ------------------------------------------------------------ loading */

static const struct {
    const char *name;
    int pre;
    int clean_spaces;  /* -1 keep BPE default (true), else value */
    int ignore_merges;
    int add_bos;
} pre_table[] = {
    {"default", TOK_PRE_DEFAULT, -1, 0, 0},
    {"llama3", TOK_PRE_LLAMA3, -1, 1, 1},
    {"llama-v3", TOK_PRE_LLAMA3, -1, 1, 1},
    {"llama-bpe", TOK_PRE_LLAMA3, -1, 1, 1},
    {"falcon3", TOK_PRE_LLAMA3, -1, 1, 1},
    {"deepseek-llm", TOK_PRE_DEEPSEEK_LLM, 0, 0, 0},
    {"deepseek-coder", TOK_PRE_DEEPSEEK_CODER, 0, 0, 0},
    {"deepseek-v3", TOK_PRE_DEEPSEEK3_LLM, 0, 0, 0},
    {"falcon", TOK_PRE_FALCON, -1, 0, 0},
    {"mpt", TOK_PRE_GPT2, -1, 0, 0},
    {"starcoder", TOK_PRE_STARCODER, -1, 0, 0},
    {"gpt-2", TOK_PRE_GPT2, -1, 0, 0},
    {"phi-2", TOK_PRE_GPT2, -1, 0, 0},
    {"jina-es", TOK_PRE_GPT2, -1, 0, 0},
    {"jina-de", TOK_PRE_GPT2, -1, 0, 0},
    {"gigachat", TOK_PRE_GPT2, -1, 0, 0},
    {"jina-v1-en", TOK_PRE_GPT2, -1, 0, 0},
    {"jina-v2-es", TOK_PRE_GPT2, -1, 0, 0},
    {"jina-v2-de", TOK_PRE_GPT2, -1, 0, 0},
    {"jina-v2-code", TOK_PRE_GPT2, -1, 0, 0},
    {"roberta-bpe", TOK_PRE_GPT2, -1, 0, 0},
    {"refact", TOK_PRE_STARCODER, -1, 0, 0},
    {"command-r", TOK_PRE_STARCODER, 0, 0, 0},
    {"qwen2", TOK_PRE_QWEN2, 0, 0, 0},
    {"deepseek-r1-qwen", TOK_PRE_QWEN2, 0, 0, 0},
    {"stablelm2", TOK_PRE_QWEN2, -1, 0, 0},
    {"olmo", TOK_PRE_GPT2, -1, 0, 0},
    {"dbrx", TOK_PRE_LLAMA3, -1, 0, 0},
    {"smaug-bpe", TOK_PRE_LLAMA3, -1, 0, 0},
    {"poro-chat", TOK_PRE_PORO, 0, 0, 0},
    {"chatglm-bpe", TOK_PRE_CHATGLM4, -1, 0, 0},
    {"viking", TOK_PRE_VIKING, 0, 0, 0},
    {"jais", TOK_PRE_GPT2, -1, 0, 0},
    {"tekken", TOK_PRE_TEKKEN, 0, 1, 1},
    {"smollm", TOK_PRE_STARCODER, 0, 0, 0},
    {"codeshell", TOK_PRE_STARCODER, -1, 0, 0},
    {"bloom", TOK_PRE_PORO, -1, 0, 0},
    {"gpt3-finnish", TOK_PRE_PORO, -1, 0, 0},
    {"exaone", TOK_PRE_STARCODER, -1, 0, 0},
    {"chameleon", TOK_PRE_CHAMELEON, 0, 0, 1},
    {"minerva-7b", TOK_PRE_STARCODER, -1, 0, 0},
    {"megrez", TOK_PRE_QWEN2, -1, 0, 0},
};

/* Reads an optional bool key into *dst; SM_ETYPE when it is not a bool. */
static int opt_bool(const gguf_file *g, const char *key, bool *dst, sm_err *err)
{
    bool b;
    int rc = gguf_get_bool(g, key, &b, NULL);
    if (rc == SM_EMISSING)
        return 0;
    if (rc < 0)
        return sm_err_set(err, SM_ETYPE, "%s: expected a bool", key);
    *dst = b;
    return 0;
}

/* Optional token id key: ignored (as llama.cpp does) when >= n_tokens. */
static int opt_id(const gguf_file *g, const char *key, uint32_t n_tokens, int32_t *dst, sm_err *err)
{
    uint32_t u;
    int rc = gguf_get_u32(g, key, &u, NULL);
    if (rc == SM_EMISSING)
        return 0;
    if (rc < 0)
        return sm_err_set(err, SM_ETYPE, "%s: expected an unsigned 32-bit token id", key);
    if (u < n_tokens)
        *dst = (int32_t)u;
    return 0;
}

/* First (lowest) id whose text is one of names[], TOK_NULL if none. */
static int32_t find_any(const tok_vocab *v, const char *const *names)
{
    int32_t best = TOK_NULL;
    for (size_t k = 0; names[k]; k++) {
        int32_t id = tok_lookup(v, names[k], strlen(names[k]));
        if (id != TOK_NULL && (best == TOK_NULL || id < best))
            best = id;
    }
    return best;
}

/* llama.cpp picks these by text when the GGUF has no id for them, and makes
 * the picked token a control token. */
static void autodetect(tok_vocab *v, int32_t *slot, const char *const *names)
{
    if (*slot != TOK_NULL)
        return;
    *slot = find_any(v, names);
    if (*slot != TOK_NULL && !(v->attr[*slot] & TOK_ATTR_CONTROL))
        v->attr[*slot] = TOK_ATTR_CONTROL;
}

static int eog_add(tok_vocab *v, int32_t id)
{
    if (id == TOK_NULL)
        return 0;
    for (uint32_t i = 0; i < v->n_eog; i++)
        if (v->eog[i] == id)
            return 0;
    int32_t *ne = realloc(v->eog, (v->n_eog + 1) * sizeof *ne);
    if (!ne)
        return SM_ENOMEM;
    v->eog = ne;
    v->eog[v->n_eog++] = id;
    return 0;
}

static int special_cmp_len_desc(const void *a, const void *b, void *ctx)
{
    const tok_vocab *v = ctx;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    if (v->text_len[x] != v->text_len[y])
        return v->text_len[x] > v->text_len[y] ? -1 : 1;
    return x < y ? -1 : (x > y); /* ties: lower id first (llama.cpp's sort is unstable) */
}

static int load_tokens(tok_vocab *v, const gguf_file *g, sm_err *err)
{
    const gguf_kv *kv = gguf_get(g, "tokenizer.ggml.tokens");
    if (!kv)
        return sm_err_set(err, SM_EMISSING, "tokenizer.ggml.tokens: missing (no vocabulary in this file)");
    if (kv->type != GGUF_VT_ARRAY || kv->arr_type != GGUF_VT_STRING || (kv->n > 0 && !kv->strs))
        return sm_err_set(err, SM_ETYPE, "tokenizer.ggml.tokens: expected an array of strings, got %s",
                          gguf_vtype_name(kv->type == GGUF_VT_ARRAY ? kv->arr_type : kv->type));
    if (kv->n == 0 || kv->n > INT32_MAX)
        return sm_err_set(err, SM_ERANGE, "tokenizer.ggml.tokens: %llu tokens, expected 1..%d",
                          (unsigned long long)kv->n, INT32_MAX);
    uint32_t n = (uint32_t)kv->n;
    v->n_tokens = n;

    const gguf_kv *sc = gguf_get(g, "tokenizer.ggml.scores");
    if (sc) {
        if (sc->type != GGUF_VT_ARRAY || sc->arr_type != GGUF_VT_FLOAT32)
            return sm_err_set(err, SM_ETYPE, "tokenizer.ggml.scores: expected an array of float32");
        if (sc->n != n)
            return sm_err_set(err, SM_EMISMATCH, "tokenizer.ggml.scores: %llu scores for %u tokens",
                              (unsigned long long)sc->n, n);
    }
    const gguf_kv *tt = gguf_get(g, "tokenizer.ggml.token_type");
    if (tt) {
        if (tt->type != GGUF_VT_ARRAY || (tt->arr_type != GGUF_VT_INT32 && tt->arr_type != GGUF_VT_UINT32))
            return sm_err_set(err, SM_ETYPE, "tokenizer.ggml.token_type: expected an array of int32");
        if (tt->n != n)
            return sm_err_set(err, SM_EMISMATCH, "tokenizer.ggml.token_type: %llu types for %u tokens",
                              (unsigned long long)tt->n, n);
    }

    /* texts; llama.cpp renames an empty token to "[EMPTY_<id>]" */
    uint64_t total = 0;
    for (uint32_t i = 0; i < n; i++)
        total += kv->strs[i].len ? kv->strs[i].len : 24;
    v->arena = malloc(total ? total : 1);
    v->text_off = malloc((size_t)n * sizeof *v->text_off);
    v->text_len = malloc((size_t)n * sizeof *v->text_len);
    v->scores = malloc((size_t)n * sizeof *v->scores);
    v->attr = malloc((size_t)n * sizeof *v->attr);
    if (!v->arena || !v->text_off || !v->text_len || !v->scores || !v->attr)
        return sm_err_set(err, SM_ENOMEM, "tokenizer: out of memory for %u tokens", n);
    uint64_t off = 0;
    for (uint32_t i = 0; i < n; i++) {
        sm_str s = kv->strs[i];
        if (s.len > UINT32_MAX)
            return sm_err_set(err, SM_ERANGE, "tokenizer.ggml.tokens[%u]: text of %llu bytes", i,
                              (unsigned long long)s.len);
        v->text_off[i] = off;
        if (s.len == 0) {
            int k = snprintf(v->arena + off, 24, "[EMPTY_%u]", i);
            v->text_len[i] = (uint32_t)k;
        } else {
            memcpy(v->arena + off, s.ptr, s.len);
            v->text_len[i] = (uint32_t)s.len;
        }
        off += v->text_len[i];
        if (v->text_len[i] > v->max_token_len)
            v->max_token_len = v->text_len[i];

        float f = 0.0f;
        if (sc)
            memcpy(&f, sc->raw + (size_t)i * 4, 4);
        v->scores[i] = f;

        uint32_t attr = TOK_ATTR_NORMAL;
        if (tt) {
            int32_t t;
            memcpy(&t, tt->raw + (size_t)i * 4, 4);
            switch (t) {
            case TT_UNDEFINED: attr = TOK_ATTR_UNDEFINED; break;
            case TT_NORMAL: attr = TOK_ATTR_NORMAL; break;
            case TT_UNKNOWN: attr = TOK_ATTR_UNKNOWN; break;
            case TT_CONTROL: attr = TOK_ATTR_CONTROL; break;
            case TT_USER_DEFINED: attr = TOK_ATTR_USER_DEFINED; break;
            case TT_UNUSED: attr = TOK_ATTR_UNUSED; break;
            case TT_BYTE: attr = TOK_ATTR_BYTE; break;
            default:
                return sm_err_set(err, SM_EFORMAT, "tokenizer.ggml.token_type[%u] = %d, expected 0..6", i, t);
            }
        }
        v->attr[i] = attr;
    }

    /* text -> id */
    v->tok_ht_mask = table_size(n) - 1;
    v->tok_ht = calloc(v->tok_ht_mask + 1, sizeof *v->tok_ht);
    if (!v->tok_ht)
        return sm_err_set(err, SM_ENOMEM, "tokenizer: out of memory for the token table");
    for (uint32_t i = 0; i < n; i++) {
        const char *s = v->arena + v->text_off[i];
        uint64_t h = hash_bytes(s, v->text_len[i]) & v->tok_ht_mask;
        for (;;) {
            uint32_t e = v->tok_ht[h];
            if (e == 0) {
                v->tok_ht[h] = i + 1;
                break;
            }
            if (v->text_len[e - 1] == v->text_len[i] && memcmp(v->arena + v->text_off[e - 1], s, v->text_len[i]) == 0)
                return sm_err_set(err, SM_EFORMAT, "tokenizer.ggml.tokens[%u] '%.*s' duplicates token %u", i,
                                  (int)(v->text_len[i] > 64 ? 64 : v->text_len[i]), s, e - 1);
            h = (h + 1) & v->tok_ht_mask;
        }
    }
    return 0;
}

static int load_merges(tok_vocab *v, const gguf_file *g, sm_err *err)
{
    const gguf_kv *kv = gguf_get(g, "tokenizer.ggml.merges");
    if (!kv)
        return sm_err_set(err, SM_EMISSING, "tokenizer.ggml.merges: missing (required for a gpt2 tokenizer)");
    if (kv->type != GGUF_VT_ARRAY || kv->arr_type != GGUF_VT_STRING || (kv->n > 0 && !kv->strs))
        return sm_err_set(err, SM_ETYPE, "tokenizer.ggml.merges: expected an array of strings");
    if (kv->n > INT32_MAX)
        return sm_err_set(err, SM_ERANGE, "tokenizer.ggml.merges: %llu merges", (unsigned long long)kv->n);
    uint32_t n = (uint32_t)kv->n;
    v->n_merges = n;
    v->merge_ht_mask = table_size(n) - 1;
    v->merge_keys = calloc(v->merge_ht_mask + 1, sizeof *v->merge_keys);
    v->merge_rank = malloc((v->merge_ht_mask + 1) * sizeof *v->merge_rank);
    if (!v->merge_keys || !v->merge_rank)
        return sm_err_set(err, SM_ENOMEM, "tokenizer: out of memory for %u merges", n);
    for (uint32_t i = 0; i < n; i++) {
        sm_str m = kv->strs[i];
        /* "left right": the first space after the first byte separates them */
        uint64_t sp = 1;
        while (sp < m.len && m.ptr[sp] != ' ')
            sp++;
        if (m.len < 3 || sp >= m.len - 1)
            return sm_err_set(err, SM_EFORMAT, "tokenizer.ggml.merges[%u] '%.*s': expected \"left right\"", i,
                              (int)(m.len > 64 ? 64 : m.len), m.ptr);
        int32_t l = tok_lookup(v, m.ptr, (size_t)sp);
        int32_t r = tok_lookup(v, m.ptr + sp + 1, (size_t)(m.len - sp - 1));
        if (l == TOK_NULL || r == TOK_NULL)
            return sm_err_set(err, SM_EFORMAT, "tokenizer.ggml.merges[%u] '%.*s': '%.*s' is not a token", i,
                              (int)(m.len > 64 ? 64 : m.len), m.ptr, (int)(l == TOK_NULL ? sp : m.len - sp - 1),
                              l == TOK_NULL ? m.ptr : m.ptr + sp + 1);
        uint64_t key = (((uint64_t)(uint32_t)l << 32) | (uint32_t)r) + 1;
        uint64_t h = hash_u64(key) & v->merge_ht_mask;
        for (;;) {
            if (v->merge_keys[h] == 0) {
                v->merge_keys[h] = key;
                v->merge_rank[h] = (int32_t)i;
                break;
            }
            if (v->merge_keys[h] == key)
                break; /* duplicate pair: the first rank wins (std::unordered_map::emplace) */
            h = (h + 1) & v->merge_ht_mask;
        }
    }
    return 0;
}

static int contains(sm_str hay, const char *needle)
{
    size_t n = strlen(needle);
    if (!hay.ptr || hay.len < n)
        return 0;
    for (uint64_t i = 0; i + n <= hay.len; i++) {
        size_t k = 0;
        while (k < n && tolower((unsigned char)hay.ptr[i + k]) == needle[k])
            k++;
        if (k == n)
            return 1;
    }
    return 0;
}

int tok_load(tok_vocab **out, const gguf_file *g, sm_err *err)
{
    int rc;
    *out = NULL;
    tok_vocab *v = calloc(1, sizeof *v);
    if (!v)
        return sm_err_set(err, SM_ENOMEM, "tokenizer: out of memory");
    v->bos = v->eos = v->eot = v->eom = v->unk = v->sep = v->pad = v->nl = TOK_NULL;
    for (int i = 0; i < 256; i++)
        v->byte_tok[i] = TOK_NULL;

    sm_str model = {0}, pre = {0};
    rc = gguf_get_str(g, "tokenizer.ggml.model", &model, NULL);
    if (rc == SM_EMISSING) {
        rc = sm_err_set(err, SM_EMISSING, "tokenizer.ggml.model: missing (no vocabulary in this file)");
        goto fail;
    }
    if (rc < 0) {
        rc = sm_err_set(err, SM_ETYPE, "tokenizer.ggml.model: expected a string");
        goto fail;
    }
    rc = gguf_get_str(g, "tokenizer.ggml.pre", &pre, NULL);
    if (rc < 0 && rc != SM_EMISSING) {
        rc = sm_err_set(err, SM_ETYPE, "tokenizer.ggml.pre: expected a string");
        goto fail;
    }
    if (rc == SM_EMISSING)
        pre.ptr = NULL, pre.len = 0;

    if (sm_str_eq(model, "llama")) {
        v->kind = TOK_KIND_SPM;
        v->bos = 1, v->eos = 2, v->unk = 0;
        v->pre = TOK_PRE_DEFAULT;
        snprintf(v->pre_name, sizeof v->pre_name, "default");
        v->add_space_prefix = true;
        v->add_bos = true;
    } else if (sm_str_eq(model, "gpt2")) {
        v->kind = TOK_KIND_BPE;
        v->bos = 11, v->eos = 11;
        v->clean_spaces = true;
        size_t k = 0, nk = sizeof pre_table / sizeof pre_table[0];
        if (pre.len == 0) {
            k = 0; /* llama.cpp warns and uses 'default' */
        } else {
            for (k = 0; k < nk; k++)
                if (sm_str_eq(pre, pre_table[k].name))
                    break;
            if (k == nk) {
                rc = sm_err_set(err, SM_EUNSUPP, "tokenizer.ggml.pre: unknown pre-tokenizer '%.*s'",
                                (int)(pre.len > 64 ? 64 : pre.len), pre.ptr);
                goto fail;
            }
        }
        v->pre = pre_table[k].pre;
        snprintf(v->pre_name, sizeof v->pre_name, "%s", pre_table[k].name);
        if (pre_table[k].clean_spaces >= 0)
            v->clean_spaces = pre_table[k].clean_spaces;
        v->ignore_merges = pre_table[k].ignore_merges;
        v->add_bos = pre_table[k].add_bos;
        if (sm_str_eq(pre, "chatglm-bpe"))
            v->bos = TOK_NULL;
    } else if (sm_str_eq(model, "bert")) {
        v->kind = TOK_KIND_WPM;
        v->bos = 101, v->unk = 100, v->sep = 102, v->pad = 0;
        v->pre = TOK_PRE_DEFAULT;
        snprintf(v->pre_name, sizeof v->pre_name, "default");
        v->clean_spaces = true;
        v->add_bos = true;
    } else {
        rc = sm_err_set(err, SM_EUNSUPP, "tokenizer.ggml.model '%.*s': unsupported (smelt has llama, gpt2 and bert)",
                        (int)(model.len > 64 ? 64 : model.len), model.ptr);
        goto fail;
    }
    if ((rc = opt_bool(g, "tokenizer.ggml.add_space_prefix", &v->add_space_prefix, err)) < 0)
        goto fail;

    if ((rc = load_tokens(v, g, err)) < 0)
        goto fail;
    if (v->kind == TOK_KIND_BPE) {
        if ((rc = load_merges(v, g, err)) < 0)
            goto fail;
        if ((rc = tok_bpe_compile(v, err)) < 0)
            goto fail;
    } else if (v->kind == TOK_KIND_WPM) {
        if ((rc = tok_wpm_compile(v, err)) < 0)
            goto fail;
    } else {
        static const char hex[] = "0123456789ABCDEF";
        for (int b = 0; b < 256; b++) {
            char buf[6] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>'};
            int32_t id = tok_lookup(v, buf, 6);
            if (id == TOK_NULL) {
                char c = (char)b;
                id = tok_lookup(v, &c, 1);
            }
            v->byte_tok[b] = id;
        }
    }

    /* special ids from the file (out-of-range ones are ignored like llama.cpp) */
    uint32_t n = v->n_tokens;
    int32_t fim_pre = TOK_NULL, fim_suf = TOK_NULL, fim_mid = TOK_NULL, fim_pad = TOK_NULL, fim_rep = TOK_NULL,
            fim_sep = TOK_NULL;
    if ((rc = opt_id(g, "tokenizer.ggml.bos_token_id", n, &v->bos, err)) < 0 ||
        (rc = opt_id(g, "tokenizer.ggml.eos_token_id", n, &v->eos, err)) < 0 ||
        (rc = opt_id(g, "tokenizer.ggml.eot_token_id", n, &v->eot, err)) < 0 ||
        (rc = opt_id(g, "tokenizer.ggml.eom_token_id", n, &v->eom, err)) < 0 ||
        (rc = opt_id(g, "tokenizer.ggml.unknown_token_id", n, &v->unk, err)) < 0 ||
        (rc = opt_id(g, "tokenizer.ggml.seperator_token_id", n, &v->sep, err)) < 0 ||
        (rc = opt_id(g, "tokenizer.ggml.padding_token_id", n, &v->pad, err)) < 0 ||
        (rc = opt_id(g, "tokenizer.ggml.fim_pre_token_id", n, &fim_pre, err)) < 0 ||
        (rc = opt_id(g, "tokenizer.ggml.fim_suf_token_id", n, &fim_suf, err)) < 0 ||
        (rc = opt_id(g, "tokenizer.ggml.fim_mid_token_id", n, &fim_mid, err)) < 0 ||
        (rc = opt_id(g, "tokenizer.ggml.fim_pad_token_id", n, &fim_pad, err)) < 0 ||
        (rc = opt_id(g, "tokenizer.ggml.fim_rep_token_id", n, &fim_rep, err)) < 0 ||
        (rc = opt_id(g, "tokenizer.ggml.fim_sep_token_id", n, &fim_sep, err)) < 0 ||
        (rc = opt_id(g, "tokenizer.ggml.prefix_token_id", n, &fim_pre, err)) < 0 ||
        (rc = opt_id(g, "tokenizer.ggml.suffix_token_id", n, &fim_suf, err)) < 0 ||
        (rc = opt_id(g, "tokenizer.ggml.middle_token_id", n, &fim_mid, err)) < 0)
        goto fail;
    /* the defaults (bos 1, eos 2, unk 0 / 11) may be out of range of a tiny vocabulary */
    if (v->bos >= (int32_t)n)
        v->bos = TOK_NULL;
    if (v->eos >= (int32_t)n)
        v->eos = TOK_NULL;
    if (v->unk >= (int32_t)n)
        v->unk = TOK_NULL;
    if (v->sep >= (int32_t)n)
        v->sep = TOK_NULL;
    if (v->pad >= (int32_t)n)
        v->pad = TOK_NULL;
    if ((rc = opt_bool(g, "tokenizer.ggml.add_bos_token", &v->add_bos, err)) < 0 ||
        (rc = opt_bool(g, "tokenizer.ggml.add_eos_token", &v->add_eos, err)) < 0)
        goto fail;

    static const char *const eot_names[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>",
                                            "<|endoftext|>", "<EOT>", "<｜end▁of▁sentence｜>", NULL};
    static const char *const eom_names[] = {"<|eom_id|>", NULL};
    static const char *const pre_names[] = {"<|fim_prefix|>", "<fim-prefix>", "<｜fim▁begin｜>", "<PRE>", NULL};
    static const char *const suf_names[] = {"<|fim_suffix|>", "<fim-suffix>", "<｜fim▁hole｜>", "<SUF>", NULL};
    static const char *const mid_names[] = {"<|fim_middle|>", "<fim-middle>", "<｜fim▁end｜>", "<MID>", NULL};
    static const char *const pad_names[] = {"<|fim_pad|>", "<fim-pad>", "<PAD>", NULL};
    static const char *const rep_names[] = {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", NULL};
    static const char *const sep_names[] = {"<|file_sep|>", NULL};
    static const char *const eog_names[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>",
                                            "<|endoftext|>", "<|eom_id|>", "<EOT>", NULL};
    autodetect(v, &v->eot, eot_names);
    autodetect(v, &v->eom, eom_names);
    autodetect(v, &fim_pre, pre_names);
    autodetect(v, &fim_suf, suf_names);
    autodetect(v, &fim_mid, mid_names);
    autodetect(v, &fim_pad, pad_names);
    autodetect(v, &fim_rep, rep_names);
    autodetect(v, &fim_sep, sep_names);
    if ((rc = eog_add(v, fim_pad)) < 0 || (rc = eog_add(v, fim_rep)) < 0 || (rc = eog_add(v, fim_sep)) < 0)
        goto fail;
    for (size_t k = 0; eog_names[k]; k++) {
        int32_t id = tok_lookup(v, eog_names[k], strlen(eog_names[k]));
        if (id == TOK_NULL)
            continue;
        v->attr[id] = (v->attr[id] & TOK_ATTR_CONTROL) ? v->attr[id] : TOK_ATTR_CONTROL;
        if ((rc = eog_add(v, id)) < 0)
            goto fail;
    }
    if ((rc = eog_add(v, v->eos)) < 0 || (rc = eog_add(v, v->eot)) < 0 || (rc = eog_add(v, v->eom)) < 0)
        goto fail;

    /* tokens cut out of the text before the model tokenizer runs */
    for (uint32_t i = 0; i < n; i++)
        if (v->attr[i] & (TOK_ATTR_CONTROL | TOK_ATTR_USER_DEFINED | TOK_ATTR_UNKNOWN))
            v->n_special++;
    if (v->n_special) {
        v->special = malloc(v->n_special * sizeof *v->special);
        if (!v->special) {
            rc = SM_ENOMEM;
            goto fail;
        }
        uint32_t k = 0;
        for (uint32_t i = 0; i < n; i++)
            if (v->attr[i] & (TOK_ATTR_CONTROL | TOK_ATTR_USER_DEFINED | TOK_ATTR_UNKNOWN))
                v->special[k++] = (int32_t)i;
        qsort_r(v->special, v->n_special, sizeof *v->special, special_cmp_len_desc, v);
    }

    /* per-model strip attributes llama.cpp sets by name */
    sm_str name = {0};
    if (gguf_get_str(g, "general.name", &name, NULL) < 0)
        name.ptr = NULL, name.len = 0;
    if (contains(pre, "jina-v2-de") || contains(pre, "jina-v2-es") || contains(pre, "jina-v2-code")) {
        int32_t id = tok_lookup(v, "<mask>", 6);
        if (id != TOK_NULL)
            v->attr[id] |= TOK_ATTR_LSTRIP;
    } else if (contains(name, "phi-3") || contains(name, "phi3")) {
        for (uint32_t i = 0; i < v->n_special; i++)
            v->attr[v->special[i]] |= TOK_ATTR_RSTRIP;
        static const char *const off[] = {"<unk>", "<s>", "<|endoftext|>"};
        int32_t id = tok_lookup(v, "</s>", 4);
        if (id != TOK_NULL)
            v->attr[id] |= TOK_ATTR_RSTRIP;
        for (size_t k = 0; k < 3; k++) {
            id = tok_lookup(v, off[k], strlen(off[k]));
            if (id != TOK_NULL)
                v->attr[id] &= ~(uint32_t)TOK_ATTR_RSTRIP;
        }
    }

    /* newline token */
    if (v->kind == TOK_KIND_SPM) {
        v->nl = v->byte_tok['\n'] != TOK_NULL ? v->byte_tok['\n'] : v->pad;
    } else if (v->kind == TOK_KIND_WPM) {
        v->nl = v->pad;
    } else {
        int32_t *ids = NULL;
        size_t nn = 0;
        if ((rc = tok_encode(v, "\n", 1, false, false, &ids, &nn, err)) < 0)
            goto fail;
        v->nl = nn ? ids[0] : v->pad;
        free(ids);
    }
    *out = v;
    return 0;

fail:
    if (rc == SM_ENOMEM)
        sm_err_set(err, SM_ENOMEM, "tokenizer: out of memory while loading %u tokens", v->n_tokens);
    tok_free(v);
    return rc;
}

void tok_free(tok_vocab *v)
{
    if (!v)
        return;
    for (uint32_t i = 0; i < v->n_re; i++)
        pcre2_code_free(v->re[i]);
    pcre2_code_free(v->cat_re);
    free(v->arena);
    free(v->text_off);
    free(v->text_len);
    free(v->scores);
    free(v->attr);
    free(v->tok_ht);
    free(v->merge_keys);
    free(v->merge_rank);
    free(v->eog);
    free(v->special);
    free(v);
}

/* ------------------------------------------------------------ encode */

typedef struct frag {
    int32_t tok; /* token id, or TOK_NULL for raw text */
    size_t off, len;
} frag;

typedef struct frags {
    frag *v; /* [cap] */
    size_t n, cap;
} frags;

static int frags_push(frags *f, int32_t tok, size_t off, size_t len)
{
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 16;
        frag *nv = realloc(f->v, cap * sizeof *nv);
        if (!nv)
            return SM_ENOMEM;
        f->v = nv;
        f->cap = cap;
    }
    f->v[f->n].tok = tok;
    f->v[f->n].off = off;
    f->v[f->n].len = len;
    f->n++;
    return 0;
}

/* isspace() of the C locale, which llama.cpp's strip uses */
static int c_space(char c)
{
    return c == ' ' || (c >= '\t' && c <= '\r');
}

/* Cuts every special token out of the raw-text fragments, longest token
 * first (llama.cpp's tokenizer_st_partition), honouring LSTRIP / RSTRIP. */
static int partition(const tok_vocab *v, const char *text, size_t len, bool parse_special, frags *cur)
{
    int rc = 0;
    frags nxt = {0};
    if (len > 0 && (rc = frags_push(cur, TOK_NULL, 0, len)) < 0)
        return rc;
    for (uint32_t k = 0; k < v->n_special && len > 0; k++) {
        int32_t id = v->special[k];
        uint32_t attr = v->attr[id];
        if (!parse_special && (attr & ATTR_SPECIAL))
            continue;
        const char *t = v->arena + v->text_off[id];
        size_t tl = v->text_len[id];
        nxt.n = 0;
        for (size_t i = 0; i < cur->n; i++) {
            frag f = cur->v[i];
            if (f.tok != TOK_NULL) {
                if ((rc = frags_push(&nxt, f.tok, 0, 0)) < 0)
                    goto done;
                continue;
            }
            size_t base = f.off, blen = f.len;
            while (blen >= tl) {
                const char *p = memmem(text + base, blen, t, tl);
                if (!p)
                    break;
                size_t match = (size_t)(p - text);
                size_t left = match - base;
                if (attr & TOK_ATTR_LSTRIP)
                    while (left > 0 && c_space(text[base + left - 1]))
                        left--;
                if (left > 0 && (rc = frags_push(&nxt, TOK_NULL, base, left)) < 0)
                    goto done;
                if ((rc = frags_push(&nxt, id, 0, 0)) < 0)
                    goto done;
                size_t roff = match + tl, rlen = base + blen - roff;
                if (attr & TOK_ATTR_RSTRIP)
                    while (rlen > 0 && c_space(text[roff]))
                        roff++, rlen--;
                base = roff;
                blen = rlen;
            }
            if (blen > 0 && (rc = frags_push(&nxt, TOK_NULL, base, blen)) < 0)
                goto done;
        }
        frags t2 = *cur;
        *cur = nxt;
        nxt = t2;
    }
done:
    free(nxt.v);
    return rc;
}

int tok_encode(const tok_vocab *v, const char *text, size_t len, bool add_special, bool parse_special,
               int32_t **ids, size_t *n, sm_err *err)
{
    int rc = 0;
    tok_ids out = {0};
    frags fr = {0};
    char *buf = NULL;
    bool named = false; /* err already says what failed */
    *ids = NULL;
    *n = 0;
    if (len > INT32_MAX)
        return sm_err_set(err, SM_ERANGE, "tokenize: text of %zu bytes, at most %d supported", len, INT32_MAX);
    if (len > 0 && !text)
        return sm_err_set(err, SM_EINVAL, "tokenize: NULL text");
    if ((rc = partition(v, text, len, parse_special, &fr)) < 0)
        goto done;

    /* WPM adds [CLS] ... [SEP] whenever add_special is set (llama.cpp) */
    bool want_bos = add_special && (v->add_bos || v->kind == TOK_KIND_WPM);
    if (want_bos) {
        if (v->bos == TOK_NULL) {
            rc = sm_err_set(err, SM_EMISSING, "tokenize: the vocabulary asks for BOS but has no BOS token");
            named = true;
            goto done;
        }
        if ((rc = tok_ids_push(&out, v->bos)) < 0)
            goto done;
    }

    bool prev_special = true; /* SPM: a space is prefixed to text after a special token */
    for (size_t i = 0; i < fr.n; i++) {
        const frag *f = &fr.v[i];
        if (f->tok != TOK_NULL) {
            if ((rc = tok_ids_push(&out, f->tok)) < 0)
                goto done;
            prev_special = true;
            continue;
        }
        if (v->kind == TOK_KIND_SPM) {
            /* " " -> U+2581 (3 bytes), plus the optional prefix; the SPM
             * symbols hold 32-bit offsets */
            if (f->len > UINT32_MAX / 3 - 1) {
                rc = sm_err_set(err, SM_ERANGE, "tokenize: a %zu-byte text fragment is too long for SPM", f->len);
                named = true;
                goto done;
            }
            size_t cap = (f->len + 1) * 3;
            char *nb = realloc(buf, cap);
            if (!nb) {
                rc = SM_ENOMEM;
                goto done;
            }
            buf = nb;
            size_t bl = 0;
            if (v->add_space_prefix && prev_special) {
                memcpy(buf, "\xe2\x96\x81", 3);
                bl = 3;
            }
            for (size_t j = 0; j < f->len; j++) {
                char c = text[f->off + j];
                if (c == ' ') {
                    memcpy(buf + bl, "\xe2\x96\x81", 3);
                    bl += 3;
                } else {
                    buf[bl++] = c;
                }
            }
            if ((rc = tok_spm_encode(v, buf, bl, &out)) < 0)
                goto done;
        } else if (v->kind == TOK_KIND_WPM) {
            if ((rc = tok_wpm_encode(v, text + f->off, f->len, &out)) < 0)
                goto done;
        } else {
            if ((rc = tok_bpe_encode(v, text + f->off, f->len, &out)) < 0)
                goto done;
        }
        prev_special = false;
    }

    if (add_special && v->kind == TOK_KIND_WPM) {
        if (v->sep == TOK_NULL) {
            rc = sm_err_set(err, SM_EMISSING, "tokenize: a WordPiece vocabulary needs a separator token");
            named = true;
            goto done;
        }
        if ((rc = tok_ids_push(&out, v->sep)) < 0)
            goto done;
    } else if (add_special && v->add_eos) {
        if (v->eos == TOK_NULL) {
            rc = sm_err_set(err, SM_EMISSING, "tokenize: the vocabulary asks for EOS but has no EOS token");
            named = true;
            goto done;
        }
        if ((rc = tok_ids_push(&out, v->eos)) < 0)
            goto done;
    }
    *ids = out.v;
    *n = out.n;
    out.v = NULL;

done:
    /* the helpers return bare codes; name the failure here */
    if (rc == SM_ERANGE && !named)
        sm_err_set(err, rc, "tokenize: pre-tokenizer regex hit a PCRE2 resource limit on this %zu-byte text", len);
    else if (rc == SM_ENOMEM)
        sm_err_set(err, rc, "tokenize: out of memory on a %zu-byte text", len);
    free(out.v);
    free(fr.v);
    free(buf);
    return rc;
}

/* ------------------------------------------------------------ decode */

/* Writes the full piece of id (special = true semantics) into buf when it
 * fits in cap; returns its length in any case. */
static size_t piece_full(const tok_vocab *v, int32_t id, char *buf, size_t cap)
{
    uint32_t attr = v->attr[id];
    const char *t = v->arena + v->text_off[id];
    size_t tl = v->text_len[id], n = 0;
#define EMIT(c)                                                                                                        \
    do {                                                                                                               \
        if (n < cap)                                                                                                   \
            buf[n] = (c);                                                                                              \
        n++;                                                                                                           \
    } while (0)
    if (attr & (ATTR_SPECIAL | TOK_ATTR_USER_DEFINED)) {
        for (size_t i = 0; i < tl; i++)
            EMIT(t[i]);
        return n;
    }
    if (v->kind != TOK_KIND_BPE) {
        /* SPM and WPM */
        if (attr & TOK_ATTR_NORMAL) {
            for (size_t i = 0; i < tl; i++) {
                if (i + 2 < tl && memcmp(t + i, "\xe2\x96\x81", 3) == 0) {
                    EMIT(' ');
                    i += 2;
                } else {
                    EMIT(t[i]);
                }
            }
        } else if (attr & TOK_ATTR_BYTE) {
            /* strtol(text.substr(3, 2), 16) of "<0xXX>" */
            unsigned val = 0;
            for (size_t i = 3; i < 5 && i < tl && isxdigit((unsigned char)t[i]); i++)
                val = val * 16 + (unsigned)(isdigit((unsigned char)t[i]) ? t[i] - '0' : (tolower((unsigned char)t[i]) - 'a' + 10));
            EMIT((char)val);
        }
        return n;
    }
    if (attr & TOK_ATTR_NORMAL) {
        for (size_t off = 0; off < tl;) {
            uint32_t cp = tok_utf8_next(t, tl, &off);
            int b = tok_cpt_to_byte(cp);
            if (b >= 0) {
                EMIT((char)b);
                continue;
            }
            /* llama.cpp's llama_decode_text for a char outside the map */
            char u[4];
            size_t ul = cp <= 0x10FFFF ? tok_utf8_put(cp, u) : 0;
            static const char hx[] = "0123456789abcdef";
            const char *pre = "[UNK_BYTE_0x";
            for (const char *p = pre; *p; p++)
                EMIT(*p);
            for (size_t k = 0; k < ul; k++) {
                EMIT(hx[(uint8_t)u[k] >> 4]);
                EMIT(hx[(uint8_t)u[k] & 15]);
            }
            for (size_t k = 0; k < tl; k++)
                EMIT(t[k]);
            EMIT(']');
        }
    }
    return n;
#undef EMIT
}

int32_t tok_piece(const tok_vocab *v, int32_t id, char *buf, size_t cap, int32_t lstrip, bool special)
{
    if (id < 0 || (uint32_t)id >= v->n_tokens)
        return 0;
    if (!special && (v->attr[id] & ATTR_SPECIAL))
        return 0;
    char small[256];
    size_t n = piece_full(v, id, small, sizeof small);
    char *p = small, *heap = NULL;
    if (n > sizeof small) {
        heap = malloc(n);
        if (!heap)
            return 0;
        piece_full(v, id, heap, n);
        p = heap;
    }
    size_t s = 0;
    for (int32_t i = 0; i < lstrip && s < n && p[s] == ' '; i++)
        s++;
    size_t len = n - s;
    int32_t r;
    if (len > INT32_MAX) {
        r = 0;
    } else if (len > cap) {
        r = -(int32_t)len;
    } else {
        if (len)
            memcpy(buf, p + s, len);
        r = (int32_t)len;
    }
    free(heap);
    return r;
}

int tok_detokenize(const tok_vocab *v, const int32_t *ids, size_t n, bool remove_special, bool unparse_special,
                   char **out, size_t *out_len, sm_err *err)
{
    *out = NULL;
    *out_len = 0;
    bool remove_space = v->add_space_prefix;
    if (remove_special && v->add_bos && n > 0 && ids[0] == v->bos) {
        remove_space = false;
        ids++;
        n--;
    }
    if (remove_special && v->add_eos && n > 0 && ids[n - 1] == v->eos)
        n--;

    /* pass 1: size; pass 2: copy */
    size_t total = 0;
    bool rs = remove_space;
    for (size_t i = 0; i < n; i++) {
        int32_t r = tok_piece(v, ids[i], NULL, 0, rs ? 1 : 0, unparse_special);
        rs = false;
        total += (size_t)(r < 0 ? -(int64_t)r : r);
    }
    char *text = malloc(total + 1);
    if (!text)
        return sm_err_set(err, SM_ENOMEM, "detokenize: out of memory for %zu bytes", total);
    size_t pos = 0;
    rs = remove_space;
    for (size_t i = 0; i < n; i++) {
        int32_t r = tok_piece(v, ids[i], text + pos, total - pos, rs ? 1 : 0, unparse_special);
        rs = false;
        if (r > 0)
            pos += (size_t)r;
    }
    total = pos;

    if (v->clean_spaces && total > 0) {
        /* llama.cpp's three clean-up passes, kept byte for byte */
        size_t t1 = total;
        total = 1;
        for (size_t i = 1; i < t1; i++) {
            char x = text[i];
            if (text[i - 1] == ' ' && (x == '?' || x == '!' || x == '.' || x == ','))
                total--;
            text[total++] = x;
        }
        size_t t2 = total;
        total = t2 ? 1 : 0;
        for (size_t i = 1; i < t2; i++) {
            char x = text[i];
            if (x == '\'' && i + 1 < t2 && text[i - 1] == ' ' && text[i + 1] == ' ') {
                total--;
                text[++i] = '\0';
            }
            text[total++] = x;
        }
        size_t t3 = total;
        total = t3 ? 1 : 0;
        for (size_t i = 1; i < t3; i++) {
            char x = text[i];
            if (text[i - 1] == ' ' && x == '\'' && i + 1 < t3) {
                char x1 = text[i + 1];
                if (x1 == 's' || x1 == 'm')
                    total--;
                else if (x1 != 't' && x1 != 'd' && i + 2 < t3) {
                    char x2 = text[i + 2];
                    if ((x1 == 'r' && x2 == 'e') || (x1 == 'v' && x2 == 'e'))
                        total--;
                }
            }
            text[total++] = x;
        }
    }
    text[total] = 0;
    *out = text;
    *out_len = total;
    return 0;
}

/* ------------------------------------------------------------ accessors */

uint32_t tok_n_vocab(const tok_vocab *v) { return v->n_tokens; }
int tok_kind(const tok_vocab *v) { return v->kind; }
const char *tok_pre_name(const tok_vocab *v) { return v->pre_name; }
int32_t tok_bos(const tok_vocab *v) { return v->bos; }
int32_t tok_eos(const tok_vocab *v) { return v->eos; }
int32_t tok_eot(const tok_vocab *v) { return v->eot; }
int32_t tok_unk(const tok_vocab *v) { return v->unk; }
int32_t tok_nl(const tok_vocab *v) { return v->nl; }
bool tok_add_bos(const tok_vocab *v) { return v->add_bos; }
bool tok_add_eos(const tok_vocab *v) { return v->add_eos; }
bool tok_add_space_prefix(const tok_vocab *v) { return v->add_space_prefix; }

bool tok_is_eog(const tok_vocab *v, int32_t id)
{
    if (id == TOK_NULL)
        return false;
    for (uint32_t i = 0; i < v->n_eog; i++)
        if (v->eog[i] == id)
            return true;
    return false;
}

uint32_t tok_attr(const tok_vocab *v, int32_t id)
{
    return (id >= 0 && (uint32_t)id < v->n_tokens) ? v->attr[id] : 0;
}

const char *tok_text(const tok_vocab *v, int32_t id, size_t *len)
{
    if (id < 0 || (uint32_t)id >= v->n_tokens)
        return NULL;
    *len = v->text_len[id];
    return v->arena + v->text_off[id];
}

float tok_score(const tok_vocab *v, int32_t id)
{
    return (id >= 0 && (uint32_t)id < v->n_tokens) ? v->scores[id] : 0.0f;
}

int32_t tok_find(const tok_vocab *v, const char *text, size_t len)
{
    return tok_lookup(v, text, len);
}
