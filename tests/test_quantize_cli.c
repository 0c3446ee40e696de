/* test_quantize_cli.c — smelt-quantize ($SMELT_BIN/smelt-quantize) against
 * llama-quantize's reference files, byte for byte, and its refusals. */
#include "gguf.h"
#include "imatrix.h"
#include "quants.h"
#include "support.h"
#include "types.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char bin[1024];
static char shared[1024];
static char *tmp;

static void setup(void)
{
    char b[PATH_MAX];
    snprintf(b, sizeof b, "%s/smelt-quantize", ts_bin());
    char *rb = realpath(b, NULL), *rs = realpath(ts_shared(), NULL);
    cr_assert(rb, "smelt-quantize not found at %s (set SMELT_BIN)", b);
    cr_assert(rs, "shared corpus not found at %s (set SMELT_SHARED)", ts_shared());
    cr_assert(strlen(rb) < sizeof bin && strlen(rs) < sizeof shared);
    snprintf(bin, sizeof bin, "%s", rb);
    snprintf(shared, sizeof shared, "%s", rs);
    free(rb);
    free(rs);
    tmp = ts_tmpdir();
    cr_assert(tmp);
}

static void teardown(void)
{
    ts_rmtree(tmp);
    free(tmp);
}

TestSuite(quantize_cli, .init = setup, .fini = teardown);

/* Describes the first difference between two GGUF files (key, tensor info
 * or tensor data) into msg; returns 0 when they are byte-identical. */
static int gguf_first_diff(const char *a, const char *b, char *msg, size_t cap)
{
    size_t la, lb;
    uint8_t *ba = ts_read(a, &la), *bb = ts_read(b, &lb);
    int same = ba && bb && la == lb && memcmp(ba, bb, la) == 0;
    free(ba);
    free(bb);
    if (same)
        return 0;
    gguf_file x, y;
    sm_err err = {0};
    if (gguf_open(&x, a, &err) < 0) {
        snprintf(msg, cap, "%s", err.msg);
        return 1;
    }
    if (gguf_open(&y, b, &err) < 0) {
        snprintf(msg, cap, "%s", err.msg);
        gguf_close(&x);
        return 1;
    }
    snprintf(msg, cap, "files differ (sizes %zu vs %zu) but no KV/tensor difference found", la, lb);
    uint64_t nk = x.n_kv < y.n_kv ? x.n_kv : y.n_kv;
    for (uint64_t i = 0; i < nk; i++) {
        const gguf_kv *p = &x.kv[i], *q = &y.kv[i];
        if (p->key.len != q->key.len || memcmp(p->key.ptr, q->key.ptr, p->key.len) != 0 || p->type != q->type ||
            p->raw_len != q->raw_len || memcmp(p->raw, q->raw, p->raw_len) != 0) {
            snprintf(msg, cap, "first differing KV #%llu: '%.*s' vs '%.*s'", (unsigned long long)i, (int)p->key.len,
                     p->key.ptr, (int)q->key.len, q->key.ptr);
            goto out;
        }
    }
    if (x.n_kv != y.n_kv) {
        snprintf(msg, cap, "KV count %llu vs %llu", (unsigned long long)x.n_kv, (unsigned long long)y.n_kv);
        goto out;
    }
    uint64_t nt = x.n_tensors < y.n_tensors ? x.n_tensors : y.n_tensors;
    for (uint64_t i = 0; i < nt; i++) {
        const gguf_tensor *p = &x.tensors[i], *q = &y.tensors[i];
        if (p->name.len != q->name.len || memcmp(p->name.ptr, q->name.ptr, p->name.len) != 0 || p->type != q->type ||
            p->offset != q->offset || p->nbytes != q->nbytes) {
            snprintf(msg, cap, "first differing tensor info #%llu: '%.*s' %s vs '%.*s' %s", (unsigned long long)i,
                     (int)p->name.len, p->name.ptr, sm_type_name(p->type), (int)q->name.len, q->name.ptr,
                     sm_type_name(q->type));
            goto out;
        }
    }
    for (uint64_t i = 0; i < nt; i++) {
        const gguf_tensor *p = &x.tensors[i], *q = &y.tensors[i];
        if (memcmp(p->data, q->data, p->nbytes) != 0) {
            snprintf(msg, cap, "first differing tensor data: '%.*s' (%s)", (int)p->name.len, p->name.ptr,
                     sm_type_name(p->type));
            goto out;
        }
    }
out:
    gguf_close(&x);
    gguf_close(&y);
    return 1;
}

static const char *const presets[] = {"Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q4_K_M",
                                      "Q5_K_S", "Q5_K_M", "Q6_K",   "Q8_0"};

static void check_model(const char *model, int n_presets)
{
    for (int i = 0; i < n_presets; i++)
        for (int imat = 0; imat < 2; imat++) {
            char out[PATH_MAX], ref[PATH_MAX], msg[1024];
            snprintf(out, sizeof out, "%s/%s-%s%s.gguf", tmp, model, presets[i], imat ? "-imat" : "");
            snprintf(ref, sizeof ref, "%s/reference/%s/%s%s.gguf", shared, model, presets[i], imat ? "-imat" : "");
            char *log = NULL;
            int st = ts_run(&log, "cd '%s/reference/%s' && '%s' -q %s convert-f16.gguf '%s' %s 2", shared, model, bin,
                            imat ? "--imatrix imatrix.dat" : "", out, presets[i]);
            cr_assert_eq(st, 0, "%s %s%s: exit %d: %s", model, presets[i], imat ? " imat" : "", st, log);
            free(log);
            cr_assert_eq(gguf_first_diff(out, ref, msg, sizeof msg), 0, "%s vs %s: %s", out, ref, msg);
            unlink(out);
        }
}

Test(quantize_cli, tinystories_all_presets_byte_identical)
{
    check_model("tinystories-3m", 9);
}

Test(quantize_cli, stories260K_presets_byte_identical)
{
    check_model("stories260K", 8); /* Q8_0 is refused, tested below */
}

Test(quantize_cli, from_f32_byte_identical)
{
    const char *models[] = {"stories260K", "tinystories-3m"};
    for (int i = 0; i < 2; i++) {
        char out[PATH_MAX], ref[PATH_MAX], msg[1024];
        snprintf(out, sizeof out, "%s/from-f32-%d.gguf", tmp, i);
        snprintf(ref, sizeof ref, "%s/reference/%s/Q4_K_M-from-f32.gguf", shared, models[i]);
        int st = ts_run(NULL, "cd '%s/reference/%s' && '%s' -q convert-f32.gguf '%s' Q4_K_M 1", shared, models[i],
                        bin, out);
        cr_assert_eq(st, 0);
        cr_assert_eq(gguf_first_diff(out, ref, msg, sizeof msg), 0, "%s: %s", ref, msg);
    }
}

Test(quantize_cli, stories260K_q8_0_refused_without_file)
{
    for (int imat = 0; imat < 2; imat++) {
        char out[PATH_MAX], *log = NULL;
        snprintf(out, sizeof out, "%s/q8.gguf", tmp);
        int st = ts_run(&log, "cd '%s/reference/stories260K' && '%s' %s convert-f16.gguf '%s' Q8_0 2", shared, bin,
                        imat ? "--imatrix imatrix.dat" : "", out);
        cr_assert_eq(st, 1, "exit %d: %s", st, log);
        cr_assert(strstr(log, "smelt-quantize: tensor blk.0.ffn_down.weight: cols 172 x 64 are not divisible by 32, "
                              "required for q8_0"),
                  "%s", log);
        free(log);
        cr_assert_eq(ts_count_entries(tmp), 0, "no output and no temp file may be left behind");
    }
}

/* The GGUF imatrix form of the same data must give the same bytes: in_sum2 =
 * the legacy values, counts = ncall, so in_sum2/count = values/ncall. */
Test(quantize_cli, gguf_imatrix_gives_identical_output)
{
    char p[PATH_MAX], out[PATH_MAX], ref[PATH_MAX], msg[1024];
    sm_imatrix im;
    sm_err err = {0};
    snprintf(p, sizeof p, "%s/reference/tinystories-3m/imatrix.dat", shared);
    cr_assert_eq(sm_imatrix_read(&im, p, &err), 0, "%s", err.msg);
    for (uint32_t i = 0; i < im.n_entries; i++) {
        sm_imatrix_entry *e = &im.entries[i];
        e->counts = malloc(sizeof(float));
        e->counts[0] = (float)e->ncall;
    }
    im.chunk_size = 128;
    snprintf(p, sizeof p, "%s/imatrix.dat", tmp);
    cr_assert_eq(sm_imatrix_write_gguf(&im, p, &err), 0, "%s", err.msg);
    sm_imatrix_free(&im);
    cr_assert_eq(ts_run(NULL, "ln -s '%s/reference/tinystories-3m/convert-f16.gguf' '%s/convert-f16.gguf'", shared, tmp),
                 0);
    const char *pre[] = {"Q4_K_M", "Q3_K_S", "Q6_K"};
    for (int i = 0; i < 3; i++) {
        snprintf(out, sizeof out, "%s/out-%s.gguf", tmp, pre[i]);
        snprintf(ref, sizeof ref, "%s/reference/tinystories-3m/%s-imat.gguf", shared, pre[i]);
        char *log = NULL;
        int st = ts_run(&log, "cd '%s' && '%s' -q --imatrix imatrix.dat convert-f16.gguf '%s' %s", tmp, bin, out,
                        pre[i]);
        cr_assert_eq(st, 0, "%s", log);
        free(log);
        cr_assert_eq(gguf_first_diff(out, ref, msg, sizeof msg), 0, "%s: %s", pre[i], msg);
    }
}

Test(quantize_cli, refusals_leave_nothing_behind)
{
    char in[PATH_MAX], out[PATH_MAX];
    snprintf(in, sizeof in, "%s/reference/tinystories-3m/convert-f16.gguf", shared);
    snprintf(out, sizeof out, "%s/out.gguf", tmp);
    static const struct {
        const char *pre, *post; /* arguments before IN OUT and after */
        int status;
        const char *msg;
    } bad[] = {
        {"", "Q9_K", 2, "unknown type 'Q9_K'"},
        {"", "IQ2_XXS", 2, "unsupported type 'IQ2_XXS'"},
        {"", "", 2, "missing TYPE"},
        {"--tensor-type attn_q=q9", "Q4_K_M", 2, "unknown ggml type 'q9'"},
        {"--include-weights a --exclude-weights b", "Q4_K_M", 2, "cannot be used together"},
        {"--imatrix ../stories260K/imatrix.dat", "Q4_K_M", 1, "the imatrix does not belong to this model"},
        {"--imatrix Q4_K_M.gguf", "Q4_K_M", 1, "general.type is 'model', expected 'imatrix'"},
        {"--imatrix missing.dat", "Q4_K_M", 1, "missing.dat"},
        {"", "Q4_K_M 1x", 2, "invalid nthread '1x'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char args[3 * PATH_MAX], *log = NULL;
        snprintf(args, sizeof args, "%s '%s' '%s' %s", bad[i].pre, in, out, bad[i].post);
        int st = ts_run(&log, "cd '%s/reference/tinystories-3m' && '%s' %s", shared, bin, args);
        cr_assert_eq(st, bad[i].status, "%s: exit %d: %s", args, st, log);
        cr_assert(strstr(log, bad[i].msg), "%s: %s", args, log);
        cr_assert(strncmp(log, "smelt-quantize: ", 16) == 0 || bad[i].status == 2, "%s: %s", args, log);
        free(log);
        cr_assert_eq(ts_count_entries(tmp), 0, "%s left a file behind", args);
    }
}

Test(quantize_cli, requantize_needs_flag)
{
    char in[PATH_MAX], out[PATH_MAX], *log = NULL;
    snprintf(in, sizeof in, "%s/reference/tinystories-3m/Q4_K_M.gguf", shared);
    snprintf(out, sizeof out, "%s/re.gguf", tmp);
    int st = ts_run(&log, "'%s' '%s' '%s' Q8_0", bin, in, out);
    cr_assert_eq(st, 1, "%s", log);
    cr_assert(strstr(log, "is already q6_K: requantizing is disabled (pass --allow-requantize)"), "%s", log);
    free(log);
    cr_assert_eq(ts_count_entries(tmp), 0);
    st = ts_run(&log, "'%s' -q --allow-requantize '%s' '%s' Q8_0", bin, in, out);
    cr_assert_eq(st, 0, "%s", log);
    free(log);
    gguf_file g;
    sm_err err = {0};
    cr_assert_eq(gguf_open(&g, out, &err), 0, "%s", err.msg);
    cr_assert_eq(g.tensors[gguf_find_tensor(&g, "blk.0.attn_q.weight")].type, SM_TYPE_Q8_0);
    uint32_t ft = 0;
    cr_assert_eq(gguf_get_u32(&g, "general.file_type", &ft, &err), 0);
    cr_assert_eq(ft, 7);
    gguf_close(&g);
}

/* Fuzz finding (tests/fuzz/regressions/quantize/): general.alignment 1 put
 * the Q4_0 tensor blk.3.ffn_up.weight at an odd file offset, and widening it
 * read its fp16 scales misaligned (UBSan under `make test MODE=asan`).
 * Requantized to Q8_0 now, its values stay the Q4_0 ones within Q8_0's
 * rounding. */
Test(quantize_cli, misaligned_blocks_from_alignment_1)
{
    char out[PATH_MAX], *log = NULL;
    const char *in = "tests/fuzz/regressions/quantize/misaligned-q4_0-alignment-1.gguf";
    snprintf(out, sizeof out, "%s/mis.gguf", tmp);
    int st = ts_run(&log, "'%s' -q --allow-requantize '%s' '%s' Q8_0 1", bin, in, out);
    cr_assert_eq(st, 0, "%s", log);
    free(log);
    gguf_file gi, go;
    sm_err err = {0};
    cr_assert_eq(gguf_open(&gi, in, &err), 0, "%s", err.msg);
    cr_assert_eq(gguf_open(&go, out, &err), 0, "%s", err.msg);
    const gguf_tensor *ti = &gi.tensors[gguf_find_tensor(&gi, "blk.3.ffn_up.weight")];
    const gguf_tensor *to = &go.tensors[gguf_find_tensor(&go, "blk.3.ffn_up.weight")];
    cr_assert_eq(ti->type, SM_TYPE_Q4_0);
    cr_assert_eq((uintptr_t)ti->data % 2, 1, "the finding's point: blocks at an odd address");
    cr_assert_eq(to->type, SM_TYPE_Q8_0);
    float a[128], b[128];
    cr_assert_eq(sm_dequantize_row(ti->type, ti->data, a, 128), 0);
    cr_assert_eq(sm_dequantize_row(to->type, to->data, b, 128), 0);
    float amax = 0.0f;
    for (int i = 0; i < 128; i++)
        amax = fabsf(a[i]) > amax ? fabsf(a[i]) : amax;
    cr_assert_gt(amax, 0.0f);
    for (int i = 0; i < 128; i++)
        cr_assert_leq(fabsf(a[i] - b[i]), amax / 100.0f, "element %d: %g vs %g", i, (double)a[i], (double)b[i]);
    gguf_close(&gi);
    gguf_close(&go);
}

Test(quantize_cli, output_collisions_and_force)
{
    char in[PATH_MAX], out[PATH_MAX], ref[PATH_MAX], msg[1024], *log = NULL;
    snprintf(in, sizeof in, "%s/in.gguf", tmp);
    snprintf(ref, sizeof ref, "%s/reference/tinystories-3m/Q8_0.gguf", shared);
    cr_assert_eq(ts_run(NULL, "cp '%s/reference/tinystories-3m/convert-f16.gguf' '%s'", shared, in), 0);
    /* output == input */
    int st = ts_run(&log, "'%s' '%s' '%s' Q8_0", bin, in, in);
    cr_assert_eq(st, 1);
    cr_assert(strstr(log, "output is the input file; pass --force"), "%s", log);
    free(log);
    /* an existing output */
    snprintf(out, sizeof out, "%s/exists.gguf", tmp);
    cr_assert_eq(ts_write(out, "x", 1), 0);
    st = ts_run(&log, "'%s' '%s' '%s' Q8_0", bin, in, out);
    cr_assert_eq(st, 1);
    cr_assert(strstr(log, "output exists; pass --force"), "%s", log);
    free(log);
    cr_assert_eq(ts_count_entries(tmp), 2);
    st = ts_run(&log, "'%s' -q --force '%s' '%s' Q8_0", bin, in, out);
    cr_assert_eq(st, 0, "%s", log);
    free(log);
    cr_assert_eq(gguf_first_diff(out, ref, msg, sizeof msg), 0, "%s", msg);
    /* in place with --force: temp + rename, the mmapped input is safe */
    st = ts_run(&log, "'%s' -q --force '%s' '%s' Q8_0", bin, in, in);
    cr_assert_eq(st, 0, "%s", log);
    free(log);
    cr_assert_eq(gguf_first_diff(in, ref, msg, sizeof msg), 0, "%s", msg);
    cr_assert_eq(ts_count_entries(tmp), 2);
}

Test(quantize_cli, default_output_name_and_threads)
{
    char in[PATH_MAX], out[PATH_MAX], ref[PATH_MAX], msg[1024], *log = NULL;
    snprintf(in, sizeof in, "%s/in.gguf", tmp);
    cr_assert_eq(ts_run(NULL, "cp '%s/reference/tinystories-3m/convert-f16.gguf' '%s'", shared, in), 0);
    /* numeric id 15 is reported as "Q4_K" (first table entry), like llama.cpp */
    int st = ts_run(&log, "'%s' -q '%s' 15 1", bin, in);
    cr_assert_eq(st, 0, "%s", log);
    free(log);
    snprintf(out, sizeof out, "%s/ggml-model-Q4_K.gguf", tmp);
    snprintf(ref, sizeof ref, "%s/reference/tinystories-3m/Q4_K_M.gguf", shared);
    cr_assert_eq(gguf_first_diff(out, ref, msg, sizeof msg), 0, "%s", msg);
    unlink(out);
    st = ts_run(&log, "'%s' -q -t 2 '%s' q4_k_m", bin, in);
    cr_assert_eq(st, 0, "%s", log);
    free(log);
    snprintf(out, sizeof out, "%s/ggml-model-Q4_K_M.gguf", tmp);
    cr_assert_eq(gguf_first_diff(out, ref, msg, sizeof msg), 0, "%s", msg);
}

Test(quantize_cli, dry_run_and_json)
{
    char in[PATH_MAX], out[PATH_MAX], *log = NULL;
    snprintf(in, sizeof in, "%s/reference/tinystories-3m/convert-f16.gguf", shared);
    snprintf(out, sizeof out, "%s/dry.gguf", tmp);
    int st = ts_run(&log, "'%s' --dry-run '%s' '%s' Q4_K_M", bin, in, out);
    cr_assert_eq(st, 0, "%s", log);
    cr_assert(strstr(log, "blk.0.ffn_down.weight"), "%s", log);
    cr_assert(strstr(log, "-> q6_K"), "%s", log);
    cr_assert(strstr(log, "[dry run, nothing written]"), "%s", log);
    free(log);
    cr_assert_eq(ts_count_entries(tmp), 0, "dry run wrote a file");

    st = ts_run(&log, "'%s' --dry-run --json '%s' '%s' Q4_K_M 2>/dev/null", bin, in, out);
    cr_assert_eq(st, 0);
    json_error_t je;
    json_t *j = json_loads(log, 0, &je);
    cr_assert(j, "bad JSON: %s\n%s", je.text, log);
    free(log);
    cr_assert_eq(json_integer_value(json_object_get(j, "file_size")), 2092096, "file size of the reference Q4_K_M");
    cr_assert_eq(json_integer_value(json_object_get(j, "tensors")), 39);
    cr_assert_str_eq(json_string_value(json_object_get(j, "type")), "Q4_K_M");
    json_t *list = json_object_get(j, "tensor_list");
    cr_assert_eq(json_array_size(list), 39);
    int n_q6 = 0;
    for (size_t i = 0; i < json_array_size(list); i++)
        n_q6 += !strcmp(json_string_value(json_object_get(json_array_get(list, i), "type")), "q6_K");
    cr_assert_gt(n_q6, 0);
    json_decref(j);
}

/* A full disk: the file-size limit makes write() fail (EFBIG) like ENOSPC. */
Test(quantize_cli, write_error_removes_temp_file)
{
    char in[PATH_MAX], out[PATH_MAX], *log = NULL;
    snprintf(in, sizeof in, "%s/reference/tinystories-3m/convert-f16.gguf", shared);
    snprintf(out, sizeof out, "%s/full.gguf", tmp);
    int st = ts_run(&log, "trap '' XFSZ; ulimit -f 512; '%s' -q '%s' '%s' Q8_0", bin, in, out);
    cr_assert_eq(st, 1, "exit %d: %s", st, log);
    cr_assert(strstr(log, "smelt-quantize: "), "%s", log);
    free(log);
    cr_assert_eq(ts_count_entries(tmp), 0, "temp file left after a write error");
}

Test(quantize_cli, override_kv_and_key_order)
{
    char in[PATH_MAX], out[PATH_MAX], *log = NULL;
    snprintf(in, sizeof in, "%s/reference/tinystories-3m/convert-f16.gguf", shared);
    snprintf(out, sizeof out, "%s/kv.gguf", tmp);
    int st = ts_run(&log, "'%s' -q --override-kv general.name=str:renamed --override-kv x.count=int:-3 '%s' '%s' Q8_0",
                    bin, in, out);
    cr_assert_eq(st, 0, "%s", log);
    free(log);
    gguf_file g, r;
    sm_err err = {0};
    cr_assert_eq(gguf_open(&g, out, &err), 0, "%s", err.msg);
    cr_assert_eq(gguf_open(&r, in, &err), 0, "%s", err.msg);
    /* input keys in order minus the moved ones, then the rewritten keys */
    cr_assert_eq(g.n_kv, r.n_kv + 1);
    const gguf_kv *last = &g.kv[g.n_kv - 1], *prev = &g.kv[g.n_kv - 2];
    cr_assert(sm_str_eq(last->key, "x.count"));
    cr_assert_eq(last->type, GGUF_VT_INT32);
    cr_assert_eq(last->v.i64, -3);
    cr_assert(sm_str_eq(prev->key, "general.name"));
    cr_assert(sm_str_eq(prev->v.str, "renamed"));
    cr_assert(sm_str_eq(g.kv[g.n_kv - 3].key, "general.file_type"));
    cr_assert(sm_str_eq(g.kv[g.n_kv - 4].key, "general.quantization_version"));
    gguf_close(&g);
    gguf_close(&r);
    static const char *const bad[] = {"novalue", "k=long:1", "k=bool:maybe"};
    for (int i = 0; i < 3; i++) {
        st = ts_run(&log, "'%s' --override-kv '%s' '%s' '%s' Q8_0", bin, bad[i], in, out);
        cr_assert_eq(st, 2, "%s", bad[i]);
        cr_assert(strstr(log, "KV override"), "%s: %s", bad[i], log);
        free(log);
    }
}

Test(quantize_cli, imatrix_with_foreign_names_is_refused)
{
    sm_imatrix im;
    memset(&im, 0, sizeof im);
    sm_err err = {0};
    im.n_entries = 1;
    im.entries = calloc(1, sizeof *im.entries);
    im.entries[0].name = strdup("model.layers.0.mlp.down_proj.weight");
    im.entries[0].n_per_mat = 256;
    im.entries[0].n_mat = 1;
    im.entries[0].ncall = 1;
    im.entries[0].sums = calloc(256, sizeof(float));
    char p[PATH_MAX], out[PATH_MAX], *log = NULL;
    snprintf(p, sizeof p, "%s/foreign.dat", tmp);
    cr_assert_eq(sm_imatrix_write_legacy(&im, p, &err), 0, "%s", err.msg);
    sm_imatrix_free(&im);
    snprintf(out, sizeof out, "%s/o.gguf", tmp);
    int st = ts_run(&log, "'%s' --imatrix '%s' '%s/reference/tinystories-3m/convert-f16.gguf' '%s' Q4_K_M", bin, p,
                    shared, out);
    cr_assert_eq(st, 1, "%s", log);
    cr_assert(strstr(log, "none of its 1 entries (e.g. 'model.layers.0.mlp.down_proj.weight') names a tensor"), "%s",
              log);
    free(log);
    cr_assert_eq(ts_count_entries(tmp), 1, "only the imatrix file may exist");
}

/* F16/BF16 file types from the F32 conversion: every tensor's bytes equal
 * those of llama.cpp's converter output of the same type (the metadata
 * differs: file_type moves to the end, quantization_version is added). */
Test(quantize_cli, float_types_match_converter_tensors)
{
    const char *models[] = {"stories260K", "tinystories-3m"}, *types[] = {"f16", "bf16"};
    for (int m = 0; m < 2; m++)
        for (int t = 0; t < 2; t++) {
            char out[PATH_MAX], ref[PATH_MAX], *log = NULL;
            snprintf(out, sizeof out, "%s/%s-%s.gguf", tmp, models[m], types[t]);
            snprintf(ref, sizeof ref, "%s/reference/%s/convert-%s.gguf", shared, models[m], types[t]);
            int st = ts_run(&log, "'%s' -q '%s/reference/%s/convert-f32.gguf' '%s' %s", bin, shared, models[m], out,
                            types[t]);
            cr_assert_eq(st, 0, "%s", log);
            free(log);
            gguf_file a, b;
            sm_err err = {0};
            cr_assert_eq(gguf_open(&a, out, &err), 0, "%s", err.msg);
            cr_assert_eq(gguf_open(&b, ref, &err), 0, "%s", err.msg);
            cr_assert_eq(a.n_tensors, b.n_tensors);
            for (uint64_t i = 0; i < a.n_tensors; i++) {
                char *nm = sm_str_dup(a.tensors[i].name);
                int64_t k = gguf_find_tensor(&b, nm);
                cr_assert_geq(k, 0, "%s missing in %s", nm, ref);
                cr_assert_eq(a.tensors[i].type, b.tensors[k].type, "%s %s", ref, nm);
                cr_assert_eq(a.tensors[i].nbytes, b.tensors[k].nbytes);
                cr_assert_eq(memcmp(a.tensors[i].data, b.tensors[k].data, a.tensors[i].nbytes), 0, "%s: %s differs",
                             ref, nm);
                free(nm);
            }
            uint32_t ft = 99;
            cr_assert_eq(gguf_get_u32(&a, "general.file_type", &ft, &err), 0);
            cr_assert_eq(ft, t == 0 ? 1u : 32u);
            gguf_close(&a);
            gguf_close(&b);
        }
}

Test(quantize_cli, copy_keeps_tensors_and_file_type)
{
    char in[PATH_MAX], out[PATH_MAX], *log = NULL;
    snprintf(in, sizeof in, "%s/reference/stories260K/Q4_K_M.gguf", shared);
    snprintf(out, sizeof out, "%s/copy.gguf", tmp);
    int st = ts_run(&log, "'%s' -q '%s' '%s' copy", bin, in, out);
    cr_assert_eq(st, 0, "%s", log);
    free(log);
    gguf_file a, b;
    sm_err err = {0};
    cr_assert_eq(gguf_open(&a, out, &err), 0, "%s", err.msg);
    cr_assert_eq(gguf_open(&b, in, &err), 0, "%s", err.msg);
    cr_assert_eq(a.n_tensors, b.n_tensors);
    for (uint64_t i = 0; i < a.n_tensors; i++) {
        cr_assert_eq(a.tensors[i].type, b.tensors[i].type);
        cr_assert_eq(memcmp(a.tensors[i].data, b.tensors[i].data, a.tensors[i].nbytes), 0);
    }
    uint32_t ft = 0;
    cr_assert_eq(gguf_get_u32(&a, "general.file_type", &ft, &err), 0);
    cr_assert_eq(ft, 15, "COPY keeps the input's file type");
    gguf_close(&a);
    gguf_close(&b);
}
