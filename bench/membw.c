/* membw — the read bandwidth of this machine's main memory, as a streaming
 * vectorized read can get it: the ceiling that token generation (which reads
 * every weight once per token) is measured against in bench/infer.sh.
 *
 * usage: membw [-s MiB] [-t THREADS] [-r PASSES] [--isa avx512|avx2|scalar|plain]
 *              [--small-pages] [--quiet]
 * Defaults: 1024 MiB (far larger than the caches), 2 threads (the benches
 * run with -t 2), 10 passes, the widest ISA the CPU has (--isa plain is the
 * naive one-accumulator loop, for comparison), transparent huge pages
 * requested. Prints the best and the median pass in GB/s (1e9 bytes/s);
 * --quiet prints only the best.
 *
 * Why not a plain loop: one accumulator and scalar loads leave the core's
 * load ports idle waiting on the add chain, so a plain loop reports well
 * below what llama.cpp's F16 generation actually streams here. Each thread
 * reads its own contiguous slice with several independent vector
 * accumulators; the pass time is from the first thread's start to the last
 * thread's end, so it is the whole buffer's bandwidth, not one thread's. */
#include <immintrin.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

enum isa { ISA_PLAIN, ISA_SCALAR, ISA_AVX2, ISA_AVX512 };
static const char *isa_name[] = {"plain", "scalar", "avx2", "avx512"};

typedef uint64_t (*read_fn)(const uint8_t *p, size_t n);

/* The loop anyone would write first: one accumulator, 8-byte loads.
 * n is a multiple of 512. */
static uint64_t read_plain(const uint8_t *p, size_t n)
{
    const uint64_t *q = (const uint64_t *)p;
    uint64_t s = 0;
    for (size_t i = 0; i < n / 8; i++)
        s += q[i];
    return s;
}

/* Portable fallback: 8 independent accumulators so loads are not serialized
 * behind one add chain. n is a multiple of 512. */
static uint64_t read_scalar(const uint8_t *p, size_t n)
{
    const uint64_t *q = (const uint64_t *)p;
    uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0;
    for (size_t i = 0; i < n / 8; i += 8) {
        a0 += q[i + 0];
        a1 += q[i + 1];
        a2 += q[i + 2];
        a3 += q[i + 3];
        a4 += q[i + 4];
        a5 += q[i + 5];
        a6 += q[i + 6];
        a7 += q[i + 7];
    }
    return a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7;
}

/* 256 bytes per iteration into 8 ymm accumulators. p is 64-byte aligned,
 * n a multiple of 512. */
__attribute__((target("avx2"))) static uint64_t read_avx2(const uint8_t *p, size_t n)
{
    __m256i a[8];
    for (int k = 0; k < 8; k++)
        a[k] = _mm256_setzero_si256();
    for (size_t i = 0; i < n; i += 256) {
        const __m256i *v = (const __m256i *)(p + i);
        a[0] = _mm256_add_epi64(a[0], _mm256_load_si256(v + 0));
        a[1] = _mm256_add_epi64(a[1], _mm256_load_si256(v + 1));
        a[2] = _mm256_add_epi64(a[2], _mm256_load_si256(v + 2));
        a[3] = _mm256_add_epi64(a[3], _mm256_load_si256(v + 3));
        a[4] = _mm256_add_epi64(a[4], _mm256_load_si256(v + 4));
        a[5] = _mm256_add_epi64(a[5], _mm256_load_si256(v + 5));
        a[6] = _mm256_add_epi64(a[6], _mm256_load_si256(v + 6));
        a[7] = _mm256_add_epi64(a[7], _mm256_load_si256(v + 7));
    }
    for (int k = 1; k < 8; k++)
        a[0] = _mm256_add_epi64(a[0], a[k]);
    uint64_t t[4];
    _mm256_storeu_si256((__m256i *)t, a[0]);
    return t[0] + t[1] + t[2] + t[3];
}

/* 512 bytes per iteration into 8 zmm accumulators. p is 64-byte aligned,
 * n a multiple of 512. */
__attribute__((target("avx512f"))) static uint64_t read_avx512(const uint8_t *p, size_t n)
{
    __m512i a[8];
    for (int k = 0; k < 8; k++)
        a[k] = _mm512_setzero_si512();
    for (size_t i = 0; i < n; i += 512) {
        const __m512i *v = (const __m512i *)(p + i);
        a[0] = _mm512_add_epi64(a[0], _mm512_load_si512(v + 0));
        a[1] = _mm512_add_epi64(a[1], _mm512_load_si512(v + 1));
        a[2] = _mm512_add_epi64(a[2], _mm512_load_si512(v + 2));
        a[3] = _mm512_add_epi64(a[3], _mm512_load_si512(v + 3));
        a[4] = _mm512_add_epi64(a[4], _mm512_load_si512(v + 4));
        a[5] = _mm512_add_epi64(a[5], _mm512_load_si512(v + 5));
        a[6] = _mm512_add_epi64(a[6], _mm512_load_si512(v + 6));
        a[7] = _mm512_add_epi64(a[7], _mm512_load_si512(v + 7));
    }
    for (int k = 1; k < 8; k++)
        a[0] = _mm512_add_epi64(a[0], a[k]);
    /* unsigned lanes: _mm512_reduce_add_epi64 sums in signed long long,
     * whose overflow is undefined */
    uint64_t t[8];
    _mm512_storeu_si512(t, a[0]);
    return t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
}

typedef struct worker {
    pthread_t tid;
    const uint8_t *slice; /* [bytes], 64-byte aligned: this thread's part of the buffer */
    size_t bytes;         /* multiple of 512 */
    read_fn fn;
    pthread_barrier_t *start; /* shared: all threads begin a pass together */
    int passes;
    double *t0, *t1; /* [passes] this thread's start/end of each pass, seconds */
    uint64_t sum;    /* kept so the reads cannot be optimized away */
} worker;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void *work(void *arg)
{
    worker *w = arg;
    /* first touch from the thread that will read it (page placement), and
     * non-zero so no page is the shared zero page */
    memset((void *)w->slice, 1, w->bytes);
    for (int r = 0; r < w->passes; r++) {
        pthread_barrier_wait(w->start);
        w->t0[r] = now_s();
        w->sum += w->fn(w->slice, w->bytes);
        w->t1[r] = now_s();
    }
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* AnonHugePages of this process in MiB (the buffer is its only large
 * anonymous mapping), or -1 when /proc cannot tell. */
static long anon_huge_mib(void)
{
    FILE *f = fopen("/proc/self/smaps_rollup", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "AnonHugePages: %ld kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb < 0 ? -1 : kb / 1024;
}

static int usage(const char *argv0)
{
    fprintf(stderr, "usage: %s [-s MiB] [-t THREADS] [-r PASSES] [--isa avx512|avx2|scalar|plain] [--small-pages]\n"
            "       [--quiet]\n",
            argv0);
    return 2;
}

int main(int argc, char **argv)
{
    long mib = 1024, threads = 2, passes = 10;
    int quiet = 0, huge = 1;
    enum isa isa = ISA_SCALAR;
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f"))
        isa = ISA_AVX512;
    else if (__builtin_cpu_supports("avx2"))
        isa = ISA_AVX2;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
            quiet = 1;
        } else if (!strcmp(a, "--small-pages")) {
            huge = 0;
        } else if (i + 1 < argc && (!strcmp(a, "-s") || !strcmp(a, "-t") || !strcmp(a, "-r"))) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 1 || v > (a[1] == 's' ? 1L << 20 : a[1] == 't' ? 256 : 10000))
                return usage(argv[0]);
            *(a[1] == 's' ? &mib : a[1] == 't' ? &threads : &passes) = v;
        } else if (i + 1 < argc && !strcmp(a, "--isa")) {
            const char *v = argv[++i];
            int found = 0;
            for (int k = 0; k < 4; k++)
                if (!strcmp(v, isa_name[k])) {
                    isa = (enum isa)k;
                    found = 1;
                }
            if (!found)
                return usage(argv[0]);
            if ((isa == ISA_AVX512 && !__builtin_cpu_supports("avx512f")) ||
                (isa == ISA_AVX2 && !__builtin_cpu_supports("avx2"))) {
                fprintf(stderr, "membw: this CPU has no %s\n", v);
                return 1;
            }
        } else {
            return usage(argv[0]);
        }
    }
    read_fn fns[] = {read_plain, read_scalar, read_avx2, read_avx512};

    /* each slice a multiple of 512 bytes (the widest kernel's step) */
    size_t slice = ((size_t)mib << 20) / (size_t)threads / 512 * 512;
    if (slice == 0) {
        fprintf(stderr, "membw: %ld MiB is too small for %ld threads\n", mib, threads);
        return 1;
    }
    size_t total = slice * (size_t)threads;
    uint8_t *buf = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    /* 2 MiB pages when the kernel gives them: fewer TLB misses (costly in a
     * VM's nested page walk), i.e. the memory's ceiling rather than the
     * page table's; the kernel maps page-cached model files with large
     * folios too. --small-pages measures without. */
    if (buf != MAP_FAILED && huge)
        madvise(buf, total, MADV_HUGEPAGE);
    worker *w = calloc((size_t)threads, sizeof *w);
    double *times = calloc((size_t)threads * 2 * (size_t)passes, sizeof *times);
    double *gbs = calloc((size_t)passes, sizeof *gbs);
    if (buf == MAP_FAILED || !w || !times || !gbs) {
        fprintf(stderr, "membw: out of memory for %zu bytes\n", total);
        return 1;
    }
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, (unsigned)threads);
    for (long k = 0; k < threads; k++) {
        w[k] = (worker){.slice = buf + (size_t)k * slice,
                        .bytes = slice,
                        .fn = fns[isa],
                        .start = &start,
                        .passes = (int)passes,
                        .t0 = times + (size_t)k * 2 * (size_t)passes,
                        .t1 = times + (size_t)k * 2 * (size_t)passes + (size_t)passes};
        if (k > 0 && pthread_create(&w[k].tid, NULL, work, &w[k])) {
            fprintf(stderr, "membw: cannot start thread %ld\n", k);
            return 1;
        }
    }
    work(&w[0]);
    uint64_t sum = w[0].sum;
    for (long k = 1; k < threads; k++) {
        pthread_join(w[k].tid, NULL);
        sum += w[k].sum;
    }
    for (int r = 0; r < passes; r++) {
        double t0 = w[0].t0[r], t1 = w[0].t1[r];
        for (long k = 1; k < threads; k++) {
            t0 = w[k].t0[r] < t0 ? w[k].t0[r] : t0;
            t1 = w[k].t1[r] > t1 ? w[k].t1[r] : t1;
        }
        gbs[r] = total / (t1 - t0) / 1e9;
    }
    long huge_mib = anon_huge_mib();
    qsort(gbs, (size_t)passes, sizeof *gbs, cmp_double);
    /* every byte is 1, so the sum of 64-bit words is known: a check that the
     * kernels read everything exactly once per pass */
    uint64_t want = (uint64_t)passes * (total / 8) * 0x0101010101010101ull;
    if (sum != want) {
        fprintf(stderr, "membw: checksum %llu != %llu (kernel bug)\n", (unsigned long long)sum,
                (unsigned long long)want);
        return 1;
    }
    if (quiet)
        printf("%.2f\n", gbs[passes - 1]);
    else
        printf("read bandwidth: best %.2f GB/s, median %.2f GB/s (%s, %ld threads, %.0f MiB of which %ld MiB in "
               "huge pages, %ld passes)\n",
               gbs[passes - 1], gbs[passes / 2], isa_name[isa], threads, total / 1048576.0, huge_mib, passes);
    pthread_barrier_destroy(&start);
    munmap(buf, total);
    free(gbs);
    free(times);
    free(w);
    return 0;
}
