/* convert.h — Hugging Face checkpoint directory -> GGUF, as llama.cpp's
 * convert_hf_to_gguf.py (c392e5094) writes it for the llama and qwen2
 * architectures: same keys in the same order, same tensor names, order,
 * types and bytes.
 *
 * The conversion streams: the header is built from the safetensors headers
 * alone, then each tensor is read from the mmapped shard, converted, written
 * and its source pages released, so peak memory stays near one tensor. */
#ifndef SMELT_CONVERT_H
#define SMELT_CONVERT_H

#include "err.h"
#include "gguf.h"

#include <stdint.h>

enum cv_outtype { CV_OUT_F32, CV_OUT_F16, CV_OUT_BF16, CV_OUT_Q8_0, CV_OUT_AUTO };

/* Progress events for the CLI (the library itself never prints). */
typedef void (*cv_progress_fn)(void *ctx, uint64_t index, uint64_t count, const char *name,
                               const char *src_dtype, const char *dst_type, const int64_t *ne,
                               uint32_t n_dims, uint64_t bytes_done, uint64_t bytes_total);

typedef struct cv_opts {
    const char *model_dir;   /* HF directory (config.json, safetensors, tokenizer) */
    const char *outfile;     /* NULL: default name inside model_dir, as llama.cpp */
    int outtype;             /* enum cv_outtype */
    int vocab_only;          /* write only the metadata and vocabulary */
    const char *pre;         /* --pre override of tokenizer.ggml.pre, or NULL */
    int force;               /* overwrite an existing output */
    cv_progress_fn progress; /* may be NULL */
    void *progress_ctx;
} cv_opts;

/* Outcome, for the summary line and for tests. */
typedef struct cv_summary {
    char outfile[4096];
    char arch[16];
    uint64_t n_tensors;
    uint64_t bytes_in;        /* source tensor bytes read */
    uint64_t bytes_out;       /* output file size */
    double seconds;
    uint64_t f16_overflow;    /* finite inputs that became +-inf in F16 */
    uint64_t f16_underflow;   /* nonzero inputs that became 0 in F16 */
    char f16_tensors[1024];   /* names of the tensors concerned (truncated) */
    int outtype;              /* resolved (auto -> f16/bf16) */
} cv_summary;

/* Converts. Errors: SM_EMISSING (config.json, weights, tokenizer, a shard),
 * SM_EUNSUPP (architecture, tensor the architecture does not have), SM_EFORMAT
 * (malformed inputs; the message names the file and what was expected),
 * SM_EIO (output; the destination is never left half-written), SM_EINVAL
 * (output exists and force not set / equals an input). */
int cv_convert(const cv_opts *opts, cv_summary *sum, sm_err *err);

/* What cv_config_kv learned from config.json for the vocabulary step. */
typedef struct cv_config_info {
    const char *arch;    /* general.architecture ("llama", "qwen2"), static */
    uint32_t vocab_size; /* config's vocab_size, 0 if absent */
} cv_config_info;

/* The config.json half of cv_convert on a buffer: parses text (len bytes,
 * at most 16 MiB; path names it in messages) with the converter's checks and
 * appends to w the KVs cv_convert writes before the vocabulary —
 * general.architecture, general.type, the naming keys (from _name_or_path,
 * then dir_name, the model directory's base name), and the hyper-parameters
 * for outtype (enum cv_outtype other than AUTO) — for a conversion with no
 * tensor counted (as a vocab-only one: no size label). Errors are
 * cv_convert's for a malformed config (SM_EFORMAT, SM_EMISSING, SM_EUNSUPP,
 * SM_ERANGE, SM_ENOMEM); on error w may hold some keys and the caller
 * discards it. *info (not NULL) is filled on success. For fuzzing and
 * tests: cv_convert reads the file and runs the same parser, checks and
 * writers. */
int cv_config_kv(gguf_writer *w, const char *text, uint64_t len, const char *path, const char *dir_name,
                 int outtype, int vocab_only, cv_config_info *info, sm_err *err);

/* "f32", "f16", "bf16", "q8_0", "auto" -> enum, or -1. */
int cv_outtype_parse(const char *s);
const char *cv_outtype_name(int outtype);

/* The llama Q/K row permutation of convert_hf_to_gguf.py (LlamaModel.permute):
 * rows are grouped per head as (2, hd/2) and re-laid as (hd/2, 2), turning
 * HF's rotate-half RoPE layout into GGML's interleaved one. src and dst hold
 * rows x cols elements of elem_size bytes; n_head is the head count of this
 * projection (n_head_kv for K). Returns SM_EINVAL when rows is not a multiple
 * of 2 * n_head. */
int cv_permute_qk(const void *src, void *dst, int64_t rows, int64_t cols, uint32_t elem_size, uint32_t n_head);

#endif
