/* safetensors_write.c — see safetensors_write.h for the layout. */
#include "safetensors_write.h"

#include "fileio.h"
#include "safetensors.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct st_wtensor {
    char *name;
    char dtype[8];
    uint32_t n_dims;
    int64_t shape[ST_WRITER_MAX_DIMS];
    uint64_t begin, end; /* data_offsets */
} st_wtensor;

typedef struct st_wmeta {
    char *key;
    char *value;
} st_wmeta;

struct st_writer {
    st_wtensor *tensors; /* [n_tensors] in declaration order */
    uint64_t n_tensors, cap_tensors;
    st_wmeta *meta;      /* [n_meta] */
    uint64_t n_meta, cap_meta;
    int meta_last;
    uint64_t data_size;  /* sum of tensor sizes */
    uint64_t header_len; /* JSON + padding, set by begin */
    uint64_t written;    /* data bytes written so far */
    int begun;
    sm_out out;
    int out_open;
};

st_writer *st_writer_init(void)
{
    return calloc(1, sizeof(st_writer));
}

void st_writer_abort(st_writer *w)
{
    if (w && w->out_open) {
        sm_out_abort(&w->out);
        w->out_open = 0;
    }
}

void st_writer_free(st_writer *w)
{
    if (!w)
        return;
    st_writer_abort(w);
    for (uint64_t i = 0; i < w->n_tensors; i++)
        free(w->tensors[i].name);
    for (uint64_t i = 0; i < w->n_meta; i++) {
        free(w->meta[i].key);
        free(w->meta[i].value);
    }
    free(w->tensors);
    free(w->meta);
    free(w);
}

void st_writer_set_metadata_last(st_writer *w, int last)
{
    w->meta_last = last ? 1 : 0;
}

int st_writer_set_metadata(st_writer *w, const char *key, const char *value, sm_err *err)
{
    if (w->begun)
        return sm_err_set(err, SM_EINVAL, "safetensors writer: metadata '%s' set after the header was written", key);
    for (uint64_t i = 0; i < w->n_meta; i++)
        if (strcmp(w->meta[i].key, key) == 0)
            return sm_err_set(err, SM_EDUP, "safetensors writer: duplicate metadata key '%s'", key);
    if (w->n_meta == w->cap_meta) {
        uint64_t cap = w->cap_meta ? 2 * w->cap_meta : 8;
        st_wmeta *p = realloc(w->meta, cap * sizeof *p);
        if (!p)
            return sm_err_set(err, SM_ENOMEM, "safetensors writer: out of memory");
        w->meta = p;
        w->cap_meta = cap;
    }
    char *k = strdup(key), *v = strdup(value);
    if (!k || !v) {
        free(k);
        free(v);
        return sm_err_set(err, SM_ENOMEM, "safetensors writer: out of memory");
    }
    w->meta[w->n_meta].key = k;
    w->meta[w->n_meta].value = v;
    w->n_meta++;
    return SM_OK;
}

int st_writer_add_tensor(st_writer *w, const char *name, uint32_t dtype,
                         uint32_t n_dims, const int64_t *shape, sm_err *err)
{
    if (w->begun)
        return sm_err_set(err, SM_EINVAL, "safetensors writer: tensor '%s' added after the header was written", name);
    uint32_t esize = dtype < ST_DTYPE_COUNT ? st_dtype_size(dtype) : 0;
    if (esize == 0)
        return sm_err_set(err, SM_ETYPE, "safetensors writer: tensor '%s': unknown dtype id %u", name, dtype);
    if (n_dims > ST_WRITER_MAX_DIMS)
        return sm_err_set(err, SM_ERANGE, "safetensors writer: tensor '%s': %u dims, at most %d", name, n_dims, ST_WRITER_MAX_DIMS);
    if (strcmp(name, "__metadata__") == 0)
        return sm_err_set(err, SM_EDUP, "safetensors writer: '__metadata__' is reserved, not a tensor name");
    /* Linear duplicate check: checkpoints have at most a few thousand tensors. */
    for (uint64_t i = 0; i < w->n_tensors; i++)
        if (strcmp(w->tensors[i].name, name) == 0)
            return sm_err_set(err, SM_EDUP, "safetensors writer: duplicate tensor '%s'", name);
    uint64_t nbytes = esize;
    for (uint32_t d = 0; d < n_dims; d++) {
        if (shape[d] < 0)
            return sm_err_set(err, SM_ERANGE, "safetensors writer: tensor '%s': negative dim %" PRId64, name, shape[d]);
        if (shape[d] != 0 && nbytes > UINT64_MAX / (uint64_t)shape[d])
            return sm_err_set(err, SM_ERANGE, "safetensors writer: tensor '%s': byte size overflows", name);
        nbytes *= (uint64_t)shape[d];
    }
    if (nbytes > UINT64_MAX - w->data_size)
        return sm_err_set(err, SM_ERANGE, "safetensors writer: tensor '%s': total size overflows", name);
    if (w->n_tensors == w->cap_tensors) {
        uint64_t cap = w->cap_tensors ? 2 * w->cap_tensors : 64;
        st_wtensor *p = realloc(w->tensors, cap * sizeof *p);
        if (!p)
            return sm_err_set(err, SM_ENOMEM, "safetensors writer: out of memory");
        w->tensors = p;
        w->cap_tensors = cap;
    }
    st_wtensor *t = &w->tensors[w->n_tensors];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    if (!t->name)
        return sm_err_set(err, SM_ENOMEM, "safetensors writer: out of memory");
    snprintf(t->dtype, sizeof t->dtype, "%s", st_dtype_name(dtype));
    t->n_dims = n_dims;
    for (uint32_t d = 0; d < n_dims; d++)
        t->shape[d] = shape[d];
    t->begin = w->data_size;
    t->end = w->data_size + nbytes;
    w->data_size = t->end;
    w->n_tensors++;
    return SM_OK;
}

uint64_t st_writer_n_tensors(const st_writer *w) { return w->n_tensors; }

uint64_t st_writer_tensor_nbytes(const st_writer *w, uint64_t i)
{
    return i < w->n_tensors ? w->tensors[i].end - w->tensors[i].begin : 0;
}

/* ------------------------------------------------------- JSON building */

typedef struct st_buf {
    char *p;      /* [len] bytes, NUL-terminated when cap > 0 */
    size_t len, cap;
    int oom;
} st_buf;

static void buf_put(st_buf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void buf_puts(st_buf *b, const char *s) { buf_put(b, s, strlen(s)); }

static void buf_u64(st_buf *b, uint64_t v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof tmp, "%" PRIu64, v);
    buf_put(b, tmp, (size_t)n);
}

/* JSON string with the escapes serde_json emits: quote, backslash and
 * control characters; other bytes (UTF-8) verbatim. */
static void buf_json_str(st_buf *b, const char *s)
{
    buf_put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        switch (*p) {
        case '"': buf_put(b, "\\\"", 2); break;
        case '\\': buf_put(b, "\\\\", 2); break;
        case '\n': buf_put(b, "\\n", 2); break;
        case '\r': buf_put(b, "\\r", 2); break;
        case '\t': buf_put(b, "\\t", 2); break;
        case '\b': buf_put(b, "\\b", 2); break;
        case '\f': buf_put(b, "\\f", 2); break;
        default:
            if (*p < 0x20) {
                snprintf(esc, sizeof esc, "\\u%04x", *p);
                buf_put(b, esc, 6);
            } else {
                buf_put(b, (const char *)p, 1);
            }
        }
    }
    buf_put(b, "\"", 1);
}

static void json_metadata(st_writer *w, st_buf *b)
{
    buf_puts(b, "\"__metadata__\":{");
    for (uint64_t i = 0; i < w->n_meta; i++) {
        if (i)
            buf_put(b, ",", 1);
        buf_json_str(b, w->meta[i].key);
        buf_put(b, ":", 1);
        buf_json_str(b, w->meta[i].value);
    }
    buf_put(b, "}", 1);
}

static void json_header(st_writer *w, st_buf *b)
{
    int first = 1;
    buf_put(b, "{", 1);
    if (w->n_meta && !w->meta_last) {
        json_metadata(w, b);
        first = 0;
    }
    for (uint64_t i = 0; i < w->n_tensors; i++) {
        const st_wtensor *t = &w->tensors[i];
        if (!first)
            buf_put(b, ",", 1);
        first = 0;
        buf_json_str(b, t->name);
        buf_puts(b, ":{\"dtype\":\"");
        buf_puts(b, t->dtype);
        buf_puts(b, "\",\"shape\":[");
        for (uint32_t d = 0; d < t->n_dims; d++) {
            if (d)
                buf_put(b, ",", 1);
            buf_u64(b, (uint64_t)t->shape[d]);
        }
        buf_puts(b, "],\"data_offsets\":[");
        buf_u64(b, t->begin);
        buf_put(b, ",", 1);
        buf_u64(b, t->end);
        buf_puts(b, "]}");
    }
    if (w->n_meta && w->meta_last) {
        if (!first)
            buf_put(b, ",", 1);
        json_metadata(w, b);
    }
    buf_put(b, "}", 1);
    /* Spaces up to a multiple of 8 so the data section is 8-byte aligned. */
    while (!b->oom && b->len % 8 != 0)
        buf_put(b, " ", 1);
}

uint64_t st_writer_file_size(const st_writer *w)
{
    st_buf b = {0};
    json_header((st_writer *)w, &b);
    uint64_t n = b.oom ? 0 : 8 + b.len + w->data_size;
    free(b.p);
    return n;
}

int st_writer_begin(st_writer *w, const char *dest, sm_err *err)
{
    st_buf b = {0};
    int rc = SM_OK;
    if (w->begun) {
        rc = sm_err_set(err, SM_EINVAL, "safetensors writer: %s: header already written", dest);
        goto done;
    }
    json_header(w, &b);
    if (b.oom) {
        rc = sm_err_set(err, SM_ENOMEM, "safetensors writer: %s: out of memory building the header", dest);
        goto done;
    }
    rc = sm_out_open(&w->out, dest, err);
    if (rc < 0)
        goto done;
    w->out_open = 1;
    w->begun = 1;
    uint8_t len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (uint8_t)((uint64_t)b.len >> (8 * i));
    rc = sm_out_write(&w->out, len8, 8, err);
    if (rc == SM_OK)
        rc = sm_out_write(&w->out, b.p, b.len, err);
    w->header_len = b.len;
    if (rc < 0)
        st_writer_abort(w);
done:
    free(b.p);
    return rc;
}

int st_writer_write(st_writer *w, const void *data, uint64_t n, sm_err *err)
{
    if (!w->out_open)
        return sm_err_set(err, SM_EINVAL, "safetensors writer: data written before begin (or after an error)");
    if (n > w->data_size - w->written)
        return sm_err_set(err, SM_ERANGE, "safetensors writer: %" PRIu64 " more data bytes than the %" PRIu64 " declared",
                          n - (w->data_size - w->written), w->data_size);
    int rc = sm_out_write(&w->out, data, (size_t)n, err);
    if (rc < 0)
        return rc;
    w->written += n;
    return SM_OK;
}

int st_writer_finish(st_writer *w, sm_err *err)
{
    if (!w->out_open)
        return sm_err_set(err, SM_EINVAL, "safetensors writer: finish without begin (or after an error)");
    if (w->written != w->data_size) {
        /* Name the first tensor whose bytes are incomplete. */
        const char *name = "?";
        for (uint64_t i = 0; i < w->n_tensors; i++)
            if (w->tensors[i].end > w->written) {
                name = w->tensors[i].name;
                break;
            }
        int rc = sm_err_set(err, SM_EMISMATCH, "safetensors writer: %s: only %" PRIu64 " of %" PRIu64
                            " data bytes written (tensor '%s' incomplete)", w->out.path, w->written, w->data_size, name);
        st_writer_abort(w);
        return rc;
    }
    w->out_open = 0;
    return sm_out_commit(&w->out, err);
}
