#include "eval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* splitmix64 seeding + xorshift64*: small, deterministic for a given seed */
static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

int sampler_init(sm_sampler *s, int32_t n_vocab, float temp, int32_t top_k, float top_p, float min_p,
                 uint64_t seed, sm_err *err)
{
    memset(s, 0, sizeof *s);
    if (n_vocab < 1)
        return sm_err_set(err, SM_EINVAL, "sampler: vocabulary of %d tokens", (int)n_vocab);
    s->idx = malloc((size_t)n_vocab * sizeof *s->idx);
    s->p = malloc((size_t)n_vocab * sizeof *s->p);
    if (!s->idx || !s->p) {
        sampler_free(s);
        return sm_err_set(err, SM_ENOMEM, "sampler: out of memory");
    }
    s->n_vocab = n_vocab;
    s->temp = temp;
    s->top_k = top_k;
    s->top_p = top_p;
    s->min_p = min_p;
    uint64_t z = seed + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    s->rng = (z ^ (z >> 31)) | 1;
    return SM_OK;
}

void sampler_free(sm_sampler *s)
{
    if (!s)
        return;
    free(s->idx);
    free(s->p);
    memset(s, 0, sizeof *s);
}

static const float *g_sort_logits; /* qsort has no context argument */

static int cmp_desc(const void *a, const void *b)
{
    float x = g_sort_logits[*(const int32_t *)a], y = g_sort_logits[*(const int32_t *)b];
    if (x != y)
        return x < y ? 1 : -1;
    return *(const int32_t *)a - *(const int32_t *)b;
}

int32_t sampler_sample(sm_sampler *s, const float *logits)
{
    const int32_t V = s->n_vocab;
    if (s->temp <= 0.0f) {
        int32_t best = 0;
        for (int32_t i = 1; i < V; i++)
            if (logits[i] > logits[best])
                best = i;
        return best;
    }
    /* candidates sorted by logit (descending), then the llama.cpp order of
     * filters: top-k, top-p, min-p, temperature, draw */
    for (int32_t i = 0; i < V; i++)
        s->idx[i] = i;
    g_sort_logits = logits;
    qsort(s->idx, (size_t)V, sizeof *s->idx, cmp_desc);
    int32_t n = V;
    if (s->top_k > 0 && s->top_k < n)
        n = s->top_k;
    float mx = logits[s->idx[0]];
    double sum = 0.0;
    for (int32_t i = 0; i < n; i++) {
        s->p[i] = expf(logits[s->idx[i]] - mx);
        sum += s->p[i];
    }
    if (s->top_p < 1.0f) {
        double cum = 0.0;
        for (int32_t i = 0; i < n; i++) {
            cum += s->p[i] / sum;
            if (cum >= s->top_p) {
                n = i + 1;
                break;
            }
        }
    }
    if (s->min_p > 0.0f) {
        /* keep tokens with p >= min_p * p_max (p_max has weight 1 here) */
        int32_t k = 1;
        while (k < n && s->p[k] >= s->min_p)
            k++;
        n = k;
    }
    sum = 0.0;
    for (int32_t i = 0; i < n; i++) {
        s->p[i] = expf((logits[s->idx[i]] - mx) / s->temp);
        sum += s->p[i];
    }
    double r = (double)(rng_next(&s->rng) >> 11) * (1.0 / 9007199254740992.0) * sum;
    double cum = 0.0;
    for (int32_t i = 0; i < n; i++) {
        cum += s->p[i];
        if (r < cum)
            return s->idx[i];
    }
    return s->idx[n - 1];
}
