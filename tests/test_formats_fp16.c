/* f32 <-> f16 / bf16 conversions: edge-value tables, an exhaustive f16 round
 * trip, and agreement with the CPU's F16C conversion on random inputs. */
#include <criterion/criterion.h>

#include "formats/fp16.h"

#include <immintrin.h>
#include <math.h>
#include <stdlib.h>

Test(fp16, edge_table)
{
    static const struct {
        uint32_t f;  /* f32 bits */
        uint16_t h;  /* expected f16 */
        const char *why;
    } t[] = {
        {0x00000000, 0x0000, "+0"},
        {0x80000000, 0x8000, "-0"},
        {0x3f800000, 0x3c00, "1"},
        {0x3f801000, 0x3c00, "1 + 2^-11: tie rounds to even (down)"},
        {0x3f803000, 0x3c02, "1 + 3*2^-11: tie rounds to even (up)"},
        {0x3f801001, 0x3c01, "just above the tie rounds up"},
        {0x477fe000, 0x7bff, "65504, the largest half"},
        {0x477fefff, 0x7bff, "just below 65520 stays finite"},
        {0x477ff000, 0x7c00, "65520 rounds to inf"},
        {0x7f7fffff, 0x7c00, "FLT_MAX overflows to inf"},
        {0x7f800000, 0x7c00, "+inf"},
        {0xff800000, 0xfc00, "-inf"},
        {0x38800000, 0x0400, "2^-14, smallest normal"},
        {0x387fc000, 0x03ff, "largest subnormal"},
        {0x33800000, 0x0001, "2^-24, smallest subnormal"},
        {0x33000000, 0x0000, "2^-25 ties to even: 0"},
        {0x33000001, 0x0001, "just above 2^-25 rounds up"},
        {0x33400000, 0x0001, "1.5 * 2^-25"},
        {0x33a00000, 0x0001, "1.25 * 2^-24"},
        {0x33c00000, 0x0002, "1.5 * 2^-24 ties to even: 2"},
        {0x32000000, 0x0000, "tiny flushes to 0"},
        {0x00000001, 0x0000, "f32 subnormal"},
        {0xb3c00000, 0x8002, "negative subnormal tie"},
        {0x7fc00000, 0x7e00, "quiet NaN"},
        {0x7f800001, 0x7e00, "signalling NaN becomes quiet"},
        {0xffc12345, 0xfe00, "negative NaN keeps its sign"},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        uint16_t h = sm_f32_to_f16(sm_bits_f32(t[i].f));
        cr_expect_eq(h, t[i].h, "%s: 0x%08x -> 0x%04x, expected 0x%04x", t[i].why, t[i].f, h, t[i].h);
    }
}

Test(fp16, exhaustive_roundtrip)
{
    for (uint32_t h = 0; h < 65536; h++) {
        float f = sm_f16_to_f32((uint16_t)h);
        int nan = ((h >> 10) & 0x1f) == 0x1f && (h & 0x3ff);
        cr_assert_eq(isnan(f) != 0, nan, "0x%04x", h);
        uint16_t back = sm_f32_to_f16(f);
        if (nan)
            cr_assert_eq(back, (h & 0x8000) | 0x7e00, "NaN 0x%04x", h);
        else
            cr_assert_eq(back, h, "0x%04x -> %g -> 0x%04x", h, (double)f, back);
    }
    cr_assert_eq(sm_f16_to_f32(0x0001), 0x1p-24f);
    cr_assert_eq(sm_f16_to_f32(0x7bff), 65504.0f);
    cr_assert_eq(sm_f16_to_f32(0xc000), -2.0f);
}

__attribute__((target("f16c"))) static uint16_t hw_f32_to_f16(float f)
{
    return (uint16_t)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
}

Test(fp16, agrees_with_f16c)
{
    if (!__builtin_cpu_supports("f16c")) {
        /* nothing to compare against on this CPU: the tables above still run */
        cr_assert(1);
        return;
    }
    uint32_t s = 12345;
    int checked = 0;
    for (int i = 0; i < 2000000; i++) {
        s = s * 1664525u + 1013904223u;
        uint32_t bits = s;
        if (i & 1) /* concentrate half the samples on the f16 range */
            bits = (bits & 0x80ffffffu) | ((uint32_t)(0x66 + (s >> 27) % 0x20) << 23);
        float f = sm_bits_f32(bits);
        if (isnan(f))
            continue;
        uint16_t a = sm_f32_to_f16(f), b = hw_f32_to_f16(f);
        cr_assert_eq(a, b, "0x%08x: 0x%04x vs F16C 0x%04x", bits, a, b);
        checked++;
    }
    cr_assert_gt(checked, 1900000);
}

Test(bf16, edge_table)
{
    static const struct {
        uint32_t f;
        uint16_t h;
        const char *why;
    } t[] = {
        {0x3f800000, 0x3f80, "1"},
        {0x3f808000, 0x3f80, "1 + 2^-8: tie to even (down)"},
        {0x3f818000, 0x3f82, "1 + 3*2^-8: tie to even (up)"},
        {0x3f808001, 0x3f81, "above the tie rounds up"},
        {0x7f7fffff, 0x7f80, "FLT_MAX rounds to inf"},
        {0x7f800000, 0x7f80, "inf"},
        {0x00010000, 0x0001, "subnormal kept, not flushed"},
        {0x00008000, 0x0000, "subnormal tie to even"},
        {0x7fc00001, 0x7fc0, "quiet NaN"},
        {0x7f800001, 0x7fc0, "signalling NaN forced quiet"},
        {0xff800001, 0xffc0, "negative NaN"},
        {0x80000000, 0x8000, "-0"},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        uint16_t h = sm_f32_to_bf16(sm_bits_f32(t[i].f));
        cr_expect_eq(h, t[i].h, "%s: 0x%08x -> 0x%04x, expected 0x%04x", t[i].why, t[i].f, h, t[i].h);
    }
    for (uint32_t h = 0; h < 65536; h++) {
        float f = sm_bf16_to_f32((uint16_t)h);
        if (!isnan(f))
            cr_assert_eq(sm_f32_to_bf16(f), h, "0x%04x", h);
    }
}
