/* collect.c — accumulating, merging and saving importance matrices.
 * The rules and representation are described in collect.h. */
#include "collect.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void im_init(im_collector *c, int32_t chunk_size, int32_t process_output)
{
    memset(c, 0, sizeof(*c));
    c->chunk_size = chunk_size > 0 ? chunk_size : 512;
    c->process_output = process_output;
}

static void entry_free(im_entry *e)
{
    free(e->name);
    free(e->sum2);
    free(e->sum);
    free(e->count);
    memset(e, 0, sizeof(*e));
}

void im_free(im_collector *c)
{
    if (!c)
        return;
    for (uint32_t i = 0; i < c->n; i++)
        entry_free(&c->e[i]);
    free(c->e);
    for (uint32_t i = 0; i < c->n_datasets; i++)
        free(c->datasets[i]);
    free(c->datasets);
    free(c->run_dataset);
    memset(c, 0, sizeof(*c));
}

int64_t im_find(const im_collector *c, const char *name)
{
    for (uint32_t i = 0; i < c->n; i++)
        if (strcmp(c->e[i].name, name) == 0)
            return i;
    return -1;
}

/* Appends a zeroed entry with its arrays; returns its index or a negative
 * code. with_sum: allocate the plain-sum array too. */
static int64_t add_entry(im_collector *c, const char *name, int64_t n_per_mat, int64_t n_mat, int with_sum)
{
    if (n_per_mat < 1 || n_mat < 1 || n_per_mat > INT32_MAX / n_mat)
        return SM_ERANGE;
    if (c->n == c->cap) {
        uint32_t cap = c->cap ? c->cap * 2 : 64;
        im_entry *ne = realloc(c->e, cap * sizeof(*ne));
        if (!ne)
            return SM_ENOMEM;
        c->e = ne;
        c->cap = cap;
    }
    im_entry *e = &c->e[c->n];
    memset(e, 0, sizeof(*e));
    size_t nv = (size_t)(n_per_mat * n_mat);
    e->name = strdup(name);
    e->sum2 = calloc(nv, sizeof(float));
    e->sum = with_sum ? calloc(nv, sizeof(float)) : NULL;
    e->count = calloc((size_t)n_mat, sizeof(int64_t));
    if (!e->name || !e->sum2 || (with_sum && !e->sum) || !e->count) {
        entry_free(e);
        return SM_ENOMEM;
    }
    e->n_per_mat = n_per_mat;
    e->n_mat = n_mat;
    return c->n++;
}

/* ------------------------------------------------------------ the hook */

/* Which weights llama-imatrix asks for (its collect_imatrix with ask=true). */
static int wanted(const im_collector *c, const char *name)
{
    if (strncmp(name, "blk.", 4) == 0)
        return 1;
    return c->process_output && strcmp(name, "output.weight") == 0;
}

void im_hook(void *user, const char *name, const float *x, int32_t n_tokens, int64_t n_in)
{
    im_collector *c = user;
    if (c->hook_rc || n_tokens < IM_MIN_ROWS || !wanted(c, name))
        return;
    int64_t i = im_find(c, name);
    if (i < 0) {
        i = add_entry(c, name, n_in, 1, 1);
        if (i < 0) {
            c->hook_rc = sm_err_set(&c->hook_err, (int)i, "%s: cannot hold statistics for %lld columns (%s)", name,
                                    (long long)n_in, sm_code_name((int)i));
            return;
        }
    }
    im_entry *e = &c->e[i];
    if (e->n_mat != 1 || e->n_per_mat != n_in) {
        c->hook_rc = sm_err_set(&c->hook_err, SM_EMISMATCH,
                                "%s: the model multiplies %lld columns, but the statistics hold %lld x %lld", name,
                                (long long)n_in, (long long)e->n_mat, (long long)e->n_per_mat);
        return;
    }
    if (e->ncall == INT32_MAX) {
        c->hook_rc = sm_err_set(&c->hook_err, SM_ERANGE, "%s: more than %d products", name, INT32_MAX);
        return;
    }
    e->ncall++;
    e->fresh = 1;
    /* Row by row, each square rounded to float before the add: the same
     * float operations as llama.cpp's loop, so equal inputs give equal sums. */
    for (int32_t r = 0; r < n_tokens; r++) {
        const float *xr = x + (int64_t)r * n_in;
        for (int64_t j = 0; j < n_in; j++) {
            float sq = xr[j] * xr[j];
            e->sum2[j] += sq;
            if (e->sum)
                e->sum[j] += xr[j];
        }
    }
    e->count[0] += n_tokens;
    for (int64_t j = 0; j < n_in; j++)
        if (!isfinite(e->sum2[j])) {
            c->hook_rc = sm_err_set(&c->hook_err, SM_ERANGE, "%s: column %lld: sum of squares became %f", name,
                                    (long long)j, (double)e->sum2[j]);
            return;
        }
    if (e->ncall > c->last_call)
        c->last_call = e->ncall;
}

int im_hook_status(const im_collector *c, sm_err *err)
{
    if (c->hook_rc && err)
        *err = c->hook_err;
    return c->hook_rc;
}

/* ------------------------------------------------------------ merging */

static int push_dataset(im_collector *c, const char *s)
{
    char **nd = realloc(c->datasets, (c->n_datasets + 1) * sizeof(char *));
    if (!nd)
        return SM_ENOMEM;
    c->datasets = nd;
    if (!(nd[c->n_datasets] = strdup(s)))
        return SM_ENOMEM;
    c->n_datasets++;
    return SM_OK;
}

int im_set_dataset(im_collector *c, const char *path, sm_err *err)
{
    char *d = strdup(path);
    if (!d)
        return sm_err_set(err, SM_ENOMEM, "out of memory");
    free(c->run_dataset);
    c->run_dataset = d;
    return SM_OK;
}

int im_merge(im_collector *c, const sm_imatrix *im, const char *path, sm_err *err)
{
    const int legacy = im->format == SM_IMATRIX_LEGACY;
    /* A GGUF file says its own chunk size; legacy files do not, so they are
     * scaled by ours (llama.cpp uses its -c the same way). */
    const int64_t cs = !legacy && im->chunk_size > 0 ? (int64_t)im->chunk_size : c->chunk_size;
    for (uint32_t k = 0; k < im->n_entries; k++) {
        const sm_imatrix_entry *f = &im->entries[k];
        if (f->n_per_mat < 1 || f->n_mat < 1 || !f->sums || (!legacy && !f->counts))
            return sm_err_set(err, SM_EFORMAT, "%s: entry '%s' has no values", path, f->name);
        if (legacy && f->ncall < 1)
            return sm_err_set(err, SM_EFORMAT, "%s: entry '%s' has ncall %d, expected >= 1", path, f->name,
                              f->ncall);
        int64_t i = im_find(c, f->name);
        if (i < 0) {
            i = add_entry(c, f->name, f->n_per_mat, f->n_mat, !legacy && f->in_sum);
            if (i < 0)
                return sm_err_set(err, (int)i, "%s: entry '%s': cannot hold %lld x %lld values (%s)", path, f->name,
                                  (long long)f->n_mat, (long long)f->n_per_mat, sm_code_name((int)i));
        } else if (c->e[i].n_per_mat != f->n_per_mat || c->e[i].n_mat != f->n_mat) {
            return sm_err_set(err, SM_EMISMATCH, "%s: entry '%s' has %lld x %lld values, but earlier input has %lld x %lld",
                              path, f->name, (long long)f->n_mat, (long long)f->n_per_mat, (long long)c->e[i].n_mat,
                              (long long)c->e[i].n_per_mat);
        }
        im_entry *e = &c->e[i];
        const int64_t nv = e->n_per_mat * e->n_mat;
        if (legacy) {
            /* the stored value is mean(x^2) * ncall; as a sum over
             * ncall * chunk_size rows it is value * chunk_size */
            for (int64_t j = 0; j < nv; j++)
                e->sum2[j] += f->sums[j] * (float)cs;
            for (int64_t m = 0; m < e->n_mat; m++)
                e->count[m] += (int64_t)f->ncall * cs;
            free(e->sum); /* a legacy file has no plain sums */
            e->sum = NULL;
            e->ncall = (int32_t)((int64_t)e->ncall + f->ncall > INT32_MAX ? INT32_MAX : e->ncall + f->ncall);
        } else {
            int64_t maxc = 0;
            for (int64_t m = 0; m < e->n_mat; m++) {
                float fc = f->counts[m];
                if (!(fc >= 0.0f) || fc > 9.0e18f)
                    return sm_err_set(err, SM_EFORMAT, "%s: '%s.counts'[%lld] is %g, expected a count >= 0", path,
                                      f->name, (long long)m, (double)fc);
                int64_t cnt = llroundf(fc);
                e->count[m] += cnt;
                maxc = cnt > maxc ? cnt : maxc;
            }
            for (int64_t j = 0; j < nv; j++)
                e->sum2[j] += f->sums[j];
            if (e->sum && f->in_sum) {
                for (int64_t j = 0; j < nv; j++)
                    e->sum[j] += f->in_sum[j];
            } else {
                free(e->sum);
                e->sum = NULL;
            }
            /* newer llama.cpp's legacy writer: ncall = ceil(count / chunk) */
            int64_t calls = (maxc + cs - 1) / cs;
            int64_t tot = (int64_t)e->ncall + calls;
            e->ncall = (int32_t)(tot > INT32_MAX ? INT32_MAX : tot);
        }
    }
    for (uint32_t k = 0; k < im->n_datasets; k++)
        if (push_dataset(c, im->datasets[k]) < 0)
            return sm_err_set(err, SM_ENOMEM, "%s: out of memory", path);
    int64_t chunks = im->chunk_count;
    if (legacy && !im->has_trailer) /* the oldest files: one call per chunk */
        for (uint32_t k = 0; k < im->n_entries; k++)
            chunks = im->entries[k].ncall > chunks ? im->entries[k].ncall : chunks;
    if (chunks > 0)
        c->loaded_chunks += chunks;
    return SM_OK;
}

int im_check_model(const im_collector *c, const sm_model *m, const char *model_path, sm_err *err)
{
    for (uint32_t i = 0; i < c->n; i++) {
        const im_entry *e = &c->e[i];
        const gguf_tensor *t = NULL;
        for (uint64_t k = 0; k < m->gguf.n_tensors; k++)
            if (sm_str_eq(m->gguf.tensors[k].name, e->name)) {
                t = &m->gguf.tensors[k];
                break;
            }
        if (!t)
            return sm_err_set(err, SM_EMISSING, "%s: the imatrix has an entry '%s' but the model has no such tensor",
                              model_path, e->name);
        int64_t n_mat = t->ne[2] * t->ne[3];
        if (t->ne[0] != e->n_per_mat || (e->n_mat != 1 && n_mat != e->n_mat))
            return sm_err_set(err, SM_EMISMATCH,
                              "%s: tensor '%s' has %lld columns x %lld matrices, the imatrix entry %lld x %lld",
                              model_path, e->name, (long long)t->ne[0], (long long)n_mat, (long long)e->n_per_mat,
                              (long long)e->n_mat);
    }
    return SM_OK;
}

/* ------------------------------------------------------------ saving */

static int any_fresh(const im_collector *c)
{
    for (uint32_t i = 0; i < c->n; i++)
        if (c->e[i].fresh)
            return 1;
    return 0;
}

static int cmp_name(const void *a, const void *b)
{
    const im_entry *const *x = a, *const *y = b;
    return strcmp((*x)->name, (*y)->name);
}

/* The entries in output order: see collect.h. */
static int output_order(const im_collector *c, int format, const im_entry **out)
{
    for (uint32_t i = 0; i < c->n; i++)
        out[i] = &c->e[i];
    if (!any_fresh(c))
        return SM_OK;
    if (format == SM_IMATRIX_GGUF) {
        qsort(out, c->n, sizeof(*out), cmp_name);
        return SM_OK;
    }
    const char **names = malloc(c->n * sizeof(char *));
    uint32_t *ord = malloc(c->n * sizeof(uint32_t));
    int rc = SM_ENOMEM;
    if (names && ord) {
        for (uint32_t i = 0; i < c->n; i++)
            names[i] = c->e[i].name;
        rc = im_order_stdmap(names, c->n, ord);
        if (rc == SM_ERANGE) { /* beyond the known bucket counts: first-seen order */
            for (uint32_t i = 0; i < c->n; i++)
                ord[i] = i;
            rc = SM_OK;
        }
        if (rc == SM_OK)
            for (uint32_t i = 0; i < c->n; i++)
                out[i] = &c->e[ord[i]];
    }
    free(names);
    free(ord);
    return rc;
}

/* The .dat value of one column of e with count cnt. */
static float legacy_value(const im_entry *e, float sum2, int64_t cnt)
{
    if (cnt <= 0) /* a matrix (expert) that saw no rows: newer llama.cpp stores 1 */
        return (float)e->ncall;
    if (e->fresh) /* llama.cpp: (stat.values[i] / (float)stat.counts[i]) * (float)stat.ncall */
        return (sum2 / (float)cnt) * (float)e->ncall;
    /* exact inverse of the loading scale: sum2 * ncall fits a double exactly */
    return (float)((double)sum2 * (double)e->ncall / (double)cnt);
}

int im_build(const im_collector *c, int format, sm_imatrix *out, sm_err *err)
{
    memset(out, 0, sizeof(*out));
    if (c->n == 0)
        return sm_err_set(err, SM_EINVAL, "no importance data collected (no matrix product with >= %d rows)",
                          IM_MIN_ROWS);
    const im_entry **ord = malloc(c->n * sizeof(*ord));
    int rc = SM_ENOMEM;
    if (!ord || (rc = output_order(c, format, ord)) < 0)
        goto fail;
    rc = SM_ENOMEM;
    out->format = format;
    out->entries = calloc(c->n, sizeof(*out->entries));
    if (!out->entries)
        goto fail;
    for (uint32_t i = 0; i < c->n; i++) {
        const im_entry *e = ord[i];
        sm_imatrix_entry *d = &out->entries[i];
        out->n_entries = i + 1;
        int64_t nv = e->n_per_mat * e->n_mat;
        d->n_per_mat = e->n_per_mat;
        d->n_mat = e->n_mat;
        if (!(d->name = strdup(e->name)) || !(d->sums = malloc((size_t)nv * sizeof(float))))
            goto fail;
        if (format == SM_IMATRIX_LEGACY) {
            d->ncall = e->ncall;
            for (int64_t m = 0; m < e->n_mat; m++)
                for (int64_t j = 0; j < e->n_per_mat; j++)
                    d->sums[m * e->n_per_mat + j] = legacy_value(e, e->sum2[m * e->n_per_mat + j], e->count[m]);
        } else {
            memcpy(d->sums, e->sum2, (size_t)nv * sizeof(float));
            if (!(d->counts = malloc((size_t)e->n_mat * sizeof(float))))
                goto fail;
            for (int64_t m = 0; m < e->n_mat; m++)
                d->counts[m] = (float)e->count[m];
            if (e->sum) {
                if (!(d->in_sum = malloc((size_t)nv * sizeof(float))))
                    goto fail;
                memcpy(d->in_sum, e->sum, (size_t)nv * sizeof(float));
            }
        }
    }
    /* datasets: merged files' names, then this run's -f */
    uint32_t nd = c->n_datasets + (c->run_dataset ? 1 : 0);
    out->datasets = calloc(nd ? nd : 1, sizeof(char *));
    if (!out->datasets)
        goto fail;
    for (uint32_t i = 0; i < nd; i++) {
        const char *s = i < c->n_datasets ? c->datasets[i] : c->run_dataset;
        if (!(out->datasets[i] = strdup(s)))
            goto fail;
        out->n_datasets = i + 1;
    }
    out->chunk_size = (uint32_t)c->chunk_size;
    if (format == SM_IMATRIX_LEGACY) {
        /* one dataset in the trailer: this run's, else the last merged one */
        if (out->n_datasets > 1) {
            char *last = out->datasets[out->n_datasets - 1];
            for (uint32_t i = 0; i + 1 < out->n_datasets; i++)
                free(out->datasets[i]);
            out->datasets[0] = last;
            out->n_datasets = 1;
        }
        /* llama.cpp c392e5094 writes m_last_call (max ncall of this run's
         * weights); a pure merge or conversion keeps the files' chunk count */
        int64_t cc = any_fresh(c) ? c->last_call : c->loaded_chunks;
        out->chunk_count = (int32_t)(cc > INT32_MAX ? INT32_MAX : cc);
        out->has_trailer = 1;
    } else {
        int64_t cc = c->loaded_chunks + c->fresh_chunks;
        out->chunk_count = (int32_t)(cc > INT32_MAX ? INT32_MAX : cc);
    }
    free(ord);
    return SM_OK;
fail:
    free(ord);
    sm_imatrix_free(out);
    return sm_err_set(err, rc, "cannot build the imatrix (%s)", sm_code_name(rc));
}

int im_save(const im_collector *c, const char *path, int format, sm_err *err)
{
    sm_imatrix im;
    int rc = im_build(c, format, &im, err);
    if (rc < 0)
        return rc;
    rc = format == SM_IMATRIX_GGUF ? sm_imatrix_write_gguf(&im, path, err) : sm_imatrix_write_legacy(&im, path, err);
    sm_imatrix_free(&im);
    return rc;
}
