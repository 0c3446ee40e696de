/* smelt-infer — evaluate a GGUF model: perplexity, KL divergence, generation,
 * memory and speed, with llama.cpp's methods and flags. */
#include "args.h"
#include "compare.h"
#include "gate.h"
#include "eval.h"
#include "infer/tokenizer.h"
#include "tok_internal.h"
#include "sha256.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *prog = "smelt-infer";

static void usage(FILE *f)
{
    fprintf(f,
            "usage: smelt-infer COMMAND [options]\n"
            "  perplexity -m M.gguf -f TEXT [-c 512] [-b N] [--chunks N] [-t N] [--json]\n"
            "             [--kl-divergence-base FILE]            (save base logits while measuring)\n"
            "             [--kl-divergence-base FILE --kl-divergence] (compare against them)\n"
            "  kld        -m M.gguf -f TEXT --save-logits FILE [-c 512] [-b N] [--chunks N] [-t N]\n"
            "  kld        -m Q.gguf --logits FILE [-b N] [--chunks N] [-t N] [--json]\n"
            "  generate   -m M.gguf -p PROMPT [-n 128] [--temp 0.8] [--top-k 40] [--top-p 0.95]\n"
            "             [--min-p 0.05] [--repeat-penalty 1.0] [--repeat-last-n 64] [--frequency-penalty 0]\n"
            "             [--presence-penalty 0] [--seed S] [-c N] [-b N] [-t N] [--ignore-eos] [--json]\n"
            "  mem        -m M.gguf [-c 512] [-b N] [-t N] [--json] [--run]\n"
            "  bench      -m M.gguf [-p 512] [-n 128] [-b 2048] [-t N] [-r 5]\n");
}

typedef struct opts {
    const char *model, *text, *prompt, *save_logits, *logits;
    int32_t n_ctx, n_batch, n_chunks, n_threads, n_predict, top_k, reps, n_prompt_bench;
    float temp, top_p, min_p, repeat_penalty, freq_penalty, present_penalty;
    int32_t repeat_last_n;
    uint64_t seed;
    int seed_set, json, run, kld_mode, ignore_eos, ctx_set, batch_set;
} opts;

static int fail(const char *path, const sm_err *err)
{
    size_t n = path ? strlen(path) : 0;
    /* library messages about a file usually start with its path already */
    if (n && !strncmp(err->msg, path, n) && err->msg[n] == ':')
        fprintf(stderr, "%s: %s\n", prog, err->msg);
    else
        fprintf(stderr, "%s: %s: %s\n", prog, path ? path : "-", err->msg);
    return 1;
}

static int bad_arg(const char *msg, const char *arg)
{
    fprintf(stderr, "%s: %s%s%s\n", prog, msg, arg ? ": " : "", arg ? arg : "");
    return 2;
}

static int default_threads(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (n > 16 ? 16 : (int)n);
}

static int parse_opts(int argc, char **argv, opts *o)
{
    memset(o, 0, sizeof *o);
    o->n_ctx = 512;
    o->n_batch = 2048;
    o->n_chunks = -1;
    o->n_threads = default_threads();
    o->n_predict = 128;
    o->temp = 0.8f;
    o->top_k = 40;
    o->top_p = 0.95f;
    o->min_p = 0.05f;
    o->repeat_last_n = 64; /* llama.cpp's defaults: window 64, penalties off */
    o->repeat_penalty = 1.0f;
    o->reps = 5;
    o->n_prompt_bench = 512;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED()                                                                                                         \
    do {                                                                                                               \
        if (!v)                                                                                                        \
            return bad_arg("missing value after", a);                                                                  \
        i++;                                                                                                           \
    } while (0)
#define INT(dst)                                                                                                       \
    do {                                                                                                               \
        NEED();                                                                                                        \
        if (sm_parse_i32(v, &(dst)))                                                                                      \
            return bad_arg("not an integer", v);                                                                       \
    } while (0)
#define FLT(dst)                                                                                                       \
    do {                                                                                                               \
        NEED();                                                                                                        \
        if (sm_parse_f32(v, &(dst)))                                                                                      \
            return bad_arg("not a number", v);                                                                         \
    } while (0)
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            NEED();
            o->model = v;
        } else if (!strcmp(a, "-f") || !strcmp(a, "--file")) {
            NEED();
            o->text = v;
        } else if (!strcmp(a, "-c") || !strcmp(a, "--ctx-size")) {
            INT(o->n_ctx);
            o->ctx_set = 1;
        } else if (!strcmp(a, "-b") || !strcmp(a, "--batch-size")) {
            INT(o->n_batch);
            o->batch_set = 1;
        } else if (!strcmp(a, "--chunks")) {
            INT(o->n_chunks);
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            INT(o->n_threads);
        } else if (!strcmp(a, "--json")) {
            o->json = 1;
        } else if (!strcmp(a, "--run")) {
            o->run = 1;
        } else if (!strcmp(a, "--save-logits")) {
            NEED();
            o->save_logits = v;
        } else if (!strcmp(a, "--logits")) {
            NEED();
            o->logits = v;
        } else if (!strcmp(a, "--kl-divergence-base")) {
            NEED();
            o->save_logits = v; /* becomes the input with --kl-divergence */
        } else if (!strcmp(a, "--kl-divergence")) {
            o->kld_mode = 1;
        } else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) {
            NEED();
            o->prompt = v;
        } else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) {
            INT(o->n_predict);
        } else if (!strcmp(a, "--temp")) {
            FLT(o->temp);
        } else if (!strcmp(a, "--top-k")) {
            INT(o->top_k);
        } else if (!strcmp(a, "--top-p")) {
            FLT(o->top_p);
        } else if (!strcmp(a, "--min-p")) {
            FLT(o->min_p);
        } else if (!strcmp(a, "--repeat-last-n")) {
            INT(o->repeat_last_n);
        } else if (!strcmp(a, "--repeat-penalty")) {
            FLT(o->repeat_penalty);
        } else if (!strcmp(a, "--frequency-penalty")) {
            FLT(o->freq_penalty);
        } else if (!strcmp(a, "--presence-penalty")) {
            FLT(o->present_penalty);
        } else if (!strcmp(a, "--seed") || !strcmp(a, "-s")) {
            NEED();
            char *end;
            o->seed = strtoull(v, &end, 10);
            if (!*v || *end)
                return bad_arg("not an integer", v);
            o->seed_set = 1;
        } else if (!strcmp(a, "-r") || !strcmp(a, "--repetitions")) {
            INT(o->reps);
        } else if (!strcmp(a, "--ignore-eos")) {
            o->ignore_eos = 1;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            exit(0);
        } else {
            return bad_arg("unknown option", a);
        }
#undef NEED
#undef INT
#undef FLT
    }
    if (o->kld_mode) {
        o->logits = o->save_logits;
        o->save_logits = NULL;
    }
    if (!o->model)
        return bad_arg("missing -m MODEL.gguf", NULL);
    if (o->n_threads < 1 || o->n_threads > 512)
        return bad_arg("-t must be 1..512", NULL);
    if (o->n_batch < 1)
        return bad_arg("-b must be >= 1", NULL);
    return 0;
}

/* Loads model + tokenizer. */
static int load(const opts *o, sm_model *m, tok_vocab **v, sm_err *err)
{
    int rc = model_load(m, o->model, err);
    if (rc)
        return rc;
    if (v) {
        rc = tok_load(v, &m->gguf, err);
        if (rc) {
            model_free(m);
            return rc;
        }
    }
    return SM_OK;
}

static int tokenize_file(const opts *o, const tok_vocab *v, char **text, uint64_t *text_len, int32_t **ids,
                         size_t *n, sm_err *err)
{
    int rc = sm_read_file(o->text, 1ull << 31, text, text_len, err);
    if (rc)
        return rc;
    return tok_encode(v, *text, (size_t)*text_len, true, false, ids, n, err);
}

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

static int cmd_perplexity(const opts *o)
{
    sm_err err = {0};
    sm_model m;
    tok_vocab *v = NULL;
    char *text = NULL;
    uint64_t text_len = 0;
    int32_t *ids = NULL;
    size_t n = 0;
    const char *where = o->model;
    sm_ppl_result r;
    memset(&r, 0, sizeof r);
    int ret = 1;
    if (!o->text)
        return bad_arg("perplexity needs -f TEXT", NULL);
    if (load(o, &m, &v, &err))
        return fail(o->model, &err);
    where = o->text;
    double t0 = sm_now_ms();
    if (tokenize_file(o, v, &text, &text_len, &ids, &n, &err))
        goto out;
    double t1 = sm_now_ms();
    fprintf(stderr, "%s: tokenized %s: %zu tokens in %.1f ms\n", prog, o->text, n, t1 - t0);
    sm_ppl_opts po = {o->n_ctx, o->n_batch, o->n_chunks, o->n_threads, o->save_logits, o->json ? stderr : stdout};
    where = o->model;
    if (ppl_run(&m, ids, (int64_t)n, &po, &r, &err))
        goto out;
    double secs = (sm_now_ms() - t1) / 1e3;
    fprintf(o->json ? stderr : stdout, "Final estimate: PPL = %.4lf +/- %.5lf\n", r.ppl, r.ppl_err);
    fprintf(stderr, "%s: %d chunks of %d tokens in %.2f s (%d threads)\n", prog, (int)r.n_chunks, (int)o->n_ctx, secs,
            (int)o->n_threads);
    if (o->json) {
        char th[65], kh[65];
        sm_sha256_hex(text, (size_t)text_len, th);
        sm_sha256_hex(ids, n * sizeof(int32_t), kh);
        json_t *j = json_object();
        json_t *per = json_array();
        for (int32_t i = 0; i < r.n_chunks; i++)
            json_array_append_new(per, json_real(r.chunk_ppl[i]));
        json_object_set_new(j, "file", json_string(base_name(o->model)));
        json_object_set_new(j, "model_path", json_string(o->model));
        json_object_set_new(j, "text", json_string(base_name(o->text)));
        json_object_set_new(j, "text_path", json_string(o->text));
        json_object_set_new(j, "text_sha256", json_string(th));
        json_object_set_new(j, "ctx", json_integer(o->n_ctx));
        json_object_set_new(j, "batch", json_integer(o->n_batch < o->n_ctx ? o->n_batch : o->n_ctx));
        json_object_set_new(j, "chunks", json_integer(r.n_chunks));
        json_object_set_new(j, "chunks_arg", json_integer(o->n_chunks));
        json_object_set_new(j, "ppl", json_real(r.ppl));
        json_object_set_new(j, "ppl_err", json_real(r.ppl_err));
        json_object_set_new(j, "per_chunk_running_ppl", per);
        json_object_set_new(j, "arch", json_string(model_arch_name(m.hp.arch)));
        json_object_set_new(j, "n_vocab", json_integer(m.hp.n_vocab));
        json_object_set_new(j, "tokenizer_model", json_string(tok_kind(v) == TOK_KIND_SPM ? "llama" : "gpt2"));
        json_object_set_new(j, "tokenizer_pre", json_string(tok_pre_name(v)));
        json_object_set_new(j, "n_tokens", json_integer((json_int_t)n));
        json_object_set_new(j, "tokens_sha256", json_string(kh));
        /* the vocabulary itself: raw bytes of the token and merge arrays */
        sm_sha256 vs;
        uint8_t dg[32];
        char vh[65];
        sm_sha256_init(&vs);
        const char *vkeys[] = {"tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens",
                               "tokenizer.ggml.merges"};
        for (size_t k = 0; k < sizeof vkeys / sizeof vkeys[0]; k++) {
            const gguf_kv *kv = gguf_get(&m.gguf, vkeys[k]);
            if (kv)
                sm_sha256_update(&vs, kv->raw, (size_t)kv->raw_len);
        }
        sm_sha256_final(&vs, dg);
        sm_sha256_to_hex(dg, vh);
        json_object_set_new(j, "vocab_sha256", json_string(vh));
        json_object_set_new(j, "threads", json_integer(o->n_threads));
        json_object_set_new(j, "seconds", json_real(secs));
        char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
        if (s) {
            printf("%s\n", s);
            free(s);
        }
        json_decref(j);
    }
    ret = 0;
out:
    if (ret)
        fail(where, &err);
    ppl_result_free(&r);
    free(ids);
    free(text);
    tok_free(v);
    model_free(&m);
    return ret;
}

static int cmd_kld_compare(const opts *o)
{
    sm_err err = {0};
    sm_model m;
    sm_kld_base b;
    sm_kld_result r;
    if (load(o, &m, NULL, &err))
        return fail(o->model, &err);
    if (kld_base_open(&b, o->logits, &err)) {
        model_free(&m);
        return fail(o->logits, &err);
    }
    if (o->ctx_set && (uint32_t)o->n_ctx < b.n_ctx)
        fprintf(stderr, "%s: %s was computed with n_ctx %u; using that\n", prog, o->logits, b.n_ctx);
    sm_kld_opts ko = {o->batch_set ? o->n_batch : (int32_t)b.n_ctx, o->n_chunks, o->n_threads,
                      o->json ? stderr : stdout};
    int rc = kld_run(&m, &b, &ko, &r, &err);
    if (rc) {
        kld_base_close(&b);
        model_free(&m);
        return fail(o->model, &err);
    }
    if (o->json) {
        json_t *j = json_object();
        json_object_set_new(j, "file", json_string(base_name(o->model)));
        json_object_set_new(j, "base_logits", json_string(o->logits));
        json_object_set_new(j, "ctx", json_integer(b.n_ctx));
        json_object_set_new(j, "chunks", json_integer(r.n_chunks));
#define R(k, v) json_object_set_new(j, k, json_real(v))
        R("ppl_q", r.ppl_q);
        R("ppl_q_err", r.ppl_q_err);
        R("ppl_base", r.ppl_base);
        R("ppl_base_err", r.ppl_base_err);
        R("ln_ppl_ratio", r.ln_ppl_ratio);
        R("ln_ppl_ratio_err", r.ln_ppl_ratio_err);
        R("ppl_ratio", r.ppl_ratio);
        R("ppl_diff", r.ppl_diff);
        R("kld_mean", r.kld_mean);
        R("kld_mean_err", r.kld_mean_err);
        R("kld_max", r.kld_max);
        R("kld_p99_9", r.kld_p99_9);
        R("kld_p99", r.kld_p99);
        R("kld_median", r.kld_median);
        R("kld_p10", r.kld_p10);
        R("kld_p5", r.kld_p5);
        R("kld_p1", r.kld_p1);
        R("kld_min", r.kld_min);
        R("dp_mean_pct", 100 * r.dp_mean);
        R("dp_rms_pct", 100 * r.dp_rms);
        R("same_top_p_pct", 100 * r.same_top);
        R("cor_ln_ppl_pct", 100 * r.cor_ln_ppl);
#undef R
        char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
        if (s) {
            printf("%s\n", s);
            free(s);
        }
        json_decref(j);
    } else {
        printf("\n");
        kld_print(stdout, &r);
    }
    kld_base_close(&b);
    model_free(&m);
    return 0;
}

static int cmd_kld(const opts *o)
{
    if (o->logits)
        return cmd_kld_compare(o);
    if (o->save_logits) {
        if (!o->text)
            return bad_arg("kld --save-logits needs -f TEXT", NULL);
        return cmd_perplexity(o);
    }
    return bad_arg("kld needs --save-logits FILE (with -f) or --logits FILE", NULL);
}

typedef struct gen_print {
    const tok_vocab *v;
    char buf[256];
} gen_print;

static void print_token(void *user, int32_t id)
{
    gen_print *g = user;
    int32_t n = tok_piece(g->v, id, g->buf, sizeof g->buf, 0, false);
    if (n > 0)
        fwrite(g->buf, 1, (size_t)n, stdout);
    fflush(stdout);
}

/* The generated text as llama-cli prints it (the pieces, back to back),
 * with each invalid UTF-8 byte as U+FFFD so it fits a JSON string; malloc'd,
 * NULL when out of memory. */
static char *gen_text_utf8(const tok_vocab *v, const int32_t *ids, int32_t n)
{
    size_t cap = 64, len = 0;
    char *raw = malloc(cap), piece[256];
    for (int32_t i = 0; raw && i < n; i++) {
        const int32_t k = tok_piece(v, ids[i], piece, sizeof piece, 0, false);
        if (k <= 0)
            continue;
        if (len + (size_t)k + 1 > cap) {
            while (len + (size_t)k + 1 > cap)
                cap *= 2;
            char *t = realloc(raw, cap);
            if (!t) {
                free(raw);
                return NULL;
            }
            raw = t;
        }
        memcpy(raw + len, piece, (size_t)k);
        len += (size_t)k;
    }
    if (!raw)
        return NULL;
    /* at most 3 bytes (U+FFFD) per input byte */
    char *out = malloc(3 * len + 1);
    size_t o = 0;
    for (size_t off = 0; out && off < len;)
        o += tok_utf8_put(tok_utf8_next(raw, len, &off), out + o);
    if (out)
        out[o] = 0;
    free(raw);
    return out;
}

/* A float option as the decimal the user typed (0.95f would print as
 * 0.949999988...): 6 decimals are more than any sampler option carries. */
static json_t *json_opt(float x) { return json_real(round((double)x * 1e6) / 1e6); }

static json_t *json_ids(const int32_t *ids, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        json_array_append_new(a, json_integer(ids[i]));
    return a;
}

static int cmd_generate(const opts *o)
{
    sm_err err = {0};
    sm_model m;
    tok_vocab *v = NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    sm_sampler s;
    sm_gen_result r;
    memset(&s, 0, sizeof s);
    memset(&r, 0, sizeof r);
    int ret = 1;
    if (!o->prompt)
        return bad_arg("generate needs -p PROMPT", NULL);
    if (load(o, &m, &v, &err))
        return fail(o->model, &err);
    if (tok_encode(v, o->prompt, strlen(o->prompt), true, true, &ids, &n, &err))
        goto out;
    /* as llama.cpp: no seed, or 0xFFFFFFFF (LLAMA_DEFAULT_SEED, which
     * --seed -1 also becomes), means a fresh one, printed for replay */
    const int fresh = !o->seed_set || (uint32_t)o->seed == 0xFFFFFFFFu;
    uint64_t seed = fresh ? (uint32_t)time(NULL) : o->seed;
    if (fresh)
        fprintf(stderr, "%s: seed %llu\n", prog, (unsigned long long)seed);
    if (sampler_init(&s, m.hp.n_vocab, o->temp, o->top_k, o->top_p, o->min_p, seed, &err))
        goto out;
    int32_t n_ctx = o->ctx_set ? o->n_ctx : (m.hp.n_ctx_train < 4096 ? m.hp.n_ctx_train : 4096);
    /* --repeat-last-n -1: the whole context, as llama.cpp */
    if (sampler_set_penalties(&s, o->repeat_last_n == -1 ? n_ctx : o->repeat_last_n, o->repeat_penalty,
                              o->freq_penalty, o->present_penalty, &err))
        goto out;
    sm_gen_opts go = {o->n_predict, n_ctx, o->n_batch, o->n_threads, !o->ignore_eos};
    gen_print gp = {v, {0}};
    /* --json: one object at the end instead of the streamed text */
    if (gen_run(&m, ids, (int32_t)n, &go, &s, o->json ? NULL : print_token, &gp, &r, &err))
        goto out;
    if (o->json) {
        char *text = gen_text_utf8(v, r.tokens, r.n_tokens);
        json_t *j = json_object();
        json_object_set_new(j, "file", json_string(base_name(o->model)));
        json_object_set_new(j, "prompt", json_string(o->prompt));
        json_object_set_new(j, "prompt_tokens", json_ids(ids, n));
        json_object_set_new(j, "tokens", json_ids(r.tokens, (size_t)r.n_tokens));
        json_object_set_new(j, "text", text ? json_string(text) : json_null());
        json_object_set_new(j, "stop", json_string(r.hit_eos ? "eos" : "length"));
        json_object_set_new(j, "seed", json_integer((json_int_t)(uint32_t)seed));
        json_object_set_new(j, "ctx", json_integer(n_ctx));
        json_object_set_new(j, "temp", json_opt(o->temp));
        json_object_set_new(j, "top_k", json_integer(o->top_k));
        json_object_set_new(j, "top_p", json_opt(o->top_p));
        json_object_set_new(j, "min_p", json_opt(o->min_p));
        json_object_set_new(j, "repeat_penalty", json_opt(o->repeat_penalty));
        json_object_set_new(j, "repeat_last_n", json_integer(o->repeat_last_n));
        json_object_set_new(j, "frequency_penalty", json_opt(o->freq_penalty));
        json_object_set_new(j, "presence_penalty", json_opt(o->present_penalty));
        json_object_set_new(j, "threads", json_integer(o->n_threads));
        json_object_set_new(j, "prompt_ms", json_real(r.prompt_ms));
        json_object_set_new(j, "gen_ms", json_real(r.gen_ms));
        char *js = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
        json_decref(j);
        free(text);
        if (!js) {
            sm_err_set(&err, SM_ENOMEM, "out of memory");
            goto out;
        }
        printf("%s\n", js);
        free(js);
    } else {
        printf("\n");
    }
    fflush(stdout);
    fprintf(stderr, "%s: prompt: %d tokens in %.2f ms (%.2f tokens/s)\n", prog, (int)r.n_prompt, r.prompt_ms,
            r.prompt_ms > 0 ? r.n_prompt / (r.prompt_ms / 1e3) : 0.0);
    fprintf(stderr, "%s: generation: %d tokens in %.2f ms (%.2f tokens/s)\n", prog, (int)r.n_tokens, r.gen_ms,
            r.gen_ms > 0 ? r.n_tokens / (r.gen_ms / 1e3) : 0.0);
    ret = 0;
out:
    if (ret)
        fail(o->model, &err);
    gen_result_free(&r);
    sampler_free(&s);
    free(ids);
    tok_free(v);
    model_free(&m);
    return ret;
}

static int cmd_mem(const opts *o)
{
    sm_err err = {0};
    sm_model m;
    if (load(o, &m, NULL, &err))
        return fail(o->model, &err);
    if (o->n_ctx < 1 || o->n_ctx > m.hp.n_ctx_train) {
        sm_err_set(&err, SM_ERANGE, "context size %d outside 1..%d (the model's training context)", (int)o->n_ctx,
                   (int)m.hp.n_ctx_train);
        model_free(&m);
        return fail(o->model, &err);
    }
    int32_t nb = o->n_batch < o->n_ctx ? o->n_batch : o->n_ctx;
    sm_mem_report r;
    mem_estimate(&m, o->n_ctx, nb, o->n_threads, &r);
    double run_ms = 0;
    if (o->run) {
        /* a real short run: fill the context in batches, then read VmHWM */
        sm_ctx c;
        if (ctx_init(&c, &m, o->n_ctx, nb, o->n_threads, &err)) {
            model_free(&m);
            return fail(o->model, &err);
        }
        int32_t *toks = malloc((size_t)o->n_ctx * sizeof(int32_t));
        double t0 = sm_now_ms();
        for (int32_t i = 0; toks && i < o->n_ctx; i++)
            toks[i] = i % m.hp.n_vocab;
        for (int32_t b0 = 0; toks && b0 < o->n_ctx; b0 += nb) {
            int32_t k = o->n_ctx - b0 < nb ? o->n_ctx - b0 : nb;
            if (ctx_eval(&c, toks + b0, k, k - 1, &err))
                break;
        }
        run_ms = sm_now_ms() - t0;
        free(toks);
        ctx_free(&c);
        r.peak_rss = mem_peak_rss();
    }
    if (o->json) {
        json_t *j = json_object();
        json_object_set_new(j, "file", json_string(base_name(o->model)));
        json_object_set_new(j, "ctx", json_integer(o->n_ctx));
        json_object_set_new(j, "batch", json_integer(nb));
        json_object_set_new(j, "weights_bytes", json_integer((json_int_t)r.weights));
        json_object_set_new(j, "kv_cache_bytes", json_integer((json_int_t)r.kv_cache));
        json_object_set_new(j, "kv_cache_f16_bytes", json_integer((json_int_t)r.kv_cache_f16));
        json_object_set_new(j, "compute_bytes", json_integer((json_int_t)r.compute));
        json_object_set_new(j, "total_bytes", json_integer((json_int_t)r.total));
        if (o->run) {
            json_object_set_new(j, "peak_rss_bytes", json_integer((json_int_t)r.peak_rss));
            json_object_set_new(j, "run_ms", json_real(run_ms));
        }
        char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        if (s) {
            printf("%s\n", s);
            free(s);
        }
        json_decref(j);
    } else {
        printf("model      %s (%s, %llu parameters)\n", o->model, model_arch_name(m.hp.arch),
               (unsigned long long)m.n_params);
        printf("weights    %12llu bytes (%.2f MiB, mapped)\n", (unsigned long long)r.weights, r.weights / 1048576.0);
        printf("kv cache   %12llu bytes (%.2f MiB, %d positions; f16-rounded values kept as f32,\n"
               "                               llama.cpp's F16 cache: %llu bytes)\n",
               (unsigned long long)r.kv_cache, r.kv_cache / 1048576.0, (int)o->n_ctx,
               (unsigned long long)r.kv_cache_f16);
        printf("compute    %12llu bytes (%.2f MiB, batch %d)\n", (unsigned long long)r.compute,
               r.compute / 1048576.0, (int)nb);
        printf("total      %12llu bytes (%.2f MiB)\n", (unsigned long long)r.total, r.total / 1048576.0);
        if (o->run)
            printf("peak RSS   %12llu bytes (%.2f MiB, measured after a %d-token run of %.1f ms)\n",
                   (unsigned long long)r.peak_rss, r.peak_rss / 1048576.0, (int)o->n_ctx, run_ms);
    }
    model_free(&m);
    return 0;
}

static int cmd_bench(const opts *o)
{
    sm_err err = {0};
    sm_model m;
    if (load(o, &m, NULL, &err))
        return fail(o->model, &err);
    sm_bench_result r;
    int32_t np = 512; /* -p is the prompt length here, as in llama-bench */
    if (o->prompt && sm_parse_i32(o->prompt, &np)) {
        model_free(&m);
        return bad_arg("bench -p takes a token count", o->prompt);
    }
    if (bench_run(&m, np, o->n_predict, o->n_batch, o->n_threads, o->reps, &r, &err)) {
        model_free(&m);
        return fail(o->model, &err);
    }
    printf("| model | size | params | threads | test | t/s |\n");
    printf("| ----- | ---: | -----: | ------: | ---: | --: |\n");
    if (np > 0)
        printf("| %s %s | %.2f MiB | %llu | %d | pp%d | %.2f ± %.2f |\n", model_arch_name(m.hp.arch),
               base_name(o->model), m.weight_bytes / 1048576.0, (unsigned long long)m.n_params, (int)o->n_threads,
               (int)np, r.pp_tps, r.pp_tps_sd);
    if (o->n_predict > 0)
        printf("| %s %s | %.2f MiB | %llu | %d | tg%d | %.2f ± %.2f |\n", model_arch_name(m.hp.arch),
               base_name(o->model), m.weight_bytes / 1048576.0, (unsigned long long)m.n_params, (int)o->n_threads,
               (int)o->n_predict, r.tg_tps, r.tg_tps_sd);
    model_free(&m);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "gate"))
        return gate_main(argc - 1, argv + 1);
    if (!strcmp(cmd, "compare"))
        return compare_main(argc - 1, argv + 1);
    opts o;
    int rc = parse_opts(argc, argv, &o);
    if (rc)
        return rc;
    if (!strcmp(cmd, "perplexity")) {
        if (o.logits)
            return cmd_kld_compare(&o);
        return cmd_perplexity(&o);
    }
    if (!strcmp(cmd, "kld"))
        return cmd_kld(&o);
    if (!strcmp(cmd, "generate"))
        return cmd_generate(&o);
    if (!strcmp(cmd, "mem"))
        return cmd_mem(&o);
    if (!strcmp(cmd, "bench"))
        return cmd_bench(&o);
    fprintf(stderr, "%s: unknown command '%s'\n", prog, cmd);
    usage(stderr);
    return 2;
}
