/* adapter.c — adapter_config.json parsing, PEFT pattern resolution, adapter
 * tensor pairing and validation. See adapter.h for what is honoured. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "adapter.h"

#include "fp16.h"
#include "types.h"

#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ regexes */

/* Compiles pattern with Python re.match/fullmatch anchoring. */
static pcre2_code *re_compile(const char *pattern, int full, char *why, size_t why_len)
{
    int errcode = 0;
    PCRE2_SIZE erroff = 0;
    uint32_t opts = PCRE2_ANCHORED | (full ? PCRE2_ENDANCHORED : 0);
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, opts, &errcode, &erroff, NULL);
    if (!re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(errcode, msg, sizeof msg);
        snprintf(why, why_len, "%s at offset %zu", (const char *)msg, (size_t)erroff);
    }
    return re;
}

/* 1 on a match of the (anchored) regex against s, 0 otherwise. */
static int re_matches(void *re, const char *s)
{
    pcre2_match_data *md = pcre2_match_data_create_from_pattern((pcre2_code *)re, NULL);
    if (!md)
        return 0;
    int rc = pcre2_match((pcre2_code *)re, (PCRE2_SPTR)s, strlen(s), 0, 0, md, NULL);
    pcre2_match_data_free(md);
    return rc >= 0;
}

/* Layer index as PEFT extracts it: group 1 of the anchored regex; -1 if none. */
static int64_t re_layer_index(const char *pattern, const char *s)
{
    char why[200];
    pcre2_code *re = re_compile(pattern, 0, why, sizeof why);
    if (!re)
        return -1;
    int64_t idx = -1;
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    if (md && pcre2_match(re, (PCRE2_SPTR)s, strlen(s), 0, 0, md, NULL) >= 2) {
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        char num[24];
        size_t n = ov[3] - ov[2];
        if (n > 0 && n < sizeof num) {
            memcpy(num, s + ov[2], n);
            num[n] = '\0';
            idx = strtoll(num, NULL, 10);
        }
    }
    pcre2_match_data_free(md);
    pcre2_code_free(re);
    return idx;
}

/* ------------------------------------------------------------ config */

void lora_config_free(lora_config *cfg)
{
    if (!cfg)
        return;
    free(cfg->peft_type);
    for (uint32_t i = 0; i < cfg->n_targets; i++)
        free(cfg->targets[i]);
    free(cfg->targets);
    free(cfg->target_regex);
    pcre2_code_free((pcre2_code *)cfg->target_re);
    free(cfg->layers);
    for (uint32_t i = 0; i < cfg->n_layers_pattern; i++)
        free(cfg->layers_pattern[i]);
    free(cfg->layers_pattern);
    for (uint32_t i = 0; i < cfg->n_rank_pattern; i++) {
        free(cfg->rank_pattern[i].key);
        pcre2_code_free((pcre2_code *)cfg->rank_pattern[i].re);
    }
    free(cfg->rank_pattern);
    for (uint32_t i = 0; i < cfg->n_alpha_pattern; i++) {
        free(cfg->alpha_pattern[i].key);
        pcre2_code_free((pcre2_code *)cfg->alpha_pattern[i].re);
    }
    free(cfg->alpha_pattern);
    for (uint32_t i = 0; i < cfg->n_modules_to_save; i++)
        free(cfg->modules_to_save[i]);
    free(cfg->modules_to_save);
    free(cfg->base_model);
    free(cfg->task_type);
    memset(cfg, 0, sizeof *cfg);
}

/* Keys whose value never changes the merged weights (training, loading or
 * bookkeeping options). */
static const char *const cfg_harmless_keys[] = {
    "auto_mapping", "base_model_name_or_path", "inference_mode", "lora_dropout",
    "megatron_config", "megatron_core", "revision", "task_type", "loftq_config",
    "eva_config", "corda_config", "runtime_config", "layers_pattern",
    "exclude_modules", "qalora_group_size",
};

/* Keys we interpret below. */
static const char *const cfg_known_keys[] = {
    "peft_type", "r", "lora_alpha", "use_rslora", "fan_in_fan_out", "target_modules",
    "layers_to_transform", "rank_pattern", "alpha_pattern", "modules_to_save", "bias",
    "use_dora", "lora_bias", "layer_replication", "init_lora_weights",
    "trainable_token_indices",
};

static int key_in(const char *key, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i], key) == 0)
            return 1;
    return 0;
}

/* null, false, 0, "", [] and {} all mean "feature off" in PEFT configs. */
static int json_is_off(const json_t *v)
{
    if (!v || json_is_null(v) || json_is_false(v))
        return 1;
    if (json_is_string(v))
        return json_string_length(v) == 0;
    if (json_is_array(v))
        return json_array_size(v) == 0;
    if (json_is_object(v))
        return json_object_size(v) == 0;
    if (json_is_integer(v))
        return json_integer_value(v) == 0;
    return 0;
}

/* Reads a list of strings (or a single string when allow_str). */
static int cfg_str_list(const json_t *v, const char *name, const char *key, int allow_str,
                        char ***out, uint32_t *n_out, sm_err *err)
{
    *out = NULL;
    *n_out = 0;
    if (!v || json_is_null(v))
        return SM_OK;
    size_t n = json_is_array(v) ? json_array_size(v) : 1;
    if (!json_is_array(v) && !(allow_str && json_is_string(v)))
        return sm_err_set(err, SM_EFORMAT, "%s: \"%s\" must be a list of strings", name, key);
    char **list = calloc(n ? n : 1, sizeof *list);
    if (!list)
        return sm_err_set(err, SM_ENOMEM, "%s: out of memory", name);
    for (size_t i = 0; i < n; i++) {
        const json_t *s = json_is_array(v) ? json_array_get(v, i) : v;
        if (!json_is_string(s) || !(list[i] = strdup(json_string_value(s)))) {
            for (size_t j = 0; j < i; j++)
                free(list[j]);
            free(list);
            return sm_err_set(err, SM_EFORMAT, "%s: \"%s\"[%zu] must be a string", name, key, i);
        }
    }
    *out = list;
    *n_out = (uint32_t)n;
    return SM_OK;
}

static int cfg_patterns(const json_t *v, const char *name, const char *key, int is_rank,
                        lora_pattern **out, uint32_t *n_out, sm_err *err)
{
    *out = NULL;
    *n_out = 0;
    if (!v || json_is_null(v))
        return SM_OK;
    if (!json_is_object(v))
        return sm_err_set(err, SM_EFORMAT, "%s: \"%s\" must be an object of pattern -> number", name, key);
    size_t n = json_object_size(v);
    if (n == 0)
        return SM_OK;
    lora_pattern *p = calloc(n, sizeof *p);
    if (!p)
        return sm_err_set(err, SM_ENOMEM, "%s: out of memory", name);
    *out = p;
    const char *k;
    json_t *val;
    uint32_t i = 0;
    json_object_foreach((json_t *)v, k, val) {
        if (!json_is_number(val))
            return sm_err_set(err, SM_EFORMAT, "%s: \"%s\".\"%s\" must be a number", name, key, k);
        double x = json_number_value(val);
        if (is_rank && (!json_is_integer(val) || x < 1 || x > 65536))
            return sm_err_set(err, SM_ERANGE, "%s: \"%s\".\"%s\" = %g: a rank must be an integer in 1..65536", name, key, k, x);
        if (!is_rank && !isfinite(x))
            return sm_err_set(err, SM_ERANGE, "%s: \"%s\".\"%s\": alpha must be finite", name, key, k);
        p[i].key = strdup(k);
        p[i].value = x;
        *n_out = ++i;
        if (!p[i - 1].key)
            return sm_err_set(err, SM_ENOMEM, "%s: out of memory", name);
        /* PEFT: re.match(rf"(.*\.)?({key})$", module_name) */
        size_t len = strlen(k) + 16;
        char *pat = malloc(len);
        if (!pat)
            return sm_err_set(err, SM_ENOMEM, "%s: out of memory", name);
        snprintf(pat, len, "(.*\\.)?(%s)$", k);
        char why[200];
        p[i - 1].re = re_compile(pat, 0, why, sizeof why);
        free(pat);
        if (!p[i - 1].re)
            return sm_err_set(err, SM_EFORMAT, "%s: \"%s\" key \"%s\" is not a valid regex: %s", name, key, k, why);
    }
    return SM_OK;
}

int lora_config_parse(lora_config *cfg, const char *json, uint64_t json_len, const char *name, sm_err *err)
{
    int rc = SM_OK;
    json_error_t jerr;
    memset(cfg, 0, sizeof *cfg);
    json_t *root = json_loadb(json, (size_t)json_len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return sm_err_set(err, SM_EFORMAT, "%s: invalid JSON at line %d column %d (byte %d): %s",
                          name, jerr.line, jerr.column, jerr.position, jerr.text);
    if (!json_is_object(root)) {
        rc = sm_err_set(err, SM_EFORMAT, "%s: top level must be a JSON object", name);
        goto cleanup;
    }

    /* Every key must be understood, harmless, or switched off. */
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (key_in(key, cfg_known_keys, sizeof cfg_known_keys / sizeof cfg_known_keys[0]) ||
            key_in(key, cfg_harmless_keys, sizeof cfg_harmless_keys / sizeof cfg_harmless_keys[0]))
            continue;
        if (!json_is_off(val)) {
            rc = sm_err_set(err, SM_EUNSUPP, "%s: unknown key \"%s\" is set; it may change the merge, refusing", name, key);
            goto cleanup;
        }
    }

    const json_t *v = json_object_get(root, "peft_type");
    if (!json_is_string(v)) {
        rc = sm_err_set(err, SM_EMISSING, "%s: \"peft_type\" missing (expected \"LORA\")", name);
        goto cleanup;
    }
    if (strcmp(json_string_value(v), "LORA") != 0) {
        rc = sm_err_set(err, SM_EUNSUPP, "%s: peft_type \"%s\" is not supported (only LORA)", name, json_string_value(v));
        goto cleanup;
    }
    cfg->peft_type = strdup("LORA");

    v = json_object_get(root, "r");
    if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 65536) {
        rc = sm_err_set(err, v ? SM_ERANGE : SM_EMISSING, "%s: \"r\" must be an integer in 1..65536", name);
        goto cleanup;
    }
    cfg->r = (uint32_t)json_integer_value(v);

    v = json_object_get(root, "lora_alpha");
    if (!json_is_number(v) || !isfinite(json_number_value(v))) {
        rc = sm_err_set(err, v ? SM_EFORMAT : SM_EMISSING, "%s: \"lora_alpha\" must be a number", name);
        goto cleanup;
    }
    cfg->alpha = json_number_value(v);

    v = json_object_get(root, "use_rslora");
    if (v && !json_is_boolean(v) && !json_is_null(v)) {
        rc = sm_err_set(err, SM_EFORMAT, "%s: \"use_rslora\" must be true or false", name);
        goto cleanup;
    }
    cfg->use_rslora = json_is_true(v);

    v = json_object_get(root, "fan_in_fan_out");
    if (v && !json_is_boolean(v) && !json_is_null(v)) {
        rc = sm_err_set(err, SM_EFORMAT, "%s: \"fan_in_fan_out\" must be true or false", name);
        goto cleanup;
    }
    cfg->fan_in_fan_out = json_is_true(v);

    /* Options that change the merged weights in ways we do not implement. */
    v = json_object_get(root, "use_dora");
    if (!json_is_off(v)) {
        rc = sm_err_set(err, SM_EUNSUPP, "%s: use_dora is set: DoRA adapters are not supported (the magnitude vector changes the merge)", name);
        goto cleanup;
    }
    v = json_object_get(root, "bias");
    if (v && !json_is_null(v) && !(json_is_string(v) && strcmp(json_string_value(v), "none") == 0)) {
        rc = sm_err_set(err, SM_EUNSUPP, "%s: bias = %s: trained biases are not supported (only \"none\")",
                        name, json_is_string(v) ? json_string_value(v) : "(not a string)");
        goto cleanup;
    }
    v = json_object_get(root, "lora_bias");
    if (!json_is_off(v)) {
        rc = sm_err_set(err, SM_EUNSUPP, "%s: lora_bias is set: a bias on lora_B is not supported", name);
        goto cleanup;
    }
    v = json_object_get(root, "layer_replication");
    if (!json_is_off(v)) {
        rc = sm_err_set(err, SM_EUNSUPP, "%s: layer_replication is set: it changes the model's layers, not supported", name);
        goto cleanup;
    }
    v = json_object_get(root, "trainable_token_indices");
    if (!json_is_off(v)) {
        rc = sm_err_set(err, SM_EUNSUPP, "%s: trainable_token_indices is set: not supported", name);
        goto cleanup;
    }
    v = json_object_get(root, "init_lora_weights");
    if (v && !json_is_boolean(v) && !json_is_null(v)) {
        const char *s = json_is_string(v) ? json_string_value(v) : "(not a string)";
        if (strcmp(s, "gaussian") != 0 && strcmp(s, "eva") != 0) {
            rc = sm_err_set(err, SM_EUNSUPP, "%s: init_lora_weights = \"%s\": this init rewrites the base weights, "
                            "so the adapter does not apply to the original base; not supported", name, s);
            goto cleanup;
        }
    }

    v = json_object_get(root, "target_modules");
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        if (strcmp(s, "all-linear") == 0) {
            cfg->target_all_linear = 1;
        } else {
            char why[200];
            cfg->target_regex = strdup(s);
            cfg->target_re = re_compile(s, 1, why, sizeof why);
            if (!cfg->target_re) {
                rc = sm_err_set(err, SM_EFORMAT, "%s: target_modules regex \"%s\" is invalid: %s", name, s, why);
                goto cleanup;
            }
        }
    } else if (json_is_array(v)) {
        rc = cfg_str_list(v, name, "target_modules", 0, &cfg->targets, &cfg->n_targets, err);
        if (rc < 0)
            goto cleanup;
    } else {
        rc = sm_err_set(err, SM_EMISSING, "%s: \"target_modules\" must be a list of names or a regex string", name);
        goto cleanup;
    }

    v = json_object_get(root, "layers_to_transform");
    if (json_is_integer(v)) {
        cfg->layers = malloc(sizeof *cfg->layers);
        if (!cfg->layers) {
            rc = sm_err_set(err, SM_ENOMEM, "%s: out of memory", name);
            goto cleanup;
        }
        cfg->layers[0] = json_integer_value(v);
        cfg->n_layers = 1;
    } else if (json_is_array(v) && json_array_size(v) > 0) {
        size_t n = json_array_size(v);
        cfg->layers = malloc(n * sizeof *cfg->layers);
        if (!cfg->layers) {
            rc = sm_err_set(err, SM_ENOMEM, "%s: out of memory", name);
            goto cleanup;
        }
        for (size_t i = 0; i < n; i++) {
            const json_t *e = json_array_get(v, i);
            if (!json_is_integer(e)) {
                rc = sm_err_set(err, SM_EFORMAT, "%s: layers_to_transform[%zu] must be an integer", name, i);
                goto cleanup;
            }
            cfg->layers[i] = json_integer_value(e);
        }
        cfg->n_layers = (uint32_t)n;
    } else if (v && !json_is_null(v) && !json_is_array(v)) {
        rc = sm_err_set(err, SM_EFORMAT, "%s: layers_to_transform must be an integer or a list", name);
        goto cleanup;
    }
    rc = cfg_str_list(json_object_get(root, "layers_pattern"), name, "layers_pattern", 1,
                      &cfg->layers_pattern, &cfg->n_layers_pattern, err);
    if (rc < 0)
        goto cleanup;
    rc = cfg_patterns(json_object_get(root, "rank_pattern"), name, "rank_pattern", 1,
                      &cfg->rank_pattern, &cfg->n_rank_pattern, err);
    if (rc < 0)
        goto cleanup;
    rc = cfg_patterns(json_object_get(root, "alpha_pattern"), name, "alpha_pattern", 0,
                      &cfg->alpha_pattern, &cfg->n_alpha_pattern, err);
    if (rc < 0)
        goto cleanup;
    rc = cfg_str_list(json_object_get(root, "modules_to_save"), name, "modules_to_save", 0,
                      &cfg->modules_to_save, &cfg->n_modules_to_save, err);
    if (rc < 0)
        goto cleanup;

    v = json_object_get(root, "exclude_modules");
    if (!json_is_off(v)) {
        rc = sm_err_set(err, SM_EUNSUPP, "%s: exclude_modules is set: not supported", name);
        goto cleanup;
    }
    v = json_object_get(root, "base_model_name_or_path");
    if (json_is_string(v))
        cfg->base_model = strdup(json_string_value(v));
    v = json_object_get(root, "task_type");
    if (json_is_string(v))
        cfg->task_type = strdup(json_string_value(v));
    if (!cfg->peft_type) {
        rc = sm_err_set(err, SM_ENOMEM, "%s: out of memory", name);
        goto cleanup;
    }

cleanup:
    json_decref(root);
    if (rc < 0)
        lora_config_free(cfg);
    return rc;
}

int lora_config_targets(const lora_config *cfg, const char *module)
{
    if (cfg->target_re)
        return re_matches(cfg->target_re, module);
    if (cfg->target_all_linear) {
        /* PEFT: every linear layer except the output layer. */
        const char *last = strrchr(module, '.');
        last = last ? last + 1 : module;
        return strcmp(last, "lm_head") != 0;
    }
    int found = 0;
    size_t mlen = strlen(module);
    for (uint32_t i = 0; i < cfg->n_targets && !found; i++) {
        const char *t = cfg->targets[i];
        size_t tlen = strlen(t);
        if (strcmp(module, t) == 0)
            return 1; /* exact name: PEFT skips the layer filter here */
        found = mlen > tlen && module[mlen - tlen - 1] == '.' && strcmp(module + mlen - tlen, t) == 0;
    }
    if (!found || cfg->n_layers == 0)
        return found;
    int64_t idx = -1;
    if (cfg->n_layers_pattern == 0) {
        idx = re_layer_index(".*\\.[^.]*\\.(\\d+)\\.", module);
    } else {
        for (uint32_t i = 0; i < cfg->n_layers_pattern && idx < 0; i++) {
            size_t len = strlen(cfg->layers_pattern[i]) + 32;
            char *pat = malloc(len);
            if (!pat)
                return 0;
            snprintf(pat, len, ".*\\.%s\\.(\\d+)\\.", cfg->layers_pattern[i]);
            idx = re_layer_index(pat, module);
            free(pat);
        }
    }
    if (idx < 0)
        return 0;
    for (uint32_t i = 0; i < cfg->n_layers; i++)
        if (cfg->layers[i] == idx)
            return 1;
    return 0;
}

double lora_config_scale(const lora_config *cfg, const char *module, uint32_t *r, double *alpha,
                         const char **rank_key, const char **alpha_key)
{
    *r = cfg->r;
    *alpha = cfg->alpha;
    *rank_key = NULL;
    *alpha_key = NULL;
    for (uint32_t i = 0; i < cfg->n_rank_pattern; i++)
        if (re_matches(cfg->rank_pattern[i].re, module)) {
            *r = (uint32_t)cfg->rank_pattern[i].value;
            *rank_key = cfg->rank_pattern[i].key;
            break;
        }
    for (uint32_t i = 0; i < cfg->n_alpha_pattern; i++)
        if (re_matches(cfg->alpha_pattern[i].re, module)) {
            *alpha = cfg->alpha_pattern[i].value;
            *alpha_key = cfg->alpha_pattern[i].key;
            break;
        }
    return cfg->use_rslora ? *alpha / sqrt((double)*r) : *alpha / (double)*r;
}

/* ------------------------------------------------------- tensor file */

void lora_tensors_free(lora_tensor *t, uint64_t n)
{
    for (uint64_t i = 0; t && i < n; i++)
        free(t[i].name);
    free(t);
}

int lora_tensors_parse(const uint8_t *buf, uint64_t len, const char *name,
                       lora_tensor **out, uint64_t *n_out, sm_err *err)
{
    int rc = SM_OK;
    json_t *root = NULL;
    lora_tensor *ts = NULL;
    uint64_t n = 0;
    *out = NULL;
    *n_out = 0;
    if (len < 8)
        return sm_err_set(err, SM_EFORMAT, "%s: %" PRIu64 " bytes, too short for a safetensors header length", name, len);
    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++)
        hlen |= (uint64_t)buf[i] << (8 * i);
    if (hlen > len - 8 || hlen > (100u << 20))
        return sm_err_set(err, SM_EFORMAT, "%s: header length %" PRIu64 " at offset 0 exceeds the file (%" PRIu64 " bytes): truncated?", name, hlen, len);
    json_error_t jerr;
    root = json_loadb((const char *)buf + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root || !json_is_object(root)) {
        rc = sm_err_set(err, SM_EFORMAT, "%s: header JSON invalid at byte %d: %s", name, 8 + jerr.position, root ? "not an object" : jerr.text);
        goto cleanup;
    }
    uint64_t data_off = 8 + hlen, data_len = len - data_off;
    ts = calloc(json_object_size(root) + 1, sizeof *ts);
    if (!ts) {
        rc = sm_err_set(err, SM_ENOMEM, "%s: out of memory", name);
        goto cleanup;
    }
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (strcmp(key, "__metadata__") == 0)
            continue;
        lora_tensor *t = &ts[n];
        const json_t *dt = json_object_get(val, "dtype");
        const json_t *sh = json_object_get(val, "shape");
        const json_t *of = json_object_get(val, "data_offsets");
        if (!json_is_string(dt) || !json_is_array(sh) || !json_is_array(of) || json_array_size(of) != 2 ||
            !json_is_integer(json_array_get(of, 0)) || !json_is_integer(json_array_get(of, 1))) {
            rc = sm_err_set(err, SM_EFORMAT, "%s: tensor '%s': entry needs dtype, shape and data_offsets [begin, end]", name, key);
            goto cleanup;
        }
        const char *d = json_string_value(dt);
        uint32_t esize;
        if (strcmp(d, "F32") == 0) {
            t->dtype = SM_TYPE_F32;
            esize = 4;
        } else if (strcmp(d, "F16") == 0) {
            t->dtype = SM_TYPE_F16;
            esize = 2;
        } else if (strcmp(d, "BF16") == 0) {
            t->dtype = SM_TYPE_BF16;
            esize = 2;
        } else {
            rc = sm_err_set(err, SM_ETYPE, "%s: tensor '%s': dtype %s not supported (F32, F16, BF16)", name, key, d);
            goto cleanup;
        }
        size_t nd = json_array_size(sh);
        if (nd > 4) {
            rc = sm_err_set(err, SM_ERANGE, "%s: tensor '%s': %zu dims, at most 4", name, key, nd);
            goto cleanup;
        }
        uint64_t nbytes = esize;
        for (size_t i = 0; i < nd; i++) {
            const json_t *e = json_array_get(sh, i);
            json_int_t x = json_is_integer(e) ? json_integer_value(e) : -1;
            if (x < 0 || (x > 0 && nbytes > UINT64_MAX / (uint64_t)x)) {
                rc = sm_err_set(err, SM_ERANGE, "%s: tensor '%s': bad shape entry %zu", name, key, i);
                goto cleanup;
            }
            t->shape[i] = x;
            nbytes *= (uint64_t)x;
        }
        t->n_dims = (uint32_t)nd;
        json_int_t b = json_integer_value(json_array_get(of, 0)), e = json_integer_value(json_array_get(of, 1));
        if (b < 0 || e < b || (uint64_t)e > data_len) {
            rc = sm_err_set(err, SM_ERANGE, "%s: tensor '%s': data_offsets [%lld, %lld] outside the %" PRIu64
                            "-byte data section (file truncated?)", name, key, (long long)b, (long long)e, data_len);
            goto cleanup;
        }
        if ((uint64_t)(e - b) != nbytes) {
            rc = sm_err_set(err, SM_EMISMATCH, "%s: tensor '%s': data_offsets span %lld bytes, shape and dtype need %" PRIu64,
                            name, key, (long long)(e - b), nbytes);
            goto cleanup;
        }
        t->data = buf + data_off + (uint64_t)b;
        t->nbytes = nbytes;
        t->name = strdup(key);
        if (!t->name) {
            rc = sm_err_set(err, SM_ENOMEM, "%s: out of memory", name);
            goto cleanup;
        }
        n++;
    }
    *out = ts;
    *n_out = n;
    ts = NULL;
cleanup:
    lora_tensors_free(ts, n);
    json_decref(root);
    return rc;
}

void lora_tensor_to_f32(const lora_tensor *t, float *dst)
{
    uint64_t n = t->nbytes / (t->dtype == SM_TYPE_F32 ? 4 : 2);
    const uint8_t *p = t->data;
    for (uint64_t i = 0; i < n; i++) {
        if (t->dtype == SM_TYPE_F32) {
            memcpy(&dst[i], p + 4 * i, 4);
        } else {
            uint16_t h = (uint16_t)(p[2 * i] | (p[2 * i + 1] << 8));
            dst[i] = t->dtype == SM_TYPE_F16 ? sm_f16_to_f32(h) : sm_bf16_to_f32(h);
        }
    }
}

/* ------------------------------------------------------- adapter */

static const char lora_prefix[] = "base_model.model.";

/* Splits a PEFT tensor name into module + role. role: 'A'/'B' (linear),
 * 'a'/'b' (embedding), 'S' (a plain weight: modules_to_save candidate). */
static char *split_name(const char *name, char *role)
{
    static const struct {
        const char *suffix;
        char role;
    } roles[] = {
        {".lora_A.weight", 'A'}, {".lora_B.weight", 'B'},
        {".lora_embedding_A", 'a'}, {".lora_embedding_B", 'b'},
    };
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof roles / sizeof roles[0]; i++) {
        size_t sl = strlen(roles[i].suffix);
        if (n > sl && strcmp(name + n - sl, roles[i].suffix) == 0) {
            *role = roles[i].role;
            return strndup(name, n - sl);
        }
    }
    *role = 'S';
    return strdup(name);
}

void lora_close(lora_adapter *ad)
{
    if (!ad)
        return;
    for (uint64_t i = 0; i < ad->n_modules; i++)
        free(ad->modules[i].name);
    free(ad->modules);
    for (uint64_t i = 0; i < ad->n_saved; i++)
        free(ad->saved[i].target);
    free(ad->saved);
    lora_tensors_free(ad->tensors, ad->n_tensors);
    sm_map_close(&ad->map);
    lora_config_free(&ad->cfg);
    free(ad->dir);
    memset(ad, 0, sizeof *ad);
}

/* Is module one of modules_to_save (exact or "." suffix, like PEFT)? */
static int is_saved_module(const lora_config *cfg, const char *module)
{
    size_t mlen = strlen(module);
    for (uint32_t i = 0; i < cfg->n_modules_to_save; i++) {
        const char *t = cfg->modules_to_save[i];
        size_t tlen = strlen(t);
        if (strcmp(module, t) == 0 ||
            (mlen > tlen && module[mlen - tlen - 1] == '.' && strcmp(module + mlen - tlen, t) == 0))
            return 1;
    }
    return 0;
}

static int adapter_build(lora_adapter *ad, const char *fname, sm_err *err)
{
    const size_t plen = sizeof lora_prefix - 1;
    ad->modules = calloc(ad->n_tensors + 1, sizeof *ad->modules);
    ad->saved = calloc(ad->n_tensors + 1, sizeof *ad->saved);
    if (!ad->modules || !ad->saved)
        return sm_err_set(err, SM_ENOMEM, "%s: out of memory", fname);
    for (uint64_t i = 0; i < ad->n_tensors; i++) {
        const lora_tensor *t = &ad->tensors[i];
        if (strncmp(t->name, lora_prefix, plen) != 0)
            return sm_err_set(err, SM_EFORMAT, "%s: tensor '%s' lacks the PEFT prefix \"%s\"", fname, t->name, lora_prefix);
        if (strstr(t->name, "lora_magnitude_vector"))
            return sm_err_set(err, SM_EUNSUPP, "%s: tensor '%s' is a DoRA magnitude vector: DoRA is not supported", fname, t->name);
        char role;
        char *module = split_name(t->name + plen, &role);
        if (!module)
            return sm_err_set(err, SM_ENOMEM, "%s: out of memory", fname);
        if (role == 'S') {
            /* "<module>.weight" of a modules_to_save entry replaces the base. */
            int known = !strstr(module, ".lora_");
            char *dot = strrchr(module, '.');
            if (known && dot) {
                *dot = '\0'; /* module of "<module>.weight" */
                known = is_saved_module(&ad->cfg, module) ? 2 : 0;
                *dot = '.';
            }
            if (known != 2) {
                free(module);
                if (!known && strstr(t->name, ".lora_"))
                    return sm_err_set(err, SM_EUNSUPP, "%s: tensor '%s' is a LoRA part we do not know (lora_B bias? "
                                      "DoRA?)", fname, t->name);
                return sm_err_set(err, SM_EFORMAT, "%s: tensor '%s' is neither lora_A/lora_B nor a modules_to_save "
                                  "weight listed in adapter_config.json", fname, t->name);
            }
            ad->saved[ad->n_saved].target = module;
            ad->saved[ad->n_saved].t = t;
            ad->n_saved++;
            continue;
        }
        uint32_t kind = (role == 'A' || role == 'B') ? LORA_LINEAR : LORA_EMBEDDING;
        int is_a = role == 'A' || role == 'a';
        lora_module *m = NULL;
        for (uint64_t j = 0; j < ad->n_modules; j++)
            if (strcmp(ad->modules[j].name, module) == 0) {
                m = &ad->modules[j];
                break;
            }
        if (!m) {
            m = &ad->modules[ad->n_modules++];
            m->name = module;
            m->kind = kind;
        } else {
            free(module);
            if (m->kind != kind)
                return sm_err_set(err, SM_EFORMAT, "%s: module '%s' mixes linear and embedding LoRA tensors", fname, m->name);
        }
        if ((is_a && m->a) || (!is_a && m->b))
            return sm_err_set(err, SM_EDUP, "%s: module '%s' has two lora_%c tensors", fname, m->name, is_a ? 'A' : 'B');
        if (t->n_dims != 2)
            return sm_err_set(err, SM_EMISMATCH, "%s: tensor '%s' has %u dims, a LoRA factor has 2", fname, t->name, t->n_dims);
        if (is_a)
            m->a = t;
        else
            m->b = t;
    }
    for (uint64_t i = 0; i < ad->n_modules; i++) {
        lora_module *m = &ad->modules[i];
        if (!m->a || !m->b)
            return sm_err_set(err, SM_EMISSING, "%s: module '%s' has lora_%c but no lora_%c: incomplete A/B pair",
                              fname, m->name, m->a ? 'A' : 'B', m->a ? 'B' : 'A');
        int64_t ra = m->a->shape[0], rb = m->b->shape[1];
        if (ra != rb)
            return sm_err_set(err, SM_EMISMATCH, "%s: module '%s': lora_A has rank %" PRId64 " rows, lora_B has %" PRId64
                              " columns; they must agree", fname, m->name, ra, rb);
        m->scale = lora_config_scale(&ad->cfg, m->name, &m->r, &m->alpha, &m->rank_key, &m->alpha_key);
        if ((int64_t)m->r != ra)
            return sm_err_set(err, SM_EMISMATCH, "%s: module '%s': tensors have rank %" PRId64 ", adapter_config.json says %u%s%s",
                              fname, m->name, ra, m->r, m->rank_key ? " (rank_pattern key " : "",
                              m->rank_key ? m->rank_key : "");
        if (!lora_config_targets(&ad->cfg, m->name))
            return sm_err_set(err, SM_EMISMATCH, "%s: module '%s' has LoRA tensors but adapter_config.json target_modules"
                              "/layers_to_transform do not select it", fname, m->name);
        m->out = m->b->shape[0];
        m->in = m->a->shape[1];
    }
    return SM_OK;
}

int lora_open(lora_adapter *ad, const char *dir, sm_err *err)
{
    char path[4096];
    char *json = NULL;
    uint64_t json_len = 0;
    int rc;
    memset(ad, 0, sizeof *ad);
    ad->user_scale = 1.0;
    ad->dir = strdup(dir);
    if (!ad->dir)
        return sm_err_set(err, SM_ENOMEM, "out of memory");
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    rc = sm_read_file(path, LORA_MAX_CONFIG, &json, &json_len, err);
    if (rc < 0)
        goto cleanup;
    rc = lora_config_parse(&ad->cfg, json, json_len, path, err);
    if (rc < 0)
        goto cleanup;
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    rc = sm_map_open(&ad->map, path, err);
    if (rc < 0)
        goto cleanup;
    rc = lora_tensors_parse(ad->map.ptr, ad->map.len, path, &ad->tensors, &ad->n_tensors, err);
    if (rc < 0)
        goto cleanup;
    if (ad->n_tensors == 0) {
        rc = sm_err_set(err, SM_EMISSING, "%s: no tensors", path);
        goto cleanup;
    }
    rc = adapter_build(ad, path, err);
cleanup:
    free(json);
    if (rc < 0)
        lora_close(ad);
    return rc;
}

/* ------------------------------------------------------- describe */

int lora_describe(const lora_adapter *ad, FILE *fp, int json, sm_err *err)
{
    const lora_config *c = &ad->cfg;
    if (json) {
        json_t *o = json_object();
        json_t *mods = json_array();
        json_t *tg = json_array();
        json_object_set_new(o, "adapter", json_string(ad->dir));
        json_object_set_new(o, "peft_type", json_string(c->peft_type));
        json_object_set_new(o, "base_model", c->base_model ? json_string(c->base_model) : json_null());
        json_object_set_new(o, "task_type", c->task_type ? json_string(c->task_type) : json_null());
        json_object_set_new(o, "r", json_integer(c->r));
        json_object_set_new(o, "lora_alpha", json_real(c->alpha));
        json_object_set_new(o, "use_rslora", json_boolean(c->use_rslora));
        json_object_set_new(o, "fan_in_fan_out", json_boolean(c->fan_in_fan_out));
        if (c->target_regex)
            json_object_set_new(o, "target_modules", json_string(c->target_regex));
        else if (c->target_all_linear)
            json_object_set_new(o, "target_modules", json_string("all-linear"));
        else {
            for (uint32_t i = 0; i < c->n_targets; i++)
                json_array_append_new(tg, json_string(c->targets[i]));
            json_object_set(o, "target_modules", tg);
        }
        json_object_set_new(o, "n_tensors", json_integer((json_int_t)ad->n_tensors));
        json_object_set_new(o, "n_modules", json_integer((json_int_t)ad->n_modules));
        for (uint64_t i = 0; i < ad->n_modules; i++) {
            const lora_module *m = &ad->modules[i];
            json_t *e = json_object();
            json_object_set_new(e, "module", json_string(m->name));
            json_object_set_new(e, "kind", json_string(m->kind == LORA_LINEAR ? "linear" : "embedding"));
            json_object_set_new(e, "r", json_integer(m->r));
            json_object_set_new(e, "alpha", json_real(m->alpha));
            json_object_set_new(e, "scale", json_real(m->scale));
            json_object_set_new(e, "alpha_pattern_key", m->alpha_key ? json_string(m->alpha_key) : json_null());
            json_object_set_new(e, "rank_pattern_key", m->rank_key ? json_string(m->rank_key) : json_null());
            json_object_set_new(e, "lora_A", json_pack("[I,I]", (json_int_t)m->a->shape[0], (json_int_t)m->a->shape[1]));
            json_object_set_new(e, "lora_B", json_pack("[I,I]", (json_int_t)m->b->shape[0], (json_int_t)m->b->shape[1]));
            json_object_set_new(e, "dtype", json_string(sm_type_name(m->a->dtype)));
            json_array_append_new(mods, e);
        }
        json_object_set(o, "modules", mods);
        json_t *sv = json_array();
        for (uint64_t i = 0; i < ad->n_saved; i++)
            json_array_append_new(sv, json_string(ad->saved[i].target));
        json_object_set_new(o, "modules_to_save", sv);
        int w = json_dumpf(o, fp, JSON_INDENT(1));
        json_decref(mods);
        json_decref(tg);
        json_decref(o);
        if (w < 0 || fputc('\n', fp) == EOF)
            return sm_err_set(err, SM_EIO, "writing the description failed");
        return SM_OK;
    }
    fprintf(fp, "adapter:        %s\n", ad->dir);
    fprintf(fp, "type:           %s (PEFT)%s\n", c->peft_type, c->use_rslora ? ", rsLoRA" : "");
    fprintf(fp, "base model:     %s\n", c->base_model ? c->base_model : "(not named)");
    fprintf(fp, "task:           %s\n", c->task_type ? c->task_type : "(none)");
    fprintf(fp, "r:              %u\n", c->r);
    fprintf(fp, "lora_alpha:     %g\n", c->alpha);
    fprintf(fp, "scale:          %.9g (%s)\n", c->use_rslora ? c->alpha / sqrt((double)c->r) : c->alpha / (double)c->r,
            c->use_rslora ? "alpha/sqrt(r)" : "alpha/r");
    fprintf(fp, "fan_in_fan_out: %s\n", c->fan_in_fan_out ? "true" : "false");
    fprintf(fp, "targets:        ");
    if (c->target_regex)
        fprintf(fp, "regex \"%s\"", c->target_regex);
    else if (c->target_all_linear)
        fprintf(fp, "all-linear");
    for (uint32_t i = 0; i < c->n_targets; i++)
        fprintf(fp, "%s%s", i ? ", " : "", c->targets[i]);
    fprintf(fp, "\n");
    if (c->n_layers) {
        fprintf(fp, "layers:         ");
        for (uint32_t i = 0; i < c->n_layers; i++)
            fprintf(fp, "%s%" PRId64, i ? ", " : "", c->layers[i]);
        fprintf(fp, "\n");
    }
    for (uint32_t i = 0; i < c->n_rank_pattern; i++)
        fprintf(fp, "rank_pattern:   %s -> %g\n", c->rank_pattern[i].key, c->rank_pattern[i].value);
    for (uint32_t i = 0; i < c->n_alpha_pattern; i++)
        fprintf(fp, "alpha_pattern:  %s -> %g\n", c->alpha_pattern[i].key, c->alpha_pattern[i].value);
    fprintf(fp, "tensors:        %" PRIu64 " (%" PRIu64 " A/B pairs, %" PRIu64 " modules_to_save)\n",
            ad->n_tensors, ad->n_modules, ad->n_saved);
    fprintf(fp, "modules:\n");
    for (uint64_t i = 0; i < ad->n_modules; i++) {
        const lora_module *m = &ad->modules[i];
        fprintf(fp, "  %-48s %s A[%" PRId64 ",%" PRId64 "] B[%" PRId64 ",%" PRId64 "] r=%u alpha=%g scale=%.9g%s%s%s%s\n",
                m->name, sm_type_name(m->a->dtype), m->a->shape[0], m->a->shape[1], m->b->shape[0], m->b->shape[1],
                m->r, m->alpha, m->scale, m->alpha_key ? " alpha_pattern=" : "", m->alpha_key ? m->alpha_key : "",
                m->rank_key ? " rank_pattern=" : "", m->rank_key ? m->rank_key : "");
    }
    for (uint64_t i = 0; i < ad->n_saved; i++)
        fprintf(fp, "  saved %-42s %s full replacement\n", ad->saved[i].target, sm_type_name(ad->saved[i].t->dtype));
    if (ferror(fp))
        return sm_err_set(err, SM_EIO, "writing the description failed");
    return SM_OK;
}
