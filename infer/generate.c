#include "eval.h"

#include <stdlib.h>
#include <string.h>

void gen_result_free(sm_gen_result *r)
{
    if (r) {
        free(r->tokens);
        memset(r, 0, sizeof *r);
    }
}

int gen_run(const sm_model *m, const int32_t *prompt, int32_t n_prompt, const sm_gen_opts *o, sm_sampler *s,
            void (*on_token)(void *user, int32_t id), void *user, sm_gen_result *r, sm_err *err)
{
    memset(r, 0, sizeof *r);
    if (n_prompt < 1)
        return sm_err_set(err, SM_EINVAL, "empty prompt: nothing to continue");
    if (o->n_ctx > m->hp.n_ctx_train)
        return sm_err_set(err, SM_ERANGE, "context size %d exceeds the model's training context %d", (int)o->n_ctx,
                          (int)m->hp.n_ctx_train);
    if (n_prompt >= o->n_ctx)
        return sm_err_set(err, SM_ERANGE, "prompt of %d tokens does not fit a context of %d", (int)n_prompt,
                          (int)o->n_ctx);
    int32_t n_predict = o->n_predict;
    if (n_predict < 0 || n_prompt + n_predict > o->n_ctx)
        n_predict = o->n_ctx - n_prompt;
    int32_t n_batch = o->n_batch > 0 ? o->n_batch : 512;
    sm_ctx c;
    int rc = ctx_init(&c, m, o->n_ctx, n_batch, o->n_threads > 0 ? o->n_threads : 1, err);
    if (rc)
        return rc;
    r->tokens = malloc((size_t)(n_predict > 0 ? n_predict : 1) * sizeof(int32_t));
    if (!r->tokens) {
        rc = sm_err_set(err, SM_ENOMEM, "out of memory");
        goto done;
    }
    r->n_prompt = n_prompt;
    for (int32_t i = 0; i < n_prompt; i++)
        sampler_accept(s, prompt[i]);
    double t0 = sm_now_ms();
    for (int32_t b0 = 0; b0 < n_prompt; b0 += c.n_batch) {
        int32_t nb = n_prompt - b0 < c.n_batch ? n_prompt - b0 : c.n_batch;
        int last = b0 + nb == n_prompt;
        if ((rc = ctx_eval(&c, prompt + b0, nb, last ? nb - 1 : nb, err)))
            goto done;
    }
    double t1 = sm_now_ms();
    r->prompt_ms = t1 - t0;
    for (int32_t i = 0; i < n_predict; i++) {
        int32_t id = sampler_sample(s, c.logits);
        sampler_accept(s, id);
        r->tokens[r->n_tokens++] = id;
        if (on_token)
            on_token(user, id);
        if (o->stop_at_eos && id == m->hp.eos_id) {
            r->hit_eos = 1;
            break;
        }
        if (i + 1 == n_predict)
            break; /* the last token is never evaluated, as in llama-cli */
        if ((rc = ctx_eval(&c, &id, 1, 0, err)))
            goto done;
    }
    r->gen_ms = sm_now_ms() - t1;
    rc = SM_OK;
done:
    if (rc)
        gen_result_free(r);
    ctx_free(&c);
    return rc;
}
