/* fileio.h — read-only file maps and atomically replaced output files.
 *
 * sm_map: the whole file mmapped read-only (PROT_READ, MAP_PRIVATE); an empty
 * file maps to {NULL, 0}. Callers borrow {ptr, len} views into it.
 *
 * sm_out: output is written to "<dir>/.<name>.tmp-XXXXXX" beside the
 * destination and renamed over it only by sm_out_commit() after fsync, so a
 * reader never sees a half-written file and an input that is mmapped from the
 * destination path keeps its old inode. sm_out_abort() (also run by
 * sm_out_commit on failure) unlinks the temp file. Temp files still open when
 * a fatal signal arrives are unlinked by sm_out_install_signal_cleanup(). */
#ifndef SMELT_FILEIO_H
#define SMELT_FILEIO_H

#include "err.h"

#include <stdint.h>
#include <stdio.h>

typedef struct sm_map {
    const uint8_t *ptr; /* [len] mapped bytes, read-only; NULL when len == 0 */
    uint64_t len;
} sm_map;

/* Maps path read-only. On failure returns <0, *m is {NULL,0}, err names path. */
int sm_map_open(sm_map *m, const char *path, sm_err *err);
/* Unmaps; safe on a zeroed or already closed map. */
void sm_map_close(sm_map *m);
/* Tells the kernel the bytes [off, off+len) will not be needed again, so
 * streaming readers keep peak RSS near one tensor (pages are dropped). */
void sm_map_release(const sm_map *m, uint64_t off, uint64_t len);

/* Reads a whole (small) file into a malloc'd, NUL-terminated buffer; caps at
 * max_len bytes (SM_ERANGE past it). Caller frees *out. */
int sm_read_file(const char *path, uint64_t max_len, char **out, uint64_t *len, sm_err *err);

typedef struct sm_out {
    FILE *fp;          /* buffered stream onto the temp file */
    char *path;        /* destination path (owned) */
    char *tmp_path;    /* temp path (owned) */
    uint64_t written;  /* bytes written so far */
    int failed;        /* a write failed; commit will refuse */
    int slot;          /* index in the signal-cleanup table, -1 if none */
} sm_out;

/* Creates the temp file for dest. Fails with SM_EIO naming the directory. */
int sm_out_open(sm_out *o, const char *dest, sm_err *err);
/* Appends n bytes. Returns <0 on a write error (disk full: ENOSPC). */
int sm_out_write(sm_out *o, const void *buf, size_t n, sm_err *err);
/* Appends zero bytes up to the next multiple of align (a power of two). */
int sm_out_pad(sm_out *o, uint64_t align, sm_err *err);
/* Flushes, fsyncs and renames over dest; on any failure removes the temp
 * file and returns <0. The sm_out is closed either way. */
int sm_out_commit(sm_out *o, sm_err *err);
/* Closes and unlinks the temp file; dest is untouched. Safe to call twice. */
void sm_out_abort(sm_out *o);

/* Installs SIGINT/SIGTERM/SIGHUP handlers that unlink every open temp file,
 * then re-raise the signal with the default action (so the exit status tells
 * what happened). Idempotent. */
void sm_out_install_signal_cleanup(void);

/* 1 when a and b name the same existing file (same device and inode). */
int sm_same_file(const char *a, const char *b);

#endif
