#include "cpu.h"

#if defined(__x86_64__)
#include <cpuid.h>
#endif
#include <stdlib.h>
#include <string.h>

static int detected = -1; /* best level of the hardware (and environment) */
static int vnni;          /* AVX512-VNNI present */
static int cap = -1;      /* cpu_force_level */
static int no_vnni;       /* cpu_force_no_vnni */

static void detect(void)
{
    int lv = CPU_PORTABLE;
#if defined(__x86_64__)
    __builtin_cpu_init();
    /* F16C from CPUID leaf 1 (ECX bit 29): clang 14's
     * __builtin_cpu_supports does not know "f16c" */
    unsigned int a = 0, b = 0, c = 0, d = 0;
    int f16c = __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29));
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c)
        lv = CPU_AVX2;
    if (lv == CPU_AVX2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
        lv = CPU_AVX512;
    vnni = lv == CPU_AVX512 && __builtin_cpu_supports("avx512vnni");
#endif
    const char *e = getenv("SMELT_CPU");
    if (getenv("SMELT_NO_AVX2") || (e && strcmp(e, "portable") == 0))
        lv = CPU_PORTABLE;
    else if (e && strcmp(e, "avx2") == 0 && lv > CPU_AVX2)
        lv = CPU_AVX2;
    detected = lv;
}

int cpu_level(void)
{
    if (detected < 0)
        detect();
    return cap >= 0 && cap < detected ? cap : detected;
}

int cpu_has_vnni(void) { return cpu_level() >= CPU_AVX512 && vnni && !no_vnni; }

void cpu_force_no_vnni(int on) { no_vnni = on; }

void cpu_force_level(int max)
{
    if (detected < 0)
        detect();
    cap = max;
}
