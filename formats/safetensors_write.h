/* safetensors_write.h — streaming safetensors writer.
 *
 * File layout (https://huggingface.co/docs/safetensors): an 8-byte little-
 * endian header length N, N bytes of JSON, then the raw tensor bytes. The JSON
 * maps each tensor name to {"dtype","shape","data_offsets":[begin,end]} with
 * offsets relative to the data section; an optional "__metadata__" object
 * holds string -> string pairs. We write the JSON compactly (no spaces), keep
 * tensors in the order they were added (data in the same order, no gaps) and
 * pad the header with spaces to a multiple of 8 bytes — the layout of the
 * Rust/Python safetensors library, so re-writing a checkpoint in its own
 * header order reproduces it byte for byte.
 *
 * Use: st_writer_init, st_writer_set_metadata*, st_writer_add_tensor for
 * every tensor, st_writer_begin (writes the header to a temp file beside
 * dest), st_writer_write for the tensor bytes in declaration order (any
 * chunking), st_writer_finish (checks all bytes arrived, fsync + rename).
 * On any error call st_writer_abort: dest is never left half-written. */
#ifndef SMELT_SAFETENSORS_WRITE_H
#define SMELT_SAFETENSORS_WRITE_H

#include "err.h"

#include <stdint.h>

#define ST_WRITER_MAX_DIMS 8

typedef struct st_writer st_writer;

/* New empty writer, or NULL on OOM. Free with st_writer_free. */
st_writer *st_writer_init(void);
/* Frees the writer; aborts (unlinks) an unfinished temp file first. */
void st_writer_free(st_writer *w);

/* Adds one "__metadata__" string pair (copied). SM_EDUP on a repeated key. */
int st_writer_set_metadata(st_writer *w, const char *key, const char *value, sm_err *err);
/* Where "__metadata__" goes in the JSON: 0 = first (default), 1 = after the
 * tensors (what torch-saved checkpoints with a sorted header have). */
void st_writer_set_metadata_last(st_writer *w, int last);

/* Declares the next tensor. dtype is an enum st_dtype (safetensors.h);
 * shape has n_dims (0..ST_WRITER_MAX_DIMS) entries,
 * each >= 0. Errors: SM_EDUP (name repeated or "__metadata__"), SM_ETYPE
 * (dtype), SM_ERANGE (shape overflow), SM_EINVAL (after begin). */
int st_writer_add_tensor(st_writer *w, const char *name, uint32_t dtype,
                         uint32_t n_dims, const int64_t *shape, sm_err *err);
/* Byte size of declared tensor i (0 when out of range). */
uint64_t st_writer_tensor_nbytes(const st_writer *w, uint64_t i);
uint64_t st_writer_n_tensors(const st_writer *w);

/* Opens dest's temp file and writes length + JSON header + padding. */
int st_writer_begin(st_writer *w, const char *dest, sm_err *err);
/* Appends n bytes of tensor data (in declaration order, any chunking).
 * SM_ERANGE when more bytes arrive than the tensors declared. */
int st_writer_write(st_writer *w, const void *data, uint64_t n, sm_err *err);
/* SM_EMISMATCH when data is missing; otherwise fsync + rename into place.
 * The temp file is removed on failure. */
int st_writer_finish(st_writer *w, sm_err *err);
/* Removes the temp file (safe to call at any point, and twice). */
void st_writer_abort(st_writer *w);

/* Total file size (valid after every add_tensor). */
uint64_t st_writer_file_size(const st_writer *w);

#endif
