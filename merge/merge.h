/* merge.h — fold LoRA adapters into base weights, exactly as PEFT does.
 *
 * For every module with a lora_A/lora_B pair, in adapter order:
 *     W'[i][j] = W[i][j] + (float)scale * acc,  acc = sum_k B[i][k] * A[k][j]
 * in float32, k ascending, no fused multiply-add (the build uses
 * -ffp-contract=off); scale = PEFT's alpha/r (or alpha/sqrt(r)) times the
 * user's ":SCALE". W is widened to F32 first and the result is rounded once
 * to the output type. This is the operation order of the reference merge
 * (numpy float32), so F32 output is bit-identical to it.
 *
 * BASE is a Hugging Face directory (single or sharded safetensors; the output
 * directory has the same layout and file names, header order and metadata
 * position, config.json's torch_dtype updated) or a GGUF with F32/F16/BF16
 * weights (output GGUF with the same keys and tensor order; lora_B rows of
 * attn_q/attn_k are permuted like the converter permutes the base).
 * Output is streamed tensor by tensor; nothing is left behind on error. */
#ifndef SMELT_MERGE_MERGE_H
#define SMELT_MERGE_MERGE_H

#include "adapter.h"
#include "err.h"

#include <stdint.h>
#include <stdio.h>

#define MERGE_OUT_AUTO (-1) /* keep each tensor's type */
#define MERGE_MAX_THREADS 16

typedef struct merge_opts {
    const char *base;         /* HF directory or .gguf file */
    const char *out;          /* output directory (HF) or file (GGUF) */
    lora_adapter *adapters;   /* [n_adapters] opened, applied in order (borrowed) */
    uint32_t n_adapters;
    int32_t outtype;          /* MERGE_OUT_AUTO or SM_TYPE_F32 / F16 / BF16 */
    FILE *progress;           /* progress sink or NULL */
    int progress_tty;         /* 1: rewrite one line with \r; 0: one line per tensor */
    uint32_t n_threads;       /* 0: one per online CPU (at most MERGE_MAX_THREADS) */
    int force;                /* replace an existing output (still built aside and renamed in) */
} merge_opts;

typedef struct merge_stat {
    char *name;               /* output tensor name (owned) */
    uint32_t n_deltas;        /* adapters that changed it */
    int replaced;             /* 1 when a modules_to_save tensor replaced it */
    double delta_norm;        /* ||W' - W||_F in F32 before output rounding */
    double base_norm;         /* ||W||_F */
} merge_stat;

typedef struct merge_report {
    merge_stat *stats;        /* [n_stats] changed tensors, in output order */
    uint64_t n_stats;
    uint64_t n_tensors;       /* tensors written in total */
    uint64_t bytes_out;
} merge_report;

/* Runs the merge described by o. On success fills *rep (free with
 * merge_report_free). On failure nothing is left at o->out. */
int merge_run(const merge_opts *o, merge_report *rep, sm_err *err);
void merge_report_free(merge_report *rep);
/* For tools: after sm_out_install_signal_cleanup(), makes SIGINT/SIGTERM/
 * SIGHUP also remove the temporary output directory of an HF merge (the
 * signal is then re-raised with its default action). Idempotent. */
void merge_install_signal_cleanup(void);

/* Writes the report as text (json = 0) or JSON. */
int merge_report_print(const merge_report *rep, FILE *fp, int json, sm_err *err);

/* The PEFT merge loop on one F32 matrix.
 *   a: [r, in], b: [out, r], r >= 1. transpose = 0: w is [out, in];
 *   transpose = 1 (fan_in_fan_out, embeddings): w is [in, out].
 * acc is scratch of `in` floats. Each element is computed as
 * ((B[i][0]A[0][j] + B[i][1]A[1][j]) + ...), then w + scale*acc, in float32. */
void merge_apply_f32(float *w, const float *a, const float *b, int64_t out, int64_t in,
                     uint32_t r, float scale, int transpose, float *acc);
/* The same for rows [row0, row1) of the delta only (threads split rows). */
void merge_apply_rows(float *w, const float *a, const float *b, int64_t out, int64_t in, uint32_t r,
                      float scale, int transpose, int64_t row0, int64_t row1, float *acc);

/* Reorders rows in place the way convert_hf_to_gguf's LlamaModel.permute
 * does for q/k: rows of n_head heads of size hd, (h, 2, hd/2) -> (h, hd/2, 2).
 * rows must be a multiple of 2*n_head. scratch has rows*cols floats. */
int merge_permute_rows(float *m, int64_t rows, int64_t cols, uint32_t n_head, float *scratch);

/* Hugging Face module/tensor name -> GGUF name for llama-family and qwen2
 * ("model.layers.3.self_attn.q_proj.weight" -> "blk.3.attn_q.weight").
 * Returns 0, or -1 when the name has no mapping. */
int merge_hf_to_gguf_name(const char *hf, char *out, size_t out_len);

#endif
