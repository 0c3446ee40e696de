#include "safetensors.h"

#include "fp16.h"

#include <dirent.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const struct {
    const char *name;
    uint32_t size;
} dtypes[ST_DTYPE_COUNT] = {
    [ST_F32] = {"F32", 4}, [ST_F16] = {"F16", 2}, [ST_BF16] = {"BF16", 2}, [ST_F64] = {"F64", 8},
    [ST_I64] = {"I64", 8}, [ST_I32] = {"I32", 4}, [ST_I16] = {"I16", 2}, [ST_I8] = {"I8", 1},
    [ST_U8] = {"U8", 1}, [ST_BOOL] = {"BOOL", 1}, [ST_F8_E4M3] = {"F8_E4M3", 1},
    [ST_F8_E5M2] = {"F8_E5M2", 1}, [ST_U16] = {"U16", 2}, [ST_U32] = {"U32", 4}, [ST_U64] = {"U64", 8},
};

const char *st_dtype_name(uint32_t d) { return d < ST_DTYPE_COUNT ? dtypes[d].name : "?"; }
uint32_t st_dtype_size(uint32_t d) { return d < ST_DTYPE_COUNT ? dtypes[d].size : 0; }

static int grow_tensors(st_model *m, uint64_t extra)
{
    st_tensor *p = realloc(m->tensors, (size_t)(m->n_tensors + extra) * sizeof *p);
    if (!p)
        return SM_ENOMEM;
    m->tensors = p;
    return SM_OK;
}

static int cmp_span(const void *a, const void *b)
{
    const st_tensor *x = *(const st_tensor *const *)a, *y = *(const st_tensor *const *)b;
    return x->file_off < y->file_off ? -1 : x->file_off > y->file_off;
}

/* Reads a JSON integer that must be a non-negative exact value. */
static int json_u64(const json_t *v, uint64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return 0;
    *out = (uint64_t)json_integer_value(v);
    return 1;
}

int st_parse(st_model *m, const uint8_t *buf, uint64_t len, const char *name, uint32_t shard, sm_err *err)
{
    int rc = SM_OK;
    json_t *root = NULL;
    st_tensor **order = NULL;
    uint64_t first = m->n_tensors;

    if (len < 8)
        return sm_err_set(err, SM_EFORMAT, "%s: truncated: %llu bytes, the 8-byte header length is missing", name,
                          (unsigned long long)len);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = (hlen << 8) | buf[i];
    if (hlen > ST_MAX_HEADER)
        return sm_err_set(err, SM_ERANGE, "%s: offset 0: header length %llu exceeds the %u-byte limit", name,
                          (unsigned long long)hlen, ST_MAX_HEADER);
    if (hlen > len - 8)
        return sm_err_set(err, SM_EFORMAT, "%s: truncated: header of %llu bytes but only %llu bytes follow", name,
                          (unsigned long long)hlen, (unsigned long long)(len - 8));
    uint64_t data_start = 8 + hlen, data_len = len - data_start;
    json_error_t jerr;
    root = json_loadb((const char *)buf + 8, (size_t)hlen, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    if (!root) {
        rc = sm_err_set(err, SM_EFORMAT, "%s: header JSON invalid at byte %d: %s", name, jerr.position + 8,
                        jerr.text);
        goto done;
    }
    if (!json_is_object(root)) {
        rc = sm_err_set(err, SM_EFORMAT, "%s: header is not a JSON object", name);
        goto done;
    }
    size_t n = json_object_size(root);
    if ((rc = grow_tensors(m, n))) {
        rc = sm_err_set(err, SM_ENOMEM, "%s: out of memory", name);
        goto done;
    }
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (strcmp(key, "__metadata__") == 0) {
            if (!json_is_object(val)) {
                rc = sm_err_set(err, SM_EFORMAT, "%s: \"__metadata__\" is not an object", name);
                goto done;
            }
            const char *mk;
            json_t *mv;
            json_object_foreach(val, mk, mv) {
                if (!json_is_string(mv)) {
                    rc = sm_err_set(err, SM_EFORMAT, "%s: __metadata__.%s is not a string", name, mk);
                    goto done;
                }
            }
            if (shard == 0 && !m->metadata_json &&
                !(m->metadata_json = json_dumps(val, JSON_COMPACT | JSON_PRESERVE_ORDER))) {
                /* losing __metadata__ silently would change merge's output */
                rc = sm_err_set(err, SM_ENOMEM, "%s: out of memory copying __metadata__", name);
                goto done;
            }
            continue;
        }
        if (!json_is_object(val)) {
            rc = sm_err_set(err, SM_EFORMAT, "%s: tensor '%s': entry is not an object", name, key);
            goto done;
        }
        st_tensor t;
        memset(&t, 0, sizeof t);
        t.shard = shard;
        const char *ds = json_string_value(json_object_get(val, "dtype"));
        json_t *shape = json_object_get(val, "shape");
        json_t *offs = json_object_get(val, "data_offsets");
        if (!ds) {
            rc = sm_err_set(err, SM_EFORMAT, "%s: tensor '%s': \"dtype\" missing or not a string", name, key);
            goto done;
        }
        t.dtype = ST_DTYPE_COUNT;
        for (uint32_t d = 0; d < ST_DTYPE_COUNT; d++)
            if (strcmp(ds, dtypes[d].name) == 0)
                t.dtype = d;
        if (t.dtype == ST_DTYPE_COUNT) {
            rc = sm_err_set(err, SM_ETYPE, "%s: tensor '%s': unknown dtype \"%s\"", name, key, ds);
            goto done;
        }
        if (!json_is_array(shape) || json_array_size(shape) > ST_MAX_DIMS) {
            rc = sm_err_set(err, SM_EFORMAT, "%s: tensor '%s': \"shape\" must be an array of at most %d integers",
                            name, key, ST_MAX_DIMS);
            goto done;
        }
        t.n_dims = (uint32_t)json_array_size(shape);
        uint64_t nel = 1;
        for (uint32_t d = 0; d < t.n_dims; d++) {
            uint64_t v;
            if (!json_u64(json_array_get(shape, d), &v) || v > (uint64_t)INT64_MAX) {
                rc = sm_err_set(err, SM_EFORMAT, "%s: tensor '%s': shape[%u] is not a non-negative integer", name,
                                key, d);
                goto done;
            }
            if (__builtin_mul_overflow(nel, v, &nel)) {
                rc = sm_err_set(err, SM_ERANGE, "%s: tensor '%s': shape overflows the element count", name, key);
                goto done;
            }
            t.shape[d] = (int64_t)v;
        }
        t.n_elements = nel;
        uint64_t b, e, want;
        if (!json_is_array(offs) || json_array_size(offs) != 2 || !json_u64(json_array_get(offs, 0), &b) ||
            !json_u64(json_array_get(offs, 1), &e) || e < b) {
            rc = sm_err_set(err, SM_EFORMAT, "%s: tensor '%s': \"data_offsets\" must be [begin, end] with begin <= end",
                            name, key);
            goto done;
        }
        if (__builtin_mul_overflow(nel, (uint64_t)dtypes[t.dtype].size, &want)) {
            rc = sm_err_set(err, SM_ERANGE, "%s: tensor '%s': byte size overflows", name, key);
            goto done;
        }
        if (e - b != want) {
            rc = sm_err_set(err, SM_EMISMATCH,
                            "%s: tensor '%s': data_offsets span %llu bytes but shape x %s needs %llu", name, key,
                            (unsigned long long)(e - b), ds, (unsigned long long)want);
            goto done;
        }
        if (e > data_len) {
            rc = sm_err_set(err, SM_ERANGE, "%s: tensor '%s': data [%llu, %llu) ends past the %llu data bytes", name,
                            key, (unsigned long long)b, (unsigned long long)e, (unsigned long long)data_len);
            goto done;
        }
        t.nbytes = want;
        t.file_off = data_start + b;
        t.data = buf + t.file_off;
        t.name = strdup(key);
        if (!t.name) {
            rc = sm_err_set(err, SM_ENOMEM, "%s: out of memory", name);
            goto done;
        }
        m->tensors[m->n_tensors++] = t;
    }
    /* spans must tile [0, data_len) exactly: no gaps, no overlap */
    uint64_t cnt = m->n_tensors - first;
    order = malloc((size_t)(cnt ? cnt : 1) * sizeof *order);
    if (!order) {
        rc = sm_err_set(err, SM_ENOMEM, "%s: out of memory", name);
        goto done;
    }
    for (uint64_t i = 0; i < cnt; i++)
        order[i] = &m->tensors[first + i];
    qsort(order, (size_t)cnt, sizeof *order, cmp_span);
    uint64_t pos = data_start;
    for (uint64_t i = 0; i < cnt; i++) {
        if (order[i]->file_off != pos) {
            rc = sm_err_set(err, SM_EFORMAT,
                            "%s: tensor '%s': data starts at offset %llu, expected %llu (spans must be contiguous from 0)",
                            name, order[i]->name, (unsigned long long)(order[i]->file_off - data_start),
                            (unsigned long long)(pos - data_start));
            goto done;
        }
        pos += order[i]->nbytes;
    }
    if (pos != len) {
        rc = sm_err_set(err, SM_EFORMAT, "%s: %llu trailing bytes after the last tensor's data", name,
                        (unsigned long long)(len - pos));
        goto done;
    }
done:
    free(order);
    json_decref(root);
    return rc;
}

static int add_shard(st_model *m, const char *path, sm_err *err)
{
    st_shard *p = realloc(m->shards, (m->n_shards + 1) * sizeof *p);
    if (!p)
        return sm_err_set(err, SM_ENOMEM, "%s: out of memory", path);
    m->shards = p;
    st_shard *s = &m->shards[m->n_shards];
    memset(s, 0, sizeof *s);
    s->path = strdup(path);
    if (!s->path)
        return sm_err_set(err, SM_ENOMEM, "%s: out of memory", path);
    m->n_shards++;
    int rc = sm_map_open(&s->map, path, err);
    if (rc)
        return rc;
    return st_parse(m, s->map.ptr, s->map.len, path, m->n_shards - 1, err);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int has_suffix(const char *s, const char *suf)
{
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && strcmp(s + n - k, suf) == 0;
}

/* Names of model*.safetensors in dir, sorted (malloc'd array of malloc'd). */
static int list_parts(const char *dir, char ***out, size_t *n, sm_err *err)
{
    *out = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return sm_err_set(err, SM_EIO, "%s: cannot open directory", dir);
    struct dirent *e;
    size_t cap = 0;
    int rc = SM_OK;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, "model", 5) != 0 || !has_suffix(e->d_name, ".safetensors"))
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 8;
            char **p = realloc(*out, cap * sizeof *p);
            if (!p) {
                rc = sm_err_set(err, SM_ENOMEM, "out of memory");
                break;
            }
            *out = p;
        }
        if (!((*out)[*n] = strdup(e->d_name))) {
            rc = sm_err_set(err, SM_ENOMEM, "out of memory");
            break;
        }
        (*n)++;
    }
    closedir(d);
    if (*n)
        qsort(*out, *n, sizeof **out, cmp_str);
    return rc;
}

static void free_names(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

int st_check_index(const st_model *m, const char *dir, const char *text, uint64_t len, const char *index_path,
                   sm_err *err)
{
    json_t *root = NULL;
    int rc = SM_OK;
    if (len > ST_MAX_INDEX)
        return sm_err_set(err, SM_ERANGE, "%s: larger than %u bytes", index_path, ST_MAX_INDEX);
    json_error_t jerr;
    root = json_loadb(text, (size_t)len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        rc = sm_err_set(err, SM_EFORMAT, "%s: invalid JSON at byte %d: %s", index_path, jerr.position, jerr.text);
        goto done;
    }
    json_t *wm = json_object_get(root, "weight_map");
    if (!json_is_object(wm)) {
        rc = sm_err_set(err, SM_EFORMAT, "%s: \"weight_map\" missing or not an object", index_path);
        goto done;
    }
    const char *name;
    json_t *file;
    json_object_foreach(wm, name, file) {
        const char *fn = json_string_value(file);
        if (!fn || strchr(fn, '/') || strcmp(fn, "..") == 0) {
            rc = sm_err_set(err, SM_EFORMAT, "%s: weight_map[\"%s\"] must be a plain file name", index_path, name);
            goto done;
        }
        char p[4096];
        if (snprintf(p, sizeof p, "%s/%s", dir, fn) >= (int)sizeof p) {
            rc = sm_err_set(err, SM_ERANGE, "%s: weight_map[\"%s\"]: shard path too long", index_path, name);
            goto done;
        }
        struct stat st;
        if (stat(p, &st) != 0) {
            rc = sm_err_set(err, SM_EMISSING, "%s: shard '%s' named for tensor '%s' is missing", index_path, fn, name);
            goto done;
        }
        int64_t i = st_find(m, name);
        if (i < 0) {
            rc = sm_err_set(err, SM_EMISSING, "%s: tensor '%s' is in weight_map but not in shard '%s'", index_path,
                            name, fn);
            goto done;
        }
        const char *sp = m->shards[m->tensors[i].shard].path;
        const char *base = strrchr(sp, '/');
        base = base ? base + 1 : sp;
        if (strcmp(base, fn) != 0) {
            rc = sm_err_set(err, SM_EMISMATCH, "%s: tensor '%s' is mapped to '%s' but found in '%s'", index_path, name,
                            fn, base);
            goto done;
        }
    }
    if (json_object_size(wm) != m->n_tensors) {
        for (uint64_t i = 0; i < m->n_tensors; i++)
            if (!json_object_get(wm, m->tensors[i].name)) {
                rc = sm_err_set(err, SM_EMISMATCH, "%s: tensor '%s' in '%s' is not in weight_map", index_path,
                                m->tensors[i].name, m->shards[m->tensors[i].shard].path);
                goto done;
            }
    }
done:
    json_decref(root);
    return rc;
}

/* Reads index.json and checks it (st_check_index). */
static int check_index(const st_model *m, const char *dir, const char *index_path, sm_err *err)
{
    char *text = NULL;
    uint64_t len;
    int rc = sm_read_file(index_path, ST_MAX_INDEX, &text, &len, err);
    if (rc)
        return rc;
    rc = st_check_index(m, dir, text, len, index_path, err);
    free(text);
    return rc;
}

int st_open(st_model *m, const char *path, sm_err *err)
{
    memset(m, 0, sizeof *m);
    struct stat st;
    int rc = SM_OK;
    char **parts = NULL;
    size_t n_parts = 0;
    char dir[4096], index[4200];
    if (stat(path, &st) != 0)
        return sm_err_set(err, SM_EMISSING, "%s: no such file or directory", path);
    if (strlen(path) >= sizeof dir)
        return sm_err_set(err, SM_ERANGE, "%s: path too long", path);
    if (S_ISDIR(st.st_mode)) {
        strcpy(dir, path);
    } else if (has_suffix(path, ".index.json")) {
        strcpy(dir, path);
        char *slash = strrchr(dir, '/');
        if (slash)
            *slash = 0;
        else
            strcpy(dir, ".");
    } else {
        rc = add_shard(m, path, err);
        goto done;
    }
    snprintf(index, sizeof index, "%s/model.safetensors.index.json", dir);
    /* with an index, a shard it names but that is missing is reported by
     * name in check_index rather than silently skipped */
    int has_index = stat(index, &st) == 0 && !S_ISDIR(st.st_mode);
    if ((rc = list_parts(dir, &parts, &n_parts, err)))
        goto done;
    if (n_parts == 0 && !has_index) {
        rc = sm_err_set(err, SM_EMISSING, "%s: no model*.safetensors files", dir);
        goto done;
    }
    for (size_t i = 0; i < n_parts; i++) {
        char p[8300];
        snprintf(p, sizeof p, "%s/%s", dir, parts[i]);
        if ((rc = add_shard(m, p, err)))
            goto done;
    }
    /* the same tensor name in two shards is ambiguous */
    for (uint64_t i = 0; i < m->n_tensors && m->n_shards > 1; i++) {
        int64_t j = st_find(m, m->tensors[i].name);
        if (j >= 0 && (uint64_t)j != i) {
            rc = sm_err_set(err, SM_EDUP, "%s: tensor '%s' appears in both '%s' and '%s'", dir, m->tensors[i].name,
                            m->shards[m->tensors[j].shard].path, m->shards[m->tensors[i].shard].path);
            goto done;
        }
    }
    if (has_index)
        rc = check_index(m, dir, index, err);
done:
    free_names(parts, n_parts);
    if (rc)
        st_close(m);
    return rc;
}

void st_close(st_model *m)
{
    for (uint64_t i = 0; i < m->n_tensors; i++)
        free(m->tensors[i].name);
    free(m->tensors);
    for (uint32_t i = 0; i < m->n_shards; i++) {
        sm_map_close(&m->shards[i].map);
        free(m->shards[i].path);
    }
    free(m->shards);
    free(m->metadata_json);
    memset(m, 0, sizeof *m);
}

int64_t st_find(const st_model *m, const char *name)
{
    /* linear: models have at most a few thousand tensors and callers look
     * each one up once */
    for (uint64_t i = 0; i < m->n_tensors; i++)
        if (strcmp(m->tensors[i].name, name) == 0)
            return (int64_t)i;
    return -1;
}

int st_tensor_read_f32(const st_tensor *t, uint64_t first, uint64_t n, float *out, sm_err *err)
{
    if (first > t->n_elements || n > t->n_elements - first)
        return sm_err_set(err, SM_ERANGE, "tensor '%s': elements [%llu, +%llu) out of %llu", t->name,
                          (unsigned long long)first, (unsigned long long)n, (unsigned long long)t->n_elements);
    switch (t->dtype) {
    case ST_F32:
        memcpy(out, t->data + first * 4, (size_t)n * 4);
        return SM_OK;
    case ST_F16:
        for (uint64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, t->data + (first + i) * 2, 2);
            out[i] = sm_f16_to_f32(h);
        }
        return SM_OK;
    case ST_BF16:
        for (uint64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, t->data + (first + i) * 2, 2);
            out[i] = sm_bf16_to_f32(h);
        }
        return SM_OK;
    default:
        return sm_err_set(err, SM_ETYPE, "tensor '%s': dtype %s is not supported (F32, F16 and BF16 are)", t->name,
                          st_dtype_name(t->dtype));
    }
}

void st_tensor_release(const st_model *m, const st_tensor *t)
{
    if (t->shard < m->n_shards)
        sm_map_release(&m->shards[t->shard].map, t->file_off, t->nbytes);
}
