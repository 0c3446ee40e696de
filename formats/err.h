/* err.h — error reporting shared by every smelt library module.
 *
 * Contract: library functions never print and never exit. A failing call
 * returns a negative sm_code and, when the caller passed a non-NULL sm_err,
 * fills it with the code and one human-readable line that names the file,
 * key or tensor, the byte offset where it matters, and what was expected.
 * Tools print that line once as "prog: path: reason". */
#ifndef SMELT_ERR_H
#define SMELT_ERR_H

#include <stddef.h>

enum sm_code {
    SM_OK = 0,
    SM_EIO = -1,       /* open/read/write/mmap/rename failed (errno in text) */
    SM_ENOMEM = -2,    /* allocation failed */
    SM_EFORMAT = -3,   /* bytes do not follow the format (magic, truncation, ...) */
    SM_ERANGE = -4,    /* a count, length or offset is out of range / overflows */
    SM_EDUP = -5,      /* duplicate key or tensor name */
    SM_ETYPE = -6,     /* unknown or unsupported type / dtype */
    SM_EMISSING = -7,  /* a required key, tensor or file is absent */
    SM_EUNSUPP = -8,   /* understood but not supported (architecture, option) */
    SM_EINVAL = -9,    /* bad argument from the caller */
    SM_EMISMATCH = -10,/* two inputs disagree (shapes, names, sizes) */
    SM_EINTR = -11,    /* interrupted by a signal */
};

typedef struct sm_err {
    int code;        /* one of enum sm_code */
    char msg[768];   /* one line, no trailing newline */
} sm_err;

/* Sets err (when non-NULL) from a printf format; returns code, so callers can
 * write `return sm_err_set(err, SM_EFORMAT, "...")`. */
int sm_err_set(sm_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefixes the existing message with "prefix: " (e.g. a file name). */
void sm_err_prefix(sm_err *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Short name of a code, e.g. "format error". */
const char *sm_code_name(int code);

#endif
