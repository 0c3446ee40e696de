#include "naming.h"

#include "err.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <ctype.h>
#include <math.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int sm_fullmatch(const char *pattern, const char *s, int icase)
{
    int ec;
    PCRE2_SIZE eo;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                                   PCRE2_ANCHORED | PCRE2_ENDANCHORED | (icase ? PCRE2_CASELESS : 0), &ec, &eo,
                                   NULL);
    if (!re)
        return 0;
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    int rc = md ? pcre2_match(re, (PCRE2_SPTR)s, strlen(s), 0, 0, md, NULL) : -1;
    pcre2_match_data_free(md);
    pcre2_code_free(re);
    return rc >= 0;
}

static int all_alpha(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!isalpha((unsigned char)*s))
            return 0;
    return 1;
}

static int has_digit(const char *s)
{
    for (; *s; s++)
        if (isdigit((unsigned char)*s))
            return 1;
    return 0;
}

/* Python's str.islower(): has a cased char and no upper-case one (ASCII). */
static int py_islower(const char *s)
{
    int cased = 0;
    for (; *s; s++) {
        if (isupper((unsigned char)*s))
            return 0;
        if (islower((unsigned char)*s))
            cased = 1;
    }
    return cased;
}

char *sm_id_to_title(const char *id)
{
    size_t n = strlen(id);
    char *buf = malloc(n + 1), *out = malloc(n + 1);
    if (!buf || !out) {
        free(buf);
        free(out);
        return NULL;
    }
    /* strip, '-' -> ' ', split on whitespace, re-join with single spaces */
    for (size_t i = 0; i <= n; i++)
        buf[i] = id[i] == '-' ? ' ' : id[i];
    size_t o = 0;
    char *save = NULL;
    for (char *w = strtok_r(buf, " \t\r\n\v\f", &save); w; w = strtok_r(NULL, " \t\r\n\v\f", &save)) {
        if (o)
            out[o++] = ' ';
        int keep = !py_islower(w) || sm_fullmatch("(v\\d+(?:\\.\\d+)*|\\d.*)", w, 0);
        int prev_cased = 0;
        for (char *c = w; *c; c++) {
            unsigned char ch = (unsigned char)*c;
            if (keep) {
                out[o++] = (char)ch;
                continue;
            }
            /* str.title(): upper after a non-cased char, lower after a cased one */
            if (isalpha(ch)) {
                out[o++] = (char)(prev_cased ? tolower(ch) : toupper(ch));
                prev_cased = 1;
            } else {
                out[o++] = (char)ch;
                prev_cased = 0;
            }
        }
    }
    out[o] = 0;
    free(buf);
    return out;
}

enum { T_BASENAME = 1, T_SIZE = 2, T_FINETUNE = 4, T_VERSION = 8, T_TYPE = 16 };

/* Joins the parts tagged `want` with '-'. NULL when none is tagged; sets
 * *oom (and returns NULL) when memory runs out, so that a failure is never
 * mistaken for "absent" (which would silently change the GGUF header). */
static char *join(char **parts, const int *types, int n, int want, int exclude, int dedupe, int *oom)
{
    size_t total = 1;
    for (int i = 0; i < n; i++)
        total += strlen(parts[i]) + 1;
    char *s = malloc(total);
    if (!s) {
        *oom = 1;
        return NULL;
    }
    s[0] = 0;
    int any = 0;
    for (int i = 0; i < n; i++) {
        if (!(types[i] & want) || (types[i] & exclude))
            continue;
        if (dedupe) {
            int seen = 0;
            for (int j = 0; j < i; j++)
                if ((types[j] & want) && !(types[j] & exclude) && strcmp(parts[j], parts[i]) == 0)
                    seen = 1;
            if (seen)
                continue;
        }
        if (any)
            strcat(s, "-");
        strcat(s, parts[i]);
        any = 1;
    }
    if (!any) {
        free(s);
        return NULL;
    }
    return s;
}

int sm_naming_from_id(sm_naming *nm, const char *model_id, int64_t total_params)
{
    if (!model_id)
        return 0;
    char *org = NULL, *full = NULL, *basename = NULL, *finetune = NULL, *version = NULL, *size = NULL;
    char **parts = NULL;
    int *types = NULL, n = 0, rc = 0;
    if (strchr(model_id, ' ')) {
        /* a sentence: only the name */
        full = strdup(model_id);
        goto apply;
    }
    const char *slash = strchr(model_id, '/');
    if (slash) {
        org = strndup(model_id, (size_t)(slash - model_id));
        full = strdup(slash + 1);
        if (org && org[0] == '.') {
            free(org);
            org = NULL;
        }
    } else {
        full = strdup(model_id);
    }
    if (!full) {
        rc = SM_ENOMEM;
        goto done;
    }
    size_t len = strlen(full);
    parts = calloc(len + 1, sizeof *parts);
    types = calloc(len + 1, sizeof *types);
    if (!parts || !types) {
        rc = SM_ENOMEM;
        goto done;
    }
    for (const char *p = full; *p;) {
        const char *e = strchr(p, '-');
        size_t k = e ? (size_t)(e - p) : strlen(p);
        if (k && !(parts[n++] = strndup(p, k))) { /* empty parts are removed */
            rc = SM_ENOMEM;
            goto done;
        }
        p += k + (e ? 1 : 0);
    }
    for (int i = 0; i < n; i++) {
        char *part = parts[i];
        if (sm_fullmatch("(v|iter)?\\d+([.]\\d+)*", part, 1)) {
            types[i] |= T_VERSION;
        } else if (sm_fullmatch("i?q\\d(_\\w)*|b?fp?(16|32)", part, 1)) {
            types[i] |= T_TYPE;
            for (char *c = part; *c; c++)
                *c = (char)toupper((unsigned char)*c);
        } else if (i > 0 && sm_fullmatch("(([A]|\\d+[x])?\\d+([._]\\d+)?[KMBT][\\d]?|small|mini|medium|large|x?xl)", part, 1)) {
            for (char *c = part; *c; c++)
                if (*c == '_')
                    *c = '.';
            size_t pl = strlen(part);
            if (pl >= 2 && isdigit((unsigned char)part[pl - 1])) {
                /* bloom-7b1 -> 7.1b */
                char last = part[pl - 1], prev = part[pl - 2];
                char *np = malloc(pl + 2);
                if (!np) {
                    rc = SM_ENOMEM;
                    goto done;
                }
                memcpy(np, part, pl - 2);
                np[pl - 2] = '.';
                np[pl - 1] = last;
                np[pl] = prev;
                np[pl + 1] = 0;
                free(part);
                part = parts[i] = np;
                pl = strlen(part);
            }
            if (pl > 1 && isdigit((unsigned char)part[pl - 2]) && strchr("kmbt", part[pl - 1]))
                part[pl - 1] = (char)toupper((unsigned char)part[pl - 1]);
            if (total_params != 0) {
                /* float(part[:-1]) * 1000 ** " KMBT".find(part[-1]) */
                char *num = strndup(part, pl - 1), *end = NULL;
                if (!num) {
                    rc = SM_ENOMEM;
                    goto done;
                }
                double v = strtod(num, &end);
                int ok = end && *end == 0 && *num && !isspace((unsigned char)num[0]);
                free(num);
                if (ok) {
                    const char *f = strchr(" KMBT", part[pl - 1]);
                    int idx = (f && part[pl - 1]) ? (int)(f - " KMBT") : -1;
                    double label = v * pow(1000.0, idx);
                    double tp = (double)total_params;
                    int64_t at = total_params < 0 ? -total_params : total_params;
                    if ((total_params < 0 && label < (double)(at / 8)) ||
                        (total_params > 0 && fabs(label - tp) > (double)(7 * total_params / 8))) {
                        types[i] |= T_FINETUNE;
                        part[pl - 1] = (char)tolower((unsigned char)part[pl - 1]);
                    }
                }
            }
            if (types[i] == 0)
                types[i] |= T_SIZE;
        } else if (i > 0 && sm_fullmatch("chat|instruct|vision|lora", part, 1)) {
            if (total_params < 0 && (strcmp(part, "lora") == 0 || strcmp(part, "LoRA") == 0 ||
                                     sm_fullmatch("lora", part, 1)))
                types[i] |= T_TYPE;
            else
                types[i] |= T_FINETUNE;
        }
    }
    /* word-based size labels are dropped when a number-based one exists */
    int numeric_size = 0;
    for (int i = 0; i < n; i++)
        if ((types[i] & T_SIZE) && has_digit(parts[i]))
            numeric_size = 1;
    if (numeric_size)
        for (int i = 0; i < n; i++)
            if ((types[i] & T_SIZE) && all_alpha(parts[i]))
                types[i] &= ~T_SIZE;
    int at_start = 1;
    for (int i = 0; i < n; i++) {
        if (at_start && ((types[i] == 0 && isalpha((unsigned char)parts[i][0])) || (types[i] & T_VERSION))) {
            types[i] |= T_BASENAME;
        } else {
            at_start = 0;
            if (types[i] == 0)
                types[i] |= T_FINETUNE;
        }
    }
    for (int i = n - 1; i >= 0; i--) {
        if ((types[i] & T_BASENAME) && types[i] != T_BASENAME)
            types[i] &= ~T_BASENAME;
        else
            break;
    }
    int oom = 0;
    basename = join(parts, types, n, T_BASENAME, 0, 0, &oom);
    size = join(parts, types, n, T_SIZE, 0, 1, &oom);
    finetune = join(parts, types, n, T_FINETUNE, 0, 0, &oom);
    version = join(parts, types, n, T_VERSION, T_BASENAME, 0, &oom);
    if (oom) {
        rc = SM_ENOMEM;
        goto done;
    }
    if (!size && !finetune && !version) {
        free(basename);
        basename = NULL;
    }
apply:
    /* sm_id_to_title returns NULL only when out of memory */
    if (!nm->name && full && !(nm->name = sm_id_to_title(full))) {
        rc = SM_ENOMEM;
        goto done;
    }
    if (!nm->organization && org && !(nm->organization = sm_id_to_title(org))) {
        rc = SM_ENOMEM;
        goto done;
    }
#define TAKE(field, v)        \
    if (!nm->field && v) {    \
        nm->field = v;        \
        v = NULL;             \
    }
    TAKE(basename, basename)
    TAKE(finetune, finetune)
    TAKE(version, version)
    TAKE(size_label, size)
#undef TAKE
done:
    for (int i = 0; i < n; i++)
        free(parts[i]);
    free(parts);
    free(types);
    free(org);
    free(full);
    free(basename);
    free(finetune);
    free(version);
    free(size);
    return rc;
}

void sm_naming_free(sm_naming *n)
{
    free(n->name);
    free(n->basename);
    free(n->finetune);
    free(n->version);
    free(n->size_label);
    free(n->organization);
    memset(n, 0, sizeof *n);
}

/* Python's round(): ties to even. */
static double py_round(double x)
{
    double r = nearbyint(x); /* default rounding mode is to nearest, ties to even */
    return r;
}

void sm_size_label(uint64_t n, char *out, uint32_t cap)
{
    double v = (double)n, scaled;
    char suffix;
    if (v > 1e12) {
        scaled = v * 1e-12;
        suffix = 'T';
    } else if (v > 1e9) {
        scaled = v * 1e-9;
        suffix = 'B';
    } else if (v > 1e6) {
        scaled = v * 1e-6;
        suffix = 'M';
    } else {
        scaled = v * 1e-3;
        suffix = 'K';
    }
    char digits[64];
    snprintf(digits, sizeof digits, "%.0f", py_round(scaled));
    const char *d = digits;
    while (*d == '0')
        d++;
    int fix = 2 - (int)strlen(d);
    if (fix < 0)
        fix = 0;
    snprintf(out, cap, "%.*f%c", fix, scaled, suffix);
}

static void append_part(char *out, uint32_t cap, const char *s)
{
    size_t o = strlen(out);
    /* strip surrounding whitespace, ' ' and '/' become '-' */
    while (*s == ' ')
        s++;
    size_t n = strlen(s);
    while (n && s[n - 1] == ' ')
        n--;
    for (size_t i = 0; i < n && o + 1 < cap; i++)
        out[o++] = (s[i] == ' ' || s[i] == '/') ? '-' : s[i];
    out[o] = 0;
}

void sm_default_filename(const sm_naming *n, const char *output_type, const char *kind, char *out, uint32_t cap)
{
    out[0] = 0;
    append_part(out, cap, n->basename ? n->basename : n->name ? n->name : "ggml-model");
    const char *extra[4] = {n->size_label, n->finetune, n->version, NULL};
    for (int i = 0; i < 3; i++)
        if (extra[i]) {
            append_part(out, cap, "-");
            append_part(out, cap, extra[i]);
        }
    if (output_type) {
        char up[32];
        snprintf(up, sizeof up, "-%s", output_type);
        for (char *c = up; *c; c++)
            *c = (char)toupper((unsigned char)*c);
        append_part(out, cap, up);
    }
    if (kind) {
        append_part(out, cap, "-");
        append_part(out, cap, kind);
    }
    append_part(out, cap, ".gguf");
}
