/* naming.h — general.name / basename / finetune / version / size_label the
 * way llama.cpp's gguf-py derives them from a model id or directory name
 * (gguf/metadata.py: get_model_id_components, id_to_title; utility.py:
 * model_weight_count_rounded_notation, naming_convention). Reproduced so
 * that smelt's GGUF headers are byte-identical to convert_hf_to_gguf.py's. */
#ifndef SMELT_CONVERT_NAMING_H
#define SMELT_CONVERT_NAMING_H

#include <stdint.h>

typedef struct cv_naming {
    char *name;       /* general.name (title form), or NULL */
    char *basename;
    char *finetune;
    char *version;
    char *size_label;
    char *organization;
} cv_naming;

/* Fills the fields still NULL in *n from model_id ("org/name" or a directory
 * name) as get_model_id_components + apply_metadata_heuristic do.
 * total_params: parameter count (0 if unknown; negative for adapters).
 * Returns 0, or SM_ENOMEM. */
int cv_naming_from_id(cv_naming *n, const char *model_id, int64_t total_params);
void cv_naming_free(cv_naming *n);

/* Python str.title() of an ASCII/UTF-8 string applied word by word as
 * Metadata.id_to_title does ('-' becomes ' '). Caller frees. */
char *cv_id_to_title(const char *id);

/* "260K", "3.4M", "1.1B": model_weight_count_rounded_notation(n, 2). */
void cv_size_label(uint64_t n_params, char *out, uint32_t cap);

/* Default file name: naming_convention(name, basename, finetune, version,
 * size_label, output_type) + ".gguf". kind is NULL or "vocab"/"LoRA". */
void cv_default_filename(const cv_naming *n, const char *output_type, const char *kind, char *out, uint32_t cap);

#endif
