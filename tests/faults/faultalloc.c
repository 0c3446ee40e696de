/* faultalloc.c — see faultalloc.h. The __wrap_* functions replace the
 * allocator for every object linked with -Wl,--wrap=...; __real_* are the
 * C library's (or AddressSanitizer's) functions. */
#include "faultalloc.h"

#include <execinfo.h>
#include <jansson.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
void *__real_realloc(void *p, size_t n);
void __real_free(void *p);

void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t m);
void *__wrap_realloc(void *p, size_t n);
void __wrap_free(void *p);
char *__wrap_strdup(const char *s);
char *__wrap_strndup(const char *s, size_t n);

json_t *__real_json_loadb(const char *buf, size_t len, size_t flags, json_error_t *e);
json_t *__real_json_loads(const char *s, size_t flags, json_error_t *e);
json_t *__real_json_load_file(const char *path, size_t flags, json_error_t *e);
json_t *__wrap_json_loadb(const char *buf, size_t len, size_t flags, json_error_t *e);
json_t *__wrap_json_loads(const char *s, size_t flags, json_error_t *e);
json_t *__wrap_json_load_file(const char *path, size_t flags, json_error_t *e);

#define TOMB ((void *)1)

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t armed;   /* fail when count reaches this (0: never) */
static uint64_t count;   /* allocation calls since fa_arm */
static int fired;
static size_t max_request; /* largest size asked for since fa_reset_max */
static void *fired_trace[24]; /* call stack of the failed allocation */
static int fired_depth;
static void **set;       /* [cap] open-addressing set of live pointers (NULL empty, TOMB deleted) */
static size_t cap, used, tombs;
/* Inside a json_load* call: jansson 2.14's lexer ignores a failed buffer
 * growth and then trips assert(0) in lex_scan_string, so allocations made
 * while parsing are tracked but never failed; the parse as a whole fails
 * instead (as one counted allocation), which is what our code must handle. */
static _Thread_local int in_json_load;

static size_t slot_of(const void *p)
{
    uint64_t x = (uint64_t)(uintptr_t)p;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return (size_t)x & (cap - 1);
}

/* Rebuilds the table at twice the live size (at least 4096 slots). Returns
 * 0 when the real allocator is out of memory (the pointer is then simply not
 * tracked; the live count stays conservative). */
static int set_grow(void)
{
    size_t ncap = 4096;
    while (ncap < 4 * (used + 1))
        ncap *= 2;
    void **old = set;
    size_t ocap = cap;
    void **fresh = __real_calloc(ncap, sizeof *fresh);
    if (!fresh)
        return 0;
    set = fresh;
    cap = ncap;
    used = 0;
    tombs = 0;
    for (size_t i = 0; i < ocap; i++)
        if (old[i] && old[i] != TOMB) {
            size_t k = slot_of(old[i]);
            while (set[k])
                k = (k + 1) & (cap - 1);
            set[k] = old[i];
            used++;
        }
    __real_free(old);
    return 1;
}

static void set_add(void *p)
{
    if ((used + tombs + 1) * 2 > cap && !set_grow())
        return;
    size_t k = slot_of(p);
    while (set[k] && set[k] != TOMB)
        k = (k + 1) & (cap - 1);
    if (set[k] == TOMB)
        tombs--;
    set[k] = p;
    used++;
}

/* Removes p; returns 1 when it was tracked. */
static int set_del(void *p)
{
    if (!cap)
        return 0;
    size_t k = slot_of(p);
    while (set[k]) {
        if (set[k] == p) {
            set[k] = TOMB;
            used--;
            tombs++;
            return 1;
        }
        k = (k + 1) & (cap - 1);
    }
    return 0;
}

/* Counts one allocation call; returns 1 when it must fail. */
static int should_fail(void)
{
    count++;
    if (armed && count == armed) {
        fired = 1;
        fired_depth = backtrace(fired_trace, 24);
        return 1;
    }
    return 0;
}

void *__wrap_malloc(size_t n)
{
    pthread_mutex_lock(&lock);
    if (n > max_request)
        max_request = n;
    void *p = should_fail() ? NULL : __real_malloc(n);
    if (p)
        set_add(p);
    pthread_mutex_unlock(&lock);
    return p;
}

void *__wrap_calloc(size_t n, size_t m)
{
    pthread_mutex_lock(&lock);
    size_t bytes;
    if (__builtin_mul_overflow(n, m, &bytes))
        bytes = SIZE_MAX;
    if (bytes > max_request)
        max_request = bytes;
    void *p = should_fail() ? NULL : __real_calloc(n, m);
    if (p)
        set_add(p);
    pthread_mutex_unlock(&lock);
    return p;
}

void *__wrap_realloc(void *p, size_t n)
{
    pthread_mutex_lock(&lock);
    if (n > max_request)
        max_request = n;
    void *q = NULL;
    if (!should_fail()) {
        q = __real_realloc(p, n);
        if (q || n == 0) {
            if (p)
                set_del(p);
            if (q)
                set_add(q);
        }
    }
    pthread_mutex_unlock(&lock);
    return q;
}

void __wrap_free(void *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&lock);
    set_del(p);
    __real_free(p);
    pthread_mutex_unlock(&lock);
}

char *__wrap_strdup(const char *s)
{
    size_t n = strlen(s);
    char *d = __wrap_malloc(n + 1);
    if (d)
        memcpy(d, s, n + 1);
    return d;
}

char *__wrap_strndup(const char *s, size_t n)
{
    size_t len = strnlen(s, n);
    char *d = __wrap_malloc(len + 1);
    if (d) {
        memcpy(d, s, len);
        d[len] = 0;
    }
    return d;
}

/* jansson's allocator: like __wrap_malloc, but never failing while one of
 * jansson's parsers runs (see in_json_load). */
static void *json_malloc(size_t n)
{
    if (!in_json_load)
        return __wrap_malloc(n);
    pthread_mutex_lock(&lock);
    void *p = __real_malloc(n);
    if (p)
        set_add(p);
    pthread_mutex_unlock(&lock);
    return p;
}

/* Counts a parse as one allocation; when it is the one to fail, returns 1
 * and fills *e the way jansson reports its own out-of-memory. */
static int json_parse_fails(json_error_t *e)
{
    pthread_mutex_lock(&lock);
    int fail = should_fail();
    pthread_mutex_unlock(&lock);
    if (fail && e) {
        memset(e, 0, sizeof *e);
        e->line = -1;
        e->column = -1;
        strcpy(e->text, "out of memory");
        strcpy(e->source, "<fault injection>");
    }
    return fail;
}

json_t *__wrap_json_loadb(const char *buf, size_t len, size_t flags, json_error_t *e)
{
    if (json_parse_fails(e))
        return NULL;
    in_json_load++;
    json_t *j = __real_json_loadb(buf, len, flags, e);
    in_json_load--;
    return j;
}

json_t *__wrap_json_loads(const char *str, size_t flags, json_error_t *e)
{
    if (json_parse_fails(e))
        return NULL;
    in_json_load++;
    json_t *j = __real_json_loads(str, flags, e);
    in_json_load--;
    return j;
}

json_t *__wrap_json_load_file(const char *path, size_t flags, json_error_t *e)
{
    if (json_parse_fails(e))
        return NULL;
    in_json_load++;
    json_t *j = __real_json_load_file(path, flags, e);
    in_json_load--;
    return j;
}

void fa_install(void)
{
    json_set_alloc_funcs(json_malloc, __wrap_free);
}

void fa_arm(uint64_t n)
{
    pthread_mutex_lock(&lock);
    armed = n;
    count = 0;
    fired = 0;
    pthread_mutex_unlock(&lock);
}

uint64_t fa_count(void)
{
    pthread_mutex_lock(&lock);
    uint64_t c = count;
    pthread_mutex_unlock(&lock);
    return c;
}

int fa_fired(void)
{
    pthread_mutex_lock(&lock);
    int f = fired;
    pthread_mutex_unlock(&lock);
    return f;
}

uint64_t fa_live(void)
{
    pthread_mutex_lock(&lock);
    uint64_t u = used;
    pthread_mutex_unlock(&lock);
    return u;
}

void fa_print_trace(int fd)
{
    backtrace_symbols_fd(fired_trace, fired_depth, fd);
}

void fa_reset_max(void)
{
    pthread_mutex_lock(&lock);
    max_request = 0;
    pthread_mutex_unlock(&lock);
}

size_t fa_max_request(void)
{
    pthread_mutex_lock(&lock);
    size_t m = max_request;
    pthread_mutex_unlock(&lock);
    return m;
}
