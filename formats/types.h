/* types.h — ggml tensor types: ids as stored in GGUF, block geometry, names.
 *
 * The numeric ids are part of the GGUF format (ggml.h's enum ggml_type) and
 * must never change. Only the types smelt can at least size are listed with a
 * nonzero block size; an id with blck == 0 is "known to exist, not handled". */
#ifndef SMELT_TYPES_H
#define SMELT_TYPES_H

#include <stddef.h>
#include <stdint.h>

enum sm_type {
    SM_TYPE_F32 = 0,
    SM_TYPE_F16 = 1,
    SM_TYPE_Q4_0 = 2,
    SM_TYPE_Q4_1 = 3,
    SM_TYPE_Q5_0 = 6,
    SM_TYPE_Q5_1 = 7,
    SM_TYPE_Q8_0 = 8,
    SM_TYPE_Q8_1 = 9,
    SM_TYPE_Q2_K = 10,
    SM_TYPE_Q3_K = 11,
    SM_TYPE_Q4_K = 12,
    SM_TYPE_Q5_K = 13,
    SM_TYPE_Q6_K = 14,
    SM_TYPE_Q8_K = 15,
    SM_TYPE_IQ2_XXS = 16,
    SM_TYPE_IQ2_XS = 17,
    SM_TYPE_IQ3_XXS = 18,
    SM_TYPE_IQ1_S = 19,
    SM_TYPE_IQ4_NL = 20,
    SM_TYPE_IQ3_S = 21,
    SM_TYPE_IQ2_S = 22,
    SM_TYPE_IQ4_XS = 23,
    SM_TYPE_I8 = 24,
    SM_TYPE_I16 = 25,
    SM_TYPE_I32 = 26,
    SM_TYPE_I64 = 27,
    SM_TYPE_F64 = 28,
    SM_TYPE_IQ1_M = 29,
    SM_TYPE_BF16 = 30,
    SM_TYPE_TQ1_0 = 34,
    SM_TYPE_TQ2_0 = 35,
    SM_TYPE_COUNT = 39,
};

#define SM_QK_K 256 /* super-block size of the K-quants */

typedef struct sm_type_info {
    const char *name;   /* ggml's name, e.g. "q4_K" */
    uint32_t blck;      /* elements per block; 0 = id unused or unknown */
    uint32_t size;      /* bytes per block */
} sm_type_info;

/* Geometry of type t, or NULL when t is not a valid, sized ggml type. */
const sm_type_info *sm_type_get(uint32_t t);

/* ggml's lower-case name ("f16", "q4_K"), or "?" for an unknown id. */
const char *sm_type_name(uint32_t t);

/* Finds a type by name, case-insensitively ("Q4_K", "q8_0", "bf16").
 * Returns the id, or -1 when no sized type has that name. */
int sm_type_from_name(const char *name);

/* Bytes of one row of n elements of type t. Returns 0 and sets *ok = 0 when
 * t is unknown or n is not a multiple of the block size. */
uint64_t sm_type_row_size(uint32_t t, int64_t n, int *ok);

#endif
