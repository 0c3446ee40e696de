/* test_formats_imatrix.c — legacy .dat and GGUF imatrix reading/writing,
 * against llama-imatrix's reference files and a malformed-input table. */
#include "gguf.h"
#include "imatrix.h"
#include "support.h"
#include "types.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *tmp;

static void setup(void) { tmp = ts_tmpdir(); cr_assert(tmp); }
static void teardown(void) { ts_rmtree(tmp); free(tmp); }
TestSuite(imatrix, .init = setup, .fini = teardown);

Test(imatrix, legacy_reference_stories260K)
{
    sm_imatrix im;
    sm_err err = {0};
    cr_assert_eq(sm_imatrix_read(&im, ts_path("reference/stories260K/imatrix.dat"), &err), 0, "%s", err.msg);
    cr_assert_eq(im.format, SM_IMATRIX_LEGACY);
    cr_assert_eq(im.n_entries, 35); /* 5 layers x 7 projections; no token_embd, tied output */
    cr_assert_eq(im.chunk_count, 50);
    cr_assert(im.has_trailer);
    cr_assert_eq(im.n_datasets, 1);
    cr_assert_str_eq(im.datasets[0], "../../text/groups_merged.txt");
    const sm_imatrix_entry *e = &im.entries[0];
    cr_assert_str_eq(e->name, "blk.4.ffn_down.weight");
    cr_assert_eq(e->ncall, 50);
    cr_assert_eq(e->n_per_mat, 172);
    cr_assert_eq(e->n_mat, 1);
    cr_assert_null(e->counts);
    cr_assert_float_eq(e->sums[0], 12.418314f, 1e-5f);
    int64_t k = sm_imatrix_find(&im, "blk.0.attn_q.weight");
    cr_assert_geq(k, 0);
    cr_assert_eq(im.entries[k].n_per_mat, 64);
    cr_assert_eq(sm_imatrix_find(&im, "token_embd.weight"), -1);
    /* llama-quantize divides the stored values by ncall, in float */
    float v[172];
    cr_assert_eq(sm_imatrix_entry_values(e, v), 0);
    for (int i = 0; i < 172; i++)
        cr_assert_eq(v[i], e->sums[i] / 50.0f);
    sm_imatrix_free(&im);
}

Test(imatrix, legacy_roundtrip_is_byte_identical)
{
    const char *refs[] = {"reference/stories260K/imatrix.dat", "reference/tinystories-3m/imatrix.dat"};
    for (int r = 0; r < 2; r++) {
        sm_imatrix im;
        sm_err err = {0};
        cr_assert_eq(sm_imatrix_read(&im, ts_path(refs[r]), &err), 0, "%s", err.msg);
        char out[1200];
        snprintf(out, sizeof out, "%s/rt.dat", tmp);
        cr_assert_eq(sm_imatrix_write_legacy(&im, out, &err), 0, "%s", err.msg);
        size_t la, lb;
        uint8_t *a = ts_read(ts_path(refs[r]), &la), *b = ts_read(out, &lb);
        cr_assert(a && b);
        cr_assert_eq(la, lb, "%s: %zu vs %zu bytes", refs[r], la, lb);
        cr_assert_eq(memcmp(a, b, la), 0, "%s: bytes differ", refs[r]);
        free(a);
        free(b);
        sm_imatrix_free(&im);
    }
}

Test(imatrix, gguf_write_read_and_values)
{
    sm_imatrix im;
    memset(&im, 0, sizeof im);
    sm_err err = {0};
    im.n_entries = 2;
    im.entries = calloc(2, sizeof *im.entries);
    im.entries[0].name = strdup("blk.0.ffn_up.weight");
    im.entries[0].n_per_mat = 4;
    im.entries[0].n_mat = 1;
    im.entries[0].sums = malloc(4 * sizeof(float));
    im.entries[0].counts = malloc(sizeof(float));
    for (int i = 0; i < 4; i++)
        im.entries[0].sums[i] = (float)(i + 1) * 3.0f;
    im.entries[0].counts[0] = 3.0f;
    im.entries[1].name = strdup("blk.0.ffn_down_exps.weight"); /* 3 experts, one never routed */
    im.entries[1].n_per_mat = 2;
    im.entries[1].n_mat = 3;
    im.entries[1].sums = malloc(6 * sizeof(float));
    im.entries[1].counts = malloc(3 * sizeof(float));
    im.entries[1].in_sum = malloc(6 * sizeof(float));
    for (int i = 0; i < 6; i++) {
        im.entries[1].sums[i] = (float)i;
        im.entries[1].in_sum[i] = -(float)i;
    }
    im.entries[1].counts[0] = 2.0f;
    im.entries[1].counts[1] = 0.0f;
    im.entries[1].counts[2] = 4.0f;
    im.chunk_count = 7;
    im.chunk_size = 512;
    im.n_datasets = 2;
    im.datasets = calloc(2, sizeof(char *));
    im.datasets[0] = strdup("a.txt");
    im.datasets[1] = strdup("b.txt");
    char out[1200];
    snprintf(out, sizeof out, "%s/im.gguf", tmp);
    cr_assert_eq(sm_imatrix_write_gguf(&im, out, &err), 0, "%s", err.msg);
    sm_imatrix_free(&im);

    /* the layout newer llama.cpp writes */
    gguf_file g;
    cr_assert_eq(gguf_open(&g, out, &err), 0, "%s", err.msg);
    sm_str s;
    cr_assert_eq(gguf_get_str(&g, "general.type", &s, &err), 0);
    cr_assert(sm_str_eq(s, "imatrix"));
    int64_t t = gguf_find_tensor(&g, "blk.0.ffn_down_exps.weight.counts");
    cr_assert_geq(t, 0);
    cr_assert_eq(g.tensors[t].ne[0], 1);
    cr_assert_eq(g.tensors[t].ne[1], 3);
    cr_assert_eq(g.tensors[t].type, SM_TYPE_F32);
    t = gguf_find_tensor(&g, "blk.0.ffn_down_exps.weight.in_sum2");
    cr_assert_eq(g.tensors[t].ne[0], 2);
    cr_assert_eq(g.tensors[t].ne[1], 3);
    cr_assert_geq(gguf_find_tensor(&g, "blk.0.ffn_down_exps.weight.in_sum"), 0);
    cr_assert_eq(gguf_find_tensor(&g, "blk.0.ffn_up.weight.in_sum"), -1);
    gguf_close(&g);

    cr_assert_eq(sm_imatrix_read(&im, out, &err), 0, "%s", err.msg);
    cr_assert_eq(im.format, SM_IMATRIX_GGUF);
    cr_assert_eq(im.n_entries, 2);
    cr_assert_eq(im.chunk_count, 7);
    cr_assert_eq(im.chunk_size, 512);
    cr_assert_eq(im.n_datasets, 2);
    cr_assert_str_eq(im.datasets[1], "b.txt");
    cr_assert_str_eq(im.entries[1].name, "blk.0.ffn_down_exps.weight");
    cr_assert_not_null(im.entries[1].in_sum);
    cr_assert_eq(im.entries[1].in_sum[5], -5.0f);
    float v[6];
    cr_assert_eq(sm_imatrix_entry_values(&im.entries[0], v), 0);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(v[i], (float)(i + 1));
    cr_assert_eq(sm_imatrix_entry_values(&im.entries[1], v), 0);
    const float want[6] = {0.0f, 0.5f, 1.0f, 1.0f, 1.0f, 1.25f}; /* expert 1 had no tokens -> 1 */
    for (int i = 0; i < 6; i++)
        cr_assert_eq(v[i], want[i], "value %d: %f", i, (double)v[i]);
    sm_imatrix_free(&im);
}

/* ---------------------------------------------------------- malformed */

static uint8_t *legacy_base(size_t *n)
{
    uint8_t *b = ts_read(ts_path("reference/stories260K/imatrix.dat"), n);
    cr_assert(b);
    return b;
}

static void put32(uint8_t *p, int32_t v) { memcpy(p, &v, 4); }

Test(imatrix, legacy_malformed_table)
{
    size_t n;
    uint8_t *base = legacy_base(&n);
    /* layout of the first entry: [0]=n_entries [4]=name_len(21) [8]=name
     * [29]=ncall [33]=nval(172) [37]=values; trailer = last 36 bytes */
    const size_t tr = n - 36;
    const struct {
        const char *what;
        int64_t at;      /* byte offset to patch (-1: none) */
        int32_t val;     /* int32 written there */
        int64_t cut;     /* truncate to this length (-1: keep) */
        int64_t extra;   /* append this many zero bytes */
        int code;
        const char *msg;
    } cases[] = {
        {"empty file", -1, 0, 0, 0, SM_EFORMAT, "truncated at offset 0 reading n_entries"},
        {"zero entries", 0, 0, -1, 0, SM_EFORMAT, "n_entries is 0, expected >= 1"},
        {"negative entries", 0, -5, -1, 0, SM_EFORMAT, "n_entries is -5"},
        {"entries over cap", 0, 0x7fffffff, -1, 0, SM_ERANGE, "exceeds the cap"},
        {"entries beyond file", 0, 100000, -1, 0, SM_EFORMAT, "cannot fit"},
        {"name length zero", 4, 0, -1, 0, SM_EFORMAT, "name length 0"},
        {"name length huge", 4, 1 << 30, -1, 0, SM_EFORMAT, "name length 1073741824"},
        {"name truncated", 0, 1, 20, 0, SM_EFORMAT, "name of 21 bytes truncated"},
        {"ncall truncated", 0, 1, 31, 0, SM_EFORMAT, "reading ncall"},
        {"nval zero", 33, 0, -1, 0, SM_EFORMAT, "nval is 0, expected >= 1"},
        {"nval negative", 33, -1, -1, 0, SM_EFORMAT, "nval is -1"},
        {"values truncated", 33, 1 << 28, -1, 0, SM_EFORMAT, "values (1073741824 bytes) truncated"},
        {"dataset length too long", (int64_t)tr + 4, 29, -1, 0, SM_EFORMAT, "dataset length 29, but 28 bytes follow"},
        {"dataset length negative", (int64_t)tr + 4, -1, -1, 0, SM_EFORMAT, "dataset length -1"},
        {"trailing garbage", -1, 0, -1, 3, SM_EFORMAT, "but 31 bytes follow"},
        {"trailer cut", -1, 0, (int64_t)tr + 2, 0, SM_EFORMAT, "reading trailer chunk count"},
        {"name with NUL", 10, 0x00636c62, -1, 0, SM_EFORMAT, "name contains a NUL byte"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len = cases[i].cut >= 0 ? (size_t)cases[i].cut : n;
        uint8_t *b = calloc(1, n + 16);
        memcpy(b, base, n);
        if (cases[i].at >= 0)
            put32(b + cases[i].at, cases[i].val);
        len += (size_t)cases[i].extra;
        sm_imatrix im;
        sm_err err = {0};
        int rc = sm_imatrix_parse(&im, b, len, "bad.dat", &err);
        cr_assert_eq(rc, cases[i].code, "%s: rc %d (%s)", cases[i].what, rc, err.msg);
        cr_assert(strstr(err.msg, cases[i].msg), "%s: message '%s' lacks '%s'", cases[i].what, err.msg,
                  cases[i].msg);
        cr_assert(strncmp(err.msg, "bad.dat", 7) == 0, "%s: %s", cases[i].what, err.msg);
        cr_assert_eq(im.n_entries, 0, "failed parse must leave the struct empty");
        free(b);
    }
    /* a duplicate name: make entry 1's name equal entry 0's (same length) */
    uint8_t *b = malloc(n);
    memcpy(b, base, n);
    size_t e1 = 37 + 172 * 4; /* entry 1 starts after entry 0's values */
    int32_t l1;
    memcpy(&l1, b + e1, 4);
    cr_assert_eq(l1, 21, "entry 1 is blk.4.ffn_gate.weight");
    memcpy(b + e1 + 4, "blk.4.ffn_down.weight", 21);
    sm_imatrix im;
    sm_err err = {0};
    cr_assert_eq(sm_imatrix_parse(&im, b, n, "dup.dat", &err), SM_EDUP);
    cr_assert(strstr(err.msg, "duplicate name 'blk.4.ffn_down.weight'"), "%s", err.msg);
    /* an old file without the trailer is valid */
    cr_assert_eq(sm_imatrix_parse(&im, base, n - 36, "old.dat", &err), 0, "%s", err.msg);
    cr_assert_eq(im.has_trailer, 0);
    cr_assert_eq(im.chunk_count, 0);
    cr_assert_eq(im.n_datasets, 0);
    sm_imatrix_free(&im);
    free(b);
    free(base);
}

/* GGUF imatrix files built with the GGUF writer, each broken one way. */
static void write_gguf(const char *path, int variant)
{
    gguf_writer *w = gguf_writer_init();
    sm_err err = {0};
    sm_str ds = {"x.txt", 5};
    gguf_writer_set_str(w, "general.type", variant == 1 ? "model" : "imatrix");
    if (variant != 2)
        gguf_writer_set_arr_str(w, "imatrix.datasets", &ds, 1);
    if (variant != 3)
        gguf_writer_set_u32(w, "imatrix.chunk_count", 4);
    gguf_writer_set_u32(w, "imatrix.chunk_size", 512);
    float sums[8] = {1, 2, 3, 4, 5, 6, 7, 8}, counts[2] = {1, 2};
    int64_t ne_s[2] = {4, 2}, ne_c[2] = {1, variant == 5 ? 1 : 2};
    if (variant != 6)
        gguf_writer_add_tensor(w, "w.in_sum2", 2, ne_s, variant == 7 ? SM_TYPE_F16 : SM_TYPE_F32, &err);
    if (variant != 4)
        gguf_writer_add_tensor(w, "w.counts", 2, ne_c, SM_TYPE_F32, &err);
    cr_assert_eq(gguf_writer_begin(w, path, &err), 0, "%s", err.msg);
    if (variant != 6)
        gguf_writer_write_tensor(w, sums, variant == 7 ? 16 : 32, &err);
    if (variant != 4)
        gguf_writer_write_tensor(w, counts, variant == 5 ? 4 : 8, &err);
    cr_assert_eq(gguf_writer_finish(w, &err), 0, "%s", err.msg);
    gguf_writer_free(w);
}

Test(imatrix, gguf_malformed_table)
{
    static const struct {
        int variant;
        int code;
        const char *msg;
    } cases[] = {
        {0, 0, ""},
        {1, SM_EFORMAT, "general.type is 'model', expected 'imatrix'"},
        {2, SM_EMISSING, "imatrix.datasets is missing"},
        {3, SM_EMISSING, "imatrix.chunk_count"},
        {4, SM_EMISSING, "'w.in_sum2' has no matching 'w.counts'"},
        {5, SM_EMISMATCH, "'w.counts' has shape [1, 1], expected [1, 2]"},
        {6, SM_EMISSING, "'w.counts' has no matching .in_sum2"},
        {7, SM_EFORMAT, "expected a 2-D F32 tensor, got f16"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char p[1200];
        snprintf(p, sizeof p, "%s/v%d.gguf", tmp, cases[i].variant);
        write_gguf(p, cases[i].variant);
        sm_imatrix im;
        sm_err err = {0};
        int rc = sm_imatrix_read(&im, p, &err);
        cr_assert_eq(rc, cases[i].code, "variant %d: rc %d (%s)", cases[i].variant, rc, err.msg);
        if (rc == 0) {
            cr_assert_eq(im.n_entries, 1);
            cr_assert_eq(im.entries[0].n_mat, 2);
            float v[8];
            sm_imatrix_entry_values(&im.entries[0], v);
            cr_assert_eq(v[7], 4.0f);
            sm_imatrix_free(&im);
        } else {
            cr_assert(strstr(err.msg, cases[i].msg), "variant %d: '%s' lacks '%s'", cases[i].variant, err.msg,
                      cases[i].msg);
            cr_assert_eq(im.n_entries, 0);
        }
    }
    /* a GGUF with a bad magic-followed header is reported by the GGUF parser */
    uint8_t junk[12] = {'G', 'G', 'U', 'F', 9, 0, 0, 0, 0, 0, 0, 0};
    sm_imatrix im;
    sm_err err = {0};
    cr_assert_lt(sm_imatrix_parse(&im, junk, sizeof junk, "junk.gguf", &err), 0);
    cr_assert(strstr(err.msg, "junk.gguf"), "%s", err.msg);
}

Test(imatrix, writer_rejects_bad_input)
{
    sm_imatrix im;
    memset(&im, 0, sizeof im);
    sm_err err = {0};
    char p[1200];
    snprintf(p, sizeof p, "%s/w.dat", tmp);
    cr_assert_eq(sm_imatrix_write_legacy(&im, p, &err), SM_EINVAL);
    cr_assert_eq(sm_imatrix_write_gguf(&im, p, &err), SM_EINVAL);
    im.n_entries = 1;
    im.entries = calloc(1, sizeof *im.entries);
    im.entries[0].name = strdup("w");
    im.entries[0].n_per_mat = 2;
    im.entries[0].n_mat = 1;
    im.entries[0].sums = calloc(2, sizeof(float));
    cr_assert_eq(sm_imatrix_write_gguf(&im, p, &err), SM_EINVAL, "GGUF needs counts");
    cr_assert(strstr(err.msg, "lacks sums, counts"), "%s", err.msg);
    cr_assert_eq(ts_count_entries(tmp), 0, "no file on refusal");
    cr_assert_eq(sm_imatrix_write_legacy(&im, p, &err), 0, "%s", err.msg);
    sm_imatrix_free(&im);
    cr_assert_eq(sm_imatrix_read(&im, p, &err), 0, "%s", err.msg);
    cr_assert_eq(im.n_entries, 1);
    cr_assert_eq(im.has_trailer, 0);
    sm_imatrix_free(&im);
}
