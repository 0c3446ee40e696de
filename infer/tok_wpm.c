/* tok_wpm.c — WordPiece (BERT) as llama.cpp runs it (llm_tokenizer_wpm_session).
 *
 * Preprocess: decode leniently (invalid byte -> U+FFFD), replace every code
 * point by the first code point of its NFD (strips accents), drop NUL, U+FFFD
 * and control/format/private-use characters, lowercase, and cut words at
 * whitespace; punctuation, ASCII symbols and CJK ideographs become words of
 * their own. Each word gets the "▁" prefix and is covered left to right by
 * the longest matching token; a word that cannot be covered becomes the
 * unknown token. */
#include "infer/tok_internal.h"

#include <stdlib.h>
#include <string.h>

enum { CAT_OTHER = 0, CAT_PUNCT = 1, CAT_SYMBOL = 2, CAT_CONTROL = 3 };

int tok_wpm_compile(tok_vocab *v, sm_err *err)
{
    int ec = 0;
    PCRE2_SIZE eoff = 0;
    v->cat_re = pcre2_compile((PCRE2_SPTR) "(\\p{P})|(\\p{S})|([\\p{Cc}\\p{Cf}\\p{Co}])", PCRE2_ZERO_TERMINATED,
                              PCRE2_UTF | PCRE2_UCP | PCRE2_ANCHORED, &ec, &eoff, NULL);
    if (!v->cat_re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(ec, msg, sizeof msg);
        return sm_err_set(err, SM_EFORMAT, "wpm category regex: %s", (const char *)msg);
    }
    return 0;
}

/* Category of one code point (llama.cpp's P / S / C flags). */
static int cpt_category(const tok_vocab *v, pcre2_match_data *md, uint32_t cp)
{
    if (cp < 0x80) {
        if (cp < 0x20 || cp == 0x7F)
            return CAT_CONTROL;
        if (strchr("!\"#%&'()*,-./:;?@[\\]_{}", (int)cp) && cp != 0)
            return CAT_PUNCT;
        if (strchr("$+<=>^`|~", (int)cp) && cp != 0)
            return CAT_SYMBOL;
        return CAT_OTHER;
    }
    if (cp >= 0xD800 && cp <= 0xDFFF)
        return CAT_CONTROL; /* surrogate (Cs) */
    if (cp > 0x10FFFF)
        return CAT_OTHER;
    char u[4];
    size_t n = tok_utf8_put(cp, u);
    int m = pcre2_match(v->cat_re, (PCRE2_SPTR)u, n, 0, PCRE2_NO_UTF_CHECK, md, NULL);
    if (m <= 0)
        return CAT_OTHER;
    const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    for (int g = 1; g <= 3; g++)
        if (g < m && ov[2 * g] != PCRE2_UNSET)
            return g;
    return CAT_OTHER;
}

static uint32_t cpt_nfd(uint32_t cp)
{
    uint32_t lo = 0, hi = tok_n_nfd_ranges;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (cp < tok_nfd_ranges[mid].first)
            hi = mid;
        else if (cp > tok_nfd_ranges[mid].last)
            lo = mid + 1;
        else
            return tok_nfd_ranges[mid].nfd;
    }
    return cp;
}

static uint32_t cpt_lower(uint32_t cp)
{
    uint32_t lo = 0, hi = tok_n_lower_pairs;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (cp < tok_lower_pairs[mid][0])
            hi = mid;
        else if (cp > tok_lower_pairs[mid][0])
            lo = mid + 1;
        else
            return tok_lower_pairs[mid][1];
    }
    return cp;
}

/* BERT's "Chinese character" ranges, as llama.cpp has them (including its
 * 0x2B920 lower bound that follows the HF Rust code). */
static int cpt_is_cjk(uint32_t c)
{
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
           (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

/* Greedy longest match of "▁" + word[0..wl); appends ids or the unknown token. */
static int wpm_word(const tok_vocab *v, char *w, size_t wl, tok_ids *out)
{
    int rc;
    size_t start = out->n;
    size_t n = wl; /* w already starts with the 3-byte "▁" */
    for (size_t i = 0; i < n; i++) {
        size_t j = i + (size_t)v->max_token_len + 1;
        if (j > n)
            j = n;
        int found = 0;
        for (; j > i; j--) {
            int32_t id = tok_lookup(v, w + i, j - i);
            if (id != TOK_NULL) {
                if ((rc = tok_ids_push(out, id)) < 0)
                    return rc;
                found = 1;
                i = j - 1;
                break;
            }
        }
        if (!found) {
            out->n = start; /* discard the partial cover of this word */
            break;
        }
    }
    if (out->n == start && v->unk != TOK_NULL)
        return tok_ids_push(out, v->unk);
    return 0;
}

int tok_wpm_encode(const tok_vocab *v, const char *text, size_t len, tok_ids *out)
{
    int rc = 0;
    char *w = NULL; /* current word: "▁" + lowercased UTF-8 */
    pcre2_match_data *md = pcre2_match_data_create(4, NULL);
    if (len > (SIZE_MAX - 16) / 4) {
        rc = SM_ERANGE;
        goto done;
    }
    w = malloc(len * 4 + 16);
    if (!w || !md) {
        rc = SM_ENOMEM;
        goto done;
    }
    size_t wl = 3;
    memcpy(w, "\xe2\x96\x81", 3);
    for (size_t off = 0; off < len;) {
        uint32_t cp = cpt_nfd(tok_utf8_next(text, len, &off));
        if (tok_cpt_is_space(cp)) {
            if (wl > 3 && (rc = wpm_word(v, w, wl, out)) < 0)
                goto done;
            wl = 3;
            continue;
        }
        int cat = cpt_category(v, md, cp);
        if (cp == 0 || cp == 0xFFFD || cp > 0x10FFFF || cat == CAT_CONTROL)
            continue;
        uint32_t lc = cpt_lower(cp);
        if (cat == CAT_PUNCT || (cp < 0x7F && cat == CAT_SYMBOL) || cpt_is_cjk(cp)) {
            /* a word of its own */
            if (wl > 3 && (rc = wpm_word(v, w, wl, out)) < 0)
                goto done;
            wl = 3 + tok_utf8_put(lc, w + 3);
            if ((rc = wpm_word(v, w, wl, out)) < 0)
                goto done;
            wl = 3;
            continue;
        }
        wl += tok_utf8_put(lc, w + wl);
    }
    if (wl > 3)
        rc = wpm_word(v, w, wl, out);
done:
    pcre2_match_data_free(md);
    free(w);
    return rc;
}
