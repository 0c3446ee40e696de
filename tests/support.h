/* support.h — helpers shared by the Criterion suites. */
#ifndef SMELT_TEST_SUPPORT_H
#define SMELT_TEST_SUPPORT_H

#include <stddef.h>
#include <stdint.h>

/* Directory of the shared corpus: $SMELT_SHARED or "../shared". */
const char *ts_shared(void);
/* Path inside the shared corpus, in a static rotating buffer. */
const char *ts_path(const char *rel);
/* Directory holding the built tools: $SMELT_BIN or "build/release". */
const char *ts_bin(void);
/* Fresh temporary directory (mkdtemp under $TMPDIR or /tmp); caller frees.
 * Aborts the test when none can be made. */
char *ts_tmpdir(void);
/* Removes a directory tree (rm -rf). */
void ts_rmtree(const char *dir);
/* Reads a whole file; returns malloc'd bytes or NULL. */
uint8_t *ts_read(const char *path, size_t *len);
/* Writes bytes to path; returns 0 on success. */
int ts_write(const char *path, const void *buf, size_t len);
/* Runs a shell command, capturing stdout+stderr into a malloc'd string
 * (*out, may be NULL); returns the exit status (or 128+signal). */
int ts_run(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* 1 when path exists. */
int ts_exists(const char *path);
/* Number of entries in dir other than . and .. */
int ts_count_entries(const char *dir);

#endif
