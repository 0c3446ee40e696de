/* collect.h — importance-matrix accumulation, merging and saving, with
 * llama-imatrix's rules (examples/imatrix/imatrix.cpp at c392e5094, and the
 * GGUF format of newer llama.cpp).
 *
 * What is collected: for every matrix multiplication whose weight is named
 * "blk.*" (plus "output.weight" with process_output) and whose input has at
 * least 16 token rows, the per-column sum of x^2 (and of x) over the rows,
 * the number of rows, and one "call". Smaller batches are ignored, as
 * llama.cpp does (its scheduler callback declines src1->ne[1] < 16).
 *
 * State per weight, newer llama.cpp's representation:
 *   sum2[n_mat, n_per_mat], sum[n_mat, n_per_mat], count[n_mat] (rows)
 * plus ncall (calls) for the legacy .dat. Loading a legacy file adds
 * value * chunk_size to sum2 and ncall * chunk_size to count (what newer
 * llama.cpp does), so files of both formats merge weighted by their counts.
 *
 * Saving:
 *   .dat   entries with values sum2/count*ncall, then the trailer
 *          (chunk count, dataset). Weights that received activations in this
 *          run use llama.cpp's float expression (stat.values / counts) *
 *          ncall and llama.cpp's entry order (std::unordered_map iteration
 *          order, emulated by im_order_stdmap); weights that only come from
 *          loaded files keep their input order and use sum2 * ncall / count
 *          evaluated in double, which gives back the loaded value exactly
 *          (chunk sizes that are powers of two), so .dat -> .gguf -> .dat is
 *          byte-identical.
 *   .gguf  general.type, imatrix.datasets, imatrix.chunk_count,
 *          imatrix.chunk_size; per weight W.in_sum2, W.counts, W.in_sum.
 *          Runs that collected activations sort entries by name (newer
 *          llama.cpp); pure conversions keep the input order. */
#ifndef SMELT_IMATRIX_COLLECT_H
#define SMELT_IMATRIX_COLLECT_H

#include "err.h"
#include "imatrix.h"
#include "infer/model.h"

#include <stdint.h>

#define IM_MIN_ROWS 16 /* llama.cpp ignores products with fewer input rows */

typedef struct im_entry {
    char *name;          /* weight name, e.g. "blk.0.attn_q.weight" (owned) */
    int64_t n_per_mat;   /* input columns of the weight */
    int64_t n_mat;       /* matrices: 1 for dense weights, experts in merged MoE files */
    float *sum2;         /* [n_mat, n_per_mat] sum of squared activations (owned) */
    float *sum;          /* [n_mat, n_per_mat] sum of activations; NULL when a source lacked it (owned) */
    int64_t *count;      /* [n_mat] activation rows accumulated (owned) */
    int32_t ncall;       /* products accumulated (legacy ncall) */
    int32_t fresh;       /* 1 once activations of this run were added */
} im_entry;

typedef struct im_collector {
    im_entry *e;             /* [n] in first-seen order (owned) */
    uint32_t n;
    uint32_t cap;
    int32_t chunk_size;      /* tokens per chunk: GGUF chunk_size, legacy scaling */
    int32_t process_output;  /* also collect "output.weight" */
    int32_t last_call;       /* max ncall over weights fed in this run (llama.cpp's m_last_call) */
    int32_t fresh_chunks;    /* chunks evaluated in this run */
    int64_t loaded_chunks;   /* sum of the chunk counts of merged files */
    char **datasets;         /* [n_datasets] dataset names of merged files, then of this run (owned) */
    uint32_t n_datasets;
    char *run_dataset;       /* the -f path of this run, or NULL (owned) */
    int hook_rc;             /* first error raised inside the hook (it cannot return one) */
    sm_err hook_err;
} im_collector;

/* Prepares an empty collector. chunk_size >= 1. Never fails. */
void im_init(im_collector *c, int32_t chunk_size, int32_t process_output);
/* Frees everything; safe on a zeroed or freed collector. */
void im_free(im_collector *c);

/* The sm_mm_hook for sm_ctx: user is the im_collector. Applies the name and
 * row rules above and accumulates. Errors (out of memory, a weight whose
 * column count changed, a non-finite sum) are kept in c->hook_rc/hook_err
 * and stop further accumulation; poll them with im_hook_status. */
void im_hook(void *user, const char *name, const float *x, int32_t n_tokens, int64_t n_in);
/* 0, or the hook's first error (copied into err). */
int im_hook_status(const im_collector *c, sm_err *err);

/* Adds a loaded file (either format) to the collector: entries are created
 * or summed, its datasets appended and its chunk count added. Sizes must
 * agree with what is already held (SM_EMISMATCH naming path and weight);
 * a legacy entry with ncall < 1 is SM_EFORMAT. On error the collector may
 * hold part of the file: callers stop. */
int im_merge(im_collector *c, const sm_imatrix *im, const char *path, sm_err *err);

/* Checks that every held weight exists in the model with the same number of
 * input columns (SM_EMISSING / SM_EMISMATCH naming the weight). */
int im_check_model(const im_collector *c, const sm_model *m, const char *model_path, sm_err *err);

/* Index of the entry for weight name, or -1. */
int64_t im_find(const im_collector *c, const char *name);

/* Records the dataset (-f path) of this run; it goes last in the dataset
 * list and into the legacy trailer. */
int im_set_dataset(im_collector *c, const char *path, sm_err *err);

/* Builds the file image for format (enum sm_imatrix_format) into *out
 * (owned by the caller: sm_imatrix_free). SM_EINVAL when nothing is held. */
int im_build(const im_collector *c, int format, sm_imatrix *out, sm_err *err);

/* im_build + the format's writer (temp file + atomic rename). */
int im_save(const im_collector *c, const char *path, int format, sm_err *err);

/* The entry order of a std::unordered_map<std::string, T> (libstdc++, 64-bit)
 * into which names[0..n) were inserted in that order: order[k] is the index
 * of the k-th name an iteration visits. Names must be distinct. Returns 0,
 * SM_ENOMEM, or SM_ERANGE past the bucket counts it knows (> ~2 million). */
int im_order_stdmap(const char *const *names, uint32_t n, uint32_t *order);

/* libstdc++'s std::hash<std::string> (std::_Hash_bytes, seed 0xc70f6907). */
uint64_t im_hash_bytes(const void *p, uint64_t len);

#endif
