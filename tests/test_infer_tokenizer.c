/* Tokenizers of smelt-infer against llama.cpp c392e5094: the test vectors of
 * test-tokenizer-0 for every vocab in shared/vocab, the llama-tokenize
 * references (tokenize.json), the detokenized generations (generate.json),
 * the TinyStories token count, malformed vocabularies and random bytes. */
#include <criterion/criterion.h>

#include "formats/gguf.h"
#include "infer/tokenizer.h"
#include "support.h"

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static tok_vocab *load_vocab(const char *rel, gguf_file *g)
{
    sm_err err = {0};
    cr_assert_eq(gguf_open(g, ts_path(rel), &err), 0, "%s: %s", rel, err.msg);
    tok_vocab *v = NULL;
    cr_assert_eq(tok_load(&v, g, &err), 0, "%s: %s", rel, err.msg);
    return v;
}

/* CPU time of this thread: the limit must hold on a loaded 2-core machine */
static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ------------------------------------------------ test-tokenizer-0 vectors */

typedef struct vcase {
    const char *s; /* into the .inp buffer */
    size_t len;
    int32_t *ids;
    size_t n;
} vcase;

/* Splits .inp on "\n__ggml_vocab_test__\n" and parses one .out line per
 * case, as test-tokenizer-0.cpp does. Returns the case count. */
static size_t read_vectors(const char *name, char **inp_buf, vcase **cases)
{
    char rel[256];
    size_t li, lo;
    snprintf(rel, sizeof rel, "vocab/%s.inp", name);
    char *inp = (char *)ts_read(ts_path(rel), &li);
    snprintf(rel, sizeof rel, "vocab/%s.out", name);
    char *outs = (char *)ts_read(ts_path(rel), &lo);
    cr_assert(inp && outs, "%s: test vectors missing", name);
    static const char sep[] = "\n__ggml_vocab_test__\n";
    size_t cap = 16, n = 0;
    vcase *c = calloc(cap, sizeof *c);
    size_t pos = 0;
    while (pos < li) {
        char *next = memmem(inp + pos, li - pos, sep, sizeof sep - 1);
        if (n == cap)
            c = realloc(c, (cap *= 2) * sizeof *c);
        c[n].s = inp + pos;
        c[n].len = next ? (size_t)(next - (inp + pos)) : li - pos;
        n++;
        if (!next)
            break;
        pos = (size_t)(next - inp) + sizeof sep - 1;
    }
    size_t line = 0;
    char *p = outs, *end = outs + lo;
    while (p < end && line < n) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *le = nl ? nl : end;
        size_t k = 0, kcap = 8;
        int32_t *ids = malloc(kcap * sizeof *ids);
        char *q = p;
        while (q < le) {
            while (q < le && (*q == ' ' || *q == '\r'))
                q++;
            if (q >= le)
                break;
            if (k == kcap)
                ids = realloc(ids, (kcap *= 2) * sizeof *ids);
            ids[k++] = (int32_t)strtol(q, &q, 10);
        }
        c[line].ids = ids;
        c[line].n = k;
        line++;
        p = le + 1;
    }
    cr_assert_eq(line, n, "%s: %zu outputs for %zu inputs", name, line, n);
    free(outs);
    *inp_buf = inp;
    *cases = c;
    return n;
}

static void free_vectors(char *inp, vcase *c, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(c[i].ids);
    free(c);
    free(inp);
}

static int has_clean_space_pattern(const char *s, size_t len)
{
    for (size_t i = 0; i + 1 < len; i++)
        if (s[i] == ' ' && (s[i + 1] == '?' || s[i + 1] == '!' || s[i + 1] == '.' || s[i + 1] == ',' || s[i + 1] == '\''))
            return 1;
    return 0;
}

/* Runs one vocab's vectors; returns the number of passing cases. */
static size_t run_vectors(const char *vocab, const char *name, size_t *n_cases, size_t *n_roundtrip,
                          size_t *n_rt_cases)
{
    char rel[256];
    snprintf(rel, sizeof rel, "vocab/%s", vocab);
    gguf_file g;
    tok_vocab *v = load_vocab(rel, &g);
    char *inp;
    vcase *c;
    size_t n = read_vectors(name, &inp, &c);
    size_t pass = 0, rt = 0, rt_cases = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t *ids = NULL;
        size_t m = 0;
        sm_err err = {0};
        cr_assert_eq(tok_encode(v, c[i].s, c[i].len, false, false, &ids, &m, &err), 0, "%s", err.msg);
        int ok = m == c[i].n && (m == 0 || memcmp(ids, c[i].ids, m * sizeof *ids) == 0);
        if (ok) {
            pass++;
        } else {
            fprintf(stderr, "%s case %zu '%.*s': got", name, i, (int)c[i].len, c[i].s);
            for (size_t k = 0; k < m; k++)
                fprintf(stderr, " %d", ids[k]);
            fprintf(stderr, "\n   expected");
            for (size_t k = 0; k < c[i].n; k++)
                fprintf(stderr, " %d", c[i].ids[k]);
            fprintf(stderr, "\n");
        }
        /* round trip: llama.cpp's detokenizer gives the text back except
         * where its clean_spaces pass rewrites " ." / " '" etc., or where
         * SPM's add-space prefix meets a leading space it cannot tell apart */
        char *txt = NULL;
        size_t tl = 0;
        cr_assert_eq(tok_detokenize(v, ids, m, false, false, &txt, &tl, &err), 0, "%s", err.msg);
        int expect_rt = tok_kind(v) != TOK_KIND_WPM && /* lowercases, strips accents */
                        !(tok_add_space_prefix(v) && c[i].len == 0) &&
                        !(tok_kind(v) == TOK_KIND_BPE && has_clean_space_pattern(c[i].s, c[i].len));
        if (expect_rt) {
            rt_cases++;
            if (tl == c[i].len && memcmp(txt, c[i].s, tl) == 0)
                rt++;
            else
                fprintf(stderr, "%s case %zu: round trip gave '%s'\n", name, i, txt);
        }
        free(txt);
        free(ids);
    }
    free_vectors(inp, c, n);
    tok_free(v);
    gguf_close(&g);
    *n_cases = n;
    *n_roundtrip = rt;
    *n_rt_cases = rt_cases;
    return pass;
}

Test(tokenizer, vocab_test_vectors)
{
    /* {vocabulary, test vectors}: deepseek-r1-qwen's GGUF is not shipped, but
     * it is the Qwen2.5 vocabulary with the qwen2 pre-tokenizer */
    static const char *vocabs[][2] = {
        {"ggml-vocab-llama-spm.gguf", "ggml-vocab-llama-spm.gguf"},
        {"ggml-vocab-phi-3.gguf", "ggml-vocab-phi-3.gguf"},
        {"ggml-vocab-gpt-2.gguf", "ggml-vocab-gpt-2.gguf"},
        {"ggml-vocab-qwen2.gguf", "ggml-vocab-qwen2.gguf"},
        {"ggml-vocab-qwen2.gguf", "ggml-vocab-deepseek-r1-qwen.gguf"},
        {"ggml-vocab-deepseek-llm.gguf", "ggml-vocab-deepseek-llm.gguf"},
        {"ggml-vocab-deepseek-coder.gguf", "ggml-vocab-deepseek-coder.gguf"},
        {"ggml-vocab-falcon.gguf", "ggml-vocab-falcon.gguf"},
        {"ggml-vocab-starcoder.gguf", "ggml-vocab-starcoder.gguf"},
        {"ggml-vocab-refact.gguf", "ggml-vocab-refact.gguf"},
        {"ggml-vocab-mpt.gguf", "ggml-vocab-mpt.gguf"},
        {"ggml-vocab-bert-bge.gguf", "ggml-vocab-bert-bge.gguf"},
    };
    size_t total_fail = 0, rt_fail = 0;
    for (size_t k = 0; k < sizeof vocabs / sizeof vocabs[0]; k++) {
        size_t n, rt, rtc;
        size_t pass = run_vectors(vocabs[k][0], vocabs[k][1], &n, &rt, &rtc);
        fprintf(stderr, "tokenizer vectors: %-34s %zu/%zu pass, round trip %zu/%zu\n", vocabs[k][1], pass, n, rt, rtc);
        total_fail += n - pass;
        rt_fail += rtc - rt;
        cr_expect_gt(n, 30, "%s: too few cases", vocabs[k][1]);
    }
    cr_assert_eq(total_fail, 0, "%zu test vectors differ from llama.cpp", total_fail);
    cr_assert_eq(rt_fail, 0, "%zu round trips failed", rt_fail);
}

/* ------------------------------------------------ tokenize.json */

static void ids_from_json(json_t *a, int32_t **ids, size_t *n)
{
    cr_assert(json_is_array(a));
    *n = json_array_size(a);
    *ids = malloc((*n + 1) * sizeof **ids);
    for (size_t i = 0; i < *n; i++)
        (*ids)[i] = (int32_t)json_integer_value(json_array_get(a, i));
}

static void expect_ids(const tok_vocab *v, const char *what, size_t ci, const char *s, size_t len, bool add_special,
                       bool parse_special, json_t *want)
{
    int32_t *exp, *got = NULL;
    size_t ne, ng = 0;
    sm_err err = {0};
    ids_from_json(want, &exp, &ne);
    cr_assert_eq(tok_encode(v, s, len, add_special, parse_special, &got, &ng, &err), 0, "%s", err.msg);
    int ok = ng == ne && (ne == 0 || memcmp(got, exp, ne * sizeof *got) == 0);
    if (!ok) {
        fprintf(stderr, "%s case %zu '%.*s': got", what, ci, (int)len, s);
        for (size_t k = 0; k < ng; k++)
            fprintf(stderr, " %d", got[k]);
        fprintf(stderr, "\n");
    }
    cr_expect(ok, "%s case %zu (add_special %d, parse_special %d) differs", what, ci, add_special, parse_special);
    free(exp);
    free(got);
}

static size_t hex_decode(const char *hex, char *out)
{
    size_t n = 0;
    for (; hex[0] && hex[1]; hex += 2) {
        unsigned b;
        sscanf(hex, "%2x", &b);
        out[n++] = (char)b;
    }
    return n;
}

static void check_tokenize_json(const char *model)
{
    char rel[256];
    snprintf(rel, sizeof rel, "reference/%s/convert-f16.gguf", model);
    gguf_file g;
    tok_vocab *v = load_vocab(rel, &g);
    snprintf(rel, sizeof rel, "reference/%s/tokenize.json", model);
    json_error_t je;
    json_t *root = json_load_file(ts_path(rel), 0, &je);
    cr_assert(root, "%s: %s", rel, je.text);
    json_t *cases = json_object_get(root, "cases");
    size_t n = json_array_size(cases), checks = 0;
    cr_assert_gt(n, 10);
    for (size_t i = 0; i < n; i++) {
        json_t *c = json_array_get(cases, i);
        const char *text = json_string_value(json_object_get(c, "text"));
        size_t len = json_string_length(json_object_get(c, "text"));
        char buf[4096];
        json_t *hex = json_object_get(c, "utf8_hex");
        if (hex) {
            cr_assert_lt(strlen(json_string_value(hex)) / 2, sizeof buf);
            len = hex_decode(json_string_value(hex), buf);
            text = buf;
        }
        expect_ids(v, model, i, text, len, true, true, json_object_get(c, "ids"));
        checks++;
        if (json_object_get(c, "ids_no_bos")) {
            expect_ids(v, model, i, text, len, false, true, json_object_get(c, "ids_no_bos"));
            checks++;
        }
        if (json_object_get(c, "ids_no_parse_special")) {
            expect_ids(v, model, i, text, len, true, false, json_object_get(c, "ids_no_parse_special"));
            checks++;
        }
        /* pieces are the vocabulary texts of the ids */
        json_t *pieces = json_object_get(c, "pieces"), *ids = json_object_get(c, "ids");
        for (size_t k = 0; pieces && k < json_array_size(pieces); k++) {
            size_t tl = 0;
            const char *t = tok_text(v, (int32_t)json_integer_value(json_array_get(ids, k)), &tl);
            json_t *p = json_array_get(pieces, k);
            cr_expect(t && tl == json_string_length(p) && memcmp(t, json_string_value(p), tl) == 0,
                      "%s case %zu piece %zu", model, i, k);
        }
    }
    fprintf(stderr, "tokenize.json %-16s %zu cases, %zu id lists checked\n", model, n, checks);
    json_decref(root);
    tok_free(v);
    gguf_close(&g);
}

Test(tokenizer, tokenize_json_stories260K) { check_tokenize_json("stories260K"); }
Test(tokenizer, tokenize_json_tinystories3m) { check_tokenize_json("tinystories-3m"); }
Test(tokenizer, tokenize_json_qwen2) { check_tokenize_json("qwen2-tiny"); }

/* ------------------------------------------------ generate.json: prompts and pieces */

static void check_generate_json(const char *model)
{
    char rel[256];
    snprintf(rel, sizeof rel, "reference/%s/generate.json", model);
    json_error_t je;
    json_t *root = json_load_file(ts_path(rel), 0, &je);
    cr_assert(root, "%s: %s", rel, je.text);
    json_t *runs = json_object_get(root, "runs");
    snprintf(rel, sizeof rel, "reference/%s/convert-f16.gguf", model);
    gguf_file g;
    tok_vocab *v = load_vocab(rel, &g);
    size_t checked = 0;
    for (size_t i = 0; i < json_array_size(runs); i++) {
        json_t *r = json_array_get(runs, i);
        const char *file = json_string_value(json_object_get(r, "file"));
        if (!file)
            file = json_string_value(json_object_get(r, "gguf"));
        if (!file || strcmp(file, "convert-f16.gguf") != 0)
            continue; /* same vocabulary in every file; one is enough */
        const char *prompt = json_string_value(json_object_get(r, "prompt"));
        expect_ids(v, model, i, prompt, strlen(prompt), true, true, json_object_get(r, "prompt_ids"));
        /* llama-cli prints every token with token_to_piece(special = false) */
        int32_t *p, *gen;
        size_t np, ng;
        ids_from_json(json_object_get(r, "prompt_ids"), &p, &np);
        ids_from_json(json_object_get(r, "generated_ids"), &gen, &ng);
        char out[8192];
        size_t ol = 0;
        for (size_t k = 0; k < np + ng; k++) {
            int32_t id = k < np ? p[k] : gen[k - np];
            int32_t m = tok_piece(v, id, out + ol, sizeof out - ol, 0, false);
            cr_assert_geq(m, 0);
            ol += (size_t)m;
        }
        /* stdout_hex (qwen2) holds the exact bytes: a piece may be a partial
         * UTF-8 sequence that "stdout" shows as U+FFFD */
        const char *stdout_s = json_string_value(json_object_get(r, "stdout"));
        size_t sl = strlen(stdout_s);
        char raw[8192];
        json_t *hex = json_object_get(r, "stdout_hex");
        if (hex) {
            cr_assert_lt(strlen(json_string_value(hex)) / 2, sizeof raw);
            sl = hex_decode(json_string_value(hex), raw);
            stdout_s = raw;
        }
        cr_assert_geq(sl, 2);
        cr_expect(ol == sl - 2 && memcmp(out, stdout_s, ol) == 0, "%s run %zu: pieces '%.*s' vs stdout '%s'", model,
                  i, (int)ol, out, stdout_s);
        checked++;
        free(p);
        free(gen);
    }
    cr_assert_gt(checked, 0);
    json_decref(root);
    tok_free(v);
    gguf_close(&g);
}

Test(tokenizer, generate_json_pieces)
{
    check_generate_json("stories260K");
    check_generate_json("tinystories-3m");
    check_generate_json("qwen2-tiny");
}

/* ------------------------------------------------ big texts */

Test(tokenizer, tinystories_valid_count)
{
    gguf_file g;
    tok_vocab *v = load_vocab("reference/stories260K/convert-f16.gguf", &g);
    size_t len;
    char *txt = (char *)ts_read(ts_path("text/tinystories-valid.txt"), &len);
    cr_assert(txt);
    int32_t *ids = NULL;
    size_t n = 0;
    sm_err err = {0};
    double t0 = now_s();
    cr_assert_eq(tok_encode(v, txt, len, true, false, &ids, &n, &err), 0, "%s", err.msg);
    double dt = now_s() - t0;
    fprintf(stderr, "tinystories-valid.txt: %zu bytes -> %zu tokens in %.3f s\n", len, n, dt);
    cr_assert_eq(n, 15555, "llama.cpp gives 15,555 tokens, got %zu", n);
    cr_assert_eq(ids[0], 1);
    /* and it decodes back to the file (SPM keeps every byte). Without the
     * BOS the first piece's prefix space is dropped, as llama.cpp does. */
    char *back = NULL;
    size_t bl = 0;
    cr_assert_eq(tok_detokenize(v, ids + 1, n - 1, true, false, &back, &bl, &err), 0);
    cr_assert(bl == len && memcmp(back, txt, len) == 0, "detokenized text differs");
    free(back);
    free(ids);
    free(txt);
    tok_free(v);
    gguf_close(&g);
}

Test(tokenizer, wikitext_speed)
{
    size_t len;
    char *txt = (char *)ts_read(ts_path("text/wiki.test.raw"), &len);
    cr_assert(txt);
    static const char *models[] = {"reference/stories260K/convert-f16.gguf", "vocab/ggml-vocab-qwen2.gguf"};
    for (size_t k = 0; k < 2; k++) {
        gguf_file g;
        tok_vocab *v = load_vocab(models[k], &g);
        int32_t *ids = NULL;
        size_t n = 0;
        sm_err err = {0};
        double t0 = now_s();
        cr_assert_eq(tok_encode(v, txt, len, true, false, &ids, &n, &err), 0, "%s", err.msg);
        double dt = now_s() - t0;
        fprintf(stderr, "wiki.test.raw with %s: %zu tokens in %.3f s\n", models[k], n, dt);
        cr_expect_lt(dt, 2.0, "tokenizing WikiText-2 took %.2f s", dt);
        cr_assert_gt(n, len / 8);
        char *back = NULL;
        size_t bl = 0;
        size_t skip = tok_add_bos(v) ? 1 : 0;
        cr_assert_eq(tok_detokenize(v, ids + skip, n - skip, true, false, &back, &bl, &err), 0);
        /* both keep every byte: SPM by byte fallback, qwen2 has no
         * clean_spaces rewriting */
        cr_expect(bl == len && memcmp(back, txt, len) == 0, "WikiText-2 does not round-trip with %s", models[k]);
        free(back);
        free(ids);
        tok_free(v);
        gguf_close(&g);
    }
    free(txt);
}

/* ------------------------------------------------ accessors */

Test(tokenizer, special_ids_and_flags)
{
    gguf_file g;
    tok_vocab *v = load_vocab("reference/stories260K/convert-f16.gguf", &g);
    cr_assert_eq(tok_kind(v), TOK_KIND_SPM);
    cr_assert_eq(tok_n_vocab(v), 512);
    cr_assert_eq(tok_bos(v), 1);
    cr_assert_eq(tok_eos(v), 2);
    cr_assert(tok_add_bos(v));
    cr_assert(!tok_add_eos(v));
    cr_assert(tok_is_eog(v, 2));
    cr_assert(!tok_is_eog(v, 1));
    cr_assert_eq(tok_nl(v), 13); /* <0x0A> */
    char buf[8];
    cr_assert_eq(tok_piece(v, 13, buf, sizeof buf, 0, false), 1);
    cr_assert_eq(buf[0], '\n');
    cr_assert_eq(tok_piece(v, 1, buf, sizeof buf, 0, false), 0);  /* control: hidden */
    cr_assert_eq(tok_piece(v, 1, buf, sizeof buf, 0, true), 3);   /* "<s>" */
    cr_assert_eq(tok_piece(v, 1, buf, 2, 0, true), -3);           /* too small: needed size */
    cr_assert_eq(tok_piece(v, 410, buf, sizeof buf, 0, false), 1); /* "▁" -> " " */
    cr_assert_eq(tok_piece(v, 410, buf, sizeof buf, 1, false), 0); /* lstrip */
    cr_assert_eq(tok_piece(v, 99999, buf, sizeof buf, 0, true), 0);
    tok_free(v);
    gguf_close(&g);

    v = load_vocab("vocab/ggml-vocab-qwen2.gguf", &g);
    cr_assert_eq(tok_kind(v), TOK_KIND_BPE);
    cr_assert_str_eq(tok_pre_name(v), "qwen2");
    cr_assert_eq(tok_bos(v), 151643);
    cr_assert_eq(tok_eos(v), 151645);
    cr_assert(!tok_add_bos(v));
    cr_assert(tok_is_eog(v, 151643)); /* <|endoftext|> */
    cr_assert(tok_is_eog(v, 151645)); /* <|im_end|> */
    cr_assert(!tok_is_eog(v, 9707));
    cr_assert_eq(tok_find(v, "Hello", 5), 9707);
    cr_assert_eq(tok_nl(v), 198); /* "Ċ" */
    int32_t *ids = NULL;
    size_t n = 0;
    sm_err err = {0};
    const char *chat = "<|im_start|>user\nHi<|im_end|>";
    cr_assert_eq(tok_encode(v, chat, strlen(chat), false, true, &ids, &n, &err), 0);
    cr_assert_eq(ids[0], 151644);
    cr_assert_eq(ids[n - 1], 151645);
    free(ids);
    cr_assert_eq(tok_encode(v, chat, strlen(chat), false, false, &ids, &n, &err), 0);
    cr_assert_neq(ids[0], 151644, "control text must stay text without parse_special");
    free(ids);
    /* BPE pieces are byte-decoded: "Ġworld" -> " world" */
    cr_assert_eq(tok_piece(v, 1879, buf, sizeof buf, 0, false), 6);
    cr_assert(memcmp(buf, " world", 6) == 0);
    tok_free(v);
    gguf_close(&g);
}

Test(tokenizer, wordpiece_special_and_pieces)
{
    gguf_file g;
    tok_vocab *v = load_vocab("vocab/ggml-vocab-bert-bge.gguf", &g);
    cr_assert_eq(tok_kind(v), TOK_KIND_WPM);
    cr_assert_eq(tok_bos(v), 101); /* [CLS] */
    cr_assert_eq(tok_unk(v), 100);
    int32_t *ids = NULL;
    size_t n = 0;
    sm_err err = {0};
    const char *s = "Hello, Führer!";
    cr_assert_eq(tok_encode(v, s, strlen(s), true, false, &ids, &n, &err), 0, "%s", err.msg);
    cr_assert_geq(n, 4);
    cr_assert_eq(ids[0], 101);
    cr_assert_eq(ids[n - 1], 102); /* [SEP] */
    /* lowercased, accent stripped, punctuation split: hello , fuhrer ! */
    char *txt = NULL;
    size_t tl = 0;
    cr_assert_eq(tok_detokenize(v, ids, n, false, false, &txt, &tl, &err), 0);
    cr_assert_str_eq(txt, " hello, fuhrer!", "got '%s'", txt);
    free(txt);
    free(ids);
    /* a word with no cover becomes [UNK] */
    cr_assert_eq(tok_encode(v, "\xe2\x98\x83", 3, false, false, &ids, &n, &err), 0);
    cr_assert_eq(n, 1);
    cr_assert_eq(ids[0], 100);
    free(ids);
    tok_free(v);
    gguf_close(&g);
}

/* ------------------------------------------------ malformed vocabularies */

typedef struct bad_case {
    const char *name;
    int code;
    const char *needle;
} bad_case;

/* Writes a small vocabulary GGUF with one defect selected by `which`. */
static void write_vocab(const char *path, int which)
{
    gguf_writer *w = gguf_writer_init();
    cr_assert(w);
    sm_str toks[6] = {{"<unk>", 5}, {"<s>", 3}, {"</s>", 4}, {"a", 1}, {"b", 1}, {"ab", 2}};
    uint64_t ntok = 6;
    float scores[6] = {0, 0, 0, -1, -2, -0.5f};
    int32_t types[6] = {2, 3, 3, 1, 1, 1};
    const char *model = (which >= 10 && which <= 13) ? "gpt2" : "llama";
    if (which == 7)
        model = "wordpiece-xyz";
    if (which != 6)
        cr_assert_eq(gguf_writer_set_str(w, "tokenizer.ggml.model", model), 0);
    if (which == 13)
        cr_assert_eq(gguf_writer_set_str(w, "tokenizer.ggml.pre", "no-such-pre"), 0);
    if (which == 4) {
        toks[4] = toks[3]; /* "a" twice */
    }
    if (which == 14) {
        toks[0] = toks[3]; /* one token "a": no BOS/EOS at the default ids */
        types[0] = 1;
        ntok = 1;
    }
    if (which == 1) {
        /* no tokens */
    } else if (which == 9) {
        cr_assert_eq(gguf_writer_set_arr(w, "tokenizer.ggml.tokens", GGUF_VT_INT32, types, ntok), 0);
    } else {
        cr_assert_eq(gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, ntok), 0);
    }
    cr_assert_eq(gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_VT_FLOAT32, scores, which == 2 ? 5 : ntok), 0);
    if (which == 3)
        types[4] = 9;
    cr_assert_eq(gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_VT_INT32, types, ntok), 0);
    if (which >= 10 && which <= 13) {
        sm_str merges[2] = {{"a b", 3}, {"a zz", 4}};
        if (which == 11)
            merges[1] = (sm_str){"ab", 2};
        if (which != 12)
            cr_assert_eq(gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", merges, 2), 0);
    }
    sm_err err = {0};
    cr_assert_eq(gguf_writer_begin(w, path, &err), 0, "%s", err.msg);
    cr_assert_eq(gguf_writer_finish(w, &err), 0, "%s", err.msg);
    gguf_writer_free(w);
}

Test(tokenizer, malformed_vocabularies)
{
    static const struct {
        int which;
        int code;
        const char *needle;
    } cases[] = {
        {1, SM_EMISSING, "tokenizer.ggml.tokens: missing"},
        {2, SM_EMISMATCH, "5 scores for 6 tokens"},
        {3, SM_EFORMAT, "token_type[4] = 9"},
        {4, SM_EFORMAT, "duplicates token 3"},
        {6, SM_EMISSING, "tokenizer.ggml.model: missing"},
        {7, SM_EUNSUPP, "wordpiece-xyz"},
        {13, SM_EUNSUPP, "unknown pre-tokenizer 'no-such-pre'"},
        {9, SM_ETYPE, "tokenizer.ggml.tokens: expected an array of strings"},
        {10, SM_EFORMAT, "merges[1] 'a zz': 'zz' is not a token"},
        {11, SM_EFORMAT, "merges[1] 'ab': expected \"left right\""},
        {12, SM_EMISSING, "tokenizer.ggml.merges: missing"},
    };
    char *dir = ts_tmpdir();
    char path[1200];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(path, sizeof path, "%s/v%d.gguf", dir, cases[i].which);
        write_vocab(path, cases[i].which);
        gguf_file g;
        sm_err err = {0};
        cr_assert_eq(gguf_open(&g, path, &err), 0, "%s", err.msg);
        tok_vocab *v = (tok_vocab *)1;
        int rc = tok_load(&v, &g, &err);
        cr_expect_eq(rc, cases[i].code, "case %d: rc %d (%s)", cases[i].which, rc, err.msg);
        cr_expect(strstr(err.msg, cases[i].needle), "case %d: message '%s' lacks '%s'", cases[i].which, err.msg,
                  cases[i].needle);
        cr_expect_null(v);
        gguf_close(&g);
    }
    /* a vocabulary without a BOS token loads, but cannot add one */
    {
        snprintf(path, sizeof path, "%s/nobos.gguf", dir);
        write_vocab(path, 14);
        gguf_file g1;
        sm_err e1 = {0};
        cr_assert_eq(gguf_open(&g1, path, &e1), 0, "%s", e1.msg);
        tok_vocab *v1 = NULL;
        cr_assert_eq(tok_load(&v1, &g1, &e1), 0, "%s", e1.msg);
        cr_assert_eq(tok_bos(v1), TOK_NULL);
        int32_t *ids1 = NULL;
        size_t n1 = 0;
        cr_assert_eq(tok_encode(v1, "aa", 2, true, false, &ids1, &n1, &e1), SM_EMISSING);
        cr_assert(strstr(e1.msg, "no BOS token"), "%s", e1.msg);
        cr_assert_eq(tok_encode(v1, "aa", 2, false, false, &ids1, &n1, &e1), 0, "%s", e1.msg);
        /* "\u2581aa": U+2581 has neither a token nor byte tokens, so each of
         * its 3 bytes becomes the unknown token (default id 0, here "a"),
         * where llama.cpp would throw; then "a" "a" */
        cr_assert_eq(n1, 5);
        for (size_t k = 0; k < n1; k++)
            cr_assert_eq(ids1[k], 0);
        free(ids1);
        tok_free(v1);
        gguf_close(&g1);
    }
    /* the well-formed variant loads and merges "a" "b" -> "ab" */
    snprintf(path, sizeof path, "%s/ok.gguf", dir);
    write_vocab(path, 0);
    gguf_file g;
    sm_err err = {0};
    cr_assert_eq(gguf_open(&g, path, &err), 0, "%s", err.msg);
    tok_vocab *v = NULL;
    cr_assert_eq(tok_load(&v, &g, &err), 0, "%s", err.msg);
    int32_t *ids = NULL;
    size_t n = 0;
    cr_assert_eq(tok_encode(v, "ab", 2, true, false, &ids, &n, &err), 0);
    /* BOS, then " ab" = U+2581 has no token: byte fallback finds none (no
     * <0xE2>) -> unk, then "ab" merged */
    cr_assert_geq(n, 2);
    cr_assert_eq(ids[0], 1);
    cr_assert_eq(ids[n - 1], 5);
    free(ids);
    tok_free(v);
    gguf_close(&g);
    ts_rmtree(dir);
    free(dir);
}

/* ------------------------------------------------ robustness */

static int utf8_valid(const char *s, size_t len)
{
    const uint8_t *u = (const uint8_t *)s;
    for (size_t i = 0; i < len;) {
        size_t n = u[i] < 0x80 ? 1 : (u[i] >> 5) == 6 ? 2 : (u[i] >> 4) == 14 ? 3 : (u[i] >> 3) == 30 ? 4 : 0;
        if (n == 0 || i + n > len)
            return 0;
        for (size_t k = 1; k < n; k++)
            if ((u[i + k] & 0xC0) != 0x80)
                return 0;
        i += n;
    }
    return 1;
}

Test(tokenizer, random_bytes_never_crash)
{
    static const char *vocabs[] = {"reference/stories260K/convert-f16.gguf", "vocab/ggml-vocab-qwen2.gguf",
                                   "vocab/ggml-vocab-gpt-2.gguf", "vocab/ggml-vocab-deepseek-llm.gguf",
                                   "vocab/ggml-vocab-falcon.gguf", "vocab/ggml-vocab-phi-3.gguf",
                                   "vocab/ggml-vocab-bert-bge.gguf"};
    uint64_t s = 0x9e3779b97f4a7c15ull;
    char buf[512];
    size_t rt_checked = 0;
    for (size_t k = 0; k < sizeof vocabs / sizeof vocabs[0]; k++) {
        gguf_file g;
        tok_vocab *v = load_vocab(vocabs[k], &g);
        for (int it = 0; it < 300; it++) {
            size_t len = (size_t)(it % 97) * 5;
            if (it % 4 == 0) {
                /* valid UTF-8 from random code points: ASCII, Latin, CJK, emoji */
                static const uint32_t base[] = {0x20, 0xC0, 0x4E00, 0x1F600};
                size_t o = 0;
                while (o + 4 <= len) {
                    s ^= s << 13, s ^= s >> 7, s ^= s << 17;
                    uint32_t cp = base[s & 3] + (uint32_t)((s >> 8) % 0x5F);
                    char u[4];
                    size_t ul = 0;
                    if (cp < 0x80) u[ul++] = (char)cp;
                    else if (cp < 0x800) u[ul++] = (char)(0xC0 | (cp >> 6)), u[ul++] = (char)(0x80 | (cp & 0x3F));
                    else if (cp < 0x10000) u[ul++] = (char)(0xE0 | (cp >> 12)), u[ul++] = (char)(0x80 | ((cp >> 6) & 0x3F)), u[ul++] = (char)(0x80 | (cp & 0x3F));
                    else u[ul++] = (char)(0xF0 | (cp >> 18)), u[ul++] = (char)(0x80 | ((cp >> 12) & 0x3F)), u[ul++] = (char)(0x80 | ((cp >> 6) & 0x3F)), u[ul++] = (char)(0x80 | (cp & 0x3F));
                    memcpy(buf + o, u, ul);
                    o += ul;
                }
                len = o;
            }
            for (size_t i = 0; it % 4 != 0 && i < len; i++) {
                s ^= s << 13, s ^= s >> 7, s ^= s << 17;
                /* bias toward bytes that stress the decoders */
                static const char pool[] = " \t\n\r'sS0<|>\xe2\x96\x81\xc3\xa9\xf0\x9f\xed\xa0\x80\xf4\x90\xc0\xaf";
                buf[i] = (s & 3) ? (char)(s >> 24) : pool[(s >> 8) % (sizeof pool - 1)];
            }
            int32_t *ids = NULL;
            size_t n = 0;
            sm_err err = {0};
            cr_assert_eq(tok_encode(v, buf, len, it & 1, it & 2, &ids, &n, &err), 0, "%s", err.msg);
            for (size_t i = 0; i < n; i++)
                cr_assert(ids[i] >= 0 && (uint32_t)ids[i] < tok_n_vocab(v));
            char *txt = NULL;
            size_t tl = 0;
            size_t skip = (it & 1) && n > 0 && ids[0] == tok_bos(v) ? 1 : 0;
            cr_assert_eq(tok_detokenize(v, ids + skip, n - skip, false, it & 2, &txt, &tl, &err), 0);
            /* SPM keeps every byte when the input is valid UTF-8; otherwise a
             * lead byte can swallow part of the U+2581 a space became, in
             * llama.cpp too */
            if (k == 0 && !(it & 2) && !memmem(buf, len, "\xe2\x96\x81", 3) && utf8_valid(buf, len)) {
                rt_checked++;
                int same = tl == len && memcmp(txt, buf, len) == 0;
                if (!same) {
                    fprintf(stderr, "in :");
                    for (size_t i = 0; i < len; i++)
                        fprintf(stderr, " %02x", (uint8_t)buf[i]);
                    fprintf(stderr, "\nout:");
                    for (size_t i = 0; i < tl; i++)
                        fprintf(stderr, " %02x", (uint8_t)txt[i]);
                    fprintf(stderr, "\n");
                }
                cr_expect(same, "%s: random bytes do not round-trip", vocabs[k]);
            }
            free(txt);
            free(ids);
        }
        /* every piece renders */
        for (uint32_t id = 0; id < tok_n_vocab(v); id += 7) {
            char p[64];
            int32_t m = tok_piece(v, (int32_t)id, p, sizeof p, 1, true);
            cr_assert(m >= -100000);
        }
        tok_free(v);
        gguf_close(&g);
    }
    cr_assert_gt(rt_checked, 30, "only %zu round trips checked", rt_checked);
}

/* ------------------------------------------------ special-token rules */

Test(tokenizer, phi3_rstrip_and_parse_special)
{
    gguf_file g;
    tok_vocab *v = load_vocab("vocab/ggml-vocab-phi-3.gguf", &g);
    int32_t user = tok_find(v, "<|user|>", 8), end = tok_find(v, "<|end|>", 7);
    cr_assert(user >= 0 && end >= 0);
    cr_assert(tok_attr(v, user) & TOK_ATTR_RSTRIP, "phi-3 special tokens strip the spaces after them");
    cr_assert(tok_is_eog(v, end));
    int32_t *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    sm_err err = {0};
    /* the spaces after <|user|> are stripped, so both give the same ids */
    const char *s1 = "<|user|>   hi<|end|>", *s2 = "<|user|>hi<|end|>";
    cr_assert_eq(tok_encode(v, s1, strlen(s1), true, true, &a, &na, &err), 0);
    cr_assert_eq(tok_encode(v, s2, strlen(s2), true, true, &b, &nb, &err), 0);
    cr_assert_eq(na, nb);
    cr_assert(memcmp(a, b, na * sizeof *a) == 0);
    cr_assert_eq(a[0], 1);
    cr_assert_eq(a[1], user);
    cr_assert_eq(a[na - 1], end);
    /* text after a special token gets the SPM space prefix: "▁hi" */
    size_t tl = 0;
    const char *t = tok_text(v, a[2], &tl);
    cr_assert(tl == 5 && memcmp(t, "\xe2\x96\x81hi", 5) == 0);
    free(a);
    free(b);
    tok_free(v);
    gguf_close(&g);
}

/* ------------------------------------------------ threads */

typedef struct th_job {
    const tok_vocab *v;
    const char *text;
    size_t len;
    int32_t *ids;
    size_t n;
    int rc;
} th_job;

static void *th_run(void *p)
{
    th_job *j = p;
    sm_err err = {0};
    for (int r = 0; r < 3 && j->rc == 0; r++) {
        free(j->ids);
        j->rc = tok_encode(j->v, j->text, j->len, true, true, &j->ids, &j->n, &err);
    }
    return NULL;
}

Test(tokenizer, concurrent_encode_is_deterministic)
{
    gguf_file g;
    tok_vocab *v = load_vocab("vocab/ggml-vocab-qwen2.gguf", &g);
    size_t len;
    char *txt = (char *)ts_read(ts_path("reference/qwen2-tiny/wiki.test.raw.head40k"), &len);
    cr_assert(txt);
    th_job jobs[3];
    pthread_t th[3];
    for (int i = 0; i < 3; i++) {
        jobs[i] = (th_job){v, txt, len, NULL, 0, 0};
        cr_assert_eq(pthread_create(&th[i], NULL, th_run, &jobs[i]), 0);
    }
    for (int i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(jobs[i].rc, 0);
        cr_assert_eq(jobs[i].n, jobs[0].n);
        cr_assert(memcmp(jobs[i].ids, jobs[0].ids, jobs[0].n * sizeof(int32_t)) == 0);
    }
    cr_assert_gt(jobs[0].n, 5000);
    for (int i = 0; i < 3; i++)
        free(jobs[i].ids);
    free(txt);
    tok_free(v);
    gguf_close(&g);
}
