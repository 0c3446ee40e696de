#include "eval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint32_t rd_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int32_t kld_base_token(const sm_kld_base *b, uint64_t i) { return (int32_t)rd_u32(b->tokens + 4 * i); }

void kld_base_close(sm_kld_base *b)
{
    if (b) {
        sm_map_close(&b->map);
        memset(b, 0, sizeof *b);
    }
}

int kld_base_open(sm_kld_base *b, const char *path, sm_err *err)
{
    memset(b, 0, sizeof *b);
    int rc = sm_map_open(&b->map, path, err);
    if (rc)
        return rc;
    const uint8_t *p = b->map.ptr;
    uint64_t len = b->map.len;
    if (len < 20 || memcmp(p, "_logits_", 8) != 0) {
        rc = sm_err_set(err, SM_EFORMAT, "%s: does not look like a file containing log-probabilities (magic \"_logits_\" and a 20-byte header expected, %llu bytes)",
                        path, (unsigned long long)len);
        goto fail;
    }
    b->n_ctx = rd_u32(p + 8);
    b->n_vocab = (int32_t)rd_u32(p + 12);
    b->n_chunk = (int32_t)rd_u32(p + 16);
    if (b->n_ctx < 2 || b->n_ctx > (1u << 24) || b->n_vocab < 1 || b->n_chunk < 1) {
        rc = sm_err_set(err, SM_ERANGE, "%s: offset 8: n_ctx %u, n_vocab %d, n_chunk %d out of range", path, b->n_ctx,
                        (int)b->n_vocab, (int)b->n_chunk);
        goto fail;
    }
    b->row_u16 = 2 * (((uint64_t)b->n_vocab + 1) / 2) + 4;
    uint64_t n_tok = (uint64_t)b->n_ctx * (uint64_t)b->n_chunk;
    uint64_t rows_per_chunk = b->n_ctx - 1 - b->n_ctx / 2;
    uint64_t need = 20 + 4 * n_tok + (uint64_t)b->n_chunk * rows_per_chunk * b->row_u16 * 2;
    if (len != need) {
        rc = sm_err_set(err, SM_EFORMAT, "%s: size %llu bytes, but n_ctx %u, n_vocab %d, n_chunk %d need %llu", path,
                        (unsigned long long)len, b->n_ctx, (int)b->n_vocab, (int)b->n_chunk,
                        (unsigned long long)need);
        goto fail;
    }
    b->tokens = p + 20;
    b->rows = p + 20 + 4 * n_tok;
    return SM_OK;
fail:
    kld_base_close(b);
    return rc;
}

/* Running sums, as llama-perplexity keeps them. */
typedef struct kld_acc {
    double sum_nll, sum_nll2, sum_nll_base, sum_nll_base2, sum_nll_nll_base;
    double sum_kld, sum_kld2, sum_p_diff, sum_p_diff2, sum_p_diff4;
    uint64_t n_same_top, count;
} kld_acc;

static float rd_f32(const uint8_t *p)
{
    uint32_t u = rd_u32(p);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* One scored token: logits of the model under test vs the stored row. */
static void kld_token(const float *logits, int64_t V, const uint8_t *row, int32_t tok, kld_acc *a, float *kld_out,
                      float *dp_out)
{
    float mx = logits[0];
    int64_t imax = 0;
    for (int64_t i = 1; i < V; i++)
        if (logits[i] > mx) {
            mx = logits[i];
            imax = i;
        }
    double sum_exp = 0.0;
    for (int64_t i = 0; i < V; i++)
        sum_exp += (double)expf(logits[i] - mx);
    const float log_sum_exp = (float)log(sum_exp);
    const float scale = rd_f32(row);
    const float min_log_prob = rd_f32(row + 4);
    const uint8_t *q = row + 8;
#define QV(i) ((uint16_t)(q[2 * (i)] | (q[2 * (i) + 1] << 8)))
    const float nll = mx + log_sum_exp - logits[tok];
    a->sum_nll += nll;
    a->sum_nll2 += (double)(nll * nll);
    const float nll_base = -(scale * QV(tok) + min_log_prob);
    a->sum_nll_base += nll_base;
    a->sum_nll_base2 += (double)(nll_base * nll_base);
    a->sum_nll_nll_base += (double)(nll * nll_base);
    const float lse = mx + log_sum_exp;
    double sum = 0.0;
    int64_t imax_base = -1;
    float pmax = 0.0f;
    for (int64_t i = 0; i < V; i++) {
        const float lb = scale * QV(i) + min_log_prob;
        if (i == 0 || lb > pmax) {
            pmax = lb;
            imax_base = i;
        }
        if (lb > -16.f) {
            const float pb = expf(lb);
            sum += (double)(pb * (lb - logits[i] + lse));
        }
    }
#undef QV
    a->sum_kld += sum;
    a->sum_kld2 += sum * sum;
    a->count++;
    if (imax == imax_base)
        a->n_same_top++;
    const float p_base = expf(-nll_base);
    const float p = expf(-nll);
    const float pd = p - p_base;
    a->sum_p_diff += pd;
    const double pd2 = (double)(pd * pd);
    a->sum_p_diff2 += pd2;
    a->sum_p_diff4 += pd2 * pd2;
    *kld_out = (float)sum;
    *dp_out = pd;
}

static void mean_unc(double sum, double sum2, uint64_t count, double *f, double *df)
{
    if (count < 1) {
        *f = *df = 0.0;
        return;
    }
    *f = sum / (double)count;
    double v = sum2 / (double)count - *f * *f;
    *df = v > 0 && count > 10 ? sqrt(v / (double)(count - 1)) : 0.0;
}

static double covariance(double sa, double sb, double sab, uint64_t count)
{
    if (count < 10)
        return 0.0;
    double var = sab / (double)count - (sa / (double)count) * (sb / (double)count);
    return var / (double)(count - 1);
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static double percentile(const float *v, uint64_t n, float fraction)
{
    if (fraction <= 0)
        return v[0];
    if (fraction >= 1)
        return v[n - 1];
    float p = fraction * (float)(n - 1);
    uint64_t ip = (uint64_t)p;
    p -= (float)ip;
    uint64_t ip1 = ip + 1 < n ? ip + 1 : n - 1;
    return (double)((1 - p) * v[ip] + p * v[ip1]);
}

static double median(const float *v, uint64_t n)
{
    return n % 2 == 0 ? (double)(0.5f * (v[n / 2] + v[n / 2 - 1])) : (double)v[n / 2];
}

static void finish(const kld_acc *a, float *kv, float *dv, sm_kld_result *r)
{
    const uint64_t n = a->count;
    double lp, lpu, lb, lbu;
    mean_unc(a->sum_nll, a->sum_nll2, n, &lp, &lpu);
    mean_unc(a->sum_nll_base, a->sum_nll_base2, n, &lb, &lbu);
    r->count = n;
    r->ppl_q = exp(lp);
    r->ppl_q_err = r->ppl_q * lpu;
    r->ppl_base = exp(lb);
    r->ppl_base_err = r->ppl_base * lbu;
    double cov = covariance(a->sum_nll, a->sum_nll_base, a->sum_nll_nll_base, n);
    r->cor_ln_ppl = cov / (lpu * lbu);
    r->ln_ppl_ratio = lp - lb;
    r->ln_ppl_ratio_err = sqrt(lpu * lpu + lbu * lbu - 2.0 * cov);
    r->ppl_ratio = exp(r->ln_ppl_ratio);
    r->ppl_ratio_err = r->ppl_ratio * r->ln_ppl_ratio_err;
    double pcov = r->ppl_q * r->ppl_base * cov;
    r->ppl_diff = r->ppl_q - r->ppl_base;
    r->ppl_diff_err = sqrt(r->ppl_q_err * r->ppl_q_err + r->ppl_base_err * r->ppl_base_err - 2.0 * pcov);
    mean_unc(a->sum_kld, a->sum_kld2, n, &r->kld_mean, &r->kld_mean_err);
    qsort(kv, n, sizeof *kv, cmp_float);
    qsort(dv, n, sizeof *dv, cmp_float);
    r->kld_max = kv[n - 1];
    r->kld_p99_9 = percentile(kv, n, 0.999f);
    r->kld_p99 = percentile(kv, n, 0.990f);
    r->kld_median = median(kv, n);
    r->kld_p10 = percentile(kv, n, 0.100f);
    r->kld_p5 = percentile(kv, n, 0.050f);
    r->kld_p1 = percentile(kv, n, 0.010f);
    r->kld_min = kv[0];
    mean_unc(a->sum_p_diff, a->sum_p_diff2, n, &r->dp_mean, &r->dp_mean_err);
    r->dp_max = dv[n - 1];
    r->dp_p99_9 = percentile(dv, n, 0.999f);
    r->dp_p99 = percentile(dv, n, 0.990f);
    r->dp_p95 = percentile(dv, n, 0.950f);
    r->dp_p90 = percentile(dv, n, 0.900f);
    r->dp_p75 = percentile(dv, n, 0.750f);
    r->dp_median = median(dv, n);
    r->dp_p25 = percentile(dv, n, 0.250f);
    r->dp_p10 = percentile(dv, n, 0.100f);
    r->dp_p5 = percentile(dv, n, 0.050f);
    r->dp_p1 = percentile(dv, n, 0.010f);
    r->dp_p0_1 = percentile(dv, n, 0.001f);
    r->dp_min = dv[0];
    double mse, mse_u;
    mean_unc(a->sum_p_diff2, a->sum_p_diff4, n, &mse, &mse_u);
    r->dp_rms = sqrt(mse);
    r->dp_rms_err = 0.5 / r->dp_rms * mse_u;
    r->same_top = (double)a->n_same_top / (double)n;
    r->same_top_err = sqrt(r->same_top * (1.0 - r->same_top) / (double)(n - 1));
}

int kld_run(const sm_model *m, const sm_kld_base *b, const sm_kld_opts *o, sm_kld_result *r, sm_err *err)
{
    memset(r, 0, sizeof *r);
    const int64_t V = m->hp.n_vocab;
    if (b->n_vocab != m->hp.n_vocab)
        return sm_err_set(err, SM_EMISMATCH, "inconsistent vocabulary: the logits file has %d tokens, the model %d",
                          (int)b->n_vocab, (int)m->hp.n_vocab);
    const int32_t n_ctx = (int32_t)b->n_ctx;
    if (n_ctx > m->hp.n_ctx_train)
        return sm_err_set(err, SM_ERANGE, "the logits file was made with n_ctx %d, above the model's training context %d",
                          (int)n_ctx, (int)m->hp.n_ctx_train);
    int32_t n_chunk = o->n_chunks < 0 || o->n_chunks > b->n_chunk ? b->n_chunk : o->n_chunks;
    int32_t n_batch = o->n_batch > 0 && o->n_batch < n_ctx ? o->n_batch : n_ctx;
    const int32_t first = n_ctx / 2;
    const int32_t per = n_ctx - 1 - first;
    const int32_t bos = m->hp.add_bos ? m->hp.bos_id : -1;
    sm_ctx c;
    int rc = ctx_init(&c, m, n_ctx, n_batch, o->n_threads > 0 ? o->n_threads : 1, err);
    if (rc)
        return rc;
    float *logits = malloc((size_t)(n_ctx - first) * (size_t)V * sizeof(float));
    int32_t *toks = malloc((size_t)n_ctx * sizeof(int32_t));
    float *kv = malloc((size_t)per * (size_t)n_chunk * sizeof(float));
    float *dv = malloc((size_t)per * (size_t)n_chunk * sizeof(float));
    kld_acc a;
    memset(&a, 0, sizeof a);
    if (!logits || !toks || !kv || !dv) {
        rc = sm_err_set(err, SM_ENOMEM, "out of memory for the KL-divergence buffers");
        goto done;
    }
    if (o->log)
        fprintf(o->log, "chunk             PPL               ln(PPL(Q)/PPL(base))          KL Divergence              \xce\x94p RMS            Same top p\n");
    for (int32_t ch = 0; ch < n_chunk; ch++) {
        for (int32_t i = 0; i < n_ctx; i++) {
            toks[i] = kld_base_token(b, (uint64_t)ch * (uint64_t)n_ctx + (uint64_t)i);
            if (toks[i] < 0 || toks[i] >= V) {
                rc = sm_err_set(err, SM_ERANGE, "logits file: token %d at index %lld is outside the vocabulary",
                                (int)toks[i], (long long)ch * n_ctx + i);
                goto done;
            }
        }
        if ((rc = eval_chunk(&c, toks, n_ctx, n_batch, first, bos, logits, err)))
            goto done;
        const uint8_t *rows = b->rows + (uint64_t)ch * (uint64_t)per * b->row_u16 * 2;
        for (int32_t i = 0; i < per; i++)
            kld_token(logits + (int64_t)i * V, V, rows + (uint64_t)i * b->row_u16 * 2, toks[first + i + 1], &a,
                      &kv[(int64_t)ch * per + i], &dv[(int64_t)ch * per + i]);
        if (o->log) {
            double lp, lpu, lb, lbu, kl, klu, ms, msu;
            mean_unc(a.sum_nll, a.sum_nll2, a.count, &lp, &lpu);
            mean_unc(a.sum_nll_base, a.sum_nll_base2, a.count, &lb, &lbu);
            double cov = covariance(a.sum_nll, a.sum_nll_base, a.sum_nll_nll_base, a.count);
            mean_unc(a.sum_kld, a.sum_kld2, a.count, &kl, &klu);
            mean_unc(a.sum_p_diff2, a.sum_p_diff4, a.count, &ms, &msu);
            double rms = sqrt(ms), top = (double)a.n_same_top / (double)a.count;
            fprintf(o->log, "%4d    %9.4lf \xc2\xb1 %9.4lf    %10.5lf \xc2\xb1 %10.5lf    %10.5lf \xc2\xb1 %10.5lf    %6.3lf \xc2\xb1 %6.3lf %%    %6.3lf \xc2\xb1 %6.3lf %%\n",
                    (int)ch + 1, exp(lp), exp(lp) * lpu, lp - lb, sqrt(lpu * lpu + lbu * lbu - 2.0 * cov), kl, klu,
                    100.0 * rms, 100.0 * (0.5 / rms * msu), 100.0 * top,
                    100.0 * sqrt(top * (1 - top) / (double)(a.count - 1)));
            fflush(o->log);
        }
    }
    r->n_chunks = n_chunk;
    if (a.count < 2) {
        rc = sm_err_set(err, SM_ERANGE, "only %llu tokens scored: too few for statistics", (unsigned long long)a.count);
        goto done;
    }
    finish(&a, kv, dv, r);
    rc = SM_OK;
done:
    free(logits);
    free(toks);
    free(kv);
    free(dv);
    ctx_free(&c);
    return rc;
}

void kld_print(FILE *f, const sm_kld_result *r)
{
    fprintf(f, "====== Perplexity statistics ======\n");
    fprintf(f, "Mean PPL(Q)                   : %10.6lf \xc2\xb1 %10.6lf\n", r->ppl_q, r->ppl_q_err);
    fprintf(f, "Mean PPL(base)                : %10.6lf \xc2\xb1 %10.6lf\n", r->ppl_base, r->ppl_base_err);
    fprintf(f, "Cor(ln(PPL(Q)), ln(PPL(base))): %6.2lf%%\n", 100.0 * r->cor_ln_ppl);
    fprintf(f, "Mean ln(PPL(Q)/PPL(base))     : %10.6lf \xc2\xb1 %10.6lf\n", r->ln_ppl_ratio, r->ln_ppl_ratio_err);
    fprintf(f, "Mean PPL(Q)/PPL(base)         : %10.6lf \xc2\xb1 %10.6lf\n", r->ppl_ratio, r->ppl_ratio_err);
    fprintf(f, "Mean PPL(Q)-PPL(base)         : %10.6lf \xc2\xb1 %10.6lf\n", r->ppl_diff, r->ppl_diff_err);
    fprintf(f, "\n====== KL divergence statistics ======\n");
    fprintf(f, "Mean    KLD: %10.6lf \xc2\xb1 %10.6lf\n", r->kld_mean, r->kld_mean_err);
    fprintf(f, "Maximum KLD: %10.6f\n", r->kld_max);
    fprintf(f, "99.9%%   KLD: %10.6f\n", r->kld_p99_9);
    fprintf(f, "99.0%%   KLD: %10.6f\n", r->kld_p99);
    fprintf(f, "Median  KLD: %10.6f\n", r->kld_median);
    fprintf(f, "10.0%%   KLD: %10.6f\n", r->kld_p10);
    fprintf(f, " 5.0%%   KLD: %10.6f\n", r->kld_p5);
    fprintf(f, " 1.0%%   KLD: %10.6f\n", r->kld_p1);
    fprintf(f, "Minimum KLD: %10.6f\n", r->kld_min);
    fprintf(f, "\n====== Token probability statistics ======\n");
    fprintf(f, "Mean    \xce\x94p: %6.3lf \xc2\xb1 %5.3lf %%\n", 100.0 * r->dp_mean, 100.0 * r->dp_mean_err);
    fprintf(f, "Maximum \xce\x94p: %6.3lf%%\n", 100.0 * r->dp_max);
    fprintf(f, "99.9%%   \xce\x94p: %6.3lf%%\n", 100.0 * r->dp_p99_9);
    fprintf(f, "99.0%%   \xce\x94p: %6.3lf%%\n", 100.0 * r->dp_p99);
    fprintf(f, "95.0%%   \xce\x94p: %6.3lf%%\n", 100.0 * r->dp_p95);
    fprintf(f, "90.0%%   \xce\x94p: %6.3lf%%\n", 100.0 * r->dp_p90);
    fprintf(f, "75.0%%   \xce\x94p: %6.3lf%%\n", 100.0 * r->dp_p75);
    fprintf(f, "Median  \xce\x94p: %6.3lf%%\n", 100.0 * r->dp_median);
    fprintf(f, "25.0%%   \xce\x94p: %6.3lf%%\n", 100.0 * r->dp_p25);
    fprintf(f, "10.0%%   \xce\x94p: %6.3lf%%\n", 100.0 * r->dp_p10);
    fprintf(f, " 5.0%%   \xce\x94p: %6.3lf%%\n", 100.0 * r->dp_p5);
    fprintf(f, " 1.0%%   \xce\x94p: %6.3lf%%\n", 100.0 * r->dp_p1);
    fprintf(f, " 0.1%%   \xce\x94p: %6.3lf%%\n", 100.0 * r->dp_p0_1);
    fprintf(f, "Minimum \xce\x94p: %6.3lf%%\n", 100.0 * r->dp_min);
    fprintf(f, "RMS \xce\x94p    : %6.3lf \xc2\xb1 %5.3lf %%\n", 100.0 * r->dp_rms, 100.0 * r->dp_rms_err);
    fprintf(f, "Same top p: %6.3lf \xc2\xb1 %5.3lf %%\n", 100.0 * r->same_top, 100.0 * r->same_top_err);
}
