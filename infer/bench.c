#include "eval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void mean_sd(const double *v, int32_t n, double *mean, double *sd)
{
    double s = 0.0, s2 = 0.0;
    for (int32_t i = 0; i < n; i++)
        s += v[i];
    *mean = s / n;
    for (int32_t i = 0; i < n; i++)
        s2 += (v[i] - *mean) * (v[i] - *mean);
    *sd = n > 1 ? sqrt(s2 / (n - 1)) : 0.0;
}

int bench_run(const sm_model *m, int32_t n_prompt, int32_t n_gen, int32_t n_batch, int32_t n_threads, int32_t reps,
              sm_bench_result *r, sm_err *err)
{
    memset(r, 0, sizeof *r);
    if (reps < 1 || n_prompt < 0 || n_gen < 0 || n_prompt + n_gen < 1)
        return sm_err_set(err, SM_EINVAL, "bench: -p %d -n %d -r %d: nothing to measure", (int)n_prompt, (int)n_gen,
                          (int)reps);
    int32_t n_ctx = n_prompt > n_gen ? n_prompt : n_gen;
    if (n_ctx > m->hp.n_ctx_train)
        return sm_err_set(err, SM_ERANGE, "bench: %d tokens exceed the model's training context %d", (int)n_ctx,
                          (int)m->hp.n_ctx_train);
    if (n_batch < 1)
        n_batch = 512;
    sm_ctx c;
    int rc = ctx_init(&c, m, n_ctx, n_batch, n_threads, err);
    if (rc)
        return rc;
    int32_t *toks = malloc((size_t)n_ctx * sizeof(int32_t));
    double *pp = calloc((size_t)reps, sizeof(double));
    double *tg = calloc((size_t)reps, sizeof(double));
    if (!toks || !pp || !tg) {
        rc = sm_err_set(err, SM_ENOMEM, "bench: out of memory");
        goto done;
    }
    /* random tokens, as llama-bench uses */
    uint64_t x = 0x853c49e6748fea9bull;
    for (int32_t i = 0; i < n_ctx; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        toks[i] = (int32_t)((x >> 33) % (uint64_t)m->hp.n_vocab);
    }
    for (int32_t rep = -1; rep < reps; rep++) { /* rep -1 is the warm-up */
        if (n_prompt > 0) {
            ctx_clear(&c);
            double t0 = sm_now_ms();
            for (int32_t b0 = 0; b0 < n_prompt; b0 += c.n_batch) {
                int32_t nb = n_prompt - b0 < c.n_batch ? n_prompt - b0 : c.n_batch;
                if ((rc = ctx_eval(&c, toks + b0, nb, nb - 1, err)))
                    goto done;
            }
            if (rep >= 0)
                pp[rep] = n_prompt / ((sm_now_ms() - t0) / 1e3);
        }
        if (n_gen > 0) {
            ctx_clear(&c);
            double t0 = sm_now_ms();
            for (int32_t i = 0; i < n_gen; i++)
                if ((rc = ctx_eval(&c, toks + i, 1, 0, err)))
                    goto done;
            if (rep >= 0)
                tg[rep] = n_gen / ((sm_now_ms() - t0) / 1e3);
        }
    }
    if (n_prompt > 0)
        mean_sd(pp, reps, &r->pp_tps, &r->pp_tps_sd);
    if (n_gen > 0)
        mean_sd(tg, reps, &r->tg_tps, &r->tg_tps_sd);
    rc = SM_OK;
done:
    free(toks);
    free(pp);
    free(tg);
    ctx_free(&c);
    return rc;
}
