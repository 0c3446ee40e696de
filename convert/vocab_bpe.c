/* vocab_bpe.c — HF tokenizer.json byte-level BPE: tokens, types, merges and
 * the pre-tokenizer name.
 *
 * Tokens follow convert_hf_to_gguf.py get_vocab_base(): the id space is
 * model.vocab plus the added tokens (tokenizer.json "added_tokens", then
 * tokenizer_config.json added_tokens_decoder as transformers applies it when
 * it loads the pair: a new id is added; an entry for an existing id with the
 * same content but other flags replaces the flags, and a token named in the
 * config's *_token / additional_special_tokens is then special), padded to
 * config.json vocab_size with "[PAD{id}]" (UNUSED). An added token is
 * CONTROL when marked special or when it looks special
 * (does_token_look_special), else USER_DEFINED with U+2581 replaced by a
 * space. transformers' encode/decode round trip of non-normalized added
 * tokens is taken as the identity (it is for every real special token).
 *
 * Pre-tokenizer: llama.cpp hashes the token ids the HF tokenizer produces for
 * a test string. We cannot run the tokenizer, so the pre_tokenizer of
 * tokenizer.json is reduced to a list of "units" (one regex per Split step;
 * Digits -> \p{N} or \p{N}+; ByteLevel with use_regex -> the GPT-2 regex;
 * Punctuation -> a punctuation unit), each regex canonicalised (literal
 * CR/LF/TAB written as escapes, HF's "(?i:'s|...)" contraction group written
 * the way llama.cpp adapted it), and the list plus the normalizer kind is
 * looked up in the table below, whose regexes are those llama.cpp's
 * llama-vocab.cpp uses for each pre type. Several names share a table row in
 * llama.cpp; we return the one llama.cpp's hash would give the most common
 * model with that configuration (see the table comments). */
#include "vocab.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

const char *const cv_pre_names[] = {
    "default", "llama3", "llama-v3", "llama-bpe", "falcon3", "deepseek-llm", "deepseek-coder",
    "deepseek-v3", "falcon", "mpt", "starcoder", "gpt-2", "phi-2", "jina-es", "jina-de", "gigachat",
    "jina-v1-en", "jina-v2-es", "jina-v2-de", "jina-v2-code", "roberta-bpe", "refact", "command-r",
    "qwen2", "deepseek-r1-qwen", "stablelm2", "olmo", "dbrx", "smaug-bpe", "poro-chat", "chatglm-bpe",
    "viking", "jais", "tekken", "smollm", "codeshell", "bloom", "gpt3-finnish", "exaone", "chameleon",
    "minerva-7b", "megrez", NULL,
};

int cv_pre_name_known(const char *name)
{
    if (!name)
        return 0;
    for (int i = 0; cv_pre_names[i]; i++)
        if (strcmp(cv_pre_names[i], name) == 0)
            return 1;
    return 0;
}

/* ------------------------------------------------------------ pre table */

#define UNIT_GPT2 "@bytelevel-gpt2-regex" /* ByteLevel(use_regex=true) */
#define UNIT_PUNCT "@punctuation"         /* Punctuation pre-tokenizer */

enum { NORM_ANY, NORM_NONE, NORM_NFC };

/* llama.cpp's adapted form of HF's case-insensitive contraction group. */
static const char HF_CONTRACTIONS[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)";
static const char LC_CONTRACTIONS[] = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])";

static const char RE_LLAMA3[] =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}"
    "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char RE_QWEN2[] =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}"
    "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char RE_TEKKEN[] =
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+"
    "|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*"
    "|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char RE_DS_LLM_LETTERS[] =
    "\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-ώᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-ῌῐ-ΐῖ-Ίῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+";
static const char RE_DS_LLM_PUNCT[] = "\\s?[!-/:-~！-／：-～‘-‟　-。]+";
static const char RE_DS_CJK[] = "[一-龥ࠀ-一가-퟿]+";
static const char RE_DS3[] =
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+"
    "| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+";

#define MAX_UNITS 8
typedef struct pre_entry {
    const char *name;
    int norm;
    const char *units[MAX_UNITS]; /* NULL-terminated */
} pre_entry;

/* First match wins. Shared configurations and the name chosen:
 *  - Llama-3 regex: llama-bpe (also falcon3, dbrx, smaug-bpe, chatglm-bpe
 *    in llama.cpp, all tokenized identically).
 *  - Qwen2 regex: qwen2 (deepseek-r1-qwen, megrez, stablelm2 identical).
 *  - Plain ByteLevel: gpt-2 without normalizer; with NFC (the GPT-NeoX
 *    tokenizer of MPT, OLMo, Pythia) llama.cpp's hash table maps that hash
 *    to both "mpt" and "olmo" and the later "olmo" wins; both behave alike.
 *  - Digits + ByteLevel: starcoder (refact, smollm, codeshell, exaone,
 *    minerva-7b, command-r share the regexes; command-r and smollm only
 *    differ in detokenizer space cleaning; pass --pre for those). */
static const pre_entry PRE_TABLE[] = {
    {"llama-bpe", NORM_ANY, {RE_LLAMA3, NULL}},
    {"qwen2", NORM_ANY, {RE_QWEN2, NULL}},
    {"gpt-2", NORM_NONE, {UNIT_GPT2, NULL}},
    {"olmo", NORM_NFC, {UNIT_GPT2, NULL}},
    {"starcoder", NORM_ANY, {"\\p{N}", UNIT_GPT2, NULL}},
    {"falcon", NORM_ANY, {UNIT_PUNCT, UNIT_GPT2, "\\p{N}+", "[0-9][0-9][0-9]", NULL}},
    {"deepseek-llm", NORM_ANY, {"[\r\n]", RE_DS_LLM_LETTERS, RE_DS_LLM_PUNCT, "\\s+$", RE_DS_CJK, "\\p{N}+", NULL}},
    {"deepseek-coder", NORM_ANY, {"[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", RE_DS_CJK, "\\p{N}", NULL}},
    {"deepseek-v3", NORM_ANY, {"\\p{N}{1,3}", "[一-龥぀-ゟ゠-ヿ]+", RE_DS3, NULL}},
    {"tekken", NORM_ANY, {RE_TEKKEN, NULL}},
};

/* Canonical form of a regex: literal CR/LF/TAB as escapes, \" as ", HF's
 * contraction group as llama.cpp's. Returns a malloc'd string or NULL. */
static char *regex_canon(const char *s, size_t len)
{
    size_t cap = len * 2 + sizeof LC_CONTRACTIONS + 1;
    char *o = malloc(cap);
    if (!o)
        return NULL;
    size_t n = 0;
    size_t hl = sizeof HF_CONTRACTIONS - 1, ll = sizeof LC_CONTRACTIONS - 1;
    for (size_t i = 0; i < len;) {
        if (len - i >= hl && memcmp(s + i, HF_CONTRACTIONS, hl) == 0) {
            if (n + ll + 1 > cap) {
                cap = (n + ll + 1) * 2;
                char *no = realloc(o, cap);
                if (!no) {
                    free(o);
                    return NULL;
                }
                o = no;
            }
            memcpy(o + n, LC_CONTRACTIONS, ll);
            n += ll;
            i += hl;
            continue;
        }
        if (n + 3 > cap) {
            cap = cap * 2 + 8;
            char *no = realloc(o, cap);
            if (!no) {
                free(o);
                return NULL;
            }
            o = no;
        }
        char c = s[i];
        if (c == '\r' || c == '\n' || c == '\t') {
            o[n++] = '\\';
            o[n++] = c == '\r' ? 'r' : c == '\n' ? 'n' : 't';
            i++;
        } else if (c == '\\' && i + 1 < len && s[i + 1] == '"') {
            o[n++] = '"';
            i += 2;
        } else if (c == '\\' && i + 1 < len) {
            /* keep escape pairs together so "\\\"" is not misread */
            o[n++] = c;
            o[n++] = s[i + 1];
            i += 2;
        } else {
            o[n++] = c;
            i++;
        }
    }
    o[n] = 0;
    return o;
}

typedef struct pre_units {
    char *u[MAX_UNITS];
    int n;
    int byte_level;  /* a ByteLevel step was seen */
    int bad;         /* something outside the model: cannot match */
    char what[200];  /* first unrecognised step, for the message */
} pre_units;

static void units_free(pre_units *pu)
{
    for (int i = 0; i < pu->n; i++)
        free(pu->u[i]);
    pu->n = 0;
}

static int units_push(pre_units *pu, const char *s, size_t len, int canon)
{
    if (pu->n == MAX_UNITS) {
        pu->bad = 1;
        if (!pu->what[0])
            snprintf(pu->what, sizeof pu->what, "more than %d steps", MAX_UNITS);
        return 0;
    }
    char *c = canon ? regex_canon(s, len) : strndup(s, len);
    if (!c)
        return SM_ENOMEM;
    pu->u[pu->n++] = c;
    return 0;
}

static void units_bad(pre_units *pu, const char *path, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void units_bad(pre_units *pu, const char *path, const char *fmt, ...)
{
    pu->bad = 1;
    if (pu->what[0])
        return;
    char tmp[120];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    snprintf(pu->what, sizeof pu->what, "%.60s: %s", path, tmp);
}

static const char *jstr(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* 1 true, 0 false, dflt when absent/not bool */
static int jbool(const json_t *o, const char *key, int dflt)
{
    const json_t *v = json_object_get(o, key);
    if (json_is_boolean(v))
        return json_is_true(v);
    return dflt;
}

static int units_collect(pre_units *pu, const json_t *pt, const char *path, int depth)
{
    if (!json_is_object(pt)) {
        units_bad(pu, path, "not an object");
        return 0;
    }
    const char *type = jstr(pt, "type");
    if (!type) {
        units_bad(pu, path, "no \"type\"");
        return 0;
    }
    if (strcmp(type, "Sequence") == 0) {
        const json_t *arr = json_object_get(pt, "pretokenizers");
        if (!json_is_array(arr) || depth > 4) {
            units_bad(pu, path, "Sequence without a pretokenizers array");
            return 0;
        }
        for (size_t i = 0; i < json_array_size(arr); i++) {
            char sub[128];
            snprintf(sub, sizeof sub, "%.60s.pretokenizers[%zu]", path, i);
            int rc = units_collect(pu, json_array_get(arr, i), sub, depth + 1);
            if (rc < 0)
                return rc;
        }
        return 0;
    }
    if (strcmp(type, "Split") == 0) {
        const json_t *pat = json_object_get(pt, "pattern");
        const json_t *re = json_object_get(pat, "Regex");
        const json_t *st = json_object_get(pat, "String");
        const char *beh = jstr(pt, "behavior");
        if (!beh || strcmp(beh, "Isolated") != 0 || jbool(pt, "invert", 0)) {
            units_bad(pu, path, "Split with behavior \"%.40s\" or invert (only Isolated is known)", beh ? beh : "?");
            return 0;
        }
        if (json_is_string(re))
            return units_push(pu, json_string_value(re), json_string_length(re), 1);
        if (json_is_string(st)) {
            units_bad(pu, path, "Split on the literal string \"%.60s\"", json_string_value(st));
            return 0;
        }
        units_bad(pu, path, "Split without a pattern");
        return 0;
    }
    if (strcmp(type, "Digits") == 0) {
        if (jbool(pt, "individual_digits", 0))
            return units_push(pu, "\\p{N}", 5, 0);
        return units_push(pu, "\\p{N}+", 6, 0);
    }
    if (strcmp(type, "ByteLevel") == 0) {
        if (jbool(pt, "add_prefix_space", 1)) {
            units_bad(pu, path, "ByteLevel with add_prefix_space true");
            return 0;
        }
        pu->byte_level = 1;
        if (jbool(pt, "use_regex", 1))
            return units_push(pu, UNIT_GPT2, strlen(UNIT_GPT2), 0);
        return 0;
    }
    if (strcmp(type, "Punctuation") == 0) {
        const char *beh = jstr(pt, "behavior");
        if (beh && strcmp(beh, "Contiguous") != 0) {
            units_bad(pu, path, "Punctuation with behavior \"%.40s\"", beh);
            return 0;
        }
        return units_push(pu, UNIT_PUNCT, strlen(UNIT_PUNCT), 0);
    }
    units_bad(pu, path, "pre-tokenizer type \"%.60s\" has no llama.cpp equivalent in the table", type);
    return 0;
}

static void pre_names_list(char *buf, size_t cap)
{
    size_t n = 0;
    buf[0] = 0;
    for (int i = 0; cv_pre_names[i] && n + 1 < cap; i++) {
        int k = snprintf(buf + n, cap - n, "%s%s", i ? " " : "", cv_pre_names[i]);
        if (k < 0 || (size_t)k >= cap - n)
            break;
        n += (size_t)k;
    }
}

int cv_bpe_detect_pre(const void *tokenizer_json, char *out, uint64_t out_cap, sm_err *err)
{
    const json_t *tj = tokenizer_json;
    char names[420];
    pre_names_list(names, sizeof names);
    const json_t *pt = json_object_get(tj, "pre_tokenizer");
    if (!pt || json_is_null(pt))
        return sm_err_set(err, SM_EUNSUPP,
                          "tokenizer.json: $.pre_tokenizer is null: pre-tokenizer not recognised; pass --pre NAME, one of: %s",
                          names);
    int norm = NORM_NONE;
    const json_t *nj = json_object_get(tj, "normalizer");
    if (nj && !json_is_null(nj)) {
        const char *nt = jstr(nj, "type");
        norm = nt && strcmp(nt, "NFC") == 0 ? NORM_NFC : -1;
    }
    pre_units pu;
    memset(&pu, 0, sizeof pu);
    int rc = units_collect(&pu, pt, "$.pre_tokenizer", 0);
    if (rc < 0) {
        units_free(&pu);
        return sm_err_set(err, rc, "tokenizer.json: out of memory reading $.pre_tokenizer");
    }
    const char *found = NULL;
    if (!pu.bad && pu.byte_level) {
        for (size_t e = 0; e < sizeof PRE_TABLE / sizeof PRE_TABLE[0] && !found; e++) {
            const pre_entry *pe = &PRE_TABLE[e];
            if (pe->norm == NORM_NONE && norm != NORM_NONE)
                continue;
            if (pe->norm == NORM_NFC && norm != NORM_NFC)
                continue;
            int k = 0, same = 1;
            for (; pe->units[k]; k++) {
                if (k >= pu.n) {
                    same = 0;
                    break;
                }
                int canon = pe->units[k][0] != '@';
                char *c = canon ? regex_canon(pe->units[k], strlen(pe->units[k])) : strdup(pe->units[k]);
                if (!c) {
                    units_free(&pu);
                    return sm_err_set(err, SM_ENOMEM, "tokenizer.json: out of memory");
                }
                same = strcmp(c, pu.u[k]) == 0;
                free(c);
                if (!same)
                    break;
            }
            if (same && k == pu.n)
                found = pe->name;
        }
    }
    if (!found) {
        char what[240];
        if (pu.bad)
            snprintf(what, sizeof what, "%s", pu.what);
        else if (!pu.byte_level)
            snprintf(what, sizeof what, "no ByteLevel step");
        else
            snprintf(what, sizeof what, "%d step(s), first \"%.80s\"%s", pu.n, pu.n ? pu.u[0] : "",
                     norm < 0 ? ", normalizer other than NFC" : "");
        units_free(&pu);
        return sm_err_set(err, SM_EUNSUPP,
                          "tokenizer.json: $.pre_tokenizer not recognised (%s); pass --pre NAME, one of: %s",
                          what, names);
    }
    units_free(&pu);
    if (strlen(found) + 1 > out_cap)
        return sm_err_set(err, SM_ERANGE, "pre-tokenizer name buffer too small");
    memcpy(out, found, strlen(found) + 1);
    return 0;
}

/* ------------------------------------------------------------ tokens */

typedef struct added_tok {
    const char *content; /* borrowed from the JSON */
    size_t len;
    int64_t id;
    int special;
    const json_t *src;   /* the JSON entry, for the flag comparison */
} added_tok;

static int jstr_eq(const json_t *v, const char *s, size_t len)
{
    return json_is_string(v) && json_string_length(v) == len && memcmp(json_string_value(v), s, len) == 0;
}

/* 1 when s is one of tokenizer_config.json's named special tokens
 * (transformers' all_special_tokens: bos/eos/unk/sep/pad/cls/mask_token and
 * additional_special_tokens, each a string or {"content": ...}). */
static int named_special(const json_t *tc, const char *s, size_t len)
{
    static const char *const keys[] = {"bos_token", "eos_token", "unk_token", "sep_token",
                                       "pad_token", "cls_token", "mask_token"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const json_t *e = json_object_get(tc, keys[i]);
        if (jstr_eq(e, s, len) || jstr_eq(json_object_get(e, "content"), s, len))
            return 1;
    }
    const json_t *extra = json_object_get(tc, "additional_special_tokens");
    for (size_t i = 0; i < json_array_size(extra); i++) {
        const json_t *e = json_array_get(extra, i);
        if (jstr_eq(e, s, len) || jstr_eq(json_object_get(e, "content"), s, len))
            return 1;
    }
    return 0;
}

/* 1 when two added-token entries differ in a field transformers compares
 * (its repr of AddedToken). */
static int added_flags_differ(const json_t *a, const json_t *b)
{
    static const char *const flags[] = {"special", "normalized", "lstrip", "rstrip", "single_word"};
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
        /* transformers' defaults: special false, normalized = !special, the rest false */
        int dflt = strcmp(flags[i], "normalized") == 0 ? !jbool(a, "special", 0) : 0;
        int dfltb = strcmp(flags[i], "normalized") == 0 ? !jbool(b, "special", 0) : 0;
        if (jbool(a, flags[i], dflt) != jbool(b, flags[i], dfltb))
            return 1;
    }
    return 0;
}

static int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* merges.txt fallback of SpecialVocab._try_load_merges_txt. */
static int load_merges_txt(cv_bpe_result *r, const char *model_dir, sm_err *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/merges.txt", model_dir);
    if (!file_exists(path))
        return 0;
    char *buf = NULL;
    uint64_t len = 0;
    int rc = sm_read_file(path, 1ull << 31, &buf, &len, err);
    if (rc < 0)
        return rc;
    uint64_t cap = 0, pos = 0;
    int first = 1;
    while (pos < len) {
        uint64_t e = pos;
        while (e < len && buf[e] != '\n')
            e++;
        /* strip() */
        uint64_t a = pos, b = e;
        while (a < b && (buf[a] == ' ' || buf[a] == '\t' || buf[a] == '\r' || buf[a] == '\f' || buf[a] == '\v'))
            a++;
        while (b > a && (buf[b - 1] == ' ' || buf[b - 1] == '\t' || buf[b - 1] == '\r' || buf[b - 1] == '\f' || buf[b - 1] == '\v'))
            b--;
        pos = e + 1;
        int was_first = first;
        first = 0;
        if (a == b || (was_first && buf[a] == '#'))
            continue;
        /* split(None, 3): exactly two whitespace-separated parts */
        uint64_t p1a = a, p1b = a;
        while (p1b < b && buf[p1b] != ' ' && buf[p1b] != '\t')
            p1b++;
        uint64_t p2a = p1b;
        while (p2a < b && (buf[p2a] == ' ' || buf[p2a] == '\t'))
            p2a++;
        uint64_t p2b = p2a;
        while (p2b < b && buf[p2b] != ' ' && buf[p2b] != '\t')
            p2b++;
        uint64_t rest = p2b;
        while (rest < b && (buf[rest] == ' ' || buf[rest] == '\t'))
            rest++;
        if (p2a == p2b || rest != b)
            continue; /* malformed entry: the Python warns and skips it */
        if (r->n_merges == cap) {
            cap = cap ? cap * 2 : 4096;
            char **nm = realloc(r->merges, cap * sizeof *nm);
            if (!nm) {
                rc = sm_err_set(err, SM_ENOMEM, "%s: out of memory", path);
                goto done;
            }
            r->merges = nm;
        }
        size_t l1 = p1b - p1a, l2 = p2b - p2a;
        char *m = malloc(l1 + l2 + 2);
        if (!m) {
            rc = sm_err_set(err, SM_ENOMEM, "%s: out of memory", path);
            goto done;
        }
        memcpy(m, buf + p1a, l1);
        m[l1] = ' ';
        memcpy(m + l1 + 1, buf + p2a, l2);
        m[l1 + l2 + 1] = 0;
        r->merges[r->n_merges++] = m;
    }
done:
    free(buf);
    return rc;
}

/* SpecialVocab._try_load_from_tokenizer_json's merges handling. */
static int load_merges(cv_bpe_result *r, const json_t *model, const char *model_dir, sm_err *err)
{
    const json_t *merges = json_object_get(model, "merges");
    size_t n = json_is_array(merges) ? json_array_size(merges) : 0;
    if (merges && !json_is_null(merges) && !json_is_array(merges))
        return sm_err_set(err, SM_ETYPE, "tokenizer.json: $.model.merges: expected an array, got %s",
                          json_is_object(merges) ? "an object" : "a scalar");
    if (n == 0)
        return load_merges_txt(r, model_dir, err);
    int as_pairs = json_is_array(json_array_get(merges, 0));
    if (!as_pairs && !json_is_string(json_array_get(merges, 0)))
        return sm_err_set(err, SM_EFORMAT,
                          "tokenizer.json: $.model.merges[0]: expected a string \"a b\" or a pair [\"a\", \"b\"]");
    r->merges = calloc(n, sizeof *r->merges);
    if (!r->merges)
        return sm_err_set(err, SM_ENOMEM, "tokenizer.json: out of memory for %zu merges", n);
    for (size_t i = 0; i < n; i++) {
        const json_t *m = json_array_get(merges, i);
        char *s = NULL;
        if (!as_pairs) {
            if (!json_is_string(m))
                return sm_err_set(err, SM_EFORMAT, "tokenizer.json: $.model.merges[%zu]: expected a string like merges[0]", i);
            s = strndup(json_string_value(m), json_string_length(m));
        } else {
            if (!json_is_array(m) || json_array_size(m) != 2 || !json_is_string(json_array_get(m, 0)) ||
                !json_is_string(json_array_get(m, 1)))
                return sm_err_set(err, SM_EFORMAT,
                                  "tokenizer.json: $.model.merges[%zu]: expected a pair of two strings like merges[0]", i);
            /* joined with a space; a space inside a part becomes U+0120 as
             * gguf-py does, so the pair stays splittable */
            size_t need = 2;
            for (int k = 0; k < 2; k++)
                need += json_string_length(json_array_get(m, k)) * 2;
            s = malloc(need);
            if (s) {
                size_t o = 0;
                for (int k = 0; k < 2; k++) {
                    const json_t *part = json_array_get(m, k);
                    const char *ps = json_string_value(part);
                    size_t pl = json_string_length(part);
                    if (k)
                        s[o++] = ' ';
                    for (size_t j = 0; j < pl; j++) {
                        if (ps[j] == ' ') {
                            s[o++] = (char)0xC4;
                            s[o++] = (char)0xA0;
                        } else {
                            s[o++] = ps[j];
                        }
                    }
                }
                s[o] = 0;
            }
        }
        if (!s)
            return sm_err_set(err, SM_ENOMEM, "tokenizer.json: out of memory for merges");
        r->merges[i] = s;
        r->n_merges = i + 1;
    }
    return 0;
}

static int read_added(const json_t *arr, const char *where, added_tok **out, size_t *n_out, size_t *cap,
                      json_t *by_id, sm_err *err)
{
    /* where: "tokenizer.json: $.added_tokens" */
    size_t n = json_array_size(arr);
    for (size_t i = 0; i < n; i++) {
        const json_t *a = json_array_get(arr, i);
        const json_t *id = json_object_get(a, "id");
        const json_t *content = json_object_get(a, "content");
        if (!json_is_object(a) || !json_is_integer(id) || !json_is_string(content))
            return sm_err_set(err, SM_EFORMAT, "%s[%zu]: expected an object with integer \"id\" and string \"content\"",
                              where, i);
        json_int_t v = json_integer_value(id);
        if (v < 0 || v > INT32_MAX)
            return sm_err_set(err, SM_ERANGE, "%s[%zu]: id %lld out of range", where, i, (long long)v);
        char key[24];
        snprintf(key, sizeof key, "%lld", (long long)v);
        if (json_object_get(by_id, key))
            continue;
        if (*n_out == *cap) {
            *cap = *cap ? *cap * 2 : 64;
            added_tok *na = realloc(*out, *cap * sizeof *na);
            if (!na)
                return sm_err_set(err, SM_ENOMEM, "out of memory for added tokens");
            *out = na;
        }
        added_tok *t = &(*out)[(*n_out)++];
        t->content = json_string_value(content);
        t->len = json_string_length(content);
        t->id = v;
        t->special = jbool(a, "special", 0);
        t->src = a;
        if (json_object_set_new(by_id, key, json_integer((json_int_t)(*n_out - 1))) < 0)
            return sm_err_set(err, SM_ENOMEM, "out of memory for added tokens");
    }
    return 0;
}

int cv_bpe_load(cv_bpe_result *r, const void *tokenizer_json, const void *tokenizer_config,
                const char *model_dir, const cv_vocab_opts *opts, sm_err *err)
{
    const json_t *tj = tokenizer_json;
    const json_t *tc = tokenizer_config;
    memset(r, 0, sizeof *r);
    int rc = 0;
    added_tok *added = NULL;
    size_t n_added = 0, added_cap = 0;
    json_t *by_id = json_object();     /* "id" -> index into added */
    json_t *by_content = json_object(); /* content -> index into added (first) */
    const char **rev = NULL;            /* [vocab_size] token text by id */
    size_t *rev_len = NULL;
    int32_t *rev_added = NULL;          /* [vocab_size] index into added or -1 */
    if (!by_id || !by_content) {
        rc = sm_err_set(err, SM_ENOMEM, "tokenizer.json: out of memory");
        goto done;
    }

    const json_t *model = json_object_get(tj, "model");
    if (!json_is_object(model)) {
        rc = sm_err_set(err, SM_EMISSING, "tokenizer.json: $.model: expected an object");
        goto done;
    }
    const char *mtype = jstr(model, "type");
    if (!mtype || strcmp(mtype, "BPE") != 0) {
        rc = sm_err_set(err, SM_EUNSUPP, "tokenizer.json: $.model.type is \"%.40s\": only BPE is supported",
                        mtype ? mtype : "(missing)");
        goto done;
    }
    const json_t *vocab = json_object_get(model, "vocab");
    if (!json_is_object(vocab)) {
        rc = sm_err_set(err, vocab ? SM_ETYPE : SM_EMISSING, "tokenizer.json: $.model.vocab: expected an object");
        goto done;
    }

    /* added tokens: tokenizer.json first, then tokenizer_config.json's
     * added_tokens_decoder as transformers applies it on load */
    const json_t *at = json_object_get(tj, "added_tokens");
    if (at && !json_is_null(at)) {
        if (!json_is_array(at)) {
            rc = sm_err_set(err, SM_ETYPE, "tokenizer.json: $.added_tokens: expected an array");
            goto done;
        }
        if ((rc = read_added(at, "tokenizer.json: $.added_tokens", &added, &n_added, &added_cap, by_id, err)) < 0)
            goto done;
    }
    const json_t *atd = json_object_get(tc, "added_tokens_decoder");
    if (atd && !json_is_null(atd)) {
        if (!json_is_object(atd)) {
            rc = sm_err_set(err, SM_ETYPE, "tokenizer_config.json: $.added_tokens_decoder: expected an object");
            goto done;
        }
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)atd, k, v) {
            char *endp;
            long long id = strtoll(k, &endp, 10);
            const json_t *content = json_object_get(v, "content");
            if (!*k || *endp || id < 0 || id > INT32_MAX) {
                rc = sm_err_set(err, SM_EFORMAT, "tokenizer_config.json: $.added_tokens_decoder: key \"%.40s\" is not a token id", k);
                goto done;
            }
            if (!json_is_object(v) || !json_is_string(content)) {
                rc = sm_err_set(err, SM_ETYPE, "tokenizer_config.json: $.added_tokens_decoder[\"%.40s\"].content: expected a string", k);
                goto done;
            }
            char key[24];
            snprintf(key, sizeof key, "%lld", id);
            /* transformers re-adds a config entry that differs from
             * tokenizer.json's (same content keeps its id): the config's
             * flags win, and a named special token is marked special */
            int is_special = jbool(v, "special", 0) || named_special(tc, json_string_value(content), json_string_length(content));
            const json_t *have = json_object_get(by_id, key);
            if (have) {
                added_tok *t = &added[json_integer_value(have)];
                if (jstr_eq(content, t->content, t->len) && added_flags_differ(t->src, v))
                    t->special = is_special;
                continue;
            }
            if (n_added == added_cap) {
                added_cap = added_cap ? added_cap * 2 : 64;
                added_tok *na = realloc(added, added_cap * sizeof *na);
                if (!na) {
                    rc = sm_err_set(err, SM_ENOMEM, "out of memory for added tokens");
                    goto done;
                }
                added = na;
            }
            added_tok *t = &added[n_added++];
            t->content = json_string_value(content);
            t->len = json_string_length(content);
            t->id = id;
            t->special = is_special;
            t->src = v;
            if (json_object_set_new(by_id, key, json_integer((json_int_t)(n_added - 1))) < 0) {
                rc = sm_err_set(err, SM_ENOMEM, "out of memory");
                goto done;
            }
        }
    }

    /* size of the id space: tokenizer.vocab (model vocab + added tokens) */
    int64_t max_id = -1;
    uint64_t n_distinct = json_object_size(vocab);
    {
        const char *k;
        size_t kl;
        json_t *v;
        json_object_keylen_foreach((json_t *)vocab, k, kl, v) {
            (void)kl;
            if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT32_MAX) {
                rc = sm_err_set(err, SM_EFORMAT, "tokenizer.json: $.model.vocab[\"%.60s\"]: expected a token id (integer >= 0)", k);
                goto done;
            }
            if (json_integer_value(v) > max_id)
                max_id = json_integer_value(v);
        }
    }
    for (size_t i = 0; i < n_added; i++) {
        if (added[i].id > max_id)
            max_id = added[i].id;
        if (!json_object_getn(vocab, added[i].content, added[i].len))
            n_distinct++;
        if (!json_object_getn(by_content, added[i].content, added[i].len) &&
            json_object_setn_new(by_content, added[i].content, added[i].len, json_integer((json_int_t)i)) < 0) {
            rc = sm_err_set(err, SM_ENOMEM, "out of memory");
            goto done;
        }
    }
    uint64_t vocab_size = opts->config_vocab_size ? opts->config_vocab_size : n_distinct;
    if (max_id >= 0 && (uint64_t)max_id >= vocab_size) {
        rc = sm_err_set(err, SM_ERANGE,
                        "tokenizer.json: token id %lld is not below vocab_size %llu (config.json vocab_size%s)",
                        (long long)max_id, (unsigned long long)vocab_size,
                        opts->config_vocab_size ? "" : " absent: counted the tokens");
        goto done;
    }
    if (vocab_size > INT32_MAX) {
        rc = sm_err_set(err, SM_ERANGE, "vocab_size %llu too large", (unsigned long long)vocab_size);
        goto done;
    }

    rev = calloc(vocab_size ? vocab_size : 1, sizeof *rev);
    rev_len = calloc(vocab_size ? vocab_size : 1, sizeof *rev_len);
    rev_added = malloc((vocab_size ? vocab_size : 1) * sizeof *rev_added);
    if (!rev || !rev_len || !rev_added) {
        rc = sm_err_set(err, SM_ENOMEM, "out of memory for %llu tokens", (unsigned long long)vocab_size);
        goto done;
    }
    for (uint64_t i = 0; i < vocab_size; i++)
        rev_added[i] = -1;
    {
        const char *k;
        size_t kl;
        json_t *v;
        json_object_keylen_foreach((json_t *)vocab, k, kl, v) {
            json_int_t id = json_integer_value(v);
            rev[id] = k;
            rev_len[id] = kl;
        }
    }
    for (size_t i = 0; i < n_added; i++) {
        rev[added[i].id] = added[i].content;
        rev_len[added[i].id] = added[i].len;
        rev_added[added[i].id] = (int32_t)i;
    }

    if ((rc = cv_toklist_init(&r->toks, (uint32_t)vocab_size, 0, err)) < 0)
        goto done;
    for (uint64_t i = 0; i < vocab_size; i++) {
        if (!rev[i]) {
            char pad[32];
            int l = snprintf(pad, sizeof pad, "[PAD%llu]", (unsigned long long)i);
            if ((rc = cv_toklist_set(&r->toks, (uint32_t)i, pad, (uint64_t)l, err)) < 0)
                goto done;
            r->toks.types[i] = CV_TOK_UNUSED;
            r->n_pad++;
            continue;
        }
        /* "token in added_vocab" compares the text: a base-vocab token
         * equal to an added token's content counts as added too */
        int32_t ai = rev_added[i];
        if (ai < 0) {
            const json_t *bc = json_object_getn(by_content, rev[i], rev_len[i]);
            if (bc)
                ai = (int32_t)json_integer_value(bc);
        }
        if (ai < 0) {
            if ((rc = cv_toklist_set(&r->toks, (uint32_t)i, rev[i], rev_len[i], err)) < 0)
                goto done;
            r->toks.types[i] = CV_TOK_NORMAL;
            continue;
        }
        r->n_added++;
        if (added[ai].special || cv_token_looks_special(rev[i], rev_len[i])) {
            if ((rc = cv_toklist_set(&r->toks, (uint32_t)i, rev[i], rev_len[i], err)) < 0)
                goto done;
            r->toks.types[i] = CV_TOK_CONTROL;
        } else {
            /* pre-normalize user-defined spaces: U+2581 -> ' ' */
            char *t = malloc(rev_len[i] + 1);
            size_t o = 0;
            if (!t) {
                rc = sm_err_set(err, SM_ENOMEM, "out of memory");
                goto done;
            }
            for (size_t j = 0; j < rev_len[i];) {
                if (rev_len[i] - j >= 3 && (unsigned char)rev[i][j] == 0xE2 && (unsigned char)rev[i][j + 1] == 0x96 &&
                    (unsigned char)rev[i][j + 2] == 0x81) {
                    t[o++] = ' ';
                    j += 3;
                } else {
                    t[o++] = rev[i][j++];
                }
            }
            rc = cv_toklist_set(&r->toks, (uint32_t)i, t, o, err);
            free(t);
            if (rc < 0)
                goto done;
            r->toks.types[i] = CV_TOK_USER_DEFINED;
        }
    }

    if ((rc = load_merges(r, model, model_dir, err)) < 0)
        goto done;

    if (opts->pre_override) {
        snprintf(r->pre, sizeof r->pre, "%s", opts->pre_override);
    } else if ((rc = cv_bpe_detect_pre(tj, r->pre, sizeof r->pre, err)) < 0) {
        goto done;
    }

done:
    free(added);
    free(rev);
    free(rev_len);
    free(rev_added);
    json_decref(by_id);
    json_decref(by_content);
    if (rc < 0)
        cv_bpe_free(r);
    return rc;
}

void cv_bpe_free(cv_bpe_result *r)
{
    if (!r)
        return;
    cv_toklist_free(&r->toks);
    for (uint64_t i = 0; i < r->n_merges; i++)
        free(r->merges[i]);
    free(r->merges);
    r->merges = NULL;
    r->n_merges = 0;
}
