#include "gate.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int gate_parse_fraction(const char *s, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || !isfinite(v) || v < 0)
        return -1;
    while (*end == ' ')
        end++;
    if (*end == '%') {
        v /= 100.0;
        end++;
    }
    if (*end)
        return -1;
    *out = v;
    return 0;
}

static json_t *load(const char *path, FILE *out)
{
    json_error_t je;
    json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!j) {
        fprintf(out, "gate: %s: cannot read JSON (line %d: %s)\n", path, je.line, je.text);
        return NULL;
    }
    if (!json_is_object(j)) {
        fprintf(out, "gate: %s: not a JSON object\n", path);
        json_decref(j);
        return NULL;
    }
    return j;
}

/* Fields that must agree for two runs to be comparable, with what they mean. */
static const struct {
    const char *key, *what;
} same_fields[] = {
    {"text_sha256", "evaluation text bytes"},
    {"tokenizer_model", "tokenizer model"},
    {"tokenizer_pre", "tokenizer pre-tokenizer"},
    {"n_vocab", "vocabulary size"},
    {"tokens_sha256", "tokenization of the text"},
    {"ctx", "context size"},
    {"chunks", "chunk count"},
    {"arch", "model architecture"},
    {"base_logits_sha256", "KLD base logits"},
};

static int json_same(json_t *a, json_t *b)
{
    return json_equal(a, b);
}

static void show(json_t *v, char *buf, size_t cap)
{
    if (!v) {
        snprintf(buf, cap, "(absent)");
        return;
    }
    char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    snprintf(buf, cap, "%s", s ? s : "?");
    if (strlen(buf) > 24 && json_is_string(v))
        strcpy(buf + 13, "...\"");
    free(s);
}

int gate_check(const gate_opts *o, FILE *out)
{
    json_t *b = load(o->baseline, out), *c = b ? load(o->current, out) : NULL;
    int rc = GATE_PASS;
    if (!b || !c) {
        rc = GATE_USAGE;
        goto done;
    }
    int incomparable = 0;
    for (size_t i = 0; i < sizeof same_fields / sizeof same_fields[0]; i++) {
        json_t *x = json_object_get(b, same_fields[i].key), *y = json_object_get(c, same_fields[i].key);
        if (!x && !y)
            continue;
        if (!x || !y || !json_same(x, y)) {
            char sx[64], sy[64];
            show(x, sx, sizeof sx);
            show(y, sy, sizeof sy);
            fprintf(out, "not comparable: %s differs (%s: baseline %s, current %s)\n", same_fields[i].what,
                    same_fields[i].key, sx, sy);
            incomparable = 1;
        }
    }
    if (incomparable) {
        rc = GATE_INCOMPARABLE;
        goto done;
    }
    /* PPL: perplexity runs carry "ppl"; KLD runs "ppl_q" */
    json_t *pb = json_object_get(b, "ppl"), *pc = json_object_get(c, "ppl");
    if (!pb)
        pb = json_object_get(b, "ppl_q");
    if (!pc)
        pc = json_object_get(c, "ppl_q");
    int violations = 0;
    if (o->max_ppl_increase >= 0) {
        if (!json_is_number(pb) || !json_is_number(pc)) {
            fprintf(out, "not comparable: a run has no \"ppl\" value\n");
            rc = GATE_INCOMPARABLE;
            goto done;
        }
        double vb = json_number_value(pb), vc = json_number_value(pc);
        double rel = (vc - vb) / vb;
        if (!(rel <= o->max_ppl_increase)) {
            fprintf(out, "FAIL: PPL rose %.3f%% (%.4f -> %.4f), more than the allowed %.3f%%\n", 100 * rel, vb, vc,
                    100 * o->max_ppl_increase);
            violations++;
        } else {
            fprintf(out, "ok: PPL %.4f -> %.4f (%+.3f%%, limit +%.3f%%)\n", vb, vc, 100 * rel, 100 * o->max_ppl_increase);
        }
    }
    if (o->max_kld >= 0) {
        json_t *k = json_object_get(c, "kld_mean");
        if (!json_is_number(k)) {
            fprintf(out, "not comparable: --max-kld needs a current run with \"kld_mean\" (smelt-infer kld --json)\n");
            rc = GATE_INCOMPARABLE;
            goto done;
        }
        double kv = json_number_value(k);
        if (!(kv <= o->max_kld)) {
            fprintf(out, "FAIL: mean KLD %.6f exceeds the allowed %.6f\n", kv, o->max_kld);
            violations++;
        } else {
            fprintf(out, "ok: mean KLD %.6f (limit %.6f)\n", kv, o->max_kld);
        }
    }
    rc = violations ? GATE_FAIL : GATE_PASS;
done:
    json_decref(b);
    json_decref(c);
    return rc;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: smelt-infer gate --baseline BASE.json --current NOW.json [--max-ppl-increase 1%%] [--max-kld 0.05]\n"
               "exit 0: within bounds; 1: regressed (one line per violation); 2: runs not comparable\n"
               "(or unreadable). Default bound: --max-ppl-increase 1%%.\n");
}

int gate_main(int argc, char **argv)
{
    gate_opts o = {NULL, NULL, 0.01, -1}; /* default bound: PPL may rise 1 % */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--baseline") && i + 1 < argc) {
            o.baseline = argv[++i];
        } else if (!strcmp(a, "--current") && i + 1 < argc) {
            o.current = argv[++i];
        } else if (!strcmp(a, "--max-ppl-increase") && i + 1 < argc) {
            if (gate_parse_fraction(argv[++i], &o.max_ppl_increase)) {
                fprintf(stderr, "smelt-infer gate: --max-ppl-increase: '%s' is not a percentage\n", argv[i]);
                return GATE_USAGE;
            }
        } else if (!strcmp(a, "--max-kld") && i + 1 < argc) {
            char *end;
            o.max_kld = strtod(argv[++i], &end);
            if (*end || o.max_kld < 0) {
                fprintf(stderr, "smelt-infer gate: --max-kld: '%s' is not a non-negative number\n", argv[i]);
                return GATE_USAGE;
            }
        } else {
            fprintf(stderr, "smelt-infer gate: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return GATE_USAGE;
        }
    }
    if (!o.baseline || !o.current) {
        usage(stderr);
        return GATE_USAGE;
    }
    return gate_check(&o, stdout);
}
