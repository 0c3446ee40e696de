/* run.c — the calibration run (llama-imatrix's compute_imatrix). */
#include "run.h"

#include "fileio.h"
#include "infer/forward.h"
#include "infer/tokenizer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int im_tokenize_file(const sm_model *m, const char *path, int32_t **ids, int64_t *n, sm_err *err)
{
    char *text = NULL;
    uint64_t len = 0;
    tok_vocab *v = NULL;
    int32_t *out = NULL;
    size_t nt = 0;
    *ids = NULL;
    *n = 0;
    int rc = sm_read_file(path, 1ull << 31, &text, &len, err);
    if (rc < 0)
        goto done;
    /* common's -f reader drops one trailing newline */
    if (len > 0 && text[len - 1] == '\n')
        text[--len] = 0;
    if ((rc = tok_load(&v, &m->gguf, err)) < 0) {
        sm_err_prefix(err, "tokenizer");
        goto done;
    }
    if ((rc = tok_encode(v, text, (size_t)len, true, false, &out, &nt, err)) < 0) {
        sm_err_prefix(err, "%s", path);
        goto done;
    }
    *ids = out;
    *n = (int64_t)nt;
    rc = SM_OK;
done:
    tok_free(v);
    free(text);
    return rc;
}

void im_run_free(im_run_result *r)
{
    if (r) {
        free(r->chunk_ppl);
        memset(r, 0, sizeof(*r));
    }
}

/* -log softmax(logits)[tok] in llama-imatrix's arithmetic: float max and
 * differences, expf, double sum and log. */
static double nll_of(const float *logits, int64_t n_vocab, int32_t tok)
{
    float mx = logits[0];
    for (int64_t i = 1; i < n_vocab; i++)
        mx = logits[i] > mx ? logits[i] : mx;
    double sum = 0.0;
    for (int64_t i = 0; i < n_vocab; i++)
        sum += (double)expf(logits[i] - mx);
    return -((double)(logits[tok] - mx) - log(sum));
}

/* Saves the collector after chunk k when -ofreq / --save-frequency ask. */
static int periodic_save(const im_collector *c, const im_run_opts *o, int32_t k, int32_t n_chunk, sm_err *err)
{
    if (!o->out_path)
        return SM_OK;
    /* the final save follows the last chunk anyway */
    if (o->out_freq > 0 && k % o->out_freq == 0 && k < n_chunk) {
        int rc = im_save(c, o->out_path, o->out_format, err);
        if (rc < 0)
            return rc;
    }
    if (o->save_freq > 0 && k % o->save_freq == 0) {
        size_t len = strlen(o->out_path) + 32;
        char *p = malloc(len);
        if (!p)
            return sm_err_set(err, SM_ENOMEM, "out of memory");
        snprintf(p, len, "%s.at_%d", o->out_path, (int)k);
        int rc = im_save(c, p, o->out_format, err);
        free(p);
        if (rc < 0)
            return rc;
    }
    return SM_OK;
}

int im_run(im_collector *c, const sm_model *m, const int32_t *tokens, int64_t n_tokens, const im_run_opts *o,
           im_run_result *r, sm_err *err)
{
    memset(r, 0, sizeof(*r));
    const int64_t V = m->hp.n_vocab;
    if (o->n_ctx < 2 || o->n_ctx > INT32_MAX - 32)
        return sm_err_set(err, SM_EINVAL, "context size %d: expected at least 2", (int)o->n_ctx);
    /* llama.cpp pads the context to a multiple of 32 (the KV padding
     * without flash attention) and the tool chunks by llama_n_ctx(), the
     * padded size; the batch is clamped by the size as given */
    const int32_t n_ctx = (o->n_ctx + 31) / 32 * 32;
    if (o->skip_chunks < 0)
        return sm_err_set(err, SM_EINVAL, "--chunk %d: expected >= 0", (int)o->skip_chunks);
    if (o->skip_chunks > 0) {
        if ((int64_t)(o->skip_chunks + 2) * n_ctx >= n_tokens)
            return sm_err_set(err, SM_ERANGE,
                              "there will be not enough tokens left after removing %d chunks: the text has %lld tokens, "
                              "more than %lld are needed",
                              (int)o->skip_chunks, (long long)n_tokens, (long long)(o->skip_chunks + 2) * n_ctx);
        tokens += (int64_t)o->skip_chunks * n_ctx;
        n_tokens -= (int64_t)o->skip_chunks * n_ctx;
    }
    if (n_tokens < 2 * (int64_t)n_ctx)
        return sm_err_set(err, SM_ERANGE,
                          "you need at least %lld tokens for a context of %d tokens; the text tokenizes to only %lld",
                          (long long)(2 * (int64_t)n_ctx), (int)n_ctx, (long long)n_tokens);
    const int64_t n_chunk_max = n_tokens / n_ctx;
    const int32_t n_chunk =
        (int32_t)(o->n_chunks < 0 || o->n_chunks > n_chunk_max ? (n_chunk_max > INT32_MAX ? INT32_MAX : n_chunk_max)
                                                               : o->n_chunks);
    const int32_t n_batch = o->n_batch > 0 && o->n_batch < o->n_ctx ? o->n_batch : o->n_ctx;
    const int32_t n_ubatch = o->n_ubatch > 0 && o->n_ubatch < n_batch ? o->n_ubatch : n_batch;
    const int32_t first = n_ctx / 2;
    const int32_t bos = m->hp.add_bos ? m->hp.bos_id : -1;
    /* logits are needed from `need` on: every row when the output weight is
     * collected (llama-imatrix asks for all logits), the scored half for the
     * perplexity, none otherwise (the output product is then skipped) */
    const int32_t need = c->process_output ? 0 : (o->compute_ppl ? first : n_ctx);

    r->n_tokens = n_tokens;
    if (o->n_ctx > m->hp.n_ctx_train && o->log)
        fprintf(o->log, "warning: model was trained on only %d context tokens (%d specified)\n",
                (int)m->hp.n_ctx_train, (int)o->n_ctx);

    sm_ctx ctx;
    int ctx_ok = 0;
    float *logits = NULL;
    int32_t *btok = NULL;
    double nll = 0.0, nll2 = 0.0;
    int64_t count = 0;
    int rc = ctx_init(&ctx, m, n_ctx, n_ubatch, o->n_threads > 0 ? o->n_threads : 1, err);
    if (rc < 0)
        goto done;
    ctx_ok = 1;
    ctx.hook = im_hook;
    ctx.hook_user = c;
    btok = malloc((size_t)n_batch * sizeof(int32_t));
    if (n_ctx > need)
        logits = malloc((size_t)(n_ctx - need) * (size_t)V * sizeof(float));
    if (o->compute_ppl)
        r->chunk_ppl = calloc((size_t)n_chunk, sizeof(double));
    if (!btok || (n_ctx > need && !logits) || (o->compute_ppl && !r->chunk_ppl)) {
        rc = sm_err_set(err, SM_ENOMEM, "out of memory for %d x %lld logits", (int)(n_ctx - need), (long long)V);
        goto done;
    }
    if (o->log) {
        fprintf(o->log, "computing over %d chunks with batch_size %d\n", (int)n_chunk, (int)n_batch);
        fflush(o->log);
    }
    for (int32_t ch = 0; ch < n_chunk; ch++) {
        const int32_t *toks = tokens + (int64_t)ch * n_ctx;
        ctx_clear(&ctx);
        for (int32_t b0 = 0; b0 < n_ctx; b0 += n_batch) {
            int32_t nb = n_ctx - b0 < n_batch ? n_ctx - b0 : n_batch;
            memcpy(btok, toks + b0, (size_t)nb * sizeof(int32_t));
            if (b0 == 0 && bos >= 0)
                btok[0] = bos;
            for (int32_t u0 = 0; u0 < nb; u0 += n_ubatch) {
                int32_t nu = nb - u0 < n_ubatch ? nb - u0 : n_ubatch;
                int32_t pos = b0 + u0; /* chunk position of the ubatch's first token */
                int32_t of = need - pos;
                of = of < 0 ? 0 : (of > nu ? nu : of);
                if ((rc = ctx_eval(&ctx, btok + u0, nu, of, err)) < 0) {
                    sm_err_prefix(err, "chunk %d", (int)ch + 1);
                    goto done;
                }
                if ((rc = im_hook_status(c, err)) < 0)
                    goto done;
                if (ctx.n_logits > 0)
                    memcpy(logits + (int64_t)(pos + of - need) * V, ctx.logits,
                           (size_t)ctx.n_logits * (size_t)V * sizeof(float));
            }
        }
        c->fresh_chunks++;
        if (o->compute_ppl) {
            for (int32_t i = first; i < n_ctx - 1; i++) {
                double v = nll_of(logits + (int64_t)(i - need) * V, V, toks[i + 1]);
                nll += v;
                nll2 += v * v;
            }
            count += n_ctx - first - 1;
            r->chunk_ppl[ch] = exp(nll / (double)count);
            if (o->log) {
                fprintf(o->log, o->log_tty ? "[%d]%.4lf," : "[%d]%.4lf,\n", (int)ch + 1, r->chunk_ppl[ch]);
                fflush(o->log);
            }
        } else if (o->log) {
            fprintf(o->log, o->log_tty ? "\rchunk %d/%d" : "chunk %d/%d\n", (int)ch + 1, (int)n_chunk);
            fflush(o->log);
        }
        r->n_chunks = ch + 1;
        if ((rc = periodic_save(c, o, ch + 1, n_chunk, err)) < 0)
            goto done;
    }
    if (o->log && o->log_tty)
        fprintf(o->log, "\n");
    if (o->compute_ppl && count > 0) {
        nll2 /= (double)count;
        nll /= (double)count;
        r->ppl = exp(nll);
        nll2 -= nll * nll;
        if (nll2 > 0 && count > 1) {
            r->ppl_err = sqrt(nll2 / (double)(count - 1)) * r->ppl;
            if (o->log)
                fprintf(o->log, "Final estimate: PPL = %.4lf +/- %.5lf\n", r->ppl, r->ppl_err);
            fflush(o->log);
        } else if (o->log) {
            fprintf(o->log, "Unexpected negative standard deviation of log(prob)\n");
            fflush(o->log);
        }
    }
    rc = SM_OK;
done:
    if (ctx_ok)
        ctx_free(&ctx);
    free(logits);
    free(btok);
    if (rc < 0)
        im_run_free(r);
    return rc;
}
