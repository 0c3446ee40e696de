/* gguf.h — GGUF v3 reader and streaming writer.
 *
 * Reader: gguf_open() mmaps a file read-only and parses the header into
 * arrays of borrowed views; nothing is copied but the index. Every read goes
 * through a bounded little-endian cursor; string and array lengths are capped
 * (GGUF_MAX_* below), shapes and byte sizes use checked multiplication, and
 * the parse rejects: bad magic/version, duplicate keys or tensor names,
 * unknown value or tensor types, n_dims > 4, non-positive dimensions, a
 * non-power-of-two general.alignment, tensor offsets that are unaligned,
 * outside the file, or overlapping. Errors carry the file offset and the key
 * or tensor name. The library never prints.
 *
 * Writer: collect key/values and tensor infos, then gguf_writer_write_header()
 * emits header + KV + tensor infos + padding, and tensor data is streamed in
 * the declared order with gguf_writer_write_tensor(). Output goes through
 * sm_out (temp file + rename). Key and tensor order is kept as added, which is
 * what byte-identical output to llama.cpp's writers needs. */
#ifndef SMELT_GGUF_H
#define SMELT_GGUF_H

#include "err.h"
#include "fileio.h"

#include <stdbool.h>
#include <stdint.h>

enum gguf_vtype {
    GGUF_VT_UINT8 = 0,
    GGUF_VT_INT8 = 1,
    GGUF_VT_UINT16 = 2,
    GGUF_VT_INT16 = 3,
    GGUF_VT_UINT32 = 4,
    GGUF_VT_INT32 = 5,
    GGUF_VT_FLOAT32 = 6,
    GGUF_VT_BOOL = 7,
    GGUF_VT_STRING = 8,
    GGUF_VT_ARRAY = 9,
    GGUF_VT_UINT64 = 10,
    GGUF_VT_INT64 = 11,
    GGUF_VT_FLOAT64 = 12,
    GGUF_VT_COUNT
};

/* Resource caps. Each bounds what a crafted few-hundred-byte file can make
 * the reader allocate or loop over before the length checks against the file
 * size catch it. */
#define GGUF_MAX_STRING (1u << 30)      /* 1 GiB: larger than any chat template or token */
#define GGUF_MAX_KEY 65535u             /* keys are short ASCII paths */
#define GGUF_MAX_ARRAY (1ull << 31)     /* elements; 2 G tokens/merges is far beyond real vocabularies */
#define GGUF_MAX_KV (1u << 20)          /* key/value pairs in one file */
#define GGUF_MAX_TENSORS (1u << 20)     /* tensors in one file (large MoE models have ~50k) */
#define GGUF_MAX_DIMS 4                 /* ggml tensors have at most 4 dimensions */
#define GGUF_DEFAULT_ALIGNMENT 32u

typedef struct sm_str {
    const char *ptr; /* [len] bytes, NOT NUL-terminated, borrowed */
    uint64_t len;
} sm_str;

typedef struct gguf_kv {
    sm_str key;
    uint32_t type;      /* enum gguf_vtype */
    uint32_t arr_type;  /* element type when type == ARRAY */
    uint64_t n;         /* element count (1 for scalars) */
    const uint8_t *raw; /* value bytes in the map (array: first element) */
    uint64_t raw_len;   /* byte length of the value (array: all elements) */
    sm_str *strs;       /* [n] views when an array of strings, else NULL (owned) */
    union {
        uint64_t u64;
        int64_t i64;
        double f64;
        bool b;
        sm_str str;
    } v;                /* decoded scalar (ints widened, floats to double) */
    uint64_t file_off;  /* offset of the key's length field */
} gguf_kv;

typedef struct gguf_tensor {
    sm_str name;
    uint32_t n_dims;     /* 1..4 */
    int64_t ne[GGUF_MAX_DIMS]; /* ne[0] is the row length (fastest); unused dims are 1 */
    uint32_t type;       /* enum sm_type */
    uint64_t offset;     /* relative to the data section */
    uint64_t nbytes;     /* checked ne-product x type size */
    const uint8_t *data; /* [nbytes] into the map */
    uint64_t info_off;   /* file offset of this tensor info */
} gguf_tensor;

typedef struct gguf_file {
    sm_map map;           /* owned when opened with gguf_open() */
    int owns_map;
    uint32_t version;
    uint64_t n_kv;
    gguf_kv *kv;          /* [n_kv] in file order (owned) */
    uint64_t n_tensors;
    gguf_tensor *tensors; /* [n_tensors] in file order (owned) */
    uint32_t alignment;
    uint64_t data_offset; /* file offset of the tensor data section */
    char path[512];       /* for messages */
} gguf_file;

/* Opens and parses path. On failure *g is left closed and err says why,
 * prefixed with the path. Close with gguf_close(). */
int gguf_open(gguf_file *g, const char *path, sm_err *err);
/* Parses a buffer the caller keeps alive (fuzzing, tests). name is used in
 * messages only. */
int gguf_parse(gguf_file *g, const uint8_t *buf, uint64_t len, const char *name, sm_err *err);
void gguf_close(gguf_file *g);

/* Index of key / tensor, or -1. */
int64_t gguf_find_key(const gguf_file *g, const char *key);
int64_t gguf_find_tensor(const gguf_file *g, const char *name);
/* Borrowed KV by name or NULL. */
const gguf_kv *gguf_get(const gguf_file *g, const char *key);

/* Typed getters: return 0 and fill *out when the key exists and holds a
 * scalar convertible without loss (any integer type in range for the ints,
 * f32/f64 for floats); SM_EMISSING when absent; SM_ETYPE otherwise. */
int gguf_get_u32(const gguf_file *g, const char *key, uint32_t *out, sm_err *err);
int gguf_get_u64(const gguf_file *g, const char *key, uint64_t *out, sm_err *err);
int gguf_get_i64(const gguf_file *g, const char *key, int64_t *out, sm_err *err);
int gguf_get_f32(const gguf_file *g, const char *key, float *out, sm_err *err);
int gguf_get_bool(const gguf_file *g, const char *key, bool *out, sm_err *err);
int gguf_get_str(const gguf_file *g, const char *key, sm_str *out, sm_err *err);

/* 1 when the view equals the NUL-terminated string s. */
int sm_str_eq(sm_str a, const char *s);
/* Copies a view into a malloc'd NUL-terminated string (NULL on OOM). */
char *sm_str_dup(sm_str a);

const char *gguf_vtype_name(uint32_t t);
/* Byte size of a fixed-size value type; 0 for STRING/ARRAY/unknown. */
uint32_t gguf_vtype_size(uint32_t t);

/* ---------------------------------------------------------------- writer */

typedef struct gguf_writer gguf_writer;

/* New empty writer (alignment 32 until general.alignment is set). NULL on OOM. */
gguf_writer *gguf_writer_init(void);
void gguf_writer_free(gguf_writer *w);

/* Key/value setters. Keys must be unique (SM_EDUP). Values are copied. */
int gguf_writer_set_u8(gguf_writer *w, const char *key, uint8_t v);
int gguf_writer_set_i8(gguf_writer *w, const char *key, int8_t v);
int gguf_writer_set_u16(gguf_writer *w, const char *key, uint16_t v);
int gguf_writer_set_i16(gguf_writer *w, const char *key, int16_t v);
int gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t v);
int gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t v);
int gguf_writer_set_u64(gguf_writer *w, const char *key, uint64_t v);
int gguf_writer_set_i64(gguf_writer *w, const char *key, int64_t v);
int gguf_writer_set_f32(gguf_writer *w, const char *key, float v);
int gguf_writer_set_f64(gguf_writer *w, const char *key, double v);
int gguf_writer_set_bool(gguf_writer *w, const char *key, bool v);
int gguf_writer_set_str(gguf_writer *w, const char *key, const char *v);
int gguf_writer_set_strn(gguf_writer *w, const char *key, const char *v, uint64_t len);
/* Array of n fixed-size elements of type elem_type (raw little-endian bytes). */
int gguf_writer_set_arr(gguf_writer *w, const char *key, uint32_t elem_type, const void *data, uint64_t n);
/* Array of n strings (views copied). */
int gguf_writer_set_arr_str(gguf_writer *w, const char *key, const sm_str *strs, uint64_t n);
/* Copies one KV from a parsed file (any type), keeping its bytes. */
int gguf_writer_copy_kv(gguf_writer *w, const gguf_kv *kv);
/* Replaces the value of an existing key in place (keeps its position), or
 * appends when absent. Used by tools that rewrite general.file_type. */
int gguf_writer_replace_u32(gguf_writer *w, const char *key, uint32_t v);
/* Removes a key if present (0 either way). */
int gguf_writer_remove(gguf_writer *w, const char *key);
int64_t gguf_writer_find_key(const gguf_writer *w, const char *key);
uint64_t gguf_writer_n_kv(const gguf_writer *w);

/* Declares a tensor; its data offset is assigned in declaration order, each
 * aligned. Fails on duplicate name, unknown type, bad shape, or a row length
 * that is not a multiple of the type's block size. ne as in gguf_tensor. */
int gguf_writer_add_tensor(gguf_writer *w, const char *name, uint32_t n_dims,
                           const int64_t *ne, uint32_t type, sm_err *err);
uint64_t gguf_writer_n_tensors(const gguf_writer *w);
/* Byte size the data of tensor i must have. */
uint64_t gguf_writer_tensor_nbytes(const gguf_writer *w, uint64_t i);
/* Changes the type of declared tensor i before the header is written. */
int gguf_writer_set_tensor_type(gguf_writer *w, uint64_t i, uint32_t type, sm_err *err);

/* Opens dest (temp file) and writes the header, KVs, tensor infos and the
 * padding up to the data section. */
int gguf_writer_begin(gguf_writer *w, const char *dest, sm_err *err);
/* Writes the data of the next tensor in declaration order; nbytes must equal
 * its declared size. Pads to the alignment after it. */
int gguf_writer_write_tensor(gguf_writer *w, const void *data, uint64_t nbytes, sm_err *err);
/* Streams the next tensor in pieces: appends n bytes to it; once its declared
 * size is reached the tensor is complete (padding written). Lets tools keep
 * only a slice of a large tensor in memory. Mixing with write_tensor is fine
 * between tensors, not inside one. */
int gguf_writer_write_tensor_part(gguf_writer *w, const void *data, uint64_t n, sm_err *err);
/* Checks every tensor was written, then fsyncs and renames into place. */
int gguf_writer_finish(gguf_writer *w, sm_err *err);
/* Drops the temp file (on error paths); the writer can then be freed. */
void gguf_writer_abort(gguf_writer *w);
/* Total file size the header + data will have (valid after all add_tensor). */
uint64_t gguf_writer_file_size(const gguf_writer *w);

#endif
