/* test_faults_regressions.c — hostile inputs for every reader, and replay
 * of the fuzzers' findings.
 *
 * 1. A table of crafted inputs of a few dozen bytes that claim huge counts,
 *    lengths, shapes or offsets (the classic GGUF-parser denials of service
 *    and overflows). Each must give the expected sm_code and a message naming
 *    the problem, and — measured through the allocation shim — must not make
 *    the reader ask for more than FR_MAX_ALLOC bytes at once.
 * 2. Every file under tests/fuzz/regressions/<target>/ (crashes, leaks or
 *    timeouts a fuzzer once found, kept after the fix) is fed to the parser of
 *    that target, which must return without crashing.
 * 3. The tokenizers stay linear on long degenerate inputs. */
#include "convert/vocab.h"
#include "faults/faultalloc.h"
#include "formats/gguf.h"
#include "formats/imatrix.h"
#include "formats/safetensors.h"
#include "infer/tokenizer.h"
#include "merge/adapter.h"
#include "support.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A crafted input of < 200 bytes may make a reader allocate its index for
 * what the bytes can hold, never more than this. */
#define FR_MAX_ALLOC (1u << 20)

typedef struct bb {
    uint8_t b[512];
    size_t n;
} bb;

static void put(bb *x, const void *p, size_t n)
{
    cr_assert_leq(x->n + n, sizeof x->b);
    memcpy(x->b + x->n, p, n);
    x->n += n;
}
static void u32(bb *x, uint32_t v) { put(x, &v, 4); }
static void u64(bb *x, uint64_t v) { put(x, &v, 8); }
static void i32(bb *x, int32_t v) { put(x, &v, 4); }
static void gstr(bb *x, const char *s)
{
    u64(x, strlen(s));
    put(x, s, strlen(s));
}
static void ghead(bb *x, uint64_t n_tensors, uint64_t n_kv)
{
    put(x, "GGUF", 4);
    u32(x, 3);
    u64(x, n_tensors);
    u64(x, n_kv);
}

enum fr_parser { FR_GGUF, FR_ST, FR_IMATRIX, FR_SPM, FR_LORA_CFG, FR_LORA_ST };

/* Runs one parser on buf; returns its code and fills err. */
static int fr_parse(int parser, const uint8_t *buf, size_t len, sm_err *err)
{
    int rc = 0;
    switch (parser) {
    case FR_GGUF: {
        gguf_file g;
        rc = gguf_parse(&g, buf, len, "hostile.gguf", err);
        if (rc == 0)
            gguf_close(&g);
        break;
    }
    case FR_ST: {
        st_model m;
        memset(&m, 0, sizeof m);
        rc = st_parse(&m, buf, len, "hostile.safetensors", 0, err);
        st_close(&m);
        break;
    }
    case FR_IMATRIX: {
        sm_imatrix im;
        rc = sm_imatrix_parse(&im, buf, len, "hostile.dat", err);
        if (rc == 0)
            sm_imatrix_free(&im);
        break;
    }
    case FR_SPM: {
        cv_spm_model m;
        rc = cv_spm_parse(&m, buf, len, "hostile.model", err);
        cv_spm_free(&m);
        break;
    }
    case FR_LORA_CFG: {
        lora_config c;
        rc = lora_config_parse(&c, (const char *)buf, len, "adapter_config.json", err);
        if (rc == 0)
            lora_config_free(&c);
        break;
    }
    case FR_LORA_ST: {
        lora_tensor *t = NULL;
        uint64_t n = 0;
        rc = lora_tensors_parse(buf, len, "adapter_model.safetensors", &t, &n, err);
        if (rc == 0)
            lora_tensors_free(t, n);
        break;
    }
    default:
        cr_assert_fail("parser %d", parser);
    }
    return rc;
}

/* Expects code and a message containing needle; checks the allocation cap
 * and that nothing leaked. */
static void expect(const char *what, int parser, const bb *x, int code, const char *needle)
{
    sm_err err;
    memset(&err, 0, sizeof err);
    fa_install();
    uint64_t live0 = fa_live();
    fa_reset_max();
    int rc = fr_parse(parser, x->b, x->n, &err);
    cr_assert_eq(rc, code, "%s: got %d (%s), expected %d", what, rc, err.msg, code);
    cr_assert(strstr(err.msg, needle) != NULL, "%s: message '%s' lacks '%s'", what, err.msg, needle);
    cr_assert_leq(fa_max_request(), FR_MAX_ALLOC, "%s: a %zu-byte input made the reader ask for %zu bytes", what,
                  x->n, fa_max_request());
    cr_assert_eq(fa_live(), live0, "%s: leaked %llu allocations", what, (unsigned long long)(fa_live() - live0));
}

/* ------------------------------------------------------------ GGUF */

Test(regressions, gguf_huge_counts)
{
    bb x = {{0}, 0};
    ghead(&x, 1ull << 62, 0);
    expect("n_tensors 2^62", FR_GGUF, &x, SM_ERANGE, "tensor");
    x.n = 0;
    ghead(&x, 0, 1ull << 40);
    expect("n_kv 2^40", FR_GGUF, &x, SM_ERANGE, "key");
    x.n = 0;
    ghead(&x, 0, UINT64_MAX);
    expect("n_kv 2^64-1", FR_GGUF, &x, SM_ERANGE, "key");
}

Test(regressions, gguf_huge_lengths)
{
    bb x = {{0}, 0};
    ghead(&x, 0, 1);
    u64(&x, UINT64_MAX); /* key length */
    put(&x, "general.name", 12);
    expect("key length 2^64-1", FR_GGUF, &x, SM_ERANGE, "key");

    x.n = 0;
    ghead(&x, 0, 1);
    gstr(&x, "general.name");
    u32(&x, 8); /* string */
    u64(&x, (1ull << 30) + 1);
    put(&x, "abc", 3);
    expect("string past GGUF_MAX_STRING", FR_GGUF, &x, SM_ERANGE, "cap");

    x.n = 0;
    ghead(&x, 0, 1);
    gstr(&x, "general.name");
    u32(&x, 8);
    u64(&x, 1000); /* within the cap, beyond the file */
    put(&x, "abc", 3);
    expect("string beyond the file", FR_GGUF, &x, SM_EFORMAT, "truncated");
}

Test(regressions, gguf_huge_arrays)
{
    bb x = {{0}, 0};
    ghead(&x, 0, 1);
    gstr(&x, "tokenizer.ggml.tokens");
    u32(&x, 9); /* array */
    u32(&x, 8); /* of strings */
    u64(&x, (1ull << 31) + 1);
    gstr(&x, "a");
    expect("string array past GGUF_MAX_ARRAY", FR_GGUF, &x, SM_ERANGE, "tokenizer.ggml.tokens");

    x.n = 0;
    ghead(&x, 0, 1);
    gstr(&x, "tokenizer.ggml.tokens");
    u32(&x, 9);
    u32(&x, 8);
    u64(&x, 1u << 30); /* 1 G strings claimed by a 60-byte file: no 16 GiB index */
    gstr(&x, "a");
    expect("string array beyond the file", FR_GGUF, &x, SM_EFORMAT, "tokenizer.ggml.tokens");

    x.n = 0;
    ghead(&x, 0, 1);
    gstr(&x, "tokenizer.ggml.scores");
    u32(&x, 9);
    u32(&x, 6); /* f32 */
    u64(&x, 1ull << 31);
    expect("f32 array beyond the file", FR_GGUF, &x, SM_EFORMAT, "truncated");

    x.n = 0;
    ghead(&x, 0, 1);
    gstr(&x, "nested");
    u32(&x, 9);
    u32(&x, 9); /* array of arrays */
    u64(&x, 1);
    expect("nested array", FR_GGUF, &x, SM_ETYPE, "nested");
}

Test(regressions, gguf_hostile_tensors)
{
    bb x = {{0}, 0};
    ghead(&x, 1, 0);
    gstr(&x, "t");
    u32(&x, 5); /* n_dims */
    for (int i = 0; i < 5; i++)
        u64(&x, 1);
    u32(&x, 0);
    u64(&x, 0);
    expect("n_dims 5", FR_GGUF, &x, SM_ERANGE, "'t'");

    x.n = 0;
    ghead(&x, 1, 0);
    gstr(&x, "t");
    u32(&x, 2);
    u64(&x, 1ull << 62);
    u64(&x, 1ull << 62);
    u32(&x, 0);
    u64(&x, 0);
    expect("ne product overflows", FR_GGUF, &x, SM_ERANGE, "'t'");

    x.n = 0;
    ghead(&x, 1, 0);
    gstr(&x, "t");
    u32(&x, 1);
    u64(&x, (uint64_t)-5); /* negative dimension */
    u32(&x, 0);
    u64(&x, 0);
    expect("negative ne", FR_GGUF, &x, SM_ERANGE, "'t'");

    x.n = 0;
    ghead(&x, 1, 0);
    gstr(&x, "t");
    u32(&x, 1);
    u64(&x, 4);
    u32(&x, 0);
    u64(&x, UINT64_MAX - 7); /* offset + size wraps */
    expect("offset wraps", FR_GGUF, &x, SM_EFORMAT, "past the end");

    x.n = 0;
    ghead(&x, 1, 0);
    gstr(&x, "t");
    u32(&x, 1);
    u64(&x, 4);
    u32(&x, 1000); /* unknown type */
    u64(&x, 0);
    expect("unknown tensor type", FR_GGUF, &x, SM_ETYPE, "'t'");
}

/* ------------------------------------------------------------ safetensors */

static void st_image(bb *x, uint64_t hlen, const char *json)
{
    x->n = 0;
    u64(x, hlen);
    put(x, json, strlen(json));
}

Test(regressions, safetensors_hostile_headers)
{
    bb x;
    st_image(&x, UINT64_MAX, "{}");
    expect("header length 2^64-1", FR_ST, &x, SM_ERANGE, "header");
    st_image(&x, 200u * 1000u * 1000u, "{}");
    expect("header past ST_MAX_HEADER", FR_ST, &x, SM_ERANGE, "header");
    st_image(&x, 4000, "{}");
    expect("header beyond the file", FR_ST, &x, SM_EFORMAT, "header");
    const char *ovf = "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,0]}}";
    st_image(&x, strlen(ovf), ovf);
    expect("shape product overflows", FR_ST, &x, SM_ERANGE, "'w'");
    const char *beyond = "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    st_image(&x, strlen(beyond), beyond);
    expect("data beyond the file", FR_ST, &x, SM_ERANGE, "'w'");
    const char *neg = "{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,0]}}";
    st_image(&x, strlen(neg), neg);
    expect("negative dimension", FR_ST, &x, SM_EFORMAT, "'w'");
}

Test(regressions, safetensors_deep_json)
{
    /* 100k nested arrays: jansson's depth limit must stop it (no stack overflow) */
    size_t depth = 100000;
    uint8_t *buf = malloc(8 + depth);
    cr_assert_not_null(buf);
    uint64_t h = depth;
    memcpy(buf, &h, 8);
    memset(buf + 8, '[', depth);
    sm_err err;
    st_model m;
    memset(&m, 0, sizeof m);
    int rc = st_parse(&m, buf, 8 + depth, "deep.safetensors", 0, &err);
    st_close(&m);
    cr_assert_eq(rc, SM_EFORMAT, "%d %s", rc, err.msg);
    lora_tensor *t = NULL;
    uint64_t n = 0;
    rc = lora_tensors_parse(buf, 8 + depth, "deep.safetensors", &t, &n, &err);
    cr_assert_lt(rc, 0, "lora_tensors_parse accepted 100k nested arrays");
    rc = fr_parse(FR_LORA_CFG, buf + 8, depth, &err);
    cr_assert_lt(rc, 0, "lora_config_parse accepted 100k nested arrays");
    free(buf);
}

/* ------------------------------------------------------------ imatrix, SPM */

Test(regressions, imatrix_hostile_counts)
{
    bb x = {{0}, 0};
    i32(&x, INT32_MAX);
    i32(&x, 1);
    put(&x, "a", 1);
    expect("n_entries INT32_MAX", FR_IMATRIX, &x, SM_ERANGE, "entries");
    x.n = 0;
    i32(&x, 1);
    i32(&x, INT32_MAX); /* name length */
    put(&x, "abcdefghijklmnopqrstuvwxyz", 26);
    expect("name length INT32_MAX", FR_IMATRIX, &x, SM_EFORMAT, "offset");
    x.n = 0;
    i32(&x, 1);
    i32(&x, -4);
    put(&x, "abcdefghijklmnopqrstuvwxyz", 26);
    expect("negative name length", FR_IMATRIX, &x, SM_EFORMAT, "offset");
    x.n = 0;
    i32(&x, 1);
    i32(&x, 1);
    put(&x, "w", 1);
    i32(&x, 1);         /* ncall */
    i32(&x, INT32_MAX); /* nval: 8 GiB of floats claimed */
    put(&x, "0123456789abcdef", 16);
    expect("nval INT32_MAX", FR_IMATRIX, &x, SM_EFORMAT, "'w'");
}

Test(regressions, spm_hostile_protobuf)
{
    bb x = {{0}, 0};
    uint8_t varint11[] = {0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    put(&x, varint11, sizeof varint11);
    expect("11-byte varint", FR_SPM, &x, SM_ERANGE, "varint");
    x.n = 0;
    uint8_t longlen[] = {0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x0a, 0x01, 'a'};
    put(&x, longlen, sizeof longlen);
    expect("piece length beyond the message", FR_SPM, &x, SM_EFORMAT, "runs past the end");
}

Test(regressions, adapter_config_hostile)
{
    bb x = {{0}, 0};
    const char *bad_re = "{\"peft_type\":\"LORA\",\"r\":8,\"lora_alpha\":16,\"target_modules\":\"(((((((((a\"}";
    put(&x, bad_re, strlen(bad_re));
    expect("invalid target regex", FR_LORA_CFG, &x, SM_EFORMAT, "target_modules");
    x.n = 0;
    const char *huge_r = "{\"peft_type\":\"LORA\",\"r\":1e300,\"lora_alpha\":16,\"target_modules\":[\"q_proj\"]}";
    put(&x, huge_r, strlen(huge_r));
    expect("r = 1e300", FR_LORA_CFG, &x, SM_ERANGE, "\"r\"");
}

/* ------------------------------------------------------------ fuzz findings */

static int parser_for(const char *target)
{
    static const struct {
        const char *name;
        int parser;
    } map[] = {{"gguf", FR_GGUF},         {"safetensors", FR_ST},          {"imatrix", FR_IMATRIX},
               {"spm", FR_SPM},           {"adapter_config", FR_LORA_CFG}, {"lora_tensors", FR_LORA_ST}};
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (!strcmp(map[i].name, target))
            return map[i].parser;
    return -1;
}

Test(regressions, fuzz_findings_replay)
{
    const char *root = "tests/fuzz/regressions";
    DIR *d = opendir(root);
    cr_assert_not_null(d, "%s missing (run from the repository root)", root);
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        int parser = parser_for(e->d_name);
        if (parser < 0)
            continue; /* targets driven through files are replayed by their own suites */
        char sub[1024];
        snprintf(sub, sizeof sub, "%s/%s", root, e->d_name);
        DIR *sd = opendir(sub);
        if (!sd)
            continue;
        struct dirent *f;
        while ((f = readdir(sd))) {
            if (f->d_name[0] == '.')
                continue;
            char p[2048];
            snprintf(p, sizeof p, "%s/%s", sub, f->d_name);
            size_t len = 0;
            uint8_t *buf = ts_read(p, &len);
            cr_assert_not_null(buf, "%s", p);
            sm_err err;
            fa_reset_max();
            int rc = fr_parse(parser, buf, len, &err);
            cr_assert_leq(rc, 0, "%s", p);
            cr_assert_leq(fa_max_request(), FR_MAX_ALLOC + 64 * len, "%s: asked for %zu bytes", p, fa_max_request());
            free(buf);
            n++;
        }
        closedir(sd);
    }
    closedir(d);
    cr_assert_geq(n, 9, "only %d inputs replayed from %s", n, root);
    cr_log_info("replayed %d fuzz findings", n);
}

/* ------------------------------------------------------------ tokenizers */

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* 256 KiB of one repeated character or of random bytes: the tokenizers must
 * stay near linear (release: ~0.2 s; the bound leaves room for ASan and a
 * busy machine, and catches quadratic behaviour, which takes minutes). */
static void tok_linear(const char *vocab)
{
    gguf_file g;
    sm_err err;
    cr_assert_eq(gguf_open(&g, ts_path(vocab), &err), 0, "%s", err.msg);
    tok_vocab *v = NULL;
    cr_assert_eq(tok_load(&v, &g, &err), 0, "%s", err.msg);
    gguf_close(&g);
    size_t n = 256u << 10;
    char *text = malloc(n);
    cr_assert_not_null(text);
    const char fills[] = {'a', ' ', '\n', '1', 0};
    for (int k = 0; k < 5; k++) {
        if (k < 4) {
            memset(text, fills[k], n);
        } else {
            uint32_t s = 12345;
            for (size_t i = 0; i < n; i++) {
                s = s * 1103515245u + 12345u;
                text[i] = (char)(s >> 16);
            }
        }
        int32_t *ids = NULL;
        size_t count = 0;
        double t0 = now_s();
        cr_assert_eq(tok_encode(v, text, n, true, true, &ids, &count, &err), 0, "%s", err.msg);
        double dt = now_s() - t0;
        cr_assert_gt(count, 0);
        cr_assert_lt(dt, 60.0, "%s: %zu bytes (pattern %d) took %.1f s", vocab, n, k, dt);
        free(ids);
    }
    free(text);
    tok_free(v);
}

Test(regressions, tokenizer_spm_linear)
{
    tok_linear("vocab/ggml-vocab-llama-spm.gguf");
}

Test(regressions, tokenizer_bpe_linear)
{
    tok_linear("vocab/ggml-vocab-qwen2.gguf");
}
