/* GGUF reader/writer: round trips of llama.cpp's files and a malformed-input table. */
#include <criterion/criterion.h>

#include "formats/gguf.h"
#include "formats/types.h"
#include "support.h"

#include <stdlib.h>
#include <string.h>

/* Copies every KV and tensor of src into a new file and checks the bytes are
 * identical: proves reader and writer agree with llama.cpp's layout. */
static void roundtrip(const char *rel)
{
    gguf_file g;
    sm_err err = {0};
    const char *path = ts_path(rel);
    cr_assert_eq(gguf_open(&g, path, &err), 0, "%s", err.msg);
    gguf_writer *w = gguf_writer_init();
    for (uint64_t i = 0; i < g.n_kv; i++)
        cr_assert_eq(gguf_writer_copy_kv(w, &g.kv[i]), 0);
    for (uint64_t i = 0; i < g.n_tensors; i++) {
        char *name = sm_str_dup(g.tensors[i].name);
        cr_assert_eq(gguf_writer_add_tensor(w, name, g.tensors[i].n_dims, g.tensors[i].ne, g.tensors[i].type, &err), 0,
                     "%s", err.msg);
        free(name);
    }
    char *dir = ts_tmpdir();
    char out[1200];
    snprintf(out, sizeof out, "%s/rt.gguf", dir);
    cr_assert_eq(gguf_writer_begin(w, out, &err), 0, "%s", err.msg);
    for (uint64_t i = 0; i < g.n_tensors; i++)
        cr_assert_eq(gguf_writer_write_tensor(w, g.tensors[i].data, g.tensors[i].nbytes, &err), 0, "%s", err.msg);
    cr_assert_eq(gguf_writer_finish(w, &err), 0, "%s", err.msg);
    gguf_writer_free(w);
    size_t la, lb;
    uint8_t *a = ts_read(path, &la), *b = ts_read(out, &lb);
    cr_assert(a && b);
    cr_assert_eq(la, lb, "%s: size %zu vs %zu", rel, la, lb);
    cr_assert(memcmp(a, b, la) == 0, "%s: bytes differ", rel);
    cr_assert_eq(ts_count_entries(dir), 1, "temp file left behind");
    free(a);
    free(b);
    ts_rmtree(dir);
    free(dir);
    gguf_close(&g);
}

Test(gguf, roundtrip_reference_files)
{
    static const char *files[] = {
        "reference/stories260K/convert-f32.gguf", "reference/stories260K/convert-f16.gguf",
        "reference/stories260K/convert-q8_0.gguf", "reference/stories260K/Q4_K_M-imat.gguf",
        "reference/tinystories-3m/Q3_K_S.gguf", "reference/tinystories-3m/Q6_K-imat.gguf",
        "reference/tinystories-3m/lora-domain.gguf", "reference/qwen2-tiny/convert-f16.gguf",
        "vocab/ggml-vocab-llama-spm.gguf", "vocab/ggml-vocab-gpt-2.gguf",
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        roundtrip(files[i]);
}

Test(gguf, reads_metadata)
{
    gguf_file g;
    sm_err err = {0};
    cr_assert_eq(gguf_open(&g, ts_path("reference/tinystories-3m/convert-f16.gguf"), &err), 0, "%s", err.msg);
    cr_assert_eq(g.version, 3);
    cr_assert_eq(g.n_kv, 26);
    cr_assert_eq(g.n_tensors, 39);
    sm_str s;
    cr_assert_eq(gguf_get_str(&g, "general.architecture", &s, &err), 0);
    cr_assert(sm_str_eq(s, "llama"));
    uint32_t u;
    cr_assert_eq(gguf_get_u32(&g, "llama.embedding_length", &u, &err), 0);
    cr_assert_eq(u, 256);
    float f;
    cr_assert_eq(gguf_get_f32(&g, "llama.attention.layer_norm_rms_epsilon", &f, &err), 0);
    cr_assert_float_eq(f, 1e-5f, 1e-12);
    cr_assert_eq(gguf_get_u32(&g, "general.architecture", &u, &err), SM_ETYPE);
    cr_assert(strstr(err.msg, "general.architecture"));
    cr_assert_eq(gguf_get_u32(&g, "no.such.key", &u, &err), SM_EMISSING);
    const gguf_kv *tok = gguf_get(&g, "tokenizer.ggml.tokens");
    cr_assert(tok && tok->type == GGUF_VT_ARRAY && tok->arr_type == GGUF_VT_STRING && tok->n == 512);
    cr_assert(sm_str_eq(tok->strs[1], "<s>"));
    int64_t ti = gguf_find_tensor(&g, "blk.0.ffn_down.weight");
    cr_assert(ti >= 0);
    cr_assert_eq(g.tensors[ti].ne[0], 768);
    cr_assert_eq(g.tensors[ti].ne[1], 256);
    cr_assert_eq(g.tensors[ti].type, SM_TYPE_F16);
    cr_assert_eq(g.tensors[ti].nbytes, 768u * 256u * 2u);
    gguf_close(&g);
}

/* ---------------------------------------------------------- malformed */

typedef struct bb {
    uint8_t *p;
    size_t n, cap;
} bb;

static void bb_put(bb *b, const void *d, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void bb_u32(bb *b, uint32_t v) { bb_put(b, &v, 4); }
static void bb_u64(bb *b, uint64_t v) { bb_put(b, &v, 8); }
static void bb_str(bb *b, const char *s)
{
    bb_u64(b, strlen(s));
    bb_put(b, s, strlen(s));
}
static void bb_pad(bb *b, size_t a)
{
    while (b->n % a)
        bb_put(b, "", 1);
}

/* A small valid file: 3 KVs, 2 F32 tensors of 8 and 4 elements. Knobs let
 * each case break one thing. */
typedef struct knobs {
    uint32_t version;
    uint64_t n_kv_delta;     /* added to the real KV count */
    uint64_t n_t_delta;
    int dup_key;
    uint32_t kv_type;        /* type of the 2nd KV (u32 by default) */
    uint64_t str_len;        /* length field of the 1st KV's string (0 = real) */
    uint32_t arr_type;
    uint64_t arr_len;        /* 0 = real */
    uint32_t align;          /* general.alignment value, 0 = none */
    uint32_t n_dims;         /* of tensor 0 */
    uint64_t dim0;           /* of tensor 0 */
    uint32_t ttype;          /* of tensor 0 */
    uint64_t off1;           /* offset of tensor 1 (default 32) */
    int dup_tensor;
    size_t truncate;         /* cut the file to this many bytes (0 = whole) */
} knobs;

static bb build(knobs k)
{
    bb b = {0};
    bb_put(&b, "GGUF", 4);
    bb_u32(&b, k.version ? k.version : 3);
    bb_u64(&b, 2 + k.n_t_delta);
    bb_u64(&b, (k.align ? 4 : 3) + k.n_kv_delta);
    bb_str(&b, "general.architecture");
    bb_u32(&b, GGUF_VT_STRING);
    bb_u64(&b, k.str_len ? k.str_len : 5);
    bb_put(&b, "llama", 5);
    bb_str(&b, k.dup_key ? "general.architecture" : "llama.block_count");
    bb_u32(&b, k.kv_type ? k.kv_type : GGUF_VT_UINT32);
    bb_u32(&b, 4);
    bb_str(&b, "tokenizer.ggml.scores");
    bb_u32(&b, GGUF_VT_ARRAY);
    bb_u32(&b, k.arr_type ? k.arr_type : GGUF_VT_FLOAT32);
    bb_u64(&b, k.arr_len ? k.arr_len : 2);
    float sc[2] = {0.5f, -1.0f};
    bb_put(&b, sc, 8);
    if (k.align) {
        bb_str(&b, "general.alignment");
        bb_u32(&b, GGUF_VT_UINT32);
        bb_u32(&b, k.align);
    }
    uint32_t a = k.align && !(k.align & (k.align - 1)) ? k.align : 32;
    bb_str(&b, "t0");
    uint32_t nd = k.n_dims ? k.n_dims : 1;
    bb_u32(&b, nd);
    for (uint32_t d = 0; d < nd && d < 8; d++)
        bb_u64(&b, d == 0 ? (k.dim0 ? k.dim0 : 8) : 1);
    bb_u32(&b, k.ttype ? k.ttype : SM_TYPE_F32);
    bb_u64(&b, 0);
    bb_str(&b, k.dup_tensor ? "t0" : "t1");
    bb_u32(&b, 1);
    bb_u64(&b, 4);
    bb_u32(&b, SM_TYPE_F32);
    bb_u64(&b, k.off1 ? k.off1 : (a > 32 ? a : 32));
    bb_pad(&b, a);
    float data[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    bb_put(&b, data, 32);
    bb_pad(&b, a);
    bb_put(&b, data, 16);
    bb_pad(&b, a);
    if (k.truncate && k.truncate < b.n)
        b.n = k.truncate;
    return b;
}

typedef struct mcase {
    const char *what;
    knobs k;
    int code;
    const char *needle;
} mcase;

static int parse(bb b, sm_err *err)
{
    gguf_file g;
    int rc = gguf_parse(&g, b.p, b.n, "case.gguf", err);
    if (rc == 0)
        gguf_close(&g);
    return rc;
}

Test(gguf, valid_base_case_parses)
{
    sm_err err = {0};
    bb b = build((knobs){0});
    cr_assert_eq(parse(b, &err), 0, "%s", err.msg);
    knobs k = {0};
    k.align = 64;
    bb c = build(k);
    cr_assert_eq(parse(c, &err), 0, "%s", err.msg);
    free(b.p);
    free(c.p);
}

Test(gguf, malformed_table)
{
    static const mcase cases[] = {
        {"bad magic", {.version = 3, .truncate = 3}, SM_EFORMAT, "not a GGUF"},
        {"version 1", {.version = 1}, SM_EUNSUPP, "version 1"},
        {"version 99", {.version = 99}, SM_EUNSUPP, "version 99"},
        {"huge kv count", {.n_kv_delta = 1ull << 40}, SM_ERANGE, "key/value count"},
        {"huge tensor count", {.n_t_delta = 1ull << 40}, SM_ERANGE, "tensor count"},
        {"kv count one too many", {.n_kv_delta = 1}, SM_ERANGE, "offset 178"},
        {"duplicate key", {.dup_key = 1}, SM_EDUP, "duplicate key 'general.architecture'"},
        {"unknown value type", {.kv_type = 13}, SM_ETYPE, "unknown value type 13"},
        {"huge string length", {.str_len = 1ull << 62}, SM_ERANGE, "exceeds the cap"},
        {"string past end", {.str_len = 100000}, SM_EFORMAT, "truncated"},
        {"array of arrays", {.arr_type = GGUF_VT_ARRAY}, SM_ETYPE, "array of arrays"},
        {"array of unknown", {.arr_type = 77}, SM_ETYPE, "unknown type"},
        {"huge array", {.arr_len = 1ull << 40}, SM_ERANGE, "array length"},
        {"array past end", {.arr_len = 1ull << 20}, SM_EFORMAT, "truncated"},
        {"string array too long", {.arr_type = GGUF_VT_STRING, .arr_len = 1ull << 30}, SM_EFORMAT, "cannot fit"},
        {"alignment 0", {.align = 0xffffffff}, SM_EFORMAT, "power of two"},
        {"alignment 48", {.align = 48}, SM_EFORMAT, "power of two"},
        {"n_dims 5", {.n_dims = 5}, SM_ERANGE, "n_dims 5"},
        {"n_dims 0 via huge", {.n_dims = 0xffffffff}, SM_ERANGE, "n_dims"},
        {"dim overflow", {.n_dims = 2, .dim0 = 1ull << 63}, SM_ERANGE, "dimension 0"},
        {"unknown tensor type", {.ttype = 4}, SM_ETYPE, "unknown tensor type 4"},
        {"tensor type 200", {.ttype = 200}, SM_ETYPE, "unknown tensor type 200"},
        {"row not multiple of block", {.ttype = SM_TYPE_Q8_0}, SM_EFORMAT, "not a multiple"},
        {"duplicate tensor", {.dup_tensor = 1}, SM_EDUP, "duplicate tensor name 't0'"},
        {"unaligned offset", {.off1 = 33}, SM_EFORMAT, "not a multiple of the alignment"},
        {"overlap", {.off1 = 0}, SM_EFORMAT, "overlap"}, /* off1 = 0 means default; see below */
        {"offset past end", {.off1 = 1ull << 40}, SM_ERANGE, "outside"},
        {"tensor too big for file", {.dim0 = 1024}, SM_ERANGE, "outside"},
    };
    int n = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        knobs k = cases[i].k;
        if (strcmp(cases[i].what, "overlap") == 0)
            k.off1 = 0, k.dim0 = 16; /* t0 now 64 bytes, t1 at 32 overlaps */
        if (strcmp(cases[i].what, "bad magic") == 0) {
            bb b = build(k);
            b.p[0] = 'X';
            sm_err err = {0};
            cr_assert_eq(parse(b, &err), SM_EFORMAT, "%s", cases[i].what);
            free(b.p);
            n++;
            continue;
        }
        bb b = build(k);
        sm_err err = {0};
        int rc = parse(b, &err);
        cr_expect_eq(rc, cases[i].code, "case '%s': got %d (%s)", cases[i].what, rc, err.msg);
        cr_expect(strstr(err.msg, cases[i].needle) != NULL, "case '%s': message '%s' lacks '%s'", cases[i].what,
                  err.msg, cases[i].needle);
        cr_expect(strstr(err.msg, "case.gguf") != NULL, "case '%s': message names no file", cases[i].what);
        free(b.p);
        n++;
    }
    cr_assert_geq(n, 25);
}

/* Every prefix of a real file is rejected cleanly (never a crash) and the
 * error says where the truncation is. */
Test(gguf, truncation_at_every_header_offset)
{
    size_t len;
    uint8_t *full = ts_read(ts_path("reference/stories260K/convert-f16.gguf"), &len);
    cr_assert(full);
    gguf_file g;
    sm_err err;
    cr_assert_eq(gguf_parse(&g, full, len, "full", &err), 0);
    uint64_t data_off = g.data_offset;
    gguf_close(&g);
    int rejected = 0;
    for (size_t cut = 0; cut < data_off + 64; cut += (cut < 2000 ? 1 : 97)) {
        uint8_t *p = malloc(cut ? cut : 1);
        memcpy(p, full, cut);
        int rc = gguf_parse(&g, p, cut, "cut.gguf", &err);
        cr_assert_neq(rc, 0, "prefix of %zu bytes accepted", cut);
        cr_assert(rc == SM_EFORMAT || rc == SM_ERANGE, "prefix %zu: code %d (%s)", cut, rc, err.msg);
        rejected++;
        free(p);
    }
    cr_assert_gt(rejected, 2000);
    free(full);
}

Test(gguf, writer_rejects_bad_declarations)
{
    gguf_writer *w = gguf_writer_init();
    sm_err err = {0};
    int64_t ne[2] = {172, 64};
    cr_assert_eq(gguf_writer_set_str(w, "a", "x"), 0);
    cr_assert_eq(gguf_writer_set_u32(w, "a", 1), SM_EDUP);
    cr_assert_eq(gguf_writer_add_tensor(w, "t", 2, ne, SM_TYPE_Q8_0, &err), SM_EINVAL);
    cr_assert(strstr(err.msg, "not a multiple"));
    cr_assert_eq(gguf_writer_add_tensor(w, "t", 2, ne, SM_TYPE_F16, &err), 0);
    cr_assert_eq(gguf_writer_add_tensor(w, "t", 2, ne, SM_TYPE_F16, &err), SM_EDUP);
    cr_assert_eq(gguf_writer_add_tensor(w, "u", 2, ne, 4, &err), SM_ETYPE);
    char *dir = ts_tmpdir();
    char out[1200];
    snprintf(out, sizeof out, "%s/x.gguf", dir);
    cr_assert_eq(gguf_writer_begin(w, out, &err), 0);
    cr_assert_eq(gguf_writer_write_tensor(w, "abc", 3, &err), SM_EINVAL);
    cr_assert_eq(gguf_writer_finish(w, &err), SM_EINVAL);
    cr_assert(!ts_exists(out), "incomplete file must not appear");
    cr_assert_eq(ts_count_entries(dir), 0, "temp file must be removed");
    gguf_writer_free(w);
    ts_rmtree(dir);
    free(dir);
}
