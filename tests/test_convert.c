/* smelt-convert: byte-identical output to llama.cpp's converter on every
 * shared model, the Q/K permutation, naming heuristics, and a table of
 * malformed checkpoints that must fail cleanly without leaving a file. */
#include <criterion/criterion.h>

#include "convert/convert.h"
#include "formats/naming.h"
#include "formats/gguf.h"
#include "support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Compares two GGUFs; on a difference writes which key, tensor info or
 * tensor data differs into why. Returns 1 when the files are identical. */
static int gguf_same(const char *a, const char *b, char *why, size_t cap)
{
    size_t la, lb;
    uint8_t *pa = ts_read(a, &la), *pb = ts_read(b, &lb);
    int same = pa && pb && la == lb && memcmp(pa, pb, la) == 0;
    free(pa);
    free(pb);
    if (same)
        return 1;
    gguf_file ga, gb;
    sm_err e;
    if (gguf_open(&ga, a, &e)) {
        snprintf(why, cap, "%s does not parse: %s", a, e.msg);
        return 0;
    }
    if (gguf_open(&gb, b, &e)) {
        gguf_close(&ga);
        snprintf(why, cap, "%s does not parse: %s", b, e.msg);
        return 0;
    }
    snprintf(why, cap, "sizes %zu vs %zu", la, lb);
    uint64_t n = ga.n_kv < gb.n_kv ? ga.n_kv : gb.n_kv;
    for (uint64_t i = 0; i < n; i++) {
        const gguf_kv *x = &ga.kv[i], *y = &gb.kv[i];
        if (x->key.len != y->key.len || memcmp(x->key.ptr, y->key.ptr, x->key.len)) {
            snprintf(why, cap, "key #%llu: '%.*s' vs '%.*s'", (unsigned long long)i, (int)x->key.len, x->key.ptr,
                     (int)y->key.len, y->key.ptr);
            goto out;
        }
        if (x->type != y->type || x->raw_len != y->raw_len || memcmp(x->raw, y->raw, x->raw_len)) {
            snprintf(why, cap, "value of key '%.*s' differs", (int)x->key.len, x->key.ptr);
            goto out;
        }
    }
    if (ga.n_kv != gb.n_kv) {
        snprintf(why, cap, "key counts %llu vs %llu", (unsigned long long)ga.n_kv, (unsigned long long)gb.n_kv);
        goto out;
    }
    n = ga.n_tensors < gb.n_tensors ? ga.n_tensors : gb.n_tensors;
    for (uint64_t i = 0; i < n; i++) {
        const gguf_tensor *x = &ga.tensors[i], *y = &gb.tensors[i];
        if (x->name.len != y->name.len || memcmp(x->name.ptr, y->name.ptr, x->name.len) || x->type != y->type ||
            memcmp(x->ne, y->ne, sizeof x->ne) || x->offset != y->offset) {
            snprintf(why, cap, "tensor info #%llu '%.*s' differs", (unsigned long long)i, (int)x->name.len,
                     x->name.ptr);
            goto out;
        }
        if (memcmp(x->data, y->data, x->nbytes)) {
            snprintf(why, cap, "data of tensor '%.*s' differs", (int)x->name.len, x->name.ptr);
            goto out;
        }
    }
    if (ga.n_tensors != gb.n_tensors)
        snprintf(why, cap, "tensor counts %llu vs %llu", (unsigned long long)ga.n_tensors,
                 (unsigned long long)gb.n_tensors);
out:
    gguf_close(&ga);
    gguf_close(&gb);
    return 0;
}

static void check_convert(const char *model, int outtype, const char *ref, int vocab_only)
{
    char *dir = ts_tmpdir();
    char out[1200], why[1024] = "";
    snprintf(out, sizeof out, "%s/out.gguf", dir);
    cv_opts o = {0};
    char mdir[1024];
    snprintf(mdir, sizeof mdir, "%s", ts_path(model));
    o.model_dir = mdir;
    o.outfile = out;
    o.outtype = outtype;
    o.vocab_only = vocab_only;
    cv_summary sum;
    sm_err err = {0};
    int rc = cv_convert(&o, &sum, &err);
    cr_assert_eq(rc, 0, "%s: %s", model, err.msg);
    cr_assert(gguf_same(out, ts_path(ref), why, sizeof why), "%s --outtype %s vs %s: %s", model,
              cv_outtype_name(outtype), ref, why);
    cr_assert_eq(ts_count_entries(dir), 1, "stray files in the output directory");
    ts_rmtree(dir);
    free(dir);
}

Test(convert, stories260K_all_outtypes_match_llama_cpp)
{
    check_convert("models/stories260K", CV_OUT_F32, "reference/stories260K/convert-f32.gguf", 0);
    check_convert("models/stories260K", CV_OUT_F16, "reference/stories260K/convert-f16.gguf", 0);
    check_convert("models/stories260K", CV_OUT_BF16, "reference/stories260K/convert-bf16.gguf", 0);
    check_convert("models/stories260K", CV_OUT_Q8_0, "reference/stories260K/convert-q8_0.gguf", 0);
}

Test(convert, sharded_bf16_matches_llama_cpp)
{
    check_convert("models/stories260K-bf16-sharded", CV_OUT_BF16, "reference/stories260K/convert-sharded-bf16.gguf", 0);
    /* auto keeps BF16 for a BF16 checkpoint */
    check_convert("models/stories260K-bf16-sharded", CV_OUT_AUTO, "reference/stories260K/convert-sharded-bf16.gguf", 0);
}

Test(convert, tinystories_all_outtypes_match_llama_cpp)
{
    check_convert("models/tinystories-3m", CV_OUT_F32, "reference/tinystories-3m/convert-f32.gguf", 0);
    check_convert("models/tinystories-3m", CV_OUT_F16, "reference/tinystories-3m/convert-f16.gguf", 0);
    check_convert("models/tinystories-3m", CV_OUT_BF16, "reference/tinystories-3m/convert-bf16.gguf", 0);
    check_convert("models/tinystories-3m", CV_OUT_Q8_0, "reference/tinystories-3m/convert-q8_0.gguf", 0);
}

Test(convert, qwen2_tiny_matches_llama_cpp)
{
    check_convert("models/qwen2-tiny", CV_OUT_F16, "reference/qwen2-tiny/convert-f16.gguf", 0);
    check_convert("models/qwen2-tiny", CV_OUT_F16, "vocab/ggml-vocab-qwen2.gguf", 1);
}

Test(convert, permute_qk_matches_llama_layout)
{
    /* 2 heads of dim 4, one column: rows (h, j, i) -> (h, i, j) */
    float src[8] = {0, 1, 2, 3, 4, 5, 6, 7}, dst[8];
    cr_assert_eq(cv_permute_qk(src, dst, 8, 1, 4, 2), 0);
    float want[8] = {0, 2, 1, 3, 4, 6, 5, 7};
    for (int i = 0; i < 8; i++)
        cr_assert_eq(dst[i], want[i], "row %d", i);
    cr_assert_eq(cv_permute_qk(src, dst, 6, 1, 4, 2), SM_EINVAL);
}

Test(convert, naming_heuristics)
{
    struct {
        const char *id;
        int64_t params;
        const char *name, *basename, *finetune, *version, *size;
    } cases[] = {
        {"stories260K", 260000, "stories260K", NULL, NULL, NULL, NULL},
        {"tinystories-3m", 3410176, "Tinystories 3m", "tinystories", NULL, NULL, "3M"},
        {"stories260K-bf16-sharded", 260000, "stories260K Bf16 Sharded", "stories260K", "sharded", NULL, NULL},
        {"qwen2-tiny", 10000000, "Qwen2 Tiny", NULL, NULL, NULL, NULL},
        {"merged-hf", 3410176, "Merged Hf", NULL, NULL, NULL, NULL},
        {"Mixtral-8x7B-Instruct-v0.1", 0, "Mixtral 8x7B Instruct v0.1", "Mixtral", "Instruct", "v0.1", "8x7B"},
        {"Llama-2-7b-hf", 0, "Llama 2 7b Hf", "Llama-2", "hf", NULL, "7B"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sm_naming n = {0};
        cr_assert_eq(sm_naming_from_id(&n, cases[i].id, cases[i].params), 0);
#define EQ(f)                                                                                              \
    cr_expect((n.f == NULL && cases[i].f == NULL) || (n.f && cases[i].f && strcmp(n.f, cases[i].f) == 0), \
              "%s: " #f " = '%s', expected '%s'", cases[i].id, n.f ? n.f : "(none)", cases[i].f ? cases[i].f : "(none)")
        EQ(name);
        EQ(basename);
        EQ(finetune);
        EQ(version);
        cr_expect((n.size_label == NULL && cases[i].size == NULL) ||
                      (n.size_label && cases[i].size && strcmp(n.size_label, cases[i].size) == 0),
                  "%s: size_label '%s'", cases[i].id, n.size_label ? n.size_label : "(none)");
#undef EQ
        sm_naming_free(&n);
    }
    char lbl[32];
    sm_size_label(260000 + 1234, lbl, sizeof lbl);
    cr_assert_str_eq(lbl, "261K");
    sm_size_label(3410176, lbl, sizeof lbl);
    cr_assert_str_eq(lbl, "3.4M");
    sm_size_label(1100048384ull, lbl, sizeof lbl);
    cr_assert_str_eq(lbl, "1.1B");
    sm_size_label(9988160, lbl, sizeof lbl);
    cr_assert_str_eq(lbl, "10M"); /* python: round(9.99) has 2 digits -> no decimals */
}

/* ---------------------------------------------------------- malformed */

/* A model dir "<tmp>/m" holding stories260K's files. */
static char *make_model(char **root)
{
    *root = ts_tmpdir();
    char *m = malloc(1200);
    snprintf(m, 1200, "%s/m", *root);
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' && cp %s/models/stories260K/* '%s/'", m, ts_shared(), m);
    cr_assert_eq(system(cmd), 0);
    return m;
}

static void put(const char *dir, const char *file, const char *text)
{
    char p[1400];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    cr_assert_eq(ts_write(p, text, strlen(text)), 0);
}

/* Writes a safetensors file from a header JSON and data bytes. */
static void put_st(const char *dir, const char *file, const char *hdr, uint64_t hdr_len_field, size_t data_len)
{
    char p[1400];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    size_t hl = strlen(hdr);
    size_t total = 8 + hl + data_len;
    uint8_t *b = calloc(1, total);
    uint64_t field = hdr_len_field ? hdr_len_field : hl;
    memcpy(b, &field, 8);
    memcpy(b + 8, hdr, hl);
    cr_assert_eq(ts_write(p, b, total), 0);
    free(b);
}

typedef void (*mutate_fn)(const char *m);

static void m_no_config(const char *m) { char p[1300]; snprintf(p, sizeof p, "%s/config.json", m); remove(p); }
static void m_config_not_json(const char *m) { put(m, "config.json", "{\"architectures\": [\"LlamaForCausalLM\""); }
static void m_config_array(const char *m) { put(m, "config.json", "[1,2]"); }
static void m_config_dup_key(const char *m)
{
    put(m, "config.json", "{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":64,\"hidden_size\":32}");
}
static void m_unknown_arch(const char *m)
{
    put(m, "config.json", "{\"architectures\":[\"GPTNeoXForCausalLM\"],\"num_hidden_layers\":5,\"hidden_size\":64,\"num_attention_heads\":8}");
}
static void m_no_arch(const char *m) { put(m, "config.json", "{\"num_hidden_layers\":5}"); }
static void m_no_layers(const char *m)
{
    put(m, "config.json", "{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":64,\"num_attention_heads\":8,\"vocab_size\":512}");
}
static void m_bad_heads(const char *m)
{
    put(m, "config.json", "{\"architectures\":[\"LlamaForCausalLM\"],\"num_hidden_layers\":5,\"hidden_size\":64,\"num_attention_heads\":\"8\",\"vocab_size\":512}");
}
static void m_negative_layers(const char *m)
{
    put(m, "config.json", "{\"architectures\":[\"LlamaForCausalLM\"],\"num_hidden_layers\":-5,\"hidden_size\":64,\"num_attention_heads\":8,\"vocab_size\":512}");
}
static void m_no_vocab_size(const char *m)
{
    put(m, "config.json", "{\"architectures\":[\"LlamaForCausalLM\"],\"num_hidden_layers\":5,\"hidden_size\":64,\"num_attention_heads\":8,\"num_key_value_heads\":4}");
}
static void m_heads_not_dividing_rows(const char *m)
{
    put(m, "config.json", "{\"architectures\":[\"LlamaForCausalLM\"],\"num_hidden_layers\":5,\"hidden_size\":64,\"num_attention_heads\":7,\"num_key_value_heads\":4,\"vocab_size\":512}");
}
static void m_no_weights(const char *m) { char p[1300]; snprintf(p, sizeof p, "%s/model.safetensors", m); remove(p); }
static void truncate_st(const char *m, size_t keep)
{
    char p[1300];
    snprintf(p, sizeof p, "%s/model.safetensors", m);
    size_t n;
    uint8_t *b = ts_read(p, &n);
    cr_assert(b && keep < n);
    cr_assert_eq(ts_write(p, b, keep), 0);
    free(b);
}
static void m_st_truncated_4(const char *m) { truncate_st(m, 4); }
static void m_st_truncated_header(const char *m) { truncate_st(m, 100); }
static void m_st_truncated_data(const char *m) { truncate_st(m, 500000); }
static void m_st_huge_header(const char *m) { put_st(m, "model.safetensors", "{}", 1ull << 40, 0); }
static void m_st_header_past_end(const char *m) { put_st(m, "model.safetensors", "{}", 4096, 0); }
static void m_st_not_json(const char *m) { put_st(m, "model.safetensors", "{\"a\": [", 0, 0); }
static void m_st_dup(const char *m)
{
    put_st(m, "model.safetensors",
           "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
           0, 8);
}
static void m_st_bad_dtype(const char *m)
{
    put_st(m, "model.safetensors", "{\"model.norm.weight\":{\"dtype\":\"F99\",\"shape\":[1],\"data_offsets\":[0,4]}}", 0, 4);
}
static void m_st_i64(const char *m)
{
    put_st(m, "model.safetensors", "{\"model.norm.weight\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 0, 8);
}
static void m_st_span_mismatch(const char *m)
{
    put_st(m, "model.safetensors", "{\"model.norm.weight\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 0, 8);
}
static void m_st_overflow_shape(const char *m)
{
    put_st(m, "model.safetensors",
           "{\"model.norm.weight\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,8]}}", 0, 8);
}
static void m_st_gap(const char *m)
{
    put_st(m, "model.safetensors",
           "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
           0, 12);
}
static void m_st_overlap(const char *m)
{
    put_st(m, "model.safetensors",
           "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
           0, 12);
}
static void m_st_past_end(const char *m)
{
    put_st(m, "model.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 0, 8);
}
static void m_st_trailing(const char *m)
{
    put_st(m, "model.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 0, 12);
}
static void m_st_bad_offsets(const char *m)
{
    put_st(m, "model.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 0, 4);
}
static void m_st_shape_string(const char *m)
{
    put_st(m, "model.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":\"1\",\"data_offsets\":[0,4]}}", 0, 4);
}
static void m_st_unmappable(const char *m)
{
    put_st(m, "model.safetensors", "{\"model.vision.weight\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 0, 4);
}
static void m_sharded_missing(const char *m)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "rm -f '%s'/model*.safetensors && cp %s/models/stories260K-bf16-sharded/model-00001-of-00002.safetensors "
             "%s/models/stories260K-bf16-sharded/model.safetensors.index.json '%s/'", m, ts_shared(), ts_shared(), m);
    cr_assert_eq(system(cmd), 0);
}
static void m_index_not_json(const char *m)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "rm -f '%s'/model*.safetensors && cp %s/models/stories260K-bf16-sharded/*.safetensors '%s/'", m,
             ts_shared(), m);
    cr_assert_eq(system(cmd), 0);
    put(m, "model.safetensors.index.json", "{\"weight_map\": ");
}
static void m_index_no_map(const char *m)
{
    m_index_not_json(m);
    put(m, "model.safetensors.index.json", "{\"metadata\": {}}");
}
static void m_index_wrong_shard(const char *m)
{
    m_index_not_json(m);
    put(m, "model.safetensors.index.json",
        "{\"weight_map\": {\"model.embed_tokens.weight\": \"model-00002-of-00002.safetensors\"}}");
}
static void m_index_extra_name(const char *m)
{
    m_index_not_json(m);
    put(m, "model.safetensors.index.json", "{\"weight_map\": {\"model.nope.weight\": \"model-00001-of-00002.safetensors\"}}");
}
static void m_index_path_escape(const char *m)
{
    m_index_not_json(m);
    put(m, "model.safetensors.index.json", "{\"weight_map\": {\"model.norm.weight\": \"../x.safetensors\"}}");
}
static void m_no_tokenizer(const char *m) { char p[1300]; snprintf(p, sizeof p, "%s/tokenizer.model", m); remove(p); }
static void m_tokenizer_garbage(const char *m) { put(m, "tokenizer.model", "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"); }

typedef struct ccase {
    const char *what;
    mutate_fn fn;
    int code;
    const char *needle;
} ccase;

Test(convert, malformed_inputs_fail_cleanly)
{
    static const ccase cases[] = {
        {"config.json missing", m_no_config, SM_EMISSING, "config.json"},
        {"config.json not JSON", m_config_not_json, SM_EFORMAT, "invalid JSON"},
        {"config.json an array", m_config_array, SM_EFORMAT, "not a JSON object"},
        {"config.json duplicate key", m_config_dup_key, SM_EFORMAT, "duplicate"},
        {"unknown architecture", m_unknown_arch, SM_EUNSUPP, "Qwen2ForCausalLM"},
        {"no architectures", m_no_arch, SM_EMISSING, "architectures"},
        {"no num_hidden_layers", m_no_layers, SM_EMISSING, "num_hidden_layers"},
        {"heads as a string", m_bad_heads, SM_EFORMAT, "num_attention_heads"},
        {"negative layer count", m_negative_layers, SM_EFORMAT, "num_hidden_layers"},
        {"no vocab_size", m_no_vocab_size, SM_EMISSING, "vocab_size"},
        {"heads do not divide q rows", m_heads_not_dividing_rows, SM_EFORMAT, "heads"},
        {"no weights", m_no_weights, SM_EMISSING, "safetensors"},
        {"safetensors 4 bytes", m_st_truncated_4, SM_EFORMAT, "truncated"},
        {"safetensors header cut", m_st_truncated_header, SM_EFORMAT, "truncated"},
        {"safetensors data cut", m_st_truncated_data, SM_ERANGE, "past the"},
        {"header length 1 TiB", m_st_huge_header, SM_ERANGE, "limit"},
        {"header past end", m_st_header_past_end, SM_EFORMAT, "truncated"},
        {"header not JSON", m_st_not_json, SM_EFORMAT, "JSON"},
        {"duplicate tensor name", m_st_dup, SM_EFORMAT, "duplicate"},
        {"unknown dtype", m_st_bad_dtype, SM_ETYPE, "F99"},
        {"I64 weights", m_st_i64, SM_ETYPE, "I64"},
        {"span != shape x dtype", m_st_span_mismatch, SM_EMISMATCH, "needs 12"},
        {"shape overflows", m_st_overflow_shape, SM_ERANGE, "overflows"},
        {"gap between tensors", m_st_gap, SM_EFORMAT, "contiguous"},
        {"overlapping tensors", m_st_overlap, SM_EFORMAT, "contiguous"},
        {"tensor past end", m_st_past_end, SM_ERANGE, "past the"},
        {"trailing bytes", m_st_trailing, SM_EFORMAT, "trailing"},
        {"offsets reversed", m_st_bad_offsets, SM_EFORMAT, "data_offsets"},
        {"shape not an array", m_st_shape_string, SM_EFORMAT, "shape"},
        {"unmappable tensor", m_st_unmappable, SM_EUNSUPP, "model.vision.weight"},
        {"missing shard", m_sharded_missing, SM_EMISSING, "model-00002-of-00002.safetensors"},
        {"index not JSON", m_index_not_json, SM_EFORMAT, "index.json"},
        {"index without weight_map", m_index_no_map, SM_EFORMAT, "weight_map"},
        {"index maps to wrong shard", m_index_wrong_shard, SM_EMISMATCH, "mapped to"},
        {"index names unknown tensor", m_index_extra_name, SM_EMISSING, "model.nope.weight"},
        {"index escapes the dir", m_index_path_escape, SM_EFORMAT, "plain file name"},
        {"no tokenizer", m_no_tokenizer, SM_EMISSING, "tokenizer"},
        {"tokenizer.model garbage", m_tokenizer_garbage, 0, "tokenizer.model"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *root;
        char *m = make_model(&root);
        cases[i].fn(m);
        char out[1300];
        snprintf(out, sizeof out, "%s/out.gguf", root);
        cv_opts o = {0};
        o.model_dir = m;
        o.outfile = out;
        o.outtype = CV_OUT_F16;
        cv_summary sum;
        sm_err err = {0};
        int rc = cv_convert(&o, &sum, &err);
        if (cases[i].code)
            cr_expect_eq(rc, cases[i].code, "%s: code %d (%s)", cases[i].what, rc, err.msg);
        else
            cr_expect(rc < 0, "%s: accepted", cases[i].what);
        cr_expect(strstr(err.msg, cases[i].needle) != NULL, "%s: message '%s' lacks '%s'", cases[i].what, err.msg,
                  cases[i].needle);
        cr_expect(!ts_exists(out), "%s: output file left behind", cases[i].what);
        cr_expect_eq(ts_count_entries(root), 1, "%s: stray file in the output dir", cases[i].what);
        ts_rmtree(root);
        free(root);
        free(m);
    }
}

Test(convert, cli_refuses_existing_output_and_reports_errors)
{
    char *dir = ts_tmpdir();
    char *out_text = NULL;
    int st = ts_run(&out_text, "cd '%s' && echo keep > out.gguf && %s/smelt-convert %s/models/stories260K --outfile out.gguf",
                    dir, ts_bin(), ts_shared());
    cr_assert_neq(st, 0);
    cr_assert(strstr(out_text, "smelt-convert: ") && strstr(out_text, "--force"), "%s", out_text);
    free(out_text);
    char p[1200];
    snprintf(p, sizeof p, "%s/out.gguf", dir);
    size_t n;
    uint8_t *b = ts_read(p, &n);
    cr_assert(b && n == 5 && memcmp(b, "keep\n", 5) == 0, "existing output was modified");
    free(b);
    st = ts_run(&out_text, "cd '%s' && %s/smelt-convert %s/models/stories260K --outfile out.gguf --force --quiet", dir,
                ts_bin(), ts_shared());
    cr_assert_eq(st, 0, "%s", out_text);
    free(out_text);
    cr_assert(gguf_same(p, ts_path("reference/stories260K/convert-f16.gguf"), (char[1024]){0}, 1024));
    st = ts_run(&out_text, "%s/smelt-convert %s/nonexistent-dir", ts_bin(), dir);
    cr_assert_eq(st, 1);
    cr_assert(strstr(out_text, "nonexistent-dir") && strstr(out_text, "config.json"), "%s", out_text);
    free(out_text);
    st = ts_run(&out_text, "%s/smelt-convert %s/models/stories260K --outtype q4_0", ts_bin(), ts_shared());
    cr_assert_eq(st, 2);
    free(out_text);
    ts_rmtree(dir);
    free(dir);
}

/* cv_config_kv (the config.json half on a buffer) writes exactly the KVs a
 * vocab-only conversion writes before its tokenizer.* keys. */
Test(convert, config_kv_matches_vocab_only_conversion)
{
    static const char *const models[] = {"models/stories260K", "models/tinystories-3m", "models/qwen2-tiny"};
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) {
        char *dir = ts_tmpdir();
        char a[1200], b[1200], mdir[1024], cfgp[1100];
        snprintf(a, sizeof a, "%s/file.gguf", dir);
        snprintf(b, sizeof b, "%s/mem.gguf", dir);
        snprintf(mdir, sizeof mdir, "%s", ts_path(models[i]));
        cv_opts o = {0};
        o.model_dir = mdir;
        o.outfile = a;
        o.outtype = CV_OUT_F16;
        o.vocab_only = 1;
        cv_summary sum;
        sm_err err = {0};
        cr_assert_eq(cv_convert(&o, &sum, &err), 0, "%s: %s", models[i], err.msg);

        snprintf(cfgp, sizeof cfgp, "%s/config.json", mdir);
        size_t len;
        char *text = (char *)ts_read(cfgp, &len);
        cr_assert_not_null(text);
        gguf_writer *w = gguf_writer_init();
        cv_config_info ci;
        cr_assert_eq(cv_config_kv(w, text, len, cfgp, strrchr(mdir, '/') + 1, CV_OUT_F16, 1, &ci, &err), 0, "%s: %s",
                     models[i], err.msg);
        cr_assert_str_eq(ci.arch, sum.arch);
        cr_assert_gt(ci.vocab_size, 0);
        cr_assert_eq(gguf_writer_begin(w, b, &err), 0, "%s", err.msg);
        cr_assert_eq(gguf_writer_finish(w, &err), 0, "%s", err.msg);
        gguf_writer_free(w);
        free(text);

        gguf_file fa, fb;
        cr_assert_eq(gguf_open(&fa, a, &err), 0, "%s", err.msg);
        cr_assert_eq(gguf_open(&fb, b, &err), 0, "%s", err.msg);
        cr_assert_gt(fb.n_kv, 8, "%s", models[i]);
        cr_assert_lt(fb.n_kv, fa.n_kv);
        for (uint64_t k = 0; k < fb.n_kv; k++) {
            const gguf_kv *x = &fa.kv[k], *y = &fb.kv[k];
            cr_assert(x->key.len == y->key.len && memcmp(x->key.ptr, y->key.ptr, x->key.len) == 0 &&
                          x->type == y->type && x->raw_len == y->raw_len && memcmp(x->raw, y->raw, x->raw_len) == 0,
                      "%s: KV %llu (%.*s) differs", models[i], (unsigned long long)k, (int)y->key.len, y->key.ptr);
        }
        /* the next key of the conversion is the vocabulary's */
        cr_assert(fa.kv[fb.n_kv].key.len > 10 && memcmp(fa.kv[fb.n_kv].key.ptr, "tokenizer.", 10) == 0);
        gguf_close(&fa);
        gguf_close(&fb);
        ts_rmtree(dir);
        free(dir);
    }
}

/* Malformed config.json text: cv_config_kv fails as cv_convert does on the
 * same bytes in a file (same code and message, path aside). */
Test(convert, config_kv_malformed_like_convert)
{
    static const struct {
        const char *text;
        int code;
        const char *needle;
    } bad[] = {
        {"{\"architectures\": [\"LlamaForCausalLM\"", SM_EFORMAT, "invalid JSON"},
        {"[1,2]", SM_EFORMAT, "not a JSON object"},
        {"{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":64,\"hidden_size\":32}", SM_EFORMAT, "duplicate"},
        {"{\"architectures\":[\"GPTNeoXForCausalLM\"],\"num_hidden_layers\":5}", SM_EUNSUPP, "Qwen2ForCausalLM"},
        {"{\"num_hidden_layers\":5}", SM_EMISSING, "architectures"},
        {"{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":64,\"num_attention_heads\":8}", SM_EMISSING,
         "num_hidden_layers"},
        {"{\"architectures\":[\"LlamaForCausalLM\"],\"num_hidden_layers\":5,\"hidden_size\":64,"
         "\"num_attention_heads\":\"8\"}",
         SM_EFORMAT, "num_attention_heads"},
        {"{\"architectures\":[\"LlamaForCausalLM\"],\"num_hidden_layers\":-5,\"hidden_size\":64,"
         "\"num_attention_heads\":8}",
         SM_EFORMAT, "num_hidden_layers"},
        {"{\"architectures\":[\"LlamaForCausalLM\"],\"num_hidden_layers\":5,\"hidden_size\":64,"
         "\"num_attention_heads\":0}",
         SM_EFORMAT, "is 0"},
        {"{\"architectures\":[\"LlamaForCausalLM\"],\"num_hidden_layers\":5,\"hidden_size\":64,"
         "\"num_attention_heads\":8}",
         SM_EMISSING, "vocab_size"},
        {"{\"architectures\":[\"Qwen2ForCausalLM\"],\"num_hidden_layers\":5,\"hidden_size\":64,"
         "\"num_attention_heads\":8,\"rope_scaling\":{\"type\":\"yarn\",\"factor\":4}}",
         SM_EMISSING, "original_max_position_embeddings"},
        {"{\"architectures\":[\"LlamaForCausalLM\"],\"num_hidden_layers\":5,\"hidden_size\":64,"
         "\"num_attention_heads\":8,\"vocab_size\":512,\"rms_norm_eps\":\"x\"}",
         SM_EFORMAT, "rms_norm_eps"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        gguf_writer *w = gguf_writer_init();
        cv_config_info ci;
        sm_err e1 = {0}, e2 = {0};
        int rc = cv_config_kv(w, bad[i].text, strlen(bad[i].text), "config.json", "m", CV_OUT_F16, 1, &ci, &e1);
        gguf_writer_free(w);
        cr_assert_eq(rc, bad[i].code, "case %zu: %d %s", i, rc, e1.msg);
        cr_assert(strstr(e1.msg, bad[i].needle), "case %zu: %s", i, e1.msg);
        /* the same bytes through cv_convert (vocab-only) */
        char *root;
        char *m = make_model(&root);
        put(m, "config.json", bad[i].text);
        char out[1300];
        snprintf(out, sizeof out, "%s/out.gguf", root);
        cv_opts o = {0};
        o.model_dir = m;
        o.outfile = out;
        o.outtype = CV_OUT_F16;
        o.vocab_only = 1;
        cv_summary sum;
        cr_assert_eq(cv_convert(&o, &sum, &e2), rc, "case %zu: %s", i, e2.msg);
        const char *t1 = strstr(e1.msg, "config.json"), *t2 = strstr(e2.msg, "config.json");
        cr_assert(t1 && t2 && strcmp(t1, t2) == 0, "case %zu: '%s' vs '%s'", i, e1.msg, e2.msg);
        ts_rmtree(root);
        free(root);
        free(m);
    }
}
