/* test_convert_vocab.c — tokenizer KVs of smelt-convert against llama.cpp's
 * convert_hf_to_gguf.py outputs, plus the SentencePiece protobuf decoder,
 * the pre-tokenizer table and a table of malformed inputs. */
#include <criterion/criterion.h>

#include "convert/vocab.h"
#include "gguf.h"
#include "support.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ helpers */

static uint32_t config_vocab_size(const char *dir)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/config.json", dir);
    json_t *j = json_load_file(p, 0, NULL);
    uint32_t v = 0;
    if (j && json_is_integer(json_object_get(j, "vocab_size")))
        v = (uint32_t)json_integer_value(json_object_get(j, "vocab_size"));
    json_decref(j);
    return v;
}

/* Builds a GGUF holding only the tokenizer KVs of dir; returns the rc. */
static int build_vocab(const char *dir, const char *arch, const char *pre, uint32_t vocab_size,
                       const char *out, cv_vocab_info *info, sm_err *err)
{
    gguf_writer *w = gguf_writer_init();
    cr_assert_not_null(w);
    cv_vocab_opts o = {pre, vocab_size, arch};
    int rc = cv_vocab_add_kv_info(w, dir, &o, info, err);
    if (rc == 0 && out) {
        rc = gguf_writer_begin(w, out, err);
        if (rc == 0)
            rc = gguf_writer_finish(w, err);
        else
            gguf_writer_abort(w);
    }
    gguf_writer_free(w);
    return rc;
}

static int is_tok_key(const gguf_kv *kv)
{
    return kv->key.len >= 10 && memcmp(kv->key.ptr, "tokenizer.", 10) == 0;
}

/* Every tokenizer.* KV of ref must appear in mine with the same type, count
 * and bytes, in the same relative order, and mine has no others. */
static void compare_tokenizer_kvs(const char *mine, const char *ref)
{
    gguf_file a, b;
    sm_err err = {0};
    cr_assert_eq(gguf_open(&a, mine, &err), 0, "%s", err.msg);
    cr_assert_eq(gguf_open(&b, ref, &err), 0, "%s", err.msg);
    uint64_t ia = 0, ib = 0, n = 0;
    for (;;) {
        while (ia < a.n_kv && !is_tok_key(&a.kv[ia]))
            ia++;
        while (ib < b.n_kv && !is_tok_key(&b.kv[ib]))
            ib++;
        if (ia == a.n_kv || ib == b.n_kv)
            break;
        const gguf_kv *x = &a.kv[ia], *y = &b.kv[ib];
        cr_assert(x->key.len == y->key.len && memcmp(x->key.ptr, y->key.ptr, x->key.len) == 0,
                  "KV %llu: key %.*s, reference has %.*s", (unsigned long long)n, (int)x->key.len, x->key.ptr,
                  (int)y->key.len, y->key.ptr);
        cr_assert_eq(x->type, y->type, "%.*s: type %u vs %u", (int)x->key.len, x->key.ptr, x->type, y->type);
        cr_assert_eq(x->arr_type, y->arr_type, "%.*s: array type", (int)x->key.len, x->key.ptr);
        cr_assert_eq(x->n, y->n, "%.*s: count %llu vs %llu", (int)x->key.len, x->key.ptr,
                     (unsigned long long)x->n, (unsigned long long)y->n);
        cr_assert_eq(x->raw_len, y->raw_len, "%.*s: byte length", (int)x->key.len, x->key.ptr);
        if (memcmp(x->raw, y->raw, x->raw_len) != 0) {
            uint64_t k = 0;
            while (x->raw[k] == y->raw[k])
                k++;
            cr_assert_fail("%.*s: bytes differ at value byte %llu", (int)x->key.len, x->key.ptr, (unsigned long long)k);
        }
        ia++;
        ib++;
        n++;
    }
    while (ia < a.n_kv && !is_tok_key(&a.kv[ia]))
        ia++;
    while (ib < b.n_kv && !is_tok_key(&b.kv[ib]))
        ib++;
    cr_assert_eq(ia, a.n_kv, "extra key %.*s", ia < a.n_kv ? (int)a.kv[ia].key.len : 0, ia < a.n_kv ? a.kv[ia].key.ptr : "");
    cr_assert_eq(ib, b.n_kv, "missing key %.*s", ib < b.n_kv ? (int)b.kv[ib].key.len : 0, ib < b.n_kv ? b.kv[ib].key.ptr : "");
    cr_assert_gt(n, 5);
    gguf_close(&a);
    gguf_close(&b);
}

static void check_model(const char *model, const char *arch, const char *ref_rel, const char *pre)
{
    char dir[1024], out[1200];
    snprintf(dir, sizeof dir, "%s", ts_path(model));
    char *tmp = ts_tmpdir();
    cr_assert_not_null(tmp);
    snprintf(out, sizeof out, "%s/vocab.gguf", tmp);
    sm_err err = {0};
    cv_vocab_info info;
    int rc = build_vocab(dir, arch, pre, config_vocab_size(dir), out, &info, &err);
    cr_assert_eq(rc, 0, "%s: %s", model, err.msg);
    compare_tokenizer_kvs(out, ts_path(ref_rel));
    ts_rmtree(tmp);
    free(tmp);
}

/* ------------------------------------------------------------ references */

Test(convert_vocab, stories260K_matches_reference)
{
    check_model("models/stories260K", "llama", "reference/stories260K/convert-f16.gguf", NULL);
}

Test(convert_vocab, stories260K_sharded_matches_reference)
{
    check_model("models/stories260K-bf16-sharded", "llama", "reference/stories260K/convert-sharded-bf16.gguf", NULL);
}

Test(convert_vocab, tinystories3m_matches_reference)
{
    check_model("models/tinystories-3m", "llama", "reference/tinystories-3m/convert-f16.gguf", NULL);
}

Test(convert_vocab, qwen2_tiny_matches_reference)
{
    check_model("models/qwen2-tiny", "qwen2", "reference/qwen2-tiny/convert-f16.gguf", NULL);
}

Test(convert_vocab, qwen2_tiny_matches_vocab_only_gguf)
{
    check_model("models/qwen2-tiny", "qwen2", "vocab/ggml-vocab-qwen2.gguf", "qwen2");
}

Test(convert_vocab, info_counts)
{
    sm_err err = {0};
    cv_vocab_info info;
    const char *dir = ts_path("models/qwen2-tiny");
    cr_assert_eq(build_vocab(dir, "qwen2", NULL, 151936, NULL, &info, &err), 0, "%s", err.msg);
    cr_assert_str_eq(info.model, "gpt2");
    cr_assert_str_eq(info.pre, "qwen2");
    cr_assert_eq(info.pre_detected, 1);
    cr_assert_eq(info.n_tokens, 151936);
    cr_assert_eq(info.n_added, 22);
    cr_assert_eq(info.n_pad, 151936 - 151665);
    cr_assert_eq(info.n_merges, 151387);
    cr_assert_eq(info.has_chat_template, 1);
    cr_assert_eq(info.n_kv, 10);
    dir = ts_path("models/stories260K");
    cr_assert_eq(build_vocab(dir, "llama", NULL, 512, NULL, &info, &err), 0, "%s", err.msg);
    cr_assert_str_eq(info.model, "llama");
    cr_assert_str_eq(info.pre, "default");
    cr_assert_eq(info.n_tokens, 512);
    cr_assert_eq(info.n_kv, 9);
    cr_assert_eq(info.has_chat_template, 0);
}

/* ------------------------------------------------------------ SentencePiece */

Test(convert_vocab, spm_parse_real_model)
{
    size_t len;
    uint8_t *buf = ts_read(ts_path("models/stories260K/tokenizer.model"), &len);
    cr_assert_not_null(buf);
    cv_spm_model m;
    sm_err err = {0};
    cr_assert_eq(cv_spm_parse(&m, buf, len, "tokenizer.model", &err), 0, "%s", err.msg);
    cr_assert_eq(m.n_pieces, 512);
    cr_assert_eq(m.model_type, 2); /* BPE */
    cr_assert_eq(m.vocab_size, 512);
    cr_assert_eq(m.byte_fallback, 1);
    cr_assert_eq(m.pad_id, -1);
    cr_assert_eq(m.bos_id, 1);
    cr_assert_eq(m.remove_extra_whitespaces, 1);
    cr_assert_eq(m.add_dummy_prefix, 1);
    cr_assert_eq(m.pieces[0].type, CV_TOK_UNKNOWN);
    cr_assert_eq(m.pieces[1].type, CV_TOK_CONTROL);
    cr_assert_eq(m.pieces[3].type, CV_TOK_BYTE);
    cr_assert(m.pieces[3].len == 6 && memcmp(m.pieces[3].ptr, "<0x00>", 6) == 0);
    /* piece 300 is "\u2581ha" with score -41.0 */
    cr_assert(m.pieces[300].len == 5 && memcmp(m.pieces[300].ptr, "\xe2\x96\x81ha", 5) == 0);
    cr_assert_float_eq(m.pieces[300].score, -41.0f, 0.0f);
    cv_spm_free(&m);
    free(buf);

    buf = ts_read(ts_path("models/tinystories-3m/tokenizer.model"), &len);
    cr_assert_not_null(buf);
    cr_assert_eq(cv_spm_parse(&m, buf, len, "tokenizer.model", &err), 0, "%s", err.msg);
    cr_assert_eq(m.remove_extra_whitespaces, 0);
    cv_spm_free(&m);
    free(buf);
}

/* Minimal ModelProto writer for synthetic cases. */
typedef struct pb {
    uint8_t b[4096];
    size_t n;
} pb;

static void pb_byte(pb *p, uint8_t v) { p->b[p->n++] = v; }
static void pb_var(pb *p, uint64_t v)
{
    while (v >= 0x80) {
        pb_byte(p, (uint8_t)(v | 0x80));
        v >>= 7;
    }
    pb_byte(p, (uint8_t)v);
}
static void pb_bytes(pb *p, const void *s, size_t n)
{
    memcpy(p->b + p->n, s, n);
    p->n += n;
}
static void pb_piece(pb *p, const char *s, float score, int type)
{
    pb inner = {{0}, 0};
    pb_byte(&inner, 0x0a);
    pb_var(&inner, strlen(s));
    pb_bytes(&inner, s, strlen(s));
    pb_byte(&inner, 0x15);
    pb_bytes(&inner, &score, 4);
    pb_byte(&inner, 0x18);
    pb_var(&inner, (uint64_t)type);
    pb_byte(p, 0x0a);
    pb_var(p, inner.n);
    pb_bytes(p, inner.b, inner.n);
}

Test(convert_vocab, spm_parse_synthetic_defaults_and_unknown_fields)
{
    pb p = {{0}, 0};
    pb_piece(&p, "<unk>", 0.0f, 2);
    pb_piece(&p, "a", -1.5f, 1);
    pb_piece(&p, "b", -2.0f, 9); /* unknown enum value -> NORMAL */
    /* an unknown varint field, an unknown fixed64 and an unknown length field */
    pb_byte(&p, 0x20);
    pb_var(&p, 300);
    pb_byte(&p, 0x29);
    pb_bytes(&p, "12345678", 8);
    pb_byte(&p, 0x32);
    pb_var(&p, 3);
    pb_bytes(&p, "xyz", 3);
    /* trainer_spec: model_type 2, byte_fallback true, pad_id -1 as 10 bytes */
    pb inner = {{0}, 0};
    pb_byte(&inner, 0x18);
    pb_var(&inner, 2);
    pb_byte(&inner, 0x98); /* field 35 varint: key 280 = 0x98 0x02 */
    pb_byte(&inner, 0x02);
    pb_var(&inner, 1);
    pb_byte(&inner, 0xd8); /* field 43 varint: key 344 = 0xd8 0x02 */
    pb_byte(&inner, 0x02);
    pb_var(&inner, UINT64_MAX);
    pb_byte(&p, 0x12);
    pb_var(&p, inner.n);
    pb_bytes(&p, inner.b, inner.n);
    /* normalizer_spec: add_dummy_prefix false */
    pb_byte(&p, 0x1a);
    pb_var(&p, 2);
    pb_byte(&p, 0x18);
    pb_byte(&p, 0x00);

    cv_spm_model m;
    sm_err err = {0};
    cr_assert_eq(cv_spm_parse(&m, p.b, p.n, "t.model", &err), 0, "%s", err.msg);
    cr_assert_eq(m.n_pieces, 3);
    cr_assert_eq(m.pieces[2].type, CV_TOK_NORMAL);
    cr_assert_float_eq(m.pieces[1].score, -1.5f, 0.0f);
    cr_assert_eq(m.model_type, 2);
    cr_assert_eq(m.byte_fallback, 1);
    cr_assert_eq(m.pad_id, -1);
    cr_assert_eq(m.add_dummy_prefix, 0);
    cr_assert_eq(m.remove_extra_whitespaces, 1); /* default */
    cv_spm_free(&m);
}

typedef struct pb_case {
    const char *name;
    uint8_t bytes[64];
    size_t n;
    int code;
    const char *msg;
} pb_case;

Test(convert_vocab, spm_parse_malformed_table)
{
    static const pb_case cases[] = {
        {"empty file", {0}, 0, SM_EFORMAT, "no pieces"},
        {"truncated key varint", {0x8a}, 1, SM_EFORMAT, "truncated varint"},
        {"truncated length", {0x0a}, 1, SM_EFORMAT, "truncated varint"},
        {"varint overflow", {0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}, 11, SM_ERANGE, "overflows 64 bits"},
        {"length past end", {0x0a, 0x20, 0x0a, 0x01}, 4, SM_EFORMAT, "runs past the end of ModelProto"},
        {"piece length past message", {0x0a, 0x03, 0x0a, 0x05, 0x41, 0x41, 0x41, 0x41, 0x41}, 9, SM_EFORMAT,
         "runs past the end of SentencePiece"},
        {"pieces with wire type 5", {0x0d, 0, 0, 0, 0}, 5, SM_EFORMAT, "field 1 of ModelProto has wire type 5, expected 2"},
        {"score with wire type 0", {0x0a, 0x05, 0x0a, 0x01, 0x41, 0x10, 0x01}, 7, SM_EFORMAT,
         "field 2 of SentencePiece has wire type 0, expected 5"},
        {"truncated score", {0x0a, 0x05, 0x0a, 0x01, 0x41, 0x15, 0x01}, 7, SM_EFORMAT, "truncated fixed32"},
        {"group wire type", {0x23}, 1, SM_EFORMAT, "unsupported wire type 3 for field 4"},
        {"known field as group", {0x0b}, 1, SM_EFORMAT, "field 1 of ModelProto has wire type 3, expected 2"},
        {"field number 0", {0x02, 0x00}, 2, SM_EFORMAT, "invalid field number 0"},
        {"piece without text", {0x0a, 0x02, 0x18, 0x02}, 4, SM_EFORMAT, "piece 0 has no text"},
        {"empty piece", {0x0a, 0x02, 0x0a, 0x00}, 4, SM_EFORMAT, "piece 0 is empty"},
        {"invalid utf-8", {0x0a, 0x05, 0x0a, 0x01, 0xff, 0x18, 0x02}, 7, SM_EFORMAT, "not valid UTF-8"},
        {"no unknown piece", {0x0a, 0x03, 0x0a, 0x01, 0x41}, 5, SM_EFORMAT, "exactly one UNKNOWN"},
        {"duplicate piece", {0x0a, 0x05, 0x0a, 0x01, 0x41, 0x18, 0x02, 0x0a, 0x03, 0x0a, 0x01, 0x41}, 12, SM_EDUP,
         "already defined as piece 0"},
        {"trainer_spec wrong wire type", {0x12, 0x02, 0x1d, 0x00}, 4, SM_EFORMAT, "field 3 of TrainerSpec has wire type 5"},
        {"truncated normalizer", {0x1a, 0x02, 0x18}, 3, SM_EFORMAT, "runs past the end of ModelProto"},
        {"byte piece without byte_fallback", {0x0a, 0x05, 0x0a, 0x01, 0x41, 0x18, 0x02, 0x0a, 0x0a, 0x0a, 0x06, '<', '0', 'x',
         '4', '1', '>', 0x18, 0x06}, 19, SM_EFORMAT, "byte piece 1 found although trainer_spec.byte_fallback is false"},
        {"byte piece misspelled", {0x12, 0x03, 0x98, 0x02, 0x01, 0x0a, 0x05, 0x0a, 0x01, 0x41, 0x18, 0x02, 0x0a, 0x0a, 0x0a, 0x06,
         '<', '0', 'x', '4', 'a', '>', 0x18, 0x06}, 24, SM_EFORMAT, "expected <0xXX>"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cv_spm_model m;
        sm_err err = {0};
        int rc = cv_spm_parse(&m, cases[i].bytes, cases[i].n, "t.model", &err);
        cr_expect_eq(rc, cases[i].code, "%s: rc %d, expected %d (%s)", cases[i].name, rc, cases[i].code, err.msg);
        cr_expect(strstr(err.msg, cases[i].msg) != NULL, "%s: message \"%s\" lacks \"%s\"", cases[i].name, err.msg,
                  cases[i].msg);
        cr_expect(strstr(err.msg, "t.model") != NULL, "%s: message names the file", cases[i].name);
        cv_spm_free(&m);
    }
}

Test(convert_vocab, spm_truncated_real_model_at_many_offsets)
{
    size_t len;
    uint8_t *buf = ts_read(ts_path("models/stories260K/tokenizer.model"), &len);
    cr_assert_not_null(buf);
    size_t cuts[] = {1, 2, 3, 7, 100, 1000, len / 2 + 3, len - 40, len - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        cv_spm_model m;
        sm_err err = {0};
        int rc = cv_spm_parse(&m, buf, cuts[i], "tokenizer.model", &err);
        cr_expect_eq(rc, SM_EFORMAT, "cut at %zu: rc %d (%s)", cuts[i], rc, err.msg);
        cr_expect(strstr(err.msg, "runs past the end") || strstr(err.msg, "truncated"), "cut at %zu: %s", cuts[i], err.msg);
        cr_expect(strstr(err.msg, "offset ") != NULL, "cut at %zu: no offset in %s", cuts[i], err.msg);
    }
    free(buf);
}

/* ------------------------------------------------------------ synthetic dirs */

static char *make_dir(void)
{
    char *d = ts_tmpdir();
    cr_assert_not_null(d);
    return d;
}

static void put(const char *dir, const char *name, const char *text)
{
    char p[1200];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    cr_assert_eq(ts_write(p, text, strlen(text)), 0);
}

static void copy_file(const char *src, const char *dir, const char *name)
{
    size_t len;
    uint8_t *b = ts_read(src, &len);
    cr_assert_not_null(b, "%s", src);
    char p[1200];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    cr_assert_eq(ts_write(p, b, len), 0);
    free(b);
}

/* Opens the vocab GGUF built from dir and returns it (caller closes). */
static void build_open(const char *dir, const char *arch, uint32_t vs, gguf_file *g)
{
    char out[1200];
    snprintf(out, sizeof out, "%s/out.gguf", dir);
    sm_err err = {0};
    cr_assert_eq(build_vocab(dir, arch, NULL, vs, out, NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(gguf_open(g, out, &err), 0, "%s", err.msg);
}

static int32_t tok_type(const gguf_file *g, uint64_t i)
{
    const gguf_kv *kv = gguf_get(g, "tokenizer.ggml.token_type");
    cr_assert_not_null(kv);
    int32_t v;
    memcpy(&v, kv->raw + 4 * i, 4);
    return v;
}

static float tok_score(const gguf_file *g, uint64_t i)
{
    const gguf_kv *kv = gguf_get(g, "tokenizer.ggml.scores");
    cr_assert_not_null(kv);
    float v;
    memcpy(&v, kv->raw + 4 * i, 4);
    return v;
}

static void expect_tok(const gguf_file *g, uint64_t i, const char *s)
{
    const gguf_kv *kv = gguf_get(g, "tokenizer.ggml.tokens");
    cr_assert_not_null(kv);
    cr_assert_lt(i, kv->n);
    cr_expect(sm_str_eq(kv->strs[i], s), "token %llu is \"%.*s\", expected \"%s\"", (unsigned long long)i,
              (int)kv->strs[i].len, kv->strs[i].ptr, s);
}

Test(convert_vocab, spm_added_tokens_and_padding)
{
    char *d = make_dir();
    copy_file(ts_path("models/stories260K/tokenizer.model"), d, "tokenizer.model");
    put(d, "added_tokens.json", "{\"<extra>\": 512, \"<low>\": 5, \"<far>\": 900}");
    put(d, "tokenizer_config.json",
        "{\"added_tokens_decoder\": {\"513\": {\"content\": \"<|im_start|>\", \"special\": false},"
        " \"514\": {\"content\": \"a\\u2581b\", \"special\": false}, \"515\": {\"content\": \"<ctl>\", \"special\": true}},"
        " \"add_bos_token\": false, \"bos_token\": \"<s>\", \"add_prefix_space\": true,"
        " \"chat_template\": [{\"name\": \"default\", \"template\": \"T0\"}, {\"name\": \"tool use\", \"template\": \"T1\"}]}");
    put(d, "config.json", "{\"bos_token_id\": 1, \"eos_token_id\": 2, \"pad_token_id\": 600, \"unk_token_id\": 0}");
    gguf_file g;
    build_open(d, "llama", 520, &g);
    expect_tok(&g, 5, "<low>");
    cr_expect_eq(tok_type(&g, 5), CV_TOK_USER_DEFINED);
    cr_expect_float_eq(tok_score(&g, 5), -1000.0f, 0.0f);
    expect_tok(&g, 512, "<extra>");
    expect_tok(&g, 513, "<|im_start|>");
    cr_expect_eq(tok_type(&g, 513), CV_TOK_CONTROL); /* looks special */
    expect_tok(&g, 514, "a b");
    cr_expect_eq(tok_type(&g, 514), CV_TOK_USER_DEFINED);
    cr_expect_eq(tok_type(&g, 515), CV_TOK_CONTROL);
    expect_tok(&g, 516, "[PAD516]");
    cr_expect_eq(tok_type(&g, 519), CV_TOK_UNUSED);
    cr_expect_float_eq(tok_score(&g, 519), -10000.0f, 0.0f);
    /* pad 600 is out of range for a 520-token SPM vocab: skipped */
    cr_expect_eq(gguf_find_key(&g, "tokenizer.ggml.padding_token_id"), -1);
    uint32_t v;
    cr_expect_eq(gguf_get_u32(&g, "tokenizer.ggml.unknown_token_id", &v, NULL), 0);
    cr_expect_eq(v, 0);
    bool bv;
    cr_expect_eq(gguf_get_bool(&g, "tokenizer.ggml.add_bos_token", &bv, NULL), 0);
    cr_expect_eq(bv, false);
    cr_expect_eq(gguf_get_bool(&g, "tokenizer.ggml.add_space_prefix", &bv, NULL), 0);
    cr_expect_eq(bv, true);
    sm_str s;
    cr_expect_eq(gguf_get_str(&g, "tokenizer.chat_template", &s, NULL), 0);
    cr_expect(sm_str_eq(s, "T0"));
    cr_expect_eq(gguf_get_str(&g, "tokenizer.chat_template.tool_use", &s, NULL), 0);
    cr_expect(sm_str_eq(s, "T1"));
    const gguf_kv *names = gguf_get(&g, "tokenizer.chat_templates");
    cr_assert_not_null(names);
    cr_expect(names->n == 1 && sm_str_eq(names->strs[0], "tool_use"));
    /* order: ids (bos, eos, unk), add_bos, named templates, list, default, add_space_prefix */
    int64_t kb = gguf_find_key(&g, "tokenizer.ggml.bos_token_id"), ke = gguf_find_key(&g, "tokenizer.ggml.eos_token_id"),
            ku = gguf_find_key(&g, "tokenizer.ggml.unknown_token_id"),
            ka = gguf_find_key(&g, "tokenizer.ggml.add_bos_token"), kt = gguf_find_key(&g, "tokenizer.chat_template"),
            ks = gguf_find_key(&g, "tokenizer.ggml.add_space_prefix");
    cr_expect(kb < ke && ke < ku && ku < ka && ka < kt && kt < ks, "order %lld %lld %lld %lld %lld %lld", (long long)kb,
              (long long)ke, (long long)ku, (long long)ka, (long long)kt, (long long)ks);
    gguf_close(&g);
    ts_rmtree(d);
    free(d);
}

/* A small byte-level BPE tokenizer.json in the given pre-tokenizer form. */
static void put_bpe(const char *dir, const char *pre_tokenizer, const char *normalizer, const char *merges)
{
    char buf[8192];
    snprintf(buf, sizeof buf,
             "{\"version\": \"1.0\", \"added_tokens\": ["
             "{\"id\": 6, \"content\": \"<|end|>\", \"special\": true},"
             "{\"id\": 7, \"content\": \"<tool>\", \"special\": false},"
             "{\"id\": 8, \"content\": \"x\\u2581y\", \"special\": false}],"
             " \"normalizer\": %s, \"pre_tokenizer\": %s,"
             " \"decoder\": {\"type\": \"ByteLevel\"},"
             " \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"\\u0120\": 2, \"ab\": 3, \"\\u0120a\": 4, \"a b\": 5},"
             " \"merges\": %s}}",
             normalizer, pre_tokenizer, merges);
    put(dir, "tokenizer.json", buf);
}

static const char PT_GPT2[] = "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": true}";

Test(convert_vocab, bpe_synthetic_tokens_types_merges)
{
    char *d = make_dir();
    put_bpe(d, PT_GPT2, "null", "[[\"a\", \"b\"], [\"\\u0120\", \"a\"], [\"a \", \"b\"]]");
    put(d, "tokenizer_config.json",
        "{\"eos_token\": {\"content\": \"<|end|>\"}, \"pad_token\": \"<tool>\", \"add_bos_token\": false,"
        " \"add_eos_token\": true, \"add_prefix_space\": false, \"chat_template\": \"CT\"}");
    put(d, "config.json", "{\"eos_token_id\": 1, \"bos_token_id\": 0}");
    gguf_file g;
    build_open(d, "llama", 12, &g);
    sm_str s;
    cr_assert_eq(gguf_get_str(&g, "tokenizer.ggml.model", &s, NULL), 0);
    cr_expect(sm_str_eq(s, "gpt2"));
    cr_assert_eq(gguf_get_str(&g, "tokenizer.ggml.pre", &s, NULL), 0);
    cr_expect(sm_str_eq(s, "gpt-2"), "pre %.*s", (int)s.len, s.ptr);
    expect_tok(&g, 2, "\xc4\xa0");
    expect_tok(&g, 5, "a b");
    cr_expect_eq(tok_type(&g, 5), CV_TOK_NORMAL);
    expect_tok(&g, 6, "<|end|>");
    cr_expect_eq(tok_type(&g, 6), CV_TOK_CONTROL);
    expect_tok(&g, 7, "<tool>");
    cr_expect_eq(tok_type(&g, 7), CV_TOK_USER_DEFINED);
    expect_tok(&g, 8, "x y");
    expect_tok(&g, 9, "[PAD9]");
    cr_expect_eq(tok_type(&g, 11), CV_TOK_UNUSED);
    cr_expect_eq(gguf_find_key(&g, "tokenizer.ggml.scores"), -1);
    const gguf_kv *m = gguf_get(&g, "tokenizer.ggml.merges");
    cr_assert_not_null(m);
    cr_assert_eq(m->n, 3);
    cr_expect(sm_str_eq(m->strs[0], "a b"));
    cr_expect(sm_str_eq(m->strs[1], "\xc4\xa0 a"));
    cr_expect(sm_str_eq(m->strs[2], "a\xc4\xa0 b"), "space inside a merge part becomes U+0120");
    uint32_t v;
    cr_expect_eq(gguf_get_u32(&g, "tokenizer.ggml.eos_token_id", &v, NULL), 0);
    cr_expect_eq(v, 6, "tokenizer_config eos (added token) wins over config.json");
    cr_expect_eq(gguf_get_u32(&g, "tokenizer.ggml.padding_token_id", &v, NULL), 0);
    cr_expect_eq(v, 7);
    cr_expect_eq(gguf_get_u32(&g, "tokenizer.ggml.bos_token_id", &v, NULL), 0);
    cr_expect_eq(v, 0);
    bool b;
    cr_expect_eq(gguf_get_bool(&g, "tokenizer.ggml.add_eos_token", &b, NULL), 0);
    cr_expect_eq(b, true);
    cr_expect_eq(gguf_get_bool(&g, "tokenizer.ggml.add_space_prefix", &b, NULL), 0);
    cr_expect_eq(b, false);
    /* ids: eos, pad (tokenizer_config) then bos (config.json) */
    cr_expect_lt(gguf_find_key(&g, "tokenizer.ggml.eos_token_id"), gguf_find_key(&g, "tokenizer.ggml.padding_token_id"));
    cr_expect_lt(gguf_find_key(&g, "tokenizer.ggml.padding_token_id"), gguf_find_key(&g, "tokenizer.ggml.bos_token_id"));
    gguf_close(&g);
    ts_rmtree(d);
    free(d);
}

Test(convert_vocab, bpe_merges_txt_fallback_and_qwen2_no_prefix_key)
{
    char *d = make_dir();
    put_bpe(d, PT_GPT2, "null", "[]");
    put(d, "merges.txt", "#version: 0.2\na b\n\n\xc4\xa0 a\nbad line here\n");
    put(d, "tokenizer_config.json", "{\"add_prefix_space\": false}");
    gguf_file g;
    build_open(d, "qwen2", 0, &g);
    const gguf_kv *m = gguf_get(&g, "tokenizer.ggml.merges");
    cr_assert_not_null(m);
    cr_expect_eq(m->n, 2);
    cr_expect(sm_str_eq(m->strs[1], "\xc4\xa0 a"));
    cr_expect_eq(gguf_find_key(&g, "tokenizer.ggml.add_space_prefix"), -1, "qwen2 never writes add_space_prefix");
    const gguf_kv *t = gguf_get(&g, "tokenizer.ggml.tokens");
    cr_expect_eq(t->n, 9, "no config vocab_size: vocab + added tokens");
    gguf_close(&g);
    ts_rmtree(d);
    free(d);
}

/* ------------------------------------------------------------ pre table */

typedef struct pre_case {
    const char *pre_tokenizer;
    const char *normalizer;
    const char *expect; /* NULL: unknown */
} pre_case;

Test(convert_vocab, pre_tokenizer_table)
{
    static const pre_case cases[] = {
        {"{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": true}", "null", "gpt-2"},
        {"{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": true}",
         "{\"type\": \"NFC\"}", "olmo"},
        {"{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Digits\", \"individual_digits\": true},"
         " {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": true}]}",
         "null", "starcoder"},
        {"{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\":"
         " \"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}{1,3}| ?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"},"
         " \"behavior\": \"Isolated\", \"invert\": false}, {\"type\": \"ByteLevel\", \"add_prefix_space\": false,"
         " \"trim_offsets\": true, \"use_regex\": false}]}",
         "null", "llama-bpe"},
        {"{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Punctuation\", \"behavior\": \"Contiguous\"},"
         " {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": true},"
         " {\"type\": \"Digits\", \"individual_digits\": false}, {\"type\": \"Split\", \"pattern\": {\"Regex\":"
         " \"[0-9][0-9][0-9]\"}, \"behavior\": \"Isolated\", \"invert\": false}]}",
         "null", "falcon"},
        {"{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": \"[\\r\\n]\"}, \"behavior\":"
         " \"Isolated\", \"invert\": false}, {\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\s?\\\\p{L}+\"}, \"behavior\":"
         " \"Isolated\", \"invert\": false}, {\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\s?\\\\p{P}+\"}, \"behavior\":"
         " \"Isolated\", \"invert\": false}, {\"type\": \"Split\", \"pattern\": {\"Regex\": \"[一-龥ࠀ-一가-퟿]+\"}, \"behavior\":"
         " \"Isolated\", \"invert\": false}, {\"type\": \"Digits\", \"individual_digits\": true},"
         " {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": false}]}",
         "{\"type\": \"Sequence\", \"normalizers\": []}", "deepseek-coder"},
        /* unknown: a different regex, a Metaspace, add_prefix_space, no ByteLevel */
        {"{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\w+\"},"
         " \"behavior\": \"Isolated\", \"invert\": false}, {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": false}]}",
         "null", NULL},
        {"{\"type\": \"Metaspace\", \"replacement\": \"\\u2581\"}", "null", NULL},
        {"{\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"use_regex\": true}", "null", NULL},
        {"{\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\p{N}\"}, \"behavior\": \"Isolated\", \"invert\": false}", "null", NULL},
        {"null", "null", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[4096];
        snprintf(buf, sizeof buf, "{\"normalizer\": %s, \"pre_tokenizer\": %s}", cases[i].normalizer, cases[i].pre_tokenizer);
        json_error_t je;
        json_t *j = json_loads(buf, 0, &je);
        cr_assert_not_null(j, "case %zu: %s", i, je.text);
        char out[32] = "";
        sm_err err = {0};
        int rc = cv_bpe_detect_pre(j, out, sizeof out, &err);
        if (cases[i].expect) {
            cr_expect_eq(rc, 0, "case %zu: %s", i, err.msg);
            cr_expect_str_eq(out, cases[i].expect, "case %zu", i);
        } else {
            cr_expect_eq(rc, SM_EUNSUPP, "case %zu: rc %d", i, rc);
            cr_expect(strstr(err.msg, "--pre") && strstr(err.msg, "qwen2") && strstr(err.msg, "llama-bpe"), "case %zu: %s", i,
                      err.msg);
        }
        json_decref(j);
    }
    cr_expect(cv_pre_name_known("deepseek-r1-qwen"));
    cr_expect(!cv_pre_name_known("qwen3"));
}

/* ------------------------------------------------------------ malformed dirs */

/* Each case starts from a real model dir copied to a temp dir, then edits
 * one file. */
typedef struct bad_case {
    const char *name;
    const char *base;    /* models/... to copy (tokenizer files + config) */
    const char *arch;
    const char *file;    /* file to replace (NULL: remove tokenizer.* files) */
    const char *content; /* replacement text, or a JSON edit (see below) */
    int json_edit;       /* 1: content is "path=value" applied to the real JSON */
    int code;
    const char *msg;
} bad_case;

static void copy_base(const char *base, const char *d)
{
    static const char *files[] = {"config.json", "tokenizer.model", "tokenizer.json", "tokenizer_config.json",
                                  "special_tokens_map.json"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char src[1200];
        snprintf(src, sizeof src, "%s/%s", ts_path(base), files[i]);
        if (ts_exists(src))
            copy_file(src, d, files[i]);
    }
}

/* Applies "key=value-json" to the top level (or "model.key=") of a JSON file. */
static void json_edit(const char *d, const char *file, const char *edit)
{
    char p[1200];
    snprintf(p, sizeof p, "%s/%s", d, file);
    json_t *j = json_load_file(p, JSON_ALLOW_NUL, NULL);
    cr_assert_not_null(j, "%s", p);
    const char *eq = strchr(edit, '=');
    cr_assert_not_null(eq);
    char key[128];
    snprintf(key, sizeof key, "%.*s", (int)(eq - edit), edit);
    json_t *obj = j;
    char *dot = strchr(key, '.');
    if (dot) {
        *dot = 0;
        obj = json_object_get(j, key);
        memmove(key, dot + 1, strlen(dot + 1) + 1);
    }
    if (strcmp(eq + 1, "DELETE") == 0) {
        json_object_del(obj, key);
    } else {
        json_t *v = json_loads(eq + 1, JSON_DECODE_ANY, NULL);
        cr_assert_not_null(v, "%s", eq + 1);
        json_object_set_new(obj, key, v);
    }
    cr_assert_eq(json_dump_file(j, p, JSON_COMPACT), 0);
    json_decref(j);
}

Test(convert_vocab, malformed_inputs_table)
{
    static const bad_case cases[] = {
        {"tokenizer.json not JSON", "models/qwen2-tiny", "qwen2", "tokenizer.json", "{\"model\": [1, 2", 0, SM_EFORMAT,
         "tokenizer.json: line 1"},
        {"tokenizer.json not an object", "models/qwen2-tiny", "qwen2", "tokenizer.json", "[1, 2]", 0, SM_EFORMAT,
         "not a JSON object"},
        {"missing model", "models/qwen2-tiny", "qwen2", "tokenizer.json", "model=DELETE", 1, SM_EMISSING, "$.model"},
        {"missing vocab", "models/qwen2-tiny", "qwen2", "tokenizer.json", "model.vocab=DELETE", 1, SM_EMISSING,
         "$.model.vocab"},
        {"vocab id not an integer", "models/qwen2-tiny", "qwen2", "tokenizer.json", "model.vocab={\"a\": \"x\"}", 1, SM_EFORMAT,
         "$.model.vocab[\"a\"]"},
        {"model type WordPiece", "models/qwen2-tiny", "qwen2", "tokenizer.json", "model.type=\"WordPiece\"", 1, SM_EUNSUPP,
         "only BPE"},
        {"merges of wrong shape", "models/qwen2-tiny", "qwen2", "tokenizer.json", "model.merges=[[\"a\", \"b\", \"c\"]]", 1,
         SM_EFORMAT, "$.model.merges[0]"},
        {"merges mixed forms", "models/qwen2-tiny", "qwen2", "tokenizer.json", "model.merges=[\"a b\", [\"a\", \"b\"]]", 1,
         SM_EFORMAT, "$.model.merges[1]: expected a string"},
        {"merges not a list", "models/qwen2-tiny", "qwen2", "tokenizer.json", "model.merges={\"a\": 1}", 1, SM_ETYPE,
         "$.model.merges: expected an array"},
        {"unknown pre-tokenizer regex", "models/qwen2-tiny", "qwen2", "tokenizer.json",
         "pre_tokenizer={\"type\": \"Split\", \"pattern\": {\"Regex\": \"[a-z]+\"}, \"behavior\": \"Isolated\", \"invert\": false}",
         1, SM_EUNSUPP, "pass --pre NAME"},
        {"added token id not an integer", "models/qwen2-tiny", "qwen2", "tokenizer.json",
         "added_tokens=[{\"id\": \"7\", \"content\": \"x\"}]", 1, SM_EFORMAT, "$.added_tokens[0]"},
        {"token id beyond vocab_size", "models/qwen2-tiny", "qwen2", "tokenizer.json",
         "added_tokens=[{\"id\": 200000, \"content\": \"<big>\"}]", 1, SM_ERANGE, "not below vocab_size 151936"},
        {"bad tokenizer_config chat_template", "models/qwen2-tiny", "qwen2", "tokenizer_config.json", "chat_template=5", 1,
         SM_ETYPE, "$.chat_template"},
        {"bad added_tokens_decoder key", "models/qwen2-tiny", "qwen2", "tokenizer_config.json",
         "added_tokens_decoder={\"abc\": {\"content\": \"x\"}}", 1, SM_EFORMAT, "\"abc\" is not a token id"},
        {"tokenizer_config not JSON", "models/stories260K", "llama", "tokenizer_config.json", "{\"a\": }", 0, SM_EFORMAT,
         "tokenizer_config.json: line 1"},
        {"bad add_prefix_space type", "models/stories260K", "llama", "tokenizer_config.json", "add_prefix_space=\"yes\"", 1,
         SM_ETYPE, "add_prefix_space"},
        {"added_tokens_decoder content not a string", "models/stories260K", "llama", "tokenizer_config.json",
         "added_tokens_decoder={\"3\": {\"content\": 7}}", 1, SM_ETYPE, "[\"3\"].content"},
        {"added_tokens_decoder id past vocab", "models/stories260K", "llama", "tokenizer_config.json",
         "added_tokens_decoder={\"512\": {\"content\": \"x\"}}", 1, SM_ERANGE, "not below vocab size 512"},
        {"negative special id", "models/stories260K", "llama", "config.json", "eos_token_id=-3", 1, SM_ERANGE,
         "config.json: $.eos_token_id"},
        {"vocab_size below pieces", "models/stories260K", "llama", "config.json", "vocab_size=100", 1, SM_EMISMATCH,
         "512 pieces"},
        {"truncated tokenizer.model", "models/stories260K", "llama", "tokenizer.model", "\x0a\x80\x01\x0a", 0, SM_EFORMAT,
         "tokenizer.model: offset 1"},
        {"no tokenizer at all", "models/stories260K", "llama", NULL, NULL, 0, SM_EMISSING, "no tokenizer.model or tokenizer.json"},
        {"SentencePiece-style tokenizer.json", "models/qwen2-tiny", "llama", "tokenizer.json",
         "model.byte_fallback=true", 1, SM_EUNSUPP, "tokenizer.model"},
    };
    /* the byte_fallback case also needs a Sequence decoder: patched below */
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const bad_case *c = &cases[i];
        char *d = make_dir();
        copy_base(c->base, d);
        if (!c->file) {
            char p[1200];
            snprintf(p, sizeof p, "%s/tokenizer.model", d);
            remove(p);
        } else if (c->json_edit) {
            json_edit(d, c->file, c->content);
        } else {
            char p[1200];
            snprintf(p, sizeof p, "%s/%s", d, c->file);
            cr_assert_eq(ts_write(p, c->content, strlen(c->content)), 0);
        }
        if (strstr(c->name, "SentencePiece-style"))
            json_edit(d, "tokenizer.json", "decoder={\"type\": \"Sequence\", \"decoders\": []}");
        sm_err err = {0};
        int rc = build_vocab(d, c->arch, NULL, config_vocab_size(d), NULL, NULL, &err);
        cr_expect_eq(rc, c->code, "%s: rc %d, expected %d (%s)", c->name, rc, c->code, err.msg);
        cr_expect(strstr(err.msg, c->msg) != NULL, "%s: message \"%s\" lacks \"%s\"", c->name, err.msg, c->msg);
        ts_rmtree(d);
        free(d);
    }
}

Test(convert_vocab, pre_override_is_used)
{
    char *d = make_dir();
    put_bpe(d, "{\"type\": \"Whitespace\"}", "null", "[\"a b\"]");
    sm_err err = {0};
    cv_vocab_info info;
    cr_assert_eq(build_vocab(d, "qwen2", NULL, 0, NULL, &info, &err), SM_EUNSUPP);
    cr_expect(strstr(err.msg, "Whitespace") != NULL, "%s", err.msg);
    cr_assert_eq(build_vocab(d, "qwen2", "starcoder", 0, NULL, &info, &err), 0, "%s", err.msg);
    cr_expect_str_eq(info.pre, "starcoder");
    cr_expect_eq(info.pre_detected, 0);
    err.msg[0] = 0;
    cr_assert_eq(build_vocab(d, "qwen2", "qwen9", 0, NULL, &info, &err), SM_EINVAL);
    cr_expect(strstr(err.msg, "--pre qwen9: unknown pre-tokenizer name") && strstr(err.msg, "deepseek-llm"), "%s", err.msg);
    ts_rmtree(d);
    free(d);
}

/* Deterministic mutations of a real tokenizer.model: every result is either a
 * clean parse or a negative code with a message (run under MODE=asan this
 * also checks every length is bounded). */
Test(convert_vocab, spm_parse_survives_mutations)
{
    size_t len;
    uint8_t *orig = ts_read(ts_path("models/tinystories-3m/tokenizer.model"), &len);
    cr_assert_not_null(orig);
    uint8_t *buf = malloc(len);
    cr_assert_not_null(buf);
    uint64_t state = 0x9e3779b97f4a7c15ull;
    int n_ok = 0, n_err = 0;
    for (int it = 0; it < 3000; it++) {
        memcpy(buf, orig, len);
        int flips = 1 + (int)(state % 4);
        for (int f = 0; f < flips; f++) {
            state = state * 6364136223846793005ull + 1442695040888963407ull;
            size_t pos = (size_t)((state >> 33) % len);
            buf[pos] = (uint8_t)(state >> 13);
        }
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        size_t cut = (it % 3 == 0) ? (size_t)((state >> 29) % (len + 1)) : len;
        cv_spm_model m;
        sm_err err = {0};
        int rc = cv_spm_parse(&m, buf, cut, "fuzz.model", &err);
        if (rc == 0) {
            n_ok++;
            cr_assert_gt(m.n_pieces, 0);
            for (uint32_t i = 0; i < m.n_pieces; i++)
                cr_assert(m.pieces[i].ptr >= buf && m.pieces[i].ptr + m.pieces[i].len <= buf + cut);
        } else {
            n_err++;
            cr_assert_lt(rc, 0);
            cr_assert(strstr(err.msg, "fuzz.model") != NULL, "iteration %d: %s", it, err.msg);
        }
        cv_spm_free(&m);
    }
    cr_expect_gt(n_ok, 0);
    cr_expect_gt(n_err, 0);
    free(buf);
    free(orig);
}

/* LlamaModel.set_vocab extras: CodeLlama (vocab 32016) gets eot 32010 from a
 * second SpecialVocab; granite (49152) gets add_bos false; both fail like
 * the Python when that would duplicate a key. */
Test(convert_vocab, llama_codellama_and_granite_extras)
{
    char *d = make_dir();
    copy_file(ts_path("models/stories260K/tokenizer.model"), d, "tokenizer.model");
    put(d, "tokenizer_config.json", "{\"add_bos_token\": true, \"add_prefix_space\": true}");
    put(d, "config.json", "{\"bos_token_id\": 1, \"eos_token_id\": 2}");
    gguf_file g;
    build_open(d, "llama", 32016, &g);
    const gguf_kv *t = gguf_get(&g, "tokenizer.ggml.tokens");
    cr_assert_eq(t->n, 32016);
    expect_tok(&g, 32015, "[PAD32015]");
    uint32_t v;
    cr_expect_eq(gguf_get_u32(&g, "tokenizer.ggml.eot_token_id", &v, NULL), 0);
    cr_expect_eq(v, 32010);
    cr_expect_eq(gguf_find_key(&g, "tokenizer.ggml.prefix_token_id"), -1);
    cr_expect_lt(gguf_find_key(&g, "tokenizer.ggml.add_bos_token"), gguf_find_key(&g, "tokenizer.ggml.eot_token_id"));
    cr_expect_lt(gguf_find_key(&g, "tokenizer.ggml.eot_token_id"), gguf_find_key(&g, "tokenizer.ggml.add_space_prefix"));
    gguf_close(&g);

    /* eot from config.json wins over the 32010 default */
    put(d, "config.json", "{\"bos_token_id\": 1, \"eos_token_id\": 2, \"eot_token_id\": 7}");
    build_open(d, "llama", 32016, &g);
    cr_expect_eq(gguf_get_u32(&g, "tokenizer.ggml.eot_token_id", &v, NULL), 0);
    cr_expect_eq(v, 7);
    gguf_close(&g);

    sm_err err = {0};
    put(d, "tokenizer_config.json", "{\"chat_template\": \"x\"}");
    cr_expect_eq(build_vocab(d, "llama", NULL, 32016, NULL, NULL, &err), SM_EDUP);
    cr_expect(strstr(err.msg, "tokenizer.chat_template") != NULL, "%s", err.msg);

    put(d, "tokenizer_config.json", "{\"add_bos_token\": true}");
    cr_expect_eq(build_vocab(d, "llama", NULL, 49152, NULL, NULL, &err), SM_EDUP);
    cr_expect(strstr(err.msg, "add_bos_token") != NULL, "%s", err.msg);

    put(d, "tokenizer_config.json", "{\"add_eos_token\": false}");
    build_open(d, "llama", 49152, &g);
    bool b = true;
    cr_expect_eq(gguf_get_bool(&g, "tokenizer.ggml.add_bos_token", &b, NULL), 0);
    cr_expect_eq(b, false);
    cr_expect_eq(gguf_find_key(&g, "tokenizer.ggml.add_bos_token"), (int64_t)g.n_kv - 1, "granite add_bos comes last");
    gguf_close(&g);

    /* "add_prefix_space": null is written as false, as the Python's bool packing does */
    put(d, "tokenizer_config.json", "{\"add_prefix_space\": null}");
    build_open(d, "llama", 0, &g);
    b = true;
    cr_expect_eq(gguf_get_bool(&g, "tokenizer.ggml.add_space_prefix", &b, NULL), 0);
    cr_expect_eq(b, false);
    gguf_close(&g);

    /* qwen2 arch: none of the llama extras */
    put(d, "tokenizer_config.json", "{\"add_prefix_space\": true}");
    build_open(d, "qwen2", 49152, &g);
    cr_expect_eq(gguf_find_key(&g, "tokenizer.ggml.add_space_prefix"), -1);
    cr_expect_eq(gguf_find_key(&g, "tokenizer.ggml.add_bos_token"), -1);
    gguf_close(&g);
    ts_rmtree(d);
    free(d);
}

Test(convert_vocab, bpe_token_with_embedded_nul)
{
    char *d = make_dir();
    /* an added token's content may hold U+0000: its bytes are kept */
    put(d, "tokenizer.json",
        "{\"normalizer\": null, \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false},"
        " \"added_tokens\": [{\"id\": 2, \"content\": \"<|a\\u0000b|>\", \"special\": false}],"
        " \"model\": {\"type\": \"BPE\", \"vocab\": {\"x\": 0, \"z\": 1}, \"merges\": [\"x z\"]}}");
    gguf_file g;
    build_open(d, "qwen2", 0, &g);
    const gguf_kv *t = gguf_get(&g, "tokenizer.ggml.tokens");
    cr_assert_eq(t->n, 3);
    cr_expect(t->strs[2].len == 7 && memcmp(t->strs[2].ptr, "<|a\0b|>", 7) == 0);
    cr_expect_eq(tok_type(&g, 2), CV_TOK_CONTROL);
    gguf_close(&g);
    /* jansson cannot hold U+0000 in an object key: a clear error, not a cut token */
    put(d, "tokenizer.json",
        "{\"pre_tokenizer\": null, \"model\": {\"type\": \"BPE\", \"vocab\": {\"x\\u0000y\": 0}, \"merges\": []}}");
    sm_err err = {0};
    cr_expect_eq(build_vocab(d, "qwen2", NULL, 0, NULL, NULL, &err), SM_EFORMAT);
    cr_expect(strstr(err.msg, "tokenizer.json: line 1") && strstr(err.msg, "NUL"), "%s", err.msg);
    ts_rmtree(d);
    free(d);
}

/* tokenizer_config.json's added_tokens_decoder as transformers applies it:
 * differing flags for the same id/content replace tokenizer.json's; equal
 * entries change nothing; new ids are added. */
Test(convert_vocab, bpe_config_added_tokens_override_flags)
{
    char *d = make_dir();
    put_bpe(d, PT_GPT2, "null", "[\"a b\"]");
    /* 7 "<tool>" special false in tokenizer.json */
    put(d, "tokenizer_config.json",
        "{\"added_tokens_decoder\": {\"7\": {\"content\": \"<tool>\", \"special\": false},"
        " \"9\": {\"content\": \"<new>\", \"special\": true}, \"10\": {\"content\": \"<named>\", \"special\": false,"
        " \"lstrip\": true}}, \"additional_special_tokens\": [\"<named>\"]}");
    gguf_file g;
    build_open(d, "qwen2", 12, &g);
    cr_expect_eq(tok_type(&g, 7), CV_TOK_USER_DEFINED, "same flags: unchanged");
    expect_tok(&g, 9, "<new>");
    cr_expect_eq(tok_type(&g, 9), CV_TOK_CONTROL);
    expect_tok(&g, 10, "<named>");
    cr_expect_eq(tok_type(&g, 10), CV_TOK_CONTROL, "named in additional_special_tokens");
    gguf_close(&g);

    put(d, "tokenizer_config.json", "{\"added_tokens_decoder\": {\"7\": {\"content\": \"<tool>\", \"special\": true}}}");
    build_open(d, "qwen2", 12, &g);
    cr_expect_eq(tok_type(&g, 7), CV_TOK_CONTROL, "config flags win");
    gguf_close(&g);
    ts_rmtree(d);
    free(d);
}

/* ------------------------------------------------------------ in-memory entry */

/* cv_vocab_add_kv_mem with dir's tokenizer.model (parsed here),
 * tokenizer_config.json and config.json given as buffers (tc/cfg override
 * the files when non-NULL); tokenizer.json etc. still come from dir. */
static int build_vocab_mem(const char *dir, const char *arch, uint32_t vocab_size, const char *tc, const char *cfg,
                           const char *out, cv_vocab_info *info, sm_err *err)
{
    char p[1200];
    size_t ml = 0, tl = 0, cl = 0;
    snprintf(p, sizeof p, "%s/tokenizer.model", dir);
    uint8_t *model = ts_exists(p) ? ts_read(p, &ml) : NULL;
    snprintf(p, sizeof p, "%s/tokenizer_config.json", dir);
    char *tc_own = tc ? NULL : ts_exists(p) ? (char *)ts_read(p, &tl) : NULL;
    snprintf(p, sizeof p, "%s/config.json", dir);
    char *cfg_own = cfg ? NULL : ts_exists(p) ? (char *)ts_read(p, &cl) : NULL;
    cv_spm_model spm;
    memset(&spm, 0, sizeof spm);
    if (model)
        cr_assert_eq(cv_spm_parse(&spm, model, ml, "tokenizer.model", err), 0, "%s", err->msg);
    gguf_writer *w = gguf_writer_init();
    cr_assert_not_null(w);
    cv_vocab_opts o = {NULL, vocab_size, arch};
    int rc = cv_vocab_add_kv_mem(w, dir, model ? &spm : NULL, tc ? tc : tc_own, tc ? strlen(tc) : tl,
                                 cfg ? cfg : cfg_own, cfg ? strlen(cfg) : cl, &o, info, err);
    if (rc == 0 && out) {
        rc = gguf_writer_begin(w, out, err);
        if (rc == 0)
            rc = gguf_writer_finish(w, err);
        else
            gguf_writer_abort(w);
    }
    gguf_writer_free(w);
    cv_spm_free(&spm);
    free(model);
    free(tc_own);
    free(cfg_own);
    return rc;
}

/* The in-memory entry writes the same KVs as the directory one. */
Test(convert_vocab, mem_entry_matches_files)
{
    static const char *const models[][2] = {
        {"models/stories260K", "llama"}, {"models/tinystories-3m", "llama"}, {"models/qwen2-tiny", "qwen2"}};
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) {
        char dir[1024], a[1200], b[1200];
        snprintf(dir, sizeof dir, "%s", ts_path(models[i][0]));
        char *tmp = ts_tmpdir();
        snprintf(a, sizeof a, "%s/file.gguf", tmp);
        snprintf(b, sizeof b, "%s/mem.gguf", tmp);
        sm_err err = {0};
        cv_vocab_info fi, mi;
        uint32_t vs = config_vocab_size(dir);
        cr_assert_eq(build_vocab(dir, models[i][1], NULL, vs, a, &fi, &err), 0, "%s: %s", models[i][0], err.msg);
        cr_assert_eq(build_vocab_mem(dir, models[i][1], vs, NULL, NULL, b, &mi, &err), 0, "%s: %s", models[i][0],
                     err.msg);
        compare_tokenizer_kvs(b, a);
        cr_assert_eq(mi.n_kv, fi.n_kv, "%s", models[i][0]);
        cr_assert_eq(mi.n_tokens, fi.n_tokens, "%s", models[i][0]);
        cr_assert_str_eq(mi.pre, fi.pre, "%s", models[i][0]);
        ts_rmtree(tmp);
        free(tmp);
    }
}

/* Malformed tokenizer_config.json / config.json text: the same code and
 * message as the same bytes in the file. */
Test(convert_vocab, mem_entry_malformed_like_files)
{
    static const struct {
        const char *tc, *cfg;
        int code;
        const char *msg;
    } bad[] = {
        {"{\"bos_token\": ", NULL, SM_EFORMAT, "tokenizer_config.json: line 1"},
        {"[1, 2]", NULL, SM_EFORMAT, "top level is not a JSON object"},
        {"{\"added_tokens_decoder\": 3}", NULL, SM_ETYPE, "added_tokens_decoder: expected an object"},
        {"{\"added_tokens_decoder\": {\"x\": {\"content\": \"a\"}}}", NULL, SM_EFORMAT, "is not a token id"},
        {"{\"added_tokens_decoder\": {\"9999\": {\"content\": \"a\"}}}", NULL, SM_ERANGE, "not below vocab size"},
        {"{\"chat_template\": 5}", NULL, SM_ETYPE, "chat_template"},
        {"{}", "{\"vocab_size\": ", SM_EFORMAT, "config.json: line 1"},
        {"{}", "[\"text\"]", SM_EFORMAT, "config.json: top level is not a JSON object"},
    };
    char src[1024];
    snprintf(src, sizeof src, "%s", ts_path("models/stories260K"));
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sm_err e1 = {0}, e2 = {0};
        int rc = build_vocab_mem(src, "llama", 512, bad[i].tc, bad[i].cfg, NULL, NULL, &e1);
        cr_assert_eq(rc, bad[i].code, "case %zu: %d %s", i, rc, e1.msg);
        cr_assert(strstr(e1.msg, bad[i].msg), "case %zu: %s", i, e1.msg);
        char *dir = make_dir();
        copy_file(ts_path("models/stories260K/tokenizer.model"), dir, "tokenizer.model");
        put(dir, "tokenizer_config.json", bad[i].tc);
        if (bad[i].cfg)
            put(dir, "config.json", bad[i].cfg);
        else
            copy_file(ts_path("models/stories260K/config.json"), dir, "config.json");
        cr_assert_eq(build_vocab(dir, "llama", NULL, 512, NULL, NULL, &e2), rc, "case %zu: %s", i, e2.msg);
        cr_assert_str_eq(e2.msg, e1.msg, "case %zu", i);
        ts_rmtree(dir);
        free(dir);
    }
}
