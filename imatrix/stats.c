/* stats.c — --show-statistics. */
#include "stats.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* v_j = sum2_j / count of its matrix; matrices without rows are skipped.
 * Returns the number of values written to v[n_mat * n_per_mat]. */
static int64_t mean_squares(const im_entry *e, double *v)
{
    int64_t k = 0;
    for (int64_t m = 0; m < e->n_mat; m++) {
        if (e->count[m] <= 0)
            continue;
        for (int64_t j = 0; j < e->n_per_mat; j++)
            v[k++] = (double)e->sum2[m * e->n_per_mat + j] / (double)e->count[m];
    }
    return k;
}

static void split_name(const char *name, int32_t *layer, char *kind, size_t cap)
{
    *layer = -1;
    const char *p = name;
    if (strncmp(name, "blk.", 4) == 0) {
        char *end;
        long l = strtol(name + 4, &end, 10);
        if (end != name + 4 && *end == '.' && l >= 0 && l < INT32_MAX) {
            *layer = (int32_t)l;
            p = end + 1;
        }
    }
    size_t len = strlen(p);
    if (len > 7 && strcmp(p + len - 7, ".weight") == 0)
        len -= 7;
    if (len >= cap)
        len = cap - 1;
    memcpy(kind, p, len);
    kind[len] = 0;
}

static int cmp_double_desc(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? 1 : (x > y ? -1 : 0);
}

static int cmp_stats(const void *a, const void *b)
{
    const im_tstats *x = a, *y = b;
    int k = strcmp(x->kind, y->kind);
    if (k)
        return k;
    return x->sum < y->sum ? 1 : (x->sum > y->sum ? -1 : 0);
}

static double cosine(const double *a, const double *b, int64_t n)
{
    double d = 0, na = 0, nb = 0;
    for (int64_t i = 0; i < n; i++) {
        d += a[i] * b[i];
        na += a[i] * a[i];
        nb += b[i] * b[i];
    }
    if (na > 0 && nb > 0) {
        double c = d / (sqrt(na) * sqrt(nb));
        return c > 1 ? 1 : (c < -1 ? -1 : c);
    }
    return na == 0 && nb == 0 ? 1.0 : 0.0;
}

int im_stats_compute(const im_collector *c, im_tstats **out, uint32_t *n_out, sm_err *err)
{
    *out = NULL;
    *n_out = 0;
    int64_t maxv = 1;
    for (uint32_t i = 0; i < c->n; i++)
        if (c->e[i].n_per_mat * c->e[i].n_mat > maxv)
            maxv = c->e[i].n_per_mat * c->e[i].n_mat;
    im_tstats *s = calloc(c->n ? c->n : 1, sizeof(*s));
    double *v = malloc((size_t)maxv * sizeof(double));
    double *w = malloc((size_t)maxv * sizeof(double));
    int rc = SM_OK;
    if (!s || !v || !w) {
        rc = sm_err_set(err, SM_ENOMEM, "out of memory for statistics");
        goto done;
    }
    uint32_t k = 0;
    for (uint32_t i = 0; i < c->n; i++) {
        const im_entry *e = &c->e[i];
        int64_t n = mean_squares(e, v);
        if (n == 0)
            continue;
        im_tstats *t = &s[k++];
        t->name = e->name;
        split_name(e->name, &t->layer, t->kind, sizeof(t->kind));
        t->n = n;
        t->min = INFINITY;
        t->max = -INFINITY;
        double mean = 0, m2 = 0;
        for (int64_t j = 0; j < n; j++) {
            /* Welford, as llama.cpp does */
            t->sum += v[j];
            t->min = v[j] < t->min ? v[j] : t->min;
            t->max = v[j] > t->max ? v[j] : t->max;
            double d = v[j] - mean;
            mean += d / (double)(j + 1);
            m2 += d * (v[j] - mean);
        }
        t->mean = mean;
        t->std = n > 1 ? sqrt(m2 / (double)(n - 1)) : 0.0;
        if (t->sum > 0) {
            for (int64_t j = 0; j < n; j++) {
                double p = v[j] / t->sum;
                if (p > 0)
                    t->entropy -= p * log2(p);
            }
        }
        t->h_norm = n > 1 ? 100.0 * t->entropy / log2((double)n) : 0.0;
        int64_t nz = 0;
        if (t->std > 0)
            for (int64_t j = 0; j < n; j++)
                nz += fabs(v[j] - t->mean) / t->std > 1.0;
        t->zd = (double)nz / (double)n;
        memcpy(w, v, (size_t)n * sizeof(double));
        qsort(w, (size_t)n, sizeof(double), cmp_double_desc);
        int64_t top = (n + 9) / 10;
        double ts = 0;
        for (int64_t j = 0; j < top; j++)
            ts += w[j];
        t->top_share = t->sum > 0 ? ts / t->sum : 0.0;
    }
    /* cosine similarity with the same weight one layer earlier */
    for (uint32_t i = 0; i < k; i++) {
        im_tstats *t = &s[i];
        if (t->layer <= 0)
            continue;
        for (uint32_t j = 0; j < k; j++) {
            if (s[j].layer != t->layer - 1 || strcmp(s[j].kind, t->kind) != 0 || s[j].n != t->n)
                continue;
            int64_t a = im_find(c, t->name), b = im_find(c, s[j].name);
            if (a < 0 || b < 0)
                break;
            mean_squares(&c->e[a], v);
            mean_squares(&c->e[b], w);
            t->cossim = cosine(v, w, t->n);
            break;
        }
    }
    qsort(s, k, sizeof(*s), cmp_stats);
    *out = s;
    *n_out = k;
    s = NULL;
done:
    free(s);
    free(v);
    free(w);
    return rc;
}

void im_stats_print(FILE *f, const char *title, const im_tstats *s, uint32_t n)
{
    fprintf(f, "\nComputing tensor statistics for %s (%u tensors)\n\n", title, n);
    fprintf(f, "%6s  %-20s %13s %10s %10s %10s %10s %7s %9s %8s %7s %8s %8s\n", "Layer", "Tensor", "Sum E[x^2]", "Min",
            "Max", "Mean", "Std", "N", "H norm", "H", "ZD", "Top10%", "CosSim");
    fprintf(f, "%.*s\n", 137, "==================================================================================="
                                "======================================================================");
    for (uint32_t i = 0; i < n; i++) {
        const im_tstats *t = &s[i];
        char layer[16];
        if (t->layer >= 0)
            snprintf(layer, sizeof(layer), "%d", (int)t->layer);
        else
            snprintf(layer, sizeof(layer), "-");
        fprintf(f, "%6s  %-20s %13.4f %10.4f %10.4f %10.4f %10.4f %7lld %8.2f%% %8.4f %6.2f%% %7.2f%% %8.4f\n", layer,
                t->kind, t->sum, t->min, t->max, t->mean, t->std, (long long)t->n, t->h_norm, t->entropy,
                100.0 * t->zd, 100.0 * t->top_share, t->cossim);
    }
    /* per layer: sum of the sums, share of outlier columns, mean cosine */
    int32_t max_layer = -1;
    for (uint32_t i = 0; i < n; i++)
        max_layer = s[i].layer > max_layer ? s[i].layer : max_layer;
    if (max_layer < 0)
        return;
    fprintf(f, "\nComputing layer statistics (%d layers)\n\n", (int)max_layer + 1);
    fprintf(f, "%6s %13s %8s %10s\n", "Layer", "Sum E[x^2]", "ZD", "CosSim");
    fprintf(f, "======================================\n");
    for (int32_t l = 0; l <= max_layer; l++) {
        double sum = 0, zd = 0, cs = 0;
        int64_t cols = 0;
        int32_t nt = 0;
        for (uint32_t i = 0; i < n; i++) {
            if (s[i].layer != l)
                continue;
            sum += s[i].sum;
            zd += s[i].zd * (double)s[i].n;
            cols += s[i].n;
            cs += s[i].cossim;
            nt++;
        }
        if (nt == 0)
            continue;
        fprintf(f, "%6d %13.4f %7.2f%% %10.4f\n", (int)l, sum, 100.0 * zd / (double)cols, cs / nt);
    }
}
