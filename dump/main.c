/* smelt-dump — print the metadata and tensor table of a GGUF or safetensors
 * file (like gguf-dump), as text or as JSON (--json). */
#include "gguf.h"
#include "safetensors.h"
#include "types.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *prog = "smelt-dump";

static void usage(FILE *f)
{
    fprintf(f,
            "usage: %s FILE [--json] [--no-tensors] [--full]\n"
            "Prints the key/values and the tensor table of a GGUF file, or the tensors of a\n"
            "safetensors file / sharded checkpoint (model.safetensors.index.json or directory).\n"
            "  --json        machine-readable output\n"
            "  --no-tensors  metadata only\n"
            "  --full        print whole arrays (default: the first 8 elements)\n",
            prog);
}

/* Writes a string with control characters escaped, at most max bytes. */
static void put_escaped(sm_str s, uint64_t max)
{
    uint64_t n = s.len < max ? s.len : max;
    for (uint64_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        if (c == '\n')
            fputs("\\n", stdout);
        else if (c == '\t')
            fputs("\\t", stdout);
        else if (c < 32 || c == 127)
            printf("\\x%02x", c);
        else
            putchar(c);
    }
    if (n < s.len)
        printf("...(%llu bytes)", (unsigned long long)s.len);
}

static uint64_t rd(const uint8_t *p, uint32_t n)
{
    uint64_t v = 0;
    for (int i = (int)n - 1; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* Value of a fixed-size element as JSON. */
static json_t *scalar_json(uint32_t t, const uint8_t *p)
{
    uint32_t sz = gguf_vtype_size(t);
    uint64_t u = rd(p, sz);
    switch (t) {
    case GGUF_VT_UINT8: case GGUF_VT_UINT16: case GGUF_VT_UINT32: case GGUF_VT_UINT64:
        return json_integer((json_int_t)u);
    case GGUF_VT_INT8: return json_integer((int8_t)u);
    case GGUF_VT_INT16: return json_integer((int16_t)u);
    case GGUF_VT_INT32: return json_integer((int32_t)u);
    case GGUF_VT_INT64: return json_integer((json_int_t)u);
    case GGUF_VT_BOOL: return json_boolean(u != 0);
    case GGUF_VT_FLOAT32: {
        float f;
        uint32_t b = (uint32_t)u;
        memcpy(&f, &b, 4);
        return json_real(f);
    }
    case GGUF_VT_FLOAT64: {
        double d;
        memcpy(&d, &u, 8);
        return json_real(d);
    }
    default: return json_null();
    }
}

static void print_scalar(uint32_t t, const uint8_t *p)
{
    json_t *j = scalar_json(t, p);
    if (json_is_real(j))
        printf("%.9g", json_real_value(j));
    else if (json_is_boolean(j))
        printf("%s", json_is_true(j) ? "true" : "false");
    else
        printf("%lld", (long long)json_integer_value(j));
    json_decref(j);
}

static int dump_gguf(const char *path, int as_json, int tensors, int full)
{
    gguf_file g;
    sm_err err = {0};
    if (gguf_open(&g, path, &err)) {
        fprintf(stderr, "%s: %s\n", prog, err.msg);
        return 1;
    }
    uint64_t show = full ? UINT64_MAX : 8;
    if (as_json) {
        json_t *root = json_object(), *kvs = json_array(), *tarr = json_array();
        json_object_set_new(root, "file", json_string(path));
        json_object_set_new(root, "format", json_string("gguf"));
        json_object_set_new(root, "version", json_integer(g.version));
        json_object_set_new(root, "alignment", json_integer(g.alignment));
        json_object_set_new(root, "data_offset", json_integer((json_int_t)g.data_offset));
        for (uint64_t i = 0; i < g.n_kv; i++) {
            const gguf_kv *kv = &g.kv[i];
            json_t *o = json_object();
            json_object_set_new(o, "key", json_stringn(kv->key.ptr, (size_t)kv->key.len));
            json_object_set_new(o, "type", json_string(gguf_vtype_name(kv->type)));
            if (kv->type == GGUF_VT_STRING) {
                json_object_set_new(o, "value", json_stringn(kv->v.str.ptr, (size_t)kv->v.str.len));
            } else if (kv->type == GGUF_VT_ARRAY) {
                json_object_set_new(o, "elem_type", json_string(gguf_vtype_name(kv->arr_type)));
                json_object_set_new(o, "count", json_integer((json_int_t)kv->n));
                json_t *arr = json_array();
                uint64_t n = kv->n < show ? kv->n : show;
                for (uint64_t j = 0; j < n; j++) {
                    if (kv->arr_type == GGUF_VT_STRING)
                        json_array_append_new(arr, json_stringn(kv->strs[j].ptr, (size_t)kv->strs[j].len));
                    else
                        json_array_append_new(arr, scalar_json(kv->arr_type, kv->raw + j * gguf_vtype_size(kv->arr_type)));
                }
                json_object_set_new(o, "value", arr);
            } else {
                json_object_set_new(o, "value", scalar_json(kv->type, kv->raw));
            }
            json_array_append_new(kvs, o);
        }
        for (uint64_t i = 0; tensors && i < g.n_tensors; i++) {
            const gguf_tensor *t = &g.tensors[i];
            json_t *o = json_object(), *shape = json_array();
            json_object_set_new(o, "name", json_stringn(t->name.ptr, (size_t)t->name.len));
            for (uint32_t d = 0; d < t->n_dims; d++)
                json_array_append_new(shape, json_integer(t->ne[d]));
            json_object_set_new(o, "shape", shape);
            json_object_set_new(o, "type", json_string(sm_type_name(t->type)));
            json_object_set_new(o, "offset", json_integer((json_int_t)t->offset));
            json_object_set_new(o, "bytes", json_integer((json_int_t)t->nbytes));
            json_array_append_new(tarr, o);
        }
        json_object_set_new(root, "metadata", kvs);
        json_object_set_new(root, "tensors", tarr);
        char *s = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
        puts(s);
        free(s);
        json_decref(root);
        gguf_close(&g);
        return 0;
    }
    printf("%s: GGUF v%u, %llu key/values, %llu tensors, alignment %u, data at offset %llu\n", path, g.version,
           (unsigned long long)g.n_kv, (unsigned long long)g.n_tensors, g.alignment,
           (unsigned long long)g.data_offset);
    for (uint64_t i = 0; i < g.n_kv; i++) {
        const gguf_kv *kv = &g.kv[i];
        printf("%5llu: %-7s ", (unsigned long long)i + 1,
               kv->type == GGUF_VT_ARRAY ? "[arr]" : gguf_vtype_name(kv->type));
        put_escaped(kv->key, 256);
        printf(" = ");
        if (kv->type == GGUF_VT_STRING) {
            putchar('"');
            put_escaped(kv->v.str, full ? UINT64_MAX : 120);
            putchar('"');
        } else if (kv->type == GGUF_VT_ARRAY) {
            printf("[%s x %llu] [", gguf_vtype_name(kv->arr_type), (unsigned long long)kv->n);
            uint64_t n = kv->n < show ? kv->n : show;
            for (uint64_t j = 0; j < n; j++) {
                if (j)
                    printf(", ");
                if (kv->arr_type == GGUF_VT_STRING) {
                    putchar('"');
                    put_escaped(kv->strs[j], 64);
                    putchar('"');
                } else {
                    print_scalar(kv->arr_type, kv->raw + j * gguf_vtype_size(kv->arr_type));
                }
            }
            printf("%s]", n < kv->n ? ", ..." : "");
        } else {
            print_scalar(kv->type, kv->raw);
        }
        putchar('\n');
    }
    if (tensors) {
        uint64_t total = 0;
        for (uint64_t i = 0; i < g.n_tensors; i++) {
            const gguf_tensor *t = &g.tensors[i];
            char shape[96];
            size_t o = 0;
            for (uint32_t d = 0; d < t->n_dims; d++)
                o += (size_t)snprintf(shape + o, sizeof shape - o, "%s%lld", d ? " x " : "", (long long)t->ne[d]);
            printf("%5llu: %-8s %-24s ", (unsigned long long)i + 1, sm_type_name(t->type), shape);
            put_escaped(t->name, 256);
            printf("  (%llu bytes at %llu)\n", (unsigned long long)t->nbytes, (unsigned long long)t->offset);
            total += t->nbytes;
        }
        printf("tensor data: %llu bytes\n", (unsigned long long)total);
    }
    gguf_close(&g);
    return 0;
}

static int dump_st(const char *path, int as_json, int tensors)
{
    st_model m;
    sm_err err = {0};
    if (st_open(&m, path, &err)) {
        fprintf(stderr, "%s: %s\n", prog, err.msg);
        return 1;
    }
    if (as_json) {
        json_t *root = json_object(), *tarr = json_array();
        json_object_set_new(root, "file", json_string(path));
        json_object_set_new(root, "format", json_string("safetensors"));
        json_object_set_new(root, "shards", json_integer(m.n_shards));
        if (m.metadata_json) {
            json_t *md = json_loads(m.metadata_json, 0, NULL);
            if (md)
                json_object_set_new(root, "metadata", md);
        }
        for (uint64_t i = 0; tensors && i < m.n_tensors; i++) {
            const st_tensor *t = &m.tensors[i];
            json_t *o = json_object(), *shape = json_array();
            json_object_set_new(o, "name", json_string(t->name));
            for (uint32_t d = 0; d < t->n_dims; d++)
                json_array_append_new(shape, json_integer(t->shape[d]));
            json_object_set_new(o, "shape", shape);
            json_object_set_new(o, "dtype", json_string(st_dtype_name(t->dtype)));
            json_object_set_new(o, "shard", json_integer(t->shard));
            json_object_set_new(o, "offset", json_integer((json_int_t)t->file_off));
            json_object_set_new(o, "bytes", json_integer((json_int_t)t->nbytes));
            json_array_append_new(tarr, o);
        }
        json_object_set_new(root, "tensors", tarr);
        char *s = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
        puts(s);
        free(s);
        json_decref(root);
    } else {
        printf("%s: safetensors, %u file(s), %llu tensors\n", path, m.n_shards, (unsigned long long)m.n_tensors);
        if (m.metadata_json)
            printf("__metadata__ = %s\n", m.metadata_json);
        for (uint64_t i = 0; tensors && i < m.n_tensors; i++) {
            const st_tensor *t = &m.tensors[i];
            char shape[128];
            size_t o = 0;
            for (uint32_t d = 0; d < t->n_dims; d++)
                o += (size_t)snprintf(shape + o, sizeof shape - o, "%s%lld", d ? " x " : "", (long long)t->shape[d]);
            printf("%5llu: %-5s %-24s %s  (shard %u, %llu bytes)\n", (unsigned long long)i + 1, st_dtype_name(t->dtype),
                   o ? shape : "scalar", t->name, t->shard, (unsigned long long)t->nbytes);
        }
    }
    st_close(&m);
    return 0;
}

int main(int argc, char **argv)
{
    const char *path = NULL;
    int as_json = 0, tensors = 1, full = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            as_json = 1;
        else if (!strcmp(argv[i], "--no-tensors"))
            tensors = 0;
        else if (!strcmp(argv[i], "--full"))
            full = 1;
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "%s: unknown option '%s'\n", prog, argv[i]);
            return 2;
        } else if (!path)
            path = argv[i];
        else {
            fprintf(stderr, "%s: unexpected argument '%s'\n", prog, argv[i]);
            return 2;
        }
    }
    if (!path) {
        usage(stderr);
        return 2;
    }
    FILE *f = fopen(path, "rb");
    char magic[4] = {0};
    if (f) {
        if (fread(magic, 1, 4, f) != 4)
            memset(magic, 0, 4);
        fclose(f);
    }
    if (memcmp(magic, "GGUF", 4) == 0)
        return dump_gguf(path, as_json, tensors, full);
    return dump_st(path, as_json, tensors);
}
