#include "eval.h"

#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

void mem_estimate(const sm_model *m, int32_t n_ctx, int32_t n_batch, int32_t n_threads, sm_mem_report *r)
{
    memset(r, 0, sizeof *r);
    r->weights = m->weight_bytes;
    if (n_batch > n_ctx)
        n_batch = n_ctx;
    ctx_estimate(m, n_ctx, n_batch, n_threads, &r->kv_cache, &r->compute);
    r->kv_cache_f16 = r->kv_cache; /* the cache is F16 like llama.cpp's */
    r->total = r->weights + r->kv_cache + r->compute;
}

uint64_t mem_peak_rss(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (f) {
        char line[256];
        unsigned long long kb = 0;
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "VmHWM: %llu kB", &kb) == 1)
                break;
        fclose(f);
        if (kb)
            return (uint64_t)kb * 1024u;
    }
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0)
        return (uint64_t)ru.ru_maxrss * 1024u;
    return 0;
}
