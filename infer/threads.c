#include "threads.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct sm_pool {
    int32_t n;              /* threads including the caller */
    pthread_t *tids;        /* [n-1] workers */
    pthread_mutex_t mu;
    pthread_cond_t go;      /* workers wait here for a new generation */
    pthread_cond_t done;    /* the caller waits here for pending == 0 */
    uint64_t generation;    /* bumped by each pool_run */
    int32_t pending;        /* workers still running the current job */
    int quit;
    pool_fn fn;
    void *arg;
};

struct worker_arg {
    sm_pool *p;
    int32_t ith;
};

static void *pool_worker(void *v)
{
    struct worker_arg *wa = v;
    sm_pool *p = wa->p;
    int32_t ith = wa->ith;
    free(wa);
    uint64_t seen = 0;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        while (!p->quit && p->generation == seen)
            pthread_cond_wait(&p->go, &p->mu);
        if (p->quit) {
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        seen = p->generation;
        pool_fn fn = p->fn;
        void *arg = p->arg;
        pthread_mutex_unlock(&p->mu);

        fn(arg, ith, p->n);

        pthread_mutex_lock(&p->mu);
        if (--p->pending == 0)
            pthread_cond_signal(&p->done);
        pthread_mutex_unlock(&p->mu);
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
    pthread_mutex_lock(&p->mu);
    p->quit = 1;
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
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->arg = arg;
    p->pending = p->n - 1;
    p->generation++;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);

    fn(arg, 0, p->n);

    pthread_mutex_lock(&p->mu);
    while (p->pending > 0)
        pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}
