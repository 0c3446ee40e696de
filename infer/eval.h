/* eval.h — what smelt-infer measures: perplexity, KL divergence against
 * saved base logits, generation, memory and speed.
 *
 * Everything here takes already-tokenized input (the CLI tokenizes with
 * infer/tokenizer.h) so the numbers can be tested independently of the
 * tokenizer. Functions print only to the FILE *log they are given (NULL =
 * silent) and return negative sm_code values with err filled. */
#ifndef SMELT_INFER_EVAL_H
#define SMELT_INFER_EVAL_H

#include "err.h"
#include "fileio.h"
#include "forward.h"
#include "model.h"

#include <stdint.h>
#include <stdio.h>

/* ------------------------------------------------------------ perplexity */

typedef struct sm_ppl_opts {
    int32_t n_ctx;          /* chunk length (-c) */
    int32_t n_batch;        /* tokens per forward call (-b), clamped to n_ctx */
    int32_t n_chunks;       /* --chunks, < 0 = all */
    int32_t n_threads;      /* -t */
    const char *save_logits;/* write llama.cpp's --kl-divergence-base file here, or NULL */
    FILE *log;              /* "[k]ppl," progress as llama-perplexity prints it, or NULL */
} sm_ppl_opts;

typedef struct sm_ppl_result {
    int32_t n_chunks;       /* chunks evaluated */
    int64_t n_scored;       /* tokens scored */
    double ppl;             /* exp(mean nll) */
    double ppl_err;         /* llama-perplexity's +/- */
    double *chunk_ppl;      /* [n_chunks] running PPL after each chunk (owned) */
} sm_ppl_result;

/* llama-perplexity's perplexity(): tokens (BOS already prepended when the
 * vocab adds one) are cut into n_ctx chunks, the tail dropped; each chunk's
 * first token becomes BOS when hp.add_bos; only the second half is scored.
 * Fails with SM_ERANGE when n_tokens < 2*n_ctx (llama.cpp's requirement) or
 * n_ctx exceeds the model's training context. Free r with ppl_result_free. */
int ppl_run(const sm_model *m, const int32_t *tokens, int64_t n_tokens, const sm_ppl_opts *o,
            sm_ppl_result *r, sm_err *err);
void ppl_result_free(sm_ppl_result *r);

/* Evaluates one chunk toks[n_ctx] from an empty cache in batches of
 * n_batch; toks[0] is replaced by bos when bos >= 0. Logits of positions
 * first..n_ctx-1 go to logits[(n_ctx-first) * n_vocab]. c must have been made
 * with n_ctx >= this n_ctx. */
int eval_chunk(sm_ctx *c, const int32_t *toks, int32_t n_ctx, int32_t n_batch, int32_t first, int32_t bos,
               float *logits, sm_err *err);

/* ------------------------------------------------------------ KL divergence */

/* A llama.cpp logits file ("_logits_", u32 n_ctx, i32 n_vocab, i32 n_chunk,
 * i32 tokens[n_ctx*n_chunk], then per chunk (n_ctx-1-n_ctx/2) rows of
 * 2*ceil(n_vocab/2)+4 uint16: f32 scale, f32 min_log_prob, n_vocab
 * quantized log-probs, padding). Mapped read-only. */
typedef struct sm_kld_base {
    sm_map map;
    uint32_t n_ctx;
    int32_t n_vocab;
    int32_t n_chunk;
    const uint8_t *tokens;  /* [n_ctx*n_chunk] little-endian i32 (unaligned-safe reads) */
    const uint8_t *rows;    /* log-prob rows */
    uint64_t row_u16;       /* uint16 per row: 2*((n_vocab+1)/2)+4 */
} sm_kld_base;

/* Opens and validates sizes (file length must equal the header's claim). */
int kld_base_open(sm_kld_base *b, const char *path, sm_err *err);
void kld_base_close(sm_kld_base *b);
/* Token i of the file. */
int32_t kld_base_token(const sm_kld_base *b, uint64_t i);

typedef struct sm_kld_result {
    int32_t n_chunks;
    uint64_t count;         /* scored tokens */
    double ppl_q, ppl_q_err, ppl_base, ppl_base_err;
    double cor_ln_ppl;      /* correlation of ln PPLs, fraction */
    double ln_ppl_ratio, ln_ppl_ratio_err, ppl_ratio, ppl_ratio_err, ppl_diff, ppl_diff_err;
    double kld_mean, kld_mean_err;
    double kld_max, kld_p99_9, kld_p99, kld_median, kld_p10, kld_p5, kld_p1, kld_min;
    double dp_mean, dp_mean_err;                 /* fractions, not % */
    double dp_max, dp_p99_9, dp_p99, dp_p95, dp_p90, dp_p75, dp_median, dp_p25, dp_p10, dp_p5, dp_p1,
        dp_p0_1, dp_min;
    double dp_rms, dp_rms_err;
    double same_top, same_top_err;
} sm_kld_result;

typedef struct sm_kld_opts {
    int32_t n_batch;
    int32_t n_chunks;       /* < 0 = all in the file */
    int32_t n_threads;
    FILE *log;              /* per-chunk table as llama-perplexity prints it, or NULL */
} sm_kld_opts;

/* llama-perplexity --kl-divergence: evaluates the file's chunks with m and
 * compares against the stored base log-probs. n_vocab must match. */
int kld_run(const sm_model *m, const sm_kld_base *b, const sm_kld_opts *o, sm_kld_result *r, sm_err *err);
/* Prints the final statistics block in llama-perplexity's layout. */
void kld_print(FILE *f, const sm_kld_result *r);

/* ------------------------------------------------------------ sampling */

/* One candidate token of the sampler chain (llama_token_data). */
typedef struct sm_cand {
    int32_t id;
    float logit;
    float p;
} sm_cand;

/* llama.cpp's default chain (see sample.c): top-k, top-p, min-p,
 * temperature, then a draw from std::mt19937 seeded with the low 32 bits
 * of the seed, as std::discrete_distribution makes it. */
typedef struct sm_sampler {
    float temp;             /* <= 0: greedy */
    int32_t top_k;          /* <= 0: the whole vocabulary */
    float top_p;            /* >= 1: off */
    float min_p;            /* <= 0: off */
    int32_t penalty_last_n; /* repetition window in tokens; 0: penalties off */
    float penalty_repeat;   /* 1: off */
    float penalty_freq;     /* 0: off */
    float penalty_present;  /* 0: off */
    int32_t *prev;          /* [penalty_last_n] ring of accepted tokens (owned) */
    int32_t n_prev, prev_head; /* tokens in the ring, index of the oldest */
    int32_t *count;         /* [n_vocab] occurrences in the ring (owned) */
    float *pen;             /* [n_vocab] penalized logits (owned) */
    uint32_t mt[624];       /* std::mt19937 state */
    int32_t mti;            /* next state word to temper */
    sm_cand *cand;          /* [n_vocab] candidates, best first (owned) */
    sm_cand *tmp;           /* [n_vocab] top-k bucket pass scratch (owned) */
    int32_t *bucket;        /* [n_vocab] bucket of each candidate (owned) */
    double *cp;             /* [n_vocab] cumulative probabilities (owned) */
    int32_t n_vocab;
} sm_sampler;

/* Sets up *s for n_vocab tokens; on error (SM_EINVAL, SM_ENOMEM) *s holds
 * nothing to free. */
int sampler_init(sm_sampler *s, int32_t n_vocab, float temp, int32_t top_k, float top_p, float min_p,
                 uint64_t seed, sm_err *err);
void sampler_free(sm_sampler *s);
/* llama.cpp's repetition penalties, first in its chain (--repeat-last-n,
 * --repeat-penalty, --frequency-penalty, --presence-penalty): a token seen
 * c > 0 times among the last last_n accepted ones has its logit divided by
 * repeat (multiplied when <= 0) and c * freq + present subtracted. last_n
 * 0, or repeat 1 with freq and present 0, leaves logits alone. Call before
 * the first sampler_accept; SM_EINVAL for last_n < 0, SM_ENOMEM. */
int sampler_set_penalties(sm_sampler *s, int32_t last_n, float repeat, float freq, float present, sm_err *err);
/* Records a token the model has seen, as llama-cli does for every prompt
 * token and then every sampled one (gen_run calls it). */
void sampler_accept(sm_sampler *s, int32_t token);
/* Picks a token from logits[n_vocab]; greedy (temp <= 0) = the maximum
 * that heads llama.cpp's top-k order. Each sampled step with two or more
 * candidates left draws twice from the generator, as llama.cpp does. */
int32_t sampler_sample(sm_sampler *s, const float *logits);
/* The generator's next 32-bit output (for tests: std::mt19937's). */
uint32_t sampler_mt_next(sm_sampler *s);

/* ------------------------------------------------------------ generation */

typedef struct sm_gen_opts {
    int32_t n_predict;      /* -n */
    int32_t n_ctx;          /* -c */
    int32_t n_batch;
    int32_t n_threads;
    int32_t stop_at_eos;    /* 1: stop when eos is sampled */
} sm_gen_opts;

typedef struct sm_gen_result {
    int32_t *tokens;        /* [n_tokens] generated ids (owned) */
    int32_t n_tokens;
    double prompt_ms, gen_ms;
    int32_t n_prompt;
    int32_t hit_eos;
} sm_gen_result;

/* Evaluates prompt[n_prompt] in batches, then samples up to n_predict
 * tokens one at a time (each sampled token is evaluated before the next is
 * drawn, as llama-cli does). on_token(user, id) is called for each (may be
 * NULL). Free r with gen_result_free. */
int gen_run(const sm_model *m, const int32_t *prompt, int32_t n_prompt, const sm_gen_opts *o, sm_sampler *s,
            void (*on_token)(void *user, int32_t id), void *user, sm_gen_result *r, sm_err *err);
void gen_result_free(sm_gen_result *r);

/* ------------------------------------------------------------ memory, bench */

typedef struct sm_mem_report {
    uint64_t weights;       /* tensor data bytes (mapped, not copied) */
    uint64_t kv_cache;      /* K and V for n_ctx positions as allocated (f32 holding f16-rounded values) */
    uint64_t kv_cache_f16;  /* what llama.cpp's default F16 cache needs (= kv_cache: smelt caches F16 too) */
    uint64_t compute;       /* activation buffers, logits, scratch */
    uint64_t total;
    uint64_t peak_rss;      /* measured VmHWM after a run (0 if not run) */
} sm_mem_report;

void mem_estimate(const sm_model *m, int32_t n_ctx, int32_t n_batch, int32_t n_threads, sm_mem_report *r);
/* Peak resident set size of this process in bytes (VmHWM, else getrusage). */
uint64_t mem_peak_rss(void);

typedef struct sm_bench_result {
    double pp_tps, pp_tps_sd;  /* prompt processing tokens/s (mean, stddev) */
    double tg_tps, tg_tps_sd;  /* generation tokens/s */
} sm_bench_result;

/* llama-bench's pp and tg tests: n_prompt random tokens in batches of
 * n_batch from an empty cache; n_gen tokens one at a time; reps repetitions
 * after one warm-up. */
int bench_run(const sm_model *m, int32_t n_prompt, int32_t n_gen, int32_t n_batch, int32_t n_threads, int32_t reps,
              sm_bench_result *r, sm_err *err);

/* Milliseconds from a monotonic clock. */
double sm_now_ms(void);

#endif
