/* safetensors.h — reader for Hugging Face safetensors checkpoints.
 *
 * A file is: u64 little-endian header length N, N bytes of JSON
 * {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
 *  "__metadata__": {"k": "v"}}, then the data bytes; offsets are relative to
 * the end of the header. st_open() accepts a .safetensors file, a sharded
 * model's model.safetensors.index.json, or a model directory (it then reads
 * every model*.safetensors part in sorted name order, as llama.cpp's
 * converter does, and checks them against the index when one exists).
 *
 * Every file is mmapped read-only; st_tensor.data is a borrowed view. The
 * parser rejects: a header longer than ST_MAX_HEADER or than the file,
 * invalid or duplicate-key JSON, unknown dtypes, shapes whose byte size
 * overflows or differs from the data span, spans that are not contiguous
 * from 0 or do not end at the end of the file. Tensor order is header order
 * (jansson keeps insertion order), then shard order. */
#ifndef SMELT_SAFETENSORS_H
#define SMELT_SAFETENSORS_H

#include "err.h"
#include "fileio.h"

#include <stdint.h>

/* 100 MB: the safetensors spec's own limit on the JSON header. */
#define ST_MAX_HEADER (100u * 1000u * 1000u)
#define ST_MAX_DIMS 8
/* An index.json is a name -> file map; 64 MiB covers millions of tensors. */
#define ST_MAX_INDEX (64u << 20)

enum st_dtype {
    ST_F32, ST_F16, ST_BF16, /* supported for conversion */
    ST_F64, ST_I64, ST_I32, ST_I16, ST_I8, ST_U8, ST_BOOL, ST_F8_E4M3, ST_F8_E5M2, ST_U16, ST_U32, ST_U64,
    ST_DTYPE_COUNT
};

typedef struct st_tensor {
    char *name;               /* owned, NUL-terminated */
    uint32_t dtype;           /* enum st_dtype */
    uint32_t n_dims;          /* 0..ST_MAX_DIMS (0 = scalar) */
    int64_t shape[ST_MAX_DIMS]; /* outermost first, as in PyTorch */
    uint64_t n_elements;
    const uint8_t *data;      /* [nbytes] borrowed from the shard's map */
    uint64_t nbytes;
    uint32_t shard;           /* index into st_model.shards */
    uint64_t file_off;        /* absolute offset of data in its shard */
} st_tensor;

typedef struct st_shard {
    char *path;               /* owned */
    sm_map map;
} st_shard;

typedef struct st_model {
    st_shard *shards;         /* [n_shards] */
    uint32_t n_shards;
    st_tensor *tensors;       /* [n_tensors] header order, shard by shard */
    uint64_t n_tensors;
    char *metadata_json;      /* the "__metadata__" object of the first shard as JSON text, or NULL */
} st_model;

/* Opens a file, an index.json or a directory (see above). On failure the
 * model is closed and err names the file, tensor and what was expected. */
int st_open(st_model *m, const char *path, sm_err *err);
/* Parses one safetensors image held by the caller (fuzzing, tests); the
 * tensors are appended to m with shard index `shard`. */
int st_parse(st_model *m, const uint8_t *buf, uint64_t len, const char *name, uint32_t shard, sm_err *err);
/* Checks a sharded model's model.safetensors.index.json, given as text
 * (len bytes, at most ST_MAX_INDEX; index_path names it in messages),
 * against the shards already in m, as st_open does after opening them:
 * "weight_map" must be an object mapping every tensor of m, and only those,
 * to the plain file name (no '/', not "..") of the shard holding it; a named
 * file must exist in dir. SM_EFORMAT / SM_EMISSING / SM_EMISMATCH /
 * SM_ERANGE with err naming the entry; m is not changed. st_open reads the
 * file and calls this; fuzzing and tests call it on a buffer. */
int st_check_index(const st_model *m, const char *dir, const char *text, uint64_t len, const char *index_path,
                   sm_err *err);
void st_close(st_model *m);

/* Index of a tensor by name, or -1. */
int64_t st_find(const st_model *m, const char *name);

const char *st_dtype_name(uint32_t dtype);
uint32_t st_dtype_size(uint32_t dtype);

/* Converts n elements starting at element `first` of t to f32 (exact for
 * F16/BF16). SM_ETYPE for dtypes other than F32/F16/BF16. */
int st_tensor_read_f32(const st_tensor *t, uint64_t first, uint64_t n, float *out, sm_err *err);

/* Lets the kernel drop t's pages once consumed (keeps peak RSS near one tensor). */
void st_tensor_release(const st_model *m, const st_tensor *t);

#endif
