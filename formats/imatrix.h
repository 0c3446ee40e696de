/* imatrix.h — importance-matrix files: llama.cpp's legacy ".dat" and the
 * GGUF imatrix, read and written.
 *
 * Legacy .dat (llama-imatrix at c392e5094, little-endian):
 *   int32 n_entries (>= 1)
 *   n_entries x { int32 name_len; name bytes; int32 ncall; int32 nval;
 *                 float values[nval] }
 *   optional trailer: int32 last_chunk; int32 dataset_len; dataset bytes
 * The stored values are sum(x^2)/count * ncall per column, so llama-quantize
 * divides them by ncall (when ncall > 0) to get the mean square activation.
 *
 * GGUF imatrix (newer llama.cpp): general.type = "imatrix",
 * imatrix.datasets (string array), imatrix.chunk_count (u32),
 * imatrix.chunk_size (u32); per weight W the F32 tensors
 *   W.in_sum2 [n_per_mat, n_mat]  sum of squared activations per column
 *   W.counts  [1, n_mat]          tokens seen per matrix (expert)
 *   W.in_sum  [n_per_mat, n_mat]  optional sum of activations
 * llama-quantize uses in_sum2 / count per matrix, and 1.0 for a matrix whose
 * count is 0 (an expert never routed to).
 *
 * The format is detected by content (the GGUF magic), never by file name. */
#ifndef SMELT_IMATRIX_H
#define SMELT_IMATRIX_H

#include "err.h"

#include <stdint.h>

/* Caps that bound what a crafted file can make the reader allocate. */
#define SM_IMATRIX_MAX_ENTRIES (1u << 20) /* weights in one model */
#define SM_IMATRIX_MAX_NAME 4096u         /* tensor names are short */

enum sm_imatrix_format {
    SM_IMATRIX_LEGACY = 1,
    SM_IMATRIX_GGUF = 2,
};

typedef struct sm_imatrix_entry {
    char *name;          /* weight name, e.g. "blk.0.attn_q.weight" (owned) */
    int64_t n_per_mat;   /* values per matrix = the weight's row length */
    int64_t n_mat;       /* matrices (experts); 1 for dense weights */
    int32_t ncall;       /* legacy: calls accumulated; GGUF: 0 */
    float *sums;         /* [n_mat, n_per_mat] legacy: stored values; GGUF: in_sum2 (owned) */
    float *counts;       /* [n_mat] GGUF: tokens per matrix; NULL for legacy (owned) */
    float *in_sum;       /* [n_mat, n_per_mat] GGUF optional sum of activations, else NULL (owned) */
} sm_imatrix_entry;

typedef struct sm_imatrix {
    int format;                 /* enum sm_imatrix_format */
    uint32_t n_entries;
    sm_imatrix_entry *entries;  /* [n_entries] in file order (owned) */
    int32_t chunk_count;        /* legacy trailer last_chunk / imatrix.chunk_count; 0 when absent */
    uint32_t chunk_size;        /* GGUF imatrix.chunk_size; 0 for legacy */
    uint32_t n_datasets;
    char **datasets;            /* [n_datasets] dataset names (owned); legacy: 0 or 1 */
    int has_trailer;            /* legacy: the chunk/dataset trailer was present */
} sm_imatrix;

/* Parses an imatrix held in memory (either format, detected by the GGUF
 * magic). name is used in messages. Every length, count and name is checked
 * against the bytes left; duplicate names, nval < 1, non-matching GGUF
 * sums/counts pairs and trailing garbage are errors (SM_EFORMAT, SM_ERANGE,
 * SM_EDUP, SM_EMISSING). On success *im owns copies of everything; on
 * failure *im is zeroed. Free with sm_imatrix_free(). */
int sm_imatrix_parse(sm_imatrix *im, const uint8_t *buf, uint64_t len, const char *name, sm_err *err);

/* Reads and parses a file (mmapped, then copied). Errors are prefixed with
 * the path. */
int sm_imatrix_read(sm_imatrix *im, const char *path, sm_err *err);

/* Frees everything *im owns and zeroes it; safe on a zeroed struct. */
void sm_imatrix_free(sm_imatrix *im);

/* Index of the entry named name, or -1. */
int64_t sm_imatrix_find(const sm_imatrix *im, const char *name);

/* The importance values llama-quantize uses for entry e, written to
 * out[n_mat * n_per_mat]: legacy values / ncall (float division, skipped
 * when ncall <= 0); GGUF in_sum2 / count per matrix, or 1.0 where count is 0.
 * Returns 0, or SM_EINVAL when e is malformed. */
int sm_imatrix_entry_values(const sm_imatrix_entry *e, float *out);

/* Writes im in the legacy .dat layout: entries in order with their ncall and
 * sums as stored (callers pass the already-scaled legacy values); the trailer
 * (chunk_count and datasets[0], or "" when there is none) is written when
 * im->has_trailer is set. Output goes through a temp file + rename.
 * Entries must have n_mat * n_per_mat <= INT32_MAX values. */
int sm_imatrix_write_legacy(const sm_imatrix *im, const char *path, sm_err *err);

/* Writes im as a GGUF imatrix: KVs general.type, imatrix.datasets,
 * imatrix.chunk_count, imatrix.chunk_size, then per entry W.in_sum2,
 * W.counts and (when present) W.in_sum, in entry order. Every entry needs
 * counts. Temp file + rename. */
int sm_imatrix_write_gguf(const sm_imatrix *im, const char *path, sm_err *err);

#endif
