#include "threads.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

/* How long a thread polls before it sleeps on a condition variable: a
 * decode step issues hundreds of short runs back to back, and a condvar
 * wake-up costs tens of microseconds each while a polled atomic costs well
 * under one. A poll that times out means the other side is not running
 * (idle between calls, or more threads than cores, where polling only
 * burns the CPU share of the thread that has work): the thread then goes
 * straight to sleep for the next 2^k - 1 waits (k consecutive time-outs,
 * at most 8), which makes an oversubscribed pool behave like a plain
 * condvar pool. 1 ms, not less: the serial stretches between runs
 * (a perplexity chunk's scoring, sampling between decode steps) last
 * 0.1-1 ms, and a 50 us poll timed out there, so the back-off then put
 * both sides to sleep for the next runs, each paying a wake-up (a
 * stories260K perplexity ran on ~1.5 of 2 cores; at 1 ms, ~1.9). */
#define POLL_NS 1000000
#define POLL_MAX_BACKOFF 8

/* Adaptive polling state of one waiting thread. */
typedef struct poll_state {
    int32_t skip;  /* waits left that sleep without polling */
    int32_t fails; /* consecutive polls that timed out */
} poll_state;

/* 1 when the next wait should poll first. */
static int poll_wanted(poll_state *ps)
{
    if (ps->skip > 0) {
        ps->skip--;
        return 0;
    }
    return 1;
}

/* Records how a poll ended (ok: the awaited change came within POLL_NS). */
static void poll_result(poll_state *ps, int ok)
{
    if (ok) {
        ps->fails = 0;
        return;
    }
    if (ps->fails < POLL_MAX_BACKOFF)
        ps->fails++;
    ps->skip = (1 << ps->fails) - 1;
}

/* Synchronisation: the caller publishes fn/arg and bumps `generation`
 * (release); a worker that sees the new value (acquire) reads fn/arg, runs
 * them and decrements `pending` (release); the caller sees 0 (acquire), so
 * every worker's writes are visible when pool_run returns and no worker
 * still reads fn/arg when the next run overwrites them. Sleeping is
 * Dekker-style: the sleeper announces itself (sleepers/waiting, seq_cst)
 * and re-checks the condition under the mutex; the waker changes the
 * condition (seq_cst) and then checks the announcement, signalling under
 * the mutex. One of the two always sees the other, so no wake-up is lost. */
struct sm_pool {
    int32_t n;                   /* threads including the caller */
    pthread_t *tids;             /* [n-1] workers */
    pthread_mutex_t mu;
    pthread_cond_t go;           /* sleeping workers wait here for a new generation */
    pthread_cond_t done;         /* a sleeping caller waits here for pending == 0 */
    _Atomic uint64_t generation; /* bumped by each pool_run */
    _Atomic int32_t pending;     /* workers still running the current job */
    _Atomic int32_t sleepers;    /* workers inside the go wait */
    _Atomic int32_t waiting;     /* 1 while the caller sleeps on done */
    _Atomic int quit;
    poll_state caller_poll;      /* the caller's adaptive polling (caller thread only) */
    pool_fn fn;                  /* the current job, valid for one generation */
    void *arg;
};

struct worker_arg {
    sm_pool *p;
    int32_t ith;
};

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Polls until generation != seen or quit; 1 when one of them happened,
 * 0 after POLL_NS. */
static int poll_generation(sm_pool *p, uint64_t seen)
{
    int64_t t0 = 0;
    for (uint32_t i = 0;; i++) {
        if (atomic_load_explicit(&p->generation, memory_order_acquire) != seen ||
            atomic_load_explicit(&p->quit, memory_order_relaxed))
            return 1;
        cpu_relax();
        if ((i & 63) == 63) {
            int64_t t = now_ns();
            if (!t0)
                t0 = t;
            else if (t - t0 > POLL_NS)
                return 0;
        }
    }
}

static void *pool_worker(void *v)
{
    struct worker_arg *wa = v;
    sm_pool *p = wa->p;
    int32_t ith = wa->ith;
    free(wa);
    uint64_t seen = 0;
    poll_state ps = {0, 0};
    for (;;) {
        int ok = 0;
        if (poll_wanted(&ps)) {
            ok = poll_generation(p, seen);
            poll_result(&ps, ok);
        }
        if (!ok) {
            pthread_mutex_lock(&p->mu);
            atomic_fetch_add(&p->sleepers, 1);
            while (!atomic_load(&p->quit) && atomic_load(&p->generation) == seen)
                pthread_cond_wait(&p->go, &p->mu);
            atomic_fetch_sub(&p->sleepers, 1);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->quit))
            return NULL;
        seen = atomic_load_explicit(&p->generation, memory_order_acquire);
        p->fn(p->arg, ith, p->n);
        if (atomic_fetch_sub(&p->pending, 1) == 1 && atomic_load(&p->waiting)) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
    }
}

sm_pool *pool_create(int32_t n_threads, sm_err *err)
{
    if (n_threads < 1 || n_threads > 512) {
        sm_err_set(err, SM_EINVAL, "thread count %d out of range 1..512", (int)n_threads);
        return NULL;
    }
    sm_pool *p = calloc(1, sizeof *p);
    if (!p) {
        sm_err_set(err, SM_ENOMEM, "thread pool: out of memory");
        return NULL;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->go, NULL);
    pthread_cond_init(&p->done, NULL);
    atomic_init(&p->generation, 0);
    atomic_init(&p->pending, 0);
    atomic_init(&p->sleepers, 0);
    atomic_init(&p->waiting, 0);
    atomic_init(&p->quit, 0);
    p->n = 1; /* workers started so far + the caller; pool_free joins only those */
    if (n_threads > 1 && !(p->tids = calloc((size_t)n_threads - 1, sizeof *p->tids)))
        goto fail;
    for (int32_t i = 1; i < n_threads; i++) {
        struct worker_arg *wa = malloc(sizeof *wa);
        if (!wa)
            goto fail;
        wa->p = p;
        wa->ith = i;
        if (pthread_create(&p->tids[i - 1], NULL, pool_worker, wa) != 0) {
            free(wa);
            goto fail;
        }
        p->n = i + 1;
    }
    return p;
fail:
    sm_err_set(err, SM_ENOMEM, "thread pool: cannot start %d threads (%d running)", (int)n_threads, (int)p->n);
    pool_free(p);
    return NULL;
}

void pool_free(sm_pool *p)
{
    if (!p)
        return;
    /* no run is in progress (pool_run returned): workers poll or sleep */
    atomic_store(&p->quit, 1);
    pthread_mutex_lock(&p->mu);
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    if (p->tids)
        for (int32_t i = 1; i < p->n; i++)
            pthread_join(p->tids[i - 1], NULL);
    pthread_cond_destroy(&p->go);
    pthread_cond_destroy(&p->done);
    pthread_mutex_destroy(&p->mu);
    free(p->tids);
    free(p);
}

int32_t pool_size(const sm_pool *p) { return p ? p->n : 1; }

void pool_run(sm_pool *p, pool_fn fn, void *arg)
{
    if (!p || p->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    atomic_store_explicit(&p->pending, p->n - 1, memory_order_relaxed);
    atomic_fetch_add(&p->generation, 1); /* seq_cst: publishes fn/arg/pending */
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->go);
        pthread_mutex_unlock(&p->mu);
    }

    fn(arg, 0, p->n);

    int64_t t0 = 0;
    const int poll = poll_wanted(&p->caller_poll);
    int ok = 1;
    for (uint32_t i = 0; atomic_load_explicit(&p->pending, memory_order_acquire) > 0; i++) {
        if (poll) {
            cpu_relax();
            if ((i & 63) != 63)
                continue;
            int64_t t = now_ns();
            if (!t0) {
                t0 = t;
                continue;
            }
            if (t - t0 <= POLL_NS)
                continue;
            ok = 0;
        }
        pthread_mutex_lock(&p->mu);
        atomic_store(&p->waiting, 1);
        while (atomic_load(&p->pending) > 0)
            pthread_cond_wait(&p->done, &p->mu);
        atomic_store(&p->waiting, 0);
        pthread_mutex_unlock(&p->mu);
        break;
    }
    if (poll)
        poll_result(&p->caller_poll, ok);
}
