/* vocab.c — tokenizer KVs for smelt-convert: the driver, the SentencePiece
 * vocabulary (_create_vocab_sentencepiece), gguf-py's SpecialVocab (special
 * token ids, add_bos/add_eos, chat template) and LlamaModel.set_vocab's
 * extras, written in convert_hf_to_gguf.py's order:
 *
 *   tokenizer.ggml.model, .pre, .tokens, [.scores], .token_type, [.merges],
 *   special ids (in the order SpecialVocab found them), add_bos/add_eos,
 *   tokenizer.chat_template, then for arch llama: CodeLlama eot id,
 *   add_space_prefix, granite add_bos.
 *
 * SpecialVocab resolution order (gguf-py vocab.py): for each of bos, eos,
 * unk, sep, pad, cls, mask: tokenizer_config.json "<t>_token" (a string or
 * {"content": ...}) looked up by content in tokenizer.json's added_tokens
 * (first match), then config.json "<t>_token_id"; the first id found for a
 * type wins; ids >= n_vocab are skipped for SentencePiece vocabularies. cls
 * has no GGUF key and is never written. */
#include "vocab.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ------------------------------------------------------------ helpers */

int cv_toklist_init(cv_toklist *t, uint32_t n, int with_scores, sm_err *err)
{
    memset(t, 0, sizeof *t);
    size_t m = n ? n : 1;
    t->off = calloc(m, sizeof *t->off);
    t->len = calloc(m, sizeof *t->len);
    t->types = calloc(m, sizeof *t->types);
    t->scores = with_scores ? calloc(m, sizeof *t->scores) : NULL;
    t->arena_cap = (uint64_t)m * 8;
    t->arena = malloc(t->arena_cap);
    if (!t->off || !t->len || !t->types || (with_scores && !t->scores) || !t->arena) {
        cv_toklist_free(t);
        return sm_err_set(err, SM_ENOMEM, "out of memory for %u tokens", n);
    }
    t->n = n;
    return 0;
}

int cv_toklist_set(cv_toklist *t, uint32_t i, const void *s, uint64_t len, sm_err *err)
{
    if (i >= t->n)
        return sm_err_set(err, SM_EINVAL, "token index %u out of range %u", i, t->n);
    if (len > UINT32_MAX)
        return sm_err_set(err, SM_ERANGE, "token %u is %llu bytes long", i, (unsigned long long)len);
    if (t->arena_len + len > t->arena_cap) {
        uint64_t cap = t->arena_cap * 2;
        while (cap < t->arena_len + len)
            cap *= 2;
        char *na = realloc(t->arena, cap);
        if (!na)
            return sm_err_set(err, SM_ENOMEM, "out of memory for token text");
        t->arena = na;
        t->arena_cap = cap;
    }
    if (len)
        memcpy(t->arena + t->arena_len, s, len);
    t->off[i] = t->arena_len;
    t->len[i] = (uint32_t)len;
    t->arena_len += len;
    return 0;
}

void cv_toklist_free(cv_toklist *t)
{
    if (!t)
        return;
    free(t->arena);
    free(t->off);
    free(t->len);
    free(t->scores);
    free(t->types);
    memset(t, 0, sizeof *t);
}

int cv_utf8_valid(const uint8_t *s, uint64_t len)
{
    uint64_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        int n;
        uint32_t cp;
        if (c >= 0xC2 && c <= 0xDF) {
            n = 1;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 2;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 3;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (len - i - 1 < (uint64_t)n)
            return 0;
        for (int k = 1; k <= n; k++) {
            uint8_t d = s[i + k];
            if ((d & 0xC0) != 0x80)
                return 0;
            cp = cp << 6 | (d & 0x3F);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += (uint64_t)n + 1;
    }
    return 1;
}

static int has_prefix(const char *s, uint64_t len, const char *p)
{
    size_t pl = strlen(p);
    return len >= pl && memcmp(s, p, pl) == 0;
}

static int has_suffix(const char *s, uint64_t len, const char *p)
{
    size_t pl = strlen(p);
    return len >= pl && memcmp(s + len - pl, p, pl) == 0;
}

static int str_is(const char *s, uint64_t len, const char *p)
{
    return strlen(p) == len && memcmp(s, p, len) == 0;
}

int cv_token_looks_special(const char *s, uint64_t len)
{
    if (str_is(s, len, "<pad>") || str_is(s, len, "<mask>") || str_is(s, len, "<2mass>") || str_is(s, len, "[@BOS@]"))
        return 1;
    if (has_prefix(s, len, "<|") && has_suffix(s, len, "|>"))
        return 1;
    /* fullwidth vertical line U+FF5C, as in deepseek's <｜...｜> */
    if (has_prefix(s, len, "<\xEF\xBD\x9C") && has_suffix(s, len, "\xEF\xBD\x9C>"))
        return 1;
    if (has_prefix(s, len, "<unused") && has_suffix(s, len, ">"))
        return 1;
    return 0;
}

static int path_join(char *out, size_t cap, const char *dir, const char *name, sm_err *err)
{
    int n = snprintf(out, cap, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= cap)
        return sm_err_set(err, SM_ERANGE, "%s/%s: path too long", dir, name);
    return 0;
}

static int is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Loads path as JSON into *out (NULL when the file does not exist and
 * optional is set). Errors name the file, line and column. */
static int json_load_path(const char *path, const char *shown, int optional, json_t **out, sm_err *err)
{
    *out = NULL;
    if (!is_file(path)) {
        if (optional)
            return 0;
        return sm_err_set(err, SM_EMISSING, "%s: file not found", path);
    }
    json_error_t je;
    json_t *j = json_load_file(path, JSON_ALLOW_NUL, &je);
    if (!j)
        return sm_err_set(err, SM_EFORMAT, "%s: line %d column %d (byte %d): not valid JSON: %s", shown, je.line,
                          je.column, je.position, je.text);
    if (!json_is_object(j)) {
        json_decref(j);
        return sm_err_set(err, SM_EFORMAT, "%s: top level is not a JSON object", shown);
    }
    *out = j;
    return 0;
}

/* json_load_path for a file already in memory (text, len bytes; NULL:
 * absent): the same flags, checks and messages. */
static int json_parse_text(const char *text, uint64_t len, const char *shown, json_t **out, sm_err *err)
{
    *out = NULL;
    if (!text)
        return 0;
    json_error_t je;
    json_t *j = json_loadb(text, (size_t)len, JSON_ALLOW_NUL, &je);
    if (!j)
        return sm_err_set(err, SM_EFORMAT, "%s: line %d column %d (byte %d): not valid JSON: %s", shown, je.line,
                          je.column, je.position, je.text);
    if (!json_is_object(j)) {
        json_decref(j);
        return sm_err_set(err, SM_EFORMAT, "%s: top level is not a JSON object", shown);
    }
    *out = j;
    return 0;
}

static int add_fail(int rc, const char *key, sm_err *err)
{
    return sm_err_set(err, rc, "cannot add %s to the GGUF (%s)", key, sm_code_name(rc));
}

/* ------------------------------------------------------------ SpecialVocab */

enum { SP_BOS, SP_EOS, SP_UNK, SP_SEP, SP_PAD, SP_CLS, SP_MASK, SP_PREFIX, SP_SUFFIX, SP_MIDDLE, SP_EOT, SP_COUNT };

static const char *const SP_NAMES[SP_COUNT] = {
    "bos", "eos", "unk", "sep", "pad", "cls", "mask", "prefix", "suffix", "middle", "eot",
};
/* GGUF key of each type's id; NULL = gguf-py has no add_<t>_token_id handler */
static const char *const SP_KEYS[SP_COUNT] = {
    "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.unknown_token_id",
    "tokenizer.ggml.seperator_token_id", "tokenizer.ggml.padding_token_id", NULL, "tokenizer.ggml.mask_token_id",
    NULL, NULL, NULL, "tokenizer.ggml.eot_token_id",
};

typedef struct special_vocab {
    const int *types;    /* [n_types] SP_* to consider, in order */
    int n_types;
    uint32_t n_vocab;    /* 0 = no range check */
    int order[SP_COUNT]; /* SP_* in the order ids were set */
    int n_order;
    uint32_t id[SP_COUNT];
    int have[SP_COUNT];
    int add_order[SP_COUNT]; /* SP_* with an add_<t>_token bool, in order */
    int n_add;
    int add_val[SP_COUNT];
    const json_t *chat_template; /* borrowed from tokenizer_config; NULL none */
} special_vocab;

/* _set_special_token: only ints (JSON integers, and booleans, which are ints
 * in Python) count; negatives are an error; out-of-range ids are skipped. */
static int sv_set(special_vocab *sv, int typ, const json_t *v, const char *where, sm_err *err)
{
    long long id;
    if (json_is_integer(v))
        id = json_integer_value(v);
    else if (json_is_boolean(v))
        id = json_is_true(v);
    else
        return 0;
    if (id < 0)
        return sm_err_set(err, SM_ERANGE, "%s: invalid value for special token type %s: %lld", where, SP_NAMES[typ], id);
    if (sv->n_vocab && (unsigned long long)id >= sv->n_vocab)
        return 0; /* gguf-py warns "out of range" and skips it */
    if (sv->have[typ])
        return 0;
    if (id > UINT32_MAX)
        return sm_err_set(err, SM_ERANGE, "%s: special token %s id %lld does not fit uint32", where, SP_NAMES[typ], id);
    sv->have[typ] = 1;
    sv->id[typ] = (uint32_t)id;
    sv->order[sv->n_order++] = typ;
    return 0;
}

static int sv_load(special_vocab *sv, const json_t *tokenizer_json, const json_t *tc, const json_t *config, sm_err *err)
{
    int rc;
    const json_t *added = json_object_get(tokenizer_json, "added_tokens");
    if (tc) {
        const json_t *ct = json_object_get(tc, "chat_template");
        if (ct && !json_is_null(ct)) {
            if (!json_is_string(ct) && !json_is_array(ct))
                return sm_err_set(err, SM_ETYPE, "tokenizer_config.json: $.chat_template: expected a string or a list of {name, template}");
            sv->chat_template = ct;
        }
        for (int k = 0; k < sv->n_types; k++) {
            int typ = sv->types[k];
            char key[32];
            snprintf(key, sizeof key, "add_%s_token", SP_NAMES[typ]);
            const json_t *ae = json_object_get(tc, key);
            if (json_is_boolean(ae)) {
                sv->add_val[typ] = json_is_true(ae);
                sv->add_order[sv->n_add++] = typ;
            }
            snprintf(key, sizeof key, "%s_token", SP_NAMES[typ]);
            const json_t *e = json_object_get(tc, key);
            const json_t *content = NULL;
            if (json_is_string(e))
                content = e;
            else if (json_is_object(e) && json_is_string(json_object_get(e, "content")))
                content = json_object_get(e, "content");
            if (!content || !json_is_array(added))
                continue;
            /* first added token with that content; its id (even a non-int) */
            for (size_t i = 0; i < json_array_size(added); i++) {
                const json_t *a = json_array_get(added, i);
                const json_t *ac = json_object_get(a, "content");
                if (json_is_string(ac) && json_string_length(ac) == json_string_length(content) &&
                    memcmp(json_string_value(ac), json_string_value(content), json_string_length(ac)) == 0) {
                    if ((rc = sv_set(sv, typ, json_object_get(a, "id"), "tokenizer.json: $.added_tokens", err)) < 0)
                        return rc;
                    break;
                }
            }
        }
    }
    if (config) {
        for (int k = 0; k < sv->n_types; k++) {
            int typ = sv->types[k];
            char key[32];
            snprintf(key, sizeof key, "%s_token_id", SP_NAMES[typ]);
            char where[64];
            snprintf(where, sizeof where, "config.json: $.%s", key);
            if ((rc = sv_set(sv, typ, json_object_get(config, key), where, err)) < 0)
                return rc;
        }
    }
    return 0;
}

/* add_chat_template: a string, or a list of {name, template} where "default"
 * becomes tokenizer.chat_template and the others tokenizer.chat_template.<name>
 * plus the tokenizer.chat_templates name list (first-appearance order: the
 * Python uses a set, whose order is not even stable between runs). */
static int write_chat_template(gguf_writer *w, const json_t *ct, cv_vocab_info *info, sm_err *err)
{
    int rc = 0;
    if (json_is_string(ct)) {
        if ((rc = gguf_writer_set_strn(w, "tokenizer.chat_template", json_string_value(ct), json_string_length(ct))) < 0)
            return add_fail(rc, "tokenizer.chat_template", err);
        info->has_chat_template = 1;
        info->n_kv++;
        return 0;
    }
    size_t n = json_array_size(ct);
    const json_t *deflt = NULL;
    char **names = calloc(n ? n : 1, sizeof *names);
    size_t n_names = 0;
    if (!names)
        return sm_err_set(err, SM_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const json_t *c = json_array_get(ct, i);
        if (!json_is_object(c)) {
            rc = sm_err_set(err, SM_ETYPE, "tokenizer_config.json: $.chat_template[%zu]: expected an object", i);
            goto done;
        }
        const json_t *nm = json_object_get(c, "name");
        const json_t *tp = json_object_get(c, "template");
        if (nm && !json_is_string(nm)) {
            rc = sm_err_set(err, SM_ETYPE, "tokenizer_config.json: $.chat_template[%zu].name: expected a string", i);
            goto done;
        }
        if (!nm || !tp || json_is_null(tp) || json_string_length(nm) == 0)
            continue;
        if (!json_is_string(tp)) {
            rc = sm_err_set(err, SM_ETYPE, "tokenizer_config.json: $.chat_template[%zu].template: expected a string", i);
            goto done;
        }
        /* the name keeps ASCII letters and digits, anything else is '_'
         * (per code point: a multi-byte character becomes one '_') */
        const unsigned char *s = (const unsigned char *)json_string_value(nm);
        size_t sl = json_string_length(nm);
        char *clean = malloc(sl + 1);
        if (!clean) {
            rc = sm_err_set(err, SM_ENOMEM, "out of memory");
            goto done;
        }
        size_t o = 0;
        for (size_t j = 0; j < sl; j++) {
            unsigned char ch = s[j];
            if ((ch & 0xC0) == 0x80)
                continue;
            int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
            clean[o++] = ok ? (char)ch : '_';
        }
        clean[o] = 0;
        if (strcmp(clean, "default") == 0) {
            deflt = tp;
            free(clean);
            continue;
        }
        char key[600];
        snprintf(key, sizeof key, "tokenizer.chat_template.%.500s", clean);
        int dup = 0;
        for (size_t k = 0; k < n_names; k++)
            dup |= strcmp(names[k], clean) == 0;
        if (dup) {
            free(clean);
            rc = sm_err_set(err, SM_EDUP, "tokenizer_config.json: $.chat_template[%zu]: duplicate template name \"%.60s\"", i,
                            json_string_value(nm));
            goto done;
        }
        names[n_names++] = clean;
        if ((rc = gguf_writer_set_strn(w, key, json_string_value(tp), json_string_length(tp))) < 0) {
            rc = add_fail(rc, key, err);
            goto done;
        }
        info->n_kv++;
    }
    if (n_names) {
        sm_str *v = calloc(n_names, sizeof *v);
        if (!v) {
            rc = sm_err_set(err, SM_ENOMEM, "out of memory");
            goto done;
        }
        for (size_t k = 0; k < n_names; k++) {
            v[k].ptr = names[k];
            v[k].len = strlen(names[k]);
        }
        rc = gguf_writer_set_arr_str(w, "tokenizer.chat_templates", v, n_names);
        free(v);
        if (rc < 0) {
            rc = add_fail(rc, "tokenizer.chat_templates", err);
            goto done;
        }
        info->n_kv++;
    }
    if (deflt) {
        if ((rc = gguf_writer_set_strn(w, "tokenizer.chat_template", json_string_value(deflt), json_string_length(deflt))) < 0) {
            rc = add_fail(rc, "tokenizer.chat_template", err);
            goto done;
        }
        info->has_chat_template = 1;
        info->n_kv++;
    }
done:
    for (size_t k = 0; k < n_names; k++)
        free(names[k]);
    free(names);
    return rc;
}

/* SpecialVocab.add_to_gguf (merges are written by the caller before). */
static int sv_write(gguf_writer *w, const special_vocab *sv, cv_vocab_info *info, sm_err *err)
{
    int rc;
    for (int k = 0; k < sv->n_order; k++) {
        int typ = sv->order[k];
        if (!SP_KEYS[typ])
            continue; /* no handler: gguf-py warns and skips */
        if (gguf_writer_find_key(w, SP_KEYS[typ]) >= 0)
            return sm_err_set(err, SM_EDUP, "duplicated key %s (llama.cpp's converter fails here too)", SP_KEYS[typ]);
        if ((rc = gguf_writer_set_u32(w, SP_KEYS[typ], sv->id[typ])) < 0)
            return add_fail(rc, SP_KEYS[typ], err);
        info->n_kv++;
    }
    for (int k = 0; k < sv->n_add; k++) {
        int typ = sv->add_order[k];
        const char *key = typ == SP_BOS ? "tokenizer.ggml.add_bos_token" : typ == SP_EOS ? "tokenizer.ggml.add_eos_token" : NULL;
        if (!key)
            continue;
        if (gguf_writer_find_key(w, key) >= 0)
            return sm_err_set(err, SM_EDUP, "duplicated key %s (llama.cpp's converter fails here too)", key);
        if ((rc = gguf_writer_set_bool(w, key, sv->add_val[typ] != 0)) < 0)
            return add_fail(rc, key, err);
        info->n_kv++;
    }
    if (sv->chat_template) {
        if (gguf_writer_find_key(w, "tokenizer.chat_template") >= 0)
            return sm_err_set(err, SM_EDUP, "duplicated key tokenizer.chat_template (llama.cpp's converter fails here too)");
        if ((rc = write_chat_template(w, sv->chat_template, info, err)) < 0)
            return rc;
    }
    return 0;
}

/* ------------------------------------------------------------ SentencePiece */

/* _create_vocab_sentencepiece: the pieces, padded to vocab_size with
 * [PAD{i}] (score -10000, UNUSED), then added_tokens.json and the
 * tokenizer_config added_tokens_decoder applied over them. */
static int spm_build(cv_toklist *t, const char *model_dir, const cv_spm_model *given, const json_t *tc,
                     const cv_vocab_opts *opts, cv_vocab_info *info, sm_err *err)
{
    char path[4096];
    int rc;
    char *buf = NULL;
    uint64_t len = 0;
    json_t *at = NULL;
    cv_spm_model own;
    memset(&own, 0, sizeof own);
    const cv_spm_model *m = given; /* parsed by the caller, else read here */
    if (!m) {
        if ((rc = path_join(path, sizeof path, model_dir, "tokenizer.model", err)) < 0)
            return rc;
        if ((rc = sm_read_file(path, 1ull << 31, &buf, &len, err)) < 0)
            return rc;
        if ((rc = cv_spm_parse(&own, (const uint8_t *)buf, len, "tokenizer.model", err)) < 0)
            goto done;
        m = &own;
    }

    uint32_t vocab_size = opts->config_vocab_size ? opts->config_vocab_size : m->n_pieces;
    if (m->n_pieces > vocab_size) {
        rc = sm_err_set(err, SM_EMISMATCH, "tokenizer.model has %u pieces but config.json vocab_size is %u", m->n_pieces,
                        vocab_size);
        goto done;
    }
    if ((rc = cv_toklist_init(t, vocab_size, 1, err)) < 0)
        goto done;
    for (uint32_t i = 0; i < vocab_size; i++) {
        if (i < m->n_pieces) {
            const cv_spm_piece *p = &m->pieces[i];
            if ((rc = cv_toklist_set(t, i, p->ptr, p->len, err)) < 0)
                goto done;
            t->scores[i] = p->score;
            /* IsUnknown / IsControl / IsUnused / IsByte, else NORMAL: a
             * USER_DEFINED piece comes out NORMAL, as in the Python */
            switch (p->type) {
            case CV_TOK_UNKNOWN:
            case CV_TOK_CONTROL:
            case CV_TOK_UNUSED:
            case CV_TOK_BYTE:
                t->types[i] = p->type;
                break;
            default:
                t->types[i] = CV_TOK_NORMAL;
                break;
            }
        } else {
            char pad[32];
            int l = snprintf(pad, sizeof pad, "[PAD%u]", i);
            if ((rc = cv_toklist_set(t, i, pad, (uint64_t)l, err)) < 0)
                goto done;
            t->scores[i] = -10000.0f;
            t->types[i] = CV_TOK_UNUSED;
            info->n_pad++;
        }
    }

    if ((rc = path_join(path, sizeof path, model_dir, "added_tokens.json", err)) < 0)
        goto done;
    if ((rc = json_load_path(path, "added_tokens.json", 1, &at, err)) < 0)
        goto done;
    if (at) {
        const char *k;
        size_t kl;
        json_t *v;
        json_object_keylen_foreach(at, k, kl, v) {
            if (!json_is_integer(v)) {
                rc = sm_err_set(err, SM_ETYPE, "added_tokens.json: $[\"%.60s\"]: expected an integer token id", k);
                goto done;
            }
            json_int_t id = json_integer_value(v);
            if (id < 0) {
                rc = sm_err_set(err, SM_ERANGE, "added_tokens.json: $[\"%.60s\"]: negative token id %lld", k, (long long)id);
                goto done;
            }
            if ((uint64_t)id >= vocab_size)
                continue; /* "ignore token: id is out of range" */
            if ((rc = cv_toklist_set(t, (uint32_t)id, k, kl, err)) < 0)
                goto done;
            t->scores[id] = -1000.0f;
            t->types[id] = CV_TOK_USER_DEFINED;
            info->n_added++;
        }
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
            if (!*k || *endp || id < 0) {
                rc = sm_err_set(err, SM_EFORMAT, "tokenizer_config.json: $.added_tokens_decoder: key \"%.40s\" is not a token id", k);
                goto done;
            }
            if ((unsigned long long)id >= vocab_size) {
                rc = sm_err_set(err, SM_ERANGE, "tokenizer_config.json: $.added_tokens_decoder[\"%.40s\"]: id not below vocab size %u",
                                k, vocab_size);
                goto done;
            }
            const json_t *content = json_object_get(v, "content");
            if (!json_is_object(v) || !json_is_string(content)) {
                rc = sm_err_set(err, SM_ETYPE, "tokenizer_config.json: $.added_tokens_decoder[\"%.40s\"].content: expected a string", k);
                goto done;
            }
            const char *s = json_string_value(content);
            size_t sl = json_string_length(content);
            const json_t *sp = json_object_get(v, "special");
            /* token_data.get("special") is truthy */
            int special = sp && !json_is_null(sp) && !json_is_false(sp) &&
                          !(json_is_integer(sp) && json_integer_value(sp) == 0) &&
                          !(json_is_string(sp) && json_string_length(sp) == 0);
            if (special || cv_token_looks_special(s, sl)) {
                if ((rc = cv_toklist_set(t, (uint32_t)id, s, sl, err)) < 0)
                    goto done;
                t->types[id] = CV_TOK_CONTROL;
            } else {
                char *c = malloc(sl + 1);
                size_t o = 0;
                if (!c) {
                    rc = sm_err_set(err, SM_ENOMEM, "out of memory");
                    goto done;
                }
                for (size_t j = 0; j < sl;) {
                    if (sl - j >= 3 && (unsigned char)s[j] == 0xE2 && (unsigned char)s[j + 1] == 0x96 &&
                        (unsigned char)s[j + 2] == 0x81) {
                        c[o++] = ' ';
                        j += 3;
                    } else {
                        c[o++] = s[j++];
                    }
                }
                rc = cv_toklist_set(t, (uint32_t)id, c, o, err);
                free(c);
                if (rc < 0)
                    goto done;
                t->types[id] = CV_TOK_USER_DEFINED;
            }
            t->scores[id] = -1000.0f;
            info->n_added++;
        }
    }
done:
    json_decref(at);
    cv_spm_free(&own);
    free(buf);
    if (rc < 0)
        cv_toklist_free(t);
    return rc;
}

/* ------------------------------------------------------------ writing */

static int write_tokens(gguf_writer *w, const cv_toklist *t, cv_vocab_info *info, sm_err *err)
{
    int rc;
    sm_str *v = malloc((t->n ? t->n : 1) * sizeof *v);
    if (!v)
        return sm_err_set(err, SM_ENOMEM, "out of memory for %u tokens", t->n);
    for (uint32_t i = 0; i < t->n; i++) {
        v[i].ptr = t->arena + t->off[i];
        v[i].len = t->len[i];
    }
    rc = gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", v, t->n);
    free(v);
    if (rc < 0)
        return add_fail(rc, "tokenizer.ggml.tokens", err);
    info->n_kv++;
    if (t->scores) {
        if ((rc = gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_VT_FLOAT32, t->scores, t->n)) < 0)
            return add_fail(rc, "tokenizer.ggml.scores", err);
        info->n_kv++;
    }
    if ((rc = gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_VT_INT32, t->types, t->n)) < 0)
        return add_fail(rc, "tokenizer.ggml.token_type", err);
    info->n_kv++;
    info->n_tokens = t->n;
    return 0;
}

static int write_str(gguf_writer *w, const char *key, const char *v, cv_vocab_info *info, sm_err *err)
{
    int rc = gguf_writer_set_str(w, key, v);
    if (rc < 0)
        return add_fail(rc, key, err);
    info->n_kv++;
    return 0;
}

/* LlamaModel.set_vocab after the vocabulary: CodeLlama's eot id (vocab
 * 32016), add_space_prefix from tokenizer_config.json, granite's add_bos
 * (vocab 49152). */
static int llama_extras(gguf_writer *w, const json_t *tj, const json_t *tc, const json_t *config,
                        const cv_vocab_opts *opts, cv_vocab_info *info, sm_err *err)
{
    int rc;
    if (opts->config_vocab_size == 32016) {
        static const int types[] = {SP_PREFIX, SP_SUFFIX, SP_MIDDLE, SP_EOT};
        special_vocab sv;
        memset(&sv, 0, sizeof sv);
        sv.types = types;
        sv.n_types = 4;
        if ((rc = sv_load(&sv, tj, tc, config, err)) < 0)
            return rc;
        json_t *ids[4] = {json_integer(32007), json_integer(32008), json_integer(32009), json_integer(32010)};
        rc = 0;
        for (int k = 0; k < 4 && rc == 0; k++)
            rc = ids[k] ? sv_set(&sv, types[k], ids[k], "CodeLlama", err) : sm_err_set(err, SM_ENOMEM, "out of memory");
        for (int k = 0; k < 4; k++)
            json_decref(ids[k]);
        if (rc < 0 || (rc = sv_write(w, &sv, info, err)) < 0)
            return rc;
    }
    const json_t *aps = json_object_get(tc, "add_prefix_space");
    if (aps) {
        /* the Python packs the value as a bool: null (common in real
         * configs) becomes false; other non-bools are refused here */
        if (!json_is_boolean(aps) && !json_is_null(aps))
            return sm_err_set(err, SM_ETYPE, "tokenizer_config.json: $.add_prefix_space: expected true, false or null");
        if ((rc = gguf_writer_set_bool(w, "tokenizer.ggml.add_space_prefix", json_is_true(aps))) < 0)
            return add_fail(rc, "tokenizer.ggml.add_space_prefix", err);
        info->n_kv++;
    }
    if (opts->config_vocab_size == 49152) {
        if (gguf_writer_find_key(w, "tokenizer.ggml.add_bos_token") >= 0)
            return sm_err_set(err, SM_EDUP, "duplicated key tokenizer.ggml.add_bos_token (granite vocab 49152 with add_bos_token "
                                            "in tokenizer_config.json; llama.cpp's converter fails here too)");
        if ((rc = gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", false)) < 0)
            return add_fail(rc, "tokenizer.ggml.add_bos_token", err);
        info->n_kv++;
    }
    return 0;
}

int cv_vocab_add_kv(gguf_writer *w, const char *model_dir, const cv_vocab_opts *opts, sm_err *err)
{
    return cv_vocab_add_kv_info(w, model_dir, opts, NULL, err);
}

/* --pre NAME must be one llama.cpp knows. */
static int check_pre(const cv_vocab_opts *o, sm_err *err)
{
    if (!o->pre_override || cv_pre_name_known(o->pre_override))
        return 0;
    char names[420];
    size_t n = 0;
    names[0] = 0;
    for (int i = 0; cv_pre_names[i]; i++) {
        int k = snprintf(names + n, sizeof names - n, "%s%s", i ? " " : "", cv_pre_names[i]);
        if (k < 0 || (size_t)k >= sizeof names - n)
            break;
        n += (size_t)k;
    }
    return sm_err_set(err, SM_EINVAL, "--pre %.60s: unknown pre-tokenizer name; known: %s", o->pre_override, names);
}

/* The options with their defaults filled in. */
static cv_vocab_opts opts_or_default(const cv_vocab_opts *opts)
{
    cv_vocab_opts o = {NULL, 0, "llama"};
    if (opts)
        o = *opts;
    if (!o.arch)
        o.arch = "llama";
    return o;
}

static int vocab_build(gguf_writer *w, const char *model_dir, const cv_spm_model *spm_given, int have_model,
                       const json_t *tj, const json_t *tc, const json_t *cfg, const cv_vocab_opts *opts,
                       cv_vocab_info *info_out, sm_err *err);

int cv_vocab_add_kv_info(gguf_writer *w, const char *model_dir, const cv_vocab_opts *opts, cv_vocab_info *info_out,
                         sm_err *err)
{
    int rc = 0;
    char p_model[4096], p_json[4096], p_tc[4096], p_cfg[4096];
    json_t *tj = NULL, *tc = NULL, *cfg = NULL;
    cv_vocab_opts o = opts_or_default(opts);

    if (!w || !model_dir)
        return sm_err_set(err, SM_EINVAL, "cv_vocab_add_kv: NULL writer or model_dir");
    if ((rc = check_pre(&o, err)) < 0)
        return rc;
    if ((rc = path_join(p_model, sizeof p_model, model_dir, "tokenizer.model", err)) < 0 ||
        (rc = path_join(p_json, sizeof p_json, model_dir, "tokenizer.json", err)) < 0 ||
        (rc = path_join(p_tc, sizeof p_tc, model_dir, "tokenizer_config.json", err)) < 0 ||
        (rc = path_join(p_cfg, sizeof p_cfg, model_dir, "config.json", err)) < 0)
        return rc;
    int have_model = is_file(p_model), have_json = is_file(p_json);
    if (!have_model && !have_json)
        return sm_err_set(err, SM_EMISSING,
                          "no tokenizer.model or tokenizer.json in the model directory: cannot build the vocabulary");

    if ((rc = json_load_path(p_tc, "tokenizer_config.json", 1, &tc, err)) < 0)
        goto done;
    if ((rc = json_load_path(p_cfg, "config.json", 1, &cfg, err)) < 0)
        goto done;
    if ((rc = json_load_path(p_json, "tokenizer.json", 1, &tj, err)) < 0)
        goto done;
    rc = vocab_build(w, model_dir, NULL, have_model, tj, tc, cfg, &o, info_out, err);
done:
    json_decref(tj);
    json_decref(tc);
    json_decref(cfg);
    return rc;
}

int cv_vocab_add_kv_mem(gguf_writer *w, const char *model_dir, const cv_spm_model *spm, const char *tc_text,
                        uint64_t tc_len, const char *cfg_text, uint64_t cfg_len, const cv_vocab_opts *opts,
                        cv_vocab_info *info_out, sm_err *err)
{
    int rc = 0;
    char p_json[4096];
    json_t *tj = NULL, *tc = NULL, *cfg = NULL;
    cv_vocab_opts o = opts_or_default(opts);

    if (!w || !model_dir)
        return sm_err_set(err, SM_EINVAL, "cv_vocab_add_kv: NULL writer or model_dir");
    if ((rc = check_pre(&o, err)) < 0)
        return rc;
    if ((rc = path_join(p_json, sizeof p_json, model_dir, "tokenizer.json", err)) < 0)
        return rc;
    int have_json = is_file(p_json);
    if (!spm && !have_json)
        return sm_err_set(err, SM_EMISSING,
                          "no tokenizer.model or tokenizer.json in the model directory: cannot build the vocabulary");

    if ((rc = json_parse_text(tc_text, tc_len, "tokenizer_config.json", &tc, err)) < 0)
        goto done;
    if ((rc = json_parse_text(cfg_text, cfg_len, "config.json", &cfg, err)) < 0)
        goto done;
    if ((rc = json_load_path(p_json, "tokenizer.json", 1, &tj, err)) < 0)
        goto done;
    rc = vocab_build(w, model_dir, spm, spm != NULL, tj, tc, cfg, &o, info_out, err);
done:
    json_decref(tj);
    json_decref(tc);
    json_decref(cfg);
    return rc;
}

/* The KVs from the loaded inputs (cv_vocab_add_kv_info's second half). */
static int vocab_build(gguf_writer *w, const char *model_dir, const cv_spm_model *spm_given, int have_model,
                       const json_t *tj, const json_t *tc, const json_t *cfg, const cv_vocab_opts *opts,
                       cv_vocab_info *info_out, sm_err *err)
{
    int rc = 0;
    cv_toklist spm;
    cv_bpe_result bpe;
    cv_vocab_info info;
    memset(&spm, 0, sizeof spm);
    memset(&bpe, 0, sizeof bpe);
    memset(&info, 0, sizeof info);
    const cv_vocab_opts o = *opts;
    int is_llama = strcmp(o.arch, "llama") == 0;

    special_vocab sv;
    static const int base_types[] = {SP_BOS, SP_EOS, SP_UNK, SP_SEP, SP_PAD, SP_CLS, SP_MASK};
    memset(&sv, 0, sizeof sv);
    sv.types = base_types;
    sv.n_types = 7;

    if (have_model) {
        /* _set_vocab_sentencepiece */
        if ((rc = spm_build(&spm, model_dir, spm_given, tc, &o, &info, err)) < 0)
            goto done;
        snprintf(info.model, sizeof info.model, "llama");
        snprintf(info.pre, sizeof info.pre, "default");
        if ((rc = write_str(w, "tokenizer.ggml.model", "llama", &info, err)) < 0 ||
            (rc = write_str(w, "tokenizer.ggml.pre", "default", &info, err)) < 0 ||
            (rc = write_tokens(w, &spm, &info, err)) < 0)
            goto done;
        sv.n_vocab = spm.n;
        if ((rc = sv_load(&sv, tj, tc, cfg, err)) < 0 || (rc = sv_write(w, &sv, &info, err)) < 0)
            goto done;
    } else {
        const json_t *model = json_object_get(tj, "model");
        if (!json_is_object(model)) {
            rc = sm_err_set(err, SM_EMISSING, "tokenizer.json: $.model: expected an object");
            goto done;
        }
        if (is_llama) {
            /* LlamaHfVocab: a byte-fallback BPE with a Sequence decoder is a
             * SentencePiece model stored as tokenizer.json (needs
             * transformers in the Python); llama-3 style BPE goes to gpt2 */
            const char *mt = json_string_value(json_object_get(model, "type"));
            int is_bpe = mt && strcmp(mt, "BPE") == 0;
            const json_t *ign = json_object_get(model, "ignore_merges");
            const json_t *bf = json_object_get(model, "byte_fallback");
            int is_llama3 = is_bpe && json_is_true(ign) && !(bf ? json_is_true(bf) : 1);
            const char *dt = json_string_value(json_object_get(json_object_get(tj, "decoder"), "type"));
            if (!is_llama3 && is_bpe && json_is_true(bf) && dt && strcmp(dt, "Sequence") == 0) {
                rc = sm_err_set(err, SM_EUNSUPP,
                                "tokenizer.json: SentencePiece-style BPE (byte_fallback) without tokenizer.model is not "
                                "supported; add the model's tokenizer.model");
                goto done;
            }
        }
        /* _set_vocab_gpt2 */
        if ((rc = cv_bpe_load(&bpe, tj, tc, model_dir, &o, err)) < 0)
            goto done;
        snprintf(info.model, sizeof info.model, "gpt2");
        snprintf(info.pre, sizeof info.pre, "%s", bpe.pre);
        info.pre_detected = o.pre_override == NULL;
        info.n_added = bpe.n_added;
        info.n_pad = bpe.n_pad;
        if ((rc = write_str(w, "tokenizer.ggml.model", "gpt2", &info, err)) < 0 ||
            (rc = write_str(w, "tokenizer.ggml.pre", bpe.pre, &info, err)) < 0 ||
            (rc = write_tokens(w, &bpe.toks, &info, err)) < 0)
            goto done;
        if (bpe.n_merges) {
            sm_str *v = malloc(bpe.n_merges * sizeof *v);
            if (!v) {
                rc = sm_err_set(err, SM_ENOMEM, "out of memory for merges");
                goto done;
            }
            for (uint64_t i = 0; i < bpe.n_merges; i++) {
                v[i].ptr = bpe.merges[i];
                v[i].len = strlen(bpe.merges[i]);
            }
            rc = gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", v, bpe.n_merges);
            free(v);
            if (rc < 0) {
                rc = add_fail(rc, "tokenizer.ggml.merges", err);
                goto done;
            }
            info.n_kv++;
            info.n_merges = bpe.n_merges;
        }
        if ((rc = sv_load(&sv, tj, tc, cfg, err)) < 0 || (rc = sv_write(w, &sv, &info, err)) < 0)
            goto done;
    }
    if (is_llama && (rc = llama_extras(w, tj, tc, cfg, &o, &info, err)) < 0)
        goto done;
    if (info_out)
        *info_out = info;
done:
    cv_toklist_free(&spm);
    cv_bpe_free(&bpe);
    return rc;
}
