/* test_merge.c — smelt-merge against the llama.cpp / numpy references in
 * $SMELT_SHARED/reference/tinystories-3m, plus config parsing, PEFT pattern
 * resolution, the merge arithmetic and a table of malformed adapters. */
#include "merge/adapter.h"
#include "merge/export.h"
#include "merge/merge.h"

#include "fp16.h"
#include "gguf.h"
#include "safetensors.h"
#include "safetensors_write.h"
#include "sha256.h"
#include "types.h"

#include "support.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static void spath(char *buf, size_t n, const char *rel)
{
    snprintf(buf, n, "%s/%s", ts_shared(), rel);
}

/* Merges base + adapter dir (scale 1) into out; returns merge_run's code. */
static int run_merge(const char *base, const char *adapter_dir, const char *out, int32_t outtype, sm_err *err)
{
    lora_adapter ad;
    int rc = lora_open(&ad, adapter_dir, err);
    if (rc < 0)
        return rc;
    merge_opts o = {.base = base, .out = out, .adapters = &ad, .n_adapters = 1, .outtype = outtype};
    merge_report rep;
    rc = merge_run(&o, &rep, err);
    if (rc == SM_OK)
        merge_report_free(&rep);
    lora_close(&ad);
    return rc;
}

/* ------------------------------------------------------------ config */

static int parse_cfg(lora_config *c, const char *json, sm_err *err)
{
    return lora_config_parse(c, json, strlen(json), "cfg.json", err);
}

Test(merge_config, plain_fields)
{
    lora_config c;
    sm_err err = {0};
    cr_assert_eq(parse_cfg(&c, "{\"peft_type\":\"LORA\",\"r\":8,\"lora_alpha\":16,\"target_modules\":[\"q_proj\",\"v_proj\"],"
                               "\"base_model_name_or_path\":\"x/y\",\"bias\":\"none\",\"use_dora\":false,"
                               "\"lora_dropout\":0.05,\"layer_replication\":null,\"new_flag_off\":false}", &err), 0, "%s", err.msg);
    cr_assert_eq(c.r, 8);
    cr_assert_float_eq(c.alpha, 16.0, 0);
    cr_assert_eq(c.n_targets, 2);
    cr_assert_str_eq(c.targets[1], "v_proj");
    cr_assert_str_eq(c.base_model, "x/y");
    uint32_t r;
    double alpha;
    const char *rk, *ak;
    cr_assert_float_eq(lora_config_scale(&c, "model.layers.0.self_attn.q_proj", &r, &alpha, &rk, &ak), 2.0, 0);
    cr_assert(lora_config_targets(&c, "model.layers.3.self_attn.q_proj"));
    cr_assert(lora_config_targets(&c, "v_proj"));
    cr_assert(!lora_config_targets(&c, "model.layers.3.self_attn.k_proj"));
    cr_assert(!lora_config_targets(&c, "model.layers.3.self_attn.xq_proj"));
    lora_config_free(&c);
}

Test(merge_config, rslora_scale_and_patterns)
{
    lora_config c;
    sm_err err = {0};
    cr_assert_eq(parse_cfg(&c, "{\"peft_type\":\"LORA\",\"r\":8,\"lora_alpha\":16,\"use_rslora\":true,"
                               "\"target_modules\":[\"q_proj\"],\"rank_pattern\":{\"gate_proj\":4},"
                               "\"alpha_pattern\":{\"down_proj\":32,\"layers.1.self_attn.q_proj\":4}}", &err), 0, "%s", err.msg);
    uint32_t r;
    double alpha, s;
    const char *rk, *ak;
    s = lora_config_scale(&c, "model.layers.0.self_attn.q_proj", &r, &alpha, &rk, &ak);
    cr_assert_float_eq(s, 16.0 / sqrt(8.0), 1e-15);
    cr_assert_null(ak);
    s = lora_config_scale(&c, "model.layers.1.self_attn.q_proj", &r, &alpha, &rk, &ak);
    cr_assert_float_eq(s, 4.0 / sqrt(8.0), 1e-15);
    cr_assert_str_eq(ak, "layers.1.self_attn.q_proj");
    /* "layers.1." must not match layer 11 (PEFT's (.*\.)?(K)$ rule) */
    s = lora_config_scale(&c, "model.layers.11.self_attn.q_proj", &r, &alpha, &rk, &ak);
    cr_assert_null(ak);
    s = lora_config_scale(&c, "model.layers.2.mlp.gate_proj", &r, &alpha, &rk, &ak);
    cr_assert_eq(r, 4);
    cr_assert_str_eq(rk, "gate_proj");
    cr_assert_float_eq(s, 16.0 / 2.0, 1e-15);
    s = lora_config_scale(&c, "model.layers.2.mlp.down_proj", &r, &alpha, &rk, &ak);
    cr_assert_float_eq(alpha, 32.0, 0);
    /* a key only matches whole dotted components: "proj" does not match "down_proj" */
    lora_config_free(&c);
    cr_assert_eq(parse_cfg(&c, "{\"peft_type\":\"LORA\",\"r\":8,\"lora_alpha\":16,\"target_modules\":[\"q_proj\"],"
                               "\"alpha_pattern\":{\"proj\":1}}", &err), 0, "%s", err.msg);
    lora_config_scale(&c, "model.layers.2.mlp.down_proj", &r, &alpha, &rk, &ak);
    cr_assert_null(ak);
    cr_assert_float_eq(alpha, 16.0, 0);
    lora_config_free(&c);
}

Test(merge_config, target_regex_and_layers)
{
    lora_config c;
    sm_err err = {0};
    cr_assert_eq(parse_cfg(&c, "{\"peft_type\":\"LORA\",\"r\":4,\"lora_alpha\":8,"
                               "\"target_modules\":\".*\\\\.(q|v)_proj\"}", &err), 0, "%s", err.msg);
    cr_assert(lora_config_targets(&c, "model.layers.0.self_attn.q_proj"));
    cr_assert(!lora_config_targets(&c, "model.layers.0.self_attn.k_proj"));
    cr_assert(!lora_config_targets(&c, "model.layers.0.self_attn.q_proj.x")); /* fullmatch */
    lora_config_free(&c);
    cr_assert_eq(parse_cfg(&c, "{\"peft_type\":\"LORA\",\"r\":4,\"lora_alpha\":8,\"target_modules\":[\"q_proj\"],"
                               "\"layers_to_transform\":[1,3]}", &err), 0, "%s", err.msg);
    cr_assert(lora_config_targets(&c, "model.layers.1.self_attn.q_proj"));
    cr_assert(lora_config_targets(&c, "model.layers.3.self_attn.q_proj"));
    cr_assert(!lora_config_targets(&c, "model.layers.2.self_attn.q_proj"));
    lora_config_free(&c);
    cr_assert_eq(parse_cfg(&c, "{\"peft_type\":\"LORA\",\"r\":4,\"lora_alpha\":8,\"target_modules\":[\"q_proj\"],"
                               "\"layers_to_transform\":2,\"layers_pattern\":\"h\"}", &err), 0, "%s", err.msg);
    cr_assert(lora_config_targets(&c, "transformer.h.2.attn.q_proj"));
    cr_assert(!lora_config_targets(&c, "model.layers.2.self_attn.q_proj"));
    lora_config_free(&c);
}

typedef struct cfg_case {
    const char *json;
    int code;
    const char *needle;
} cfg_case;

Test(merge_config, refused_configs)
{
    static const cfg_case cases[] = {
        {"{\"peft_type\":\"LORA\",\"r\":8,\"lora_alpha\":16,\"target_modules\":[\"q\"],\"use_dora\":true}", SM_EUNSUPP, "DoRA"},
        {"{\"peft_type\":\"LORA\",\"r\":8,\"lora_alpha\":16,\"target_modules\":[\"q\"],\"bias\":\"lora_only\"}", SM_EUNSUPP, "bias"},
        {"{\"peft_type\":\"IA3\",\"r\":8,\"lora_alpha\":16,\"target_modules\":[\"q\"]}", SM_EUNSUPP, "IA3"},
        {"{\"peft_type\":\"LORA\",\"r\":0,\"lora_alpha\":16,\"target_modules\":[\"q\"]}", SM_ERANGE, "\"r\""},
        {"{\"peft_type\":\"LORA\",\"lora_alpha\":16,\"target_modules\":[\"q\"]}", SM_EMISSING, "\"r\""},
        {"{\"peft_type\":\"LORA\",\"r\":8,\"target_modules\":[\"q\"]}", SM_EMISSING, "lora_alpha"},
        {"{\"peft_type\":\"LORA\",\"r\":8,\"lora_alpha\":16}", SM_EMISSING, "target_modules"},
        {"{\"peft_type\":\"LORA\",\"r\":8,\"lora_alpha\":16,\"target_modules\":[\"q\"],\"magic_scaling\":2}", SM_EUNSUPP, "magic_scaling"},
        {"{\"peft_type\":\"LORA\",\"r\":8,\"lora_alpha\":16,\"target_modules\":[\"q\"],\"init_lora_weights\":\"pissa\"}", SM_EUNSUPP, "pissa"},
        {"{\"peft_type\":\"LORA\",\"r\":8,\"lora_alpha\":16,\"target_modules\":[\"q\"],\"layer_replication\":[[0,2]]}", SM_EUNSUPP, "layer_replication"},
        {"{\"peft_type\":\"LORA\",\"r\":8,\"lora_alpha\":16,\"target_modules\":\"(\"}", SM_EFORMAT, "regex"},
        {"{\"peft_type\":\"LORA\",\"r\":8,\"lora_alpha\":16,\"target_modules\":[\"q\"],\"rank_pattern\":{\"q\":2.5}}", SM_ERANGE, "rank"},
        {"{\"peft_type\":\"LORA\",\"r\":8,\"lora_alpha\":16,\"target_modules\":[\"q\"],\"r\":4}", SM_EFORMAT, "JSON"},
        {"{\"peft_type\":\"LORA\",\"r\":8,", SM_EFORMAT, "invalid JSON"},
        {"[1,2]", SM_EFORMAT, "object"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        lora_config c;
        sm_err err = {0};
        int rc = parse_cfg(&c, cases[i].json, &err);
        cr_assert_eq(rc, cases[i].code, "case %zu: rc %d want %d (%s)", i, rc, cases[i].code, err.msg);
        cr_assert_not_null(strstr(err.msg, cases[i].needle), "case %zu: '%s' lacks '%s'", i, err.msg, cases[i].needle);
        cr_assert_not_null(strstr(err.msg, "cfg.json"), "case %zu: message must name the file: %s", i, err.msg);
    }
}

/* ------------------------------------------------------------ math */

Test(merge_math, apply_matches_plain_loop)
{
    /* W [3, 4] += s * B[3,2] A[2,4]; and the transposed variant */
    float a[8] = {1, 2, 3, 4, -1, 0.5f, 0.25f, 2};
    float b[6] = {1, -1, 0.5f, 2, 3, 0};
    float w[12], wt[12], at[8];
    for (int i = 0; i < 12; i++)
        w[i] = wt[i] = (float)i * 0.1f;
    merge_apply_f32(w, a, b, 3, 4, 2, 2.0f, 0, at);
    merge_apply_f32(wt, a, b, 3, 4, 2, 2.0f, 1, at);
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 4; j++) {
            float acc = 0;
            for (int k = 0; k < 2; k++)
                acc += b[i * 2 + k] * a[k * 4 + j];
            cr_assert_eq(w[i * 4 + j], (float)(i * 4 + j) * 0.1f + 2.0f * acc);
            cr_assert_eq(wt[j * 3 + i], (float)(j * 3 + i) * 0.1f + 2.0f * acc);
        }
}

Test(merge_math, odd_widths_and_column_blocks)
{
    /* widths around the 4/8-wide vector steps and the 512-column blocks */
    static const int64_t widths[] = {1, 3, 7, 9, 13, 515, 1031};
    for (size_t c = 0; c < sizeof widths / sizeof widths[0]; c++) {
        int64_t out = 5, in = widths[c];
        uint32_t r = 3;
        float *a = malloc((size_t)(r * in) * 4), *b = malloc((size_t)(out * r) * 4);
        float *w = malloc((size_t)(out * in) * 4), *w0 = malloc((size_t)(out * in) * 4), *acc = malloc((size_t)in * 4);
        for (int64_t i = 0; i < r * in; i++)
            a[i] = (float)((i * 37) % 101 - 50) / 77.0f;
        for (int64_t i = 0; i < out * r; i++)
            b[i] = (float)((i * 53) % 97 - 48) / 31.0f;
        for (int64_t i = 0; i < out * in; i++)
            w[i] = w0[i] = (float)((i * 11) % 89 - 44) / 13.0f;
        merge_apply_f32(w, a, b, out, in, r, 0.3f, 0, acc);
        for (int64_t i = 0; i < out; i++)
            for (int64_t j = 0; j < in; j++) {
                float s = b[i * r] * a[j];
                for (uint32_t k = 1; k < r; k++)
                    s += b[i * r + k] * a[k * in + j];
                cr_assert_eq(sm_f32_bits(w[i * in + j]), sm_f32_bits(w0[i * in + j] + 0.3f * s),
                             "width %lld [%lld][%lld]", (long long)in, (long long)i, (long long)j);
            }
        free(a);
        free(b);
        free(w);
        free(w0);
        free(acc);
    }
}

Test(merge_math, permute_rows_like_llama_converter)
{
    /* 2 heads of 4 rows: per head rows (0,1,2,3) -> (0,2,1,3) */
    float m[8], s[8];
    for (int i = 0; i < 8; i++)
        m[i] = (float)i;
    cr_assert_eq(merge_permute_rows(m, 8, 1, 2, s), 0);
    const float want[8] = {0, 2, 1, 3, 4, 6, 5, 7};
    for (int i = 0; i < 8; i++)
        cr_assert_eq(m[i], want[i]);
    cr_assert_eq(merge_permute_rows(m, 6, 1, 4, s), SM_EINVAL);
}

Test(merge_math, hf_to_gguf_names)
{
    char out[128];
    cr_assert_eq(merge_hf_to_gguf_name("model.layers.3.self_attn.q_proj.weight", out, sizeof out), 0);
    cr_assert_str_eq(out, "blk.3.attn_q.weight");
    cr_assert_eq(merge_hf_to_gguf_name("model.layers.12.mlp.down_proj.weight", out, sizeof out), 0);
    cr_assert_str_eq(out, "blk.12.ffn_down.weight");
    cr_assert_eq(merge_hf_to_gguf_name("lm_head.weight", out, sizeof out), 0);
    cr_assert_str_eq(out, "output.weight");
    cr_assert_eq(merge_hf_to_gguf_name("model.embed_tokens.weight", out, sizeof out), 0);
    cr_assert_str_eq(out, "token_embd.weight");
    cr_assert_eq(merge_hf_to_gguf_name("model.layers.1.self_attn.k_proj.bias", out, sizeof out), 0);
    cr_assert_str_eq(out, "blk.1.attn_k.bias");
    cr_assert_eq(merge_hf_to_gguf_name("transformer.h.0.attn.c_attn.weight", out, sizeof out), -1);
    cr_assert_eq(merge_hf_to_gguf_name("model.layers.x.mlp.up_proj.weight", out, sizeof out), -1);
}

Test(merge_math, names_like_gguf_py)
{
    export_names n;
    export_model_names("tinystories-3m-domain", -3145728, &n);
    cr_assert_str_eq(n.name, "Tinystories 3m Domain");
    cr_assert_str_eq(n.basename, "tinystories");
    cr_assert_str_eq(n.size_label, "3M");
    cr_assert_str_eq(n.finetune, "domain");
    cr_assert_str_eq(n.version, "");
    export_model_names("Qwen2.5-0.5B-Instruct-lora", -1000000, &n);
    cr_assert_str_eq(n.name, "Qwen2.5 0.5B Instruct Lora");
    cr_assert_str_eq(n.basename, "Qwen2.5");
    cr_assert_str_eq(n.size_label, "0.5B");
    cr_assert_str_eq(n.finetune, "Instruct");
    export_model_names("tinystories-3m-domain-rslora", -3145728, &n);
    cr_assert_str_eq(n.finetune, "domain-rslora");
    export_model_names("adapter", -10, &n);
    cr_assert_str_eq(n.name, "Adapter");
    cr_assert_str_eq(n.basename, "");
}

/* ------------------------------------------------------------ adapters */

Test(merge_adapter, inspect_qwen_real_adapter)
{
    char dir[1024];
    spath(dir, sizeof dir, "lora/qwen2.5-0.5b-real");
    lora_adapter ad;
    sm_err err = {0};
    cr_assert_eq(lora_open(&ad, dir, &err), 0, "%s", err.msg);
    cr_assert_eq(ad.n_tensors, 96);
    cr_assert_eq(ad.n_modules, 48);
    cr_assert_eq(ad.n_saved, 0);
    cr_assert_str_eq(ad.cfg.base_model, "Qwen/Qwen2.5-0.5B-Instruct");
    cr_assert_eq(ad.cfg.r, 8);
    int q = 0, v = 0;
    for (uint64_t i = 0; i < ad.n_modules; i++) {
        const lora_module *m = &ad.modules[i];
        cr_assert_float_eq(m->scale, 2.0, 0);
        cr_assert_eq(m->r, 8);
        cr_assert_eq(m->in, 896);
        if (strstr(m->name, "q_proj")) {
            q++;
            cr_assert_eq(m->out, 896);
        } else {
            v++;
            cr_assert_eq(m->out, 128); /* 2 KV heads x 64 */
        }
    }
    cr_assert_eq(q, 24);
    cr_assert_eq(v, 24);
    char *txt = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&txt, &len);
    cr_assert_eq(lora_describe(&ad, fp, 0, &err), 0);
    fclose(fp);
    cr_assert_not_null(strstr(txt, "Qwen/Qwen2.5-0.5B-Instruct"));
    cr_assert_not_null(strstr(txt, "96 (48 A/B pairs"));
    cr_assert_not_null(strstr(txt, "model.layers.23.self_attn.v_proj"));
    free(txt);
    fp = open_memstream(&txt, &len);
    cr_assert_eq(lora_describe(&ad, fp, 1, &err), 0);
    fclose(fp);
    json_t *j = json_loads(txt, 0, NULL);
    cr_assert_not_null(j);
    cr_assert_eq(json_integer_value(json_object_get(j, "n_modules")), 48);
    cr_assert_float_eq(json_real_value(json_object_get(json_array_get(json_object_get(j, "modules"), 0), "scale")), 2.0, 0);
    json_decref(j);
    free(txt);
    lora_close(&ad);
}

/* ------------------------------------------------------------ references */

/* Checks every tensor of a merged F32 checkpoint against merge-info.json:
 * sha256 of merged tensors, untouched tensors equal the widened base. */
static void check_against_info(const char *out_dir, const char *info_rel, int *n_merged)
{
    char p[1024];
    spath(p, sizeof p, info_rel);
    json_error_t je;
    json_t *info = json_load_file(p, 0, &je);
    cr_assert_not_null(info, "%s: %s", p, je.text);
    const json_t *tens = json_object_get(info, "tensors");
    st_model out, base;
    sm_err err = {0};
    cr_assert_eq(st_open(&out, out_dir, &err), 0, "%s", err.msg);
    spath(p, sizeof p, "models/tinystories-3m");
    cr_assert_eq(st_open(&base, p, &err), 0, "%s", err.msg);
    cr_assert_eq(out.n_tensors, base.n_tensors);
    *n_merged = 0;
    for (uint64_t i = 0; i < out.n_tensors; i++) {
        const st_tensor *t = &out.tensors[i];
        cr_assert_eq(t->dtype, ST_F32, "%s", t->name);
        const json_t *e = json_object_get(tens, t->name);
        if (e) {
            char hex[65];
            sm_sha256_hex(t->data, t->nbytes, hex);
            cr_assert_str_eq(hex, json_string_value(json_object_get(e, "sha256_f32")), "%s", t->name);
            (*n_merged)++;
        } else {
            int64_t bi = st_find(&base, t->name);
            cr_assert_geq(bi, 0);
            const st_tensor *b = &base.tensors[bi];
            cr_assert_eq(b->n_elements, t->n_elements);
            for (uint64_t k = 0; k < t->n_elements; k++) {
                float x, y;
                memcpy(&x, t->data + 4 * k, 4);
                uint16_t h = (uint16_t)(b->data[2 * k] | (b->data[2 * k + 1] << 8));
                y = sm_bf16_to_f32(h);
                cr_assert_eq(sm_f32_bits(x), sm_f32_bits(y), "%s[%llu]", t->name, (unsigned long long)k);
            }
        }
    }
    st_close(&out);
    st_close(&base);
    json_decref(info);
}

static void merge_variant(const char *variant, const char *info_rel, const char *full_sha)
{
    char base[1024], lora[1024];
    spath(base, sizeof base, "models/tinystories-3m");
    snprintf(lora, sizeof lora, "%s/lora/tinystories-3m-domain%s", ts_shared(), variant);
    char *tmp = ts_tmpdir();
    char out[1100];
    snprintf(out, sizeof out, "%s/merged", tmp);
    sm_err err = {0};
    cr_assert_eq(run_merge(base, lora, out, SM_TYPE_F32, &err), 0, "%s", err.msg);
    int n_merged = 0;
    check_against_info(out, info_rel, &n_merged);
    cr_assert_eq(n_merged, 28);
    char p[1200];
    snprintf(p, sizeof p, "%s/model.safetensors", out);
    sm_map m;
    cr_assert_eq(sm_map_open(&m, p, &err), 0);
    char hex[65];
    sm_sha256_hex(m.ptr, m.len, hex);
    cr_assert_str_eq(hex, full_sha);
    sm_map_close(&m);
    /* config.json: only torch_dtype changed */
    snprintf(p, sizeof p, "%s/config.json", out);
    char *txt;
    uint64_t len;
    cr_assert_eq(sm_read_file(p, 1 << 20, &txt, &len, &err), 0);
    cr_assert_not_null(strstr(txt, "\"torch_dtype\": \"float32\""));
    free(txt);
    snprintf(p, sizeof p, "%s/tokenizer.model", out);
    cr_assert_eq(access(p, R_OK), 0);
    ts_rmtree(tmp);
    free(tmp);
}

Test(merge_reference, plain_bit_exact)
{
    char p[1024];
    spath(p, sizeof p, "reference/tinystories-3m/merged-hf/model.safetensors");
    sm_map m;
    sm_err err = {0};
    cr_assert_eq(sm_map_open(&m, p, &err), 0);
    char ref[65];
    sm_sha256_hex(m.ptr, m.len, ref);
    sm_map_close(&m);
    merge_variant("", "reference/tinystories-3m/merged-hf/merge-info.json", ref);
}

Test(merge_reference, rslora_bit_exact)
{
    merge_variant("-rslora", "reference/tinystories-3m/merged-hf-rslora/merge-info.json",
                  "2622783fba139b9268ac6c1e41af2a581e7034fb449847aa306f8b6865496e45");
}

Test(merge_reference, patterns_bit_exact)
{
    merge_variant("-patterns", "reference/tinystories-3m/merged-hf-patterns/merge-info.json",
                  "0ec175bac2be2eb4d0434715554faf338d7ecc54bc10287917b8b982db7f6d0e");
}

Test(merge_reference, compact_rows_rslora)
{
    /* rows [::8] of the reference equal our rows bit for bit */
    char base[1024], lora[1024], ref[1024];
    spath(base, sizeof base, "models/tinystories-3m");
    spath(lora, sizeof lora, "lora/tinystories-3m-domain-rslora");
    spath(ref, sizeof ref, "reference/tinystories-3m/merged-hf-rslora/reference-rows.safetensors");
    char *tmp = ts_tmpdir();
    char out[1100];
    snprintf(out, sizeof out, "%s/m", tmp);
    sm_err err = {0};
    cr_assert_eq(run_merge(base, lora, out, SM_TYPE_F32, &err), 0, "%s", err.msg);
    st_model o, r;
    cr_assert_eq(st_open(&o, out, &err), 0, "%s", err.msg);
    cr_assert_eq(st_open(&r, ref, &err), 0, "%s", err.msg);
    cr_assert_eq(r.n_tensors, 28);
    for (uint64_t i = 0; i < r.n_tensors; i++) {
        const st_tensor *rt = &r.tensors[i];
        int64_t oi = st_find(&o, rt->name);
        cr_assert_geq(oi, 0, "%s", rt->name);
        const st_tensor *ot = &o.tensors[oi];
        int64_t cols = ot->shape[1];
        cr_assert_eq(rt->shape[0], (ot->shape[0] + 7) / 8);
        for (int64_t row = 0; row < rt->shape[0]; row++)
            cr_assert_eq(memcmp(rt->data + row * cols * 4, ot->data + row * 8 * cols * 4, (size_t)cols * 4), 0,
                         "%s row %lld", rt->name, (long long)(row * 8));
    }
    st_close(&o);
    st_close(&r);
    ts_rmtree(tmp);
    free(tmp);
}

Test(merge_reference, gguf_f16_within_one_ulp)
{
    char base[1024], lora[1024], ref[1024];
    spath(base, sizeof base, "reference/tinystories-3m/convert-f16.gguf");
    spath(lora, sizeof lora, "lora/tinystories-3m-domain");
    spath(ref, sizeof ref, "reference/tinystories-3m/merged-export-lora-f16.gguf");
    char *tmp = ts_tmpdir();
    char out[1100];
    snprintf(out, sizeof out, "%s/merged.gguf", tmp);
    sm_err err = {0};
    cr_assert_eq(run_merge(base, lora, out, MERGE_OUT_AUTO, &err), 0, "%s", err.msg);
    gguf_file a, r;
    cr_assert_eq(gguf_open(&a, out, &err), 0, "%s", err.msg);
    cr_assert_eq(gguf_open(&r, ref, &err), 0, "%s", err.msg);
    cr_assert_eq(a.n_tensors, r.n_tensors);
    cr_assert_eq(a.n_kv, r.n_kv);
    uint64_t total = 0, equal = 0;
    int maxd = 0;
    for (uint64_t i = 0; i < r.n_tensors; i++) {
        /* llama-export-lora writes the tensors in its own order: match by name */
        const gguf_tensor *rt = &r.tensors[i];
        char nm[256];
        snprintf(nm, sizeof nm, "%.*s", (int)rt->name.len, rt->name.ptr);
        int64_t ai = gguf_find_tensor(&a, nm);
        cr_assert_geq(ai, 0, "%s missing", nm);
        const gguf_tensor *at = &a.tensors[ai];
        cr_assert_eq(rt->type, at->type);
        cr_assert_eq(rt->nbytes, at->nbytes);
        if (rt->type != SM_TYPE_F16) {
            cr_assert_eq(memcmp(rt->data, at->data, rt->nbytes), 0);
            continue;
        }
        for (uint64_t k = 0; k < rt->nbytes / 2; k++) {
            int x = rt->data[2 * k] | (rt->data[2 * k + 1] << 8), y = at->data[2 * k] | (at->data[2 * k + 1] << 8);
            x = x & 0x8000 ? -(x & 0x7fff) : x;
            y = y & 0x8000 ? -(y & 0x7fff) : y;
            int d = abs(x - y);
            maxd = d > maxd ? d : maxd;
            equal += d == 0;
            total++;
        }
    }
    cr_assert_leq(maxd, 1, "max f16 ulp difference %d", maxd);
    cr_assert_eq(total, 3407872);
    cr_assert_geq((double)equal / (double)total, 0.9999);
    gguf_close(&a);
    gguf_close(&r);
    ts_rmtree(tmp);
    free(tmp);
}

static void export_and_compare(const char *base_rel)
{
    char base[1024], lora[1024], ref[1024];
    spath(base, sizeof base, base_rel);
    spath(lora, sizeof lora, "lora/tinystories-3m-domain");
    spath(ref, sizeof ref, "reference/tinystories-3m/lora-domain.gguf");
    char *tmp = ts_tmpdir();
    char out[1100];
    snprintf(out, sizeof out, "%s/lora.gguf", tmp);
    lora_adapter ad;
    sm_err err = {0};
    cr_assert_eq(lora_open(&ad, lora, &err), 0, "%s", err.msg);
    export_info info;
    cr_assert_eq(export_gguf_lora(&ad, base, out, &info, &err), 0, "%s", err.msg);
    cr_assert_eq(info.n_tensors, 56);
    cr_assert_float_eq(info.alpha, 16.0, 0);
    lora_close(&ad);
    sm_map a, r;
    cr_assert_eq(sm_map_open(&a, out, &err), 0);
    cr_assert_eq(sm_map_open(&r, ref, &err), 0);
    cr_assert_eq(a.len, r.len);
    cr_assert_eq(memcmp(a.ptr, r.ptr, r.len), 0, "exported GGUF LoRA differs from llama.cpp's lora-domain.gguf");
    sm_map_close(&a);
    sm_map_close(&r);
    ts_rmtree(tmp);
    free(tmp);
}

Test(merge_export, byte_identical_with_gguf_base)
{
    export_and_compare("reference/tinystories-3m/convert-f16.gguf");
}

Test(merge_export, byte_identical_with_hf_base)
{
    export_and_compare("models/tinystories-3m");
}

Test(merge_export, rslora_alpha_and_patterns_refused)
{
    char base[1024], lora[1024];
    spath(base, sizeof base, "reference/tinystories-3m/convert-f16.gguf");
    char *tmp = ts_tmpdir();
    char out[1100];
    snprintf(out, sizeof out, "%s/lora.gguf", tmp);
    lora_adapter ad;
    sm_err err = {0};
    export_info info;
    spath(lora, sizeof lora, "lora/tinystories-3m-domain-rslora");
    cr_assert_eq(lora_open(&ad, lora, &err), 0, "%s", err.msg);
    cr_assert_eq(export_gguf_lora(&ad, base, out, &info, &err), 0, "%s", err.msg);
    cr_assert_float_eq(info.alpha, (float)(16.0 * sqrt(8.0)), 0); /* alpha*sqrt(r): llama.cpp's alpha/r = 16/sqrt(8) */
    gguf_file g;
    cr_assert_eq(gguf_open(&g, out, &err), 0, "%s", err.msg);
    float alpha;
    cr_assert_eq(gguf_get_f32(&g, "adapter.lora.alpha", &alpha, &err), 0);
    cr_assert_float_eq(alpha / 8.0f, 16.0f / sqrtf(8.0f), 1e-6);
    sm_str fin;
    cr_assert_eq(gguf_get_str(&g, "general.finetune", &fin, &err), 0);
    cr_assert(sm_str_eq(fin, "domain-rslora"));
    gguf_close(&g);
    lora_close(&ad);
    unlink(out);
    spath(lora, sizeof lora, "lora/tinystories-3m-domain-patterns");
    cr_assert_eq(lora_open(&ad, lora, &err), 0, "%s", err.msg);
    cr_assert_eq(export_gguf_lora(&ad, base, out, &info, &err), SM_EUNSUPP);
    cr_assert_not_null(strstr(err.msg, "alpha_pattern"), "%s", err.msg);
    cr_assert_eq(access(out, F_OK), -1);
    lora_close(&ad);
    ts_rmtree(tmp);
    free(tmp);
}

Test(merge_reference, two_adapters_in_order_with_scales)
{
    /* domain:0.5 then domain:0.5 equals the sequential PEFT loop with scale 1 each */
    char base[1024], lora[1024];
    spath(base, sizeof base, "models/tinystories-3m");
    spath(lora, sizeof lora, "lora/tinystories-3m-domain");
    lora_adapter ads[2];
    sm_err err = {0};
    cr_assert_eq(lora_open(&ads[0], lora, &err), 0);
    cr_assert_eq(lora_open(&ads[1], lora, &err), 0);
    ads[0].user_scale = 0.5;
    ads[1].user_scale = 0.5;
    char *tmp = ts_tmpdir();
    char out[1100];
    snprintf(out, sizeof out, "%s/m", tmp);
    merge_opts o = {.base = base, .out = out, .adapters = ads, .n_adapters = 2, .outtype = SM_TYPE_F32};
    merge_report rep;
    cr_assert_eq(merge_run(&o, &rep, &err), 0, "%s", err.msg);
    cr_assert_eq(rep.n_stats, 28);
    cr_assert_eq(rep.stats[0].n_deltas, 2);
    cr_assert_gt(rep.stats[0].delta_norm, 0.1 * rep.stats[0].base_norm);
    merge_report_free(&rep);
    /* recompute one element of the first merged tensor by hand */
    st_model m, b;
    cr_assert_eq(st_open(&m, out, &err), 0);
    cr_assert_eq(st_open(&b, base, &err), 0);
    const char *name = "model.layers.2.self_attn.v_proj.weight";
    const st_tensor *mt = &m.tensors[st_find(&m, name)], *bt = &b.tensors[st_find(&b, name)];
    const lora_module *mod = NULL;
    for (uint64_t i = 0; i < ads[0].n_modules; i++)
        if (strcmp(ads[0].modules[i].name, "model.layers.2.self_attn.v_proj") == 0)
            mod = &ads[0].modules[i];
    cr_assert_not_null(mod);
    float A[8 * 256], B[128 * 8];
    lora_tensor_to_f32(mod->a, A);
    lora_tensor_to_f32(mod->b, B);
    for (int i = 0; i < 128; i += 37)
        for (int j = 0; j < 256; j += 51) {
            float acc = 0;
            for (int k = 0; k < 8; k++)
                acc += B[i * 8 + k] * A[k * 256 + j];
            float w;
            float bw;
            st_tensor_read_f32(bt, (uint64_t)(i * 256 + j), 1, &bw, &err);
            w = bw + 1.0f * acc;
            w = w + 1.0f * acc;
            float got;
            memcpy(&got, mt->data + 4 * (i * 256 + j), 4);
            cr_assert_eq(got, w, "[%d][%d] %g vs %g", i, j, got, w);
        }
    st_close(&m);
    st_close(&b);
    lora_close(&ads[0]);
    lora_close(&ads[1]);
    ts_rmtree(tmp);
    free(tmp);
}

/* ------------------------------------------------------------ malformed */

typedef struct bad_case {
    const char *what;
    const char *cfg_from, *cfg_to;  /* text replacement in adapter_config.json */
    const char *swap_a, *swap_b;    /* swap these substrings in tensor names */
    const char *drop;               /* drop tensors whose name contains this */
    uint64_t truncate;              /* keep only this many bytes of the tensor file */
    int code;
    const char *needle;
} bad_case;

static char *replace_once(const char *s, const char *from, const char *to)
{
    const char *p = strstr(s, from);
    cr_assert_not_null(p, "'%s' not in config", from);
    size_t a = (size_t)(p - s), fl = strlen(from), tl = strlen(to), n = strlen(s);
    char *r = malloc(n - fl + tl + 1);
    memcpy(r, s, a);
    memcpy(r + a, to, tl);
    memcpy(r + a + tl, p + fl, n - a - fl + 1);
    return r;
}

static char *swap_name(const char *name, const char *x, const char *y)
{
    const char *p = strstr(name, x);
    if (p)
        return replace_once(name, x, y);
    p = strstr(name, y);
    if (p)
        return replace_once(name, y, x);
    return strdup(name);
}

/* Writes a modified copy of the tinystories-3m-domain adapter into dir. */
static void write_bad_adapter(const char *dir, const bad_case *c)
{
    char src[1024], p[1200];
    sm_err err = {0};
    spath(src, sizeof src, "lora/tinystories-3m-domain/adapter_config.json");
    char *cfg;
    uint64_t len;
    cr_assert_eq(sm_read_file(src, 1 << 20, &cfg, &len, &err), 0);
    char *cfg2 = c->cfg_from ? replace_once(cfg, c->cfg_from, c->cfg_to) : strdup(cfg);
    snprintf(p, sizeof p, "%s/adapter_config.json", dir);
    FILE *f = fopen(p, "wb");
    fwrite(cfg2, 1, strlen(cfg2), f);
    fclose(f);
    free(cfg);
    free(cfg2);

    spath(src, sizeof src, "lora/tinystories-3m-domain/adapter_model.safetensors");
    st_model m;
    cr_assert_eq(st_open(&m, src, &err), 0, "%s", err.msg);
    st_writer *w = st_writer_init();
    for (uint64_t i = 0; i < m.n_tensors; i++) {
        const st_tensor *t = &m.tensors[i];
        if (c->drop && strstr(t->name, c->drop))
            continue;
        char *nm = c->swap_a ? swap_name(t->name, c->swap_a, c->swap_b) : strdup(t->name);
        cr_assert_eq(st_writer_add_tensor(w, nm, t->dtype, t->n_dims, t->shape, &err), 0, "%s", err.msg);
        free(nm);
    }
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", dir);
    cr_assert_eq(st_writer_begin(w, p, &err), 0, "%s", err.msg);
    for (uint64_t i = 0; i < m.n_tensors; i++) {
        const st_tensor *t = &m.tensors[i];
        if (c->drop && strstr(t->name, c->drop))
            continue;
        cr_assert_eq(st_writer_write(w, t->data, t->nbytes, &err), 0, "%s", err.msg);
    }
    cr_assert_eq(st_writer_finish(w, &err), 0, "%s", err.msg);
    st_writer_free(w);
    st_close(&m);
    if (c->truncate)
        cr_assert_eq(truncate(p, (off_t)c->truncate), 0);
}

Test(merge_malformed, table_of_bad_adapters)
{
    static const bad_case cases[] = {
        {"DoRA", "\"use_dora\": false", "\"use_dora\": true", NULL, NULL, NULL, 0, SM_EUNSUPP, "DoRA"},
        {"bias training", "\"bias\": \"none\"", "\"bias\": \"all\"", NULL, NULL, NULL, 0, SM_EUNSUPP, "bias = all"},
        {"unknown key", "\"r\": 8,", "\"r\": 8, \"scaling_mode\": \"exotic\",", NULL, NULL, NULL, 0, SM_EUNSUPP, "scaling_mode"},
        {"rank mismatch", "\"r\": 8,", "\"r\": 16,", NULL, NULL, NULL, 0, SM_EMISMATCH, "rank 8, adapter_config.json says 16"},
        {"rank_pattern mismatch", "\"rank_pattern\": {}", "\"rank_pattern\": {\"up_proj\": 4}", NULL, NULL, NULL, 0,
         SM_EMISMATCH, "rank_pattern key up_proj"},
        {"missing lora_B", NULL, NULL, NULL, NULL, "layers.2.self_attn.q_proj.lora_B", 0, SM_EMISSING, "incomplete A/B pair"},
        {"truncated file", NULL, NULL, NULL, NULL, NULL, 300000, SM_ERANGE, "truncated"},
        {"truncated header", NULL, NULL, NULL, NULL, NULL, 4000, SM_EFORMAT, "exceeds the file"},
        {"shape vs base", NULL, NULL, "layers.0.self_attn.k_proj", "layers.0.self_attn.q_proj", NULL, 0, SM_EMISMATCH,
         "of shape [128, 256], the base has [256, 256]"},
        {"another architecture", NULL, NULL, "model.layers.3.", "model.layers.9.", NULL, 0, SM_EMISMATCH,
         "no base tensor 'model.layers.9."},
        {"not in target_modules", NULL, NULL, "self_attn.o_proj", "self_attn.out_proj", NULL, 0, SM_EMISMATCH,
         "do not select it"},
        {"targeted but absent", NULL, NULL, NULL, NULL, "layers.1.mlp.up_proj", 0, SM_EMISSING,
         "no lora_A/lora_B pair for it"},
        {"stray full weight", NULL, NULL, "model.layers.0.mlp.down_proj.lora_A.weight", "lm_head.weight", NULL, 0,
         SM_EFORMAT, "neither lora_A/lora_B nor a modules_to_save"},
        {"DoRA magnitude", NULL, NULL, "layers.0.mlp.up_proj.lora_A.weight", "layers.0.mlp.up_proj.lora_magnitude_vector",
         NULL, 0, SM_EUNSUPP, "DoRA"},
        {"peft type", "\"peft_type\": \"LORA\"", "\"peft_type\": \"LOHA\"", NULL, NULL, NULL, 0, SM_EUNSUPP, "LOHA"},
        {"pissa init", "\"init_lora_weights\": true", "\"init_lora_weights\": \"pissa\"", NULL, NULL, NULL, 0,
         SM_EUNSUPP, "rewrites the base"},
        {"broken JSON", "\"r\": 8,", "\"r\": 8,,", NULL, NULL, NULL, 0, SM_EFORMAT, "invalid JSON"},
    };
    char base[1024];
    spath(base, sizeof base, "models/tinystories-3m");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const bad_case *c = &cases[i];
        char *tmp = ts_tmpdir();
        char ad[1100], out[1100], outg[1100];
        snprintf(ad, sizeof ad, "%s/adapter", tmp);
        mkdir(ad, 0755);
        write_bad_adapter(ad, c);
        snprintf(out, sizeof out, "%s/out", tmp);
        sm_err err = {0};
        int rc = run_merge(base, ad, out, SM_TYPE_F32, &err);
        cr_assert_eq(rc, c->code, "case '%s': rc %d (%s), want %d", c->what, rc, err.msg, c->code);
        cr_assert_not_null(strstr(err.msg, c->needle), "case '%s': message '%s' lacks '%s'", c->what, err.msg, c->needle);
        cr_assert_eq(access(out, F_OK), -1, "case '%s': output left behind", c->what);
        cr_assert_eq(ts_count_entries(tmp), 1, "case '%s': temp files left behind", c->what);
        /* the GGUF path refuses the same adapters */
        char gbase[1024];
        spath(gbase, sizeof gbase, "reference/tinystories-3m/convert-f16.gguf");
        snprintf(outg, sizeof outg, "%s/out.gguf", tmp);
        rc = run_merge(gbase, ad, outg, MERGE_OUT_AUTO, &err);
        cr_assert_lt(rc, 0, "case '%s': GGUF merge accepted it", c->what);
        cr_assert_eq(ts_count_entries(tmp), 1, "case '%s': GGUF output left behind", c->what);
        ts_rmtree(tmp);
        free(tmp);
    }
}

Test(merge_malformed, output_exists_and_base_is_output)
{
    char base[1024], lora[1024];
    spath(base, sizeof base, "models/tinystories-3m");
    spath(lora, sizeof lora, "lora/tinystories-3m-domain");
    char *tmp = ts_tmpdir();
    char p[1100];
    snprintf(p, sizeof p, "%s/keep.txt", tmp);
    FILE *f = fopen(p, "w");
    fputs("x", f);
    fclose(f);
    sm_err err = {0};
    cr_assert_eq(run_merge(base, lora, tmp, SM_TYPE_F32, &err), SM_EINVAL);
    cr_assert_not_null(strstr(err.msg, "not an empty directory"), "%s", err.msg);
    cr_assert_eq(ts_count_entries(tmp), 1);
    cr_assert_eq(run_merge(base, lora, base, SM_TYPE_F32, &err), SM_EINVAL);
    cr_assert_not_null(strstr(err.msg, "base itself"), "%s", err.msg);
    ts_rmtree(tmp);
    free(tmp);
}

/* --force over an existing HF output directory replaces the whole tree in
 * one step (renameat2 exchange on Linux): afterwards the destination holds
 * exactly the new merge, and nothing is left beside it. */
Test(merge_malformed, force_replaces_hf_output_dir)
{
    char base[1024], lora[1024];
    spath(base, sizeof base, "models/tinystories-3m");
    spath(lora, sizeof lora, "lora/tinystories-3m-domain");
    char *tmp = ts_tmpdir();
    char out[1100], p[1200];
    snprintf(out, sizeof out, "%s/out", tmp);
    sm_err err = {0};
    cr_assert_eq(run_merge(base, lora, out, SM_TYPE_F32, &err), 0, "%s", err.msg);
    int n_files = ts_count_entries(out);
    cr_assert_gt(n_files, 2);
    snprintf(p, sizeof p, "%s/stale.txt", out);
    cr_assert_eq(ts_write(p, "x", 1), 0);
    lora_adapter ad;
    cr_assert_eq(lora_open(&ad, lora, &err), 0, "%s", err.msg);
    merge_opts o = {.base = base, .out = out, .adapters = &ad, .n_adapters = 1, .outtype = SM_TYPE_F16, .force = 1};
    merge_report rep;
    cr_assert_eq(merge_run(&o, &rep, &err), 0, "%s", err.msg);
    merge_report_free(&rep);
    lora_close(&ad);
    cr_assert(!ts_exists(p), "the old tree survived");
    cr_assert_eq(ts_count_entries(out), n_files);
    cr_assert_eq(ts_count_entries(tmp), 1, "something was left beside the output");
    st_model m;
    cr_assert_eq(st_open(&m, out, &err), 0, "%s", err.msg);
    cr_assert_eq(m.tensors[0].dtype, ST_F16, "the new (F16) merge is in place");
    st_close(&m);
    ts_rmtree(tmp);
    free(tmp);
}

/* ------------------------------------------------------------ CLI */

static const char *bin_dir(void)
{
    const char *s = getenv("SMELT_BIN");
    return s && *s ? s : "build/release";
}

static int run_cmd(const char *cmd, char *out, size_t out_len)
{
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    size_t n = fread(out, 1, out_len - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

Test(merge_cli, inspect_and_errors)
{
    char cmd[4096], out[65536];
    snprintf(cmd, sizeof cmd, "%s/smelt-merge --inspect %s/lora/qwen2.5-0.5b-real 2>&1", bin_dir(), ts_shared());
    cr_assert_eq(run_cmd(cmd, out, sizeof out), 0, "%s", out);
    cr_assert_not_null(strstr(out, "base model:     Qwen/Qwen2.5-0.5B-Instruct"), "%s", out);
    cr_assert_not_null(strstr(out, "targets:        q_proj, v_proj"), "%s", out);
    cr_assert_not_null(strstr(out, "scale=2"), "%s", out);
    snprintf(cmd, sizeof cmd, "%s/smelt-merge --base %s/models/tinystories-3m --lora %s/lora/qwen2.5-0.5b-real "
             "-o /tmp/smelt-merge-cli-never 2>&1", bin_dir(), ts_shared(), ts_shared());
    int rc = run_cmd(cmd, out, sizeof out);
    cr_assert_neq(rc, 0);
    cr_assert_not_null(strstr(out, "smelt-merge: "), "%s", out);
    cr_assert_not_null(strstr(out, "[896, 896]"), "%s", out);
    cr_assert_eq(access("/tmp/smelt-merge-cli-never", F_OK), -1);
}

Test(merge_export, qwen_real_adapter_with_config_only_base)
{
    /* the real third-party adapter exports with a config-only base dir, as
     * llama.cpp does it: 96 tensors, qwen2 (no Q/K permutation), the model
     * card's base_model turned into general.base_model.* keys */
    char *tmp = ts_tmpdir();
    char cfgdir[1100], p[1200], out[1100], lora[1024];
    snprintf(cfgdir, sizeof cfgdir, "%s/Qwen2.5-0.5B-Instruct", tmp);
    mkdir(cfgdir, 0755);
    snprintf(p, sizeof p, "%s/config.json", cfgdir);
    FILE *f = fopen(p, "w");
    fputs("{\"architectures\": [\"Qwen2ForCausalLM\"], \"hidden_size\": 896, \"num_attention_heads\": 14,"
          " \"num_key_value_heads\": 2, \"num_hidden_layers\": 24}\n", f);
    fclose(f);
    spath(lora, sizeof lora, "lora/qwen2.5-0.5b-real");
    snprintf(out, sizeof out, "%s/q.gguf", tmp);
    lora_adapter ad;
    sm_err err = {0};
    cr_assert_eq(lora_open(&ad, lora, &err), 0, "%s", err.msg);
    export_info info;
    cr_assert_eq(export_gguf_lora(&ad, cfgdir, out, &info, &err), 0, "%s", err.msg);
    cr_assert_eq(info.n_tensors, 96);
    gguf_file g;
    cr_assert_eq(gguf_open(&g, out, &err), 0, "%s", err.msg);
    cr_assert_eq(g.n_tensors, 96);
    sm_str s;
    cr_assert_eq(gguf_get_str(&g, "general.architecture", &s, &err), 0);
    cr_assert(sm_str_eq(s, "qwen2"));
    cr_assert_eq(gguf_get_str(&g, "general.name", &s, &err), 0);
    cr_assert(sm_str_eq(s, "Qwen2.5 0.5b Real"));
    cr_assert_eq(gguf_get_str(&g, "general.size_label", &s, &err), 0);
    cr_assert(sm_str_eq(s, "0.5B"));
    cr_assert_eq(gguf_get_str(&g, "general.base_model.0.repo_url", &s, &err), 0);
    cr_assert(sm_str_eq(s, "https://huggingface.co/Qwen/Qwen2.5-0.5B-Instruct"));
    cr_assert_eq(gguf_get_str(&g, "general.base_model.0.name", &s, &err), 0);
    cr_assert(sm_str_eq(s, "Qwen2.5 0.5B Instruct"));
    /* lora_b of attn_q is not permuted for qwen2: bytes equal the adapter's */
    int64_t ti = gguf_find_tensor(&g, "blk.7.attn_q.weight.lora_b");
    cr_assert_geq(ti, 0);
    cr_assert_eq(g.tensors[ti].ne[0], 8);
    cr_assert_eq(g.tensors[ti].ne[1], 896);
    const lora_module *m = NULL;
    for (uint64_t i = 0; i < ad.n_modules; i++)
        if (strcmp(ad.modules[i].name, "model.layers.7.self_attn.q_proj") == 0)
            m = &ad.modules[i];
    cr_assert_not_null(m);
    cr_assert_eq(memcmp(g.tensors[ti].data, m->b->data, m->b->nbytes), 0);
    gguf_close(&g);
    lora_close(&ad);
    ts_rmtree(tmp);
    free(tmp);
}

Test(merge_cli, merged_dirs_convert_like_llama_cpp)
{
    /* end to end: smelt-merge then smelt-convert --outtype f16 gives the
     * sha256 llama.cpp's convert_hf_to_gguf.py gave for the numpy merges
     * (lora.json "merged_ggufs"; the directory name sets general.name) */
    static const struct {
        const char *variant, *sha;
    } cases[] = {
        {"", "9fc48cc0d75921cbfabfc2f156520115bc08bf45b5b066e58c55c0733d013668"},
        {"-rslora", "b66db41aef4c5e97c89a1cf4848181289515899d48e4d1840e9f9800d8cded25"},
        {"-patterns", "6e3ba77441694db0ef203fddbe306c8559cd822becc0cb19edf33e6d2f6aaf11"},
    };
    char *tmp = ts_tmpdir();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char cmd[8192], out[4096], gguf[1200];
        snprintf(gguf, sizeof gguf, "%s/convert-merged%s-f16.gguf", tmp, cases[i].variant);
        snprintf(cmd, sizeof cmd,
                 "%s/smelt-merge --base %s/models/tinystories-3m --lora %s/lora/tinystories-3m-domain%s -o %s/merged-hf%s "
                 "--outtype f32 --quiet >/dev/null && %s/smelt-convert %s/merged-hf%s --outtype f16 --outfile %s --quiet 2>&1",
                 bin_dir(), ts_shared(), ts_shared(), cases[i].variant, tmp, cases[i].variant, bin_dir(), tmp,
                 cases[i].variant, gguf);
        cr_assert_eq(run_cmd(cmd, out, sizeof out), 0, "%s", out);
        sm_map m;
        sm_err err = {0};
        cr_assert_eq(sm_map_open(&m, gguf, &err), 0, "%s", err.msg);
        char hex[65];
        sm_sha256_hex(m.ptr, m.len, hex);
        sm_map_close(&m);
        cr_assert_str_eq(hex, cases[i].sha, "merged-hf%s", cases[i].variant);
    }
    ts_rmtree(tmp);
    free(tmp);
}
