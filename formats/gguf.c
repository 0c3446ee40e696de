/* gguf.c — GGUF v3 reader (bounded cursor over a read-only map) and writer.
 * Format: docs/gguf.md in ggml; all integers little-endian. */
#include "gguf.h"

#include "types.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ cursor */

typedef struct cursor {
    const uint8_t *base; /* [len] the whole file */
    uint64_t len;
    uint64_t off;        /* next byte to read */
    const char *name;    /* file name for messages */
    sm_err *err;
} cursor;

static int cur_need(cursor *c, uint64_t n, const char *what)
{
    if (n > c->len - c->off)
        return sm_err_set(c->err, SM_EFORMAT,
                          "%s: truncated at offset %llu: %s needs %llu bytes, %llu left", c->name,
                          (unsigned long long)c->off, what, (unsigned long long)n,
                          (unsigned long long)(c->len - c->off));
    return SM_OK;
}

static uint64_t le_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint32_t le_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int cur_u32(cursor *c, uint32_t *v, const char *what)
{
    int rc = cur_need(c, 4, what);
    if (rc)
        return rc;
    *v = le_u32(c->base + c->off);
    c->off += 4;
    return SM_OK;
}

static int cur_u64(cursor *c, uint64_t *v, const char *what)
{
    int rc = cur_need(c, 8, what);
    if (rc)
        return rc;
    *v = le_u64(c->base + c->off);
    c->off += 8;
    return SM_OK;
}

static int cur_str(cursor *c, sm_str *s, uint64_t cap, const char *what)
{
    uint64_t at = c->off, n;
    int rc = cur_u64(c, &n, what);
    if (rc)
        return rc;
    if (n > cap)
        return sm_err_set(c->err, SM_ERANGE, "%s: offset %llu: %s length %llu exceeds the cap of %llu",
                          c->name, (unsigned long long)at, what, (unsigned long long)n,
                          (unsigned long long)cap);
    if ((rc = cur_need(c, n, what)))
        return rc;
    s->ptr = (const char *)c->base + c->off;
    s->len = n;
    c->off += n;
    return SM_OK;
}

/* ------------------------------------------------------------ helpers */

static const uint8_t vtype_size[GGUF_VT_COUNT] = {
    [GGUF_VT_UINT8] = 1, [GGUF_VT_INT8] = 1, [GGUF_VT_UINT16] = 2, [GGUF_VT_INT16] = 2,
    [GGUF_VT_UINT32] = 4, [GGUF_VT_INT32] = 4, [GGUF_VT_FLOAT32] = 4, [GGUF_VT_BOOL] = 1,
    [GGUF_VT_UINT64] = 8, [GGUF_VT_INT64] = 8, [GGUF_VT_FLOAT64] = 8,
};

uint32_t gguf_vtype_size(uint32_t t) { return t < GGUF_VT_COUNT ? vtype_size[t] : 0; }

const char *gguf_vtype_name(uint32_t t)
{
    static const char *names[GGUF_VT_COUNT] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32",
                                               "bool", "str", "arr", "u64", "i64", "f64"};
    return t < GGUF_VT_COUNT ? names[t] : "?";
}

int sm_str_eq(sm_str a, const char *s)
{
    size_t n = strlen(s);
    return a.len == n && memcmp(a.ptr, s, n) == 0;
}

char *sm_str_dup(sm_str a)
{
    char *p = malloc((size_t)a.len + 1);
    if (!p)
        return NULL;
    memcpy(p, a.ptr, (size_t)a.len);
    p[a.len] = 0;
    return p;
}

static int mul_overflows(uint64_t a, uint64_t b, uint64_t *out)
{
    return __builtin_mul_overflow(a, b, out);
}

/* Decodes a fixed-size scalar at p into kv->v. */
static void decode_scalar(gguf_kv *kv, uint32_t t, const uint8_t *p)
{
    switch (t) {
    case GGUF_VT_UINT8: kv->v.u64 = p[0]; break;
    case GGUF_VT_INT8: kv->v.i64 = (int8_t)p[0]; break;
    case GGUF_VT_UINT16: kv->v.u64 = (uint16_t)(p[0] | p[1] << 8); break;
    case GGUF_VT_INT16: kv->v.i64 = (int16_t)(uint16_t)(p[0] | p[1] << 8); break;
    case GGUF_VT_UINT32: kv->v.u64 = le_u32(p); break;
    case GGUF_VT_INT32: kv->v.i64 = (int32_t)le_u32(p); break;
    case GGUF_VT_FLOAT32: {
        uint32_t u = le_u32(p);
        float f;
        memcpy(&f, &u, 4);
        kv->v.f64 = f;
        break;
    }
    case GGUF_VT_BOOL: kv->v.b = p[0] != 0; break;
    case GGUF_VT_UINT64: kv->v.u64 = le_u64(p); break;
    case GGUF_VT_INT64: kv->v.i64 = (int64_t)le_u64(p); break;
    case GGUF_VT_FLOAT64: {
        uint64_t u = le_u64(p);
        memcpy(&kv->v.f64, &u, 8);
        break;
    }
    default: break;
    }
}

/* Hash set of names for duplicate detection: open addressing over indices. */
typedef struct nameset {
    uint64_t cap;     /* power of two */
    int64_t *slot;    /* [cap] index into views, -1 = empty */
} nameset;

static uint64_t hash_bytes(const char *p, uint64_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (uint64_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)p[i]) * 1099511628211ull;
    return h;
}

static int nameset_init(nameset *s, uint64_t n)
{
    s->cap = 16;
    while (s->cap < n * 2)
        s->cap <<= 1;
    s->slot = malloc(s->cap * sizeof *s->slot);
    if (!s->slot)
        return SM_ENOMEM;
    memset(s->slot, 0xff, s->cap * sizeof *s->slot);
    return SM_OK;
}

/* Inserts names[i]; returns the index of an equal earlier name, or -1. */
static int64_t nameset_add(nameset *s, const sm_str *names, size_t stride, int64_t i)
{
    const sm_str *ni = (const sm_str *)((const char *)names + stride * (size_t)i);
    uint64_t h = hash_bytes(ni->ptr, ni->len) & (s->cap - 1);
    for (;;) {
        int64_t j = s->slot[h];
        if (j < 0) {
            s->slot[h] = i;
            return -1;
        }
        const sm_str *nj = (const sm_str *)((const char *)names + stride * (size_t)j);
        if (nj->len == ni->len && memcmp(nj->ptr, ni->ptr, ni->len) == 0)
            return j;
        h = (h + 1) & (s->cap - 1);
    }
}

/* Prints a key for messages: at most 96 bytes, non-printables as '?'. */
static const char *show(sm_str s, char *buf, size_t cap)
{
    size_t n = s.len < cap - 4 ? (size_t)s.len : cap - 4;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s.ptr[i];
        buf[i] = (ch >= 32 && ch < 127) ? (char)ch : '?';
    }
    if (n < s.len) {
        memcpy(buf + n, "...", 3);
        n += 3;
    }
    buf[n] = 0;
    return buf;
}

/* ------------------------------------------------------------ reader */

static int parse_value(cursor *c, gguf_kv *kv, const char *key)
{
    int rc;
    uint32_t t = kv->type;
    if (t == GGUF_VT_STRING) {
        kv->raw = c->base + c->off;
        if ((rc = cur_str(c, &kv->v.str, GGUF_MAX_STRING, "string value")))
            return rc;
        kv->raw_len = (uint64_t)(c->base + c->off - kv->raw);
        kv->n = 1;
        return SM_OK;
    }
    if (t == GGUF_VT_ARRAY) {
        uint64_t at = c->off;
        if ((rc = cur_u32(c, &kv->arr_type, "array element type")) ||
            (rc = cur_u64(c, &kv->n, "array length")))
            return rc;
        if (kv->arr_type >= GGUF_VT_COUNT || kv->arr_type == GGUF_VT_ARRAY)
            return sm_err_set(c->err, SM_ETYPE, "%s: offset %llu: key '%s': array of %s is not allowed",
                              c->name, (unsigned long long)at, key,
                              kv->arr_type == GGUF_VT_ARRAY ? "arrays" : "an unknown type");
        if (kv->n > GGUF_MAX_ARRAY)
            return sm_err_set(c->err, SM_ERANGE,
                              "%s: offset %llu: key '%s': array length %llu exceeds the cap of %llu",
                              c->name, (unsigned long long)at, key, (unsigned long long)kv->n,
                              (unsigned long long)GGUF_MAX_ARRAY);
        kv->raw = c->base + c->off;
        if (kv->arr_type == GGUF_VT_STRING) {
            /* each string needs at least its 8-byte length: reject counts the
             * file cannot hold before allocating the view array */
            if (kv->n > (c->len - c->off) / 8)
                return sm_err_set(c->err, SM_EFORMAT,
                                  "%s: offset %llu: key '%s': %llu strings cannot fit in the %llu bytes left",
                                  c->name, (unsigned long long)at, key, (unsigned long long)kv->n,
                                  (unsigned long long)(c->len - c->off));
            kv->strs = malloc((size_t)(kv->n ? kv->n : 1) * sizeof *kv->strs);
            if (!kv->strs)
                return sm_err_set(c->err, SM_ENOMEM, "%s: key '%s': out of memory", c->name, key);
            for (uint64_t i = 0; i < kv->n; i++)
                if ((rc = cur_str(c, &kv->strs[i], GGUF_MAX_STRING, "array string")))
                    return rc;
        } else {
            uint64_t nb;
            if (mul_overflows(kv->n, vtype_size[kv->arr_type], &nb))
                return sm_err_set(c->err, SM_ERANGE, "%s: key '%s': array byte size overflows", c->name, key);
            if ((rc = cur_need(c, nb, "array data")))
                return rc;
            c->off += nb;
        }
        kv->raw_len = (uint64_t)(c->base + c->off - kv->raw);
        return SM_OK;
    }
    if (t >= GGUF_VT_COUNT)
        return sm_err_set(c->err, SM_ETYPE, "%s: offset %llu: key '%s': unknown value type %u",
                          c->name, (unsigned long long)(c->off - 4), key, t);
    if ((rc = cur_need(c, vtype_size[t], "scalar value")))
        return rc;
    kv->raw = c->base + c->off;
    kv->raw_len = vtype_size[t];
    kv->n = 1;
    decode_scalar(kv, t, kv->raw);
    c->off += vtype_size[t];
    return SM_OK;
}

static int cmp_by_offset(const void *a, const void *b)
{
    const gguf_tensor *x = *(const gguf_tensor *const *)a, *y = *(const gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

int gguf_parse(gguf_file *g, const uint8_t *buf, uint64_t len, const char *name, sm_err *err)
{
    memset(g, 0, sizeof *g);
    snprintf(g->path, sizeof g->path, "%s", name ? name : "<buffer>");
    cursor c = {buf, len, 0, g->path, err};
    nameset ks = {0}, ts = {0};
    gguf_tensor **order = NULL;
    char tmp[112];
    int rc;

    if (len < 4 || memcmp(buf, "GGUF", 4) != 0) {
        rc = sm_err_set(err, SM_EFORMAT, "%s: not a GGUF file (magic at offset 0 is not \"GGUF\")", g->path);
        goto fail;
    }
    c.off = 4;
    uint64_t n_tensors, n_kv;
    if ((rc = cur_u32(&c, &g->version, "version")))
        goto fail;
    if (g->version != 3 && g->version != 2) {
        rc = sm_err_set(err, SM_EUNSUPP, "%s: offset 4: GGUF version %u is not supported (expected 2 or 3)",
                        g->path, g->version);
        goto fail;
    }
    if ((rc = cur_u64(&c, &n_tensors, "tensor count")) || (rc = cur_u64(&c, &n_kv, "key/value count")))
        goto fail;
    if (n_kv > GGUF_MAX_KV || n_kv > (len - c.off) / 12) {
        rc = sm_err_set(err, SM_ERANGE, "%s: offset 16: key/value count %llu is larger than the file can hold",
                        g->path, (unsigned long long)n_kv);
        goto fail;
    }
    if (n_tensors > GGUF_MAX_TENSORS || n_tensors > (len - c.off) / 24) {
        rc = sm_err_set(err, SM_ERANGE, "%s: offset 8: tensor count %llu is larger than the file can hold",
                        g->path, (unsigned long long)n_tensors);
        goto fail;
    }
    g->kv = calloc((size_t)(n_kv ? n_kv : 1), sizeof *g->kv);
    g->tensors = calloc((size_t)(n_tensors ? n_tensors : 1), sizeof *g->tensors);
    if (!g->kv || !g->tensors || nameset_init(&ks, n_kv) || nameset_init(&ts, n_tensors)) {
        rc = sm_err_set(err, SM_ENOMEM, "%s: out of memory", g->path);
        goto fail;
    }
    g->alignment = GGUF_DEFAULT_ALIGNMENT;

    for (uint64_t i = 0; i < n_kv; i++) {
        gguf_kv *kv = &g->kv[i];
        kv->file_off = c.off;
        if ((rc = cur_str(&c, &kv->key, GGUF_MAX_KEY, "key")))
            goto fail;
        g->n_kv = i + 1; /* so gguf_close frees strs of parsed entries */
        show(kv->key, tmp, sizeof tmp);
        int64_t dup = nameset_add(&ks, &g->kv[0].key, sizeof(gguf_kv), (int64_t)i);
        if (dup >= 0) {
            rc = sm_err_set(err, SM_EDUP, "%s: offset %llu: duplicate key '%s' (first at offset %llu)",
                            g->path, (unsigned long long)kv->file_off, tmp,
                            (unsigned long long)g->kv[dup].file_off);
            goto fail;
        }
        if ((rc = cur_u32(&c, &kv->type, "value type")))
            goto fail;
        if (kv->type >= GGUF_VT_COUNT) {
            rc = sm_err_set(err, SM_ETYPE, "%s: offset %llu: key '%s': unknown value type %u", g->path,
                            (unsigned long long)(c.off - 4), tmp, kv->type);
            goto fail;
        }
        if ((rc = parse_value(&c, kv, tmp)))
            goto fail;
        if (sm_str_eq(kv->key, "general.alignment")) {
            if (kv->type != GGUF_VT_UINT32) {
                rc = sm_err_set(err, SM_ETYPE, "%s: key 'general.alignment' must be u32, not %s", g->path,
                                gguf_vtype_name(kv->type));
                goto fail;
            }
            uint64_t a = kv->v.u64;
            if (a == 0 || (a & (a - 1)) != 0) {
                rc = sm_err_set(err, SM_EFORMAT, "%s: key 'general.alignment' = %llu is not a power of two",
                                g->path, (unsigned long long)a);
                goto fail;
            }
            g->alignment = (uint32_t)a;
        }
    }

    for (uint64_t i = 0; i < n_tensors; i++) {
        gguf_tensor *t = &g->tensors[i];
        t->info_off = c.off;
        if ((rc = cur_str(&c, &t->name, GGUF_MAX_KEY, "tensor name")))
            goto fail;
        show(t->name, tmp, sizeof tmp);
        int64_t dup = nameset_add(&ts, &g->tensors[0].name, sizeof(gguf_tensor), (int64_t)i);
        if (dup >= 0) {
            rc = sm_err_set(err, SM_EDUP, "%s: offset %llu: duplicate tensor name '%s'", g->path,
                            (unsigned long long)t->info_off, tmp);
            goto fail;
        }
        if ((rc = cur_u32(&c, &t->n_dims, "tensor n_dims")))
            goto fail;
        if (t->n_dims == 0 || t->n_dims > GGUF_MAX_DIMS) {
            rc = sm_err_set(err, SM_ERANGE, "%s: offset %llu: tensor '%s': n_dims %u is not in 1..%d",
                            g->path, (unsigned long long)(c.off - 4), tmp, t->n_dims, GGUF_MAX_DIMS);
            goto fail;
        }
        uint64_t nel = 1;
        for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++)
            t->ne[d] = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) {
            uint64_t v;
            if ((rc = cur_u64(&c, &v, "tensor dimension")))
                goto fail;
            if (v == 0 || v > (uint64_t)INT64_MAX || mul_overflows(nel, v, &nel) || nel > (uint64_t)INT64_MAX) {
                rc = sm_err_set(err, SM_ERANGE,
                                "%s: offset %llu: tensor '%s': dimension %u = %llu is zero or overflows the element count",
                                g->path, (unsigned long long)(c.off - 8), tmp, d, (unsigned long long)v);
                goto fail;
            }
            t->ne[d] = (int64_t)v;
        }
        if ((rc = cur_u32(&c, &t->type, "tensor type")))
            goto fail;
        const sm_type_info *ti = sm_type_get(t->type);
        if (!ti) {
            rc = sm_err_set(err, SM_ETYPE, "%s: offset %llu: tensor '%s': unknown tensor type %u", g->path,
                            (unsigned long long)(c.off - 4), tmp, t->type);
            goto fail;
        }
        if (t->ne[0] % ti->blck != 0) {
            rc = sm_err_set(err, SM_EFORMAT,
                            "%s: tensor '%s': row length %lld is not a multiple of the %s block size %u",
                            g->path, tmp, (long long)t->ne[0], ti->name, ti->blck);
            goto fail;
        }
        if (mul_overflows(nel / ti->blck, ti->size, &t->nbytes)) {
            rc = sm_err_set(err, SM_ERANGE, "%s: tensor '%s': byte size overflows", g->path, tmp);
            goto fail;
        }
        if ((rc = cur_u64(&c, &t->offset, "tensor offset")))
            goto fail;
        g->n_tensors = i + 1;
    }

    /* data section starts at the next multiple of the alignment */
    uint64_t data_off = c.off + (g->alignment - c.off % g->alignment) % g->alignment;
    if (n_tensors && data_off > len) {
        rc = sm_err_set(err, SM_EFORMAT, "%s: truncated: data section at offset %llu is past the end (%llu bytes)",
                        g->path, (unsigned long long)data_off, (unsigned long long)len);
        goto fail;
    }
    g->data_offset = data_off;
    uint64_t avail = data_off <= len ? len - data_off : 0;
    for (uint64_t i = 0; i < n_tensors; i++) {
        gguf_tensor *t = &g->tensors[i];
        show(t->name, tmp, sizeof tmp);
        if (t->offset % g->alignment != 0) {
            rc = sm_err_set(err, SM_EFORMAT, "%s: tensor '%s': data offset %llu is not a multiple of the alignment %u",
                            g->path, tmp, (unsigned long long)t->offset, g->alignment);
            goto fail;
        }
        if (t->offset > avail || t->nbytes > avail - t->offset) {
            rc = sm_err_set(err, SM_ERANGE,
                            "%s: tensor '%s': data [%llu, +%llu) lies outside the %llu data bytes of the file",
                            g->path, tmp, (unsigned long long)t->offset, (unsigned long long)t->nbytes,
                            (unsigned long long)avail);
            goto fail;
        }
        t->data = buf + data_off + t->offset;
    }
    /* overlap check: sort by offset, each must end before the next starts */
    if (n_tensors > 1) {
        order = malloc((size_t)n_tensors * sizeof *order);
        if (!order) {
            rc = sm_err_set(err, SM_ENOMEM, "%s: out of memory", g->path);
            goto fail;
        }
        for (uint64_t i = 0; i < n_tensors; i++)
            order[i] = &g->tensors[i];
        qsort(order, (size_t)n_tensors, sizeof *order, cmp_by_offset);
        for (uint64_t i = 1; i < n_tensors; i++) {
            if (order[i - 1]->offset + order[i - 1]->nbytes > order[i]->offset) {
                char tmp2[112];
                rc = sm_err_set(err, SM_EFORMAT, "%s: tensors '%s' and '%s' overlap at data offset %llu",
                                g->path, show(order[i - 1]->name, tmp, sizeof tmp),
                                show(order[i]->name, tmp2, sizeof tmp2),
                                (unsigned long long)order[i]->offset);
                goto fail;
            }
        }
    }
    free(order);
    free(ks.slot);
    free(ts.slot);
    g->map.ptr = buf;
    g->map.len = len;
    return SM_OK;

fail:
    free(order);
    free(ks.slot);
    free(ts.slot);
    gguf_close(g);
    return rc;
}

int gguf_open(gguf_file *g, const char *path, sm_err *err)
{
    sm_map m;
    memset(g, 0, sizeof *g);
    int rc = sm_map_open(&m, path, err);
    if (rc)
        return rc;
    rc = gguf_parse(g, m.ptr, m.len, path, err);
    if (rc) {
        sm_map_close(&m);
        return rc;
    }
    g->map = m;
    g->owns_map = 1;
    return SM_OK;
}

void gguf_close(gguf_file *g)
{
    if (g->kv)
        for (uint64_t i = 0; i < g->n_kv; i++)
            free(g->kv[i].strs);
    free(g->kv);
    free(g->tensors);
    if (g->owns_map)
        sm_map_close(&g->map);
    memset(g, 0, sizeof *g);
}

int64_t gguf_find_key(const gguf_file *g, const char *key)
{
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (sm_str_eq(g->kv[i].key, key))
            return (int64_t)i;
    return -1;
}

int64_t gguf_find_tensor(const gguf_file *g, const char *name)
{
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (sm_str_eq(g->tensors[i].name, name))
            return (int64_t)i;
    return -1;
}

const gguf_kv *gguf_get(const gguf_file *g, const char *key)
{
    int64_t i = gguf_find_key(g, key);
    return i < 0 ? NULL : &g->kv[i];
}

static int is_unsigned(uint32_t t)
{
    return t == GGUF_VT_UINT8 || t == GGUF_VT_UINT16 || t == GGUF_VT_UINT32 || t == GGUF_VT_UINT64;
}

static int is_signed(uint32_t t)
{
    return t == GGUF_VT_INT8 || t == GGUF_VT_INT16 || t == GGUF_VT_INT32 || t == GGUF_VT_INT64;
}

static const gguf_kv *need(const gguf_file *g, const char *key, sm_err *err, int *rc)
{
    const gguf_kv *kv = gguf_get(g, key);
    *rc = kv ? SM_OK : sm_err_set(err, SM_EMISSING, "%s: key '%s' is missing", g->path, key);
    return kv;
}

static int bad_type(const gguf_file *g, const gguf_kv *kv, const char *key, const char *want, sm_err *err)
{
    return sm_err_set(err, SM_ETYPE, "%s: key '%s' is %s, expected %s", g->path, key,
                      gguf_vtype_name(kv->type), want);
}

int gguf_get_u64(const gguf_file *g, const char *key, uint64_t *out, sm_err *err)
{
    int rc;
    const gguf_kv *kv = need(g, key, err, &rc);
    if (!kv)
        return rc;
    if (is_unsigned(kv->type))
        *out = kv->v.u64;
    else if (is_signed(kv->type) && kv->v.i64 >= 0)
        *out = (uint64_t)kv->v.i64;
    else
        return bad_type(g, kv, key, "a non-negative integer", err);
    return SM_OK;
}

int gguf_get_u32(const gguf_file *g, const char *key, uint32_t *out, sm_err *err)
{
    uint64_t v;
    int rc = gguf_get_u64(g, key, &v, err);
    if (rc)
        return rc;
    if (v > UINT32_MAX)
        return sm_err_set(err, SM_ERANGE, "%s: key '%s' = %llu does not fit 32 bits", g->path, key,
                          (unsigned long long)v);
    *out = (uint32_t)v;
    return SM_OK;
}

int gguf_get_i64(const gguf_file *g, const char *key, int64_t *out, sm_err *err)
{
    int rc;
    const gguf_kv *kv = need(g, key, err, &rc);
    if (!kv)
        return rc;
    if (is_signed(kv->type))
        *out = kv->v.i64;
    else if (is_unsigned(kv->type) && kv->v.u64 <= (uint64_t)INT64_MAX)
        *out = (int64_t)kv->v.u64;
    else
        return bad_type(g, kv, key, "an integer", err);
    return SM_OK;
}

int gguf_get_f32(const gguf_file *g, const char *key, float *out, sm_err *err)
{
    int rc;
    const gguf_kv *kv = need(g, key, err, &rc);
    if (!kv)
        return rc;
    if (kv->type != GGUF_VT_FLOAT32 && kv->type != GGUF_VT_FLOAT64)
        return bad_type(g, kv, key, "f32", err);
    *out = (float)kv->v.f64;
    return SM_OK;
}

int gguf_get_bool(const gguf_file *g, const char *key, bool *out, sm_err *err)
{
    int rc;
    const gguf_kv *kv = need(g, key, err, &rc);
    if (!kv)
        return rc;
    if (kv->type != GGUF_VT_BOOL)
        return bad_type(g, kv, key, "bool", err);
    *out = kv->v.b;
    return SM_OK;
}

int gguf_get_str(const gguf_file *g, const char *key, sm_str *out, sm_err *err)
{
    int rc;
    const gguf_kv *kv = need(g, key, err, &rc);
    if (!kv)
        return rc;
    if (kv->type != GGUF_VT_STRING)
        return bad_type(g, kv, key, "string", err);
    *out = kv->v.str;
    return SM_OK;
}

/* ------------------------------------------------------------ writer */

typedef struct wkv {
    char *key;
    uint32_t type;
    uint8_t *val;     /* [val_len] serialized value bytes (after the type field) */
    uint64_t val_len;
} wkv;

typedef struct wtensor {
    char *name;
    uint32_t n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    uint32_t type;
    uint64_t offset;  /* assigned when the header is written */
    uint64_t nbytes;
} wtensor;

struct gguf_writer {
    wkv *kv;
    uint64_t n_kv, cap_kv;
    wtensor *t;
    uint64_t n_t, cap_t;
    sm_out out;
    int begun;
    uint64_t next_tensor;   /* index of the next tensor to write */
    uint64_t part_done;     /* bytes of next_tensor already written in parts */
    uint64_t data_start;    /* file offset of the data section */
};

gguf_writer *gguf_writer_init(void)
{
    gguf_writer *w = calloc(1, sizeof *w);
    if (w)
        w->out.slot = -1;
    return w;
}

void gguf_writer_free(gguf_writer *w)
{
    if (!w)
        return;
    if (w->out.fp || w->out.tmp_path)
        sm_out_abort(&w->out);
    for (uint64_t i = 0; i < w->n_kv; i++) {
        free(w->kv[i].key);
        free(w->kv[i].val);
    }
    for (uint64_t i = 0; i < w->n_t; i++)
        free(w->t[i].name);
    free(w->kv);
    free(w->t);
    free(w);
}

int64_t gguf_writer_find_key(const gguf_writer *w, const char *key)
{
    for (uint64_t i = 0; i < w->n_kv; i++)
        if (strcmp(w->kv[i].key, key) == 0)
            return (int64_t)i;
    return -1;
}

uint64_t gguf_writer_n_kv(const gguf_writer *w) { return w->n_kv; }
uint64_t gguf_writer_n_tensors(const gguf_writer *w) { return w->n_t; }

/* Takes ownership of val. */
static int add_kv(gguf_writer *w, const char *key, uint32_t type, uint8_t *val, uint64_t len)
{
    if (w->begun || gguf_writer_find_key(w, key) >= 0) {
        free(val);
        return w->begun ? SM_EINVAL : SM_EDUP;
    }
    if (w->n_kv == w->cap_kv) {
        uint64_t cap = w->cap_kv ? w->cap_kv * 2 : 32;
        wkv *p = realloc(w->kv, cap * sizeof *p);
        if (!p) {
            free(val);
            return SM_ENOMEM;
        }
        w->kv = p;
        w->cap_kv = cap;
    }
    char *k = strdup(key);
    if (!k) {
        free(val);
        return SM_ENOMEM;
    }
    w->kv[w->n_kv++] = (wkv){k, type, val, len};
    return SM_OK;
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static int set_scalar(gguf_writer *w, const char *key, uint32_t type, const void *v)
{
    uint32_t n = vtype_size[type];
    uint8_t *p = malloc(n);
    if (!p)
        return SM_ENOMEM;
    memcpy(p, v, n); /* host is little-endian (x86-64/aarch64): checked in gguf_writer_begin */
    return add_kv(w, key, type, p, n);
}

int gguf_writer_set_u8(gguf_writer *w, const char *key, uint8_t v) { return set_scalar(w, key, GGUF_VT_UINT8, &v); }
int gguf_writer_set_i8(gguf_writer *w, const char *key, int8_t v) { return set_scalar(w, key, GGUF_VT_INT8, &v); }
int gguf_writer_set_u16(gguf_writer *w, const char *key, uint16_t v) { return set_scalar(w, key, GGUF_VT_UINT16, &v); }
int gguf_writer_set_i16(gguf_writer *w, const char *key, int16_t v) { return set_scalar(w, key, GGUF_VT_INT16, &v); }
int gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t v) { return set_scalar(w, key, GGUF_VT_UINT32, &v); }
int gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t v) { return set_scalar(w, key, GGUF_VT_INT32, &v); }
int gguf_writer_set_u64(gguf_writer *w, const char *key, uint64_t v) { return set_scalar(w, key, GGUF_VT_UINT64, &v); }
int gguf_writer_set_i64(gguf_writer *w, const char *key, int64_t v) { return set_scalar(w, key, GGUF_VT_INT64, &v); }
int gguf_writer_set_f32(gguf_writer *w, const char *key, float v) { return set_scalar(w, key, GGUF_VT_FLOAT32, &v); }
int gguf_writer_set_f64(gguf_writer *w, const char *key, double v) { return set_scalar(w, key, GGUF_VT_FLOAT64, &v); }

int gguf_writer_set_bool(gguf_writer *w, const char *key, bool v)
{
    uint8_t b = v ? 1 : 0;
    return set_scalar(w, key, GGUF_VT_BOOL, &b);
}

int gguf_writer_set_strn(gguf_writer *w, const char *key, const char *v, uint64_t len)
{
    uint8_t *p = malloc((size_t)len + 8);
    if (!p)
        return SM_ENOMEM;
    put_u64(p, len);
    memcpy(p + 8, v, (size_t)len);
    return add_kv(w, key, GGUF_VT_STRING, p, len + 8);
}

int gguf_writer_set_str(gguf_writer *w, const char *key, const char *v)
{
    return gguf_writer_set_strn(w, key, v, strlen(v));
}

int gguf_writer_set_arr(gguf_writer *w, const char *key, uint32_t elem_type, const void *data, uint64_t n)
{
    if (elem_type >= GGUF_VT_COUNT || vtype_size[elem_type] == 0)
        return SM_ETYPE;
    uint64_t nb;
    if (mul_overflows(n, vtype_size[elem_type], &nb) || nb > SIZE_MAX - 12)
        return SM_ERANGE;
    uint8_t *p = malloc((size_t)nb + 12);
    if (!p)
        return SM_ENOMEM;
    put_u32(p, elem_type);
    put_u64(p + 4, n);
    if (nb)
        memcpy(p + 12, data, (size_t)nb);
    return add_kv(w, key, GGUF_VT_ARRAY, p, nb + 12);
}

int gguf_writer_set_arr_str(gguf_writer *w, const char *key, const sm_str *strs, uint64_t n)
{
    uint64_t total = 12;
    for (uint64_t i = 0; i < n; i++)
        total += 8 + strs[i].len;
    uint8_t *p = malloc((size_t)total);
    if (!p)
        return SM_ENOMEM;
    put_u32(p, GGUF_VT_STRING);
    put_u64(p + 4, n);
    uint64_t o = 12;
    for (uint64_t i = 0; i < n; i++) {
        put_u64(p + o, strs[i].len);
        memcpy(p + o + 8, strs[i].ptr, (size_t)strs[i].len);
        o += 8 + strs[i].len;
    }
    return add_kv(w, key, GGUF_VT_ARRAY, p, total);
}

int gguf_writer_copy_kv(gguf_writer *w, const gguf_kv *kv)
{
    /* raw points at the value (array: first element, after the 12-byte
     * array header); rebuild the serialized form */
    char *key = sm_str_dup(kv->key);
    if (!key)
        return SM_ENOMEM;
    int rc;
    if (kv->type == GGUF_VT_ARRAY) {
        uint8_t *p = malloc((size_t)kv->raw_len + 12);
        if (!p) {
            free(key);
            return SM_ENOMEM;
        }
        put_u32(p, kv->arr_type);
        put_u64(p + 4, kv->n);
        memcpy(p + 12, kv->raw, (size_t)kv->raw_len);
        rc = add_kv(w, key, kv->type, p, kv->raw_len + 12);
    } else {
        uint8_t *p = malloc((size_t)kv->raw_len ? (size_t)kv->raw_len : 1);
        if (!p) {
            free(key);
            return SM_ENOMEM;
        }
        memcpy(p, kv->raw, (size_t)kv->raw_len);
        rc = add_kv(w, key, kv->type, p, kv->raw_len);
    }
    free(key);
    return rc;
}

int gguf_writer_replace_u32(gguf_writer *w, const char *key, uint32_t v)
{
    int64_t i = gguf_writer_find_key(w, key);
    if (i < 0)
        return gguf_writer_set_u32(w, key, v);
    uint8_t *p = malloc(4);
    if (!p)
        return SM_ENOMEM;
    put_u32(p, v);
    free(w->kv[i].val);
    w->kv[i].type = GGUF_VT_UINT32;
    w->kv[i].val = p;
    w->kv[i].val_len = 4;
    return SM_OK;
}

int gguf_writer_remove(gguf_writer *w, const char *key)
{
    int64_t i = gguf_writer_find_key(w, key);
    if (i < 0)
        return SM_OK;
    free(w->kv[i].key);
    free(w->kv[i].val);
    memmove(&w->kv[i], &w->kv[i + 1], (size_t)(w->n_kv - (uint64_t)i - 1) * sizeof *w->kv);
    w->n_kv--;
    return SM_OK;
}

static uint32_t writer_alignment(const gguf_writer *w)
{
    int64_t i = gguf_writer_find_key(w, "general.alignment");
    if (i >= 0 && w->kv[i].type == GGUF_VT_UINT32) {
        uint32_t a = le_u32(w->kv[i].val);
        if (a && (a & (a - 1)) == 0)
            return a;
    }
    return GGUF_DEFAULT_ALIGNMENT;
}

static int tensor_size(const char *name, uint32_t n_dims, const int64_t *ne, uint32_t type,
                       uint64_t *nbytes, sm_err *err)
{
    const sm_type_info *ti = sm_type_get(type);
    if (!ti)
        return sm_err_set(err, SM_ETYPE, "tensor '%s': unknown type %u", name, type);
    if (n_dims == 0 || n_dims > GGUF_MAX_DIMS)
        return sm_err_set(err, SM_ERANGE, "tensor '%s': n_dims %u is not in 1..4", name, n_dims);
    uint64_t nel = 1;
    for (uint32_t d = 0; d < n_dims; d++)
        if (ne[d] <= 0 || mul_overflows(nel, (uint64_t)ne[d], &nel))
            return sm_err_set(err, SM_ERANGE, "tensor '%s': bad dimension %u = %lld", name, d, (long long)ne[d]);
    if (ne[0] % ti->blck != 0)
        return sm_err_set(err, SM_EINVAL, "tensor '%s': row length %lld is not a multiple of the %s block size %u",
                          name, (long long)ne[0], ti->name, ti->blck);
    if (mul_overflows(nel / ti->blck, ti->size, nbytes))
        return sm_err_set(err, SM_ERANGE, "tensor '%s': byte size overflows", name);
    return SM_OK;
}

int gguf_writer_add_tensor(gguf_writer *w, const char *name, uint32_t n_dims, const int64_t *ne,
                           uint32_t type, sm_err *err)
{
    if (w->begun)
        return sm_err_set(err, SM_EINVAL, "tensor '%s' added after the header was written", name);
    for (uint64_t i = 0; i < w->n_t; i++)
        if (strcmp(w->t[i].name, name) == 0)
            return sm_err_set(err, SM_EDUP, "duplicate tensor name '%s'", name);
    wtensor t = {0};
    int rc = tensor_size(name, n_dims, ne, type, &t.nbytes, err);
    if (rc)
        return rc;
    if (w->n_t == w->cap_t) {
        uint64_t cap = w->cap_t ? w->cap_t * 2 : 64;
        wtensor *p = realloc(w->t, cap * sizeof *p);
        if (!p)
            return sm_err_set(err, SM_ENOMEM, "out of memory");
        w->t = p;
        w->cap_t = cap;
    }
    t.name = strdup(name);
    if (!t.name)
        return sm_err_set(err, SM_ENOMEM, "out of memory");
    t.n_dims = n_dims;
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++)
        t.ne[d] = d < n_dims ? ne[d] : 1;
    t.type = type;
    w->t[w->n_t++] = t;
    return SM_OK;
}

uint64_t gguf_writer_tensor_nbytes(const gguf_writer *w, uint64_t i)
{
    return i < w->n_t ? w->t[i].nbytes : 0;
}

int gguf_writer_set_tensor_type(gguf_writer *w, uint64_t i, uint32_t type, sm_err *err)
{
    if (i >= w->n_t || w->begun)
        return sm_err_set(err, SM_EINVAL, "cannot retype tensor %llu", (unsigned long long)i);
    uint64_t nb;
    int rc = tensor_size(w->t[i].name, w->t[i].n_dims, w->t[i].ne, type, &nb, err);
    if (rc)
        return rc;
    w->t[i].type = type;
    w->t[i].nbytes = nb;
    return SM_OK;
}

static uint64_t header_size(const gguf_writer *w)
{
    uint64_t n = 4 + 4 + 8 + 8;
    for (uint64_t i = 0; i < w->n_kv; i++)
        n += 8 + strlen(w->kv[i].key) + 4 + w->kv[i].val_len;
    for (uint64_t i = 0; i < w->n_t; i++)
        n += 8 + strlen(w->t[i].name) + 4 + 8ull * w->t[i].n_dims + 4 + 8;
    return n;
}

uint64_t gguf_writer_file_size(const gguf_writer *w)
{
    uint64_t a = writer_alignment(w);
    uint64_t off = header_size(w);
    if (w->n_t)
        off += (a - off % a) % a;
    for (uint64_t i = 0; i < w->n_t; i++) {
        off += w->t[i].nbytes;
        off += (a - off % a) % a;
    }
    return off;
}

int gguf_writer_begin(gguf_writer *w, const char *dest, sm_err *err)
{
    const uint16_t probe = 1;
    if (*(const uint8_t *)&probe != 1)
        return sm_err_set(err, SM_EUNSUPP, "big-endian hosts are not supported");
    if (w->begun)
        return sm_err_set(err, SM_EINVAL, "%s: header already written", dest);
    uint32_t a = writer_alignment(w);
    uint64_t off = 0;
    for (uint64_t i = 0; i < w->n_t; i++) {
        w->t[i].offset = off;
        off += w->t[i].nbytes;
        off += (a - off % a) % a;
    }
    int rc = sm_out_open(&w->out, dest, err);
    if (rc)
        return rc;
    w->begun = 1;
    uint8_t hdr[24];
    memcpy(hdr, "GGUF", 4);
    put_u32(hdr + 4, 3);
    put_u64(hdr + 8, w->n_t);
    put_u64(hdr + 16, w->n_kv);
    if ((rc = sm_out_write(&w->out, hdr, 24, err)))
        goto fail;
    for (uint64_t i = 0; i < w->n_kv; i++) {
        uint8_t b[12];
        uint64_t kl = strlen(w->kv[i].key);
        put_u64(b, kl);
        if ((rc = sm_out_write(&w->out, b, 8, err)) ||
            (rc = sm_out_write(&w->out, w->kv[i].key, (size_t)kl, err)))
            goto fail;
        put_u32(b, w->kv[i].type);
        if ((rc = sm_out_write(&w->out, b, 4, err)) ||
            (rc = sm_out_write(&w->out, w->kv[i].val, (size_t)w->kv[i].val_len, err)))
            goto fail;
    }
    for (uint64_t i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        uint8_t b[8];
        uint64_t nl = strlen(t->name);
        put_u64(b, nl);
        if ((rc = sm_out_write(&w->out, b, 8, err)) || (rc = sm_out_write(&w->out, t->name, (size_t)nl, err)))
            goto fail;
        put_u32(b, t->n_dims);
        if ((rc = sm_out_write(&w->out, b, 4, err)))
            goto fail;
        for (uint32_t d = 0; d < t->n_dims; d++) {
            put_u64(b, (uint64_t)t->ne[d]);
            if ((rc = sm_out_write(&w->out, b, 8, err)))
                goto fail;
        }
        put_u32(b, t->type);
        if ((rc = sm_out_write(&w->out, b, 4, err)))
            goto fail;
        put_u64(b, t->offset);
        if ((rc = sm_out_write(&w->out, b, 8, err)))
            goto fail;
    }
    /* gguf-py writes no padding when there is no tensor data at all
     * (vocab-only files); with tensors the data section is aligned */
    if (w->n_t && (rc = sm_out_pad(&w->out, a, err)))
        goto fail;
    w->data_start = w->out.written;
    w->next_tensor = 0;
    return SM_OK;
fail:
    sm_out_abort(&w->out);
    return rc;
}

int gguf_writer_write_tensor(gguf_writer *w, const void *data, uint64_t nbytes, sm_err *err)
{
    if (!w->begun || !w->out.fp)
        return sm_err_set(err, SM_EINVAL, "tensor data written before the header");
    if (w->next_tensor >= w->n_t)
        return sm_err_set(err, SM_EINVAL, "%s: more tensor data than declared tensors", w->out.path);
    const wtensor *t = &w->t[w->next_tensor];
    if (w->part_done)
        return sm_err_set(err, SM_EINVAL, "%s: tensor '%s' is being written in parts", w->out.path, t->name);
    if (nbytes != t->nbytes)
        return sm_err_set(err, SM_EINVAL, "%s: tensor '%s': %llu data bytes given, %llu expected", w->out.path,
                          t->name, (unsigned long long)nbytes, (unsigned long long)t->nbytes);
    int rc = sm_out_write(&w->out, data, (size_t)nbytes, err);
    if (rc)
        return rc;
    w->next_tensor++;
    /* llama.cpp and gguf-py pad after every tensor, the last one included */
    return sm_out_pad(&w->out, writer_alignment(w), err);
}

int gguf_writer_write_tensor_part(gguf_writer *w, const void *data, uint64_t n, sm_err *err)
{
    if (!w->begun || !w->out.fp)
        return sm_err_set(err, SM_EINVAL, "tensor data written before the header");
    if (w->next_tensor >= w->n_t)
        return sm_err_set(err, SM_EINVAL, "%s: more tensor data than declared tensors", w->out.path);
    const wtensor *t = &w->t[w->next_tensor];
    if (n > t->nbytes - w->part_done)
        return sm_err_set(err, SM_EINVAL, "%s: tensor '%s': %llu more bytes given, only %llu expected", w->out.path,
                          t->name, (unsigned long long)n, (unsigned long long)(t->nbytes - w->part_done));
    int rc = sm_out_write(&w->out, data, (size_t)n, err);
    if (rc)
        return rc;
    w->part_done += n;
    if (w->part_done == t->nbytes) {
        w->part_done = 0;
        w->next_tensor++;
        return sm_out_pad(&w->out, writer_alignment(w), err);
    }
    return SM_OK;
}

int gguf_writer_finish(gguf_writer *w, sm_err *err)
{
    if (!w->begun || !w->out.fp)
        return sm_err_set(err, SM_EINVAL, "finish without an open output");
    if (w->next_tensor != w->n_t) {
        int rc = sm_err_set(err, SM_EINVAL, "%s: only %llu of %llu tensors were written", w->out.path,
                            (unsigned long long)w->next_tensor, (unsigned long long)w->n_t);
        sm_out_abort(&w->out);
        return rc;
    }
    return sm_out_commit(&w->out, err);
}

void gguf_writer_abort(gguf_writer *w)
{
    if (w && (w->out.fp || w->out.tmp_path))
        sm_out_abort(&w->out);
}
