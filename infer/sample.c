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
#include <stddef.h>
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
    s->tmp = malloc((size_t)n_vocab * sizeof *s->tmp);
    s->bucket = malloc((size_t)n_vocab * sizeof *s->bucket);
    s->cp = malloc((size_t)n_vocab * sizeof *s->cp);
    if (!s->cand || !s->tmp || !s->bucket || !s->cp) {
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
    free(s->tmp);
    free(s->bucket);
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

/* ------------------------------------------- llama.cpp's candidate order
 *
 * Equal logits end up in whatever order libstdc++'s std::partial_sort and
 * std::sort (gcc 12, the reference build) leave them, and that order
 * decides which of two tied tokens a draw (or a greedy pick) lands on. So
 * these are the same algorithms, step for step: heap select + heap sort,
 * and introsort (median-of-three quicksort to depth 2 log2 n, then heap
 * sort; insertion sort below 16 elements). The comparison is llama.cpp's
 * `a.logit > b.logit`, nothing else. */

static int gt(const sm_cand *a, const sm_cand *b) { return a->logit > b->logit; }

static void sift_up(sm_cand *f, ptrdiff_t hole, ptrdiff_t top, sm_cand v)
{
    ptrdiff_t parent = (hole - 1) / 2;
    while (hole > top && gt(&f[parent], &v)) {
        f[hole] = f[parent];
        hole = parent;
        parent = (hole - 1) / 2;
    }
    f[hole] = v;
}

/* Moves the hole at `hole` down to a leaf along the larger children, then
 * places v from there upwards (std::__adjust_heap). */
static void sift_down(sm_cand *f, ptrdiff_t hole, ptrdiff_t len, sm_cand v)
{
    const ptrdiff_t top = hole;
    ptrdiff_t child = hole;
    while (child < (len - 1) / 2) {
        child = 2 * (child + 1);
        if (gt(&f[child], &f[child - 1]))
            child--;
        f[hole] = f[child];
        hole = child;
    }
    if ((len & 1) == 0 && child == (len - 2) / 2) {
        child = 2 * (child + 1);
        f[hole] = f[child - 1];
        hole = child - 1;
    }
    sift_up(f, hole, top, v);
}

/* The heap's root goes to *out; *out's old value is sifted in. */
static void heap_pop(sm_cand *f, ptrdiff_t len, sm_cand *out)
{
    const sm_cand v = *out;
    *out = f[0];
    sift_down(f, 0, len, v);
}

static void heap_make(sm_cand *f, ptrdiff_t len)
{
    if (len < 2)
        return;
    for (ptrdiff_t parent = (len - 2) / 2;; parent--) {
        sift_down(f, parent, len, f[parent]);
        if (parent == 0)
            return;
    }
}

/* std::partial_sort: the best m of n first, in order. */
static void partial_sort(sm_cand *f, ptrdiff_t m, ptrdiff_t n)
{
    heap_make(f, m);
    for (ptrdiff_t i = m; i < n; i++)
        if (gt(&f[i], &f[0]))
            heap_pop(f, m, &f[i]);
    for (ptrdiff_t len = m; len > 1; len--)
        heap_pop(f, len - 1, &f[len - 1]);
}

/* Shifts *last left past every element it beats (a smaller one sits in
 * front, so there is no bound check: std::__unguarded_linear_insert). */
static void linear_insert(sm_cand *last)
{
    const sm_cand v = *last;
    sm_cand *next = last - 1;
    while (gt(&v, next)) {
        *last = *next;
        last = next--;
    }
    *last = v;
}

static void insertion_sort(sm_cand *f, sm_cand *l)
{
    if (f == l)
        return;
    for (sm_cand *i = f + 1; i != l; i++) {
        if (gt(i, f)) {
            const sm_cand v = *i;
            memmove(f + 1, f, (size_t)(i - f) * sizeof *f);
            *f = v;
        } else {
            linear_insert(i);
        }
    }
}

static void swap_cand(sm_cand *a, sm_cand *b)
{
    const sm_cand t = *a;
    *a = *b;
    *b = t;
}

static void median_to_first(sm_cand *r, sm_cand *a, sm_cand *b, sm_cand *c)
{
    if (gt(a, b)) {
        if (gt(b, c))
            swap_cand(r, b);
        else if (gt(a, c))
            swap_cand(r, c);
        else
            swap_cand(r, a);
    } else if (gt(a, c)) {
        swap_cand(r, a);
    } else if (gt(b, c)) {
        swap_cand(r, c);
    } else {
        swap_cand(r, b);
    }
}

static sm_cand *partition(sm_cand *f, sm_cand *l, const sm_cand *pivot)
{
    for (;;) {
        while (gt(f, pivot))
            f++;
        l--;
        while (gt(pivot, l))
            l--;
        if (!(f < l))
            return f;
        swap_cand(f, l);
        f++;
    }
}

enum { SORT_THRESHOLD = 16 };

static void introsort_loop(sm_cand *f, sm_cand *l, int depth)
{
    while (l - f > SORT_THRESHOLD) {
        if (depth == 0) {
            partial_sort(f, l - f, l - f);
            return;
        }
        depth--;
        median_to_first(f, f + 1, f + (l - f) / 2, l - 1);
        sm_cand *cut = partition(f + 1, l, f);
        introsort_loop(cut, l, depth);
        l = cut;
    }
}

/* std::sort */
static void std_sort(sm_cand *f, ptrdiff_t n)
{
    if (n == 0)
        return;
    int lg = 0;
    while (((ptrdiff_t)1 << (lg + 1)) <= n)
        lg++;
    introsort_loop(f, f + n, 2 * lg);
    if (n > SORT_THRESHOLD) {
        insertion_sort(f, f + SORT_THRESHOLD);
        for (sm_cand *i = f + SORT_THRESHOLD; i != f + n; i++)
            linear_insert(i);
    } else {
        insertion_sort(f, f + n);
    }
}

/* llama_sampler_top_k_impl: all V candidates in id order, then the best k
 * first, best first (k <= 0: all of them). k <= 128 takes partial_sort;
 * larger k a bucket pass: 128 buckets over logits [-10, 10) (clamped),
 * filled in id order from the top bucket down until k are covered, each
 * full bucket std::sort-ed and the last one partial_sort-ed. */
static int32_t top_k(sm_sampler *s, const float *logits)
{
    const int32_t V = s->n_vocab;
    const int32_t k = s->top_k <= 0 || s->top_k > V ? V : s->top_k;
    sm_cand *c = s->cand;
    for (int32_t i = 0; i < V; i++)
        c[i] = (sm_cand){i, logits[i], 0.0f};
    if (k <= 128) {
        partial_sort(c, k, V);
        return k;
    }
    enum { NB = 128 };
    const float scale = NB / (10.0f - -10.0f), inter = 10.0f * scale;
    int32_t histo[NB] = {0};
    for (int32_t i = 0; i < V; i++) {
        const float x = scale * c[i].logit + inter;
        /* int(x) clamped to [0, NB). x86's conversion gives INT_MIN for
         * NaN and for values past int32, which the clamp turns into 0 */
        const int32_t b = !(x >= 0.0f) || x >= 2147483648.0f ? 0 : x >= (float)(NB - 1) ? NB - 1 : (int32_t)x;
        s->bucket[i] = b;
        histo[b]++;
    }
    /* the lowest bucket needed to cover k (bucket 0 at worst) */
    int32_t ib = NB - 1;
    for (int32_t have = histo[ib]; have < k && ib > 0;)
        have += histo[--ib];
    int32_t start[NB];
    for (int32_t j = NB - 1, o = 0; j >= ib; j--) {
        start[j] = o;
        o += histo[j];
    }
    for (int32_t i = 0; i < V; i++)
        if (s->bucket[i] >= ib)
            s->tmp[start[s->bucket[i]]++] = c[i];
    sm_cand *p = s->tmp;
    int32_t done = 0;
    for (int32_t j = NB - 1; j > ib; j--) {
        std_sort(p, histo[j]);
        p += histo[j];
        done += histo[j];
    }
    partial_sort(p, k - done, histo[ib]);
    memcpy(c, s->tmp, (size_t)k * sizeof *c);
    return k;
}

/* ---------------------------------------------------------------- the chain */

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
    sm_cand *c = s->cand;
    int32_t n = top_k(s, logits);
    /* greedy: top-p and min-p keep the head, temperature 0 keeps only the
     * first maximum, which is the head */
    if (s->temp <= 0.0f)
        return c[0].id;
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
