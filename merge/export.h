/* export.h — write a PEFT adapter in llama.cpp's GGUF LoRA format, the way
 * convert_lora_to_gguf.py does (c392e5094):
 *   keys, in order: general.architecture, general.type = "adapter",
 *   adapter.type = "lora", general.name / version / finetune / basename /
 *   size_label (from the adapter directory's name, gguf-py's heuristics),
 *   adapter.lora.alpha (f32), general.quantization_version = 2;
 *   tensors, in adapter-file order: "<gguf name>.weight.lora_a" with
 *   ne = [in, r] and ".lora_b" with ne = [r, out], F32, lora_b rows of
 *   attn_q/attn_k permuted like the converter permutes the base (llama).
 * Differences from llama.cpp (documented, never silent): rsLoRA is folded in
 * by writing alpha*sqrt(r); the adapter's ":SCALE" multiplies alpha;
 * alpha_pattern (per-module alphas), rank patterns that change the scale
 * under rsLoRA, modules_to_save and fan_in_fan_out are refused because the
 * format cannot express them. A README.md model card contributes
 * general.license, general.base_model.*, general.tags and general.languages
 * (front matter limited to "key: scalar", "key: [a, b]" and block lists;
 * other card keys are not read). */
#ifndef SMELT_MERGE_EXPORT_H
#define SMELT_MERGE_EXPORT_H

#include "adapter.h"
#include "err.h"

#include <stdint.h>

typedef struct export_names {
    char name[256];       /* general.name */
    char basename[256];   /* "" when absent */
    char finetune[256];
    char version[256];
    char size_label[256];
} export_names;

typedef struct export_info {
    uint32_t n_tensors;   /* tensors written */
    double alpha;         /* adapter.lora.alpha written */
    char name[256];       /* general.name written */
} export_info;

/* gguf-py Metadata.get_model_id_components + id_to_title applied to a
 * directory name; total_params < 0 marks a LoRA (as gguf-py does). */
void export_model_names(const char *dir_name, int64_t total_params, export_names *out);

/* Writes ad as a GGUF LoRA to out. base is a GGUF file or an HF directory
 * (config.json) giving the architecture and head counts. Nothing is left at
 * out on failure. */
int export_gguf_lora(const lora_adapter *ad, const char *base, const char *out, export_info *info, sm_err *err);

#endif
