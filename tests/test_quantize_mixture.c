/* test_quantize_mixture.c — per-tensor type choice (llama.cpp's rules)
 * against the tensor types of llama-quantize's reference outputs, plus
 * synthetic models for the branches the small references cannot reach. */
#include "gguf.h"
#include "quantize/mixture.h"
#include "quantize/quantize.h"
#include "support.h"
#include "types.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const presets[] = {"Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q4_K_M",
                                      "Q5_K_S", "Q5_K_M", "Q6_K",   "Q8_0"};

/* Runs the rules over every tensor of model_path in loader order; fills
 * names/types (caller frees names[i] and the arrays). Returns sm_code. */
static int plan(const char *model_path, uint32_t ftype, int has_imat, char ***names_out, uint32_t **types_out,
                uint64_t *n_out, sm_err *err)
{
    gguf_file g;
    int rc = gguf_open(&g, model_path, err);
    if (rc < 0)
        return rc;
    sm_mix_model m;
    cr_assert_eq(sm_mix_model_from_gguf(&m, &g, err), 0, "%s", err->msg);
    char **names = calloc(g.n_tensors, sizeof(char *));
    uint32_t *types = calloc(g.n_tensors, sizeof(uint32_t));
    uint32_t *src = calloc(g.n_tensors, sizeof(uint32_t));
    int64_t(*ne)[4] = calloc(g.n_tensors, sizeof(*ne));
    for (uint64_t i = 0; i < g.n_tensors; i++)
        names[i] = sm_str_dup(g.tensors[i].name);
    qsort(names, g.n_tensors, sizeof(char *), sm_mix_cmp_names);
    for (uint64_t i = 0; i < g.n_tensors; i++) {
        int64_t k = gguf_find_tensor(&g, names[i]);
        memcpy(ne[i], g.tensors[k].ne, sizeof ne[i]);
        src[i] = g.tensors[k].type;
    }
    sm_mix mx;
    sm_mix_params p = {.ftype = ftype, .output_type = -1, .token_embd_type = -1, .has_imatrix = has_imat};
    rc = sm_mix_init(&mx, &p, &m, (const char *const *)names, g.n_tensors, err);
    for (uint64_t i = 0; i < g.n_tensors && rc == 0; i++) {
        int conv;
        rc = sm_mix_choose(&mx, names[i], ne[i], src[i], &types[i], &conv, err);
    }
    *names_out = names;
    *types_out = types;
    *n_out = g.n_tensors;
    free(src);
    free(ne);
    gguf_close(&g);
    return rc;
}

static void free_plan(char **names, uint32_t *types, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    free(types);
}

/* Compares the planned order and types with a reference GGUF. */
static void check_against(const char *model, const char *src, const char *preset, const char *ref, int has_imat)
{
    char path[1024], refp[1024];
    snprintf(path, sizeof path, "%s", ts_path(model));
    snprintf(path + strlen(path), sizeof path - strlen(path), "/%s", src);
    snprintf(refp, sizeof refp, "%s/%s", ts_path(model), ref);
    uint32_t ftype;
    const char *canon;
    sm_err err = {0};
    cr_assert_eq(sm_mix_parse_ftype(preset, &ftype, &canon, &err), 0, "%s", err.msg);
    char **names;
    uint32_t *types;
    uint64_t n;
    cr_assert_eq(plan(path, ftype, has_imat, &names, &types, &n, &err), 0, "%s %s: %s", model, preset, err.msg);
    gguf_file r;
    cr_assert_eq(gguf_open(&r, refp, &err), 0, "%s", err.msg);
    cr_assert_eq(r.n_tensors, n, "%s: tensor count", refp);
    for (uint64_t i = 0; i < n; i++) {
        cr_assert(sm_str_eq(r.tensors[i].name, names[i]), "%s: tensor %llu is '%.*s', smelt visits '%s'", refp,
                  (unsigned long long)i, (int)r.tensors[i].name.len, r.tensors[i].name.ptr, names[i]);
        cr_assert_eq(r.tensors[i].type, types[i], "%s: %s is %s in llama.cpp's file, smelt chose %s", refp, names[i],
                     sm_type_name(r.tensors[i].type), sm_type_name(types[i]));
    }
    gguf_close(&r);
    free_plan(names, types, n);
}

Test(mixture, reference_types_tinystories)
{
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++) {
        char ref[64];
        snprintf(ref, sizeof ref, "%s.gguf", presets[i]);
        check_against("reference/tinystories-3m", "convert-f16.gguf", presets[i], ref, 0);
        snprintf(ref, sizeof ref, "%s-imat.gguf", presets[i]);
        check_against("reference/tinystories-3m", "convert-f16.gguf", presets[i], ref, 1);
    }
    check_against("reference/tinystories-3m", "convert-f32.gguf", "Q4_K_M", "Q4_K_M-from-f32.gguf", 0);
}

Test(mixture, reference_types_stories260K_fallbacks)
{
    for (size_t i = 0; i + 1 < sizeof presets / sizeof presets[0]; i++) { /* all but Q8_0 */
        char ref[64];
        snprintf(ref, sizeof ref, "%s.gguf", presets[i]);
        check_against("reference/stories260K", "convert-f16.gguf", presets[i], ref, 0);
        snprintf(ref, sizeof ref, "%s-imat.gguf", presets[i]);
        check_against("reference/stories260K", "convert-f16.gguf", presets[i], ref, 1);
    }
    check_against("reference/stories260K", "convert-f32.gguf", "Q4_K_M", "Q4_K_M-from-f32.gguf", 0);
}

Test(mixture, stories260K_q8_0_is_refused)
{
    char **names;
    uint32_t *types;
    uint64_t n;
    sm_err err = {0};
    char path[1024];
    snprintf(path, sizeof path, "%s", ts_path("reference/stories260K/convert-f16.gguf"));
    int rc = plan(path, SM_FTYPE_Q8_0, 0, &names, &types, &n, &err);
    cr_assert_eq(rc, SM_EUNSUPP);
    cr_assert(strstr(err.msg, "blk.0.ffn_down.weight"), "%s", err.msg);
    cr_assert(strstr(err.msg, "172 x 64 are not divisible by 32, required for q8_0"), "%s", err.msg);
    free_plan(names, types, n);
}

/* ------------------------------------------------------ synthetic models */

typedef struct synth {
    int64_t width;      /* row length of the layer matrices */
    char *names[1024];
    int64_t ne[1024][4];
    uint64_t n;
} synth;

static void add(synth *s, const char *name, int64_t ne0, int64_t ne1, int64_t ne2)
{
    s->names[s->n] = strdup(name);
    s->ne[s->n][0] = ne0;
    s->ne[s->n][1] = ne1;
    s->ne[s->n][2] = ne2;
    s->ne[s->n][3] = 1;
    s->n++;
}

/* A dense llama-like model (4096 wide, or 172 wide for fallbacks). */
static void build(synth *s, int n_layer, int tied, int64_t width)
{
    memset(s, 0, sizeof(*s));
    s->width = width;
    add(s, "token_embd.weight", width, 32000, 1);
    add(s, "output_norm.weight", width, 1, 1);
    if (!tied)
        add(s, "output.weight", width, 32000, 1);
    static const char *const kinds[] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down",
                                        "attn_norm", "ffn_norm"};
    for (int l = 0; l < n_layer; l++)
        for (size_t k = 0; k < 9; k++) {
            char nm[64];
            snprintf(nm, sizeof nm, "blk.%d.%s.weight", l, kinds[k]);
            add(s, nm, width, strstr(kinds[k], "norm") ? 1 : width, 1);
        }
    qsort(s->names, s->n, sizeof(char *), sm_mix_cmp_names);
}

static void synth_free(synth *s)
{
    for (uint64_t i = 0; i < s->n; i++)
        free(s->names[i]);
}

/* Type chosen for tensor `want` after visiting all tensors in order. The
 * shapes array follows the insertion order, so look the shape up by name. */
static uint32_t choose_all(synth *s, sm_mix_params *p, sm_mix_model *m, const char *want, int *rc_out)
{
    sm_mix mx;
    sm_err err = {0};
    uint32_t got = 9999;
    int rc = sm_mix_init(&mx, p, m, (const char *const *)s->names, s->n, &err);
    cr_assert_eq(rc, 0, "%s", err.msg);
    for (uint64_t i = 0; i < s->n && rc == 0; i++) {
        /* embeddings/output are 256 wide so only the layers hit fallbacks */
        int emb = strstr(s->names[i], "token_embd") || !strcmp(s->names[i], "output.weight");
        int64_t ne[4] = {emb ? 256 : s->width, 1, 1, 1};
        ne[1] = strstr(s->names[i], "norm") ? 1 : emb ? 32000 : s->width;
        uint32_t t;
        int conv;
        rc = sm_mix_choose(&mx, s->names[i], ne, SM_TYPE_F16, &t, &conv, &err);
        if (rc == 0 && !strcmp(s->names[i], want))
            got = t;
    }
    if (rc_out)
        *rc_out = rc;
    return got;
}

static sm_mix_model llama_model(int n_layer, int n_head, int n_head_kv, int n_expert)
{
    sm_mix_model m;
    memset(&m, 0, sizeof m);
    strcpy(m.arch, "llama");
    m.n_layer = n_layer;
    m.n_head = n_head;
    m.n_head_kv = n_head_kv;
    m.n_attn_layer = n_layer;
    m.n_expert = n_expert;
    m.is_70b = n_layer == 80 && n_head != n_head_kv && n_expert != 8;
    return m;
}

Test(mixture, q4_k_m_use_more_bits_32_layers)
{
    synth s;
    build(&s, 32, 0, 4096);
    sm_mix_model m = llama_model(32, 32, 32, 0);
    sm_mix_params p = {.ftype = SM_FTYPE_Q4_K_M, .output_type = -1, .token_embd_type = -1};
    /* use_more_bits(i, 32): i < 4, i >= 28, or (i - 4) % 3 == 2 */
    for (int l = 0; l < 32; l++) {
        int more = l < 4 || l >= 28 || (l - 4) % 3 == 2;
        char nm[64];
        snprintf(nm, sizeof nm, "blk.%d.ffn_down.weight", l);
        cr_assert_eq(choose_all(&s, &p, &m, nm, NULL), more ? SM_TYPE_Q6_K : SM_TYPE_Q4_K, "%s", nm);
        snprintf(nm, sizeof nm, "blk.%d.attn_v.weight", l);
        cr_assert_eq(choose_all(&s, &p, &m, nm, NULL), more ? SM_TYPE_Q6_K : SM_TYPE_Q4_K, "%s", nm);
        snprintf(nm, sizeof nm, "blk.%d.attn_q.weight", l);
        cr_assert_eq(choose_all(&s, &p, &m, nm, NULL), SM_TYPE_Q4_K, "%s", nm);
    }
    cr_assert_eq(choose_all(&s, &p, &m, "output.weight", NULL), SM_TYPE_Q6_K);
    cr_assert_eq(choose_all(&s, &p, &m, "token_embd.weight", NULL), SM_TYPE_Q4_K);
    cr_assert_eq(choose_all(&s, &p, &m, "output_norm.weight", NULL), SM_TYPE_F16, "norms keep their type");
    synth_free(&s);
}

Test(mixture, q3_k_m_q2_k_and_gqa)
{
    synth s;
    build(&s, 32, 0, 4096);
    sm_mix_model m = llama_model(32, 32, 8, 0); /* GQA 4 */
    sm_mix_params p = {.ftype = SM_FTYPE_Q3_K_M, .output_type = -1, .token_embd_type = -1};
    cr_assert_eq(choose_all(&s, &p, &m, "blk.0.attn_v.weight", NULL), SM_TYPE_Q5_K);
    cr_assert_eq(choose_all(&s, &p, &m, "blk.1.attn_v.weight", NULL), SM_TYPE_Q5_K);
    cr_assert_eq(choose_all(&s, &p, &m, "blk.2.attn_v.weight", NULL), SM_TYPE_Q4_K);
    cr_assert_eq(choose_all(&s, &p, &m, "blk.1.ffn_down.weight", NULL), SM_TYPE_Q5_K); /* i < 32/16 */
    cr_assert_eq(choose_all(&s, &p, &m, "blk.2.ffn_down.weight", NULL), SM_TYPE_Q4_K);
    cr_assert_eq(choose_all(&s, &p, &m, "blk.5.attn_output.weight", NULL), SM_TYPE_Q4_K);
    cr_assert_eq(choose_all(&s, &p, &m, "blk.5.ffn_up.weight", NULL), SM_TYPE_Q3_K);
    p.ftype = SM_FTYPE_Q2_K;
    cr_assert_eq(choose_all(&s, &p, &m, "blk.7.attn_v.weight", NULL), SM_TYPE_Q4_K, "gqa >= 4");
    cr_assert_eq(choose_all(&s, &p, &m, "blk.7.ffn_down.weight", NULL), SM_TYPE_Q3_K);
    cr_assert_eq(choose_all(&s, &p, &m, "blk.7.attn_output.weight", NULL), SM_TYPE_Q3_K);
    cr_assert_eq(choose_all(&s, &p, &m, "blk.7.ffn_gate.weight", NULL), SM_TYPE_Q2_K);
    m = llama_model(32, 32, 32, 0);
    cr_assert_eq(choose_all(&s, &p, &m, "blk.7.attn_v.weight", NULL), SM_TYPE_Q3_K, "no gqa");
    p.ftype = SM_FTYPE_Q4_K_S;
    cr_assert_eq(choose_all(&s, &p, &m, "blk.3.attn_v.weight", NULL), SM_TYPE_Q5_K);
    cr_assert_eq(choose_all(&s, &p, &m, "blk.4.attn_v.weight", NULL), SM_TYPE_Q4_K);
    cr_assert_eq(choose_all(&s, &p, &m, "blk.3.ffn_down.weight", NULL), SM_TYPE_Q5_K);
    cr_assert_eq(choose_all(&s, &p, &m, "blk.4.ffn_down.weight", NULL), SM_TYPE_Q4_K);
    synth_free(&s);
}

Test(mixture, moe_70b_falcon_and_tied)
{
    synth s;
    build(&s, 80, 0, 4096);
    sm_mix_model m = llama_model(80, 64, 8, 0);
    cr_assert(m.is_70b);
    sm_mix_params p = {.ftype = SM_FTYPE_Q3_K_S, .output_type = -1, .token_embd_type = -1};
    cr_assert_eq(choose_all(&s, &p, &m, "blk.40.attn_v.weight", NULL), SM_TYPE_Q5_K, "70B bumps attn_v");
    synth_free(&s);

    build(&s, 32, 0, 4096);
    m = llama_model(32, 32, 8, 8);
    p.ftype = SM_FTYPE_Q4_K_M;
    cr_assert_eq(choose_all(&s, &p, &m, "blk.3.attn_v.weight", NULL), SM_TYPE_Q8_0, "8 experts");
    cr_assert_eq(choose_all(&s, &p, &m, "blk.3.attn_k.weight", NULL), SM_TYPE_Q8_0);
    cr_assert_eq(choose_all(&s, &p, &m, "blk.3.attn_output.weight", NULL), SM_TYPE_Q5_K);
    synth_free(&s);

    build(&s, 32, 0, 4096);
    m = llama_model(32, 32, 32, 0);
    strcpy(m.arch, "falcon");
    p.ftype = SM_FTYPE_Q4_K_M;
    cr_assert_eq(choose_all(&s, &p, &m, "output.weight", NULL), SM_TYPE_Q8_0, "falcon output");
    cr_assert_eq(choose_all(&s, &p, &m, "blk.0.ffn_down.weight", NULL), SM_TYPE_Q6_K, "falcon i < n/16");
    cr_assert_eq(choose_all(&s, &p, &m, "blk.5.ffn_down.weight", NULL), SM_TYPE_Q4_K);
    cr_assert_eq(choose_all(&s, &p, &m, "blk.6.ffn_down.weight", NULL), SM_TYPE_Q5_K);
    synth_free(&s);

    build(&s, 8, 1, 4096); /* tied: token_embd takes the output rule */
    m = llama_model(8, 32, 32, 0);
    p.ftype = SM_FTYPE_Q5_K_S;
    cr_assert_eq(choose_all(&s, &p, &m, "token_embd.weight", NULL), SM_TYPE_Q6_K);
    p.ftype = SM_FTYPE_Q8_0;
    cr_assert_eq(choose_all(&s, &p, &m, "token_embd.weight", NULL), SM_TYPE_Q8_0);
    synth_free(&s);
}

Test(mixture, options_pure_overrides_leave_output)
{
    synth s;
    build(&s, 8, 0, 4096);
    sm_mix_model m = llama_model(8, 32, 32, 0);
    sm_mix_params p = {.ftype = SM_FTYPE_Q4_K_M, .output_type = -1, .token_embd_type = -1, .pure = 1};
    cr_assert_eq(choose_all(&s, &p, &m, "output.weight", NULL), SM_TYPE_Q4_K, "--pure");
    cr_assert_eq(choose_all(&s, &p, &m, "blk.0.attn_v.weight", NULL), SM_TYPE_Q4_K);
    p.pure = 0;
    p.leave_output = 1;
    cr_assert_eq(choose_all(&s, &p, &m, "output.weight", NULL), SM_TYPE_F16, "--leave-output-tensor");
    p.leave_output = 0;
    p.output_type = SM_TYPE_Q8_0;
    p.token_embd_type = SM_TYPE_Q5_0;
    cr_assert_eq(choose_all(&s, &p, &m, "output.weight", NULL), SM_TYPE_Q8_0);
    cr_assert_eq(choose_all(&s, &p, &m, "token_embd.weight", NULL), SM_TYPE_Q5_0);
    p.output_type = p.token_embd_type = -1;

    sm_mix_override ov[2];
    sm_err err = {0};
    cr_assert_eq(sm_mix_override_parse(&ov[0], "ATTN_Q=q8_0", &err), 0, "%s", err.msg);
    cr_assert_str_eq(ov[0].pattern, "attn_q");
    cr_assert_eq(sm_mix_override_parse(&ov[1], "blk\\.[0-3]\\.attn_q=q5_k", &err), 0, "%s", err.msg);
    p.overrides = ov;
    p.n_overrides = 2;
    cr_assert_eq(choose_all(&s, &p, &m, "blk.2.attn_q.weight", NULL), SM_TYPE_Q5_K, "last match wins");
    cr_assert_eq(choose_all(&s, &p, &m, "blk.5.attn_q.weight", NULL), SM_TYPE_Q8_0);
    cr_assert_eq(choose_all(&s, &p, &m, "blk.5.attn_k.weight", NULL), SM_TYPE_Q4_K);
    sm_mix_override_free(&ov[0]);
    sm_mix_override_free(&ov[1]);
    synth_free(&s);

    static const struct {
        const char *arg;
        const char *msg;
    } bad[] = {
        {"attn_q", "expected REGEX=TYPE"},
        {"=q8_0", "missing tensor name"},
        {"attn_q=", "missing type"},
        {"attn_q=q9_9", "unknown ggml type 'q9_9'"},
        {"attn_(q=q8_0", "bad regex"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sm_mix_override o;
        cr_assert_eq(sm_mix_override_parse(&o, bad[i].arg, &err), SM_EINVAL, "%s", bad[i].arg);
        cr_assert(strstr(err.msg, bad[i].msg), "%s: %s", bad[i].arg, err.msg);
    }
}

Test(mixture, fallback_chain_172_wide)
{
    synth s;
    build(&s, 4, 0, 172);
    sm_mix_model m = llama_model(4, 8, 8, 0);
    sm_mix_params p = {.ftype = SM_FTYPE_Q6_K, .output_type = -1, .token_embd_type = -1};
    int rc;
    /* 172 % 256 != 0 and 172 % 32 != 0: every K type ends at F16 */
    cr_assert_eq(choose_all(&s, &p, &m, "blk.1.attn_q.weight", &rc), SM_TYPE_F16);
    p.ftype = SM_FTYPE_Q3_K_S;
    cr_assert_eq(choose_all(&s, &p, &m, "blk.1.attn_q.weight", &rc), SM_TYPE_F16);
    p.ftype = SM_FTYPE_Q4_0; /* no fallback for legacy types: refused */
    choose_all(&s, &p, &m, "blk.1.attn_q.weight", &rc);
    cr_assert_eq(rc, SM_EUNSUPP);
    synth_free(&s);
    build(&s, 4, 0, 64);
    p.ftype = SM_FTYPE_Q3_K_S;
    cr_assert_eq(choose_all(&s, &p, &m, "blk.1.attn_q.weight", &rc), SM_TYPE_IQ4_NL);
    p.ftype = SM_FTYPE_Q4_K_S;
    cr_assert_eq(choose_all(&s, &p, &m, "blk.1.attn_q.weight", &rc), SM_TYPE_Q5_0);
    p.ftype = SM_FTYPE_Q5_K_S;
    cr_assert_eq(choose_all(&s, &p, &m, "blk.1.attn_q.weight", &rc), SM_TYPE_Q5_1);
    p.ftype = SM_FTYPE_Q6_K;
    cr_assert_eq(choose_all(&s, &p, &m, "blk.1.attn_q.weight", &rc), SM_TYPE_Q8_0);
    synth_free(&s);
}

Test(mixture, attn_v_count_must_match_layers)
{
    synth s;
    build(&s, 4, 0, 256);
    sm_mix_model m = llama_model(5, 8, 8, 0); /* claims 5 layers, has 4 attn_v */
    sm_mix_params p = {.ftype = SM_FTYPE_Q4_K_M, .output_type = -1, .token_embd_type = -1};
    sm_mix mx;
    sm_err err = {0};
    cr_assert_eq(sm_mix_init(&mx, &p, &m, (const char *const *)s.names, s.n, &err), SM_EMISMATCH);
    cr_assert(strstr(err.msg, "4 attn_v/attn_qkv weights but 5 attention layers"), "%s", err.msg);
    synth_free(&s);
}

Test(mixture, ftype_names_and_order)
{
    static const struct {
        const char *arg;
        uint32_t ftype;
        const char *canon;
    } ok[] = {
        {"q4_k_m", 15, "Q4_K_M"}, {"Q4_K", 15, "Q4_K"},   {"15", 15, "Q4_K"},   {"Q3_K_S", 11, "Q3_K_S"},
        {"q8_0", 7, "Q8_0"},      {"7", 7, "Q8_0"},       {"f16", 1, "F16"},    {"BF16", 32, "BF16"},
        {"f32", 0, "F32"},        {"0", 0, "F32"},        {"iq4_nl", 25, "IQ4_NL"}, {"Q5_K", 17, "Q5_K"},
        {"q6_k", 18, "Q6_K"},     {"Q2_K", 10, "Q2_K"},   {"q5_1", 9, "Q5_1"},
    };
    sm_err err = {0};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        uint32_t f;
        const char *c;
        cr_assert_eq(sm_mix_parse_ftype(ok[i].arg, &f, &c, &err), 0, "%s: %s", ok[i].arg, err.msg);
        cr_assert_eq(f, ok[i].ftype, "%s", ok[i].arg);
        cr_assert_str_eq(c, ok[i].canon);
    }
    uint32_t f;
    cr_assert_eq(sm_mix_parse_ftype("Q9_K", &f, NULL, &err), SM_EINVAL);
    cr_assert(strstr(err.msg, "unknown type 'Q9_K'"), "%s", err.msg);
    cr_assert_eq(sm_mix_parse_ftype("IQ2_XXS", &f, NULL, &err), SM_EUNSUPP);
    cr_assert_eq(sm_mix_parse_ftype("", &f, NULL, &err), SM_EINVAL);
    cr_assert_eq(sm_mix_parse_ftype("15x", &f, NULL, &err), SM_EINVAL);

    const char *names[] = {"blk.10.attn_q.weight", "output.weight", "blk.2.ffn_up.weight", "blk.2.attn_k.weight",
                           "token_embd.weight", "blk.0.attn_q.weight"};
    qsort(names, 6, sizeof(char *), sm_mix_cmp_names);
    const char *want[] = {"output.weight", "token_embd.weight", "blk.0.attn_q.weight", "blk.2.attn_k.weight",
                          "blk.2.ffn_up.weight", "blk.10.attn_q.weight"};
    for (int i = 0; i < 6; i++)
        cr_assert_str_eq(names[i], want[i]);

    char *d = sm_qz_default_out("models/x/in.gguf", "Q4_K");
    cr_assert_str_eq(d, "models/x/ggml-model-Q4_K.gguf");
    free(d);
    d = sm_qz_default_out("in.gguf", "Q8_0");
    cr_assert_str_eq(d, "ggml-model-Q8_0.gguf");
    free(d);
    int64_t ne[4] = {64, 1, 1, 1};
    cr_assert_eq(sm_mix_n_dims(ne), 1);
    ne[2] = 8;
    cr_assert_eq(sm_mix_n_dims(ne), 3);
}

Test(mixture, guessed_file_type)
{
    const uint32_t a[] = {SM_TYPE_F32, SM_TYPE_Q4_K, SM_TYPE_Q6_K, SM_TYPE_Q4_K, SM_TYPE_F32};
    cr_assert_eq(sm_mix_guess_ftype(a, 5), SM_FTYPE_Q4_K_M | SM_FTYPE_GUESSED,
                 "a tie goes to the type that reached the count first (Q4_K)");
    const uint32_t b[] = {SM_TYPE_F16, SM_TYPE_F32, SM_TYPE_F32};
    cr_assert_eq(sm_mix_guess_ftype(b, 3), SM_FTYPE_ALL_F32 | SM_FTYPE_GUESSED);
    const uint32_t c[] = {SM_TYPE_Q3_K};
    cr_assert_eq(sm_mix_guess_ftype(c, 1), SM_FTYPE_Q3_K_M | SM_FTYPE_GUESSED);
    cr_assert_eq(sm_mix_guess_ftype(NULL, 0), SM_FTYPE_ALL_F32 | SM_FTYPE_GUESSED);
}
