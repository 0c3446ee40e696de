/* quantize.h — the smelt-quantize driver: GGUF in, GGUF out, byte-identical
 * to llama-quantize (llama.cpp c392e5094) for the same arguments.
 *
 * Output layout, as llama.cpp writes it: every input KV copied in order,
 * then general.quantization_version (= 2) and general.file_type removed and
 * re-appended in that order, split.* keys dropped, then — when an imatrix is
 * used — quantize.imatrix.file, .dataset (strings cut to 127 bytes),
 * .entries_count and .chunks_count (i32) appended. Tensors in the model
 * loader's order (blk number, then name), 32-byte alignment. --override-kv
 * values are appended (remove + append) before the imatrix keys.
 *
 * Streaming: one tensor at a time is widened to f32, quantized by a pthread
 * pool over row chunks, written, and its input pages are released. */
#ifndef SMELT_QUANTIZE_QUANTIZE_H
#define SMELT_QUANTIZE_QUANTIZE_H

#include "err.h"
#include "mixture.h"

#include <stdint.h>

/* One tensor's outcome, reported through sm_qz_opts.on_tensor. */
typedef struct sm_qz_event {
    uint64_t index;       /* 0-based position in the output */
    uint64_t count;       /* number of tensors */
    const char *name;
    int64_t ne[4];        /* shape, unused dims 1 */
    uint32_t src_type, dst_type;
    int converted;        /* 0: bytes copied unchanged */
    int imatrix_used;     /* importance weights were passed to the quantizer */
    const char *note;     /* fallback or imatrix remark, "" when none */
    uint64_t src_bytes, dst_bytes;
} sm_qz_event;

typedef struct sm_qz_summary {
    uint64_t n_tensors;
    uint64_t n_converted;     /* tensors whose type changed */
    int n_fallback;           /* llama.cpp's fallback counter */
    int n_k_quantized;        /* tensors that kept their rule type */
    uint64_t n_elements;      /* all tensors */
    uint64_t size_in;         /* tensor data bytes of the input (no padding) */
    uint64_t size_out;        /* tensor data bytes of the output */
    uint64_t file_size;       /* bytes of the output file */
    int imatrix_used;
    uint32_t imatrix_entries; /* after --include/--exclude-weights */
    int32_t imatrix_chunks;
} sm_qz_summary;

/* One --override-kv KEY=TYPE:VALUE (llama.cpp's llama_model_kv_override). */
enum sm_qz_kv_tag { SM_QZ_KV_INT, SM_QZ_KV_FLOAT, SM_QZ_KV_BOOL, SM_QZ_KV_STR };
typedef struct sm_qz_kv {
    char key[128];
    int tag;          /* enum sm_qz_kv_tag */
    int64_t i;        /* written as i32, as llama.cpp does */
    double f;         /* written as f32 */
    int b;
    char s[128];      /* at most 127 bytes */
} sm_qz_kv;

/* Parses "KEY=int:N", "KEY=float:X", "KEY=bool:true|false", "KEY=str:S"
 * (key < 128 bytes, string <= 127 bytes; numbers parsed like atol/atof).
 * Returns 0 or SM_EINVAL with err naming the problem. */
int sm_qz_parse_kv_override(const char *arg, sm_qz_kv *out, sm_err *err);

typedef struct sm_qz_opts {
    const char *in_path;
    const char *out_path;      /* ignored with dry_run */
    uint32_t ftype;            /* enum sm_ftype */
    const char *imatrix_path;  /* NULL: none; stored verbatim in quantize.imatrix.file */
    char **include;            /* [n_include] --include-weights substrings */
    uint32_t n_include;
    char **exclude;            /* [n_exclude] --exclude-weights substrings */
    uint32_t n_exclude;
    int pure, leave_output, allow_requantize, dry_run, force;
    int only_copy;             /* TYPE COPY: copy every tensor, keep the input's file type */
    int32_t output_type;       /* -1: rules */
    int32_t token_embd_type;   /* -1: rules */
    sm_mix_override *overrides;/* [n_overrides] borrowed */
    uint32_t n_overrides;
    const sm_qz_kv *kv_overrides; /* [n_kv_overrides] --override-kv, applied to the output metadata only */
    uint32_t n_kv_overrides;
    int nthreads;              /* <= 0: number of online CPUs */
    void (*on_tensor)(void *ud, const sm_qz_event *ev); /* may be NULL */
    void *ud;
} sm_qz_opts;

/* Quantizes o->in_path into o->out_path (or, with dry_run, only decides and
 * reports every tensor's type and size). Refuses, with no output file left
 * behind: an output path that is the input or that exists (unless force; the
 * write still goes through temp file + rename), an imatrix entry whose size
 * differs from its tensor (except token_embd) or holding non-finite values,
 * a quantized input without allow_requantize, a row length with no fallback
 * (e.g. Q8_0 of a 172-wide row), NaN/Inf input data, and write errors such
 * as a full disk. *s (may be NULL) is filled on success. */
int sm_quantize_file(const sm_qz_opts *o, sm_qz_summary *s, sm_err *err);

/* Default output name when OUT is omitted, as llama-quantize derives it:
 * the input's directory + "ggml-model-" + canon + ".gguf". Caller frees. */
char *sm_qz_default_out(const char *in_path, const char *canon);

#endif
