/* mmq_b32.c — AVX2 / AVX-512 VNNI kernels for 32-element block weights
 * (Q4_0, Q5_0, Q8_0, IQ4_NL against Q8_0 activations; Q4_1, Q5_1 against
 * Q8_1 activations).
 *
 * They compute exactly what mm_unpack_row + mm_dot compute. Per (row,
 * token) pair and 32-block the integer part is 8 exact int32 "lane sums"
 * (lane k = products of elements 4k..4k+3); any instruction sequence that
 * gives those integers is equivalent. The f32 part is fixed:
 *   acc[k] = fma(dw * dx, (float)lane[k], acc[k])    in block order
 *   extra  = extra + m * s                           (Q4_1/Q5_1, block order)
 *   y      = hsum8(acc) + extra (+ bias)
 * so every kernel keeps one 8-lane f32 accumulator per pair.
 *
 * Integer part. With VNNI (vpdpbusd: u8 x s8 into int32, no saturation)
 * every weight is decoded to an unsigned byte wu = w + off (off = 0, 8, 16
 * or 128 by type) and the lane sum is dpbusd(wu, x) - off * sum4(x); the
 * correction depends only on the activation block, so it is computed once
 * per token and block and used as the dpbusd starting value for every row.
 * It is exact for every int8 input including x = -128 and w = -128.
 * AVX2 has only vpmaddubsw, which saturates its int16 pair sums: the 4- and
 * 5-bit types use the same offset scheme (15 * 128 * 2 fits int16); Q8_0 and
 * IQ4_NL use |w| x sign(x, w), exact unless an activation is -128 (only
 * quantized NaN/Inf inputs give that), so a call whose activations hold a
 * -128 takes an int16 madd path instead.
 *
 * Tiling. A micro-tile is R rows x T tokens: each decoded weight block is
 * used for T tokens and each activation block for R rows from registers
 * (VNNI: 4 rows x 6 tokens, or 8 rows for a single token; AVX2: 2 x 4).
 * Tokens are blocked so the activation panel stays in L2 while the rows of
 * the range stream through once per panel. Nothing is allocated: the only
 * buffers are a few stack arrays of scale products. */
#include "mmq_impl.h"

#include "cpu.h"
#include "quants.h"
#include "types.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>

#define T_AVX2 __attribute__((target("avx2,fma,f16c")))
#define T_VNNI __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")))
#define INLINE static inline __attribute__((always_inline))

/* Activation panel budget in bytes (a share of a 2 MiB L2). */
#define PANEL_BYTES (512 * 1024)

/* Bytes per weight block of a handled type. */
static inline int wblock_bytes(uint32_t type)
{
    switch (type) {
    case SM_TYPE_Q4_0: return (int)sizeof(sm_block_q4_0);
    case SM_TYPE_Q4_1: return (int)sizeof(sm_block_q4_1);
    case SM_TYPE_Q5_0: return (int)sizeof(sm_block_q5_0);
    case SM_TYPE_Q5_1: return (int)sizeof(sm_block_q5_1);
    case SM_TYPE_Q8_0: return (int)sizeof(sm_block_q8_0);
    case SM_TYPE_IQ4_NL: return (int)sizeof(sm_block_iq4_nl);
    default: return 0;
    }
}

/* 1 for the types whose activations are q8_1 and that add m * s. */
static inline int has_min(uint32_t type) { return type == SM_TYPE_Q4_1 || type == SM_TYPE_Q5_1; }

static inline uint16_t ld16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

static inline uint32_t ld32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* Byte offsets inside a weight block: the f16 min (B32M types), the 5th
 * bits (Q5 types) and the quants. d is always at 0. */
static inline int w_off_m(void) { return 2; }
static inline int w_off_qh(uint32_t type) { return type == SM_TYPE_Q5_0 ? 2 : 4; }
static inline int w_off_qs(uint32_t type)
{
    switch (type) {
    case SM_TYPE_Q4_1: return 4;
    case SM_TYPE_Q5_0: return 6;
    case SM_TYPE_Q5_1: return 8;
    default: return 2;
    }
}

/* The unsigned offset the VNNI decode adds to every weight level. */
static inline int vnni_off(uint32_t type)
{
    switch (type) {
    case SM_TYPE_Q4_0: return 8;
    case SM_TYPE_Q5_0: return 16;
    case SM_TYPE_Q8_0:
    case SM_TYPE_IQ4_NL: return 128;
    default: return 0;
    }
}

/* 1 when the AVX2 kernel of the type uses the sign trick (needs |w| and
 * sign(x, w)); else it uses the offset scheme like VNNI. */
static inline int avx2_signed(uint32_t type) { return type == SM_TYPE_Q8_0 || type == SM_TYPE_IQ4_NL; }

/* Four f16 values to f32 (F16C is exact, as sm_f16_to_f32 on non-NaN). */
T_AVX2 INLINE __m128 f16x4(uint16_t a, uint16_t b, uint16_t c, uint16_t d)
{
    uint64_t v = (uint64_t)a | (uint64_t)b << 16 | (uint64_t)c << 32 | (uint64_t)d << 48;
    return _mm_cvtph_ps(_mm_cvtsi64_si128((long long)v));
}

/* hsum_float_8 of ggml: 128-bit halves added, then movehl, then movehdup;
 * the same order as matmul.c's hsum8_scalar. */
T_AVX2 INLINE float hsum8(__m256 v)
{
    __m128 lo = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

/* Writes the pair results of a tile: hsum of each accumulator plus its
 * extra (0 for the B32 types, added all the same as mm_dot does), plus bias. */
T_AVX2 INLINE void tile_store(const mmq_args *a, int64_t r, int32_t t, int R, int T, const __m256 acc[4][4],
                              const float *ext)
{
#pragma GCC unroll 4
    for (int i = 0; i < R; i++)
#pragma GCC unroll 4
        for (int j = 0; j < T; j++) {
            float v = hsum8(acc[i][j]) + ext[i * 4 + j];
            if (a->bias)
                v = v + a->bias[r + i];
            a->y[(int64_t)(t + j) * a->ldy + r + i] = v;
        }
}

/* ------------------------------------------------------------ AVX-512 VNNI
 *
 * Two (row, token) pairs share one zmm with their lanes interleaved: dword
 * 2k holds group k of the first pair, 2k+1 group k of the second. The
 * inputs are interleaved the same way (vpermt2d of two blocks, vpermd
 * doubling the block both pairs share), so one vpdpbusd, one cvt and one
 * fma do the integer and f32 work of both pairs, and the two scale
 * products d0, d1 form the fma's [d0 d1 d0 d1 ...] operand with a plain
 * 64-bit broadcast load from a small table. Lanes never mix, so each pair
 * still sees exactly fma(d, lane, acc) in block order. */

/* One weight block as 32 unsigned bytes wu (element order) with
 * wu = level + vnni_off(type). */
T_VNNI INLINE __m256i dec_vnni(uint32_t type, const uint8_t *blk, __m256i iq4u)
{
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    if (type == SM_TYPE_Q8_0)
        return _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(const void *)(blk + 2)), _mm256_set1_epi8(-128));
    __m128i q = _mm_loadu_si128((const __m128i *)(const void *)(blk + w_off_qs(type)));
    __m256i v = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), m4);
    if (type == SM_TYPE_IQ4_NL)
        return _mm256_shuffle_epi8(iq4u, v);
    if (type == SM_TYPE_Q5_0 || type == SM_TYPE_Q5_1) {
        __mmask32 hb = (__mmask32)ld32(blk + w_off_qh(type));
        v = _mm256_or_si256(v, _mm256_maskz_mov_epi8(hb, _mm256_set1_epi8(0x10)));
    }
    return v;
}

/* hsum8 of the even (odd = 1: odd) lanes of an interleaved accumulator. */
T_VNNI INLINE float hsum_il(__m512 acc, int odd)
{
    const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m512i od = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 0, 0, 0, 0, 0, 0, 0, 0);
    return hsum8(_mm512_castps512_ps256(_mm512_permutexvar_ps(odd ? od : ev, acc)));
}

/* Writes y for pair (row r, token t): hsum plus extra plus bias. */
T_VNNI INLINE void put(const mmq_args *a, int64_t r, int32_t t, float h, float ext)
{
    float v = h + ext;
    if (a->bias)
        v = v + a->bias[r];
    a->y[(int64_t)t * a->ldy + r] = v;
}

/* [d0 d1 d0 d1 ...]: the scale products of two interleaved pairs, from
 * two adjacent floats of a table in memory. */
T_VNNI INLINE __m512 bcast2(const float *p)
{
    double d2;
    memcpy(&d2, p, 8);
    return _mm512_castpd_ps(_mm512_set1_pd(d2));
}

/* One block of the token tile: row i's doubled block w<i> against token
 * pair k's interleaved blocks x<k> (starting value c<k>). */
#define TT_STEP(i, k)                                                                                           \
    acc##i##k = _mm512_fmadd_ps(bcast2(dd + (i) * 8 + 2 * (k)),                                                  \
                                _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(c##k, w##i, x##k)), acc##i##k)

/* Token tile: rows [r, r+nr) x tokens [t, t+nt), nr <= 4, nt <= 6, always
 * computed as 4 rows x 3 token pairs (t+2k, t+2k+1) with missing rows and
 * tokens replaced by the last valid one and their results dropped. Twelve
 * named accumulators: the tile has to stay in the 32 zmm registers. */
T_VNNI INLINE void tile_tok(const mmq_args *a, uint32_t type, int64_t r, int32_t t, int nr, int nt)
{
    const int wb = wblock_bytes(type), mq = has_min(type), off = vnni_off(type);
    const int ab = mq ? (int)sizeof(sm_block_q8_1) : (int)sizeof(sm_block_q8_0), aq = mq ? 4 : 2;
    const int64_t nb = a->K / 32;
    const uint8_t *wp[4], *xp[6];
    for (int i = 0; i < 4; i++)
        wp[i] = a->w + (uint64_t)(r + (i < nr ? i : nr - 1)) * a->row_bytes;
    for (int j = 0; j < 6; j++)
        xp[j] = a->act + (uint64_t)(t + (j < nt ? j : nt - 1)) * a->act_stride;
    const __m512i dup = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    const __m512i il = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i offv = _mm512_set1_epi8((char)off);
    const __m512i r01 = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    const __m512i r23 = _mm512_setr_epi32(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i iq4u = _mm256_xor_si256(
        _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)sm_iq4nl_values)),
        _mm256_set1_epi8(-128));
    __m512 acc00 = _mm512_setzero_ps(), acc01 = acc00, acc02 = acc00, acc10 = acc00, acc11 = acc00, acc12 = acc00;
    __m512 acc20 = acc00, acc21 = acc00, acc22 = acc00, acc30 = acc00, acc31 = acc00, acc32 = acc00;
    __m512 ext01 = acc00, ext23 = acc00;
    /* dd[i*8 + j] = dw(row i) * dx(token j) of the current block */
    float dd[32] __attribute__((aligned(64)));
    for (int64_t b = 0; b < nb; b++) {
        const int64_t ow = b * wb, ox = b * ab;
        const __m512 dw = _mm512_castps128_ps512(
            f16x4(ld16(wp[0] + ow), ld16(wp[1] + ow), ld16(wp[2] + ow), ld16(wp[3] + ow)));
        const __m256 dx = _mm256_set_m128(f16x4(ld16(xp[4] + ox), ld16(xp[5] + ox), 0, 0),
                                          f16x4(ld16(xp[0] + ox), ld16(xp[1] + ox), ld16(xp[2] + ox),
                                                ld16(xp[3] + ox)));
        const __m512 dx2 = _mm512_insertf32x8(_mm512_castps256_ps512(dx), dx, 1);
        _mm512_store_ps(dd, _mm512_mul_ps(_mm512_permutexvar_ps(r01, dw), dx2));
        _mm512_store_ps(dd + 16, _mm512_mul_ps(_mm512_permutexvar_ps(r23, dw), dx2));
        /* make the compiler reload dd: a 64-bit broadcast load is free,
         * the register shuffles it would use instead are not */
        __asm__ volatile("" : "+m"(dd));
        if (mq) {
            const __m512 mw = _mm512_castps128_ps512(f16x4(ld16(wp[0] + ow + w_off_m()), ld16(wp[1] + ow + w_off_m()),
                                                           ld16(wp[2] + ow + w_off_m()), ld16(wp[3] + ow + w_off_m())));
            const __m256 sx = _mm256_set_m128(f16x4(ld16(xp[4] + ox + 2), ld16(xp[5] + ox + 2), 0, 0),
                                              f16x4(ld16(xp[0] + ox + 2), ld16(xp[1] + ox + 2), ld16(xp[2] + ox + 2),
                                                    ld16(xp[3] + ox + 2)));
            const __m512 sx2 = _mm512_insertf32x8(_mm512_castps256_ps512(sx), sx, 1);
            ext01 = _mm512_add_ps(ext01, _mm512_mul_ps(_mm512_permutexvar_ps(r01, mw), sx2));
            ext23 = _mm512_add_ps(ext23, _mm512_mul_ps(_mm512_permutexvar_ps(r23, mw), sx2));
        }
        const __m512i w0 = _mm512_permutexvar_epi32(dup, _mm512_castsi256_si512(dec_vnni(type, wp[0] + ow, iq4u)));
        const __m512i w1 = _mm512_permutexvar_epi32(dup, _mm512_castsi256_si512(dec_vnni(type, wp[1] + ow, iq4u)));
        const __m512i w2 = _mm512_permutexvar_epi32(dup, _mm512_castsi256_si512(dec_vnni(type, wp[2] + ow, iq4u)));
        const __m512i w3 = _mm512_permutexvar_epi32(dup, _mm512_castsi256_si512(dec_vnni(type, wp[3] + ow, iq4u)));
        __m512i x0, x1, x2, c0, c1, c2;
        {
            const uint8_t *q = xp[0] + ox + aq, *q1 = xp[1] + ox + aq;
            x0 = _mm512_permutex2var_epi32(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(const void *)q)),
                                           il,
                                           _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(const void *)q1)));
            q = xp[2] + ox + aq;
            q1 = xp[3] + ox + aq;
            x1 = _mm512_permutex2var_epi32(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(const void *)q)),
                                           il,
                                           _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(const void *)q1)));
            q = xp[4] + ox + aq;
            q1 = xp[5] + ox + aq;
            x2 = _mm512_permutex2var_epi32(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(const void *)q)),
                                           il,
                                           _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(const void *)q1)));
        }
        /* -off * sum4(x): the starting value that turns wu back into w */
        c0 = c1 = c2 = _mm512_setzero_si512();
        if (off) {
            c0 = _mm512_sub_epi32(c0, _mm512_dpbusd_epi32(_mm512_setzero_si512(), offv, x0));
            c1 = _mm512_sub_epi32(c1, _mm512_dpbusd_epi32(_mm512_setzero_si512(), offv, x1));
            c2 = _mm512_sub_epi32(c2, _mm512_dpbusd_epi32(_mm512_setzero_si512(), offv, x2));
        }
        TT_STEP(0, 0);
        TT_STEP(1, 0);
        TT_STEP(2, 0);
        TT_STEP(3, 0);
        TT_STEP(0, 1);
        TT_STEP(1, 1);
        TT_STEP(2, 1);
        TT_STEP(3, 1);
        TT_STEP(0, 2);
        TT_STEP(1, 2);
        TT_STEP(2, 2);
        TT_STEP(3, 2);
    }
    float e[32] __attribute__((aligned(64)));
    _mm512_store_ps(e, ext01);
    _mm512_store_ps(e + 16, ext23);
    const __m512 accs[12] = {acc00, acc01, acc02, acc10, acc11, acc12, acc20, acc21, acc22, acc30, acc31, acc32};
    for (int i = 0; i < nr; i++)
        for (int j = 0; j < nt; j++)
            put(a, r + i, t + j, hsum_il(accs[i * 3 + j / 2], j % 2), e[i * 8 + j]);
}

/* One block of the row tile: row pair k's interleaved blocks against the
 * doubled activation block. */
#define TR_STEP(k)                                                                                              \
    do {                                                                                                        \
        const __m512i wk = _mm512_permutex2var_epi32(                                                           \
            _mm512_castsi256_si512(dec_vnni(type, wp[2 * (k)] + ow, iq4u)), il,                                 \
            _mm512_castsi256_si512(dec_vnni(type, wp[2 * (k) + 1] + ow, iq4u)));                                \
        acc##k = _mm512_fmadd_ps(bcast2(dd + 2 * (k)), _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(c, wk, x2)), acc##k); \
    } while (0)

/* Row tile for one token t: rows [r, r+nr), nr <= 8, computed as 4 row
 * pairs (r+2k, r+2k+1), missing rows replaced by the last valid one and
 * dropped. Generation streams each weight row once through here. */
T_VNNI INLINE void tile_row(const mmq_args *a, uint32_t type, int64_t r, int32_t t, int nr)
{
    const int wb = wblock_bytes(type), mq = has_min(type), off = vnni_off(type);
    const int ab = mq ? (int)sizeof(sm_block_q8_1) : (int)sizeof(sm_block_q8_0), aq = mq ? 4 : 2;
    const int64_t nb = a->K / 32;
    const uint8_t *wp[8];
    for (int i = 0; i < 8; i++)
        wp[i] = a->w + (uint64_t)(r + (i < nr ? i : nr - 1)) * a->row_bytes;
    const uint8_t *xp = a->act + (uint64_t)t * a->act_stride;
    const __m512i dup = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    const __m512i il = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i offv = _mm512_set1_epi8((char)off);
    const __m256i iq4u = _mm256_xor_si256(
        _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)sm_iq4nl_values)),
        _mm256_set1_epi8(-128));
    __m512 acc0 = _mm512_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
    __m256 ext = _mm256_setzero_ps();
    /* dd[i] = dw(row i) * dx of the current block */
    float dd[8] __attribute__((aligned(32)));
    for (int64_t b = 0; b < nb; b++) {
        const int64_t ow = b * wb, ox = b * ab;
        const __m256 dw = _mm256_set_m128(
            f16x4(ld16(wp[4] + ow), ld16(wp[5] + ow), ld16(wp[6] + ow), ld16(wp[7] + ow)),
            f16x4(ld16(wp[0] + ow), ld16(wp[1] + ow), ld16(wp[2] + ow), ld16(wp[3] + ow)));
        const __m128 dx = f16x4(ld16(xp + ox), 0, 0, 0);
        _mm256_store_ps(dd, _mm256_mul_ps(dw, _mm256_broadcastss_ps(dx)));
        __asm__ volatile("" : "+m"(dd)); /* as in tile_tok */
        if (mq) {
            const __m256 mw = _mm256_set_m128(
                f16x4(ld16(wp[4] + ow + w_off_m()), ld16(wp[5] + ow + w_off_m()), ld16(wp[6] + ow + w_off_m()),
                      ld16(wp[7] + ow + w_off_m())),
                f16x4(ld16(wp[0] + ow + w_off_m()), ld16(wp[1] + ow + w_off_m()), ld16(wp[2] + ow + w_off_m()),
                      ld16(wp[3] + ow + w_off_m())));
            const __m128 sx = f16x4(ld16(xp + ox + 2), 0, 0, 0);
            ext = _mm256_add_ps(ext, _mm256_mul_ps(mw, _mm256_broadcastss_ps(sx)));
        }
        const __m256i x = _mm256_loadu_si256((const __m256i *)(const void *)(xp + ox + aq));
        const __m512i x2 = _mm512_permutexvar_epi32(dup, _mm512_castsi256_si512(x));
        __m512i c = _mm512_setzero_si512();
        if (off)
            c = _mm512_sub_epi32(c, _mm512_dpbusd_epi32(_mm512_setzero_si512(), offv, x2));
        TR_STEP(0);
        TR_STEP(1);
        TR_STEP(2);
        TR_STEP(3);
    }
    float e[8] __attribute__((aligned(32)));
    _mm256_store_ps(e, ext);
    const __m512 accs[4] = {acc0, acc1, acc2, acc3};
    for (int i = 0; i < nr; i++)
        put(a, r + i, t, hsum_il(accs[i / 2], i % 2), e[i]);
}

/* The whole range for one type. Up to 3 tokens (generation): 8-row
 * tiles, one token after the other while the 8 rows are in L1. More: token
 * panels that stay in L2, 4-row x 6-token tiles inside. */
T_VNNI INLINE void range_vnni(const mmq_args *a, uint32_t type)
{
    if (a->n_tok <= 3) {
        for (int64_t r = a->r0; r < a->r1; r += 8)
            for (int32_t t = 0; t < a->n_tok; t++)
                tile_row(a, type, r, t, a->r1 - r < 8 ? (int)(a->r1 - r) : 8);
        return;
    }
    int64_t tb = (int64_t)(PANEL_BYTES / (a->act_stride ? a->act_stride : 1)) / 6 * 6;
    if (tb < 6)
        tb = 6;
    for (int32_t t0 = 0; t0 < a->n_tok; t0 += (int32_t)tb) {
        const int32_t t1 = t0 + tb < a->n_tok ? t0 + (int32_t)tb : a->n_tok;
        for (int64_t r = a->r0; r < a->r1; r += 4)
            for (int32_t t = t0; t < t1; t += 6)
                tile_tok(a, type, r, t, a->r1 - r < 4 ? (int)(a->r1 - r) : 4, t1 - t < 6 ? t1 - t : 6);
    }
}

T_VNNI static void rows_vnni_q4_0(const mmq_args *a) { range_vnni(a, SM_TYPE_Q4_0); }
T_VNNI static void rows_vnni_q4_1(const mmq_args *a) { range_vnni(a, SM_TYPE_Q4_1); }
T_VNNI static void rows_vnni_q5_0(const mmq_args *a) { range_vnni(a, SM_TYPE_Q5_0); }
T_VNNI static void rows_vnni_q5_1(const mmq_args *a) { range_vnni(a, SM_TYPE_Q5_1); }
T_VNNI static void rows_vnni_q8_0(const mmq_args *a) { range_vnni(a, SM_TYPE_Q8_0); }
T_VNNI static void rows_vnni_iq4_nl(const mmq_args *a) { range_vnni(a, SM_TYPE_IQ4_NL); }

/* ------------------------------------------------------------ AVX2 */

/* One weight block as 32 bytes in element order: the signed levels for
 * avx2_signed types, else the unsigned level + vnni_off(type). */
T_AVX2 INLINE __m256i dec_avx2(uint32_t type, const uint8_t *blk, __m256i iq4s)
{
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    if (type == SM_TYPE_Q8_0)
        return _mm256_loadu_si256((const __m256i *)(const void *)(blk + 2));
    __m128i q = _mm_loadu_si128((const __m128i *)(const void *)(blk + w_off_qs(type)));
    __m256i v = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), m4);
    if (type == SM_TYPE_IQ4_NL)
        return _mm256_shuffle_epi8(iq4s, v);
    if (type == SM_TYPE_Q5_0 || type == SM_TYPE_Q5_1) {
        /* bit e of qh -> byte e: spread byte e/8 over 8 bytes, test bit e%8 */
        const __m256i spread = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2,
                                                2, 3, 3, 3, 3, 3, 3, 3, 3);
        const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
        __m256i h = _mm256_shuffle_epi8(_mm256_set1_epi32((int)ld32(blk + w_off_qh(type))), spread);
        h = _mm256_cmpeq_epi8(_mm256_and_si256(h, bit), bit);
        v = _mm256_or_si256(v, _mm256_and_si256(h, _mm256_set1_epi8(0x10)));
    }
    return v;
}

/* Exact lane sums of signed w and x through int16 (any int8 values): the
 * madd pairs regrouped into lanes of 4 consecutive elements. */
T_AVX2 INLINE __m256i lanes_i16(__m256i w, __m256i x)
{
    __m256i s0 = _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm256_castsi256_si128(w)),
                                   _mm256_cvtepi8_epi16(_mm256_castsi256_si128(x)));
    __m256i s1 = _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm256_extracti128_si256(w, 1)),
                                   _mm256_cvtepi8_epi16(_mm256_extracti128_si256(x, 1)));
    return _mm256_permute4x64_epi64(_mm256_hadd_epi32(s0, s1), 0xD8);
}

/* Rows [r, r+R) x tokens [t, t+T) (R <= 2, T <= 4). wide: take the exact
 * int16 path for the signed types (activations hold -128). */
T_AVX2 INLINE void tile_avx2(const mmq_args *a, uint32_t type, int64_t r, int32_t t, int R, int T, int wide)
{
    const int wb = wblock_bytes(type), mq = has_min(type), off = vnni_off(type), sg = avx2_signed(type);
    const int ab = mq ? (int)sizeof(sm_block_q8_1) : (int)sizeof(sm_block_q8_0), aq = mq ? 4 : 2;
    const int64_t nb = a->K / 32;
    const uint8_t *wp[4], *xp[4];
    for (int i = 0; i < 4; i++) {
        wp[i] = a->w + (uint64_t)(r + (i < R ? i : 0)) * a->row_bytes;
        xp[i] = a->act + (uint64_t)(t + (i < T ? i : 0)) * a->act_stride;
    }
    const __m256i ones = _mm256_set1_epi16(1);
    const __m256i offv = _mm256_set1_epi8((char)off);
    const __m256i iq4s = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)sm_iq4nl_values));
    __m256 acc[4][4];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++)
            acc[i][j] = _mm256_setzero_ps();
    __m256 ext0 = _mm256_setzero_ps(), ext1 = _mm256_setzero_ps();
    float dd[16] __attribute__((aligned(32)));
    for (int64_t b = 0; b < nb; b++) {
        const __m128 dw = f16x4(ld16(wp[0] + b * wb), ld16(wp[1] + b * wb), ld16(wp[2] + b * wb),
                                ld16(wp[3] + b * wb));
        const __m128 dx = f16x4(ld16(xp[0] + b * ab), ld16(xp[1] + b * ab), ld16(xp[2] + b * ab),
                                ld16(xp[3] + b * ab));
        /* [i*4+j] = dw[i] * dx[j] for rows 0..3 (only 0..R-1 are read) */
        const __m256 dxx = _mm256_set_m128(dx, dx);
        const __m256 dw01 = _mm256_set_m128(_mm_permute_ps(dw, 0x55), _mm_permute_ps(dw, 0x00));
        const __m256 dw23 = _mm256_set_m128(_mm_permute_ps(dw, 0xFF), _mm_permute_ps(dw, 0xAA));
        _mm256_store_ps(dd, _mm256_mul_ps(dw01, dxx));
        _mm256_store_ps(dd + 8, _mm256_mul_ps(dw23, dxx));
        if (T > 1) /* as in tile_tok; one token has only R products */
            __asm__ volatile("" : "+m"(dd));
        if (mq) {
            const __m128 mw = f16x4(ld16(wp[0] + b * wb + w_off_m()), ld16(wp[1] + b * wb + w_off_m()),
                                    ld16(wp[2] + b * wb + w_off_m()), ld16(wp[3] + b * wb + w_off_m()));
            const __m128 sx = f16x4(ld16(xp[0] + b * ab + 2), ld16(xp[1] + b * ab + 2), ld16(xp[2] + b * ab + 2),
                                    ld16(xp[3] + b * ab + 2));
            const __m256 sxx = _mm256_set_m128(sx, sx);
            const __m256 mw01 = _mm256_set_m128(_mm_permute_ps(mw, 0x55), _mm_permute_ps(mw, 0x00));
            const __m256 mw23 = _mm256_set_m128(_mm_permute_ps(mw, 0xFF), _mm_permute_ps(mw, 0xAA));
            ext0 = _mm256_add_ps(ext0, _mm256_mul_ps(mw01, sxx));
            ext1 = _mm256_add_ps(ext1, _mm256_mul_ps(mw23, sxx));
        }
        __m256i wv[4], wabs[4];
#pragma GCC unroll 4
        for (int i = 0; i < R; i++) {
            wv[i] = dec_avx2(type, wp[i] + b * wb, iq4s);
            wabs[i] = sg && !wide ? _mm256_sign_epi8(wv[i], wv[i]) : wv[i];
        }
#pragma GCC unroll 4
        for (int j = 0; j < T; j++) {
            const __m256i x = _mm256_loadu_si256((const __m256i *)(const void *)(xp[j] + b * ab + aq));
            __m256i c0 = _mm256_setzero_si256();
            if (!sg && off)
                c0 = _mm256_sub_epi32(c0, _mm256_madd_epi16(_mm256_maddubs_epi16(offv, x), ones));
#pragma GCC unroll 4
            for (int i = 0; i < R; i++) {
                __m256i l;
                if (sg && wide)
                    l = lanes_i16(wv[i], x);
                else if (sg)
                    l = _mm256_madd_epi16(_mm256_maddubs_epi16(wabs[i], _mm256_sign_epi8(x, wv[i])), ones);
                else
                    l = _mm256_add_epi32(c0, _mm256_madd_epi16(_mm256_maddubs_epi16(wv[i], x), ones));
                acc[i][j] = _mm256_fmadd_ps(_mm256_set1_ps(dd[i * 4 + j]), _mm256_cvtepi32_ps(l), acc[i][j]);
            }
        }
    }
    float e[16] __attribute__((aligned(32)));
    _mm256_store_ps(e, ext0);
    _mm256_store_ps(e + 8, ext1);
    tile_store(a, r, t, R, T, acc, e);
}

/* 1 when some activation quant of the call is -128. */
T_AVX2 static int act_has_min8(const mmq_args *a)
{
    const int ab = has_min(a->type) ? (int)sizeof(sm_block_q8_1) : (int)sizeof(sm_block_q8_0);
    const int aq = has_min(a->type) ? 4 : 2;
    const __m256i m = _mm256_set1_epi8(-128);
    for (int32_t t = 0; t < a->n_tok; t++) {
        const uint8_t *x = a->act + (uint64_t)t * a->act_stride;
        __m256i any = _mm256_setzero_si256();
        for (int64_t b = 0; b < a->K / 32; b++)
            any = _mm256_or_si256(any, _mm256_cmpeq_epi8(
                                           _mm256_loadu_si256((const __m256i *)(const void *)(x + b * ab + aq)), m));
        if (!_mm256_testz_si256(any, any))
            return 1;
    }
    return 0;
}

T_AVX2 INLINE void range_avx2(const mmq_args *a, uint32_t type)
{
    if (avx2_signed(type) && act_has_min8(a)) {
        for (int64_t r = a->r0; r < a->r1; r++)
            for (int32_t t = 0; t < a->n_tok; t++)
                tile_avx2(a, type, r, t, 1, 1, 1);
        return;
    }
    int64_t tb = (int64_t)(PANEL_BYTES / (a->act_stride ? a->act_stride : 1)) & ~(int64_t)3;
    if (tb < 4)
        tb = 4;
    for (int32_t t0 = 0; t0 < a->n_tok; t0 += (int32_t)tb) {
        const int32_t t1 = t0 + tb < a->n_tok ? t0 + (int32_t)tb : a->n_tok;
        int64_t r = a->r0;
        for (; r + 2 <= a->r1; r += 2) {
            int32_t t = t0;
            for (; t + 4 <= t1; t += 4)
                tile_avx2(a, type, r, t, 2, 4, 0);
            switch (t1 - t) {
            case 3: tile_avx2(a, type, r, t, 2, 3, 0); break;
            case 2: tile_avx2(a, type, r, t, 2, 2, 0); break;
            case 1: tile_avx2(a, type, r, t, 2, 1, 0); break;
            default: break;
            }
        }
        for (; r < a->r1; r++)
            for (int32_t t = t0; t < t1; t++)
                tile_avx2(a, type, r, t, 1, 1, 0);
    }
}

/* Lane sums of a signed IQ4_NL block w and activations x: the sign trick
 * (|w| x sign(x, w)) unless wide (an activation is -128: int16 path). */
T_AVX2 INLINE __m256i iq4v_lanes_avx2(__m256i w, __m256i x, int wide, __m256i ones)
{
    if (wide)
        return lanes_i16(w, x);
    return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w)), ones);
}

/* IQ4_NL against the single token of a one-token product: llama.cpp's
 * ggml_vec_dot_iq4_nl_q8_0 order (see mm_dot_iq4nl_vec): even blocks into
 * acc0, odd ones into acc1, their sum reduced, an odd last block fused in
 * as a scalar. The integer lanes as elsewhere in this file: AVX2 with the
 * sign trick (int16 path when an activation is -128), VNNI with levels +
 * 128 as unsigned bytes and -128 * sum4(x) as the starting value. */
/* The sum of 8 int32 lanes (exact). */
T_AVX2 INLINE int32_t hsum8_epi32(__m256i l)
{
    __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(l), _mm256_extracti128_si256(l, 1));
    s4 = _mm_add_epi32(s4, _mm_unpackhi_epi64(s4, s4));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 1));
    return _mm_cvtsi128_si32(s4);
}

#define IQ4V_ROW(LANES)                                                                                 \
    for (int64_t r = a->r0; r < a->r1; r++) {                                                           \
        const uint8_t *wr = a->w + (uint64_t)r * a->row_bytes;                                          \
        __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();                                  \
        int64_t b = 0;                                                                                  \
        for (; b + 1 < nb; b += 2) {                                                                    \
            const __m256i l0 = LANES(wr + b * wb, b), l1 = LANES(wr + (b + 1) * wb, b + 1);             \
            acc0 = _mm256_fmadd_ps(_mm256_set1_ps(_cvtsh_ss(ld16(wr + b * wb)) * IQ4V_DX(b)),           \
                                   _mm256_cvtepi32_ps(l0), acc0);                                       \
            acc1 = _mm256_fmadd_ps(_mm256_set1_ps(_cvtsh_ss(ld16(wr + (b + 1) * wb)) * IQ4V_DX(b + 1)), \
                                   _mm256_cvtepi32_ps(l1), acc1);                                       \
        }                                                                                               \
        float v = hsum8(_mm256_add_ps(acc0, acc1));                                                     \
        if (b < nb) {                                                                                   \
            const int32_t last = hsum8_epi32(LANES(wr + b * wb, b));                                    \
            v = fmaf((float)last, _cvtsh_ss(ld16(wr + b * wb)) * IQ4V_DX(b), v);                        \
        }                                                                                               \
        a->y[r] = a->bias ? v + a->bias[r] : v;                                                         \
    }

/* The token's per-block values, tabled once per call when the row has at
 * most IQ4V_MAX_BLOCKS blocks, else computed where used. */
enum { IQ4V_MAX_BLOCKS = 2048 };
#define IQ4V_DX(b) (tab ? dx[b] : _cvtsh_ss(ld16(a->act + (b) * ab)))

T_AVX2 static void rows_avx2_iq4nl_vec(const mmq_args *a)
{
    const int64_t nb = a->K / 32;
    const int wb = (int)sizeof(sm_block_iq4_nl), ab = (int)sizeof(sm_block_q8_0);
    const int wide = act_has_min8(a);
    const __m256i ones = _mm256_set1_epi16(1);
    const __m256i iq4s = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)sm_iq4nl_values));
    const int tab = nb <= IQ4V_MAX_BLOCKS;
    float dx[IQ4V_MAX_BLOCKS];
    for (int64_t b = 0; tab && b < nb; b++)
        dx[b] = _cvtsh_ss(ld16(a->act + b * ab));
#define IQ4V_LANES_AVX2(wblk, b)                                                                        \
    iq4v_lanes_avx2(dec_avx2(SM_TYPE_IQ4_NL, (wblk), iq4s),                                             \
                    _mm256_loadu_si256((const __m256i *)(const void *)(a->act + (b) * ab + 2)), wide, ones)
    IQ4V_ROW(IQ4V_LANES_AVX2)
#undef IQ4V_LANES_AVX2
}

/* -128 * sum4(x) of one activation block: the start that turns the
 * unsigned levels + 128 back into signed products. */
T_VNNI INLINE __m256i iq4v_corr(const uint8_t *xb, __m256i off)
{
    const __m256i x = _mm256_loadu_si256((const __m256i *)(const void *)(xb + 2));
    return _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_dpbusd_epi32(_mm256_setzero_si256(), off, x));
}

T_VNNI static void rows_vnni_iq4nl_vec(const mmq_args *a)
{
    const int64_t nb = a->K / 32;
    const int wb = (int)sizeof(sm_block_iq4_nl), ab = (int)sizeof(sm_block_q8_0);
    const __m256i iq4u = _mm256_xor_si256(
        _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)sm_iq4nl_values)),
        _mm256_set1_epi8(-128));
    const __m256i off = _mm256_set1_epi8((char)128);
    const int tab = nb <= IQ4V_MAX_BLOCKS;
    float dx[IQ4V_MAX_BLOCKS];
    __m256i corr[IQ4V_MAX_BLOCKS];
    for (int64_t b = 0; tab && b < nb; b++) {
        corr[b] = iq4v_corr(a->act + b * ab, off);
        dx[b] = _cvtsh_ss(ld16(a->act + b * ab));
    }
#define IQ4V_LANES_VNNI(wblk, b)                                                                        \
    _mm256_dpbusd_epi32(tab ? corr[b] : iq4v_corr(a->act + (b) * ab, off), dec_vnni(SM_TYPE_IQ4_NL, (wblk), iq4u), \
                        _mm256_loadu_si256((const __m256i *)(const void *)(a->act + (b) * ab + 2)))
    IQ4V_ROW(IQ4V_LANES_VNNI)
#undef IQ4V_LANES_VNNI
}

/* -8 * the sum of an activation block's quants. */
static inline int32_t q4x8_corr(const uint8_t *xb)
{
    int32_t sum = 0;
    for (int e = 0; e < 32; e++)
        sum += (int8_t)xb[2 + e];
    return -8 * sum;
}

/* Per token panel, each activation block's -8 * sum(x) and its scale as
 * f32, computed once for every 8-row group (entries: tokens x blocks);
 * rows of more than Q4X8_SUMS blocks compute them where used. */
enum { Q4X8_SUMS = 8192 };
typedef struct q4x8_panel {
    int32_t t0;              /* first token of the panel */
    int32_t corr[Q4X8_SUMS]; /* [nt][nb] -8 * sum of the block's quants */
    float dx[Q4X8_SUMS];     /* [nt][nb] the block's scale */
} q4x8_panel;

#define Q4X8_TILE(NAME, ATTR, LANES, TMAX)                                                                               \
ATTR INLINE void NAME(const mmq_args *a, const q4x8_panel *p, int64_t r, int nr, int32_t t, int T)                       \
{                                                                                                                        \
    const int64_t nb = a->K / 32;                                                                                        \
    const int wb = (int)sizeof(sm_block_q4_0), ab = (int)sizeof(sm_block_q8_0);                                          \
    const __m256i m4 = _mm256_set1_epi8(0x0F), ones16 = _mm256_set1_epi16(1);                                            \
    (void)ones16;                                                                                                        \
    const uint8_t *wp[8], *xp[TMAX];                                                                                     \
    for (int i = 0; i < 8; i++)                                                                                          \
        wp[i] = a->w + (uint64_t)(r + (i < nr ? i : nr - 1)) * a->row_bytes;                                             \
    for (int j = 0; j < TMAX; j++)                                                                                       \
        xp[j] = a->act + (uint64_t)(t + (j < T ? j : T - 1)) * a->act_stride;                                            \
    const int32_t *corr = p ? p->corr + (int64_t)(t - p->t0) * nb : NULL;                                                \
    const float *dx = p ? p->dx + (int64_t)(t - p->t0) * nb : NULL;                                                      \
    __m256 acc[TMAX];                                                                                                    \
    for (int j = 0; j < TMAX; j++)                                                                                       \
        acc[j] = _mm256_setzero_ps();                                                                                    \
    for (int64_t b = 0; b < nb; b++) {                                                                                   \
        __m256i v[8];                                                                                                    \
_Pragma("GCC unroll 8")                                                                                                  \
        for (int i = 0; i < 8; i++) {                                                                                    \
            const __m128i q = _mm_loadu_si128((const __m128i *)(const void *)(wp[i] + b * wb + 2));                      \
            v[i] = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), m4);                                      \
        }                                                                                                                \
        const __m256 dw = _mm256_set_m128(                                                                               \
            f16x4(ld16(wp[4] + b * wb), ld16(wp[5] + b * wb), ld16(wp[6] + b * wb), ld16(wp[7] + b * wb)),               \
            f16x4(ld16(wp[0] + b * wb), ld16(wp[1] + b * wb), ld16(wp[2] + b * wb), ld16(wp[3] + b * wb)));              \
_Pragma("GCC unroll 8")                                                                                                  \
        for (int j = 0; j < T; j++) {                                                                                    \
            const __m256i x = _mm256_loadu_si256((const __m256i *)(const void *)(xp[j] + b * ab + 2));                   \
            __m256i l[8];                                                                                                \
_Pragma("GCC unroll 8")                                                                                                  \
            for (int i = 0; i < 8; i++)                                                                                  \
                l[i] = LANES(v[i], x);                                                                                   \
            const __m256i s01 = _mm256_hadd_epi32(l[0], l[1]), s23 = _mm256_hadd_epi32(l[2], l[3]);                      \
            const __m256i s45 = _mm256_hadd_epi32(l[4], l[5]), s67 = _mm256_hadd_epi32(l[6], l[7]);                      \
            const __m256i s03 = _mm256_hadd_epi32(s01, s23), s47 = _mm256_hadd_epi32(s45, s67);                          \
            const __m256i dot = _mm256_add_epi32(                                                                        \
                _mm256_add_epi32(_mm256_permute2x128_si256(s03, s47, 0x20), _mm256_permute2x128_si256(s03, s47, 0x31)),  \
                _mm256_set1_epi32(corr ? corr[j * nb + b] : q4x8_corr(xp[j] + b * ab)));                                 \
            const __m256 d =                                                                                             \
                _mm256_mul_ps(dw, _mm256_set1_ps(dx ? dx[j * nb + b] : _cvtsh_ss(ld16(xp[j] + b * ab))));                \
            acc[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), d, acc[j]);                                                \
        }                                                                                                                \
    }                                                                                                                    \
    for (int j = 0; j < T; j++) {                                                                                        \
        float o[8];                                                                                                      \
        _mm256_storeu_ps(o, acc[j]);                                                                                     \
        for (int i = 0; i < nr; i++)                                                                                     \
            a->y[(int64_t)(t + j) * a->ldy + r + i] = a->bias ? o[i] + a->bias[r + i] : o[i];                            \
    }                                                                                                                    \
}

#define Q4X8_LANES_AVX2(v, x) _mm256_madd_epi16(_mm256_maddubs_epi16(v, x), ones16)
#define Q4X8_LANES_VNNI(v, x) _mm256_dpbusd_epi32(_mm256_setzero_si256(), v, x)
/* AVX2 has 16 ymm registers: 4 tokens a tile; AVX-512 32: 8 */
Q4X8_TILE(q4x8_tile_avx2, T_AVX2, Q4X8_LANES_AVX2, 4)
Q4X8_TILE(q4x8_tile_vnni, T_VNNI, Q4X8_LANES_VNNI, 8)

#define Q4X8_ROWS(NAME, ATTR, TILE, TMAX)                                                                        \
ATTR static void NAME(const mmq_args *a)                                                                         \
{                                                                                                                \
    const int64_t nb = a->K / 32;                                                                                \
    q4x8_panel p;                                                                                                \
    const int tab = nb <= Q4X8_SUMS;                                                                             \
    int64_t tb = (int64_t)(PANEL_BYTES / (a->act_stride ? a->act_stride : 1));                                   \
    if (tab && tb > Q4X8_SUMS / nb)                                                                              \
        tb = Q4X8_SUMS / nb;                                                                                     \
    if (tb < 1)                                                                                                  \
        tb = 1;                                                                                                  \
    for (int32_t t0 = 0; t0 < a->n_tok; t0 += (int32_t)tb) {                                                     \
        const int32_t t1 = t0 + tb < a->n_tok ? t0 + (int32_t)tb : a->n_tok;                                     \
        p.t0 = t0;                                                                                               \
        for (int32_t t = t0; tab && t < t1; t++)                                                                 \
            for (int64_t b = 0; b < nb; b++) {                                                                   \
                const uint8_t *xb = a->act + (uint64_t)t * a->act_stride + (uint64_t)b * sizeof(sm_block_q8_0);  \
                p.corr[(t - t0) * nb + b] = q4x8_corr(xb);                                                       \
                p.dx[(t - t0) * nb + b] = _cvtsh_ss(ld16(xb));                                                   \
            }                                                                                                    \
        for (int64_t r = a->r0; r < a->r1; r += 8) {                                                             \
            const int nr = a->r1 - r < 8 ? (int)(a->r1 - r) : 8;                                                 \
            int32_t t = t0;                                                                                      \
            for (; t + TMAX <= t1; t += TMAX)                                                                    \
                TILE(a, tab ? &p : NULL, r, nr, t, TMAX);                                                        \
            if (t < t1)                                                                                          \
                TILE(a, tab ? &p : NULL, r, nr, t, t1 - t);                                                      \
        }                                                                                                        \
    }                                                                                                            \
}

Q4X8_ROWS(rows_avx2_q4_0_x8, T_AVX2, q4x8_tile_avx2, 4)
Q4X8_ROWS(rows_vnni_q4_0_x8, T_VNNI, q4x8_tile_vnni, 8)

T_AVX2 static void rows_avx2_q4_0(const mmq_args *a) { range_avx2(a, SM_TYPE_Q4_0); }
T_AVX2 static void rows_avx2_q4_1(const mmq_args *a) { range_avx2(a, SM_TYPE_Q4_1); }
T_AVX2 static void rows_avx2_q5_0(const mmq_args *a) { range_avx2(a, SM_TYPE_Q5_0); }
T_AVX2 static void rows_avx2_q5_1(const mmq_args *a) { range_avx2(a, SM_TYPE_Q5_1); }
T_AVX2 static void rows_avx2_q8_0(const mmq_args *a) { range_avx2(a, SM_TYPE_Q8_0); }
T_AVX2 static void rows_avx2_iq4_nl(const mmq_args *a) { range_avx2(a, SM_TYPE_IQ4_NL); }

#endif /* __x86_64__ */

static int is_b32(uint32_t type)
{
    switch (type) {
    case SM_TYPE_Q4_0:
    case SM_TYPE_Q4_1:
    case SM_TYPE_Q5_0:
    case SM_TYPE_Q5_1:
    case SM_TYPE_Q8_0:
    case SM_TYPE_IQ4_NL: return 1;
    default: return 0;
    }
}

int mmq_b32_q4_0_x8_rows(const mmq_args *a)
{
#if defined(__x86_64__)
    if (cpu_level() < CPU_AVX2)
        return 0;
    if (a->r0 < a->r1 && a->n_tok > 0) {
        if (cpu_has_vnni())
            rows_vnni_q4_0_x8(a);
        else
            rows_avx2_q4_0_x8(a);
    }
    return 1;
#else
    (void)a;
    return 0;
#endif
}

/* Every 32-block type at AVX2 and above (AVX-512 without VNNI runs the
 * AVX2 kernels: it has no u8 x s8 dot without saturation). */
int mmq_b32_handles(uint32_t type)
{
#if defined(__x86_64__)
    return is_b32(type) && cpu_level() >= CPU_AVX2;
#else
    (void)type;
    return 0;
#endif
}

/* The product of mmq_rows for the 32-block types (contract in
 * mmq_impl.h); 0 when this CPU level has no kernel. */
int mmq_b32_rows(const mmq_args *a)
{
#if defined(__x86_64__)
    if (!mmq_b32_handles(a->type))
        return 0;
    if (a->r0 >= a->r1 || a->n_tok <= 0)
        return 1;
    const int vnni = cpu_has_vnni();
    if (a->type == SM_TYPE_IQ4_NL && a->n_tok == 1) {
        if (vnni)
            rows_vnni_iq4nl_vec(a);
        else
            rows_avx2_iq4nl_vec(a);
        return 1;
    }
    switch (a->type) {
    case SM_TYPE_Q4_0: vnni ? rows_vnni_q4_0(a) : rows_avx2_q4_0(a); break;
    case SM_TYPE_Q4_1: vnni ? rows_vnni_q4_1(a) : rows_avx2_q4_1(a); break;
    case SM_TYPE_Q5_0: vnni ? rows_vnni_q5_0(a) : rows_avx2_q5_0(a); break;
    case SM_TYPE_Q5_1: vnni ? rows_vnni_q5_1(a) : rows_avx2_q5_1(a); break;
    case SM_TYPE_Q8_0: vnni ? rows_vnni_q8_0(a) : rows_avx2_q8_0(a); break;
    case SM_TYPE_IQ4_NL: vnni ? rows_vnni_iq4_nl(a) : rows_avx2_iq4_nl(a); break;
    default: return 0;
    }
    return 1;
#else
    (void)a;
    return 0;
#endif
}
