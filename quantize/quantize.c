/* quantize.c — the smelt-quantize driver (see quantize.h). */
#include "quantize.h"

#include "fileio.h"
#include "fp16.h"
#include "gguf.h"
#include "imatrix.h"
#include "quants.h"
#include "types.h"

#include <math.h>
#include <stddef.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* llama.cpp's quantize chunk: at least 32*512 elements per work item. */
#define MIN_CHUNK_ELEMS (32 * 512)
#define IMATRIX_STR_MAX 127 /* llama_model_kv_override.val_str is char[128] */

/* One planned output tensor. */
typedef struct plan_t {
    const gguf_tensor *src;  /* input tensor (borrowed) */
    char *name;              /* NUL-terminated copy (owned) */
    uint32_t dst_type;
    int convert;
    const float *imat;       /* [ne0 * ne2] importance values or NULL (borrowed) */
    char note[256];
    uint64_t dst_bytes;
} plan_t;

/* Imatrix values as llama-quantize holds them (after include/exclude). */
typedef struct imat_vals {
    uint32_t n;
    char **names;    /* [n] borrowed from the sm_imatrix */
    float **vals;    /* [n] owned */
    int64_t *nvals;  /* [n] */
} imat_vals;

static void imat_vals_free(imat_vals *v)
{
    for (uint32_t i = 0; i < v->n; i++)
        free(v->vals[i]);
    free(v->names);
    free(v->vals);
    free(v->nvals);
    memset(v, 0, sizeof(*v));
}

static int name_has_any(const char *name, char *const *subs, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        if (strstr(name, subs[i]))
            return 1;
    return 0;
}

/* Loads the imatrix file and applies --exclude-weights then
 * --include-weights (substring matches), as prepare_imatrix does. */
static int imat_load(const sm_qz_opts *o, sm_imatrix *im, imat_vals *v, sm_err *err)
{
    int rc = sm_imatrix_read(im, o->imatrix_path, err);
    if (rc < 0)
        return rc;
    v->names = calloc(im->n_entries, sizeof(char *));
    v->vals = calloc(im->n_entries, sizeof(float *));
    v->nvals = calloc(im->n_entries, sizeof(int64_t));
    if (!v->names || !v->vals || !v->nvals)
        return sm_err_set(err, SM_ENOMEM, "%s: out of memory", o->imatrix_path);
    for (uint32_t i = 0; i < im->n_entries; i++) {
        const sm_imatrix_entry *e = &im->entries[i];
        if (o->n_exclude && name_has_any(e->name, o->exclude, o->n_exclude))
            continue;
        if (o->n_include && !name_has_any(e->name, o->include, o->n_include))
            continue;
        int64_t n = e->n_per_mat * e->n_mat;
        float *f = malloc((size_t)n * sizeof(float));
        if (!f)
            return sm_err_set(err, SM_ENOMEM, "%s: out of memory", o->imatrix_path);
        sm_imatrix_entry_values(e, f);
        for (int64_t j = 0; j < n; j++)
            if (!isfinite(f[j])) {
                rc = sm_err_set(err, SM_EFORMAT, "%s: entry '%s' value %lld is %f (imatrix contains non-finite values)",
                                o->imatrix_path, e->name, (long long)j, (double)f[j]);
                free(f);
                return rc;
            }
        v->names[v->n] = e->name;
        v->vals[v->n] = f;
        v->nvals[v->n] = n;
        v->n++;
    }
    return 0;
}

static int64_t imat_find(const imat_vals *v, const char *name)
{
    for (uint32_t i = 0; i < v->n; i++)
        if (strcmp(v->names[i], name) == 0)
            return i;
    return -1;
}

char *sm_qz_default_out(const char *in_path, const char *canon)
{
    const char *slash = strrchr(in_path, '/');
    size_t dir = slash ? (size_t)(slash - in_path) + 1 : 0;
    size_t n = dir + strlen("ggml-model-") + strlen(canon) + strlen(".gguf") + 1;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%.*sggml-model-%s.gguf", (int)dir, in_path, canon);
    return s;
}

/* ------------------------------------------------------------ conversion */

static int is_quantized_type(uint32_t t)
{
    const sm_type_info *ti = sm_type_get(t);
    return ti && ti->blck > 1;
}

/* Widens a tensor to f32, refusing NaN/Inf as llama.cpp's loader
 * (check_tensors) does for F32/F16/BF16 data. */
static int widen(const gguf_tensor *t, const char *name, float *dst, int64_t n, sm_err *err)
{
    const uint8_t *p = t->data;
    int64_t bad = -1;
    switch (t->type) {
    case SM_TYPE_F32:
        memcpy(dst, p, (size_t)n * 4);
        break;
    case SM_TYPE_F16:
        for (int64_t i = 0; i < n; i++)
            dst[i] = sm_f16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
        break;
    case SM_TYPE_BF16:
        for (int64_t i = 0; i < n; i++)
            dst[i] = sm_bf16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
        break;
    default:
        if (!sm_dequantize_supported(t->type) || sm_dequantize_row(t->type, p, dst, n) < 0)
            return sm_err_set(err, SM_ETYPE, "tensor %s: cannot dequantize/convert type %s", name,
                              sm_type_name(t->type));
        return 0;
    }
    for (int64_t i = 0; i < n && bad < 0; i++)
        if (!isfinite(dst[i]))
            bad = i;
    if (bad >= 0)
        return sm_err_set(err, SM_EFORMAT, "tensor %s has invalid data: element %lld is %f (offset %llu)", name,
                          (long long)bad, (double)dst[bad], (unsigned long long)t->offset);
    return 0;
}

/* Work shared by the row-chunk threads of one matrix. */
typedef struct qjob {
    pthread_mutex_t mu;
    int64_t next_row;        /* next unclaimed row */
    int64_t nrows, n_per_row, rows_per_chunk;
    uint32_t type;
    const float *src;        /* [nrows, n_per_row] */
    uint8_t *dst;            /* [nrows, row_size] */
    uint64_t row_size;
    const float *imat;       /* [n_per_row] or NULL */
    int failed;
} qjob;

static void *qjob_run(void *arg)
{
    qjob *j = arg;
    for (;;) {
        pthread_mutex_lock(&j->mu);
        int64_t r0 = j->next_row;
        j->next_row += j->rows_per_chunk;
        pthread_mutex_unlock(&j->mu);
        if (r0 >= j->nrows)
            break;
        int64_t nr = j->nrows - r0 < j->rows_per_chunk ? j->nrows - r0 : j->rows_per_chunk;
        size_t got = sm_quantize_rows(j->type, j->src + r0 * j->n_per_row, j->dst + (uint64_t)r0 * j->row_size, nr,
                                      j->n_per_row, j->imat);
        if (got != (uint64_t)nr * j->row_size) {
            pthread_mutex_lock(&j->mu);
            j->failed = 1;
            pthread_mutex_unlock(&j->mu);
            break;
        }
    }
    return NULL;
}

/* Quantizes one [nrows, n_per_row] matrix with up to nthread threads. */
static int quantize_matrix(uint32_t type, const float *src, uint8_t *dst, int64_t nrows, int64_t n_per_row,
                           uint64_t row_size, const float *imat, int nthread, const char *name, sm_err *err)
{
    qjob j;
    memset(&j, 0, sizeof(j));
    pthread_mutex_init(&j.mu, NULL);
    j.nrows = nrows;
    j.n_per_row = n_per_row;
    j.rows_per_chunk = n_per_row >= MIN_CHUNK_ELEMS ? 1 : (MIN_CHUNK_ELEMS + n_per_row - 1) / n_per_row;
    j.type = type;
    j.src = src;
    j.dst = dst;
    j.row_size = row_size;
    j.imat = imat;
    int64_t nchunk = (nrows + j.rows_per_chunk - 1) / j.rows_per_chunk;
    int nt = nthread < 1 ? 1 : nthread;
    if (nt > nchunk)
        nt = nchunk < 1 ? 1 : (int)nchunk;
    pthread_t th[64];
    if (nt > 64)
        nt = 64;
    int started = 0;
    for (int i = 1; i < nt; i++) {
        if (pthread_create(&th[started], NULL, qjob_run, &j) != 0)
            break; /* fewer threads: the caller's share grows */
        started++;
    }
    qjob_run(&j);
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    pthread_mutex_destroy(&j.mu);
    if (j.failed)
        return sm_err_set(err, SM_EINVAL, "tensor %s: quantizing %lld x %lld to %s failed", name, (long long)n_per_row,
                          (long long)nrows, sm_type_name(type));
    return 0;
}

/* ----------------------------------------------------------------- header */

int sm_qz_parse_kv_override(const char *arg, sm_qz_kv *out, sm_err *err)
{
    memset(out, 0, sizeof(*out));
    const char *sep = strchr(arg, '=');
    if (!sep || sep - arg >= (ptrdiff_t)sizeof out->key)
        return sm_err_set(err, SM_EINVAL, "malformed KV override '%s' (expected KEY=TYPE:VALUE, key < 128 bytes)", arg);
    memcpy(out->key, arg, (size_t)(sep - arg));
    sep++;
    if (!strncmp(sep, "int:", 4)) {
        out->tag = SM_QZ_KV_INT;
        out->i = strtoll(sep + 4, NULL, 10);
    } else if (!strncmp(sep, "float:", 6)) {
        out->tag = SM_QZ_KV_FLOAT;
        out->f = strtod(sep + 6, NULL);
    } else if (!strncmp(sep, "bool:", 5)) {
        out->tag = SM_QZ_KV_BOOL;
        if (!strcmp(sep + 5, "true"))
            out->b = 1;
        else if (strcmp(sep + 5, "false") != 0)
            return sm_err_set(err, SM_EINVAL, "invalid boolean value for KV override '%s'", arg);
    } else if (!strncmp(sep, "str:", 4)) {
        out->tag = SM_QZ_KV_STR;
        if (strlen(sep + 4) > 127)
            return sm_err_set(err, SM_EINVAL, "malformed KV override '%s', value cannot exceed 127 chars", arg);
        snprintf(out->s, sizeof out->s, "%s", sep + 4);
    } else {
        return sm_err_set(err, SM_EINVAL, "invalid type for KV override '%s' (int, float, bool or str)", arg);
    }
    return 0;
}

static int set_override(gguf_writer *w, const sm_qz_kv *o)
{
    int rc = gguf_writer_remove(w, o->key);
    if (rc < 0)
        return rc;
    switch (o->tag) {
    case SM_QZ_KV_INT: return gguf_writer_set_i32(w, o->key, (int32_t)(uint32_t)(uint64_t)o->i);
    case SM_QZ_KV_FLOAT: return gguf_writer_set_f32(w, o->key, (float)o->f);
    case SM_QZ_KV_BOOL: return gguf_writer_set_bool(w, o->key, o->b != 0);
    default: return gguf_writer_set_str(w, o->key, o->s);
    }
}

static int set_kvs(gguf_writer *w, const gguf_file *g, const sm_qz_opts *o, uint32_t ftype, const char *dataset,
                   uint32_t n_entries, int32_t n_chunks, int use_imat, sm_err *err)
{
    int rc = 0;
    const char *imat_file = o->imatrix_path ? o->imatrix_path : "";
    for (uint64_t i = 0; i < g->n_kv && rc >= 0; i++)
        rc = gguf_writer_copy_kv(w, &g->kv[i]);
    /* gguf_set_val_* in llama.cpp removes a key and appends it again */
    if (rc >= 0)
        rc = gguf_writer_remove(w, "general.quantization_version");
    if (rc >= 0)
        rc = gguf_writer_set_u32(w, "general.quantization_version", 2);
    if (rc >= 0)
        rc = gguf_writer_remove(w, "general.file_type");
    if (rc >= 0)
        rc = gguf_writer_set_u32(w, "general.file_type", ftype);
    static const char *const split_keys[] = {"split.no", "split.count", "split.tensors.count"};
    for (size_t i = 0; i < 3 && rc >= 0; i++)
        rc = gguf_writer_remove(w, split_keys[i]);
    for (uint32_t i = 0; i < o->n_kv_overrides && rc >= 0; i++)
        rc = set_override(w, &o->kv_overrides[i]);
    if (use_imat && rc >= 0) {
        size_t fl = strlen(imat_file);
        if ((rc = gguf_writer_remove(w, "quantize.imatrix.file")) >= 0)
            rc = gguf_writer_set_strn(w, "quantize.imatrix.file", imat_file, fl > IMATRIX_STR_MAX ? IMATRIX_STR_MAX : fl);
        if (rc >= 0 && dataset && dataset[0]) {
            size_t dl = strlen(dataset);
            if ((rc = gguf_writer_remove(w, "quantize.imatrix.dataset")) >= 0)
                rc = gguf_writer_set_strn(w, "quantize.imatrix.dataset", dataset,
                                          dl > IMATRIX_STR_MAX ? IMATRIX_STR_MAX : dl);
        }
        if (rc >= 0 && (rc = gguf_writer_remove(w, "quantize.imatrix.entries_count")) >= 0)
            rc = gguf_writer_set_i32(w, "quantize.imatrix.entries_count", (int32_t)n_entries);
        if (rc >= 0 && n_chunks > 0 && (rc = gguf_writer_remove(w, "quantize.imatrix.chunks_count")) >= 0)
            rc = gguf_writer_set_i32(w, "quantize.imatrix.chunks_count", n_chunks);
    }
    if (rc < 0)
        return sm_err_set(err, rc, "%s: cannot build the output metadata (%s)", g->path, sm_code_name(rc));
    return 0;
}

/* ------------------------------------------------------------------- main */

static int cmp_plan(const void *a, const void *b)
{
    const plan_t *x = a, *y = b;
    return sm_mix_cmp_names(&x->name, &y->name);
}

static int online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

int sm_quantize_file(const sm_qz_opts *o, sm_qz_summary *s, sm_err *err)
{
    gguf_file g;
    sm_imatrix im;
    imat_vals iv;
    sm_mix mx;
    sm_mix_model model;
    sm_qz_summary sum;
    plan_t *plan = NULL;
    const char **names = NULL;
    gguf_writer *w = NULL;
    float *f32 = NULL;
    uint8_t *qbuf = NULL;
    int began = 0, rc;
    int use_imat = 0;

    memset(&im, 0, sizeof(im));
    memset(&iv, 0, sizeof(iv));
    memset(&sum, 0, sizeof(sum));
    memset(&g, 0, sizeof(g));
    int opened = 0;

    if (!o->dry_run) {
        struct stat st;
        if (sm_same_file(o->in_path, o->out_path) && !o->force) {
            rc = sm_err_set(err, SM_EINVAL, "%s: output is the input file; pass --force to replace it", o->out_path);
            goto done;
        }
        if (stat(o->out_path, &st) == 0 && !o->force) {
            rc = sm_err_set(err, SM_EINVAL, "%s: output exists; pass --force to overwrite it", o->out_path);
            goto done;
        }
    }
    if ((rc = gguf_open(&g, o->in_path, err)) < 0)
        goto done;
    opened = 1;
    if ((rc = sm_mix_model_from_gguf(&model, &g, err)) < 0) {
        sm_err_prefix(err, "%s", o->in_path);
        goto done;
    }
    if (o->imatrix_path) {
        if ((rc = imat_load(o, &im, &iv, err)) < 0)
            goto done;
        use_imat = iv.n > 0;
    }

    /* visit order = llama.cpp's weights_map order */
    plan = calloc(g.n_tensors ? g.n_tensors : 1, sizeof(*plan));
    names = calloc(g.n_tensors ? g.n_tensors : 1, sizeof(*names));
    if (!plan || !names) {
        rc = sm_err_set(err, SM_ENOMEM, "out of memory for %llu tensors", (unsigned long long)g.n_tensors);
        goto done;
    }
    for (uint64_t i = 0; i < g.n_tensors; i++) {
        plan[i].src = &g.tensors[i];
        if (!(plan[i].name = sm_str_dup(g.tensors[i].name))) {
            rc = sm_err_set(err, SM_ENOMEM, "out of memory");
            goto done;
        }
        if (strlen(plan[i].name) != g.tensors[i].name.len) {
            rc = sm_err_set(err, SM_EFORMAT, "%s: tensor %llu: name contains a NUL byte", o->in_path,
                            (unsigned long long)i);
            goto done;
        }
    }
    qsort(plan, g.n_tensors, sizeof(*plan), cmp_plan);
    for (uint64_t i = 0; i < g.n_tensors; i++)
        names[i] = plan[i].name;

    /* COPY keeps the input's file type (general.file_type, else guessed) */
    uint32_t ftype = o->ftype;
    if (o->only_copy) {
        uint32_t *tt = calloc(g.n_tensors ? g.n_tensors : 1, sizeof(uint32_t));
        if (!tt) {
            rc = sm_err_set(err, SM_ENOMEM, "out of memory");
            goto done;
        }
        for (uint64_t i = 0; i < g.n_tensors; i++)
            tt[i] = plan[i].src->type;
        ftype = sm_mix_guess_ftype(tt, g.n_tensors);
        free(tt);
        if (gguf_get(&g, "general.file_type") && (rc = gguf_get_u32(&g, "general.file_type", &ftype, err)) < 0) {
            sm_err_prefix(err, "%s", o->in_path);
            goto done;
        }
    }
    sm_mix_params mp = {
        .ftype = ftype, .only_copy = o->only_copy, .pure = o->pure, .leave_output = o->leave_output,
        .output_type = o->output_type,
        .token_embd_type = o->token_embd_type, .has_imatrix = use_imat, .n_overrides = o->n_overrides,
        .overrides = o->overrides,
    };
    if ((rc = sm_mix_init(&mx, &mp, &model, names, g.n_tensors, err)) < 0) {
        sm_err_prefix(err, "%s", o->in_path);
        goto done;
    }

    /* plan every tensor before writing anything: refusals leave no file */
    uint64_t max_elems = 0, max_out = 0;
    for (uint64_t i = 0; i < g.n_tensors; i++) {
        plan_t *p = &plan[i];
        const gguf_tensor *t = p->src;
        if ((rc = sm_mix_choose(&mx, p->name, t->ne, t->type, &p->dst_type, &p->convert, err)) < 0)
            goto done;
        snprintf(p->note, sizeof p->note, "%s", mx.note);
        int64_t nel = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
        int ok = 1;
        uint64_t rs = sm_type_row_size(p->dst_type, t->ne[0], &ok);
        if (!ok) {
            rc = sm_err_set(err, SM_ETYPE, "tensor %s: row of %lld cannot be stored as %s", p->name, (long long)t->ne[0],
                            sm_type_name(p->dst_type));
            goto done;
        }
        p->dst_bytes = p->convert ? rs * (uint64_t)(nel / t->ne[0]) : t->nbytes;
        if (p->convert) {
            if (is_quantized_type(t->type) && !o->allow_requantize) {
                rc = sm_err_set(err, SM_EUNSUPP,
                                "tensor %s is already %s: requantizing is disabled (pass --allow-requantize)", p->name,
                                sm_type_name(t->type));
                goto done;
            }
            if (t->type != SM_TYPE_F32 && t->type != SM_TYPE_F16 && t->type != SM_TYPE_BF16 &&
                !(is_quantized_type(t->type) && sm_dequantize_supported(t->type))) {
                rc = sm_err_set(err, SM_ETYPE, "tensor %s: cannot dequantize/convert type %s", p->name,
                                sm_type_name(t->type));
                goto done;
            }
            if (!sm_quantize_supported(p->dst_type)) {
                rc = sm_err_set(err, SM_EUNSUPP, "tensor %s: smelt cannot produce type %s", p->name,
                                sm_type_name(p->dst_type));
                goto done;
            }
            if (use_imat) {
                int64_t k = imat_find(&iv, p->name);
                if (k < 0) {
                    snprintf(p->note + strlen(p->note), sizeof p->note - strlen(p->note), "%sno imatrix entry",
                             p->note[0] ? "; " : "");
                } else if (iv.nvals[k] == t->ne[0] * t->ne[2]) {
                    p->imat = iv.vals[k];
                } else if (strcmp(p->name, "token_embd.weight") != 0) {
                    rc = sm_err_set(err, SM_EMISMATCH,
                                    "%s: imatrix entry '%s' has %lld values, tensor needs %lld (ne0 %lld x ne2 %lld); "
                                    "the imatrix does not belong to this model",
                                    o->imatrix_path, p->name, (long long)iv.nvals[k], (long long)(t->ne[0] * t->ne[2]),
                                    (long long)t->ne[0], (long long)t->ne[2]);
                    goto done;
                }
            }
            if ((uint64_t)nel > max_elems)
                max_elems = (uint64_t)nel;
            if (p->dst_bytes > max_out)
                max_out = p->dst_bytes;
        }
        sum.n_elements += (uint64_t)nel;
        sum.size_in += t->nbytes;
        sum.size_out += p->dst_bytes;
        sum.n_converted += p->convert != 0;
    }
    if (use_imat && sum.n_converted > 0) {
        /* every entry unknown to the model: almost surely the wrong file */
        uint64_t matched = 0;
        for (uint64_t i = 0; i < g.n_tensors; i++)
            matched += imat_find(&iv, plan[i].name) >= 0;
        if (matched == 0) {
            rc = sm_err_set(err, SM_EMISMATCH,
                            "%s: none of its %u entries (e.g. '%s') names a tensor of %s; the imatrix does not "
                            "belong to this model",
                            o->imatrix_path, iv.n, iv.names[0], o->in_path);
            goto done;
        }
    }
    sum.n_tensors = g.n_tensors;
    sum.n_fallback = mx.n_fallback;
    sum.n_k_quantized = mx.n_k_quantized;
    sum.imatrix_used = use_imat;
    sum.imatrix_entries = iv.n;
    sum.imatrix_chunks = use_imat ? im.chunk_count : 0;

    if (!(w = gguf_writer_init())) {
        rc = sm_err_set(err, SM_ENOMEM, "out of memory");
        goto done;
    }
    const char *dataset = im.n_datasets ? im.datasets[0] : NULL;
    if ((rc = set_kvs(w, &g, o, ftype, dataset, iv.n, im.chunk_count, use_imat, err)) < 0)
        goto done;
    for (uint64_t i = 0; i < g.n_tensors; i++) {
        const gguf_tensor *t = plan[i].src;
        if ((rc = gguf_writer_add_tensor(w, plan[i].name, sm_mix_n_dims(t->ne), t->ne, plan[i].dst_type, err)) < 0)
            goto done;
    }
    sum.file_size = gguf_writer_file_size(w);

    if (o->dry_run) {
        for (uint64_t i = 0; i < g.n_tensors && o->on_tensor; i++) {
            const plan_t *p = &plan[i];
            sm_qz_event ev = {i, g.n_tensors, p->name, {p->src->ne[0], p->src->ne[1], p->src->ne[2], p->src->ne[3]},
                              p->src->type, p->dst_type, p->convert, p->imat != NULL, p->note, p->src->nbytes,
                              p->dst_bytes};
            o->on_tensor(o->ud, &ev);
        }
        rc = 0;
        goto done;
    }

    f32 = malloc(max_elems ? max_elems * sizeof(float) : 1);
    qbuf = malloc(max_out ? max_out : 1);
    if (!f32 || !qbuf) {
        rc = sm_err_set(err, SM_ENOMEM, "out of memory for a %llu-element tensor", (unsigned long long)max_elems);
        goto done;
    }
    if ((rc = gguf_writer_begin(w, o->out_path, err)) < 0)
        goto done;
    began = 1;
    int nthread = o->nthreads > 0 ? o->nthreads : online_cpus();
    for (uint64_t i = 0; i < g.n_tensors; i++) {
        const plan_t *p = &plan[i];
        const gguf_tensor *t = p->src;
        const void *out = t->data;
        if (p->convert) {
            int64_t nel = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
            if ((rc = widen(t, p->name, f32, nel, err)) < 0)
                goto done;
            int ok = 1;
            uint64_t rs = sm_type_row_size(p->dst_type, t->ne[0], &ok);
            int64_t n_mat = t->ne[2] * t->ne[3], mat = t->ne[0] * t->ne[1];
            for (int64_t k = 0; k < n_mat; k++) {
                /* each expert has its own importance row */
                const float *imk = p->imat ? p->imat + (k % t->ne[2]) * t->ne[0] : NULL;
                if ((rc = quantize_matrix(p->dst_type, f32 + k * mat, qbuf + (uint64_t)k * rs * (uint64_t)t->ne[1],
                                          t->ne[1], t->ne[0], rs, imk, nthread, p->name, err)) < 0)
                    goto done;
            }
            out = qbuf;
        }
        if ((rc = gguf_writer_write_tensor(w, out, p->dst_bytes, err)) < 0)
            goto done;
        sm_map_release(&g.map, g.data_offset + t->offset, t->nbytes);
        if (o->on_tensor) {
            sm_qz_event ev = {i, g.n_tensors, p->name, {t->ne[0], t->ne[1], t->ne[2], t->ne[3]}, t->type,
                              p->dst_type, p->convert, p->imat != NULL, p->note, t->nbytes, p->dst_bytes};
            o->on_tensor(o->ud, &ev);
        }
    }
    rc = gguf_writer_finish(w, err);
    began = 0;
    if (rc < 0)
        goto done;
    rc = 0;
done:
    if (began)
        gguf_writer_abort(w);
    if (w)
        gguf_writer_free(w);
    if (rc == 0 && s)
        *s = sum;
    free(f32);
    free(qbuf);
    if (plan)
        for (uint64_t i = 0; i < g.n_tensors; i++)
            free(plan[i].name);
    free(plan);
    free(names);
    imat_vals_free(&iv);
    sm_imatrix_free(&im);
    if (opened)
        gguf_close(&g);
    return rc;
}
