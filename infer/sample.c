/* sample.c — llama.cpp's default sampler chain, draw for draw.
 *
 * llama-cli (c392e5094) samples through repetition penalties → top-k →
 * top-p → min-p → temperature → dist (DRY, typical-p and XTC are in the
 * chain too but inactive at their defaults, and smelt has no flags for
 * them; the penalties are inactive at theirs). Each step is written here with
 * the same float operations in the same order, and the draw uses the same
 * generator and mapping as libstdc++'s std::discrete_distribution over
 * std::mt19937, so one seed gives llama-cli's tokens. */
#include "eval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ std::mt19937 */

enum { MT_N = 624, MT_M = 397 };

static void mt_seed(sm_sampler *s, uint32_t seed)
{
    s->mt[0] = seed;
    for (int i = 1; i < MT_N; i++)
        s->mt[i] = 1812433253u * (s->mt[i - 1] ^ (s->mt[i - 1] >> 30)) + (uint32_t)i;
    s->mti = MT_N;
}

static uint32_t mt_next(sm_sampler *s)
{
    if (s->mti >= MT_N) {
        /* in place and in order, as the reference algorithm: entries past
         * MT_N - MT_M read already twisted ones */
        for (int i = 0; i < MT_N; i++) {
            const uint32_t y = (s->mt[i] & 0x80000000u) | (s->mt[(i + 1) % MT_N] & 0x7fffffffu);
            s->mt[i] = s->mt[(i + MT_M) % MT_N] ^ (y >> 1) ^ ((y & 1u) ? 0x9908b0dfu : 0u);
        }
        s->mti = 0;
    }
    uint32_t y = s->mt[s->mti++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
}

uint32_t sampler_mt_next(sm_sampler *s) { return mt_next(s); }

/* libstdc++'s generate_canonical<double, 53>: two 32-bit draws, low first,
 * summed in double (x1 + x2 * 2^32 rounds once to 53 bits) and scaled by
 * 2^-64; a result that rounds up to 1 becomes the largest double below 1. */
static double mt_canonical(sm_sampler *s)
{
    double sum = (double)mt_next(s);
    sum += (double)mt_next(s) * 4294967296.0;
    const double r = sum / 18446744073709551616.0;
    return r >= 1.0 ? nextafter(1.0, 0.0) : r;
}

/* ------------------------------------------------------------------ set up */

int sampler_init(sm_sampler *s, int32_t n_vocab, float temp, int32_t top_k, float top_p, float min_p,
                 uint64_t seed, sm_err *err)
{
    memset(s, 0, sizeof *s);
    if (n_vocab < 1)
        return sm_err_set(err, SM_EINVAL, "sampler: vocabulary of %d tokens", (int)n_vocab);
    s->cand = malloc((size_t)n_vocab * sizeof *s->cand);
    s->cp = malloc((size_t)n_vocab * sizeof *s->cp);
    if (!s->cand || !s->cp) {
        sampler_free(s);
        return sm_err_set(err, SM_ENOMEM, "sampler: out of memory");
    }
    s->n_vocab = n_vocab;
    s->temp = temp;
    s->top_k = top_k;
    s->top_p = top_p;
    s->min_p = min_p;
    /* llama.cpp's seed is a uint32_t (--seed is read with stoul and
     * truncated) */
    mt_seed(s, (uint32_t)seed);
    return SM_OK;
}

void sampler_free(sm_sampler *s)
{
    if (!s)
        return;
    free(s->cand);
    free(s->cp);
    free(s->prev);
    free(s->count);
    free(s->pen);
    memset(s, 0, sizeof *s);
}

int sampler_set_penalties(sm_sampler *s, int32_t last_n, float repeat, float freq, float present, sm_err *err)
{
    if (last_n < 0)
        return sm_err_set(err, SM_EINVAL, "sampler: repetition window of %d tokens", (int)last_n);
    free(s->prev);
    free(s->count);
    free(s->pen);
    s->prev = NULL;
    s->count = NULL;
    s->pen = NULL;
    s->penalty_last_n = 0;
    s->n_prev = s->prev_head = 0;
    if (last_n == 0)
        return SM_OK;
    s->prev = malloc((size_t)last_n * sizeof *s->prev);
    s->count = calloc((size_t)s->n_vocab, sizeof *s->count);
    s->pen = malloc((size_t)s->n_vocab * sizeof *s->pen);
    if (!s->prev || !s->count || !s->pen)
        return sm_err_set(err, SM_ENOMEM, "sampler: out of memory");
    s->penalty_last_n = last_n;
    s->penalty_repeat = repeat;
    s->penalty_freq = freq;
    s->penalty_present = present;
    return SM_OK;
}

void sampler_accept(sm_sampler *s, int32_t token)
{
    if (s->penalty_last_n == 0 || token < 0 || token >= s->n_vocab)
        return;
    s->count[token]++;
    if (s->n_prev < s->penalty_last_n) {
        s->prev[(s->prev_head + s->n_prev) % s->penalty_last_n] = token;
        s->n_prev++;
    } else {
        s->count[s->prev[s->prev_head]]--;
        s->prev[s->prev_head] = token;
        s->prev_head = (s->prev_head + 1) % s->penalty_last_n;
    }
}

/* llama_sampler_penalties_apply: the logits to rank, penalized or not. */
static const float *penalized(sm_sampler *s, const float *logits)
{
    if (s->penalty_last_n == 0 ||
        (s->penalty_repeat == 1.0f && s->penalty_freq == 0.0f && s->penalty_present == 0.0f))
        return logits;
    memcpy(s->pen, logits, (size_t)s->n_vocab * sizeof *s->pen);
    /* a token held several times is recomputed from its logit each time */
    for (int32_t i = 0; i < s->n_prev; i++) {
        const int32_t t = s->prev[i];
        const int32_t c = s->count[t];
        float l = logits[t];
        l = l <= 0.0f ? l * s->penalty_repeat : l / s->penalty_repeat;
        /* float products added, as libllama computes them (no fma) */
        l -= (float)c * s->penalty_freq + 1.0f * s->penalty_present;
        s->pen[t] = l;
    }
    return s->pen;
}

/* ---------------------------------------------------------------- the chain */

/* a ranks before b: higher logit first. llama.cpp's partial_sort leaves
 * equal logits in an order of its own; here the lower id goes first. */
static int cand_before(const sm_cand *a, const sm_cand *b)
{
    return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}

static int cmp_cand(const void *pa, const void *pb)
{
    const sm_cand *a = pa, *b = pb;
    return cand_before(a, b) ? -1 : cand_before(b, a) ? 1 : 0;
}

/* Sift-down of a heap whose root is the candidate ranking last. */
static void heap_down(sm_cand *h, int32_t n, int32_t i)
{
    for (;;) {
        int32_t w = i;
        const int32_t l = 2 * i + 1, r = l + 1;
        if (l < n && cand_before(&h[w], &h[l]))
            w = l;
        if (r < n && cand_before(&h[w], &h[r]))
            w = r;
        if (w == i)
            return;
        const sm_cand t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

/* top-k: the k best candidates of all V, best first (llama.cpp sorts the
 * whole vocabulary when k <= 0). A k-heap keeps this O(V log k). */
static int32_t top_k(sm_sampler *s, const float *logits)
{
    const int32_t V = s->n_vocab;
    const int32_t k = s->top_k <= 0 || s->top_k > V ? V : s->top_k;
    sm_cand *c = s->cand;
    for (int32_t i = 0; i < k; i++)
        c[i] = (sm_cand){i, logits[i], 0.0f};
    if (k < V) {
        for (int32_t i = k / 2; i-- > 0;)
            heap_down(c, k, i);
        for (int32_t i = k; i < V; i++) {
            const sm_cand x = {i, logits[i], 0.0f};
            if (cand_before(&x, &c[0])) {
                c[0] = x;
                heap_down(c, k, 0);
            }
        }
    }
    qsort(c, (size_t)k, sizeof *c, cmp_cand);
    return k;
}

/* llama_sampler_softmax_impl on sorted candidates: exp in float against
 * the first (largest) logit, a float running sum, then one division each. */
static void softmax(sm_cand *c, int32_t n)
{
    const float mx = c[0].logit;
    float sum = 0.0f;
    for (int32_t i = 0; i < n; i++) {
        c[i].p = expf(c[i].logit - mx);
        sum += c[i].p;
    }
    for (int32_t i = 0; i < n; i++)
        c[i].p /= sum;
}

int32_t sampler_sample(sm_sampler *s, const float *logits)
{
    logits = penalized(s, logits);
    if (s->temp <= 0.0f) {
        int32_t best = 0;
        for (int32_t i = 1; i < s->n_vocab; i++)
            if (logits[i] > logits[best])
                best = i;
        return best;
    }
    sm_cand *c = s->cand;
    int32_t n = top_k(s, logits);
    if (s->top_p < 1.0f) {
        /* the smallest prefix whose float running sum reaches p */
        softmax(c, n);
        float cum = 0.0f;
        for (int32_t i = 0; i < n; i++) {
            cum += c[i].p;
            if (cum >= s->top_p) {
                n = i + 1;
                break;
            }
        }
    }
    if (s->min_p > 0.0f) {
        /* p_i >= min_p * p_max, tested on logits: l_i >= l_0 + log(min_p) */
        const float min_logit = c[0].logit + logf(s->min_p);
        int32_t i = 1;
        while (i < n && !(c[i].logit < min_logit))
            i++;
        n = i;
    }
    for (int32_t i = 0; i < n; i++)
        c[i].logit /= s->temp;
    softmax(c, n);
    /* std::discrete_distribution: fewer than two weights give index 0
     * without a draw; else the float probabilities are widened, summed and
     * normalized in double, accumulated (the last forced to 1), and the
     * first cumulative value >= the canonical draw wins. */
    if (n < 2)
        return c[0].id;
    double sum = 0.0;
    for (int32_t i = 0; i < n; i++)
        sum += (double)c[i].p;
    double acc = 0.0;
    for (int32_t i = 0; i < n; i++) {
        const double q = (double)c[i].p / sum;
        acc = i == 0 ? q : acc + q;
        s->cp[i] = acc;
    }
    s->cp[n - 1] = 1.0;
    const double u = mt_canonical(s);
    int32_t lo = 0, hi = n - 1; /* lower_bound: cp[hi] = 1 > u */
    while (lo < hi) {
        const int32_t mid = lo + (hi - lo) / 2;
        if (s->cp[mid] < u)
            lo = mid + 1;
        else
            hi = mid;
    }
    return c[lo].id;
}
