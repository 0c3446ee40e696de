/* imatrix.c — legacy .dat and GGUF importance-matrix reader and writers.
 * Layouts are described in imatrix.h. */
#include "imatrix.h"

#include "fileio.h"
#include "gguf.h"
#include "types.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ small helpers */

typedef struct rd {
    const uint8_t *p; /* [len] */
    uint64_t len;
    uint64_t off;
    const char *name; /* for messages */
} rd;

static int rd_i32(rd *r, int32_t *v, const char *what, sm_err *err)
{
    if (r->len - r->off < 4)
        return sm_err_set(err, SM_EFORMAT, "%s: truncated at offset %llu reading %s (need 4 bytes, %llu left)",
                          r->name, (unsigned long long)r->off, what, (unsigned long long)(r->len - r->off));
    uint32_t u = (uint32_t)r->p[r->off] | (uint32_t)r->p[r->off + 1] << 8 | (uint32_t)r->p[r->off + 2] << 16 |
                 (uint32_t)r->p[r->off + 3] << 24;
    memcpy(v, &u, 4);
    r->off += 4;
    return 0;
}

static void entry_free(sm_imatrix_entry *e)
{
    free(e->name);
    free(e->sums);
    free(e->counts);
    free(e->in_sum);
    memset(e, 0, sizeof(*e));
}

void sm_imatrix_free(sm_imatrix *im)
{
    if (!im)
        return;
    for (uint32_t i = 0; i < im->n_entries; i++)
        entry_free(&im->entries[i]);
    free(im->entries);
    for (uint32_t i = 0; i < im->n_datasets; i++)
        free(im->datasets[i]);
    free(im->datasets);
    memset(im, 0, sizeof(*im));
}

int64_t sm_imatrix_find(const sm_imatrix *im, const char *name)
{
    for (uint32_t i = 0; i < im->n_entries; i++)
        if (strcmp(im->entries[i].name, name) == 0)
            return i;
    return -1;
}

/* Copies n floats from little-endian bytes (the map may be unaligned). */
static float *copy_floats(const uint8_t *p, uint64_t n)
{
    float *f = malloc(n ? n * sizeof(float) : 1);
    if (f && n)
        memcpy(f, p, n * sizeof(float));
    return f;
}

static int name_is_dup(const sm_imatrix *im, uint32_t upto, const char *name)
{
    /* quadratic, but entry counts are a few thousand at most; this runs once */
    for (uint32_t i = 0; i < upto; i++)
        if (strcmp(im->entries[i].name, name) == 0)
            return 1;
    return 0;
}

/* ------------------------------------------------------------------ legacy */

static int parse_legacy(sm_imatrix *im, const uint8_t *buf, uint64_t len, const char *name, sm_err *err)
{
    rd r = {buf, len, 0, name};
    int32_t n_entries = 0;
    int rc = rd_i32(&r, &n_entries, "n_entries", err);
    if (rc < 0)
        return rc;
    if (n_entries < 1)
        return sm_err_set(err, SM_EFORMAT, "%s: offset 0: n_entries is %d, expected >= 1 (no data)", name, n_entries);
    if ((uint32_t)n_entries > SM_IMATRIX_MAX_ENTRIES)
        return sm_err_set(err, SM_ERANGE, "%s: offset 0: n_entries %d exceeds the cap %u", name, n_entries,
                          SM_IMATRIX_MAX_ENTRIES);
    /* every entry needs at least 16 bytes: a cheap bound before allocating */
    if ((uint64_t)n_entries > (len - 4) / 16)
        return sm_err_set(err, SM_EFORMAT, "%s: offset 0: n_entries %d cannot fit in %llu bytes", name, n_entries,
                          (unsigned long long)len);
    im->format = SM_IMATRIX_LEGACY;
    im->entries = calloc((size_t)n_entries, sizeof(*im->entries));
    if (!im->entries)
        return sm_err_set(err, SM_ENOMEM, "%s: out of memory for %d entries", name, n_entries);
    for (int32_t i = 0; i < n_entries; i++) {
        uint64_t at = r.off;
        int32_t nlen = 0, ncall = 0, nval = 0;
        if ((rc = rd_i32(&r, &nlen, "name length", err)) < 0)
            return rc;
        if (nlen < 1 || (uint32_t)nlen > SM_IMATRIX_MAX_NAME)
            return sm_err_set(err, SM_EFORMAT, "%s: entry %d at offset %llu: name length %d, expected 1..%u", name, i,
                              (unsigned long long)at, nlen, SM_IMATRIX_MAX_NAME);
        if (r.len - r.off < (uint64_t)nlen)
            return sm_err_set(err, SM_EFORMAT, "%s: entry %d at offset %llu: name of %d bytes truncated (%llu left)",
                              name, i, (unsigned long long)r.off, nlen, (unsigned long long)(r.len - r.off));
        if (memchr(r.p + r.off, 0, (size_t)nlen))
            return sm_err_set(err, SM_EFORMAT, "%s: entry %d at offset %llu: name contains a NUL byte", name, i,
                              (unsigned long long)r.off);
        sm_imatrix_entry *e = &im->entries[i];
        e->name = malloc((size_t)nlen + 1);
        if (!e->name)
            return sm_err_set(err, SM_ENOMEM, "%s: out of memory", name);
        memcpy(e->name, r.p + r.off, (size_t)nlen);
        e->name[nlen] = 0;
        r.off += (uint64_t)nlen;
        im->n_entries = (uint32_t)i + 1; /* so free() sees the name */
        if (name_is_dup(im, (uint32_t)i, e->name))
            return sm_err_set(err, SM_EDUP, "%s: entry %d at offset %llu: duplicate name '%s'", name, i,
                              (unsigned long long)at, e->name);
        if ((rc = rd_i32(&r, &ncall, "ncall", err)) < 0 || (rc = rd_i32(&r, &nval, "nval", err)) < 0)
            return rc;
        if (nval < 1)
            return sm_err_set(err, SM_EFORMAT, "%s: entry '%s' at offset %llu: nval is %d, expected >= 1", name,
                              e->name, (unsigned long long)(r.off - 4), nval);
        if ((r.len - r.off) / 4 < (uint64_t)nval)
            return sm_err_set(err, SM_EFORMAT,
                              "%s: entry '%s' at offset %llu: %d values (%llu bytes) truncated, %llu bytes left", name,
                              e->name, (unsigned long long)r.off, nval, (unsigned long long)nval * 4,
                              (unsigned long long)(r.len - r.off));
        e->ncall = ncall;
        e->n_per_mat = nval;
        e->n_mat = 1;
        e->sums = copy_floats(r.p + r.off, (uint64_t)nval);
        if (!e->sums)
            return sm_err_set(err, SM_ENOMEM, "%s: out of memory for '%s'", name, e->name);
        r.off += (uint64_t)nval * 4;
    }
    if (r.off == r.len)
        return 0; /* old files end here: no chunk count, no dataset */
    int32_t last = 0, dlen = 0;
    uint64_t at = r.off;
    if ((rc = rd_i32(&r, &last, "trailer chunk count", err)) < 0 || (rc = rd_i32(&r, &dlen, "dataset length", err)) < 0)
        return rc;
    if (dlen < 0 || (uint64_t)dlen != r.len - r.off)
        return sm_err_set(err, SM_EFORMAT, "%s: trailer at offset %llu: dataset length %d, but %llu bytes follow", name,
                          (unsigned long long)at, dlen, (unsigned long long)(r.len - r.off));
    im->has_trailer = 1;
    im->chunk_count = last;
    im->datasets = calloc(1, sizeof(char *));
    if (!im->datasets || !(im->datasets[0] = malloc((size_t)dlen + 1)))
        return sm_err_set(err, SM_ENOMEM, "%s: out of memory", name);
    im->n_datasets = 1;
    memcpy(im->datasets[0], r.p + r.off, (size_t)dlen);
    im->datasets[0][dlen] = 0;
    return 0;
}

/* -------------------------------------------------------------------- GGUF */

static int has_suffix(sm_str s, const char *suf, uint64_t *stem)
{
    uint64_t n = strlen(suf);
    if (s.len <= n || memcmp(s.ptr + s.len - n, suf, n) != 0)
        return 0;
    *stem = s.len - n;
    return 1;
}

static int64_t find_tensor_n(const gguf_file *g, const char *stem, uint64_t stem_len, const char *suf)
{
    uint64_t n = strlen(suf);
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        sm_str t = g->tensors[i].name;
        if (t.len == stem_len + n && memcmp(t.ptr, stem, stem_len) == 0 && memcmp(t.ptr + stem_len, suf, n) == 0)
            return (int64_t)i;
    }
    return -1;
}

static int check_f32_2d(const gguf_file *g, const gguf_tensor *t, const char *name, sm_err *err)
{
    if (t->type != SM_TYPE_F32 || t->ne[2] != 1 || t->ne[3] != 1)
        return sm_err_set(err, SM_EFORMAT, "%s: tensor '%.*s' at offset %llu: expected a 2-D F32 tensor, got %s", name,
                          (int)t->name.len, t->name.ptr, (unsigned long long)t->info_off, sm_type_name(t->type));
    (void)g;
    return 0;
}

static int parse_gguf(sm_imatrix *im, const uint8_t *buf, uint64_t len, const char *name, sm_err *err)
{
    gguf_file g;
    int rc = gguf_parse(&g, buf, len, name, err);
    if (rc < 0)
        return rc;
    im->format = SM_IMATRIX_GGUF;
    sm_str ty;
    if (gguf_get_str(&g, "general.type", &ty, NULL) == 0 && !sm_str_eq(ty, "imatrix")) {
        rc = sm_err_set(err, SM_EFORMAT, "%s: general.type is '%.*s', expected 'imatrix'", name, (int)ty.len, ty.ptr);
        goto done;
    }
    uint32_t cc = 0, cs = 0;
    if ((rc = gguf_get_u32(&g, "imatrix.chunk_count", &cc, err)) < 0 ||
        (rc = gguf_get_u32(&g, "imatrix.chunk_size", &cs, err)) < 0) {
        sm_err_prefix(err, "%s", name);
        goto done;
    }
    if (cc > INT32_MAX) {
        rc = sm_err_set(err, SM_ERANGE, "%s: imatrix.chunk_count %u out of range", name, cc);
        goto done;
    }
    im->chunk_count = (int32_t)cc;
    im->chunk_size = cs;
    const gguf_kv *ds = gguf_get(&g, "imatrix.datasets");
    if (!ds || ds->type != GGUF_VT_ARRAY || ds->arr_type != GGUF_VT_STRING) {
        rc = sm_err_set(err, ds ? SM_ETYPE : SM_EMISSING, "%s: imatrix.datasets %s", name,
                        ds ? "is not an array of strings" : "is missing");
        goto done;
    }
    if (ds->n > SM_IMATRIX_MAX_ENTRIES) {
        rc = sm_err_set(err, SM_ERANGE, "%s: imatrix.datasets has %llu strings (cap %u)", name,
                        (unsigned long long)ds->n, SM_IMATRIX_MAX_ENTRIES);
        goto done;
    }
    im->datasets = calloc(ds->n ? ds->n : 1, sizeof(char *));
    if (!im->datasets) {
        rc = sm_err_set(err, SM_ENOMEM, "%s: out of memory", name);
        goto done;
    }
    for (uint64_t i = 0; i < ds->n; i++) {
        if (!(im->datasets[i] = sm_str_dup(ds->strs[i]))) {
            rc = sm_err_set(err, SM_ENOMEM, "%s: out of memory", name);
            goto done;
        }
        im->n_datasets = (uint32_t)i + 1;
    }
    /* Entries in tensor order of their in_sum2; every .counts must pair up. */
    uint64_t n_sums = 0;
    for (uint64_t i = 0; i < g.n_tensors; i++) {
        uint64_t stem;
        sm_str tn = g.tensors[i].name;
        if (has_suffix(tn, ".in_sum2", &stem)) {
            n_sums++;
        } else if (has_suffix(tn, ".counts", &stem)) {
            if (find_tensor_n(&g, tn.ptr, stem, ".in_sum2") < 0) {
                rc = sm_err_set(err, SM_EMISSING, "%s: tensor '%.*s' has no matching .in_sum2", name, (int)tn.len,
                                tn.ptr);
                goto done;
            }
        }
    }
    if (n_sums == 0) {
        rc = sm_err_set(err, SM_EFORMAT, "%s: no <name>.in_sum2 tensors (no data)", name);
        goto done;
    }
    if (n_sums > SM_IMATRIX_MAX_ENTRIES) {
        rc = sm_err_set(err, SM_ERANGE, "%s: %llu entries exceed the cap %u", name, (unsigned long long)n_sums,
                        SM_IMATRIX_MAX_ENTRIES);
        goto done;
    }
    im->entries = calloc(n_sums, sizeof(*im->entries));
    if (!im->entries) {
        rc = sm_err_set(err, SM_ENOMEM, "%s: out of memory", name);
        goto done;
    }
    for (uint64_t i = 0; i < g.n_tensors; i++) {
        uint64_t stem;
        const gguf_tensor *ts = &g.tensors[i];
        if (!has_suffix(ts->name, ".in_sum2", &stem))
            continue;
        sm_imatrix_entry *e = &im->entries[im->n_entries];
        if (!(e->name = malloc(stem + 1))) {
            rc = sm_err_set(err, SM_ENOMEM, "%s: out of memory", name);
            goto done;
        }
        memcpy(e->name, ts->name.ptr, stem);
        e->name[stem] = 0;
        im->n_entries++;
        int64_t ic = find_tensor_n(&g, ts->name.ptr, stem, ".counts");
        if (ic < 0) {
            rc = sm_err_set(err, SM_EMISSING, "%s: '%s.in_sum2' has no matching '%s.counts'", name, e->name, e->name);
            goto done;
        }
        const gguf_tensor *tc = &g.tensors[ic];
        if ((rc = check_f32_2d(&g, ts, name, err)) < 0 || (rc = check_f32_2d(&g, tc, name, err)) < 0)
            goto done;
        if (tc->ne[0] != 1 || tc->ne[1] != ts->ne[1]) {
            rc = sm_err_set(err, SM_EMISMATCH,
                            "%s: '%s.counts' has shape [%lld, %lld], expected [1, %lld] to match its in_sum2", name,
                            e->name, (long long)tc->ne[0], (long long)tc->ne[1], (long long)ts->ne[1]);
            goto done;
        }
        e->n_per_mat = ts->ne[0];
        e->n_mat = ts->ne[1];
        uint64_t nv = (uint64_t)e->n_per_mat * (uint64_t)e->n_mat;
        e->sums = copy_floats(ts->data, nv);
        e->counts = copy_floats(tc->data, (uint64_t)e->n_mat);
        if (!e->sums || !e->counts) {
            rc = sm_err_set(err, SM_ENOMEM, "%s: out of memory for '%s'", name, e->name);
            goto done;
        }
        int64_t ia = find_tensor_n(&g, ts->name.ptr, stem, ".in_sum");
        if (ia >= 0) {
            const gguf_tensor *ta = &g.tensors[ia];
            if ((rc = check_f32_2d(&g, ta, name, err)) < 0)
                goto done;
            if (ta->ne[0] != ts->ne[0] || ta->ne[1] != ts->ne[1]) {
                rc = sm_err_set(err, SM_EMISMATCH, "%s: '%s.in_sum' shape differs from its in_sum2", name, e->name);
                goto done;
            }
            if (!(e->in_sum = copy_floats(ta->data, nv))) {
                rc = sm_err_set(err, SM_ENOMEM, "%s: out of memory", name);
                goto done;
            }
        }
    }
    rc = 0;
done:
    gguf_close(&g);
    return rc;
}

int sm_imatrix_parse(sm_imatrix *im, const uint8_t *buf, uint64_t len, const char *name, sm_err *err)
{
    memset(im, 0, sizeof(*im));
    int rc;
    if (len >= 4 && memcmp(buf, "GGUF", 4) == 0)
        rc = parse_gguf(im, buf, len, name, err);
    else
        rc = parse_legacy(im, buf, len, name, err);
    if (rc < 0)
        sm_imatrix_free(im);
    return rc;
}

int sm_imatrix_read(sm_imatrix *im, const char *path, sm_err *err)
{
    sm_map m;
    memset(im, 0, sizeof(*im));
    int rc = sm_map_open(&m, path, err);
    if (rc < 0)
        return rc;
    static const uint8_t empty[1] = {0};
    rc = sm_imatrix_parse(im, m.len ? m.ptr : empty, m.len, path, err);
    sm_map_close(&m);
    return rc;
}

int sm_imatrix_entry_values(const sm_imatrix_entry *e, float *out)
{
    if (!e || !e->sums || e->n_per_mat < 1 || e->n_mat < 1)
        return SM_EINVAL;
    int64_t n = e->n_per_mat * e->n_mat;
    if (!e->counts) {
        for (int64_t i = 0; i < n; i++)
            out[i] = e->ncall > 0 ? e->sums[i] / (float)e->ncall : e->sums[i];
        return 0;
    }
    for (int64_t j = 0; j < e->n_mat; j++) {
        float c = e->counts[j];
        for (int64_t i = 0; i < e->n_per_mat; i++)
            out[j * e->n_per_mat + i] = c > 0.0f ? e->sums[j * e->n_per_mat + i] / c : 1.0f;
    }
    return 0;
}

/* ------------------------------------------------------------------ writers */

static int put_i32(sm_out *o, int32_t v, sm_err *err)
{
    uint32_t u;
    memcpy(&u, &v, 4);
    uint8_t b[4] = {(uint8_t)u, (uint8_t)(u >> 8), (uint8_t)(u >> 16), (uint8_t)(u >> 24)};
    return sm_out_write(o, b, 4, err);
}

int sm_imatrix_write_legacy(const sm_imatrix *im, const char *path, sm_err *err)
{
    sm_out o;
    if (im->n_entries < 1 || im->n_entries > INT32_MAX)
        return sm_err_set(err, SM_EINVAL, "%s: an imatrix needs 1..INT32_MAX entries, got %u", path, im->n_entries);
    for (uint32_t i = 0; i < im->n_entries; i++) {
        const sm_imatrix_entry *e = &im->entries[i];
        size_t nl = e->name ? strlen(e->name) : 0;
        if (nl < 1 || nl > SM_IMATRIX_MAX_NAME || e->n_per_mat < 1 || e->n_mat < 1 || !e->sums ||
            e->n_per_mat > INT32_MAX / e->n_mat)
            return sm_err_set(err, SM_EINVAL, "%s: entry %u ('%s') has a bad name or size", path, i,
                              e->name ? e->name : "");
    }
    int rc = sm_out_open(&o, path, err);
    if (rc < 0)
        return rc;
    if ((rc = put_i32(&o, (int32_t)im->n_entries, err)) < 0)
        goto fail;
    for (uint32_t i = 0; i < im->n_entries; i++) {
        const sm_imatrix_entry *e = &im->entries[i];
        int32_t nl = (int32_t)strlen(e->name), nval = (int32_t)(e->n_per_mat * e->n_mat);
        if ((rc = put_i32(&o, nl, err)) < 0 || (rc = sm_out_write(&o, e->name, (size_t)nl, err)) < 0 ||
            (rc = put_i32(&o, e->ncall, err)) < 0 || (rc = put_i32(&o, nval, err)) < 0 ||
            (rc = sm_out_write(&o, e->sums, (size_t)nval * sizeof(float), err)) < 0)
            goto fail;
    }
    if (im->has_trailer) {
        const char *ds = im->n_datasets ? im->datasets[0] : "";
        size_t dl = strlen(ds);
        if (dl > INT32_MAX) {
            rc = sm_err_set(err, SM_ERANGE, "%s: dataset name too long", path);
            goto fail;
        }
        if ((rc = put_i32(&o, im->chunk_count, err)) < 0 || (rc = put_i32(&o, (int32_t)dl, err)) < 0 ||
            (rc = sm_out_write(&o, ds, dl, err)) < 0)
            goto fail;
    }
    return sm_out_commit(&o, err);
fail:
    sm_out_abort(&o);
    return rc;
}

int sm_imatrix_write_gguf(const sm_imatrix *im, const char *path, sm_err *err)
{
    int rc = 0;
    sm_str *ds = NULL;
    char *tname = NULL;
    gguf_writer *w = gguf_writer_init();
    if (!w)
        return sm_err_set(err, SM_ENOMEM, "%s: out of memory", path);
    if (im->n_entries < 1) {
        rc = sm_err_set(err, SM_EINVAL, "%s: an imatrix needs at least one entry", path);
        goto fail;
    }
    ds = calloc(im->n_datasets ? im->n_datasets : 1, sizeof(*ds));
    if (!ds) {
        rc = sm_err_set(err, SM_ENOMEM, "%s: out of memory", path);
        goto fail;
    }
    for (uint32_t i = 0; i < im->n_datasets; i++)
        ds[i] = (sm_str){im->datasets[i], strlen(im->datasets[i])};
    if ((rc = gguf_writer_set_str(w, "general.type", "imatrix")) < 0 ||
        (rc = gguf_writer_set_arr_str(w, "imatrix.datasets", ds, im->n_datasets)) < 0 ||
        (rc = gguf_writer_set_u32(w, "imatrix.chunk_count", im->chunk_count < 0 ? 0u : (uint32_t)im->chunk_count)) < 0 ||
        (rc = gguf_writer_set_u32(w, "imatrix.chunk_size", im->chunk_size)) < 0) {
        rc = sm_err_set(err, rc, "%s: cannot set imatrix metadata (%s)", path, sm_code_name(rc));
        goto fail;
    }
    size_t cap = 0;
    for (uint32_t i = 0; i < im->n_entries; i++) {
        const sm_imatrix_entry *e = &im->entries[i];
        if (!e->name || !e->sums || !e->counts || e->n_per_mat < 1 || e->n_mat < 1) {
            rc = sm_err_set(err, SM_EINVAL, "%s: entry %u ('%s') lacks sums, counts or a size", path, i,
                            e->name ? e->name : "");
            goto fail;
        }
        size_t need = strlen(e->name) + 16;
        if (need > cap) {
            char *t = realloc(tname, need);
            if (!t) {
                rc = sm_err_set(err, SM_ENOMEM, "%s: out of memory", path);
                goto fail;
            }
            tname = t;
            cap = need;
        }
        int64_t ne_s[2] = {e->n_per_mat, e->n_mat}, ne_c[2] = {1, e->n_mat};
        snprintf(tname, cap, "%s.in_sum2", e->name);
        if ((rc = gguf_writer_add_tensor(w, tname, 2, ne_s, SM_TYPE_F32, err)) < 0)
            goto fail;
        snprintf(tname, cap, "%s.counts", e->name);
        if ((rc = gguf_writer_add_tensor(w, tname, 2, ne_c, SM_TYPE_F32, err)) < 0)
            goto fail;
        if (e->in_sum) {
            snprintf(tname, cap, "%s.in_sum", e->name);
            if ((rc = gguf_writer_add_tensor(w, tname, 2, ne_s, SM_TYPE_F32, err)) < 0)
                goto fail;
        }
    }
    if ((rc = gguf_writer_begin(w, path, err)) < 0)
        goto fail;
    for (uint32_t i = 0; i < im->n_entries; i++) {
        const sm_imatrix_entry *e = &im->entries[i];
        uint64_t nv = (uint64_t)e->n_per_mat * (uint64_t)e->n_mat;
        if ((rc = gguf_writer_write_tensor(w, e->sums, nv * 4, err)) < 0 ||
            (rc = gguf_writer_write_tensor(w, e->counts, (uint64_t)e->n_mat * 4, err)) < 0)
            goto fail;
        if (e->in_sum && (rc = gguf_writer_write_tensor(w, e->in_sum, nv * 4, err)) < 0)
            goto fail;
    }
    rc = gguf_writer_finish(w, err); /* removes the temp file itself on failure */
fail:
    if (rc < 0)
        gguf_writer_abort(w);
    gguf_writer_free(w);
    free(ds);
    free(tname);
    return rc;
}
