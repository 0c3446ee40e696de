/* fp16.h — IEEE half and bfloat16 conversions, bit-exact with ggml.
 *
 * Why these exact rules: every byte smelt writes must equal what llama.cpp
 * writes, and llama.cpp's quantizers round scales through F16. ggml's
 * portable path (the one its base library is built with on x86-64 without
 * -march flags) rounds f32 -> f16 to nearest, ties to even, produces
 * subnormals exactly, overflows to +-inf, and maps every NaN to the quiet
 * NaN 0x7E00 with the input's sign. F16C's vcvtps2ph agrees on every
 * non-NaN input. f16 -> f32 is exact.
 *
 * bf16 follows ggml_compute_fp32_to_bf16: NaN keeps its top 16 bits and is
 * forced quiet (bit 6 of the low byte of the half), everything else rounds
 * to nearest even by adding 0x7fff + lsb; subnormals are kept, not flushed. */
#ifndef SMELT_FP16_H
#define SMELT_FP16_H

#include <stdint.h>
#include <string.h>

static inline uint32_t sm_f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float sm_bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

static inline float sm_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    if (exp == 0x1f) /* inf or NaN: keep the payload */
        return sm_bits_f32(sign | 0x7f800000u | (man << 13));
    if (exp == 0) {
        if (man == 0)
            return sm_bits_f32(sign);
        /* subnormal: man * 2^-24 is exact in f32 */
        float v = (float)man * 0x1p-24f;
        return sign ? -v : v;
    }
    return sm_bits_f32(sign | ((exp + 112u) << 23) | (man << 13));
}

static inline uint16_t sm_f32_to_f16(float f)
{
    uint32_t u = sm_f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) /* NaN */
        return (uint16_t)(sign | 0x7e00u);
    if (a >= 0x477ff000u) /* >= 65520 rounds to inf (65504 + half ulp) */
        return (uint16_t)(sign | 0x7c00u);
    if (a < 0x38800000u) {
        /* result is subnormal or zero: value / 2^-24, rounded to nearest even.
         * a < 2^-14 so shifting the full significand is exact to decide. */
        if (a < 0x33000000u) /* < 2^-25: rounds to zero (2^-25 is a tie -> 0) */
            return sign;
        uint32_t e = a >> 23;                 /* biased f32 exponent, 102..112 */
        uint32_t m = (a & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126u - e;            /* so that result = m >> shift */
        uint32_t q = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1u);
        uint32_t half = 1u << (shift - 1u);
        if (rem > half || (rem == half && (q & 1u)))
            q++;
        return (uint16_t)(sign | q);
    }
    /* normal: rebias exponent, round 13 dropped bits to nearest even; a carry
     * out of the mantissa correctly bumps the exponent (up to inf). */
    uint32_t r = a + 0x0fffu + ((a >> 13) & 1u);
    return (uint16_t)(sign | ((r - 0x38000000u) >> 13));
}

static inline float sm_bf16_to_f32(uint16_t h) { return sm_bits_f32((uint32_t)h << 16); }

static inline uint16_t sm_f32_to_bf16(float f)
{
    uint32_t u = sm_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 64u);
    return (uint16_t)((u + (0x7fffu + ((u >> 16) & 1u))) >> 16);
}

#endif
