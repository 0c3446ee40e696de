/* naming.h — general.name / basename / finetune / version / size_label the
 * way llama.cpp's gguf-py derives them from a model id or directory name
 * (gguf/metadata.py: get_model_id_components, id_to_title; utility.py:
 * model_weight_count_rounded_notation, naming_convention). Reproduced so
 * that smelt's GGUF headers are byte-identical to convert_hf_to_gguf.py's. */
#ifndef SMELT_NAMING_H
#define SMELT_NAMING_H

#include <stdint.h>

typedef struct sm_naming {
    char *name;       /* general.name (title form), or NULL */
    char *basename;
    char *finetune;
    char *version;
    char *size_label;
    char *organization;
} sm_naming;

/* Fills the fields still NULL in *n from model_id ("org/name" or a directory
 * name) as get_model_id_components + apply_metadata_heuristic do.
 * total_params: parameter count (0 if unknown; negative for adapters).
 * Returns 0, or SM_ENOMEM. */
int sm_naming_from_id(sm_naming *n, const char *model_id, int64_t total_params);
void sm_naming_free(sm_naming *n);

/* Python re.fullmatch(pattern, s[, re.IGNORECASE]) with PCRE2: 1 on a whole
 * match, 0 otherwise (also when the pattern does not compile). */
int sm_fullmatch(const char *pattern, const char *s, int icase);

/* Python str.title() of an ASCII/UTF-8 string applied word by word as
 * Metadata.id_to_title does ('-' becomes ' '). Caller frees. */
char *sm_id_to_title(const char *id);

/* "260K", "3.4M", "1.1B": model_weight_count_rounded_notation(n, 2). */
void sm_size_label(uint64_t n_params, char *out, uint32_t cap);

/* Default file name: naming_convention(name, basename, finetune, version,
 * size_label, output_type) + ".gguf". kind is NULL or "vocab"/"LoRA". */
void sm_default_filename(const sm_naming *n, const char *output_type, const char *kind, char *out, uint32_t cap);

#endif
