/* fuzz_tok_common.h — shared body of the tokenizer targets: load a set of
 * real vocabularies once, then tokenize each input with one of them (the
 * first byte picks the vocabulary and the add_special / parse_special flags,
 * the rest is the text), detokenize the ids and render every piece. */
#ifndef SMELT_FUZZ_TOK_COMMON_H
#define SMELT_FUZZ_TOK_COMMON_H

#include "formats/gguf.h"
#include "fuzz_util.h"
#include "infer/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>

#define FUZZ_TOK_MAX 16

static tok_vocab *fuzz_vocabs[FUZZ_TOK_MAX];
static int fuzz_n_vocabs;

/* Loads vocab/<name> for each name; aborts when none loads (or one that
 * must load, the first, fails), since then nothing would be fuzzed. */
static inline void fuzz_tok_init(const char *const *names, int n, int want_kind)
{
    for (int i = 0; i < n && fuzz_n_vocabs < FUZZ_TOK_MAX; i++) {
        char p[4096];
        snprintf(p, sizeof p, "%s/vocab/%s", fuzz_shared(), names[i]);
        gguf_file g;
        sm_err err;
        if (gguf_open(&g, p, &err) != 0) {
            fprintf(stderr, "fuzz: %s\n", err.msg);
            if (i == 0)
                abort();
            continue;
        }
        tok_vocab *v = NULL;
        int rc = tok_load(&v, &g, &err);
        gguf_close(&g);
        if (rc != 0 || tok_kind(v) != want_kind) {
            fprintf(stderr, "fuzz: skipping %s: %s\n", names[i], rc ? err.msg : "other tokenizer kind");
            tok_free(v);
            if (i == 0)
                abort();
            continue;
        }
        fuzz_vocabs[fuzz_n_vocabs++] = v;
    }
}

static inline int fuzz_tok_run(const uint8_t *data, size_t size)
{
    if (size < 1 || fuzz_n_vocabs == 0)
        return 0;
    const tok_vocab *v = fuzz_vocabs[(data[0] >> 2) % fuzz_n_vocabs];
    bool add_special = data[0] & 1, parse_special = data[0] & 2;
    int32_t *ids = NULL;
    size_t n = 0;
    sm_err err;
    if (tok_encode(v, (const char *)data + 1, size - 1, add_special, parse_special, &ids, &n, &err) != 0)
        return 0;
    uint32_t nv = tok_n_vocab(v);
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || (uint32_t)ids[i] >= nv)
            __builtin_trap(); /* an id outside the vocabulary is a bug */
        char buf[64];
        int32_t k = tok_piece(v, ids[i], buf, sizeof buf, 0, parse_special);
        if (k < 0) {
            char *big = malloc((size_t)-k);
            if (big && tok_piece(v, ids[i], big, (size_t)-k, 0, parse_special) != -k)
                __builtin_trap(); /* the announced size must be enough */
            free(big);
        }
    }
    char *out = NULL;
    size_t out_len = 0;
    if (tok_detokenize(v, ids, n, add_special, !parse_special, &out, &out_len, &err) == 0)
        free(out);
    free(ids);
    return 0;
}

#endif
