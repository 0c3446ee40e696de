/* test_infer.c — smelt-infer against llama.cpp's reference outputs:
 * perplexity (perplexity.json), KL divergence (kld-base.bin, kld.json),
 * greedy generation (generate.json), the base-logits writer, and the errors
 * for malformed models and inputs. */
#include "infer/eval.h"
#include "infer/matmul.h"
#include "infer/ops.h"
#include "infer/tokenizer.h"
#include "support.h"
#include "support_infer.h"
#include "types.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REF(m, f) ts_path("reference/" m "/" f)
/* K-quant files of tinystories-3m (256-element blocks): exact since the
 * dots follow ggml's AVX2 K-quant kernels lane by lane */
#define SAME 5.01e-5 /* equal to the 4 printed decimals */
#define KQ_PPL_TOL SAME
#define KQ_EXACT 1

static json_t *load_json(const char *path)
{
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    cr_assert_not_null(j, "%s: %s", path, je.text);
    return j;
}

/* Finds the run for file in a perplexity.json / kld.json "runs" array
 * (optionally with a given text name). */
static json_t *find_run(json_t *runs, const char *file, const char *text)
{
    size_t i;
    json_t *r;
    json_array_foreach(runs, i, r) {
        const char *f = json_string_value(json_object_get(r, "file"));
        const char *t = json_string_value(json_object_get(r, "text"));
        if (f && !strcmp(f, file) && (!text || (t && !strcmp(t, text))))
            return r;
    }
    return NULL;
}

/* Running PPL after `chunks` chunks from the reference list. */
static double ref_running_ppl(json_t *run, int chunks)
{
    json_t *per = json_object_get(run, "per_chunk_running_ppl");
    if (json_is_string(per)) {
        /* stored as the text "[a, b, ...]" */
        json_error_t je;
        json_t *arr = json_loads(json_string_value(per), 0, &je);
        cr_assert_not_null(arr);
        double v = json_number_value(json_array_get(arr, (size_t)chunks - 1));
        json_decref(arr);
        return v;
    }
    return json_number_value(json_array_get(per, (size_t)chunks - 1));
}

/* tol: absolute PPL tolerance. The reference prints 4 decimals, so 5.01e-5
 * means "the same number" (bit-exact forward pass). */
static void check_ppl(const char *model_dir, const char *file, int chunks, double tol)
{
#if defined(__SANITIZE_ADDRESS__)
    /* The sanitizer build is ~10x slower: it checks the first 24 chunks
     * against the reference's running PPL instead of all 121. */
    if (chunks < 0)
        chunks = 24;
#endif
    char mpath[1024], jpath[1100];
    snprintf(mpath, sizeof mpath, "%s/%s", ts_path("reference"), model_dir);
    snprintf(jpath, sizeof jpath, "%s/perplexity.json", mpath);
    strncat(mpath, "/", sizeof mpath - strlen(mpath) - 1);
    strncat(mpath, file, sizeof mpath - strlen(mpath) - 1);
    json_t *j = load_json(jpath);
    json_t *run = find_run(json_object_get(j, "runs"), file, "tinystories-valid.txt");
    cr_assert_not_null(run, "%s not in %s", file, jpath);
    sm_model m;
    ts_load_model(&m, mpath);
    size_t n = 0;
    int32_t *ids = ts_tokenize_file(&m, ts_path("text/tinystories-valid.txt"), &n);
    cr_assert_eq(n, 15555, "llama-tokenize gives 15,555 tokens, got %zu", n);
    sm_ppl_opts o = {128, 128, chunks, 2, NULL, NULL};
    sm_ppl_result r;
    sm_err err = {0};
    cr_assert_eq(ppl_run(&m, ids, (int64_t)n, &o, &r, &err), 0, "%s", err.msg);
    int ref_chunks = (int)json_integer_value(json_object_get(run, "chunks"));
    double ref = chunks < 0 ? json_number_value(json_object_get(run, "ppl")) : ref_running_ppl(run, chunks);
    cr_assert_eq(r.n_chunks, chunks < 0 ? ref_chunks : chunks);
    double rel = fabs(r.ppl - ref) / ref;
    cr_expect_lt(fabs(r.ppl - ref), tol, "%s/%s: PPL %.5f vs llama.cpp %.4f (%.4f%%)", model_dir, file, r.ppl, ref,
                 100 * rel);
    /* every running value the reference printed, not just the last: a
     * change in one chunk can hide in the final mean's 4 decimals */
    json_t *per = json_object_get(run, "per_chunk_running_ppl");
    cr_assert_geq(json_array_size(per), (size_t)r.n_chunks);
    for (int32_t c = 0; c < r.n_chunks; c++) {
        const double rc = json_number_value(json_array_get(per, (size_t)c));
        cr_expect_lt(fabs(r.chunk_ppl[c] - rc), tol, "%s/%s: [%d] %.5f vs llama.cpp %.4f", model_dir, file, c + 1,
                     r.chunk_ppl[c], rc);
    }
    if (chunks < 0) {
        double ref_err = json_number_value(json_object_get(run, "ppl_err"));
        cr_expect_lt(fabs(r.ppl_err - ref_err) / ref_err, 2e-2, "ppl_err %.5f vs %.5f", r.ppl_err, ref_err);
    }
    ppl_result_free(&r);
    free(ids);
    model_free(&m);
    json_decref(j);
}

Test(infer_ppl, stories260K_f16_all_chunks) { check_ppl("stories260K", "convert-f16.gguf", -1, SAME); }
/* f32 rows of 172 (ffn_down) take ggml_vec_dot_f32 and its 44-element tail
 * (40 rounded products added, 4 fused: see ops_dot_vf32); fusing all 44
 * printed [1] 3.5899 instead of 3.5896 */
Test(infer_ppl, stories260K_f32_all_chunks) { check_ppl("stories260K", "convert-f32.gguf", -1, SAME); }
Test(infer_ppl, stories260K_Q4_K_M_all_chunks) { check_ppl("stories260K", "Q4_K_M.gguf", -1, SAME); }
Test(infer_ppl, stories260K_Q3_K_S_imat_all_chunks) { check_ppl("stories260K", "Q3_K_S-imat.gguf", -1, SAME); }
Test(infer_ppl, stories260K_Q6_K_all_chunks) { check_ppl("stories260K", "Q6_K.gguf", -1, SAME); }
Test(infer_ppl, stories260K_bf16_sharded_all_chunks) { check_ppl("stories260K", "convert-sharded-bf16.gguf", -1, SAME); }
Test(infer_ppl, tinystories3m_Q4_K_M_24_chunks) { check_ppl("tinystories-3m", "Q4_K_M.gguf", 24, KQ_PPL_TOL); }
Test(infer_ppl, tinystories3m_Q8_0_16_chunks) { check_ppl("tinystories-3m", "Q8_0.gguf", 16, SAME); }
Test(infer_ppl, tinystories3m_bf16_16_chunks) { check_ppl("tinystories-3m", "convert-bf16.gguf", 16, SAME); }
Test(infer_ppl, tinystories3m_f16_16_chunks) { check_ppl("tinystories-3m", "convert-f16.gguf", 16, SAME); }

Test(infer_ppl, qwen2_tiny_f16_10_chunks)
{
    json_t *j = load_json(REF("qwen2-tiny", "perplexity.json"));
    json_t *run = json_object_get(json_object_get(j, "runs"), "convert-f16.gguf");
    cr_assert_not_null(run);
    sm_model m;
    ts_load_model(&m, REF("qwen2-tiny", "convert-f16.gguf"));
    cr_assert_eq(m.hp.arch, SM_ARCH_QWEN2);
    cr_assert_eq(m.hp.rope_neox, 1);
    cr_assert_not_null(m.layers[0].bq);
    size_t n = 0;
    int32_t *ids = ts_tokenize_file(&m, REF("qwen2-tiny", "wiki.test.raw.head40k"), &n);
    sm_ppl_opts o = {128, 128, 10, 2, NULL, NULL};
    sm_ppl_result r;
    sm_err err = {0};
    cr_assert_eq(ppl_run(&m, ids, (int64_t)n, &o, &r, &err), 0, "%s", err.msg);
    double ref = json_number_value(json_object_get(run, "ppl"));
    cr_assert_eq(r.n_chunks, 10);
    /* bit-exact forward pass: equal to the reference's printed digits */
    cr_expect_lt(fabs(r.ppl - ref), 5.01e-4, "qwen2 PPL %.4f vs %.4f", r.ppl, ref);
    json_t *per = json_object_get(run, "cumulative_ppl_per_chunk");
    for (int i = 0; i < 10; i++) {
        double rv = json_number_value(json_array_get(per, (size_t)i));
        cr_expect_lt(fabs(r.chunk_ppl[i] - rv), 5.01e-5, "chunk %d: %.5f vs %.4f", i + 1, r.chunk_ppl[i], rv);
    }
    ppl_result_free(&r);
    free(ids);
    model_free(&m);
    json_decref(j);
}

/* ------------------------------------------------------------------ KLD */

/* exact: the file's forward pass is llama.cpp's bit for bit, so every
 * statistic equals the reference to its printed digits; else within 2 %
 * (KLD). */
static void check_kld(const char *model_dir, const char *file, int exact)
{
    char mpath[1100], base[1100], jpath[1100];
    snprintf(mpath, sizeof mpath, "%s/%s/%s", ts_path("reference"), model_dir, file);
    snprintf(base, sizeof base, "%s/%s/kld-base.bin", ts_path("reference"), model_dir);
    snprintf(jpath, sizeof jpath, "%s/%s/kld.json", ts_path("reference"), model_dir);
    json_t *j = load_json(jpath);
    json_t *run = find_run(json_object_get(j, "runs"), file, NULL);
    cr_assert_not_null(run);
    sm_model m;
    ts_load_model(&m, mpath);
    sm_kld_base b;
    sm_err err = {0};
    cr_assert_eq(kld_base_open(&b, base, &err), 0, "%s", err.msg);
    cr_assert_eq(b.n_ctx, 128);
    cr_assert_eq(b.n_chunk, 20);
    cr_assert_eq(b.n_vocab, 512);
    sm_kld_opts o = {128, -1, 2, NULL};
    sm_kld_result r;
    cr_assert_eq(kld_run(&m, &b, &o, &r, &err), 0, "%s", err.msg);
    cr_assert_eq(r.count, 20 * 63);
    struct {
        const char *key;
        double ours, tol;
    } cmp[] = {
        {"kld_mean", r.kld_mean, 0.02},
        {"ppl_q", r.ppl_q, 0.002},
        {"ppl_base", r.ppl_base, 1e-5},
        {"dp_rms_pct", 100 * r.dp_rms, 0.02},
        {"same_top_p_pct", 100 * r.same_top, 0.01},
        {"kld_median", r.kld_median, 0.05},
    };
    for (size_t i = 0; i < sizeof cmp / sizeof cmp[0]; i++) {
        double ref = json_number_value(json_object_get(run, cmp[i].key));
        double rel = fabs(cmp[i].ours - ref) / fabs(ref);
        if (exact) {
            /* kld.json holds llama-perplexity's printed values: 6 decimals,
             * the percentages 3 */
            double ulp = strstr(cmp[i].key, "pct") ? 1.01e-3 : 1.01e-6;
            cr_expect_leq(fabs(cmp[i].ours - ref), ulp, "%s/%s %s: %.7f vs llama.cpp %.6f", model_dir, file,
                          cmp[i].key, cmp[i].ours, ref);
        } else {
            cr_expect_lt(rel, cmp[i].tol, "%s/%s %s: %.6f vs llama.cpp %.6f (%.2f%%)", model_dir, file, cmp[i].key,
                         cmp[i].ours, ref, 100 * rel);
        }
    }
    kld_base_close(&b);
    model_free(&m);
    json_decref(j);
}

Test(infer_kld, tinystories3m_Q4_K_M) { check_kld("tinystories-3m", "Q4_K_M.gguf", KQ_EXACT); }
Test(infer_kld, tinystories3m_Q3_K_S) { check_kld("tinystories-3m", "Q3_K_S.gguf", KQ_EXACT); }
Test(infer_kld, tinystories3m_Q5_K_M) { check_kld("tinystories-3m", "Q5_K_M.gguf", KQ_EXACT); }
Test(infer_kld, tinystories3m_Q6_K) { check_kld("tinystories-3m", "Q6_K.gguf", KQ_EXACT); }
Test(infer_kld, tinystories3m_Q8_0) { check_kld("tinystories-3m", "Q8_0.gguf", 1); }
Test(infer_kld, tinystories3m_bf16) { check_kld("tinystories-3m", "convert-bf16.gguf", 1); }
Test(infer_kld, stories260K_Q4_K_M) { check_kld("stories260K", "Q4_K_M.gguf", 1); }
Test(infer_kld, stories260K_Q3_K_M) { check_kld("stories260K", "Q3_K_M.gguf", 1); }
Test(infer_kld, stories260K_Q6_K) { check_kld("stories260K", "Q6_K.gguf", 1); }
Test(infer_kld, stories260K_q8_0) { check_kld("stories260K", "convert-q8_0.gguf", 1); }
Test(infer_kld, stories260K_bf16) { check_kld("stories260K", "convert-bf16.gguf", 1); }
Test(infer_kld, stories260K_bf16_sharded) { check_kld("stories260K", "convert-sharded-bf16.gguf", 1); }
/* the 172-wide ffn_down rows through ggml_vec_dot_f32 (see ops_dot_vf32) */
Test(infer_kld, stories260K_f32) { check_kld("stories260K", "convert-f32.gguf", 1); }

/* smelt's own base file from convert-f16.gguf equals llama.cpp's in header
 * and tokens; log-prob rows agree within rounding. */
Test(infer_kld, writes_llama_cpp_base_file)
{
    sm_model m;
    ts_load_model(&m, REF("tinystories-3m", "convert-f16.gguf"));
    size_t n = 0;
    int32_t *ids = ts_tokenize_file(&m, ts_path("text/tinystories-valid.txt"), &n);
    char *dir = ts_tmpdir();
    char out[1200];
    snprintf(out, sizeof out, "%s/base.bin", dir);
    sm_ppl_opts o = {128, 128, 20, 2, out, NULL};
    sm_ppl_result r;
    sm_err err = {0};
    cr_assert_eq(ppl_run(&m, ids, (int64_t)n, &o, &r, &err), 0, "%s", err.msg);
    size_t la = 0, lb = 0;
    uint8_t *a = ts_read(out, &la);
    uint8_t *b = ts_read(REF("tinystories-3m", "kld-base.bin"), &lb);
    cr_assert_not_null(a);
    cr_assert_not_null(b);
    cr_assert_eq(la, lb, "size %zu vs %zu", la, lb);
    size_t head = 20 + 4 * 128 * 20;
    cr_assert_eq(memcmp(a, b, head), 0, "header and tokens must be identical");
    size_t row = 2 * ((512 + 1) / 2) + 4;
    size_t rows = (la - head) / (2 * row);
    cr_assert_eq(rows, 20 * 63);
    int max_d = 0;
    double max_rel_scale = 0;
    for (size_t i = 0; i < rows; i++) {
        const uint8_t *pa = a + head + i * row * 2, *pb = b + head + i * row * 2;
        float sa, sb;
        memcpy(&sa, pa, 4);
        memcpy(&sb, pb, 4);
        double rs = fabs(sa - sb) / fabs(sb);
        max_rel_scale = rs > max_rel_scale ? rs : max_rel_scale;
        for (size_t k = 4; k < row; k++) {
            int va = pa[2 * k] | pa[2 * k + 1] << 8, vb = pb[2 * k] | pb[2 * k + 1] << 8;
            int d = abs(va - vb);
            max_d = d > max_d ? d : max_d;
        }
    }
    /* one uint16 step is (max-min)/65535 of the logit range: the f32
     * rounding differences of two forward passes move a value a few steps */
    cr_expect_lt(max_d, 64, "largest quantized log-prob difference %d steps", max_d);
    cr_expect_lt(max_rel_scale, 1e-3, "largest relative scale difference %g", max_rel_scale);
    free(a);
    free(b);
    ppl_result_free(&r);
    free(ids);
    model_free(&m);
    ts_rmtree(dir);
    free(dir);
}

/* --------------------------------------------------------------- generate */

static void check_generate(const char *model_dir)
{
    char jpath[1024];
    snprintf(jpath, sizeof jpath, "%s/%s/generate.json", ts_path("reference"), model_dir);
    json_t *j = load_json(jpath);
    size_t i;
    json_t *run;
    int checked = 0, exact = 0;
    json_array_foreach(json_object_get(j, "runs"), i, run) {
        const char *file = json_string_value(json_object_get(run, "file"));
        if (!file)
            file = json_string_value(json_object_get(run, "gguf"));
        char mpath[1024];
        snprintf(mpath, sizeof mpath, "%s/%s/%s", ts_path("reference"), model_dir, file);
        if (!ts_exists(mpath))
            continue; /* qwen2-tiny lists runs of files that are not shipped */
        sm_model m;
        ts_load_model(&m, mpath);
        json_t *pj = json_object_get(run, "prompt_ids"), *gj = json_object_get(run, "generated_ids");
        int32_t prompt[64];
        int32_t np = (int32_t)json_array_size(pj), ng = (int32_t)json_array_size(gj);
        cr_assert(np > 0 && np < 64 && ng > 0);
        for (int32_t k = 0; k < np; k++)
            prompt[k] = (int32_t)json_integer_value(json_array_get(pj, (size_t)k));
        /* the prompt ids are what our tokenizer gives too */
        tok_vocab *v = NULL;
        sm_err err = {0};
        cr_assert_eq(tok_load(&v, &m.gguf, &err), 0, "%s", err.msg);
        const char *ptext = json_string_value(json_object_get(run, "prompt"));
        int32_t *tids = NULL;
        size_t tn = 0;
        cr_assert_eq(tok_encode(v, ptext, strlen(ptext), true, true, &tids, &tn, &err), 0, "%s", err.msg);
        cr_expect_eq((int32_t)tn, np, "%s: prompt token count", ptext);
        for (size_t k = 0; k < tn && (int32_t)k < np; k++)
            cr_expect_eq(tids[k], prompt[k]);
        free(tids);
        tok_free(v);
        sm_sampler s;
        cr_assert_eq(sampler_init(&s, m.hp.n_vocab, 0.0f, 40, 0.95f, 0.05f, 42, &err), 0);
        sm_gen_opts o = {ng, 128, 512, 2, 1};
        sm_gen_result r;
        cr_assert_eq(gen_run(&m, prompt, np, &o, &s, NULL, NULL, &r, &err), 0, "%s", err.msg);
        cr_expect_eq(r.n_tokens, ng, "%s '%s': %d tokens", file, ptext, r.n_tokens);
        int same = 0;
        while (same < r.n_tokens && same < ng &&
               r.tokens[same] == (int32_t)json_integer_value(json_array_get(gj, (size_t)same)))
            same++;
        if (same < ng) {
            /* Divergence is accepted only at a near-tie: replay the reference
             * tokens and check that at the first differing step llama.cpp's
             * choice is within 0.01 logits of ours (f32 rounding differences
             * can only decide such ties). The rest must then agree again. */
            sm_ctx c;
            cr_assert_eq(ctx_init(&c, &m, 128, 64, 2, &err), 0);
            cr_assert_eq(ctx_eval(&c, prompt, np, np - 1, &err), 0);
            int near_ties = 0, hard = 0;
            for (int32_t k = 0; k < ng; k++) {
                int32_t ref = (int32_t)json_integer_value(json_array_get(gj, (size_t)k));
                int32_t best = 0;
                for (int32_t v2 = 1; v2 < m.hp.n_vocab; v2++)
                    if (c.logits[v2] > c.logits[best])
                        best = v2;
                if (best != ref) {
                    float margin = c.logits[best] - c.logits[ref];
                    if (margin < 0.01f)
                        near_ties++;
                    else
                        hard++;
                }
                if (k + 1 < ng)
                    cr_assert_eq(ctx_eval(&c, &ref, 1, 0, &err), 0);
            }
            cr_expect_eq(hard, 0, "%s '%s': %d steps disagree by more than 0.01 logits", file, ptext, hard);
            cr_expect_leq(near_ties, 2, "%s '%s': %d near-ties", file, ptext, near_ties);
            fprintf(stderr, "note: %s '%s': greedy ids agree for %d of %d tokens, then a near-tie (%d) decides\n", file,
                    ptext, same, ng, near_ties);
            ctx_free(&c);
        }
        checked++;
        exact += same == ng;
        gen_result_free(&r);
        sampler_free(&s);
        model_free(&m);
    }
    cr_assert_gt(checked, 0);
    cr_expect_eq(exact, checked, "%s: only %d of %d runs token-identical", model_dir, exact, checked);
    json_decref(j);
}

Test(infer_generate, stories260K_greedy_matches_llama_cpp) { check_generate("stories260K"); }
Test(infer_generate, tinystories3m_greedy_matches_llama_cpp) { check_generate("tinystories-3m"); }
Test(infer_generate, qwen2_tiny_greedy_matches_llama_cpp) { check_generate("qwen2-tiny"); }

/* `smelt-infer generate --json`: the prompt and generated ids and the text
 * of llama-cli's first stories260K run (generate.json), the stop reason
 * and the options as given. */
Test(infer_generate, json_output_matches_llama_cpp_run)
{
    json_t *ref = load_json(REF("stories260K", "generate.json"));
    json_t *run = json_array_get(json_object_get(ref, "runs"), 0);
    cr_assert_not_null(json_string_value(json_object_get(run, "file")));
    cr_assert_str_eq(json_string_value(json_object_get(run, "file")), "convert-f16.gguf");
    char *out = NULL;
    int rc = ts_run(&out, "smelt-infer generate -m '%s' -p '%s' -n %lld --seed 42 --temp 0 -c 128 -t 2 --json 2>/dev/null",
                    REF("stories260K", "convert-f16.gguf"),
                    json_string_value(json_object_get(run, "prompt")),
                    (long long)json_integer_value(json_object_get(run, "n_predict")));
    cr_assert_eq(rc, 0, "%s", out ? out : "");
    json_error_t je;
    json_t *j = json_loads(out, 0, &je);
    cr_assert_not_null(j, "not JSON (%s): %s", je.text, out);
    cr_expect(json_equal(json_object_get(j, "prompt_tokens"), json_object_get(run, "prompt_ids")));
    cr_expect(json_equal(json_object_get(j, "tokens"), json_object_get(run, "generated_ids")));
    cr_expect_str_eq(json_string_value(json_object_get(j, "text")),
                     json_string_value(json_object_get(run, "generated_text")));
    cr_expect_str_eq(json_string_value(json_object_get(j, "stop")), "length");
    cr_expect_eq(json_integer_value(json_object_get(j, "seed")), 42);
    cr_expect_eq(json_real_value(json_object_get(j, "top_p")), 0.95);
    cr_expect_eq(json_integer_value(json_object_get(j, "ctx")), 128);
    json_decref(j);
    free(out);
    /* qwen2-tiny at this seed emits byte-level tokens whose bytes are not
     * UTF-8 on their own: streamed as they are, in --json as U+FFFD */
#define QWEN_BYTES_CMD                                                                                          \
    "smelt-infer generate -m '%s' -p Hello -n 24 --seed 1 --temp 2 --top-k 0 --top-p 1 --min-p 0 -c 128 -t 2%s " \
    "2>/dev/null"
    rc = ts_run(&out, QWEN_BYTES_CMD, REF("qwen2-tiny", "convert-f16.gguf"), "");
    cr_assert_eq(rc, 0, "%s", out ? out : "");
    cr_expect_null(strstr(out, "\xEF\xBF\xBD"), "the streamed text holds the raw bytes");
    free(out);
    rc = ts_run(&out, QWEN_BYTES_CMD, REF("qwen2-tiny", "convert-f16.gguf"), " --json");
#undef QWEN_BYTES_CMD
    cr_assert_eq(rc, 0, "%s", out ? out : "");
    j = json_loads(out, 0, &je);
    cr_assert_not_null(j, "not JSON (%s): %s", je.text, out);
    cr_expect_eq(json_array_size(json_object_get(j, "tokens")), 24);
    const char *text = json_string_value(json_object_get(j, "text"));
    cr_assert_not_null(text);
    cr_expect_not_null(strstr(text, "\xEF\xBF\xBD"), "invalid bytes as U+FFFD: %s", text);
    json_decref(j);
    free(out);
    json_decref(ref);
}

Test(infer_generate, same_seed_same_tokens)
{
    sm_model m;
    ts_load_model(&m, REF("stories260K", "convert-f16.gguf"));
    int32_t prompt[] = {1, 403, 407, 261, 378};
    int32_t out[2][32];
    sm_err err = {0};
    for (int k = 0; k < 2; k++) {
        sm_sampler s;
        cr_assert_eq(sampler_init(&s, m.hp.n_vocab, 0.9f, 40, 0.95f, 0.05f, 1234, &err), 0);
        sm_gen_opts o = {32, 128, 64, 2, 0};
        sm_gen_result r;
        cr_assert_eq(gen_run(&m, prompt, 5, &o, &s, NULL, NULL, &r, &err), 0, "%s", err.msg);
        cr_assert_eq(r.n_tokens, 32);
        memcpy(out[k], r.tokens, sizeof out[k]);
        gen_result_free(&r);
        sampler_free(&s);
    }
    cr_expect_eq(memcmp(out[0], out[1], sizeof out[0]), 0, "same seed must give the same tokens");
    model_free(&m);
}

/* The generator is std::mt19937: the C++ standard's check value (the
 * 10000th output of a default-seeded engine) and seed 42's first outputs
 * as g++ 12's std::mt19937 prints them. */
Test(infer_sample, mt19937_known_answers)
{
    sm_sampler s;
    sm_err err = {0};
    cr_assert_eq(sampler_init(&s, 4, 1.0f, 0, 1.0f, 0.0f, 5489, &err), 0);
    uint32_t v = 0;
    for (int i = 0; i < 10000; i++)
        v = sampler_mt_next(&s);
    cr_expect_eq(v, 4123659995u);
    sampler_free(&s);
    cr_assert_eq(sampler_init(&s, 4, 1.0f, 0, 1.0f, 0.0f, 42, &err), 0);
    cr_expect_eq(sampler_mt_next(&s), 1608637542u);
    cr_expect_eq(sampler_mt_next(&s), 3421126067u);
    cr_expect_eq(sampler_mt_next(&s), 4083286876u);
    sampler_free(&s);
    /* the seed is a uint32_t, as llama.cpp's */
    cr_assert_eq(sampler_init(&s, 4, 1.0f, 0, 1.0f, 0.0f, 42 + (1ull << 32), &err), 0);
    cr_expect_eq(sampler_mt_next(&s), 1608637542u);
    sampler_free(&s);
}

/* The draw: seed 42's first canonical double is 0.796543 (g++'s
 * generate_canonical<double, 53>); over probabilities 0.4, 0.3, 0.2, 0.1
 * (ids 3, 2, 1, 0 by logit) the first cumulative value reaching it is
 * 0.9, id 1. A step left with one candidate returns it without a draw, so
 * the next draw is still the first one. */
Test(infer_sample, discrete_distribution_draw)
{
    const float logits[4] = {logf(0.1f), logf(0.2f), logf(0.3f), logf(0.4f)};
    sm_sampler s;
    sm_err err = {0};
    cr_assert_eq(sampler_init(&s, 4, 1.0f, 0, 1.0f, 0.0f, 42, &err), 0);
    cr_expect_eq(sampler_sample(&s, logits), 1);
    sampler_free(&s);
    cr_assert_eq(sampler_init(&s, 4, 1.0f, 0, 1.0f, 0.0f, 42, &err), 0);
    s.top_k = 1;
    cr_expect_eq(sampler_sample(&s, logits), 3);
    s.top_k = 0;
    cr_expect_eq(sampler_sample(&s, logits), 1, "a one-candidate step must not consume a draw");
    cr_expect_eq(sampler_set_penalties(&s, -2, 1.1f, 0.0f, 0.0f, &err), SM_EINVAL);
    /* a penalty of 4 on id 3 (logit log 0.4 < 0: multiplied) ranks it last */
    cr_assert_eq(sampler_set_penalties(&s, 2, 4.0f, 0.0f, 0.0f, &err), 0);
    sampler_accept(&s, 3);
    s.temp = 0.0f;
    cr_expect_eq(sampler_sample(&s, logits), 2);
    /* the window holds 2 tokens: 3 leaves it after two more */
    sampler_accept(&s, 0);
    sampler_accept(&s, 0);
    cr_expect_eq(sampler_sample(&s, logits), 3);
    sampler_free(&s);
}

/* Sampled generation equals llama-cli's, token for token: the runs in
 * tests/reference/llama-cli-sampling.json (llama-cli c392e5094 stdout,
 * default chain and other top-k/top-p/min-p/temperature settings, seeds
 * up to 2026, 400 tokens crossing the generator's 624-word refill) through
 * `smelt-infer generate` with the same flags. */
static uint8_t *hex_bytes(const char *hex, size_t *n)
{
    const size_t len = strlen(hex);
    cr_assert_eq(len % 2, 0);
    uint8_t *b = malloc(len / 2 + 1);
    cr_assert_not_null(b);
    for (size_t i = 0; i < len / 2; i++) {
        unsigned v;
        cr_assert_eq(sscanf(hex + 2 * i, "%2x", &v), 1);
        b[i] = (uint8_t)v;
    }
    b[len / 2] = 0;
    *n = len / 2;
    return b;
}

/* Runs `smelt-infer generate` on mpath with one recorded llama-cli run's
 * prompt, length, seed, context and flags, and expects llama-cli's text:
 * its stdout after the echoed prompt, without the two newlines it ends
 * with. */
static void expect_llama_cli_text(const char *mpath, json_t *run)
{
    const char *prompt = json_string_value(json_object_get(run, "prompt"));
    const long long seed = (long long)json_integer_value(json_object_get(run, "seed"));
    char flags[256] = "";
    size_t k;
    json_t *f;
    json_array_foreach(json_object_get(run, "flags"), k, f) {
        strncat(flags, " ", sizeof flags - strlen(flags) - 1);
        strncat(flags, json_string_value(f), sizeof flags - strlen(flags) - 1);
    }
    size_t n_ref;
    uint8_t *ref = hex_bytes(json_string_value(json_object_get(run, "stdout_hex")), &n_ref);
    const char *gen = strstr((const char *)ref, prompt);
    cr_assert_not_null(gen, "%s: prompt not echoed", mpath);
    gen += strlen(prompt);
    size_t n_gen = n_ref - (size_t)(gen - (const char *)ref);
    while (n_gen > 0 && gen[n_gen - 1] == '\n')
        n_gen--;
    char *out = NULL;
    int rc = ts_run(&out, "smelt-infer generate -m '%s' -p '%s' -n %lld --seed %lld -c %lld -t 2%s 2>/dev/null", mpath,
                    prompt, (long long)json_integer_value(json_object_get(run, "n_predict")), seed,
                    (long long)json_integer_value(json_object_get(run, "ctx")), flags);
    cr_assert_eq(rc, 0, "%s: %s", mpath, out ? out : "");
    size_t n_out = strlen(out);
    while (n_out > 0 && out[n_out - 1] == '\n')
        n_out--;
    cr_expect(n_out == n_gen && memcmp(out, gen, n_gen) == 0, "%s seed %lld%s:\n llama-cli: %.*s\n smelt:     %.*s",
              mpath, seed, flags, (int)n_gen, gen, (int)n_out, out);
    cr_expect_gt(n_gen, 20, "%s: a real continuation", mpath);
    free(out);
    free(ref);
}

Test(infer_sample, sampled_generation_matches_llama_cli, .timeout = 300)
{
    json_t *j = load_json("tests/reference/llama-cli-sampling.json");
    json_t *runs = json_object_get(j, "runs");
    cr_assert_geq(json_array_size(runs), 16);
    size_t i;
    json_t *run;
    json_array_foreach(runs, i, run) {
        char rel[256];
        snprintf(rel, sizeof rel, "reference/%s", json_string_value(json_object_get(run, "model")));
        expect_llama_cli_text(ts_path(rel), run);
    }
    json_decref(j);
}

/* Q4_0 matrices with a multiple of 8 rows: llama.cpp (x86, AVX2) repacks
 * them and uses its own gemv/gemm order (MM_TYPE_Q4_0_X8). tinystories-3m
 * quantized to Q4_0 here (smelt-quantize, byte-identical to llama-quantize)
 * gives llama-perplexity's 24 running values and llama-cli's texts
 * (tests/reference/tinystories-3m-q4_0.json). */
Test(infer_ppl, tinystories3m_Q4_0_repacked_order, .timeout = 300)
{
    json_t *j = load_json("tests/reference/tinystories-3m-q4_0.json");
    char *dir = ts_tmpdir();
    char q[1024];
    snprintf(q, sizeof q, "%s/Q4_0.gguf", dir);
    char *out = NULL;
    int rc = ts_run(&out, "smelt-quantize '%s' '%s' Q4_0", REF("tinystories-3m", "convert-f16.gguf"), q);
    cr_assert_eq(rc, 0, "%s", out ? out : "");
    free(out);
    json_t *pj = json_object_get(j, "perplexity"), *per = json_object_get(pj, "per_chunk_running_ppl");
    const int32_t chunks = (int32_t)json_integer_value(json_object_get(pj, "chunks"));
    cr_assert_eq(json_array_size(per), (size_t)chunks);
    sm_model m;
    ts_load_model(&m, q);
    size_t n = 0;
    int32_t *ids = ts_tokenize_file(&m, ts_path("text/tinystories-valid.txt"), &n);
    sm_ppl_opts o = {128, 128, chunks, 2, NULL, NULL};
    sm_ppl_result r;
    sm_err err = {0};
    cr_assert_eq(ppl_run(&m, ids, (int64_t)n, &o, &r, &err), 0, "%s", err.msg);
    cr_assert_eq(r.n_chunks, chunks);
    for (int32_t c = 0; c < chunks; c++) {
        const double want = json_number_value(json_array_get(per, (size_t)c));
        cr_expect_lt(fabs(r.chunk_ppl[c] - want), SAME, "[%d] %.5f vs llama.cpp %.4f", c + 1, r.chunk_ppl[c], want);
    }
    ppl_result_free(&r);
    free(ids);
    model_free(&m);
    size_t i;
    json_t *run;
    json_array_foreach(json_object_get(j, "generate"), i, run)
        expect_llama_cli_text(q, run);
    ts_rmtree(dir);
    free(dir);
    json_decref(j);
}

/* ------------------------------------------------------- batching, threads */

/* Batched prompt processing, single-token decoding and any thread count give
 * the same logits (up to f32 rounding). */
Test(infer_forward, batch_and_threads_agree)
{
    sm_model m;
    ts_load_model(&m, REF("tinystories-3m", "Q4_K_M.gguf"));
    int32_t toks[40];
    for (int i = 0; i < 40; i++)
        toks[i] = (i * 37 + 5) % 512;
    toks[0] = 1;
    sm_err err = {0};
    sm_ctx a, b;
    cr_assert_eq(ctx_init(&a, &m, 64, 64, 1, &err), 0);
    cr_assert_eq(ctx_init(&b, &m, 64, 8, 2, &err), 0);
    cr_assert_eq(ctx_eval(&a, toks, 40, 39, &err), 0, "%s", err.msg);
    for (int i = 0; i < 40; i++)
        cr_assert_eq(ctx_eval(&b, toks + i, 1, i == 39 ? 0 : 1, &err), 0, "%s", err.msg);
    double maxd = 0;
    for (int i = 0; i < 512; i++) {
        double d = fabs(a.logits[i] - b.logits[i]);
        maxd = d > maxd ? d : maxd;
    }
    cr_expect_lt(maxd, 1e-3, "max logit difference %g", maxd);
    cr_assert_eq(a.n_pos, 40);
    ctx_free(&a);
    ctx_free(&b);
    model_free(&m);
}

struct hook_count {
    int calls;
    int saw_q, saw_output;
    int64_t last_n_in;
};

static void count_hook(void *user, const char *name, const float *x, int32_t n_tokens, int64_t n_in)
{
    struct hook_count *h = user;
    h->calls++;
    h->saw_q += !strcmp(name, "blk.0.attn_q.weight");
    h->saw_output += !strcmp(name, "output.weight") && n_tokens == 3;
    h->last_n_in = n_in;
    (void)x;
}

Test(infer_forward, matmul_hook_sees_every_product)
{
    sm_model m;
    ts_load_model(&m, REF("tinystories-3m", "convert-f16.gguf"));
    sm_err err = {0};
    sm_ctx c;
    cr_assert_eq(ctx_init(&c, &m, 16, 16, 2, &err), 0);
    struct hook_count h = {0};
    c.hook = count_hook;
    c.hook_user = &h;
    int32_t toks[8] = {1, 403, 407, 261, 378, 432, 383, 286};
    cr_assert_eq(ctx_eval(&c, toks, 8, 5, &err), 0, "%s", err.msg);
    /* 7 products per layer x 4 layers + output */
    cr_expect_eq(h.calls, 7 * 4 + 1);
    cr_expect_eq(h.saw_q, 1);
    cr_expect_eq(h.saw_output, 1);
    cr_expect_eq(h.last_n_in, 256);
    ctx_free(&c);
    model_free(&m);
}

Test(infer_model, weights_are_views_into_the_map)
{
    sm_model m;
    ts_load_model(&m, REF("stories260K", "convert-f16.gguf"));
    cr_assert_eq(m.hp.n_layer, 5);
    cr_assert_eq(m.hp.n_head, 8);
    cr_assert_eq(m.hp.n_head_kv, 4);
    cr_assert_eq(m.hp.n_ff, 172);
    cr_assert_eq(m.hp.n_vocab, 512);
    cr_assert_eq(m.tied, 1);
    cr_assert_eq(m.output.data, m.tok_embd.data);
    const uint8_t *lo = m.gguf.map.ptr, *hi = m.gguf.map.ptr + m.gguf.map.len;
    cr_assert(m.layers[0].wq.data >= lo && m.layers[0].wq.data < hi);
    cr_assert_str_eq(m.layers[4].ffn_down.name, "blk.4.ffn_down.weight");
    cr_assert_eq(m.hp.add_bos, 1);
    cr_assert_eq(m.hp.bos_id, 1);
    model_free(&m);
}

/* ------------------------------------------------------------- kernels */

/* Unpacked rows rebuild the codecs' dequantization exactly, and the integer
 * block dot equals the float dot of dequantized values up to f32 rounding. */
Test(infer_kernels, unpack_and_dot_every_quant_type)
{
    const uint32_t types[] = {SM_TYPE_Q4_0, SM_TYPE_Q4_1, SM_TYPE_Q5_0, SM_TYPE_Q5_1, SM_TYPE_Q8_0,
                              SM_TYPE_IQ4_NL, SM_TYPE_Q2_K, SM_TYPE_Q3_K, SM_TYPE_Q4_K, SM_TYPE_Q5_K,
                              SM_TYPE_Q6_K};
    enum { N = 512 };
    float x[N], w[N], wd[N], xd[N];
    uint64_t seed = 12345;
    for (int i = 0; i < N; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        w[i] = (float)((int64_t)(seed >> 40) - (1 << 23)) / (float)(1 << 23);
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((int64_t)(seed >> 40) - (1 << 23)) / (float)(1 << 21);
    }
    static uint8_t wq[N * 2], xq[N * 2];
    int8_t q[N];
    float d[N / 32], mm[N / 32];
    int16_t sc[N / 16], mn[N / 16], w16[N], x16[N];
    mm_row r = {q, d, mm, sc, mn, w16, 0};
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        uint32_t t = types[ti];
        cr_assert(sm_quantize_rows(t, w, wq, 1, N, NULL) > 0, "quantize %s", sm_type_name(t));
        cr_assert_eq(sm_dequantize_row(t, wq, wd, N), 0);
        int kind = mm_kind_of(t);
        cr_assert_neq(kind, MM_FLOAT);
        mm_unpack_row(t, wq, N, &r);
        for (int e = 0; e < N; e++) {
            float v = kind == MM_K ? d[e / 256] * w16[e] - (mm[e / 256] * mn[e / 16])
                      : kind == MM_B32 ? d[e / 32] * w16[e]
                                       : d[e / 32] * w16[e] + mm[e / 32];
            cr_assert_float_eq(v, wd[e], 1e-6f * fabsf(wd[e]) + 1e-30f, "%s element %d: %g vs %g",
                               sm_type_name(t), e, v, wd[e]);
        }
        mm_quantize_act(kind, x, xq, N);
        uint32_t at = kind == MM_K ? SM_TYPE_Q8_K : kind == MM_B32 ? SM_TYPE_Q8_0 : SM_TYPE_Q8_1;
        cr_assert_eq(sm_dequantize_row(at, xq, xd, N), 0);
        double ref = 0;
        for (int e = 0; e < N; e++)
            ref += (double)wd[e] * (double)xd[e];
        mm_widen_act(kind, xq, x16, N);
        float got = mm_dot(kind, &r, xq, x16, N);
        /* the portable unpack + dot gives the AVX2 path's bits */
        mm_force_portable(1);
        mm_unpack_row(t, wq, N, &r);
        float port = mm_dot(kind, &r, xq, x16, N);
        mm_force_portable(0);
        cr_expect_eq(memcmp(&got, &port, 4), 0, "%s: fast %.9g vs portable %.9g", sm_type_name(t), (double)got,
                     (double)port);
        double tol = kind == MM_B32M ? 2e-3 : 1e-5; /* Q8_1 keeps d*sum(q) as f16 */
        cr_expect(fabs(got - ref) <= tol * (fabs(ref) + 1.0), "%s: dot %.7g vs %.7g", sm_type_name(t), got, ref);
    }
}

/* ------------------------------------------------------------------ errors */

enum edit_kind { E_DROP_KEY, E_DROP_TENSOR, E_SET_ARCH, E_SHAPE, E_TYPE };

/* Rewrites stories260K's convert-f32.gguf with one defect. */
static void write_variant(const char *dst, enum edit_kind kind, const char *what)
{
    sm_err err = {0};
    gguf_file g;
    cr_assert_eq(gguf_open(&g, REF("stories260K", "convert-f32.gguf"), &err), 0, "%s", err.msg);
    gguf_writer *w = gguf_writer_init();
    cr_assert_not_null(w);
    for (uint64_t i = 0; i < g.n_kv; i++) {
        const gguf_kv *kv = &g.kv[i];
        if (kind == E_DROP_KEY && sm_str_eq(kv->key, what))
            continue;
        if (kind == E_SET_ARCH && sm_str_eq(kv->key, "general.architecture")) {
            cr_assert_eq(gguf_writer_set_str(w, "general.architecture", what), 0);
            continue;
        }
        cr_assert_eq(gguf_writer_copy_kv(w, kv), 0);
    }
    float *junk = calloc(1 << 20, 1);
    for (uint64_t i = 0; i < g.n_tensors; i++) {
        const gguf_tensor *t = &g.tensors[i];
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.ptr);
        if (kind == E_DROP_TENSOR && !strcmp(name, what))
            continue;
        int64_t ne[4] = {t->ne[0], t->ne[1], t->ne[2], t->ne[3]};
        uint32_t type = t->type;
        if (kind == E_SHAPE && !strcmp(name, what))
            ne[1] += 1;
        if (kind == E_TYPE && !strcmp(name, what))
            type = SM_TYPE_I32; /* same shape, a type the kernels cannot use */
        cr_assert_eq(gguf_writer_add_tensor(w, name, t->n_dims, ne, type, &err), 0, "%s", err.msg);
    }
    cr_assert_eq(gguf_writer_begin(w, dst, &err), 0, "%s", err.msg);
    for (uint64_t i = 0; i < gguf_writer_n_tensors(w); i++) {
        uint64_t nb = gguf_writer_tensor_nbytes(w, i);
        cr_assert(nb <= (1u << 20));
        cr_assert_eq(gguf_writer_write_tensor(w, junk, nb, &err), 0, "%s", err.msg);
    }
    cr_assert_eq(gguf_writer_finish(w, &err), 0, "%s", err.msg);
    gguf_writer_free(w);
    free(junk);
    gguf_close(&g);
}

Test(infer_errors, malformed_models)
{
    struct {
        enum edit_kind kind;
        const char *what;
        int code;
        const char *msg;
    } cases[] = {
        {E_DROP_KEY, "llama.embedding_length", SM_EMISSING, "llama.embedding_length"},
        {E_DROP_KEY, "llama.attention.layer_norm_rms_epsilon", SM_EMISSING, "layer_norm_rms_epsilon"},
        {E_DROP_KEY, "general.architecture", SM_EMISSING, "general.architecture"},
        {E_DROP_TENSOR, "blk.3.ffn_up.weight", SM_EMISSING, "blk.3.ffn_up.weight"},
        {E_DROP_TENSOR, "output_norm.weight", SM_EMISSING, "output_norm.weight"},
        {E_SET_ARCH, "gpt2", SM_EUNSUPP, "architecture 'gpt2'"},
        {E_SHAPE, "blk.1.attn_k.weight", SM_EMISMATCH, "blk.1.attn_k.weight"},
        {E_TYPE, "blk.0.attn_v.weight", SM_ETYPE, "'blk.0.attn_v.weight' has type i32"},
    };
    char *dir = ts_tmpdir();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[1200];
        snprintf(path, sizeof path, "%s/v%zu.gguf", dir, i);
        write_variant(path, cases[i].kind, cases[i].what);
        sm_model m;
        sm_err err = {0};
        int rc = model_load(&m, path, &err);
        cr_expect_eq(rc, cases[i].code, "case %zu (%s): rc %d, msg '%s'", i, cases[i].what, rc, err.msg);
        cr_expect_not_null(strstr(err.msg, cases[i].msg), "case %zu: '%s' lacks '%s'", i, err.msg, cases[i].msg);
        if (rc == 0)
            model_free(&m);
    }
    ts_rmtree(dir);
    free(dir);
}

Test(infer_errors, short_text_and_large_context)
{
    sm_model m;
    ts_load_model(&m, REF("stories260K", "convert-f16.gguf"));
    int32_t toks[300];
    for (int i = 0; i < 300; i++)
        toks[i] = 1 + i % 500;
    sm_err err = {0};
    sm_ppl_result r;
    sm_ppl_opts o = {256, 256, -1, 1, NULL, NULL};
    cr_expect_eq(ppl_run(&m, toks, 300, &o, &r, &err), SM_ERANGE);
    cr_expect_not_null(strstr(err.msg, "you need at least 512 tokens"), "%s", err.msg);
    sm_ppl_opts o2 = {1024, 1024, -1, 1, NULL, NULL};
    cr_expect_eq(ppl_run(&m, toks, 300, &o2, &r, &err), SM_ERANGE);
    cr_expect_not_null(strstr(err.msg, "exceeds the model's training context 512"), "%s", err.msg);
    sm_ctx c;
    cr_assert_eq(ctx_init(&c, &m, 8, 8, 1, &err), 0);
    int32_t bad = 512;
    cr_expect_eq(ctx_eval(&c, &bad, 1, 0, &err), SM_ERANGE);
    cr_expect_not_null(strstr(err.msg, "outside the vocabulary"), "%s", err.msg);
    cr_expect_eq(ctx_eval(&c, toks, 9, 0, &err), SM_ERANGE);
    ctx_free(&c);
    model_free(&m);
}

Test(infer_errors, bad_logits_files)
{
    char *dir = ts_tmpdir();
    size_t len = 0;
    uint8_t *b = ts_read(REF("stories260K", "kld-base.bin"), &len);
    cr_assert_not_null(b);
    struct {
        size_t cut;
        int patch_magic;
        int code;
        const char *msg;
    } cases[] = {
        {len - 2, 0, SM_EFORMAT, "need"},
        {10, 0, SM_EFORMAT, "_logits_"},
        {len, 1, SM_EFORMAT, "_logits_"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[1200];
        snprintf(path, sizeof path, "%s/b%zu.bin", dir, i);
        if (cases[i].patch_magic)
            b[0] = 'X';
        cr_assert_eq(ts_write(path, b, cases[i].cut), 0);
        sm_kld_base kb;
        sm_err err = {0};
        cr_expect_eq(kld_base_open(&kb, path, &err), cases[i].code, "case %zu: %s", i, err.msg);
        cr_expect_not_null(strstr(err.msg, cases[i].msg), "case %zu: '%s'", i, err.msg);
    }
    /* vocabulary mismatch: qwen2 model against a 512-token base */
    sm_model m;
    ts_load_model(&m, REF("qwen2-tiny", "convert-f16.gguf"));
    sm_kld_base kb;
    sm_err err = {0};
    cr_assert_eq(kld_base_open(&kb, REF("stories260K", "kld-base.bin"), &err), 0, "%s", err.msg);
    sm_kld_opts o = {128, 1, 1, NULL};
    sm_kld_result r;
    cr_expect_eq(kld_run(&m, &kb, &o, &r, &err), SM_EMISMATCH);
    cr_expect_not_null(strstr(err.msg, "inconsistent vocabulary"), "%s", err.msg);
    kld_base_close(&kb);
    model_free(&m);
    free(b);
    ts_rmtree(dir);
    free(dir);
}

/* The CLI prints "prog: path: reason" once and exits non-zero. */
Test(infer_cli, errors_and_json)
{
    char *out = NULL;
    int st = ts_run(&out, "%s/smelt-infer perplexity -m %s -f %s -c 4096 2>&1", ts_bin(),
                    REF("stories260K", "convert-f16.gguf"), ts_path("text/tinystories-valid.txt"));
    cr_expect_neq(st, 0);
    cr_expect_not_null(strstr(out, "smelt-infer: "), "%s", out);
    cr_expect_not_null(strstr(out, "training context"), "%s", out);
    free(out);
    out = NULL;
    st = ts_run(&out, "%s/smelt-infer perplexity -m %s -f %s -c 128 -b 128 --chunks 4 -t 2 --json 2>/dev/null",
                ts_bin(), REF("stories260K", "convert-f16.gguf"), ts_path("text/tinystories-valid.txt"));
    cr_assert_eq(st, 0, "%s", out);
    json_error_t je;
    json_t *j = json_loads(out, 0, &je);
    cr_assert_not_null(j, "%s", out);
    cr_expect_eq(json_integer_value(json_object_get(j, "chunks")), 4);
    cr_expect_str_eq(json_string_value(json_object_get(j, "arch")), "llama");
    cr_expect_eq(json_array_size(json_object_get(j, "per_chunk_running_ppl")), 4);
    cr_expect_eq(strlen(json_string_value(json_object_get(j, "text_sha256"))), 64);
    json_decref(j);
    free(out);
    out = NULL;
    /* the portable kernels (no AVX2) agree with llama.cpp as well */
    st = ts_run(&out,
                "SMELT_NO_AVX2=1 %s/smelt-infer perplexity -m %s -f %s -c 128 -b 128 --chunks 8 -t 2 --json 2>/dev/null",
                ts_bin(), REF("tinystories-3m", "Q4_K_M.gguf"), ts_path("text/tinystories-valid.txt"));
    cr_assert_eq(st, 0, "%s", out);
    j = json_loads(out, 0, &je);
    cr_assert_not_null(j, "%s", out);
    json_t *pj = load_json(REF("tinystories-3m", "perplexity.json"));
    double ref8 = ref_running_ppl(find_run(json_object_get(pj, "runs"), "Q4_K_M.gguf", "tinystories-valid.txt"), 8);
    double got8 = json_number_value(json_object_get(j, "ppl"));
    cr_expect_lt(fabs(got8 - ref8) / ref8, 1e-3, "portable kernels: PPL %.4f vs %.4f", got8, ref8);
    json_decref(pj);
    json_decref(j);
    free(out);
    out = NULL;
    st = ts_run(&out, "%s/smelt-infer generate -m %s -p 'Once upon a time' -n 12 --temp 0 -c 128 -t 1 2>/dev/null",
                ts_bin(), REF("stories260K", "convert-f16.gguf"));
    cr_assert_eq(st, 0, "%s", out);
    cr_expect_not_null(strstr(out, ", there was a little girl named Lily"), "%s", out);
    free(out);
    out = NULL;
    /* mem: 5 layers x 256 positions x 4 kv heads x 8 dims, K and V, f32 */
    st = ts_run(&out, "%s/smelt-infer mem -m %s -c 256 -t 1 --json --run 2>&1", ts_bin(),
                REF("stories260K", "convert-f16.gguf"));
    cr_assert_eq(st, 0, "%s", out);
    j = json_loads(out, 0, &je);
    cr_assert_not_null(j, "%s", out);
    cr_expect_eq(json_integer_value(json_object_get(j, "kv_cache_bytes")), 2 * 5 * 256 * 32 * 2); /* F16 cache */
    cr_expect_eq(json_integer_value(json_object_get(j, "kv_cache_f16_bytes")), 2 * 5 * 256 * 32 * 2);
    cr_expect_eq(json_integer_value(json_object_get(j, "weights_bytes")), 521472);
    cr_expect_gt(json_integer_value(json_object_get(j, "peak_rss_bytes")), 1000000);
    json_decref(j);
    free(out);
    out = NULL;
    st = ts_run(&out, "%s/smelt-infer bench -m %s -p 32 -n 8 -r 1 -t 1 2>&1", ts_bin(),
                REF("stories260K", "Q4_K_M.gguf"));
    cr_assert_eq(st, 0, "%s", out);
    cr_expect_not_null(strstr(out, "| pp32 |"), "%s", out);
    cr_expect_not_null(strstr(out, "| tg8 |"), "%s", out);
    free(out);
}

/* ------------------------------------------------ ggml numerics kernels */

/* A plain re-statement of tinyBLAS<16>: 16 fma lanes, then the 512-bit
 * reduction gcc emits (halves, quarters, pairs). */
static float ref_tb16(const float *a, const float *b, int64_t n)
{
    float l[16] = {0};
    for (int64_t i = 0; i < n; i++)
        l[i % 16] = fmaf(a[i], b[i], l[i % 16]);
    float h[8], q[4];
    for (int i = 0; i < 8; i++)
        h[i] = l[i + 8] + l[i];
    for (int i = 0; i < 4; i++)
        q[i] = h[i + 4] + h[i];
    return (q[0] + q[2]) + (q[1] + q[3]);
}

static uint32_t f2u(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* The AVX2 kernels and the portable ones give the same bits (both restate
 * ggml's AVX-512 lane structure); checked on sizes with and without
 * 16/32/64-element tails. */
Test(infer_kernels, simd_and_portable_agree_bit_for_bit)
{
    enum { N = 1000 };
    static float a[N], b[N], x[N], y[N], g1[N], g2[N];
    uint32_t st = 12345;
    for (int i = 0; i < N; i++) {
        st = st * 1664525u + 1013904223u;
        a[i] = ((float)(st >> 8) / 16777216.0f - 0.5f) * 4.0f;
        st = st * 1664525u + 1013904223u;
        b[i] = ((float)(st >> 8) / 16777216.0f - 0.5f) * 4.0f;
    }
    static const int64_t sizes[] = {8, 16, 32, 48, 64, 96, 128, 172, 256, 768, 960};
    int fast = 0;
    ops_force_portable(0);
    fast = ops_fast_path();
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        int64_t n = sizes[k];
        float r[2][6];
        for (int port = 0; port < 2; port++) {
            ops_force_portable(port);
            r[port][0] = n % 16 == 0 ? ops_dot_tb16(a, b, n) : 0.0f;
            r[port][1] = ops_dot_vf16(a, b, n);
            r[port][2] = ops_dot_vf32(a, b, n);
            r[port][3] = ops_dot_vbf16(a, b, n);
            r[port][4] = n % 32 == 0 ? ops_dot_tb32bf(a, b, n) : 0.0f;
            float out[4] = {0};
            if (n % 16 == 0)
                ops_dot_tb16x4(a, 200, b, n <= 200 ? n : 192, out);
            r[port][5] = out[3];
        }
        for (int i = 0; i < 6; i++)
            cr_expect_eq(f2u(r[0][i]), f2u(r[1][i]), "n %lld kernel %d: %.9g vs %.9g", (long long)n, i,
                         (double)r[0][i], (double)r[1][i]);
        if (n % 16 == 0)
            cr_expect_eq(f2u(r[0][0]), f2u(ref_tb16(a, b, n)), "tb16 n %lld", (long long)n);
        if (n < 64) /* no 64-step: vec_dot_f16 is a plain double sum */
        {
            double d = 0;
            for (int64_t i = 0; i < n; i++)
                d += (double)(a[i] * b[i]);
            cr_expect_eq(f2u(r[0][1]), f2u((float)d));
        }
    }
    /* SwiGLU (ggml_v_silu on 16-blocks, libm on the tail) and softmax */
    for (int port = 0; port < 2; port++) {
        ops_force_portable(port);
        memcpy(port ? g2 : g1, a, sizeof a);
        ops_swiglu(port ? g2 : g1, b, 1000 - 3);
        memcpy(port ? y : x, a, sizeof a);
        for (int i = 0; i < 300; i++)
            (port ? y : x)[i] *= 30.0f; /* exercise the |n| > 126 lanes */
        ops_softmax_ggml(port ? y : x, 300, 0.125f);
    }
    for (int i = 0; i < 1000 - 3; i++)
        cr_assert_eq(f2u(g1[i]), f2u(g2[i]), "swiglu[%d]", i);
    for (int i = 0; i < 300; i++)
        cr_assert_eq(f2u(x[i]), f2u(y[i]), "softmax[%d]", i);
    ops_force_portable(0);
    cr_log_info("fast path in use: %d", fast);
    /* ggml_v_expf: within 2 ulp of exp, exact 0 / inf where ggml flushes */
    for (float v = -100.0f; v < 88.0f; v += 0.37f) {
        float e = ops_expf_ggml(v), ref = expf(v);
        cr_expect(fabsf(e - ref) <= 2.5e-7f * ref, "expf(%g): %.9g vs %.9g", (double)v, (double)e, (double)ref);
    }
    cr_expect_eq(ops_expf_ggml(-200.0f), 0.0f);
    cr_expect(isinf(ops_expf_ggml(200.0f)));
}

/* The KV cache is F16 like llama.cpp's: tinystories-3m at n_ctx 128 needs
 * llama.cpp's "KV self size = 0.25 MiB" (generate logs). */
Test(infer_forward, kv_cache_is_f16_like_llama_cpp)
{
    sm_model m;
    ts_load_model(&m, REF("tinystories-3m", "Q4_K_M.gguf"));
    sm_err err = {0};
    sm_ctx c;
    cr_assert_eq(ctx_init(&c, &m, 128, 32, 1, &err), 0, "%s", err.msg);
    cr_expect_eq(c.kv_bytes, 262144u);
    sm_mem_report r;
    mem_estimate(&m, 128, 32, 1, &r);
    cr_expect_eq(r.kv_cache, 262144u);
    cr_expect_eq(r.kv_cache_f16, 262144u);
    ctx_free(&c);
    model_free(&m);
}

/* Fuzz finding (tests/fuzz/regressions/model/): NaN weights made
 * ops_expf_ggml convert a NaN to int (UBSan). NaN must come out as NaN, and
 * the whole evaluation of that file must run clean under the sanitizers. */
Test(infer_regressions, nan_activations_in_expf)
{
    cr_assert(isnan(ops_expf_ggml(NAN)));
    cr_assert_eq(ops_expf_ggml(0.0f), 1.0f);
    cr_assert_eq(ops_expf_ggml(-1000.0f), 0.0f);
    cr_assert(isinf(ops_expf_ggml(1000.0f)));
    size_t len;
    uint8_t *buf = ts_read("tests/fuzz/regressions/model/nan-weights-expf.gguf", &len);
    cr_assert_not_null(buf, "run from the repository root");
    gguf_file g;
    sm_err err;
    int rc = gguf_parse(&g, buf, len, "nan-weights.gguf", &err);
    cr_assert_eq(rc, 0, "%s", err.msg);
    sm_model m;
    rc = model_load_gguf(&m, &g, &err); /* g is closed either way */
    if (rc == 0) {
        sm_ctx c;
        int32_t t[3] = {0, 1, 2};
        cr_assert_eq(ctx_init(&c, &m, 8, 4, 1, &err), 0, "%s", err.msg);
        /* NaN logits are an acceptable outcome; crashing or UB is not */
        (void)ctx_eval(&c, t, 3, 0, &err);
        ctx_free(&c);
        model_free(&m);
    }
    free(buf);
}

/* general.alignment 1 (fuzz_quantize's finding, also a valid GGUF for
 * llama.cpp's reader): the weights sit at odd addresses, and smelt-infer,
 * which computes on them in place through fp16/float fields, refuses the
 * file with the tensor, the file offset and the declared alignment. */
Test(infer_regressions, unaligned_tensor_data_refused)
{
    size_t len;
    uint8_t *buf = ts_read("tests/fuzz/regressions/quantize/misaligned-q4_0-alignment-1.gguf", &len);
    cr_assert_not_null(buf, "run from the repository root");
    gguf_file g;
    sm_err err;
    cr_assert_eq(gguf_parse(&g, buf, len, "alignment-1.gguf", &err), 0, "%s", err.msg);
    cr_assert_eq(g.alignment, 1);
    sm_model m;
    int rc = model_load_gguf(&m, &g, &err); /* g is closed either way */
    cr_assert_eq(rc, SM_EFORMAT, "rc %d: %s", rc, err.msg);
    cr_assert(strstr(err.msg, "tensor 'token_embd.weight': data at file offset 3677 is not 4-byte aligned "
                              "(general.alignment 1)"),
              "%s", err.msg);
    free(buf);
}
