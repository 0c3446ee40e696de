/* threads.h — a small fixed pthread pool for the forward pass.
 *
 * pool_run() runs fn(arg, ith, nth) on every thread (the caller is thread 0)
 * and returns when all are done. Between runs the workers (and the caller,
 * waiting for them) poll an atomic generation counter for a short while (a
 * run then costs about a microsecond of synchronisation), then sleep on a
 * condition variable; a thread whose polls keep timing out (more threads
 * than free cores) skips polling for a growing number of waits. Nothing is
 * allocated per run, so a decode step costs no malloc. One caller at a
 * time; fn must not call pool_run on the same pool. */
#ifndef SMELT_INFER_THREADS_H
#define SMELT_INFER_THREADS_H

#include "err.h"

#include <stdint.h>

typedef void (*pool_fn)(void *arg, int32_t ith, int32_t nth);

typedef struct sm_pool sm_pool;

/* Starts n_threads-1 workers (n_threads >= 1). NULL on failure (err set).
 * Free with pool_free(). */
sm_pool *pool_create(int32_t n_threads, sm_err *err);
/* Joins the workers; safe on NULL. */
void pool_free(sm_pool *p);
/* Number of threads including the caller. */
int32_t pool_size(const sm_pool *p);
/* Runs fn on all threads and waits for every one to finish. */
void pool_run(sm_pool *p, pool_fn fn, void *arg);

/* Splits [0, n) into nth near-equal parts; part ith is [*lo, *hi). */
static inline void pool_split(int64_t n, int32_t ith, int32_t nth, int64_t *lo, int64_t *hi)
{
    int64_t per = (n + nth - 1) / nth;
    int64_t a = per * ith;
    int64_t b = a + per;
    *lo = a < n ? a : n;
    *hi = b < n ? b : n;
}

#endif
