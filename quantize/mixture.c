/* mixture.c — llama.cpp's per-tensor type rules (see mixture.h). The rule
 * bodies follow llama-quant.cpp at c392e5094 branch for branch: the order of
 * the tests matters (the first matching name class wins, and only the taken
 * branch advances its counter). */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "mixture.h"

#include "gguf.h"
#include "types.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------- file types */

typedef struct ftype_name {
    const char *name;
    uint32_t ftype;
    int supported;   /* smelt can produce every type this file type may use */
} ftype_name;

/* llama-quantize's QUANT_OPTIONS order: a numeric id maps to the first row
 * with that id, which is why 15 is reported as "Q4_K". */
static const ftype_name ftype_table[] = {
    {"Q4_0", SM_FTYPE_Q4_0, 1},       {"Q4_1", SM_FTYPE_Q4_1, 1},       {"Q5_0", SM_FTYPE_Q5_0, 1},
    {"Q5_1", SM_FTYPE_Q5_1, 1},       {"IQ2_XXS", SM_FTYPE_IQ2_XXS, 0}, {"IQ2_XS", SM_FTYPE_IQ2_XS, 0},
    {"IQ2_S", SM_FTYPE_IQ2_S, 0},     {"IQ2_M", SM_FTYPE_IQ2_M, 0},     {"IQ1_S", SM_FTYPE_IQ1_S, 0},
    {"IQ1_M", SM_FTYPE_IQ1_M, 0},     {"TQ1_0", SM_FTYPE_TQ1_0, 0},     {"TQ2_0", SM_FTYPE_TQ2_0, 0},
    {"Q2_K", SM_FTYPE_Q2_K, 1},       {"Q2_K_S", SM_FTYPE_Q2_K_S, 0},   {"IQ3_XXS", SM_FTYPE_IQ3_XXS, 0},
    {"IQ3_S", SM_FTYPE_IQ3_S, 0},     {"IQ3_M", SM_FTYPE_IQ3_M, 0},     {"Q3_K", SM_FTYPE_Q3_K_M, 1},
    {"IQ3_XS", SM_FTYPE_IQ3_XS, 0},   {"Q3_K_S", SM_FTYPE_Q3_K_S, 1},   {"Q3_K_M", SM_FTYPE_Q3_K_M, 1},
    {"Q3_K_L", SM_FTYPE_Q3_K_L, 1},   {"IQ4_NL", SM_FTYPE_IQ4_NL, 1},   {"IQ4_XS", SM_FTYPE_IQ4_XS, 0},
    {"Q4_K", SM_FTYPE_Q4_K_M, 1},     {"Q4_K_S", SM_FTYPE_Q4_K_S, 1},   {"Q4_K_M", SM_FTYPE_Q4_K_M, 1},
    {"Q5_K", SM_FTYPE_Q5_K_M, 1},     {"Q5_K_S", SM_FTYPE_Q5_K_S, 1},   {"Q5_K_M", SM_FTYPE_Q5_K_M, 1},
    {"Q6_K", SM_FTYPE_Q6_K, 1},       {"Q8_0", SM_FTYPE_Q8_0, 1},       {"F16", SM_FTYPE_F16, 1},
    {"BF16", SM_FTYPE_BF16, 1},       {"F32", SM_FTYPE_ALL_F32, 1},
    {"COPY", SM_FTYPE_ALL_F32, 1}, /* after F32 so that id 0 means F32 */
};
#define N_FTYPES (sizeof ftype_table / sizeof ftype_table[0])

int sm_mix_parse_ftype(const char *arg, uint32_t *ftype, const char **canon, sm_err *err)
{
    const ftype_name *hit = NULL;
    for (size_t i = 0; i < N_FTYPES && !hit; i++)
        if (strcasecmp(ftype_table[i].name, arg) == 0)
            hit = &ftype_table[i];
    if (!hit && arg[0]) {
        char *end = NULL;
        errno = 0;
        long v = strtol(arg, &end, 10);
        if (errno == 0 && end && *end == 0 && v >= 0 && v < 1024)
            for (size_t i = 0; i < N_FTYPES && !hit; i++)
                if (ftype_table[i].ftype == (uint32_t)v)
                    hit = &ftype_table[i];
    }
    if (!hit || !hit->supported)
        return sm_err_set(err, hit ? SM_EUNSUPP : SM_EINVAL,
                          "%s type '%s' (expected one of Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K_S Q3_K_M Q3_K_L Q4_K_S "
                          "Q4_K_M Q5_K_S Q5_K_M Q6_K IQ4_NL F16 BF16 F32 COPY, or their numeric ids)",
                          hit ? "unsupported" : "unknown", arg);
    *ftype = hit->ftype;
    if (canon)
        *canon = hit->name;
    return 0;
}

uint32_t sm_mix_default_type(uint32_t ftype)
{
    switch (ftype) {
    case SM_FTYPE_Q4_0: return SM_TYPE_Q4_0;
    case SM_FTYPE_Q4_1: return SM_TYPE_Q4_1;
    case SM_FTYPE_Q5_0: return SM_TYPE_Q5_0;
    case SM_FTYPE_Q5_1: return SM_TYPE_Q5_1;
    case SM_FTYPE_Q8_0: return SM_TYPE_Q8_0;
    case SM_FTYPE_F16: return SM_TYPE_F16;
    case SM_FTYPE_BF16: return SM_TYPE_BF16;
    case SM_FTYPE_ALL_F32: return SM_TYPE_F32;
    case SM_FTYPE_Q2_K_S:
    case SM_FTYPE_Q2_K: return SM_TYPE_Q2_K;
    case SM_FTYPE_IQ3_XS: return SM_TYPE_IQ3_S;
    case SM_FTYPE_Q3_K_S:
    case SM_FTYPE_Q3_K_M:
    case SM_FTYPE_Q3_K_L: return SM_TYPE_Q3_K;
    case SM_FTYPE_Q4_K_S:
    case SM_FTYPE_Q4_K_M: return SM_TYPE_Q4_K;
    case SM_FTYPE_Q5_K_S:
    case SM_FTYPE_Q5_K_M: return SM_TYPE_Q5_K;
    case SM_FTYPE_Q6_K: return SM_TYPE_Q6_K;
    case SM_FTYPE_TQ1_0: return SM_TYPE_TQ1_0;
    case SM_FTYPE_TQ2_0: return SM_TYPE_TQ2_0;
    case SM_FTYPE_IQ2_XXS: return SM_TYPE_IQ2_XXS;
    case SM_FTYPE_IQ2_XS: return SM_TYPE_IQ2_XS;
    case SM_FTYPE_IQ2_S: return SM_TYPE_IQ2_XS;
    case SM_FTYPE_IQ2_M: return SM_TYPE_IQ2_S;
    case SM_FTYPE_IQ3_XXS: return SM_TYPE_IQ3_XXS;
    case SM_FTYPE_IQ1_S: return SM_TYPE_IQ1_S;
    case SM_FTYPE_IQ1_M: return SM_TYPE_IQ1_M;
    case SM_FTYPE_IQ4_NL: return SM_TYPE_IQ4_NL;
    case SM_FTYPE_IQ4_XS: return SM_TYPE_IQ4_XS;
    case SM_FTYPE_IQ3_S:
    case SM_FTYPE_IQ3_M: return SM_TYPE_IQ3_S;
    default: return SM_TYPE_F32;
    }
}

int32_t sm_mix_parse_ggml_type(const char *arg)
{
    return sm_type_from_name(arg);
}

uint32_t sm_mix_guess_ftype(const uint32_t *types, uint64_t n)
{
    /* most frequent type, the first to reach the maximum count winning */
    uint32_t count[SM_TYPE_COUNT] = {0}, best = SM_TYPE_F32, best_n = 0;
    for (uint64_t i = 0; i < n; i++) {
        if (types[i] >= SM_TYPE_COUNT)
            continue;
        if (best_n < ++count[types[i]]) {
            best_n = count[types[i]];
            best = types[i];
        }
    }
    uint32_t f;
    switch (best) {
    case SM_TYPE_F16: f = SM_FTYPE_F16; break;
    case SM_TYPE_BF16: f = SM_FTYPE_BF16; break;
    case SM_TYPE_Q4_0: f = SM_FTYPE_Q4_0; break;
    case SM_TYPE_Q4_1: f = SM_FTYPE_Q4_1; break;
    case SM_TYPE_Q5_0: f = SM_FTYPE_Q5_0; break;
    case SM_TYPE_Q5_1: f = SM_FTYPE_Q5_1; break;
    case SM_TYPE_Q8_0: f = SM_FTYPE_Q8_0; break;
    case SM_TYPE_Q2_K: f = SM_FTYPE_Q2_K; break;
    case SM_TYPE_Q3_K: f = SM_FTYPE_Q3_K_M; break;
    case SM_TYPE_Q4_K: f = SM_FTYPE_Q4_K_M; break;
    case SM_TYPE_Q5_K: f = SM_FTYPE_Q5_K_M; break;
    case SM_TYPE_Q6_K: f = SM_FTYPE_Q6_K; break;
    case SM_TYPE_TQ1_0: f = SM_FTYPE_TQ1_0; break;
    case SM_TYPE_TQ2_0: f = SM_FTYPE_TQ2_0; break;
    case SM_TYPE_IQ2_XXS: f = SM_FTYPE_IQ2_XXS; break;
    case SM_TYPE_IQ2_XS: f = SM_FTYPE_IQ2_XS; break;
    case SM_TYPE_IQ2_S: f = SM_FTYPE_IQ2_S; break;
    case SM_TYPE_IQ3_XXS: f = SM_FTYPE_IQ3_XXS; break;
    case SM_TYPE_IQ1_S: f = SM_FTYPE_IQ1_S; break;
    case SM_TYPE_IQ1_M: f = SM_FTYPE_IQ1_M; break;
    case SM_TYPE_IQ4_NL: f = SM_FTYPE_IQ4_NL; break;
    case SM_TYPE_IQ4_XS: f = SM_FTYPE_IQ4_XS; break;
    case SM_TYPE_IQ3_S: f = SM_FTYPE_IQ3_S; break;
    default: f = SM_FTYPE_ALL_F32; break;
    }
    return f | SM_FTYPE_GUESSED;
}

/* ------------------------------------------------------------- name order */

/* sscanf(name, "blk.%d.", &layer): the number after "blk." (optional
 * whitespace and sign, like %d); -1 when there is none. */
static long layer_of(const char *name)
{
    if (strncmp(name, "blk.", 4) != 0)
        return -1;
    const char *p = name + 4;
    while (isspace((unsigned char)*p))
        p++;
    char *end = NULL;
    errno = 0;
    long v = strtol(p, &end, 10);
    if (end == p)
        return -1;
    if (errno == ERANGE || v > INT_MAX || v < INT_MIN)
        v = v < 0 ? INT_MIN : INT_MAX; /* %d overflow is undefined; clamp */
    return v;
}

int sm_mix_cmp_names(const void *a, const void *b)
{
    const char *x = *(const char *const *)a, *y = *(const char *const *)b;
    long lx = layer_of(x), ly = layer_of(y);
    if (lx != ly)
        return lx < ly ? -1 : 1;
    return strcmp(x, y); /* strcmp compares as unsigned char, like std::string */
}

uint32_t sm_mix_n_dims(const int64_t ne[4])
{
    for (int i = 3; i >= 1; i--)
        if (ne[i] > 1)
            return (uint32_t)i + 1;
    return 1;
}

/* ------------------------------------------------------------ model facts */

static int first_int(const gguf_kv *kv, int64_t *out)
{
    uint32_t t = kv->type == GGUF_VT_ARRAY ? kv->arr_type : kv->type;
    if (kv->type == GGUF_VT_ARRAY) {
        if (kv->n < 1 || (t != GGUF_VT_UINT32 && t != GGUF_VT_INT32))
            return -1;
        uint32_t u = (uint32_t)kv->raw[0] | (uint32_t)kv->raw[1] << 8 | (uint32_t)kv->raw[2] << 16 |
                     (uint32_t)kv->raw[3] << 24;
        *out = t == GGUF_VT_INT32 ? (int64_t)(int32_t)u : (int64_t)u;
        return 0;
    }
    switch (t) {
    case GGUF_VT_UINT8: case GGUF_VT_UINT16: case GGUF_VT_UINT32: case GGUF_VT_UINT64:
        *out = (int64_t)kv->v.u64;
        return 0;
    case GGUF_VT_INT8: case GGUF_VT_INT16: case GGUF_VT_INT32: case GGUF_VT_INT64:
        *out = kv->v.i64;
        return 0;
    default:
        return -1;
    }
}

/* Number of layers (of the first n_layer) whose KV-head count is nonzero. */
static int32_t count_attn_layers(const gguf_kv *kv, int32_t n_layer, int64_t scalar)
{
    if (!kv || kv->type != GGUF_VT_ARRAY)
        return scalar != 0 ? n_layer : 0;
    int32_t n = 0;
    for (uint64_t i = 0; i < kv->n && i < (uint64_t)n_layer; i++) {
        const uint8_t *p = kv->raw + 4 * i;
        uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
        n += u != 0;
    }
    return n;
}

int sm_mix_model_from_gguf(sm_mix_model *m, const void *gv, sm_err *err)
{
    const gguf_file *g = gv;
    char key[128];
    sm_str arch;
    memset(m, 0, sizeof(*m));
    int rc = gguf_get_str(g, "general.architecture", &arch, err);
    if (rc < 0)
        return rc;
    if (arch.len == 0 || arch.len >= sizeof m->arch)
        return sm_err_set(err, SM_EFORMAT, "general.architecture has length %llu, expected 1..%zu",
                          (unsigned long long)arch.len, sizeof m->arch - 1);
    memcpy(m->arch, arch.ptr, arch.len);
    m->arch[arch.len] = 0;

    uint32_t n_layer = 0;
    snprintf(key, sizeof key, "%s.block_count", m->arch);
    if ((rc = gguf_get_u32(g, key, &n_layer, err)) < 0)
        return rc;
    if (n_layer > 100000)
        return sm_err_set(err, SM_ERANGE, "%s is %u, out of range", key, n_layer);
    m->n_layer = (int32_t)n_layer;

    int64_t v = 0;
    snprintf(key, sizeof key, "%s.attention.head_count", m->arch);
    const gguf_kv *kv = gguf_get(g, key);
    if (kv && first_int(kv, &v) < 0)
        return sm_err_set(err, SM_ETYPE, "%s: expected an integer or an array of u32/i32", key);
    m->n_head = kv ? (int32_t)v : 0;
    snprintf(key, sizeof key, "%s.attention.head_count_kv", m->arch);
    const gguf_kv *kvkv = gguf_get(g, key);
    if (kvkv && first_int(kvkv, &v) < 0)
        return sm_err_set(err, SM_ETYPE, "%s: expected an integer or an array of u32/i32", key);
    m->n_head_kv = kvkv ? (int32_t)v : m->n_head;
    /* llama.cpp fills the per-layer KV-head counts from head_count when
     * head_count_kv is absent */
    m->n_attn_layer = count_attn_layers(kvkv ? kvkv : kv, m->n_layer, m->n_head_kv);

    snprintf(key, sizeof key, "%s.expert_count", m->arch);
    uint32_t ne = 0;
    if (gguf_get(g, key) && (rc = gguf_get_u32(g, key, &ne, err)) < 0)
        return rc;
    m->n_expert = (int32_t)(ne > 100000 ? 100000 : ne);

    /* llama.cpp's LLM_TYPE_70B size class (only consulted for attn_v) */
    if (strcmp(m->arch, "llama") == 0)
        m->is_70b = m->n_expert != 8 && m->n_layer == 80 && m->n_head != m->n_head_kv;
    else if (!strcmp(m->arch, "deci") || !strcmp(m->arch, "qwen2") || !strcmp(m->arch, "olmo"))
        m->is_70b = m->n_layer == 80;
    return 0;
}

/* ------------------------------------------------------------------ rules */

static int has(const char *name, const char *s) { return strstr(name, s) != NULL; }

static int is_quantized(uint32_t t)
{
    const sm_type_info *ti = sm_type_get(t);
    return ti && ti->blck > 1;
}

static uint32_t blck_of(uint32_t t)
{
    const sm_type_info *ti = sm_type_get(t);
    return ti ? ti->blck : 1;
}

/* llama.cpp's use_more_bits: the first and last eighth of the layers and
 * every third layer in between get more bits. */
static int more_bits(int i, int n)
{
    return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

static int ftype_in(uint32_t f, const uint32_t *set, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (set[i] == f)
            return 1;
    return 0;
}
#define FT_IN(f, ...) ftype_in((f), (const uint32_t[]){__VA_ARGS__}, sizeof((const uint32_t[]){__VA_ARGS__}) / 4)

static int n_gqa(const sm_mix *mx)
{
    return mx->m.n_head_kv ? mx->m.n_head / mx->m.n_head_kv : 0;
}

/* The (layer, n_layer) an ffn rule uses: the running counter for dense
 * models, the name's block number for MoE (experts are not consecutive). */
static int layer_info(const sm_mix *mx, int counter, const char *name, int *i_layer, sm_err *err)
{
    *i_layer = counter;
    if (mx->m.n_expert > 1) {
        long l = layer_of(name);
        if (strncmp(name, "blk.", 4) != 0 || l == -1)
            return sm_err_set(err, SM_EFORMAT, "tensor %s: failed to determine its layer", name);
        if (l < 0 || l >= mx->m.n_layer)
            return sm_err_set(err, SM_ERANGE, "tensor %s: bad layer %ld, must be in [0, %d)", name, l, mx->m.n_layer);
        *i_layer = (int)l;
    }
    return 0;
}

static int is_falcon(const sm_mix *mx) { return strcmp(mx->m.arch, "falcon") == 0; }

/* llama_tensor_get_type: t is the file type's default type on entry. */
static int rule_type(sm_mix *mx, const char *name, const int64_t ne[4], uint32_t *tp, sm_err *err)
{
    const uint32_t f = mx->p.ftype;
    const int n_layer = mx->m.n_layer, ne_exp = mx->m.n_expert;
    uint32_t t = *tp;
    int il = 0, rc;
    const int iq_low = FT_IN(f, SM_FTYPE_IQ2_XXS, SM_FTYPE_IQ2_XS, SM_FTYPE_IQ1_S, SM_FTYPE_IQ2_S, SM_FTYPE_IQ2_M,
                             SM_FTYPE_IQ1_M);
    const int iq2sm = FT_IN(f, SM_FTYPE_IQ2_S, SM_FTYPE_IQ2_M);

    if (!strcmp(name, "output.weight") || (!mx->has_output && !strcmp(name, "token_embd.weight"))) {
        /* tied embeddings take the output tensor's type */
        if (mx->p.output_type >= 0)
            t = (uint32_t)mx->p.output_type;
        else if (is_falcon(mx) || ne[0] % blck_of(t) != 0)
            t = SM_TYPE_Q8_0;
        else if (FT_IN(f, SM_FTYPE_IQ2_XXS, SM_FTYPE_IQ2_XS, SM_FTYPE_IQ3_XXS, SM_FTYPE_IQ1_S, SM_FTYPE_IQ2_S,
                       SM_FTYPE_IQ2_M, SM_FTYPE_IQ1_M))
            t = SM_TYPE_Q5_K;
        else if (t != SM_TYPE_Q8_0)
            t = SM_TYPE_Q6_K;
    } else if (!strcmp(name, "token_embd.weight")) {
        if (mx->p.token_embd_type >= 0)
            t = (uint32_t)mx->p.token_embd_type;
        else if (FT_IN(f, SM_FTYPE_IQ2_XXS, SM_FTYPE_IQ2_XS, SM_FTYPE_IQ1_S, SM_FTYPE_IQ1_M))
            t = SM_TYPE_Q2_K;
        else if (iq2sm || f == SM_FTYPE_IQ3_XXS)
            t = SM_TYPE_IQ3_S;
        else if (FT_IN(f, SM_FTYPE_TQ1_0, SM_FTYPE_TQ2_0))
            t = SM_TYPE_Q4_K;
    } else if (iq_low) {
        if (has(name, "attn_v.weight")) {
            if (n_gqa(mx) >= 4 || ne_exp >= 4)
                t = SM_TYPE_Q4_K;
            else
                t = iq2sm ? SM_TYPE_IQ3_S : SM_TYPE_Q2_K;
            ++mx->i_attention_wv;
        } else if (ne_exp == 8 && has(name, "attn_k.weight")) {
            t = SM_TYPE_Q4_K;
        } else if (has(name, "ffn_down")) {
            if (mx->i_ffn_down < n_layer / 8)
                t = iq2sm ? SM_TYPE_IQ3_S : SM_TYPE_Q2_K;
            ++mx->i_ffn_down;
        } else if (has(name, "attn_output.weight")) {
            if (ne_exp == 8)
                t = SM_TYPE_Q5_K;
            else if (FT_IN(f, SM_FTYPE_IQ1_S, SM_FTYPE_IQ1_M))
                t = SM_TYPE_IQ2_XXS;
            else if (iq2sm)
                t = SM_TYPE_IQ3_S;
        }
    } else if (has(name, "attn_v.weight")) {
        const int gqa = n_gqa(mx), iv = mx->i_attention_wv, nv = mx->n_attention_wv;
        if (f == SM_FTYPE_Q2_K)
            t = gqa >= 4 ? SM_TYPE_Q4_K : SM_TYPE_Q3_K;
        else if (f == SM_FTYPE_Q2_K_S && gqa >= 4)
            t = SM_TYPE_Q4_K;
        else if (f == SM_FTYPE_IQ3_XXS)
            t = gqa >= 4 ? SM_TYPE_Q4_K : !mx->p.has_imatrix ? SM_TYPE_IQ3_S : SM_TYPE_IQ3_XXS;
        else if (FT_IN(f, SM_FTYPE_IQ3_XS, SM_FTYPE_IQ3_S) && gqa >= 4)
            t = SM_TYPE_Q4_K;
        else if (f == SM_FTYPE_IQ3_M)
            t = SM_TYPE_Q4_K;
        else if (f == SM_FTYPE_Q3_K_M)
            t = iv < 2 ? SM_TYPE_Q5_K : SM_TYPE_Q4_K;
        else if (f == SM_FTYPE_Q3_K_L)
            t = SM_TYPE_Q5_K;
        else if (FT_IN(f, SM_FTYPE_IQ4_NL, SM_FTYPE_IQ4_XS) && gqa >= 4)
            t = SM_TYPE_Q5_K;
        else if (FT_IN(f, SM_FTYPE_Q4_K_M, SM_FTYPE_Q5_K_M) && more_bits(iv, nv))
            t = SM_TYPE_Q6_K;
        else if (f == SM_FTYPE_Q4_K_S && iv < 4)
            t = SM_TYPE_Q5_K;
        /* 70B: 8 heads share attn_v, so it is 8x smaller; more bits are cheap */
        if (mx->m.is_70b && (t == SM_TYPE_Q3_K || t == SM_TYPE_Q4_K))
            t = SM_TYPE_Q5_K;
        if (ne_exp == 8)
            t = SM_TYPE_Q8_0;
        ++mx->i_attention_wv;
    } else if (has(name, "attn_k.weight")) {
        if (ne_exp == 8)
            t = SM_TYPE_Q8_0;
        else if (f == SM_FTYPE_IQ3_XS)
            t = SM_TYPE_IQ3_XXS;
        else if (f == SM_FTYPE_IQ3_XXS)
            t = SM_TYPE_IQ2_S;
    } else if (has(name, "attn_q.weight")) {
        if (f == SM_FTYPE_IQ3_XS)
            t = SM_TYPE_IQ3_XXS;
        else if (f == SM_FTYPE_IQ3_XXS)
            t = SM_TYPE_IQ2_S;
    } else if (has(name, "ffn_down")) {
        if ((rc = layer_info(mx, mx->i_ffn_down, name, &il, err)) < 0)
            return rc;
        const int falcon = is_falcon(mx);
        if (f == SM_FTYPE_Q2_K)
            t = SM_TYPE_Q3_K;
        else if (f == SM_FTYPE_Q2_K_S) {
            if (il < n_layer / 8)
                t = SM_TYPE_Q4_K;
        } else if (f == SM_FTYPE_IQ3_XXS && !mx->p.has_imatrix)
            t = il < n_layer / 8 ? SM_TYPE_Q4_K : SM_TYPE_Q3_K;
        else if (f == SM_FTYPE_Q3_K_M)
            t = il < n_layer / 16 ? SM_TYPE_Q5_K
                : !falcon || more_bits(il, n_layer) ? SM_TYPE_Q4_K
                : SM_TYPE_Q3_K;
        else if (f == SM_FTYPE_IQ3_M && (il < n_layer / 8 || (ne_exp == 8 && more_bits(il, n_layer))))
            t = SM_TYPE_Q4_K;
        else if (f == SM_FTYPE_Q3_K_L)
            t = falcon ? SM_TYPE_Q4_K : SM_TYPE_Q5_K;
        else if (f == SM_FTYPE_Q4_K_M) {
            if (falcon)
                t = il < n_layer / 16 ? SM_TYPE_Q6_K : more_bits(il, n_layer) ? SM_TYPE_Q5_K : SM_TYPE_Q4_K;
            else if (more_bits(il, n_layer))
                t = SM_TYPE_Q6_K;
        } else if (il < n_layer / 8 && FT_IN(f, SM_FTYPE_IQ4_NL, SM_FTYPE_IQ4_XS) && !mx->p.has_imatrix)
            t = SM_TYPE_Q5_K;
        else if (f == SM_FTYPE_Q5_K_M && more_bits(il, n_layer))
            t = SM_TYPE_Q6_K;
        else if (f == SM_FTYPE_Q4_K_S && !falcon && il < n_layer / 8)
            t = SM_TYPE_Q5_K;
        else if (FT_IN(f, SM_FTYPE_Q4_0, SM_FTYPE_Q5_0) && mx->p.has_imatrix && il < n_layer / 8)
            /* guard the first ffn_down layers of Q4_0/Q5_0, only with an
             * imatrix so imatrix-free results stay as they always were */
            t = f == SM_FTYPE_Q4_0 ? SM_TYPE_Q4_1 : SM_TYPE_Q5_1;
        ++mx->i_ffn_down;
    } else if (has(name, "attn_output.weight")) {
        if (!is_falcon(mx)) {
            if (ne_exp == 8) {
                if (FT_IN(f, SM_FTYPE_Q2_K, SM_FTYPE_IQ3_XS, SM_FTYPE_IQ3_XXS, SM_FTYPE_Q3_K_S, SM_FTYPE_Q3_K_M,
                          SM_FTYPE_IQ4_NL, SM_FTYPE_Q4_K_S, SM_FTYPE_Q4_K_M, SM_FTYPE_IQ3_S, SM_FTYPE_IQ3_M,
                          SM_FTYPE_IQ4_XS))
                    t = SM_TYPE_Q5_K;
            } else if (f == SM_FTYPE_Q2_K)
                t = SM_TYPE_Q3_K;
            else if (f == SM_FTYPE_IQ3_XXS)
                t = SM_TYPE_IQ3_S;
            else if (f == SM_FTYPE_Q3_K_M)
                t = SM_TYPE_Q4_K;
            else if (f == SM_FTYPE_Q3_K_L)
                t = SM_TYPE_Q5_K;
            else if (f == SM_FTYPE_IQ3_M)
                t = SM_TYPE_Q4_K;
        } else if (f == SM_FTYPE_Q3_K_L)
            t = SM_TYPE_Q4_K;
    } else if (has(name, "attn_qkv.weight")) {
        if (FT_IN(f, SM_FTYPE_Q3_K_M, SM_FTYPE_Q3_K_L, SM_FTYPE_IQ3_M))
            t = SM_TYPE_Q4_K;
        else if (f == SM_FTYPE_Q4_K_M)
            t = SM_TYPE_Q5_K;
        else if (f == SM_FTYPE_Q5_K_M)
            t = SM_TYPE_Q6_K;
    } else if (has(name, "ffn_gate") || has(name, "ffn_up")) {
        const int gate = has(name, "ffn_gate");
        if ((rc = layer_info(mx, gate ? mx->i_ffn_gate : mx->i_ffn_up, name, &il, err)) < 0)
            return rc;
        if (f == SM_FTYPE_IQ3_XS && il >= n_layer / 8 && il < 7 * n_layer / 8)
            t = SM_TYPE_IQ3_XXS;
        if (gate)
            ++mx->i_ffn_gate;
        else
            ++mx->i_ffn_up;
    }

    /* Row length must be a multiple of the block: fall back to a 32-block
     * type, then to F16 when even that does not divide the row. */
    mx->note[0] = 0;
    if (ne[0] % blck_of(t) == 0) {
        ++mx->n_k_quantized;
        *tp = t;
        return 0;
    }
    uint32_t fb;
    switch (t) {
    case SM_TYPE_TQ1_0:
    case SM_TYPE_TQ2_0: fb = SM_TYPE_Q4_0; break;
    case SM_TYPE_IQ2_XXS:
    case SM_TYPE_IQ2_XS:
    case SM_TYPE_IQ2_S:
    case SM_TYPE_IQ3_XXS:
    case SM_TYPE_IQ3_S:
    case SM_TYPE_IQ1_S:
    case SM_TYPE_IQ1_M:
    case SM_TYPE_Q2_K:
    case SM_TYPE_Q3_K:
    case SM_TYPE_IQ4_XS: fb = SM_TYPE_IQ4_NL; break;
    case SM_TYPE_Q4_K: fb = SM_TYPE_Q5_0; break;
    case SM_TYPE_Q5_K: fb = SM_TYPE_Q5_1; break;
    case SM_TYPE_Q6_K: fb = SM_TYPE_Q8_0; break;
    default:
        return sm_err_set(err, SM_EUNSUPP,
                          "tensor %s: cols %lld x %lld are not divisible by %u, required for %s; no fallback exists "
                          "(unsupported tensor size, as llama.cpp refuses)",
                          name, (long long)ne[0], (long long)ne[1], blck_of(t), sm_type_name(t));
    }
    if (ne[0] % blck_of(fb) != 0)
        fb = SM_TYPE_F16;
    snprintf(mx->note, sizeof mx->note, "cols %lld x %lld not divisible by %u, required for %s - using fallback %s",
             (long long)ne[0], (long long)ne[1], blck_of(t), sm_type_name(t), sm_type_name(fb));
    ++mx->n_fallback;
    *tp = fb;
    return 0;
}

/* ----------------------------------------------------------------- driver */

int sm_mix_init(sm_mix *mx, const sm_mix_params *p, const sm_mix_model *m, const char *const *names, uint64_t n,
                sm_err *err)
{
    memset(mx, 0, sizeof(*mx));
    mx->p = *p;
    mx->m = *m;
    for (uint64_t i = 0; i < n; i++) {
        if (has(names[i], "attn_v.weight") || has(names[i], "attn_qkv.weight") || has(names[i], "attn_kv_b.weight"))
            ++mx->n_attention_wv;
        else if (!strcmp(names[i], "output.weight"))
            mx->has_output = 1;
    }
    if (mx->n_attention_wv != 0) {
        int32_t n_attn = m->n_attn_layer;
        if (!strcmp(m->arch, "t5") || !strcmp(m->arch, "t5encoder"))
            n_attn *= 3; /* encoder, decoder and cross attention */
        if (mx->n_attention_wv != n_attn)
            return sm_err_set(err, SM_EMISMATCH,
                              "the model has %d attn_v/attn_qkv weights but %d attention layers (%s.block_count); "
                              "llama.cpp refuses such a model",
                              mx->n_attention_wv, n_attn, m->arch);
    }
    return 0;
}

/* llama.cpp's name-based "quantize this tensor?" test. */
static int wants_quantize(const sm_mix *mx, const char *name, const int64_t ne[4])
{
    size_t len = strlen(name);
    /* name.rfind("weight") == name.size() - 6; a 5-byte name also passes
     * there (npos == size_t(-1)), kept for identical behaviour */
    int q = (len >= 6 && strcmp(name + len - 6, "weight") == 0) || (len == 5 && !strstr(name, "weight"));
    static const char *const never_sub[] = {
        "_norm.weight", "ffn_gate_inp.weight", "ssm_conv1d.weight", "time_mix_first.weight",
        "time_mix_w1.weight", "time_mix_w2.weight", "time_mix_decay_w1.weight", "time_mix_decay_w2.weight",
        "time_mix_lerp_fused.weight", "attn_rel_b.weight",
    };
    q = q && sm_mix_n_dims(ne) >= 2;
    for (size_t i = 0; q && i < sizeof never_sub / sizeof never_sub[0]; i++)
        q = !has(name, never_sub[i]);
    q = q && !(mx->p.leave_output && !strcmp(name, "output.weight"));
    q = q && !mx->p.only_copy;
    q = q && strcmp(name, "position_embd.weight") != 0 && strcmp(name, "token_types.weight") != 0;
    return q;
}

static int override_matches(const sm_mix_override *o, const char *name)
{
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(o->code, NULL);
    if (!md)
        return 0;
    int r = pcre2_match(o->code, (PCRE2_SPTR)name, PCRE2_ZERO_TERMINATED, 0, 0, md, NULL);
    pcre2_match_data_free(md);
    return r >= 0;
}

int sm_mix_choose(sm_mix *mx, const char *name, const int64_t ne[4], uint32_t src_type, uint32_t *out_type,
                  int *convert, sm_err *err)
{
    mx->note[0] = 0;
    if (!wants_quantize(mx, name, ne)) {
        *out_type = src_type;
        *convert = 0;
        return 0;
    }
    uint32_t t = sm_mix_default_type(mx->p.ftype);
    if (!mx->p.pure && is_quantized(t)) {
        int fb = mx->n_fallback;
        int rc = rule_type(mx, name, ne, &t, err);
        if (rc < 0)
            return rc;
        /* --tensor-type applies unless the shape forced a fallback */
        if (mx->n_fallback == fb)
            for (uint32_t i = 0; i < mx->p.n_overrides; i++)
                if (override_matches(&mx->p.overrides[i], name))
                    t = mx->p.overrides[i].type;
    }
    if (mx->p.token_embd_type >= 0 && !strcmp(name, "token_embd.weight"))
        t = (uint32_t)mx->p.token_embd_type;
    if (mx->p.output_type >= 0 && !strcmp(name, "output.weight"))
        t = (uint32_t)mx->p.output_type;
    *out_type = t;
    *convert = t != src_type;
    if (!*convert)
        *out_type = src_type;
    return 0;
}

int sm_mix_override_parse(sm_mix_override *o, const char *arg, sm_err *err)
{
    memset(o, 0, sizeof(*o));
    const char *eq = strchr(arg, '=');
    if (!eq)
        return sm_err_set(err, SM_EINVAL, "--tensor-type '%s': expected REGEX=TYPE", arg);
    if (eq == arg)
        return sm_err_set(err, SM_EINVAL, "--tensor-type '%s': missing tensor name pattern", arg);
    if (!eq[1])
        return sm_err_set(err, SM_EINVAL, "--tensor-type '%s': missing type", arg);
    int32_t t = sm_mix_parse_ggml_type(eq + 1);
    if (t < 0)
        return sm_err_set(err, SM_EINVAL, "--tensor-type '%s': unknown ggml type '%s'", arg, eq + 1);
    size_t n = (size_t)(eq - arg);
    o->pattern = malloc(n + 1);
    if (!o->pattern)
        return sm_err_set(err, SM_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++)
        o->pattern[i] = (char)tolower((unsigned char)arg[i]);
    o->pattern[n] = 0;
    int ecode = 0;
    PCRE2_SIZE eoff = 0;
    o->code = pcre2_compile((PCRE2_SPTR)o->pattern, PCRE2_ZERO_TERMINATED, 0, &ecode, &eoff, NULL);
    if (!o->code) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(ecode, msg, sizeof msg);
        int rc = sm_err_set(err, SM_EINVAL, "--tensor-type '%s': bad regex at offset %zu: %s", arg, (size_t)eoff,
                            (const char *)msg);
        sm_mix_override_free(o);
        return rc;
    }
    o->type = (uint32_t)t;
    return 0;
}

void sm_mix_override_free(sm_mix_override *o)
{
    if (!o)
        return;
    free(o->pattern);
    if (o->code)
        pcre2_code_free(o->code);
    memset(o, 0, sizeof(*o));
}
