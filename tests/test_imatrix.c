/* test_imatrix.c — smelt-imatrix against llama-imatrix's reference files
 * (reference/{stories260K,tinystories-3m}/imatrix.dat, imatrix.log), the
 * collector's rules, merging, conversion and the CLI's error handling. */
#include "imatrix/collect.h"
#include "imatrix/run.h"
#include "imatrix/stats.h"
#include "support.h"

#include "fileio.h"
#include "imatrix.h"
#include "infer/model.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *models[2] = {"stories260K", "tinystories-3m"};
static const int n_layers[2] = {5, 4};

/* ------------------------------------------------------------ helpers */

static void read_ref(sm_imatrix *im, const char *model)
{
    char rel[256];
    snprintf(rel, sizeof(rel), "reference/%s/imatrix.dat", model);
    sm_err err = {0};
    int rc = sm_imatrix_read(im, ts_path(rel), &err);
    cr_assert_eq(rc, 0, "%s", err.msg);
}

/* The per-chunk running perplexities "[k]v," of a llama-imatrix log. */
static int read_log_ppl(const char *model, double *ppl, int cap)
{
    char rel[256];
    snprintf(rel, sizeof(rel), "reference/%s/imatrix.log", model);
    size_t len = 0;
    char *txt = (char *)ts_read(ts_path(rel), &len);
    cr_assert_not_null(txt);
    char *buf = malloc(len + 1);
    memcpy(buf, txt, len);
    buf[len] = 0;
    free(txt);
    int n = 0;
    for (char *p = buf; (p = strchr(p, '[')) != NULL; p++) {
        int k;
        double v;
        if (sscanf(p, "[%d]%lf,", &k, &v) == 2 && k == n + 1 && n < cap)
            ppl[n++] = v;
    }
    free(buf);
    return n;
}

/* Runs the collector over the reference calibration text exactly as the
 * reference command did (-c 128 --chunks 50 -b 128). */
static void run_reference(im_collector *c, const char *model, im_run_result *res)
{
    char rel[256];
    snprintf(rel, sizeof(rel), "reference/%s/convert-f16.gguf", model);
    sm_model m;
    sm_err err = {0};
    cr_assert_eq(model_load(&m, ts_path(rel), &err), 0, "%s", err.msg);
    int32_t *tok = NULL;
    int64_t n = 0;
    cr_assert_eq(im_tokenize_file(&m, ts_path("text/groups_merged.txt"), &tok, &n, &err), 0, "%s", err.msg);
    im_init(c, 128, 0);
    cr_assert_eq(im_set_dataset(c, "../../text/groups_merged.txt", &err), 0);
    im_run_opts o = {0};
    o.n_ctx = 128;
    o.n_batch = 128;
    o.n_ubatch = 512;
    o.n_chunks = 50;
    o.n_threads = 2;
    o.compute_ppl = 1;
    int rc = im_run(c, &m, tok, n, &o, res, &err);
    cr_assert_eq(rc, 0, "%s", err.msg);
    free(tok);
    model_free(&m);
}

/* ------------------------------------------------------------ hash and order */

Test(imatrix_order, hash_matches_libstdcxx)
{
    /* std::hash<std::string> values printed by g++ 12 (libstdc++) */
    cr_assert_eq(im_hash_bytes("", 0), 6142509188972423790ull);
    cr_assert_eq(im_hash_bytes("a", 1), 4993892634952068459ull);
    cr_assert_eq(im_hash_bytes("abcdefgh", 8), 8664279048047335611ull);
    cr_assert_eq(im_hash_bytes("blk.0.attn_q.weight", 19), 4068745212705744642ull);
    cr_assert_eq(im_hash_bytes("output.weight", 13), 4298024497130574304ull);
}

Test(imatrix_order, reproduces_reference_entry_order)
{
    /* llama.cpp inserts weights in graph order; its .dat lists them in
     * std::unordered_map order, which the emulation must reproduce */
    static const char *kinds[] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};
    for (int mi = 0; mi < 2; mi++) {
        sm_imatrix ref;
        read_ref(&ref, models[mi]);
        uint32_t n = (uint32_t)n_layers[mi] * 7;
        cr_assert_eq(ref.n_entries, n);
        char (*names)[64] = calloc(n, 64);
        const char **ptr = calloc(n, sizeof(char *));
        uint32_t *ord = calloc(n, sizeof(uint32_t));
        for (uint32_t i = 0; i < n; i++) {
            snprintf(names[i], 64, "blk.%u.%s.weight", i / 7, kinds[i % 7]);
            ptr[i] = names[i];
        }
        cr_assert_eq(im_order_stdmap(ptr, n, ord), 0);
        for (uint32_t i = 0; i < n; i++)
            cr_assert_str_eq(ptr[ord[i]], ref.entries[i].name, "%s: entry %u", models[mi], i);
        free(names);
        free(ptr);
        free(ord);
        sm_imatrix_free(&ref);
    }
}

Test(imatrix_order, growth_past_several_rehashes)
{
    /* 300 names cross the 13, 29, 59, 127 and 257 bucket steps; every
     * index must appear exactly once */
    enum { N = 300 };
    static char names[N][32];
    const char *ptr[N];
    uint32_t ord[N];
    int seen[N] = {0};
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof(names[i]), "blk.%d.w%d.weight", i / 9, i % 9);
        ptr[i] = names[i];
    }
    cr_assert_eq(im_order_stdmap(ptr, N, ord), 0);
    for (int i = 0; i < N; i++) {
        cr_assert_lt(ord[i], (uint32_t)N);
        seen[ord[i]]++;
    }
    for (int i = 0; i < N; i++)
        cr_assert_eq(seen[i], 1);
}

/* ------------------------------------------------------------ the hook's rules */

Test(imatrix_hook, rules_sums_and_counts)
{
    im_collector c;
    im_init(&c, 32, 0);
    enum { R = 16, K = 5 };
    float x[R * K];
    for (int i = 0; i < R * K; i++)
        x[i] = (float)(i % 7) * 0.5f - 1.0f;
    im_hook(&c, "blk.0.attn_q.weight", x, R, K);
    im_hook(&c, "blk.0.attn_q.weight", x, 15, K); /* < 16 rows: ignored */
    im_hook(&c, "token_embd.weight", x, R, K);    /* not a blk.* weight */
    im_hook(&c, "output.weight", x, R, K);        /* only with --process-output */
    im_hook(&c, "blk.0.attn_q.weight", x, R, K);
    cr_assert_eq(im_hook_status(&c, NULL), 0);
    cr_assert_eq(c.n, 1);
    const im_entry *e = &c.e[0];
    cr_assert_str_eq(e->name, "blk.0.attn_q.weight");
    cr_assert_eq(e->ncall, 2);
    cr_assert_eq(e->count[0], 2 * R);
    cr_assert_eq(c.last_call, 2);
    for (int j = 0; j < K; j++) {
        float s2 = 0, s = 0;
        for (int pass = 0; pass < 2; pass++)
            for (int r = 0; r < R; r++) {
                float v = x[r * K + j];
                s2 += v * v;
                s += v;
            }
        cr_assert_eq(e->sum2[j], s2, "column %d", j);
        cr_assert_eq(e->sum[j], s, "column %d", j);
    }
    /* legacy value = (sum2 / count) * ncall, in float as llama.cpp */
    sm_imatrix im;
    sm_err err = {0};
    cr_assert_eq(im_build(&c, SM_IMATRIX_LEGACY, &im, &err), 0, "%s", err.msg);
    cr_assert_eq(im.entries[0].ncall, 2);
    cr_assert_eq(im.entries[0].sums[1], (e->sum2[1] / 32.0f) * 2.0f);
    cr_assert_eq(im.chunk_count, 2);
    sm_imatrix_free(&im);
    im_free(&c);

    im_init(&c, 32, 1);
    im_hook(&c, "output.weight", x, R, K);
    cr_assert_eq(c.n, 1);
    cr_assert_str_eq(c.e[0].name, "output.weight");
    im_free(&c);
}

Test(imatrix_hook, errors_are_kept)
{
    im_collector c;
    sm_err err = {0};
    float x[16 * 4] = {0};
    im_init(&c, 16, 0);
    im_hook(&c, "blk.1.ffn_up.weight", x, 16, 4);
    im_hook(&c, "blk.1.ffn_up.weight", x, 16, 3);
    cr_assert_eq(im_hook_status(&c, &err), SM_EMISMATCH);
    cr_assert_not_null(strstr(err.msg, "blk.1.ffn_up.weight"), "%s", err.msg);
    im_free(&c);

    im_init(&c, 16, 0);
    x[2] = INFINITY;
    im_hook(&c, "blk.0.attn_k.weight", x, 16, 4);
    cr_assert_eq(im_hook_status(&c, &err), SM_ERANGE);
    cr_assert_not_null(strstr(err.msg, "column 2"), "%s", err.msg);
    im_free(&c);

    im_init(&c, 16, 0);
    sm_imatrix im;
    cr_assert_eq(im_build(&c, SM_IMATRIX_LEGACY, &im, &err), SM_EINVAL);
    cr_assert_not_null(strstr(err.msg, "no importance data"), "%s", err.msg);
    im_free(&c);
}

/* ------------------------------------------------------------ reference runs */

static void check_reference_run(int mi)
{
    im_collector c;
    im_run_result res;
    run_reference(&c, models[mi], &res);
    sm_imatrix ref, mine;
    sm_err err = {0};
    read_ref(&ref, models[mi]);
    cr_assert_eq(im_build(&c, SM_IMATRIX_LEGACY, &mine, &err), 0, "%s", err.msg);

    /* same entries, order, ncall, chunk count and dataset */
    cr_assert_eq(mine.n_entries, ref.n_entries);
    cr_assert_eq(mine.chunk_count, ref.chunk_count);
    cr_assert_eq(mine.chunk_count, 50);
    cr_assert_str_eq(mine.datasets[0], ref.datasets[0]);
    cr_assert_str_eq(mine.datasets[0], "../../text/groups_merged.txt");
    double worst = 0;
    uint64_t total = 0, equal = 0, within = 0;
    for (uint32_t i = 0; i < ref.n_entries; i++) {
        const sm_imatrix_entry *a = &mine.entries[i], *b = &ref.entries[i];
        cr_assert_str_eq(a->name, b->name, "%s: entry %u", models[mi], i);
        cr_assert_eq(a->ncall, b->ncall);
        cr_assert_eq(a->n_per_mat, b->n_per_mat);
        /* the runtime reproduces ggml's AVX-512 arithmetic, so every value
         * is llama.cpp's float, bit for bit */
        for (int64_t j = 0; j < a->n_per_mat; j++) {
            float x = a->sums[j], y = b->sums[j];
            double rel = fabs((double)x - (double)y) / fabs((double)y);
            total++;
            equal += x == y;
            within += rel <= 1e-4;
            worst = rel > worst ? rel : worst;
            cr_expect_eq(x, y, "%s %s[%lld]: %.9g vs %.9g", models[mi], a->name, (long long)j, (double)x, (double)y);
        }
    }
    cr_log_info("%s: %llu values, %llu bit-equal, %llu within 1e-4, max rel %.3g", models[mi],
                (unsigned long long)total, (unsigned long long)equal, (unsigned long long)within, worst);
    cr_assert_eq(equal, total, "%s: %llu of %llu values differ (max rel %.3g)", models[mi],
                 (unsigned long long)(total - equal), (unsigned long long)total, worst);
    cr_assert_lt(worst, 1e-4);

    /* the running perplexity printed per chunk */
    double lp[64];
    int nl = read_log_ppl(models[mi], lp, 64);
    cr_assert_eq(nl, 50);
    cr_assert_eq(res.n_chunks, 50);
    for (int k = 0; k < 50; k++) /* the log prints 4 decimals */
        cr_assert_lt(fabs(res.chunk_ppl[k] - lp[k]), 5.01e-5, "%s chunk %d: %.4f vs %.4f", models[mi], k + 1,
                     res.chunk_ppl[k], lp[k]);
    sm_imatrix_free(&mine);
    sm_imatrix_free(&ref);
    im_run_free(&res);
    im_free(&c);
}

Test(imatrix_reference, stories260K)
{
    check_reference_run(0);
}

Test(imatrix_reference, tinystories_3m)
{
    check_reference_run(1);
}

/* Two chunks of tinystories-3m with the given batch sizes. */
static int run_small(im_collector *c, int process_output, int32_t n_ctx, int32_t n_batch, int32_t n_ubatch,
                     int compute_ppl, sm_err *err)
{
    sm_model m;
    cr_assert_eq(model_load(&m, ts_path("reference/tinystories-3m/convert-f16.gguf"), err), 0, "%s", err->msg);
    int32_t *tok = NULL;
    int64_t n = 0;
    cr_assert_eq(im_tokenize_file(&m, ts_path("text/tinystories-valid.txt"), &tok, &n, err), 0, "%s", err->msg);
    cr_assert_eq(tok[0], 1); /* BOS first */
    im_init(c, n_ctx, process_output);
    im_run_opts o = {0};
    o.n_ctx = n_ctx;
    o.n_batch = n_batch;
    o.n_ubatch = n_ubatch;
    o.n_chunks = 2;
    o.n_threads = 2;
    o.compute_ppl = compute_ppl;
    im_run_result res;
    int rc = im_run(c, &m, tok, n, &o, &res, err);
    if (rc == 0 && compute_ppl) {
        cr_assert_eq(res.n_chunks, 2);
        cr_assert(res.ppl > 1.0 && res.ppl < 100.0, "ppl %g", res.ppl);
    }
    im_run_free(&res);
    free(tok);
    model_free(&m);
    return rc;
}

Test(imatrix_run, batches_calls_and_output)
{
    im_collector c;
    sm_err err = {0};
    /* --process-output: output.weight sees every row of each chunk */
    cr_assert_eq(run_small(&c, 1, 128, 128, 512, 0, &err), 0, "%s", err.msg);
    int64_t k = im_find(&c, "output.weight");
    cr_assert_geq(k, 0);
    cr_assert_eq(c.e[k].ncall, 2);
    cr_assert_eq(c.e[k].count[0], 256);
    cr_assert_eq(c.e[k].n_per_mat, 256);
    cr_assert_eq(c.n, 29);
    im_free(&c);

    /* without it, only the 28 blk.* weights */
    cr_assert_eq(run_small(&c, 0, 128, 128, 512, 1, &err), 0, "%s", err.msg);
    cr_assert_eq(c.n, 28);
    cr_assert_lt(im_find(&c, "output.weight"), 0);
    cr_assert_eq(c.last_call, 2);
    cr_assert_eq(c.fresh_chunks, 2);
    im_free(&c);

    /* physical batches of 32: four products per chunk (llama.cpp's
     * callback runs once per ubatch), the legacy chunk count is the calls */
    cr_assert_eq(run_small(&c, 0, 128, 128, 32, 0, &err), 0, "%s", err.msg);
    k = im_find(&c, "blk.2.ffn_down.weight");
    cr_assert_geq(k, 0);
    cr_assert_eq(c.e[k].ncall, 8);
    cr_assert_eq(c.e[k].count[0], 256);
    sm_imatrix im;
    cr_assert_eq(im_build(&c, SM_IMATRIX_LEGACY, &im, &err), 0);
    cr_assert_eq(im.chunk_count, 8);
    sm_imatrix_free(&im);
    cr_assert_eq(im_build(&c, SM_IMATRIX_GGUF, &im, &err), 0);
    cr_assert_eq(im.chunk_count, 2);
    cr_assert_eq(im.chunk_size, 128);
    sm_imatrix_free(&im);
    im_free(&c);

    /* batches of 8 rows are all below llama.cpp's 16-row threshold */
    /* -c 136 runs chunks of 160 tokens (llama.cpp pads its context to 32)
     * in batches of 128 and 32: both are collected */
    cr_assert_eq(run_small(&c, 0, 136, 128, 512, 0, &err), 0, "%s", err.msg);
    k = im_find(&c, "blk.0.attn_q.weight");
    cr_assert_geq(k, 0);
    cr_assert_eq(c.e[k].ncall, 4);
    cr_assert_eq(c.e[k].count[0], 320);
    im_free(&c);

    cr_assert_eq(run_small(&c, 0, 128, 8, 512, 0, &err), 0, "%s", err.msg);
    cr_assert_eq(c.n, 0);
    cr_assert_eq(im_build(&c, SM_IMATRIX_LEGACY, &im, &err), SM_EINVAL);
    im_free(&c);
}

/* ------------------------------------------------------------ conversion and merging */

Test(imatrix_convert, dat_gguf_dat_is_byte_identical)
{
    char *dir = ts_tmpdir();
    char g[512], d[512], rel[256];
    for (int mi = 0; mi < 2; mi++) {
        sm_imatrix ref, back;
        sm_err err = {0};
        read_ref(&ref, models[mi]);
        im_collector c;
        im_init(&c, 512, 0);
        cr_assert_eq(im_merge(&c, &ref, "ref", &err), 0, "%s", err.msg);
        snprintf(g, sizeof(g), "%s/%s.gguf", dir, models[mi]);
        snprintf(d, sizeof(d), "%s/%s.dat", dir, models[mi]);
        cr_assert_eq(im_save(&c, g, SM_IMATRIX_GGUF, &err), 0, "%s", err.msg);
        im_free(&c);

        /* the GGUF: newer llama.cpp's layout, values scaled to sums */
        cr_assert_eq(sm_imatrix_read(&back, g, &err), 0, "%s", err.msg);
        cr_assert_eq(back.format, SM_IMATRIX_GGUF);
        cr_assert_eq(back.chunk_count, 50);
        cr_assert_eq(back.chunk_size, 512);
        cr_assert_eq(back.n_datasets, 1);
        cr_assert_str_eq(back.datasets[0], "../../text/groups_merged.txt");
        cr_assert_eq(back.n_entries, ref.n_entries);
        for (uint32_t i = 0; i < ref.n_entries; i++) {
            cr_assert_str_eq(back.entries[i].name, ref.entries[i].name);
            cr_assert_eq(back.entries[i].counts[0], 50.0f * 512.0f);
            cr_assert_eq(back.entries[i].sums[3], ref.entries[i].sums[3] * 512.0f);
            /* what quantize uses is unchanged: value / ncall == in_sum2 / count */
            float a[1024], b[1024];
            cr_assert_leq(ref.entries[i].n_per_mat, 1024);
            cr_assert_eq(sm_imatrix_entry_values(&back.entries[i], a), 0);
            cr_assert_eq(sm_imatrix_entry_values(&ref.entries[i], b), 0);
            for (int64_t j = 0; j < ref.entries[i].n_per_mat; j++)
                cr_assert_eq(a[j], b[j], "%s[%lld]", ref.entries[i].name, (long long)j);
        }
        im_init(&c, 512, 0);
        cr_assert_eq(im_merge(&c, &back, g, &err), 0, "%s", err.msg);
        cr_assert_eq(im_save(&c, d, SM_IMATRIX_LEGACY, &err), 0, "%s", err.msg);
        im_free(&c);
        sm_imatrix_free(&back);
        sm_imatrix_free(&ref);

        size_t la = 0, lb = 0;
        snprintf(rel, sizeof(rel), "reference/%s/imatrix.dat", models[mi]);
        uint8_t *a = ts_read(ts_path(rel), &la), *b = ts_read(d, &lb);
        cr_assert(a && b);
        cr_assert_eq(la, lb);
        cr_assert(memcmp(a, b, la) == 0, "%s: round trip changed bytes", models[mi]);
        free(a);
        free(b);
    }
    ts_rmtree(dir);
    free(dir);
}

Test(imatrix_convert, merge_is_weighted_by_counts)
{
    /* the same file twice: twice the calls, the same mean squares */
    sm_imatrix ref;
    sm_err err = {0};
    read_ref(&ref, "stories260K");
    im_collector c;
    im_init(&c, 128, 0);
    cr_assert_eq(im_merge(&c, &ref, "a", &err), 0, "%s", err.msg);
    cr_assert_eq(im_merge(&c, &ref, "b", &err), 0, "%s", err.msg);
    sm_imatrix out;
    cr_assert_eq(im_build(&c, SM_IMATRIX_LEGACY, &out, &err), 0, "%s", err.msg);
    cr_assert_eq(out.n_entries, ref.n_entries);
    cr_assert_eq(out.chunk_count, 100);
    for (uint32_t i = 0; i < out.n_entries; i++) {
        cr_assert_str_eq(out.entries[i].name, ref.entries[i].name); /* input order kept */
        cr_assert_eq(out.entries[i].ncall, 100);
        for (int64_t j = 0; j < out.entries[i].n_per_mat; j++)
            cr_assert_eq(out.entries[i].sums[j], 2.0f * ref.entries[i].sums[j]);
    }
    sm_imatrix_free(&out);
    im_free(&c);

    /* a file with other sizes for the same names cannot be merged */
    sm_imatrix other;
    read_ref(&other, "tinystories-3m");
    im_init(&c, 128, 0);
    cr_assert_eq(im_merge(&c, &ref, "small.dat", &err), 0);
    cr_assert_eq(im_merge(&c, &other, "big.dat", &err), SM_EMISMATCH);
    cr_assert_not_null(strstr(err.msg, "big.dat"), "%s", err.msg);
    cr_assert_not_null(strstr(err.msg, "has 1 x 768 values, but earlier input has 1 x 172"), "%s", err.msg);
    im_free(&c);

    /* legacy entries need ncall >= 1 */
    ref.entries[0].ncall = 0;
    im_init(&c, 128, 0);
    cr_assert_eq(im_merge(&c, &ref, "zero.dat", &err), SM_EFORMAT);
    cr_assert_not_null(strstr(err.msg, "ncall 0"), "%s", err.msg);
    im_free(&c);
    sm_imatrix_free(&other);
    sm_imatrix_free(&ref);
}

Test(imatrix_convert, model_check_names_and_sizes)
{
    sm_model m;
    sm_err err = {0};
    cr_assert_eq(model_load(&m, ts_path("reference/tinystories-3m/convert-f16.gguf"), &err), 0, "%s", err.msg);
    sm_imatrix ref;
    im_collector c;
    read_ref(&ref, "tinystories-3m");
    im_init(&c, 128, 0);
    cr_assert_eq(im_merge(&c, &ref, "t", &err), 0);
    cr_assert_eq(im_check_model(&c, &m, "m.gguf", &err), 0, "%s", err.msg);
    im_free(&c);
    sm_imatrix_free(&ref);

    /* stories260K's imatrix names blk.4.* (tinystories-3m has 4 layers) */
    read_ref(&ref, "stories260K");
    im_init(&c, 128, 0);
    cr_assert_eq(im_merge(&c, &ref, "s", &err), 0);
    int rc = im_check_model(&c, &m, "m.gguf", &err);
    cr_assert(rc == SM_EMISSING || rc == SM_EMISMATCH);
    cr_assert_not_null(strstr(err.msg, "m.gguf"), "%s", err.msg);
    im_free(&c);
    sm_imatrix_free(&ref);
    model_free(&m);
}

/* ------------------------------------------------------------ statistics */

Test(imatrix_stats, values_from_reference)
{
    sm_imatrix ref;
    sm_err err = {0};
    read_ref(&ref, "tinystories-3m");
    im_collector c;
    im_init(&c, 128, 0);
    cr_assert_eq(im_merge(&c, &ref, "t", &err), 0);
    im_tstats *s = NULL;
    uint32_t n = 0;
    cr_assert_eq(im_stats_compute(&c, &s, &n, &err), 0);
    cr_assert_eq(n, 28);
    for (uint32_t i = 0; i < n; i++) {
        int64_t k = sm_imatrix_find(&ref, s[i].name);
        cr_assert_geq(k, 0);
        const sm_imatrix_entry *e = &ref.entries[k];
        double sum = 0, mn = INFINITY, mx = 0;
        for (int64_t j = 0; j < e->n_per_mat; j++) {
            double v = (double)e->sums[j] / e->ncall;
            sum += v;
            mn = v < mn ? v : mn;
            mx = v > mx ? v : mx;
        }
        cr_assert_lt(fabs(s[i].sum - sum) / sum, 1e-6, "%s", s[i].name);
        cr_assert_lt(fabs(s[i].min - mn) / mn, 1e-6);
        cr_assert_lt(fabs(s[i].max - mx) / mx, 1e-6);
        cr_assert_eq(s[i].n, e->n_per_mat);
        cr_assert(s[i].top_share >= 0.1 && s[i].top_share <= 1.0);
        cr_assert(s[i].h_norm > 0 && s[i].h_norm <= 100.0 + 1e-9);
        if (i > 0) /* sorted by kind, then by decreasing sum */
            cr_assert(strcmp(s[i - 1].kind, s[i].kind) < 0 ||
                      (strcmp(s[i - 1].kind, s[i].kind) == 0 && s[i - 1].sum >= s[i].sum));
        if (s[i].layer > 0)
            cr_assert(s[i].cossim > 0 && s[i].cossim <= 1.0, "%s cos %g", s[i].name, s[i].cossim);
    }
    cr_assert_str_eq(s[0].kind, "attn_k");
    free(s);
    im_free(&c);
    sm_imatrix_free(&ref);
}

/* ------------------------------------------------------------ the CLI */

static char *bin(const char *tool)
{
    static char buf[4][1024];
    static int k;
    char *b = buf[k++ & 3];
    snprintf(b, 1024, "%s/%s", ts_bin(), tool);
    return b;
}

Test(imatrix_cli, run_writes_llama_compatible_files)
{
    /* the reference layout: cwd two levels below a folder holding text/ */
    char *dir = ts_tmpdir();
    char *out = NULL;
    int rc = ts_run(&out, "mkdir -p %s/r/m && ln -s %s/text %s/text", dir, ts_shared(), dir);
    cr_assert_eq(rc, 0, "%s", out);
    free(out);
    rc = ts_run(&out,
                "cd %s/r/m && %s -m %s -f ../../text/groups_merged.txt -o imatrix.dat -c 128 --chunks 50 -b 128 "
                "-t 2 -ofreq 20 --save-frequency 25",
                dir, bin("smelt-imatrix"), ts_path("reference/stories260K/convert-f16.gguf"));
    cr_assert_eq(rc, 0, "%s", out);
    cr_assert_not_null(strstr(out, "[1]"), "%s", out);
    cr_assert_not_null(strstr(out, "[50]"), "%s", out);
    cr_assert_not_null(strstr(out, "Final estimate: PPL = 422.0211 +/- 38.26001"), "%s", out);
    free(out);
    char p[1024];
    snprintf(p, sizeof(p), "%s/r/m/imatrix.dat.at_25", dir);
    cr_assert(ts_exists(p), "periodic copy %s", p);
    snprintf(p, sizeof(p), "%s/r/m/imatrix.dat.at_50", dir);
    cr_assert(ts_exists(p));

    /* llama-imatrix's own file, byte for byte */
    {
        size_t lm = 0, lr = 0;
        snprintf(p, sizeof(p), "%s/r/m/imatrix.dat", dir);
        uint8_t *fm = ts_read(p, &lm), *fr = ts_read(ts_path("reference/stories260K/imatrix.dat"), &lr);
        cr_assert(fm && fr && lm == lr && memcmp(fm, fr, lm) == 0, "imatrix.dat differs from llama-imatrix's");
        free(fm);
        free(fr);
    }
    sm_imatrix mine, ref;
    sm_err err = {0};
    snprintf(p, sizeof(p), "%s/r/m/imatrix.dat", dir);
    cr_assert_eq(sm_imatrix_read(&mine, p, &err), 0, "%s", err.msg);
    read_ref(&ref, "stories260K");
    cr_assert_eq(mine.n_entries, ref.n_entries);
    cr_assert_eq(mine.chunk_count, 50);
    cr_assert_str_eq(mine.datasets[0], "../../text/groups_merged.txt");
    for (uint32_t i = 0; i < ref.n_entries; i++) {
        cr_assert_str_eq(mine.entries[i].name, ref.entries[i].name);
        cr_assert_eq(mine.entries[i].ncall, 50);
    }
    sm_imatrix_free(&mine);

    /* GGUF output by extension, and the periodic copies in that format */
    rc = ts_run(&out,
                "cd %s/r/m && %s -m %s -f ../../text/groups_merged.txt -o im.gguf -c 128 --chunks 20 -b 128 -t 2 "
                "--no-ppl",
                dir, bin("smelt-imatrix"), ts_path("reference/stories260K/convert-f16.gguf"));
    cr_assert_eq(rc, 0, "%s", out);
    cr_assert_null(strstr(out, "Final estimate"), "%s", out);
    free(out);
    snprintf(p, sizeof(p), "%s/r/m/im.gguf", dir);
    cr_assert_eq(sm_imatrix_read(&mine, p, &err), 0, "%s", err.msg);
    cr_assert_eq(mine.format, SM_IMATRIX_GGUF);
    cr_assert_eq(mine.chunk_count, 20);
    cr_assert_eq(mine.chunk_size, 128);
    cr_assert_eq(mine.n_entries, 35);
    cr_assert_str_eq(mine.entries[0].name, "blk.0.attn_k.weight"); /* sorted, as newer llama.cpp */
    cr_assert_eq(mine.entries[0].counts[0], 20.0f * 128.0f);
    cr_assert_not_null(mine.entries[0].in_sum);
    sm_imatrix_free(&mine);

    /* the CLI conversion: reference .dat -> GGUF -> .dat is lossless */
    rc = ts_run(&out, "cd %s && %s --in-file %s -o a.gguf && %s --in-file a.gguf --output-format dat -o b.bin", dir,
                bin("smelt-imatrix"), ts_path("reference/tinystories-3m/imatrix.dat"), bin("smelt-imatrix"));
    cr_assert_eq(rc, 0, "%s", out);
    free(out);
    snprintf(p, sizeof(p), "%s/b.bin", dir);
    size_t la, lb;
    uint8_t *a = ts_read(p, &la), *b = ts_read(ts_path("reference/tinystories-3m/imatrix.dat"), &lb);
    cr_assert(a && b && la == lb && memcmp(a, b, la) == 0, "CLI round trip differs");
    free(a);
    free(b);

    /* --show-statistics on a loaded file prints the table and writes nothing */
    rc = ts_run(&out, "cd %s && %s --in-file %s --show-statistics && test ! -e imatrix.dat", dir,
                bin("smelt-imatrix"), ts_path("reference/tinystories-3m/imatrix.dat"));
    cr_assert_eq(rc, 0, "%s", out);
    cr_assert_not_null(strstr(out, "ffn_down"), "%s", out);
    cr_assert_not_null(strstr(out, "Computing layer statistics (4 layers)"), "%s", out);
    free(out);
    sm_imatrix_free(&ref);
    ts_rmtree(dir);
    free(dir);
}

Test(imatrix_cli, quantize_with_smelt_imatrix)
{
    /* smelt-quantize with llama.cpp's reference imatrix reproduces
     * llama-quantize's -imat file, and so does smelt's own imatrix (it is
     * byte-identical to llama-imatrix's). */
    char *dir = ts_tmpdir();
    char *out = NULL;
    int rc = ts_run(&out,
                    "mkdir -p %s/x/mine %s/ref %s/gguf && ln -s %s/text %s/text && cd %s/x/mine && "
                    "%s -m %s -f ../../text/groups_merged.txt -o imatrix.dat -c 128 "
                    "--chunks 50 -b 128 -t 2 --no-ppl && cp %s %s/ref/imatrix.dat && "
                    "%s --in-file %s -o %s/gguf/imatrix.dat --output-format gguf",
                    dir, dir, dir, ts_shared(), dir, dir, bin("smelt-imatrix"),
                    ts_path("reference/tinystories-3m/convert-f16.gguf"), ts_path("reference/tinystories-3m/imatrix.dat"), dir,
                    bin("smelt-imatrix"), ts_path("reference/tinystories-3m/imatrix.dat"), dir);
    cr_assert_eq(rc, 0, "%s", out);
    free(out);
    static const char *sides[3] = {"x/mine", "ref", "gguf"};
    for (int side = 0; side < 3; side++) {
        rc = ts_run(&out, "cd %s/%s && %s --imatrix imatrix.dat %s Q4_K_M.gguf Q4_K_M 2", dir, sides[side],
                    bin("smelt-quantize"), ts_path("reference/tinystories-3m/convert-f16.gguf"));
        cr_assert_eq(rc, 0, "%s", out);
        free(out);
    }
    /* the reference converted to a GGUF imatrix (stored under the same
     * name, so the recorded file name matches) quantizes identically */
    {
        char q[1024];
        size_t lg = 0, lr = 0;
        snprintf(q, sizeof(q), "%s/gguf/Q4_K_M.gguf", dir);
        uint8_t *g = ts_read(q, &lg);
        uint8_t *r = ts_read(ts_path("reference/tinystories-3m/Q4_K_M-imat.gguf"), &lr);
        cr_assert(g && r && lg == lr && memcmp(g, r, lg) == 0, "GGUF imatrix changed the quantized bytes");
        free(g);
        free(r);
    }
    char p[1024];
    size_t la, lb, lc;
    snprintf(p, sizeof(p), "%s/x/mine/Q4_K_M.gguf", dir);
    uint8_t *a = ts_read(p, &la);
    snprintf(p, sizeof(p), "%s/ref/Q4_K_M.gguf", dir);
    uint8_t *b = ts_read(p, &lb);
    uint8_t *c = ts_read(ts_path("reference/tinystories-3m/Q4_K_M-imat.gguf"), &lc);
    cr_assert(a && b && c);
    cr_assert_eq(lb, lc);
    cr_assert(memcmp(b, c, lb) == 0, "llama.cpp's imatrix through smelt-quantize differs from llama-quantize");
    /* smelt's imatrix is llama.cpp's, so the quantized file is too */
    cr_assert_eq(la, lb);
    cr_assert(memcmp(a, b, la) == 0, "Q4_K_M with smelt's imatrix differs from llama-quantize's -imat file");
    free(a);
    free(b);
    free(c);
    ts_rmtree(dir);
    free(dir);
}

typedef struct bad_case {
    const char *what;
    const char *args; /* @T = tmpdir, @S = shared corpus */
    const char *msg;  /* substring of the error line */
} bad_case;

/* Copies tmpl into out with @T replaced by t and @S by sh. */
static void expand(char *out, size_t cap, const char *tmpl, const char *t, const char *sh)
{
    size_t k = 0;
    for (const char *p = tmpl; *p && k + 1 < cap; p++) {
        const char *rep = NULL;
        if (p[0] == '@' && p[1] == 'T')
            rep = t;
        else if (p[0] == '@' && p[1] == 'S')
            rep = sh;
        if (rep) {
            for (; *rep && k + 1 < cap; rep++)
                out[k++] = *rep;
            p++;
        } else {
            out[k++] = *p;
        }
    }
    out[k] = 0;
}

Test(imatrix_cli, bad_inputs_fail_cleanly)
{
    char *dir = ts_tmpdir();
    char p[1024];
    snprintf(p, sizeof(p), "%s/empty.txt", dir);
    cr_assert_eq(ts_write(p, "", 0), 0);
    snprintf(p, sizeof(p), "%s/short.txt", dir);
    const char *short_text = "Once upon a time there was a little dog.\n";
    cr_assert_eq(ts_write(p, short_text, strlen(short_text)), 0);
    snprintf(p, sizeof(p), "%s/trunc.dat", dir);
    size_t rl = 0;
    uint8_t *ref = ts_read(ts_path("reference/stories260K/imatrix.dat"), &rl);
    cr_assert_eq(ts_write(p, ref, 1000), 0);
    free(ref);

    static const bad_case cases[] = {
        {"empty text", "-m @S/reference/stories260K/convert-f16.gguf -f @T/empty.txt -c 128",
         "you need at least 256 tokens"},
        {"short text", "-m @S/reference/stories260K/convert-f16.gguf -f @T/short.txt -c 128",
         "tokenizes to only"},
        {"skip too far",
         "-m @S/reference/stories260K/convert-f16.gguf -f @S/text/tinystories-valid.txt -c 128 --chunk 120",
         "not enough tokens left after removing 120 chunks"},
        {"missing text", "-m @S/reference/stories260K/convert-f16.gguf -f @T/nope.txt", "nope.txt"},
        {"missing model", "-m @T/nope.gguf -f @S/text/groups_merged.txt", "nope.gguf"},
        {"model lacks the in-file's tensors",
         "-m @S/reference/tinystories-3m/convert-f16.gguf --in-file @S/reference/stories260K/imatrix.dat",
         "convert-f16.gguf"},
        {"mismatched merge",
         "--in-file @S/reference/stories260K/imatrix.dat --in-file @S/reference/tinystories-3m/imatrix.dat",
         "but earlier input has"},
        {"truncated imatrix", "--in-file @T/trunc.dat", "truncated"},
        {"unreadable imatrix", "--in-file @T/none.dat", "none.dat"},
        {"bad format name", "--in-file @S/reference/stories260K/imatrix.dat --output-format xml", "gguf or dat"},
        {"nothing to do", "-c 128", "nothing to do"},
        {"output directory missing",
         "-m @S/reference/stories260K/convert-f16.gguf -f @S/text/groups_merged.txt -c 128 -o @T/no/such/dir/x.dat",
         "no/such/dir"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char args[2048], *out = NULL;
        expand(args, sizeof(args), cases[i].args, dir, ts_shared());
        int rc = ts_run(&out, "cd %s && %s -o %s/out.dat %s", dir, bin("smelt-imatrix"), dir, args);
        cr_assert_neq(rc, 0, "%s: exit 0\n%s", cases[i].what, out);
        cr_assert_not_null(strstr(out, cases[i].msg), "%s: expected '%s' in:\n%s", cases[i].what, cases[i].msg, out);
        cr_assert_not_null(strstr(out, "smelt-imatrix: "), "%s", out);
        snprintf(p, sizeof(p), "%s/out.dat", dir);
        cr_assert(!ts_exists(p), "%s: left an output file", cases[i].what);
        free(out);
    }
    /* no temp files left behind either */
    cr_assert_eq(ts_count_entries(dir), 3);
    ts_rmtree(dir);
    free(dir);
}
