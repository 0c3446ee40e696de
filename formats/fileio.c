#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int sm_map_open(sm_map *m, const char *path, sm_err *err)
{
    m->ptr = NULL;
    m->len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return sm_err_set(err, SM_EIO, "%s: cannot open: %s", path, strerror(errno));
    int rc = SM_OK;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        rc = sm_err_set(err, SM_EIO, "%s: cannot stat: %s", path, strerror(errno));
        goto done;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = sm_err_set(err, SM_EIO, "%s: not a regular file", path);
        goto done;
    }
    if (st.st_size == 0)
        goto done;
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
        rc = sm_err_set(err, SM_EIO, "%s: cannot mmap %lld bytes: %s", path,
                        (long long)st.st_size, strerror(errno));
        goto done;
    }
    m->ptr = p;
    m->len = (uint64_t)st.st_size;
done:
    close(fd);
    return rc;
}

void sm_map_close(sm_map *m)
{
    if (m->ptr && m->len)
        munmap((void *)m->ptr, (size_t)m->len);
    m->ptr = NULL;
    m->len = 0;
}

void sm_map_release(const sm_map *m, uint64_t off, uint64_t len)
{
    if (!m->ptr || off >= m->len)
        return;
    if (len > m->len - off)
        len = m->len - off;
    long pg = sysconf(_SC_PAGESIZE);
    uint64_t page = pg > 0 ? (uint64_t)pg : 4096u;
    /* Only whole pages inside the range: a neighbouring tensor may share the
     * first or last page and is still to be read. */
    uint64_t start = (off + page - 1) / page * page;
    uint64_t end = (off + len) / page * page;
    if (end > start)
        madvise((void *)(m->ptr + start), (size_t)(end - start), MADV_DONTNEED);
}

int sm_read_file(const char *path, uint64_t max_len, char **out, uint64_t *len, sm_err *err)
{
    *out = NULL;
    if (len)
        *len = 0;
    int rc = SM_OK;
    char *buf = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return sm_err_set(err, errno == ENOENT ? SM_EMISSING : SM_EIO, "%s: cannot open: %s",
                          path, strerror(errno));
    struct stat st;
    if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode)) {
        rc = sm_err_set(err, SM_EIO, "%s: not a readable regular file", path);
        goto done;
    }
    if ((uint64_t)st.st_size > max_len) {
        rc = sm_err_set(err, SM_ERANGE, "%s: %lld bytes, more than the %llu allowed", path,
                        (long long)st.st_size, (unsigned long long)max_len);
        goto done;
    }
    buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        rc = sm_err_set(err, SM_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    size_t got = fread(buf, 1, (size_t)st.st_size, fp);
    if (got != (size_t)st.st_size) {
        rc = sm_err_set(err, SM_EIO, "%s: short read (%zu of %lld bytes)", path, got,
                        (long long)st.st_size);
        goto done;
    }
    buf[got] = 0;
    *out = buf;
    buf = NULL;
    if (len)
        *len = got;
done:
    free(buf);
    fclose(fp);
    return rc;
}

/* ------------------------------------------------------------ temp files */

#define SM_OUT_SLOTS 16
/* Paths of open temp files, for the signal handler. Written only outside
 * the handler; the handler reads them and calls only async-signal-safe
 * unlink(). */
static char *volatile out_slots[SM_OUT_SLOTS];

static void out_signal_handler(int sig)
{
    for (int i = 0; i < SM_OUT_SLOTS; i++) {
        char *p = out_slots[i];
        if (p)
            unlink(p);
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

void sm_out_install_signal_cleanup(void)
{
    static int installed;
    if (installed)
        return;
    installed = 1;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = out_signal_handler;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    /* an mmapped input truncated under us faults with SIGBUS on the lost
     * pages: the handler removes the temp files, the re-raise still kills
     * (tests/test_faults_io.c, input_truncated_while_mapped) */
    sigaction(SIGBUS, &sa, NULL);
}

int sm_out_open(sm_out *o, const char *dest, sm_err *err)
{
    memset(o, 0, sizeof *o);
    o->slot = -1;
    int rc = SM_OK;
    size_t n = strlen(dest);
    const char *slash = strrchr(dest, '/');
    size_t dirlen = slash ? (size_t)(slash - dest) + 1 : 0;
    o->path = strdup(dest);
    o->tmp_path = malloc(n + 32);
    if (!o->path || !o->tmp_path) {
        rc = sm_err_set(err, SM_ENOMEM, "%s: out of memory", dest);
        goto fail;
    }
    /* hidden temp name in the destination's directory: rename() is atomic
     * only within one filesystem */
    memcpy(o->tmp_path, dest, dirlen);
    snprintf(o->tmp_path + dirlen, n + 32 - dirlen, ".%s.tmp-XXXXXX", dest + dirlen);
    /* SIGINT/SIGTERM/SIGHUP stay blocked from the temp file's creation until
     * the cleanup handler knows its name: a signal in between would leave it
     * behind (found by tests/test_faults_io.c, which signals as soon as the
     * temp file appears). */
    sigset_t block, old_mask;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &block, &old_mask);
    int fd = mkstemp(o->tmp_path);
    if (fd < 0) {
        pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
        rc = sm_err_set(err, SM_EIO, "%s: cannot create a temporary file beside it: %s", dest,
                        strerror(errno));
        goto fail;
    }
    for (int i = 0; i < SM_OUT_SLOTS; i++) {
        if (!out_slots[i]) {
            out_slots[i] = o->tmp_path;
            o->slot = i;
            break;
        }
    }
    pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
    fchmod(fd, 0644); /* mkstemp makes 0600; outputs are ordinary shared files */
    o->fp = fdopen(fd, "wb");
    if (!o->fp) {
        close(fd);
        unlink(o->tmp_path);
        rc = sm_err_set(err, SM_EIO, "%s: fdopen: %s", dest, strerror(errno));
        if (o->slot >= 0)
            out_slots[o->slot] = NULL;
        o->slot = -1;
        goto fail;
    }
    setvbuf(o->fp, NULL, _IOFBF, 1 << 20);
    return SM_OK;
fail:
    free(o->path);
    free(o->tmp_path);
    o->path = o->tmp_path = NULL;
    return rc;
}

int sm_out_write(sm_out *o, const void *buf, size_t n, sm_err *err)
{
    if (o->failed || !o->fp)
        return sm_err_set(err, SM_EIO, "%s: write after a failed write", o->path ? o->path : "?");
    if (n && fwrite(buf, 1, n, o->fp) != n) {
        o->failed = 1;
        return sm_err_set(err, SM_EIO, "%s: write failed at byte %llu: %s", o->path,
                          (unsigned long long)o->written, strerror(errno));
    }
    o->written += n;
    return SM_OK;
}

int sm_out_pad(sm_out *o, uint64_t align, sm_err *err)
{
    static const uint8_t zeros[64];
    uint64_t pad = (align - (o->written % align)) % align;
    while (pad) {
        size_t k = pad < sizeof zeros ? (size_t)pad : sizeof zeros;
        int rc = sm_out_write(o, zeros, k, err);
        if (rc)
            return rc;
        pad -= k;
    }
    return SM_OK;
}

static void out_release(sm_out *o)
{
    if (o->slot >= 0)
        out_slots[o->slot] = NULL;
    o->slot = -1;
    free(o->path);
    free(o->tmp_path);
    o->path = o->tmp_path = NULL;
}

void sm_out_abort(sm_out *o)
{
    if (o->fp) {
        fclose(o->fp);
        o->fp = NULL;
    }
    if (o->tmp_path)
        unlink(o->tmp_path);
    out_release(o);
}

int sm_out_commit(sm_out *o, sm_err *err)
{
    int rc = SM_OK;
    if (!o->fp)
        return sm_err_set(err, SM_EINVAL, "commit of a closed output");
    if (o->failed) {
        rc = sm_err_set(err, SM_EIO, "%s: an earlier write failed", o->path);
        goto fail;
    }
    if (fflush(o->fp) != 0 || fsync(fileno(o->fp)) != 0) {
        rc = sm_err_set(err, SM_EIO, "%s: flush failed: %s", o->path, strerror(errno));
        goto fail;
    }
    if (fclose(o->fp) != 0) {
        o->fp = NULL;
        rc = sm_err_set(err, SM_EIO, "%s: close failed: %s", o->path, strerror(errno));
        goto fail;
    }
    o->fp = NULL;
    if (rename(o->tmp_path, o->path) != 0) {
        rc = sm_err_set(err, SM_EIO, "%s: cannot rename the temporary file into place: %s",
                        o->path, strerror(errno));
        goto fail;
    }
    out_release(o);
    return SM_OK;
fail:
    sm_out_abort(o);
    return rc;
}

int sm_same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    if (stat(a, &sa) != 0 || stat(b, &sb) != 0)
        return 0;
    return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}
