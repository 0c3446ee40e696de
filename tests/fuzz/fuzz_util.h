/* fuzz_util.h — helpers shared by the libFuzzer targets (header only, so the
 * Makefile's one-source-per-target rule keeps working).
 *
 * Targets that also drive a file or directory entry point (st_open on a
 * sharded directory, cv_convert, quantize's output) get a
 * private scratch directory, created once per process on a RAM file system
 * when there is one, into which the real neighbour files are symlinked; each
 * input is then written there under the file name under test. Every helper
 * aborts on setup failure: a fuzzer that cannot set up must not report
 * "no crash". */
#ifndef SMELT_FUZZ_UTIL_H
#define SMELT_FUZZ_UTIL_H

#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The shared test folder: $SMELT_SHARED, $SHARED, else ../shared. */
static inline const char *fuzz_shared(void)
{
    const char *s = getenv("SMELT_SHARED");
    if (!s || !*s)
        s = getenv("SHARED");
    return s && *s ? s : "../shared";
}

static char fuzz_scratch_dir[256];

static inline int fuzz_rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    remove(p);
    return 0;
}

/* atexit: the scratch directory goes away with the process. */
static inline void fuzz_scratch_remove(void)
{
    if (fuzz_scratch_dir[0])
        nftw(fuzz_scratch_dir, fuzz_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Creates the scratch directory once; returns its path. */
static inline const char *fuzz_scratch(void)
{
    char *dir = fuzz_scratch_dir;
    if (dir[0])
        return dir;
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(dir, sizeof fuzz_scratch_dir, "%s/smelt-fuzz-XXXXXX", base);
    if (!mkdtemp(dir)) {
        perror("fuzz: mkdtemp");
        abort();
    }
    atexit(fuzz_scratch_remove);
    return dir;
}

/* Symlinks $SHARED/<rel> as <scratch>/<as>. */
static inline void fuzz_link_shared(const char *rel, const char *as)
{
    char src[4096], dst[4096];
    snprintf(src, sizeof src, "%s/%s", fuzz_shared(), rel);
    snprintf(dst, sizeof dst, "%s/%s", fuzz_scratch(), as);
    if (src[0] != '/') {
        char cwd[2048];
        if (!getcwd(cwd, sizeof cwd))
            abort();
        char abs[4096 + 2048];
        snprintf(abs, sizeof abs, "%s/%s", cwd, src);
        snprintf(src, sizeof src, "%s", abs);
    }
    if (access(src, R_OK) != 0) {
        fprintf(stderr, "fuzz: %s not readable (set SMELT_SHARED)\n", src);
        abort();
    }
    unlink(dst);
    if (symlink(src, dst) != 0) {
        perror("fuzz: symlink");
        abort();
    }
}

/* Writes the input as <scratch>/<name> (replacing it). */
static inline void fuzz_write(const char *name, const uint8_t *data, size_t size)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", fuzz_scratch(), name);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) {
        perror("fuzz: open");
        abort();
    }
    size_t off = 0;
    while (off < size) {
        ssize_t n = write(fd, data + off, size - off);
        if (n <= 0) {
            perror("fuzz: write");
            abort();
        }
        off += (size_t)n;
    }
    close(fd);
}

/* Reads $SHARED/<rel> whole into a malloc'd buffer (NUL-terminated, kept
 * for the process); *len gets its size. */
static inline char *fuzz_read_shared(const char *rel, size_t *len)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", fuzz_shared(), rel);
    FILE *f = fopen(p, "rb");
    if (!f) {
        fprintf(stderr, "fuzz: %s not readable (set SMELT_SHARED)\n", p);
        abort();
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    size_t k;
    while (buf && (k = fread(buf + n, 1, cap - n, f)) > 0) {
        n += k;
        if (n == cap) {
            char *b = realloc(buf, 2 * cap + 1);
            if (!b)
                free(buf);
            buf = b;
            cap *= 2;
        }
    }
    fclose(f);
    if (!buf)
        abort();
    buf[n] = 0;
    *len = n;
    return buf;
}

/* Removes <scratch>/<name> (absent is fine). */
static inline void fuzz_unlink(const char *name)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", fuzz_scratch(), name);
    unlink(p);
}

#endif
