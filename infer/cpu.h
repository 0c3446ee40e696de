/* cpu.h — which SIMD kernels this CPU can run, decided once at run time.
 *
 * smelt is built without -march: every vector kernel carries its own
 * target attribute and is called only when cpu_level() says the CPU has the
 * instructions. Each level includes the ones below it. */
#ifndef SMELT_INFER_CPU_H
#define SMELT_INFER_CPU_H

enum cpu_level {
    CPU_PORTABLE = 0, /* plain C (the reference every fast kernel must equal) */
    CPU_AVX2 = 1,     /* AVX2 + FMA + F16C */
    CPU_AVX512 = 2,   /* AVX-512 F/BW/DQ/VL (+ VNNI when cpu_has_vnni()) */
};

/* The best level this CPU supports, capped by cpu_force_level() and by the
 * environment (SMELT_CPU=portable|avx2|avx512; SMELT_NO_AVX2=1 means
 * portable). Cheap after the first call; thread-safe once initialised by a
 * single-threaded caller (ctx_init does). */
int cpu_level(void);
/* 1 when AVX512-VNNI (vpdpbusd on zmm/ymm) is usable at the current level. */
int cpu_has_vnni(void);
/* Tests: caps the level at max (CPU_PORTABLE..CPU_AVX512); -1 removes the
 * cap. Not thread-safe: call between runs. */
void cpu_force_level(int max);
/* Tests: 1 hides AVX512-VNNI (an AVX-512 CPU without it), 0 restores. */
void cpu_force_no_vnni(int on);

#endif
