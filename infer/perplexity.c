#include "eval.h"
#include "threads.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

double sm_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

int eval_chunk(sm_ctx *c, const int32_t *toks, int32_t n_ctx, int32_t n_batch, int32_t first, int32_t bos,
               float *logits, sm_err *err)
{
    const int64_t V = c->m->hp.n_vocab;
    ctx_clear(c);
    if (n_batch > c->n_batch)
        n_batch = c->n_batch;
    for (int32_t b0 = 0; b0 < n_ctx; b0 += n_batch) {
        int32_t nb = n_ctx - b0 < n_batch ? n_ctx - b0 : n_batch;
        const int32_t *src = toks + b0;
        if (b0 == 0 && bos >= 0) {
            /* the chunk starts with BOS; the caller's array is left alone */
            memcpy(c->tok_buf, src, (size_t)nb * sizeof(int32_t));
            c->tok_buf[0] = bos;
            src = c->tok_buf;
        }
        int32_t of = first - b0;
        of = of < 0 ? 0 : (of > nb ? nb : of);
        int rc = ctx_eval(c, src, nb, of, err);
        if (rc)
            return rc;
        if (c->n_logits > 0)
            memcpy(logits + (int64_t)(b0 + of - first) * V, c->logits,
                   (size_t)c->n_logits * (size_t)V * sizeof(float));
    }
    return SM_OK;
}

void ppl_result_free(sm_ppl_result *r)
{
    if (r) {
        free(r->chunk_ppl);
        memset(r, 0, sizeof *r);
    }
}

/* -log softmax(logits)[tok] as llama-perplexity computes it (f32 max and
 * exps, double sum). */
static double nll_of(const float *logits, int64_t V, int32_t tok)
{
    float mx = logits[0];
    for (int64_t i = 1; i < V; i++)
        mx = logits[i] > mx ? logits[i] : mx;
    double sum = 0.0;
    for (int64_t i = 0; i < V; i++)
        sum += (double)expf(logits[i] - mx);
    return -((double)(logits[tok] - mx) - log(sum));
}

static int nearest_int16(float v)
{
    float t = v + 12582912.f;
    int32_t i;
    memcpy(&i, &t, 4);
    return (i & 0x007fffff) - 0x00400000;
}

/* Encodes one row of log-probs like llama-perplexity's --kl-divergence-base
 * writer and returns the row's nll for tok. row has 4 + n_vocab (+pad)
 * uint16: f32 scale, f32 min_log_prob, then quantized log-probs. */
static double encode_row(const float *logits, int64_t V, uint16_t *row, int32_t tok)
{
    float mx = logits[0], mn = logits[0];
    for (int64_t i = 1; i < V; i++) {
        mx = logits[i] > mx ? logits[i] : mx;
        mn = logits[i] < mn ? logits[i] : mn;
    }
    mn = mn > mx - 16 ? mn : mx - 16;
    double sum = 0.0;
    for (int64_t i = 0; i < V; i++)
        sum += (double)expf(logits[i] - mx);
    const float log_sum_exp = (float)log(sum);
    const float min_log_prob = mn - mx - log_sum_exp;
    const float scale = (mx - mn) / 65535.f;
    memcpy(row, &scale, 4);
    memcpy(row + 2, &min_log_prob, 4);
    uint16_t *q = row + 4;
    if (scale != 0.0f) {
        const float inv = 1 / scale;
        for (int64_t i = 0; i < V; i++)
            q[i] = logits[i] > mn ? (uint16_t)nearest_int16(inv * (logits[i] - mn)) : 0;
    } else {
        memset(q, 0, (size_t)V * sizeof(uint16_t));
    }
    return (double)(mx + log_sum_exp - logits[tok]);
}

/* The scored rows of one chunk, split over the pool: row i's nll goes to
 * nll[i] (and its log-prob row to rows when saving), summed by the caller
 * in row order, so the totals do not depend on the thread count. */
typedef struct nll_job {
    const float *logits;   /* [n, V] */
    int64_t V;
    const int32_t *next;   /* [n] the token each row predicts */
    uint16_t *rows;        /* [n, nv] or NULL */
    int64_t nv;
    double *nll;           /* [n] */
    int64_t n;
} nll_job;

static void job_nll(void *arg, int32_t ith, int32_t nth)
{
    const nll_job *j = arg;
    int64_t lo, hi;
    pool_split(j->n, ith, nth, &lo, &hi);
    for (int64_t i = lo; i < hi; i++)
        j->nll[i] = j->rows ? encode_row(j->logits + i * j->V, j->V, j->rows + i * j->nv, j->next[i])
                            : nll_of(j->logits + i * j->V, j->V, j->next[i]);
}

int ppl_run(const sm_model *m, const int32_t *tokens, int64_t n_tokens, const sm_ppl_opts *o, sm_ppl_result *r,
            sm_err *err)
{
    memset(r, 0, sizeof *r);
    const int32_t n_ctx = o->n_ctx;
    const int64_t V = m->hp.n_vocab;
    if (n_ctx < 2)
        return sm_err_set(err, SM_EINVAL, "context size %d: perplexity needs at least 2", (int)n_ctx);
    if (n_ctx > m->hp.n_ctx_train)
        return sm_err_set(err, SM_ERANGE, "context size %d exceeds the model's training context %d", (int)n_ctx,
                          (int)m->hp.n_ctx_train);
    if (n_tokens < 2 * (int64_t)n_ctx)
        return sm_err_set(err, SM_ERANGE,
                          "you need at least %lld tokens to evaluate perplexity with a context of %d; the text tokenizes to only %lld tokens",
                          (long long)(2 * (int64_t)n_ctx), (int)n_ctx, (long long)n_tokens);
    int64_t n_chunk_max = n_tokens / n_ctx;
    int64_t n_chunk = o->n_chunks < 0 ? n_chunk_max : (o->n_chunks < n_chunk_max ? o->n_chunks : n_chunk_max);
    int32_t n_batch = o->n_batch > 0 && o->n_batch < n_ctx ? o->n_batch : n_ctx;
    const int32_t first = n_ctx / 2;
    const int32_t bos = m->hp.add_bos ? m->hp.bos_id : -1;
    const int64_t nv = 2 * ((V + 1) / 2) + 4;

    sm_ctx c;
    float *logits = NULL;
    double *nlls = NULL;
    uint16_t *rows = NULL;
    sm_out out;
    int out_open = 0;
    int rc = ctx_init(&c, m, n_ctx, n_batch, o->n_threads > 0 ? o->n_threads : 1, err);
    if (rc)
        return rc;
    logits = malloc((size_t)(n_ctx - first) * (size_t)V * sizeof(float));
    r->chunk_ppl = calloc((size_t)n_chunk, sizeof(double));
    nlls = malloc((size_t)n_ctx * sizeof(double));
    if (!logits || !r->chunk_ppl || !nlls) {
        rc = sm_err_set(err, SM_ENOMEM, "out of memory for %d x %lld logits", (int)(n_ctx - first), (long long)V);
        goto done;
    }
    if (o->save_logits) {
        rows = calloc((size_t)(n_ctx - 1 - first) * (size_t)nv, sizeof(uint16_t));
        if (!rows) {
            rc = sm_err_set(err, SM_ENOMEM, "out of memory for the log-prob rows");
            goto done;
        }
        if ((rc = sm_out_open(&out, o->save_logits, err)))
            goto done;
        out_open = 1;
        uint32_t hdr[3] = {(uint32_t)n_ctx, (uint32_t)V, (uint32_t)n_chunk};
        if ((rc = sm_out_write(&out, "_logits_", 8, err)) || (rc = sm_out_write(&out, hdr, sizeof hdr, err)) ||
            (rc = sm_out_write(&out, tokens, (size_t)(n_chunk * n_ctx) * sizeof(int32_t), err)))
            goto done;
    }
    double nll = 0.0, nll2 = 0.0;
    int64_t count = 0;
    for (int64_t ch = 0; ch < n_chunk; ch++) {
        const int32_t *toks = tokens + ch * n_ctx;
        if ((rc = eval_chunk(&c, toks, n_ctx, n_batch, first, bos, logits, err)))
            goto done;
        nll_job nj = {logits, V, toks + first + 1, rows, nv, nlls, n_ctx - 1 - first};
        pool_run(c.pool, job_nll, &nj);
        for (int32_t i = 0; i < n_ctx - 1 - first; i++) {
            nll += nlls[i];
            nll2 += nlls[i] * nlls[i];
        }
        if (rows && (rc = sm_out_write(&out, rows, (size_t)(n_ctx - 1 - first) * (size_t)nv * sizeof(uint16_t), err)))
            goto done;
        count += n_ctx - first - 1;
        r->chunk_ppl[ch] = exp(nll / (double)count);
        if (o->log) {
            fprintf(o->log, "[%lld]%.4lf,", (long long)ch + 1, r->chunk_ppl[ch]);
            fflush(o->log);
        }
    }
    if (o->log)
        fprintf(o->log, "\n");
    r->n_chunks = (int32_t)n_chunk;
    r->n_scored = count;
    nll2 /= (double)count;
    nll /= (double)count;
    r->ppl = exp(nll);
    nll2 -= nll * nll;
    r->ppl_err = nll2 > 0 ? sqrt(nll2 / (double)(count - 1)) * r->ppl : 0.0;
    if (out_open) {
        out_open = 0;
        if ((rc = sm_out_commit(&out, err)))
            goto done;
    }
    rc = SM_OK;
done:
    if (out_open)
        sm_out_abort(&out);
    if (rc)
        ppl_result_free(r);
    free(rows);
    free(nlls);
    free(logits);
    ctx_free(&c);
    return rc;
}
