/* adapter.h — PEFT LoRA adapters: adapter_config.json and the adapter tensors.
 *
 * What is honoured (PEFT semantics, peft/tuners/lora):
 *   r, lora_alpha           scale = alpha / r
 *   use_rslora              scale = alpha / sqrt(r)
 *   rank_pattern,           per-module r / alpha: the first key K (in file
 *   alpha_pattern           order) with re.match(rf"(.*\.)?({K})$", module)
 *   target_modules          list: module == K or module ends with "." K;
 *                           string: re.fullmatch; "all-linear"
 *   layers_to_transform,    layer index from r".*\.[^.]*\.(\d+)\." (or
 *   layers_pattern          rf".*\.{P}\.(\d+)\.") must be in the list
 *   fan_in_fan_out          the base weight is stored [in, out]
 *   modules_to_save         full replacement tensors in the adapter file
 * Refused with a message (they change the math and we do not implement
 * them): use_dora, bias != "none", lora_bias, layer_replication,
 * init_lora_weights that rewrite the base (pissa, olora, loftq, corda...),
 * trainable_token_indices, peft_type != LORA, and any unknown key whose value
 * is not null/false/empty.
 *
 * Module names are the base model's names without "base_model.model."
 * (e.g. "model.layers.1.self_attn.q_proj"); the weight they change is
 * "<module>.weight". */
#ifndef SMELT_MERGE_ADAPTER_H
#define SMELT_MERGE_ADAPTER_H

#include "err.h"
#include "fileio.h"

#include <stdint.h>
#include <stdio.h>

#define LORA_MAX_CONFIG (16u << 20) /* adapter_config.json larger than 16 MiB is not a config */

typedef struct lora_pattern {
    char *key;      /* pattern key as written in the config */
    double value;   /* rank or alpha */
    void *re;       /* compiled PCRE2 "(.*\.)?(key)$", anchored (pcre2_code *) */
} lora_pattern;

typedef struct lora_config {
    char *peft_type;          /* "LORA" */
    uint32_t r;
    double alpha;
    int use_rslora;
    int fan_in_fan_out;
    char **targets;           /* [n_targets] list form of target_modules */
    uint32_t n_targets;
    char *target_regex;       /* string form (re.fullmatch), or NULL */
    void *target_re;          /* compiled target_regex (pcre2_code *) */
    int target_all_linear;    /* target_modules == "all-linear" */
    int64_t *layers;          /* [n_layers] layers_to_transform, or NULL */
    uint32_t n_layers;
    char **layers_pattern;    /* [n_layers_pattern] */
    uint32_t n_layers_pattern;
    lora_pattern *rank_pattern;  /* [n_rank_pattern] in file order */
    uint32_t n_rank_pattern;
    lora_pattern *alpha_pattern; /* [n_alpha_pattern] in file order */
    uint32_t n_alpha_pattern;
    char **modules_to_save;   /* [n_modules_to_save] */
    uint32_t n_modules_to_save;
    char *base_model;         /* base_model_name_or_path, or NULL */
    char *task_type;          /* or NULL */
} lora_config;

/* One tensor of the adapter file, as a view into the mapped file. */
typedef struct lora_tensor {
    char *name;               /* full name in the file (owned) */
    uint32_t dtype;           /* SM_TYPE_F32 / F16 / BF16 */
    uint32_t n_dims;
    int64_t shape[4];         /* safetensors order: shape[0] = rows */
    const uint8_t *data;      /* [nbytes] into the map */
    uint64_t nbytes;
} lora_tensor;

enum lora_kind {
    LORA_LINEAR = 0,          /* lora_A.weight [r, in], lora_B.weight [out, r] */
    LORA_EMBEDDING = 1,       /* lora_embedding_A [r, n_vocab], _B [dim, r] */
};

/* One adapted module: a lora_A/lora_B pair and its resolved scale. */
typedef struct lora_module {
    char *name;               /* module name, e.g. "model.layers.0.mlp.up_proj" (owned) */
    uint32_t kind;            /* enum lora_kind */
    const lora_tensor *a;     /* [r, in] (embedding: [r, n_vocab]) */
    const lora_tensor *b;     /* [out, r] (embedding: [dim, r]) */
    uint32_t r;
    double alpha;             /* after alpha_pattern */
    double scale;             /* PEFT scaling (alpha/r or alpha/sqrt(r)) */
    const char *alpha_key;    /* matching alpha_pattern key or NULL (borrowed) */
    const char *rank_key;     /* matching rank_pattern key or NULL (borrowed) */
    int64_t out, in;          /* shape of the delta B·A as PEFT computes it, before fan_in_fan_out */
} lora_module;

/* A modules_to_save replacement tensor: replaces base "<target>" whole. */
typedef struct lora_saved {
    char *target;             /* base tensor name, e.g. "lm_head.weight" (owned) */
    const lora_tensor *t;
} lora_saved;

typedef struct lora_adapter {
    char *dir;                /* adapter directory (owned) */
    lora_config cfg;
    sm_map map;               /* adapter_model.safetensors */
    lora_tensor *tensors;     /* [n_tensors] in file header order */
    uint64_t n_tensors;
    lora_module *modules;     /* [n_modules] in order of first appearance */
    uint64_t n_modules;
    lora_saved *saved;        /* [n_saved] */
    uint64_t n_saved;
    double user_scale;        /* the ":SCALE" of --lora DIR:SCALE (1 by default) */
} lora_adapter;

/* Parses adapter_config.json text (json_len bytes). name is used in messages.
 * On failure *cfg is freed and zeroed. Caller frees with lora_config_free. */
int lora_config_parse(lora_config *cfg, const char *json, uint64_t json_len, const char *name, sm_err *err);
void lora_config_free(lora_config *cfg);

/* 1 when the config selects module (target_modules + layers_to_transform). */
int lora_config_targets(const lora_config *cfg, const char *module);
/* Resolves r and alpha of module from the patterns; *rank_key and *alpha_key get
 * the matching key or NULL. Returns the PEFT scale for that rank and alpha. */
double lora_config_scale(const lora_config *cfg, const char *module, uint32_t *r, double *alpha,
                         const char **rank_key, const char **alpha_key);

/* Parses a safetensors buffer (header + data) into tensor views. Only F32,
 * F16 and BF16 are accepted. *out is malloc'd (free with lora_tensors_free).
 * name is used in messages. */
int lora_tensors_parse(const uint8_t *buf, uint64_t len, const char *name,
                       lora_tensor **out, uint64_t *n_out, sm_err *err);
void lora_tensors_free(lora_tensor *t, uint64_t n);

/* Opens DIR/adapter_config.json + DIR/adapter_model.safetensors, pairs the
 * tensors into modules and checks them against the config (rank, targets,
 * pairs, shapes A/B agree on r, no unknown tensor). Close with lora_close. */
int lora_open(lora_adapter *ad, const char *dir, sm_err *err);
void lora_close(lora_adapter *ad);

/* Copies an adapter tensor into dst as F32 (nelem values). */
void lora_tensor_to_f32(const lora_tensor *t, float *dst);

/* Writes the plain-text description (--inspect) to fp; json != 0 writes a
 * JSON object instead. Returns <0 only on a write error. */
int lora_describe(const lora_adapter *ad, FILE *fp, int json, sm_err *err);

#endif
