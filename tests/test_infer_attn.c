/* test_infer_attn.c — the attention kernels (KQ, softmax, KQV), the thread
 * pool, and the whole-file WikiText-2 perplexity of stories260K.
 *
 * Every SIMD kernel must give the portable kernel's bits, and the portable
 * kernels the bits of the per-cell formulation the forward pass used before
 * (ops_f16_row + ops_dot_tb16_hf / ops_dot_vf16, which test_infer.c ties to
 * llama.cpp): checked with memcmp at each CPU level this machine has. */
#include "infer/cpu.h"
#include "infer/eval.h"
#include "infer/ops.h"
#include "infer/threads.h"
#include "infer/tokenizer.h"
#include "fp16.h"
#include "support.h"
#include "support_infer.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------ helpers */

static uint32_t rng_state;

static float urand(void)
{
    rng_state = rng_state * 1664525u + 1013904223u;
    return (float)(rng_state >> 8) / 16777216.0f;
}

/* an F16 value spread over many binades (so the double sums and the lane
 * order both matter), sometimes zero or tiny */
static uint16_t rand_f16(void)
{
    float u = urand();
    if (u < 0.02f)
        return 0;
    float v = (urand() - 0.5f) * 4.0f * ldexpf(1.0f, (int)(urand() * 16.0f) - 8);
    if (u < 0.04f)
        v *= 1e-4f; /* F16 subnormals */
    return sm_f32_to_f16(v);
}

static float f16f(uint16_t h) { return sm_f16_to_f32(h); }

/* Levels to check: the portable kernels, then each SIMD level the CPU has.
 * set_level(CPU_PORTABLE) also forces ops' older AVX2 switch off. */
static void set_level(int lv)
{
    ops_force_portable(lv == CPU_PORTABLE);
    cpu_force_level(lv);
}

static void reset_level(void)
{
    ops_force_portable(0);
    cpu_force_level(-1);
}

static int n_levels(void)
{
    ops_init();
    cpu_force_level(-1);
    int best = cpu_level();
    if (best < CPU_AVX512)
        cr_log_info("this CPU has no AVX-512 (level %d): checking the levels it has", best);
    return best + 1;
}

/* KV lengths: every length up to 40, then steps and the edges of 16/32/64 */
static int64_t kv_lengths(int64_t *out)
{
    int64_t k = 0;
    for (int64_t n = 1; n <= 40; n++)
        out[k++] = n;
    static const int64_t edges[] = {47,  48,  49,  63,  64,  65,  95,  96,  97,  127, 128, 129, 150, 191,
                                    192, 193, 255, 256, 257, 300, 383, 384, 385, 447, 511, 512, 513, 600};
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++)
        out[k++] = edges[i];
    return k;
}

static const int64_t head_sizes[] = {8, 16, 64, 128, 24, 80};

/* The forward pass's former per-cell KQ: the K row widened, then the dot
 * llama.cpp's kernel choice gives. */
static float old_kq(const uint16_t *row, const float *q, int64_t H, int tb16)
{
    float kr[128];
    ops_f16_row(row, kr, H);
    return tb16 ? ops_dot_tb16(kr, q, H) : ops_dot_vf16(kr, q, H);
}

/* The former KQV of one output dimension: the V row widened with zeros
 * past n, then tinyBLAS over n rounded up to 16 or vec_dot_f16 over npad
 * (p zero past n). */
static float old_pv(const uint16_t *vrow, const float *p, int64_t n, int64_t npad, int tb16)
{
    static float vr[1024];
    for (int64_t s = 0; s < npad; s++)
        vr[s] = s < n ? f16f(vrow[s]) : 0.0f;
    if (tb16) {
        int64_t nfull = n & ~(int64_t)15, nblk = (n + 15) / 16 * 16;
        return ops_dot_tb16_hf(vrow, vr, p, nfull, nblk);
    }
    return ops_dot_vf16(vr, p, npad);
}

static int64_t pad32(int64_t n) { return n < 32 ? 32 : (n + 31) / 32 * 32; }

/* ------------------------------------------------------------ KQ */

Test(attn_kernels, kq_transposed_and_rows_every_level)
{
    enum { NMAX = 600, HMAX = 128, LDK = 640 };
    static uint16_t kt[HMAX * LDK], kr[NMAX * (HMAX + 8)];
    static double kt64[HMAX * LDK];
    static float q[HMAX], ref[NMAX], got[NMAX + 16];
    static int64_t lens[128];
    rng_state = 7;
    for (int64_t i = 0; i < HMAX * LDK; i++) {
        kt[i] = rand_f16();
        kt64[i] = (double)f16f(kt[i]);
    }
    const int64_t ldr = HMAX + 8;
    for (int64_t s = 0; s < NMAX; s++)
        for (int64_t i = 0; i < HMAX; i++)
            kr[s * ldr + i] = kt[i * LDK + s];
    for (int64_t i = 0; i < HMAX; i++)
        q[i] = f16f(rand_f16());
    int64_t nl = kv_lengths(lens);
    int levels = n_levels();
    long checked = 0;
    for (size_t hi = 0; hi < sizeof head_sizes / sizeof head_sizes[0]; hi++) {
        const int64_t H = head_sizes[hi];
        for (int tb16 = 0; tb16 < 2; tb16++) {
            if (tb16 && H % 16)
                continue;
            for (int64_t li = 0; li < nl; li++) {
                const int64_t n = lens[li];
                for (int64_t s = 0; s < n; s++)
                    ref[s] = old_kq(kr + s * ldr, q, H, tb16);
                for (int lv = 0; lv < levels; lv++) {
                    set_level(lv);
                    /* layouts: transposed F16, rows, transposed doubles */
                    for (int layout = 0; layout < (tb16 ? 2 : 3); layout++) {
                        memset(got, 0xff, sizeof got);
                        if (layout == 0)
                            ops_kq_t(kt, LDK, q, H, n, tb16, got);
                        else if (layout == 1)
                            ops_kq_rows(kr, ldr, q, H, n, tb16, got);
                        else
                            ops_kq_t64(kt64, LDK, q, H, n, got);
                        cr_assert(memcmp(ref, got, (size_t)n * sizeof(float)) == 0,
                                  "KQ H %lld n %lld tb16 %d level %d layout %d: first %.9g vs %.9g", (long long)H,
                                  (long long)n, tb16, lv, layout, (double)ref[0], (double)got[0]);
                        /* nothing written past n */
                        cr_assert_eq(sm_f32_bits(got[n]), 0xffffffffu);
                        checked++;
                    }
                }
                reset_level();
            }
        }
    }
    cr_log_info("%ld KQ comparisons at %d levels", checked, levels);
    cr_assert_gt(checked, 1000);
}

/* ------------------------------------------------------------ KQV */

Test(attn_kernels, kqv_batched_and_single_every_level)
{
    enum { NMAX = 600, HMAX = 128, LDV = 700 };
    static uint16_t v[HMAX * LDV];
    static float p[1024], ref[HMAX], got[HMAX + 1];
    static int64_t lens[128];
    rng_state = 99;
    for (int64_t i = 0; i < HMAX * LDV; i++)
        v[i] = rand_f16();
    int64_t nl = kv_lengths(lens);
    int levels = n_levels();
    long checked = 0;
    for (size_t hi = 0; hi < sizeof head_sizes / sizeof head_sizes[0]; hi++) {
        const int64_t H = head_sizes[hi];
        for (int64_t li = 0; li < nl; li++) {
            const int64_t n = lens[li];
            /* probabilities as the softmax leaves them: F16 values in [0, 1],
             * some exactly 0; garbage past n must not be read as such */
            for (int64_t s = 0; s < 1024; s++)
                p[s] = s < n ? (urand() < 0.1f ? 0.0f : f16f(sm_f32_to_f16(urand() * urand()))) : 0.0f;
            for (int tb16 = 0; tb16 < 2; tb16++) {
                /* single tokens: the padded length of this or a longer batch */
                for (int64_t extra = 0; extra < (tb16 ? 1 : 3); extra++) {
                    const int64_t npad = pad32(n) + 32 * extra;
                    for (int64_t i = 0; i < H; i++)
                        ref[i] = old_pv(v + i * LDV, p, n, npad, tb16);
                    for (int lv = 0; lv < levels; lv++) {
                        set_level(lv);
                        got[H] = -1.0f;
                        ops_pv(v, LDV, p, n, npad, H, tb16, got);
                        cr_assert(memcmp(ref, got, (size_t)H * sizeof(float)) == 0,
                                  "KQV H %lld n %lld npad %lld tb16 %d level %d", (long long)H, (long long)n,
                                  (long long)npad, tb16, lv);
                        cr_assert_eq(got[H], -1.0f);
                        checked++;
                    }
                    reset_level();
                }
            }
        }
    }
    cr_log_info("%ld KQV comparisons at %d levels", checked, levels);
    cr_assert_gt(checked, 1000);
}

/* ------------------------------------------------------------ softmax */

/* The scalar statement of ops_softmax_ggml (ggml_soft_max_ext, then the F16
 * rounding), through ops_expf_ggml. */
static void ref_softmax(float *s, int64_t n, float scale)
{
    float mx = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        s[i] *= scale;
        mx = s[i] > mx ? s[i] : mx;
    }
    double sum = 0.0;
    for (int64_t b = 0; b < n; b += 16) {
        float e[16];
        for (int k = 0; k < 16; k++)
            e[k] = b + k < n ? ops_expf_ggml(s[b + k] - mx) : 0.0f;
        for (int k = 0; k < 16 && b + k < n; k++)
            s[b + k] = e[k];
        float h[8], qd[4];
        for (int k = 0; k < 8; k++)
            h[k] = e[k + 8] + e[k];
        for (int k = 0; k < 4; k++)
            qd[k] = h[k + 4] + h[k];
        sum += (double)((qd[0] + qd[2]) + (qd[1] + qd[3]));
    }
    const float inv = (float)(1.0 / sum);
    for (int64_t i = 0; i < n; i++)
        s[i] = f16f(sm_f32_to_f16(s[i] * inv));
}

/* The exponential lanes themselves, every input from -110 to -80 in steps
 * of 1/64 (results from 2^-159 to 2^-115: zero, subnormal, the lowest
 * binades) and around the |n| > 192 cut, at every level: the AVX-512 kernel
 * computes subnormal results without a subnormal-producing instruction, and
 * the F16 rounding in the softmax would hide a wrong one. */
Test(attn_kernels, expf_subnormal_band_every_level)
{
    int levels = n_levels();
    long checked = 0, subnormal = 0;
    static const float extra[] = {-133.5f, -133.1f, -132.9f, -140.0f, -87.33655f, -87.3365f, -103.27893f,
                                  -103.9721f, -104.0f, 0.0f, -0.0f, 88.7f, -1e-3f, -150.0f, -180.5f, -200.0f};
    for (int base = 0; base < 30 * 64 + 16; base += 16) {
        float x[16], want[16], got[16];
        for (int k = 0; k < 16; k++)
            x[k] = base < 30 * 64 ? -110.0f + (float)(base + k) / 64.0f : extra[k];
        for (int k = 0; k < 16; k++) {
            want[k] = ops_expf_ggml(x[k]);
            subnormal += want[k] != 0.0f && fabsf(want[k]) < 0x1p-126f;
        }
        for (int lv = 0; lv < levels; lv++) {
            set_level(lv);
            ops_expf16_ggml(x, got);
            for (int k = 0; k < 16; k++)
                cr_assert(memcmp(&want[k], &got[k], sizeof(float)) == 0, "expf(%a) level %d: %a, reference %a",
                          (double)x[k], lv, (double)got[k], (double)want[k]);
            checked++;
        }
        reset_level();
    }
    cr_assert_gt(subnormal, 500, "only %ld subnormal results", subnormal);
    cr_assert_gt(checked, 100);
}

Test(attn_kernels, softmax_every_level)
{
    enum { N = 600 };
    static float src[N], ref[N + 16], got[N + 16];
    static int64_t lens[128];
    int64_t nl = kv_lengths(lens);
    int levels = n_levels();
    long checked = 0;
    /* 250 and 600 put many cells 87..200 below the row maximum, where the
     * exponentials are subnormal (the AVX-512 kernel's separate path); 3000
     * exercises ggml_v_expf's |n| > 192 lanes */
    static const float amps[] = {4.0f, 60.0f, 250.0f, 600.0f, 3000.0f};
    for (int spread = 0; spread < 5; spread++) {
        rng_state = 1234u + (uint32_t)spread;
        const float amp = amps[spread];
        for (int i = 0; i < N; i++)
            src[i] = (urand() - 0.5f) * amp;
        for (int64_t li = 0; li < nl; li++) {
            const int64_t n = lens[li];
            memcpy(ref, src, (size_t)n * sizeof(float));
            ref_softmax(ref, n, 0.35355339f);
            for (int lv = 0; lv < levels; lv++) {
                set_level(lv);
                memcpy(got, src, sizeof src);
                got[n] = 42.0f;
                ops_softmax_ggml(got, n, 0.35355339f);
                cr_assert(memcmp(ref, got, (size_t)n * sizeof(float)) == 0, "softmax n %lld spread %d level %d",
                          (long long)n, spread, lv);
                cr_assert_eq(got[n], 42.0f, "softmax wrote past n");
                checked++;
            }
            reset_level();
        }
    }
    cr_assert_gt(checked, 300);
}

/* ------------------------------------------------ the forward pass */

/* Logits of a 70-token batch then 5 single tokens (all rows requested),
 * on n_threads threads at the given CPU level. */
/* Logit rows of the 70-token batch that eval_logits keeps. Under the
 * sanitizer only its last 4: the portable products of qwen2-tiny's
 * 151936-row output over 70 tokens took ~4 minutes there, and 4 rows still
 * run the batched (tile) path of the output product while every layer
 * below sees all 70 tokens. */
#if defined(__SANITIZE_ADDRESS__)
enum { EVAL_OUT_FIRST = 66 };
#else
enum { EVAL_OUT_FIRST = 0 };
#endif
enum { EVAL_ROWS = 70 - EVAL_OUT_FIRST + 5 };

static void eval_logits(const sm_model *m, int lv, int32_t n_threads, float *out, int64_t *n_out)
{
    sm_ctx c;
    sm_err err = {0};
    cr_assert_eq(ctx_init(&c, m, 128, 80, n_threads, &err), 0, "%s", err.msg);
    set_level(lv);
    int32_t toks[75];
    for (int i = 0; i < 75; i++)
        toks[i] = (int32_t)((i * 37 + 11) % m->hp.n_vocab);
    const int64_t V = m->hp.n_vocab;
    int64_t k = 0;
    cr_assert_eq(ctx_eval(&c, toks, 70, EVAL_OUT_FIRST, &err), 0, "%s", err.msg);
    cr_assert_eq(c.n_logits, 70 - EVAL_OUT_FIRST);
    memcpy(out, c.logits, (size_t)((70 - EVAL_OUT_FIRST) * V) * sizeof(float));
    k += (70 - EVAL_OUT_FIRST) * V;
    for (int i = 70; i < 75; i++) {
        cr_assert_eq(ctx_eval(&c, toks + i, 1, 0, &err), 0, "%s", err.msg);
        memcpy(out + k, c.logits, (size_t)V * sizeof(float));
        k += V;
    }
    reset_level();
    ctx_free(&c);
    *n_out = k;
}

/* Head sizes 8 (vec_dot_f16 KQ), 16 and 64 (tinyBLAS KQ) through the whole
 * forward pass: every level and thread count gives the portable
 * single-thread logits bit for bit. */
Test(attn_forward, levels_and_threads_agree)
{
    static const char *models[] = {"reference/stories260K/convert-f32.gguf", "reference/qwen2-tiny/convert-f16.gguf",
                                   "reference/tinystories-3m/convert-f16.gguf"};
#if defined(__SANITIZE_ADDRESS__)
    /* the portable float products of tinystories-3m's 32000-row output
     * take minutes under the sanitizer: the two small models cover the
     * vec_dot (8) and tinyBLAS (16) KQ paths there */
    const size_t n_models = 2;
#else
    const size_t n_models = 3;
#endif
    int levels = n_levels();
    for (size_t mi = 0; mi < n_models; mi++) {
        sm_model m;
        ts_load_model(&m, ts_path(models[mi]));
        const size_t sz = (size_t)EVAL_ROWS * (size_t)m.hp.n_vocab;
        float *ref = malloc(sz * sizeof(float)), *got = malloc(sz * sizeof(float));
        cr_assert(ref && got);
        int64_t nr = 0, ng = 0;
        eval_logits(&m, CPU_PORTABLE, 1, ref, &nr);
        cr_assert_eq(nr, (int64_t)sz);
        int nonzero = 0;
        for (size_t i = 0; i < sz; i++)
            nonzero += ref[i] != 0.0f && isfinite(ref[i]);
        cr_assert_gt(nonzero, (int)(sz / 2), "%s: logits look empty", models[mi]);
        /* (level, threads) pairs: the portable kernels split 3 ways, each
         * SIMD level on 1..3 threads */
        static const int runs[][2] = {{CPU_PORTABLE, 3}, {CPU_AVX2, 2}, {CPU_AVX2, 3},
                                      {CPU_AVX512, 1},   {CPU_AVX512, 2}, {CPU_AVX512, 3}};
        for (size_t ri = 0; ri < sizeof runs / sizeof runs[0]; ri++) {
            if (runs[ri][0] >= levels)
                continue;
            eval_logits(&m, runs[ri][0], runs[ri][1], got, &ng);
            cr_assert(memcmp(ref, got, sz * sizeof(float)) == 0, "%s: level %d, %d threads differ", models[mi],
                      runs[ri][0], runs[ri][1]);
        }
        free(ref);
        free(got);
        model_free(&m);
    }
}

/* ------------------------------------------------------------ pool */

typedef struct pool_job {
    int64_t n;
    double *out;             /* [n] */
    _Atomic int32_t calls;   /* fn invocations */
    int sleep_us_worker;     /* workers (ith > 0) sleep this long first */
} pool_job;

static void pool_fn_work(void *arg, int32_t ith, int32_t nth)
{
    pool_job *j = arg;
    atomic_fetch_add(&j->calls, 1);
    if (ith > 0 && j->sleep_us_worker)
        usleep((useconds_t)j->sleep_us_worker);
    int64_t lo, hi;
    pool_split(j->n, ith, nth, &lo, &hi);
    for (int64_t i = lo; i < hi; i++)
        j->out[i] = sin((double)i * 0.001) * (double)(i + 1);
}

/* Many short runs at 1..8 threads: every element written exactly by its
 * owner, every thread called once per run, results equal to 1 thread. */
Test(attn_pool, many_short_runs_equal_one_thread)
{
    enum { N = 1000 };
    static double ref[N], got[N];
    pool_job j = {N, ref, 0, 0};
    sm_err err = {0};
    sm_pool *p1 = pool_create(1, &err);
    cr_assert_not_null(p1, "%s", err.msg);
    pool_run(p1, pool_fn_work, &j);
    cr_assert_eq(atomic_load(&j.calls), 1);
    pool_free(p1);
    for (int32_t nt = 1; nt <= 8; nt++) {
        sm_pool *p = pool_create(nt, &err);
        cr_assert_not_null(p, "%s", err.msg);
        cr_assert_eq(pool_size(p), nt);
        /* fewer runs when the threads outnumber the cores */
        const int runs = nt <= 2 ? 3000 : 400;
        pool_job jj = {N, got, 0, 0};
        for (int r = 0; r < runs; r++) {
            memset(got, 0, sizeof got);
            pool_run(p, pool_fn_work, &jj);
            if (r % 500 == 0 || r == runs - 1)
                cr_assert(memcmp(ref, got, sizeof ref) == 0, "%d threads, run %d", (int)nt, r);
        }
        cr_assert_eq(atomic_load(&jj.calls), runs * nt);
        pool_free(p);
    }
}

/* Runs separated by pauses longer than the polling window (workers asleep
 * on the condition variable), and runs where the workers are slow (the
 * caller goes to sleep waiting): nothing lost, nothing run twice. */
Test(attn_pool, sleeping_workers_and_sleeping_caller)
{
    enum { N = 300 };
    static double ref[N], got[N];
    pool_job j = {N, ref, 0, 0};
    pool_fn_work(&j, 0, 1);
    sm_err err = {0};
    for (int32_t nt = 2; nt <= 4; nt++) {
        sm_pool *p = pool_create(nt, &err);
        cr_assert_not_null(p, "%s", err.msg);
        pool_job jj = {N, got, 0, 0};
        for (int r = 0; r < 12; r++) {
            memset(got, 0, sizeof got);
            jj.sleep_us_worker = r % 2 ? 3000 : 0;
            pool_run(p, pool_fn_work, &jj);
            cr_assert(memcmp(ref, got, sizeof ref) == 0, "%d threads, run %d", (int)nt, r);
            if (r % 3 == 0)
                usleep(2000); /* past the poll window: workers sleep */
        }
        cr_assert_eq(atomic_load(&jj.calls), 12 * nt);
        pool_free(p);
    }
}

/* Teardown right after creation (workers may not have started polling
 * yet), and right after one run, many times. */
Test(attn_pool, teardown_right_after_creation)
{
    sm_err err = {0};
    int created = 0;
    for (int rep = 0; rep < 40; rep++)
        for (int32_t nt = 1; nt <= 8; nt++) {
            sm_pool *p = pool_create(nt, &err);
            cr_assert_not_null(p, "%s", err.msg);
            created++;
            if (rep % 2) {
                static double out[64];
                pool_job jj = {64, out, 0, 0};
                pool_run(p, pool_fn_work, &jj);
                cr_assert_eq(atomic_load(&jj.calls), nt);
                cr_assert_eq(out[63], sin(0.063) * 64.0);
            }
            pool_free(p);
        }
    cr_assert_eq(created, 320);
    pool_free(NULL);
    cr_assert_null(pool_create(0, &err));
}

/* ------------------------------------ whole-file perplexity (CI guard)
 *
 * stories260K F32 on the whole WikiText-2 test file at -c 512 (1580
 * chunks), the run `smelt-infer perplexity -c 512 -t 2` makes. The values
 * are llama-perplexity c392e5094's on the same file and flags (it printed
 * every one of the 1580 running values smelt computes, to 4 decimals).
 * Under ASan (~10x slower) only the first 40 chunks' running value is
 * checked: the same kernels and split run, at a cost the sanitizer job can
 * carry. */

Test(attn_ppl, stories260K_f32_wikitext2_whole_file_c512)
{
    sm_model m;
    ts_load_model(&m, ts_path("reference/stories260K/convert-f32.gguf"));
    size_t n = 0;
    int32_t *ids = ts_tokenize_file(&m, ts_path("text/wiki.test.raw"), &n);
    cr_assert_eq(n, 809290, "the text tokenizes to %zu tokens", n);
#if defined(__SANITIZE_ADDRESS__)
    const int chunks = 40;
    const double want = 130.0652;
#else
    const int chunks = -1;
    const double want = 127.5575, want_err = 0.74873;
#endif
    sm_ppl_opts o = {512, 512, chunks, 2, NULL, NULL};
    sm_ppl_result r;
    sm_err err = {0};
    cr_assert_eq(ppl_run(&m, ids, (int64_t)n, &o, &r, &err), 0, "%s", err.msg);
    cr_assert_eq(r.n_chunks, chunks < 0 ? 1580 : chunks);
    cr_expect_lt(fabs(r.ppl - want), 5.01e-5, "PPL %.5f, recorded %.4f", r.ppl, want);
#if !defined(__SANITIZE_ADDRESS__)
    cr_expect_lt(fabs(r.ppl_err - want_err), 5.01e-6, "error %.6f, recorded %.5f", r.ppl_err, want_err);
#endif
    /* the running value after 40 chunks, as printed by the CLI */
    cr_expect_lt(fabs(r.chunk_ppl[39] - 130.0652), 5.01e-5, "[40] %.5f", r.chunk_ppl[39]);
    ppl_result_free(&r);
    free(ids);
    model_free(&m);
}

/* The F16 file's running value after 40 chunks of the same run (recorded
 * with the former kernels; the whole file gives 127.5766 +/- 0.74884). */
Test(attn_ppl, stories260K_f16_wikitext2_40_chunks_c512)
{
    sm_model m;
    ts_load_model(&m, ts_path("reference/stories260K/convert-f16.gguf"));
    size_t n = 0;
    int32_t *ids = ts_tokenize_file(&m, ts_path("text/wiki.test.raw"), &n);
    cr_assert_eq(n, 809290);
    sm_ppl_opts o = {512, 512, 40, 2, NULL, NULL};
    sm_ppl_result r;
    sm_err err = {0};
    cr_assert_eq(ppl_run(&m, ids, (int64_t)n, &o, &r, &err), 0, "%s", err.msg);
    cr_assert_eq(r.n_chunks, 40);
    cr_expect_lt(fabs(r.ppl - 130.0638), 5.01e-5, "PPL %.5f, recorded 130.0638", r.ppl);
    ppl_result_free(&r);
    free(ids);
    model_free(&m);
}
