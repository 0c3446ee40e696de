/* test_faults.c — allocation failure at every step of every load path.
 *
 * Each case runs a load path once unarmed (twice: the first run may do
 * one-time initialisation) to count its allocations, then once per N with
 * the N-th allocation failing (tests/faults/faultalloc.c). Every failing run
 * must return a negative sm_code with a message, leave no output or temp
 * file behind, and free everything it allocated (the shim's live-pointer
 * count returns to where it was; ASan's leak checker watches the rest).
 * "Every N" is literal up to FA_EXHAUSTIVE allocations (every case below
 * stays under it: the largest, merge, makes 364); a path allocating more
 * would be sampled at FA_SAMPLES evenly spaced N plus the first and last
 * FA_EDGE, and its log line would show fewer points tested than allocations.
 * Inputs are chosen small for that reason: the BPE case uses a 400-token cut
 * of qwen2-tiny's tokenizer.json instead of the 7 MB original. */
#include "convert/convert.h"
#include "faults/faultalloc.h"
#include "formats/gguf.h"
#include "formats/imatrix.h"
#include "formats/safetensors.h"
#include "infer/tokenizer.h"
#include "merge/adapter.h"
#include "merge/merge.h"
#include "quantize/quantize.h"
#include "support.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FA_EXHAUSTIVE 6000u /* test every N up to this many allocations */
#define FA_SAMPLES 400u     /* otherwise this many evenly spaced N ... */
#define FA_EDGE 200u        /* ... plus the first and last FA_EDGE */

typedef int (*fa_path_fn)(void *ctx, sm_err *err);

typedef struct fa_result {
    uint64_t n_allocs;   /* allocations of one successful run */
    uint64_t n_tried;    /* N values tested */
    uint64_t n_swallowed;/* runs that succeeded although an allocation failed */
} fa_result;

static void fa_setup(void)
{
    fa_install();
}

/* Number of files in dir (0 when it does not exist). */
static int dir_entries(const char *dir)
{
    return dir ? ts_count_entries(dir) : 0;
}

/* Runs fn under every (or sampled) allocation failure; out_dir, when
 * non-NULL, must be empty after every failed run and is emptied after a
 * successful one. */
static fa_result fa_check(const char *what, fa_path_fn fn, void *ctx, const char *out_dir)
{
    fa_result res = {0, 0, 0};
    sm_err err;
    char cmd[1200];
    for (int warm = 0; warm < 2; warm++) {
        uint64_t live0 = fa_live();
        fa_arm(0);
        int rc = fn(ctx, &err);
        cr_assert_eq(rc, 0, "%s: unarmed run failed: %s", what, err.msg);
        res.n_allocs = fa_count();
        if (warm == 1)
            cr_assert_eq(fa_live(), live0, "%s: a successful run leaked %llu allocations", what,
                         (unsigned long long)(fa_live() - live0));
        if (out_dir) {
            snprintf(cmd, sizeof cmd, "rm -rf '%s'/* '%s'/.[!.]*", out_dir, out_dir);
            cr_assert_eq(system(cmd), 0);
        }
    }
    cr_assert_gt(res.n_allocs, 0, "%s: allocates nothing through the shim", what);
    uint64_t total = res.n_allocs;
    for (uint64_t i = 0;; i++) {
        uint64_t n;
        if (total <= FA_EXHAUSTIVE) {
            n = i + 1;
            if (n > total)
                break;
        } else {
            uint64_t mid = total - 2 * FA_EDGE;
            if (i < FA_EDGE)
                n = i + 1;
            else if (i < FA_EDGE + FA_SAMPLES)
                n = FA_EDGE + 1 + (i - FA_EDGE) * mid / FA_SAMPLES;
            else if (i < 2 * FA_EDGE + FA_SAMPLES)
                n = total - (2 * FA_EDGE + FA_SAMPLES - 1 - i);
            else
                break;
        }
        uint64_t live0 = fa_live();
        memset(&err, 0, sizeof err);
        if (getenv("SMELT_FA_VERBOSE"))
            fprintf(stderr, "%s: failing allocation %llu of %llu\n", what, (unsigned long long)n,
                    (unsigned long long)total);
        fa_arm(n);
        int rc = fn(ctx, &err);
        int fired = fa_fired();
        fa_arm(0);
        res.n_tried++;
        if (!fired) {
            cr_assert_eq(rc, 0, "%s: N=%llu: failed without an injected fault: %s", what, (unsigned long long)n,
                         err.msg);
        } else if (rc == 0) {
            res.n_swallowed++;
            if (getenv("SMELT_FA_VERBOSE")) {
                fprintf(stderr, "%s: N=%llu failed but the call succeeded; failed allocation at:\n", what,
                        (unsigned long long)n);
                fa_print_trace(2);
            }
        } else {
            cr_assert_lt(rc, 0, "%s: N=%llu", what, (unsigned long long)n);
            cr_assert_neq(err.msg[0], 0, "%s: N=%llu: error %d without a message", what, (unsigned long long)n, rc);
            cr_assert_eq(err.code, rc, "%s: N=%llu: err.code %d != rc %d (%s)", what, (unsigned long long)n, err.code,
                         rc, err.msg);
            cr_assert_eq(dir_entries(out_dir), 0, "%s: N=%llu: files left in %s after: %s", what,
                         (unsigned long long)n, out_dir, err.msg);
        }
        cr_assert_eq(fa_live(), live0, "%s: N=%llu (rc %d: %s): %lld allocations not freed", what,
                     (unsigned long long)n, rc, err.msg, (long long)(fa_live() - live0));
        if (out_dir && rc == 0) {
            snprintf(cmd, sizeof cmd, "rm -rf '%s'/* '%s'/.[!.]*", out_dir, out_dir);
            cr_assert_eq(system(cmd), 0);
        }
    }
    cr_log_info("%s: %llu allocations, %llu failure points tested, %llu swallowed", what,
                (unsigned long long)res.n_allocs, (unsigned long long)res.n_tried,
                (unsigned long long)res.n_swallowed);
    return res;
}

/* ------------------------------------------------------------ readers */

static int path_gguf_open(void *ctx, sm_err *err)
{
    gguf_file g;
    int rc = gguf_open(&g, ctx, err);
    if (rc == 0)
        gguf_close(&g);
    return rc;
}

Test(faults, gguf_open_every_allocation, .init = fa_setup)
{
    fa_check("gguf_open Q4_K_M", path_gguf_open, (void *)ts_path("reference/stories260K/Q4_K_M.gguf"), NULL);
    fa_result r = fa_check("gguf_open llama-spm vocab", path_gguf_open,
                           (void *)ts_path("vocab/ggml-vocab-llama-spm.gguf"), NULL);
    cr_assert_eq(r.n_swallowed, 0);
}

static int path_st_open(void *ctx, sm_err *err)
{
    st_model m;
    int rc = st_open(&m, ctx, err);
    if (rc == 0)
        st_close(&m);
    return rc;
}

Test(faults, st_open_every_allocation, .init = fa_setup)
{
    fa_check("st_open sharded dir + index.json", path_st_open,
             (void *)ts_path("models/stories260K-bf16-sharded"), NULL);
    fa_check("st_open single file", path_st_open, (void *)ts_path("models/stories260K/model.safetensors"), NULL);
}

static int path_imatrix(void *ctx, sm_err *err)
{
    sm_imatrix im;
    int rc = sm_imatrix_read(&im, ctx, err);
    if (rc == 0)
        sm_imatrix_free(&im);
    return rc;
}

Test(faults, imatrix_read_every_allocation, .init = fa_setup)
{
    const char *dat = ts_path("reference/stories260K/imatrix.dat");
    fa_check("sm_imatrix_read .dat", path_imatrix, (void *)dat, NULL);
    /* a GGUF imatrix made from the same data */
    sm_imatrix im;
    sm_err err;
    cr_assert_eq(sm_imatrix_read(&im, dat, &err), 0, "%s", err.msg);
    for (uint32_t i = 0; i < im.n_entries; i++) {
        sm_imatrix_entry *e = &im.entries[i];
        e->counts = calloc((size_t)e->n_mat, sizeof *e->counts);
        cr_assert_not_null(e->counts);
        for (int64_t j = 0; j < e->n_mat; j++)
            e->counts[j] = (float)e->ncall;
    }
    char *dir = ts_tmpdir();
    char path[1100];
    snprintf(path, sizeof path, "%s/imatrix.gguf", dir);
    cr_assert_eq(sm_imatrix_write_gguf(&im, path, &err), 0, "%s", err.msg);
    sm_imatrix_free(&im);
    fa_check("sm_imatrix_read GGUF", path_imatrix, path, NULL);
    ts_rmtree(dir);
    free(dir);
}

static int path_tok_load(void *ctx, sm_err *err)
{
    tok_vocab *v = NULL;
    int rc = tok_load(&v, ctx, err);
    if (rc == 0) {
        /* the loaded tokenizer works: encode a short text */
        int32_t *ids = NULL;
        size_t n = 0;
        rc = tok_encode(v, "Hello world", 11, true, false, &ids, &n, err);
        free(ids);
        tok_free(v);
    }
    return rc;
}

static void tok_case(const char *rel)
{
    gguf_file g;
    sm_err err;
    cr_assert_eq(gguf_open(&g, ts_path(rel), &err), 0, "%s", err.msg);
    fa_check(rel, path_tok_load, &g, NULL);
    gguf_close(&g);
}

Test(faults, tok_load_spm_every_allocation, .init = fa_setup)
{
    tok_case("vocab/ggml-vocab-llama-spm.gguf");
}

Test(faults, tok_load_bpe_every_allocation, .init = fa_setup)
{
    tok_case("vocab/ggml-vocab-gpt-2.gguf");
}

static int path_lora_open(void *ctx, sm_err *err)
{
    lora_adapter ad;
    int rc = lora_open(&ad, ctx, err);
    if (rc == 0)
        lora_close(&ad);
    return rc;
}

Test(faults, lora_open_every_allocation, .init = fa_setup)
{
    fa_check("lora_open patterns", path_lora_open, (void *)ts_path("lora/tinystories-3m-domain-patterns"), NULL);
    fa_check("lora_open qwen2.5 real", path_lora_open, (void *)ts_path("lora/qwen2.5-0.5b-real"), NULL);
}

/* ------------------------------------------------------------ tools */

typedef struct convert_ctx {
    cv_opts o;
    char out[1100];
} convert_ctx;

static int path_convert(void *ctx, sm_err *err)
{
    convert_ctx *c = ctx;
    cv_summary sum;
    return cv_convert(&c->o, &sum, err);
}

static void convert_case(const char *what, const char *model, int outtype, int vocab_only)
{
    char *dir = ts_tmpdir();
    convert_ctx c;
    memset(&c, 0, sizeof c);
    snprintf(c.out, sizeof c.out, "%s/out.gguf", dir);
    c.o.model_dir = ts_path(model);
    c.o.outfile = c.out;
    c.o.outtype = outtype;
    c.o.vocab_only = vocab_only;
    fa_check(what, path_convert, &c, dir);
    ts_rmtree(dir);
    free(dir);
}

Test(faults, convert_every_allocation, .init = fa_setup)
{
    convert_case("cv_convert stories260K f16", "models/stories260K", CV_OUT_F16, 0);
    convert_case("cv_convert sharded q8_0", "models/stories260K-bf16-sharded", CV_OUT_Q8_0, 0);
}

/* A small byte-level BPE model directory built from qwen2-tiny's real
 * tokenizer.json: ids < 400 (the byte alphabet and the first merges' results),
 * the merges among them, four added tokens renumbered after the vocabulary;
 * config.json says vocab_size 404. Loading the 7 MB original once per N
 * would take minutes under ASan. */
static void make_small_bpe_dir(const char *dir)
{
    json_error_t je;
    json_t *tj = json_load_file(ts_path("models/qwen2-tiny/tokenizer.json"), 0, &je);
    cr_assert_not_null(tj, "%s", je.text);
    json_t *model = json_object_get(tj, "model");
    json_t *vocab = json_object_get(model, "vocab");
    json_t *small = json_object();
    const char *k;
    json_t *v;
    json_object_foreach(vocab, k, v)
        if (json_integer_value(v) < 400)
            json_object_set(small, k, v);
    json_t *merges = json_object_get(model, "merges");
    json_t *kept = json_array();
    size_t i;
    json_array_foreach(merges, i, v) {
        const char *m = json_string_value(v);
        cr_assert_not_null(m);
        const char *sp = strchr(m, ' ');
        cr_assert_not_null(sp);
        char a[256], b[256], ab[512];
        snprintf(a, sizeof a, "%.*s", (int)(sp - m), m);
        snprintf(b, sizeof b, "%s", sp + 1);
        snprintf(ab, sizeof ab, "%s%s", a, b);
        if (json_object_get(small, a) && json_object_get(small, b) && json_object_get(small, ab))
            json_array_append(kept, v);
    }
    json_object_set_new(model, "vocab", small);
    json_object_set_new(model, "merges", kept);
    json_t *added = json_object_get(tj, "added_tokens");
    while (json_array_size(added) > 4)
        json_array_remove(added, json_array_size(added) - 1);
    json_array_foreach(added, i, v)
        json_object_set_new(v, "id", json_integer(400 + (json_int_t)i));
    char p[1200];
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    cr_assert_eq(json_dump_file(tj, p, 0), 0);
    json_decref(tj);
    static const char cfg[] =
        "{\"architectures\": [\"Qwen2ForCausalLM\"], \"model_type\": \"qwen2\", \"hidden_size\": 64,"
        " \"intermediate_size\": 128, \"max_position_embeddings\": 4096, \"num_attention_heads\": 4,"
        " \"num_hidden_layers\": 2, \"num_key_value_heads\": 2, \"rms_norm_eps\": 1e-06,"
        " \"rope_theta\": 1000000.0, \"tie_word_embeddings\": true, \"vocab_size\": 404,"
        " \"bos_token_id\": 400, \"eos_token_id\": 400}";
    snprintf(p, sizeof p, "%s/config.json", dir);
    cr_assert_eq(ts_write(p, cfg, sizeof cfg - 1), 0);
    static const char tc[] =
        "{\"add_bos_token\": false, \"eos_token\": \"<|endoftext|>\", \"pad_token\": \"<|endoftext|>\","
        " \"chat_template\": \"{% for m in messages %}{{ m.content }}{% endfor %}\"}";
    snprintf(p, sizeof p, "%s/tokenizer_config.json", dir);
    cr_assert_eq(ts_write(p, tc, sizeof tc - 1), 0);
}

Test(faults, convert_bpe_vocab_every_allocation, .init = fa_setup)
{
    char *model = ts_tmpdir();
    make_small_bpe_dir(model);
    char *dir = ts_tmpdir();
    convert_ctx c;
    memset(&c, 0, sizeof c);
    snprintf(c.out, sizeof c.out, "%s/out.gguf", dir);
    c.o.model_dir = model;
    c.o.outfile = c.out;
    c.o.outtype = CV_OUT_F16;
    c.o.vocab_only = 1;
    fa_check("cv_convert small qwen2 BPE vocab-only", path_convert, &c, dir);
    ts_rmtree(dir);
    ts_rmtree(model);
    free(dir);
    free(model);
}

typedef struct quant_ctx {
    sm_qz_opts o;
    char out[1100];
} quant_ctx;

static int path_quantize(void *ctx, sm_err *err)
{
    quant_ctx *q = ctx;
    sm_qz_summary s;
    return sm_quantize_file(&q->o, &s, err);
}

Test(faults, quantize_every_allocation, .init = fa_setup)
{
    char *dir = ts_tmpdir();
    quant_ctx q;
    memset(&q, 0, sizeof q);
    snprintf(q.out, sizeof q.out, "%s/out.gguf", dir);
    q.o.in_path = ts_path("reference/stories260K/convert-f16.gguf");
    q.o.out_path = q.out;
    q.o.ftype = SM_FTYPE_Q4_K_M;
    q.o.imatrix_path = ts_path("reference/stories260K/imatrix.dat");
    q.o.output_type = -1;
    q.o.token_embd_type = -1;
    q.o.nthreads = 2;
    fa_check("sm_quantize_file Q4_K_M + imatrix", path_quantize, &q, dir);
    ts_rmtree(dir);
    free(dir);
}

typedef struct merge_ctx {
    const char *base;
    const char *adapter;
    char out[1100];
} merge_ctx;

/* The whole smelt-merge load path: open the adapter, then merge. */
static int path_merge(void *ctx, sm_err *err)
{
    merge_ctx *m = ctx;
    lora_adapter ad;
    int rc = lora_open(&ad, m->adapter, err);
    if (rc)
        return rc;
    ad.user_scale = 1.0;
    merge_opts o;
    memset(&o, 0, sizeof o);
    o.base = m->base;
    o.out = m->out;
    o.adapters = &ad;
    o.n_adapters = 1;
    o.outtype = MERGE_OUT_AUTO;
    merge_report rep;
    memset(&rep, 0, sizeof rep);
    rc = merge_run(&o, &rep, err);
    if (rc == 0)
        merge_report_free(&rep);
    lora_close(&ad);
    return rc;
}

Test(faults, merge_every_allocation, .init = fa_setup)
{
    char *dir = ts_tmpdir();
    merge_ctx m;
    m.base = ts_path("models/tinystories-3m");
    m.adapter = ts_path("lora/tinystories-3m-domain");
    snprintf(m.out, sizeof m.out, "%s/merged", dir);
    fa_check("lora_open + merge_run tinystories-3m", path_merge, &m, dir);
    ts_rmtree(dir);
    free(dir);
}
