/* mmq_k3.c — AVX2 / AVX-512 VNNI kernels for Q2_K and Q3_K weights
 * against Q8_K activations.
 *
 * They compute exactly what mm_unpack_row + mm_dot compute. Per (row,
 * token) pair and 256-block the integer part is 8 exact int32 lane sums
 * (lane k = sum of level * sub-block scale * activation over the elements e
 * with (e % 32) / 4 == k); any instruction sequence giving those integers is
 * equivalent. The f32 part is fixed, per block in order:
 *   Q2_K:  acc[k] = fma(-y.d * x.dmin, (float)(mn[2k]*bsum[2k] + mn[2k+1]*bsum[2k+1]), acc[k])
 *   both:  acc[k] = fma(y.d * x.d, (float)lane[k], acc[k])
 * and at the end y = hsum8(acc) + 0.0f (+ bias).
 *
 * Element e of a block is chunk c = e / 32 (c = 4h + j: bits 2j..2j+1 of
 * qs[32h + e % 32], Q3_K high bit c of hmask[e % 32]), its 4-group is
 * (e % 32) / 4 = its lane, its sub-block (scale) e / 16.
 *
 * AVX-512 VNNI. A zmm holds chunks 2j and 2j+1 (64 bytes, the activation
 * bytes y.qs[64j..64j+63] as they are in memory), so vpdpbusd (u8 x s8, 4
 * products per dword) gives 16 4-group sums in dword order, dword m = lane
 * m % 8; the two 256-bit halves of the accumulator add to the 8 lanes.
 * Where level * scale fits in a byte the row's decode multiplies the
 * sub-block scale into the level bytes (vpmullw: the low byte of a 16-bit
 * product depends only on the low bytes) and one vpdpbusd per zmm does all:
 *   Q2_K:  level 0..3 * scale 0..15 = 0..45 (unsigned): dpbusd(w, y).
 *   Q3_K, many tokens: -level * scale is -128..124 (signed; +level * scale
 *          would reach +128), so dpbusd(y ^ 0x80, w) = sum (y + 128) * w,
 *          started at the row's -128 * sum(w) per dword, lanes negated.
 *   Q3_K, 1..4 tokens: less decode per row pays more: dpbusd(level + 4, y)
 *          starts at -4 * the activations' 4-sums (computed once per token
 *          and block of the call), giving exact 4-group sums of level * y
 *          (|.| <= 2048, an int16), which vpdpwssd multiplies by a dword
 *          holding the group's scale in its low word and 0 in its high word.
 *
 * AVX2 (also used on AVX-512 CPUs without VNNI). A ymm holds one chunk;
 * vpmaddubsw(level, y) gives pair sums (Q3_K: level + 4 in 0..7, minus
 * maddubs(4, y) of the token, |.| <= 2*7*128), vpmaddwd with the int16
 * sub-block scale gives the scaled 4-group sums = the 8 lanes.
 *
 * Tiling. A tile of rows (VNNI: 4, or 2 when the scales take registers
 * too; AVX2: 2, decoded into a small stack buffer unless there is one
 * token) is decoded once per block and run against every token of a token
 * panel, whose activation blocks (panel * K/256 * 292 bytes) stay in L2
 * while the rows of the range stream through; the f32 lane accumulators of
 * the panel live in a stack array. Short tiles at the end of the range
 * repeat their last row. */
#include "mmq_impl.h"

#include "cpu.h"
#include "fp16.h"
#include "quants.h"
#include "types.h"

#include <stddef.h>

#if defined(__x86_64__)
#include <immintrin.h>

#define K3_AVX2 __attribute__((target("avx2,fma,f16c")))
#define K3_AVX512 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")))
#define K3_INLINE static inline __attribute__((always_inline))

/* Tokens per panel: the f32 accumulators are [K3_PANEL][4 rows][8]. */
#define K3_PANEL 64

/* Bytes of activation blocks wanted in L2 at once. */
#define K3_PANEL_BYTES (768 * 1024)

static int32_t panel_tokens(int64_t nb)
{
    int64_t p = K3_PANEL_BYTES / (nb * (int64_t)sizeof(sm_block_q8_K));
    if (p > K3_PANEL)
        p = K3_PANEL;
    return p < 4 ? 4 : (int32_t)p;
}

/* hsum8 of matmul.c (ggml's hsum_float_8) on 8 stored lanes, then the K
 * tail of Q2_K/Q3_K (0.0f) and the bias. */
static float finish(const float *v, const float *bias, int64_t r)
{
    float q0 = v[4] + v[0], q1 = v[5] + v[1], q2 = v[6] + v[2], q3 = v[7] + v[3];
    float s = (q0 + q2) + (q1 + q3);
    s = s + 0.0f;
    return bias ? s + bias[r] : s;
}

static const uint8_t *row_block(const mmq_args *a, int64_t r, int64_t b, size_t bsize)
{
    return a->w + (uint64_t)r * a->row_bytes + (uint64_t)b * bsize;
}

static const sm_block_q8_K *act_row(const mmq_args *a, int32_t t)
{
    return (const sm_block_q8_K *)(const void *)(a->act + (uint64_t)t * a->act_stride);
}

/* The 16 signed 6-bit scales of a Q3_K block (-32..31) as bytes. The 12
 * scale bytes are read with the 2 bytes before them (inside the block) so
 * the load never leaves the block. */
K3_AVX2 K3_INLINE __m128i q3_scales(const sm_block_q3_K *x)
{
    const __m128i raw = _mm_loadu_si128((const __m128i *)(const void *)(x->qs + 62));
    const __m128i s = _mm_srli_si128(raw, 2); /* bytes 0..11 = scales[0..11] */
    const __m128i m4 = _mm_set1_epi8(0x0F);
    /* low 4 bits: g < 8 low nibble of s[g], g >= 8 high nibble of s[g-8] */
    const __m128i lo = _mm_unpacklo_epi64(_mm_and_si128(s, m4), _mm_and_si128(_mm_srli_epi16(s, 4), m4));
    /* high 2 bits: byte g = 4i + m is bits 2i..2i+1 of s[8 + m] */
    const __m128i hi = _mm_and_si128(_mm_srlv_epi32(_mm_shuffle_epi32(s, 0xAA), _mm_setr_epi32(0, 2, 4, 6)),
                                     _mm_set1_epi8(3));
    return _mm_sub_epi8(_mm_or_si128(lo, _mm_slli_epi16(hi, 4)), _mm_set1_epi8(32));
}

/* ------------------------------------------------------------ AVX-512 VNNI */

/* How a VNNI kernel forms vpdpbusd's operands. */
enum k3_mode {
    K3_Q2 = 0,  /* Q2_K: levels 0..3 times the 4-bit scale are bytes 0..45:
                 * dpbusd(level * scale, y) accumulates the lanes directly */
    K3_Q3P = 1, /* Q3_K, many tokens: -level * scale is a byte (-128..124):
                 * dpbusd(y ^ 0x80, -level * scale) started at the row's
                 * -128 * sum(-level * scale), the lanes negated at the end */
    K3_Q3U = 2, /* Q3_K, 1..4 tokens: dpbusd(level + 4, y) started at -4 * the
                 * token's 4-sums (precomputed once per (token, block) of the
                 * call), then vpdpwssd with the scales: less decode per row */
};

/* One decoded 256-block of a row. */
typedef struct k3_row512 {
    __m512i q[4]; /* [4][64] chunks 2j, 2j+1: Q2 level * scale, Q3P -level * scale, Q3U level + 4 */
    __m512i s[4]; /* Q3U: [4][16] dword m = scale of 4-group m of chunks 2j, 2j+1 (low word) */
    __m512i c;    /* [16] Q3P: accumulator start -128 * sum(-level * scale) per dword; else 0 */
    __m256i mn;   /* [16] Q2_K: sub-block mins, int16 */
    float d;      /* block d as f32 */
    float dmin;   /* Q2_K: block dmin as f32 */
} k3_row512;

/* Scales (16 dwords, sub-block g in dword g, low word) spread so that
 * s[j] dword m holds the scale of sub-block 4j + m/4. */
K3_AVX512 K3_INLINE void spread_scales512(__m512i sc32, __m512i *s)
{
#pragma GCC unroll 8
    for (int j = 0; j < 4; j++) {
        const __m512i idx = _mm512_setr_epi32(4 * j, 4 * j, 4 * j, 4 * j, 4 * j + 1, 4 * j + 1, 4 * j + 1,
                                              4 * j + 1, 4 * j + 2, 4 * j + 2, 4 * j + 2, 4 * j + 2, 4 * j + 3,
                                              4 * j + 3, 4 * j + 3, 4 * j + 3);
        s[j] = _mm512_permutexvar_epi32(idx, sc32);
    }
}

/* q[j] (bytes) times the int16 scale of each byte's sub-block: word w of
 * zmm j holds elements of sub-block 4j + w/8, scw holds scale g in word g.
 * The low byte of a 16-bit product depends only on the low bytes, so one
 * vpmullw gives the even bytes and one of the odd bytes moved up gives the
 * odd ones; exact whenever every product fits in a byte. */
K3_AVX512 K3_INLINE void scale_bytes512(__m512i *q, __m256i scw, int odd_separately)
{
    const __m512i w16 = _mm512_castsi256_si512(scw);
#pragma GCC unroll 8
    for (int j = 0; j < 4; j++) {
        const short g = (short)(4 * j);
        const __m512i idx = _mm512_set_epi16(g + 3, g + 3, g + 3, g + 3, g + 3, g + 3, g + 3, g + 3, g + 2, g + 2,
                                             g + 2, g + 2, g + 2, g + 2, g + 2, g + 2, g + 1, g + 1, g + 1, g + 1,
                                             g + 1, g + 1, g + 1, g + 1, g, g, g, g, g, g, g, g);
        const __m512i m = _mm512_permutexvar_epi16(idx, w16);
        const __m512i ev = _mm512_mullo_epi16(q[j], m);
        if (odd_separately) {
            const __m512i od = _mm512_mullo_epi16(_mm512_and_si512(q[j], _mm512_set1_epi16((short)0xFF00)), m);
            q[j] = _mm512_mask_blend_epi8(0xAAAAAAAAAAAAAAAAull, ev, od);
        } else {
            q[j] = ev; /* unsigned bytes whose products stay below 256: no carry */
        }
    }
}

/* Levels of chunks 2j (bytes 0..31) and 2j+1 (bytes 32..63): both come from
 * qs[32h..32h+31], h = j / 2, shifted by 2*(2j % 4) and 2*(2j % 4 + 1). */
K3_AVX512 K3_INLINE __m512i low2_512(const __m512i *qsh, int j)
{
    const int s0 = 2 * ((2 * j) % 4);
    const __m512i cnt =
        _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi16((short)s0)), _mm256_set1_epi16((short)(s0 + 2)), 1);
    return _mm512_and_si512(_mm512_srlv_epi16(qsh[j / 2], cnt), _mm512_set1_epi8(3));
}

K3_AVX512 K3_INLINE void dec_q3_512(const sm_block_q3_K *x, k3_row512 *o, int mode)
{
    __m512i qsh[2];
    qsh[0] = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(const void *)x->qs));
    qsh[1] = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(const void *)(x->qs + 32)));
    const __m512i hm = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(const void *)x->hmask));
    const __m512i k4 = _mm512_set1_epi8(4), zero = _mm512_setzero_si512();
#pragma GCC unroll 8
    for (int j = 0; j < 4; j++) {
        const __m512i bit = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi8((char)(1 << (2 * j)))),
                                               _mm256_set1_epi8((char)(1 << (2 * j + 1))), 1);
        const __m512i v = low2_512(qsh, j);
        if (mode == K3_Q3U) /* high bit set: v + 4 */
            o->q[j] = _mm512_mask_add_epi8(v, _mm512_test_epi8_mask(hm, bit), v, k4);
        else /* high bit clear: level v - 4 */
            o->q[j] = _mm512_mask_sub_epi8(v, _mm512_testn_epi8_mask(hm, bit), v, k4);
    }
    const __m128i sc8 = q3_scales(x);
    o->c = zero;
    if (mode == K3_Q3U) {
        spread_scales512(_mm512_cvtepu16_epi32(_mm256_cvtepi8_epi16(sc8)), o->s);
    } else {
        scale_bytes512(o->q, _mm256_cvtepi8_epi16(_mm_sub_epi8(_mm_setzero_si128(), sc8)), 1);
        /* start at -128 * sum(w) per dword: dpbusd(y ^ 0x80, w) adds 128 * sum(w) */
        const __m512i k80 = _mm512_set1_epi8((char)0x80);
        __m512i c = zero;
#pragma GCC unroll 8
        for (int j = 0; j < 4; j++)
            c = _mm512_dpbusd_epi32(c, k80, o->q[j]);
        o->c = _mm512_sub_epi32(zero, c);
    }
    o->mn = _mm256_setzero_si256();
    o->d = sm_f16_to_f32(x->d);
    o->dmin = 0.0f;
}

K3_AVX512 K3_INLINE void dec_q2_512(const sm_block_q2_K *x, k3_row512 *o)
{
    __m512i qsh[2];
    qsh[0] = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(const void *)x->qs));
    qsh[1] = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(const void *)(x->qs + 32)));
#pragma GCC unroll 8
    for (int j = 0; j < 4; j++)
        o->q[j] = low2_512(qsh, j);
    const __m128i s = _mm_loadu_si128((const __m128i *)(const void *)x->scales);
    const __m128i m4 = _mm_set1_epi8(0x0F);
    scale_bytes512(o->q, _mm256_cvtepu8_epi16(_mm_and_si128(s, m4)), 0);
    o->mn = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(s, 4), m4));
    o->c = _mm512_setzero_si512();
    o->d = sm_f16_to_f32(x->d);
    o->dmin = sm_f16_to_f32(x->dmin);
}

/* Q3U: at most this many (token, block) corrections of 4 zmm (16 KiB). */
#define K3_CORR 64

/* Rows rr[0..NR) (NR = 2 or 4, repeats allowed) against tokens [t0, t1):
 * acc is [t1 - t0][NR * 8] f32, lanes of row rr[i] at 8i. Q3U: corr holds
 * [t1 - t0][nb][4] zmm of -4 * the 4-sums of the activations. NR must be a
 * compile-time constant (the decoded rows live in registers). */
K3_AVX512 K3_INLINE void tile512(const mmq_args *a, int mode, const int64_t *rr, const int NR, int32_t t0, int32_t t1,
                                 float *acc, const __m512i *corr)
{
    const int is_q2 = mode == K3_Q2;
    const int64_t nb = a->K / 256;
    const size_t bsize = is_q2 ? sizeof(sm_block_q2_K) : sizeof(sm_block_q3_K);
    const __m512i zero = _mm512_setzero_si512(), k80 = _mm512_set1_epi8((char)0x80);
    for (int32_t t = t0; t < t1; t++)
        for (int i = 0; i < NR; i += 2)
            _mm512_storeu_ps(acc + (t - t0) * NR * 8 + i * 8, _mm512_setzero_ps());
    for (int64_t b = 0; b < nb; b++) {
        k3_row512 x[4];
        __m512 dx[2], dm[2];
        __m512i mn[2];
#pragma GCC unroll 4
        for (int i = 0; i < NR; i++) {
            const uint8_t *p = row_block(a, rr[i], b, bsize);
            if (is_q2)
                dec_q2_512((const sm_block_q2_K *)(const void *)p, &x[i]);
            else
                dec_q3_512((const sm_block_q3_K *)(const void *)p, &x[i], mode);
            if (b + 1 < nb) {
                _mm_prefetch((const char *)(p + bsize), _MM_HINT_T0);
                _mm_prefetch((const char *)(p + bsize + 64), _MM_HINT_T0);
            }
        }
        /* per row pair: [dx x8, dx' x8] and the mins */
#pragma GCC unroll 2
        for (int i = 0; i < NR; i += 2) {
            dx[i / 2] = _mm512_insertf32x8(_mm512_set1_ps(x[i].d), _mm256_set1_ps(x[i + 1].d), 1);
            dm[i / 2] = _mm512_insertf32x8(_mm512_set1_ps(x[i].dmin), _mm256_set1_ps(x[i + 1].dmin), 1);
            mn[i / 2] = _mm512_inserti64x4(_mm512_castsi256_si512(x[i].mn), x[i + 1].mn, 1);
        }
        for (int32_t t = t0; t < t1; t++) {
            const sm_block_q8_K *y = act_row(a, t) + b;
            __m512i s[4];
#pragma GCC unroll 4
            for (int i = 0; i < NR; i++)
                s[i] = x[i].c;
#pragma GCC unroll 8
            for (int j = 0; j < 4; j++) {
                const __m512i yq = _mm512_loadu_si512((const void *)(y->qs + 64 * j));
                const __m512i yu = _mm512_xor_si512(yq, k80);
#pragma GCC unroll 4
                for (int i = 0; i < NR; i++) {
                    if (mode == K3_Q2)
                        s[i] = _mm512_dpbusd_epi32(s[i], x[i].q[j], yq);
                    else if (mode == K3_Q3P)
                        s[i] = _mm512_dpbusd_epi32(s[i], yu, x[i].q[j]);
                    else
                        s[i] = _mm512_dpwssd_epi32(
                            s[i], _mm512_dpbusd_epi32(corr[((t - t0) * nb + b) * 4 + j], x[i].q[j], yq), x[i].s[j]);
                }
            }
            const __m512 yd = _mm512_set1_ps(y->d);
#pragma GCC unroll 2
            for (int i = 0; i < NR; i += 2) {
                /* dwords 0..7: row rr[i] lanes (k + k+8), 8..15: row rr[i+1] */
                __m512i lanes = _mm512_add_epi32(_mm512_shuffle_i64x2(s[i], s[i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                                                 _mm512_shuffle_i64x2(s[i], s[i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
                if (mode == K3_Q3P) /* the sums of -level * scale */
                    lanes = _mm512_sub_epi32(zero, lanes);
                float *ap = acc + (t - t0) * NR * 8 + i * 8;
                __m512 av = _mm512_loadu_ps(ap);
                if (is_q2) {
                    const __m512i bs =
                        _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(const void *)y->bsums));
                    const __m512 dmin = _mm512_mul_ps(_mm512_set1_ps(-y->d), dm[i / 2]);
                    av = _mm512_fmadd_ps(dmin, _mm512_cvtepi32_ps(_mm512_madd_epi16(mn[i / 2], bs)), av);
                }
                av = _mm512_fmadd_ps(_mm512_mul_ps(yd, dx[i / 2]), _mm512_cvtepi32_ps(lanes), av);
                _mm512_storeu_ps(ap, av);
            }
        }
    }
}

/* Rows [r, r + NR) clipped to the range (the last row repeats), tile512
 * into acc, then the results into y. */
K3_AVX512 K3_INLINE void rows_tile512(const mmq_args *a, int mode, int64_t r, const int NR, int32_t t0, int32_t t1,
                                      float *acc, const __m512i *corr)
{
    int64_t rr[4];
    for (int i = 0; i < NR; i++)
        rr[i] = r + i < a->r1 ? r + i : a->r1 - 1;
    tile512(a, mode, rr, NR, t0, t1, acc, corr);
    for (int32_t t = t0; t < t1; t++) {
        float *o = a->y + (int64_t)t * a->ldy;
        for (int i = 0; i < NR && r + i < a->r1; i++)
            o[r + i] = finish(acc + (t - t0) * NR * 8 + i * 8, a->bias, r + i);
    }
}

K3_AVX512 static void rows512(const mmq_args *a, int is_q2)
{
    /* the activation panel fits in L2: blocks of it, all the rows */
    float acc[K3_PANEL * 32] __attribute__((aligned(64)));
    __m512i corr[K3_CORR * 4];
    const int64_t nb = a->K / 256;
    const int32_t panel = panel_tokens(nb);
    for (int32_t t0 = 0; t0 < a->n_tok; t0 += panel) {
        const int32_t t1 = a->n_tok - t0 < panel ? a->n_tok : t0 + panel;
        /* few tokens: Q3U with the token side computed once here */
        const int q3u = !is_q2 && t1 - t0 <= 4 && (t1 - t0) * nb <= K3_CORR;
        if (q3u) {
            const __m512i zero = _mm512_setzero_si512(), k4 = _mm512_set1_epi8(4);
            for (int32_t t = t0; t < t1; t++)
                for (int64_t b = 0; b < nb; b++)
                    for (int j = 0; j < 4; j++) {
                        const __m512i yq = _mm512_loadu_si512((const void *)(act_row(a, t)[b].qs + 64 * j));
                        corr[((t - t0) * nb + b) * 4 + j] = _mm512_sub_epi32(zero, _mm512_dpbusd_epi32(zero, k4, yq));
                    }
        }
        /* Q3U keeps the scales in registers too: 2 rows; else 4 (a last
         * group of 1..2 rows as a pair) */
        for (int64_t r = a->r0; r < a->r1;) {
            if (q3u) {
                rows_tile512(a, K3_Q3U, r, 2, t0, t1, acc, corr);
                r += 2;
            } else if (a->r1 - r > 2) {
                if (is_q2)
                    rows_tile512(a, K3_Q2, r, 4, t0, t1, acc, corr);
                else
                    rows_tile512(a, K3_Q3P, r, 4, t0, t1, acc, corr);
                r += 4;
            } else {
                if (is_q2)
                    rows_tile512(a, K3_Q2, r, 2, t0, t1, acc, corr);
                else
                    rows_tile512(a, K3_Q3P, r, 2, t0, t1, acc, corr);
                r += 2;
            }
        }
    }
}

/* ------------------------------------------------------------------ AVX2 */

/* One decoded 256-block of a row, in memory (16 ymm registers are too few). */
typedef struct k3_row256 {
    __m256i q[8]; /* [8][32] chunk c: Q3_K level + 4 (0..7), Q2_K level 0..3 */
    __m256i s[8]; /* [8][16] int16 scale: 128-bit lane 0 sub-block 2c, lane 1 2c+1 */
    __m256i mn;   /* [16] Q2_K: sub-block mins, int16 */
    float d, dmin;
} k3_row256;

/* sc8: 16 sub-block scales as bytes -> the per-chunk int16 scale vectors. */
K3_AVX2 K3_INLINE void spread_scales256(__m128i sc8, __m256i *s)
{
    const __m256i w = _mm256_cvtepi8_epi16(sc8);
    const __m256i half[2] = {_mm256_permute4x64_epi64(w, 0x44), _mm256_permute4x64_epi64(w, 0xEE)};
#pragma GCC unroll 8
    for (int c = 0; c < 8; c++) {
        const int m = c % 4;
        const __m256i shuf =
            _mm256_setr_epi8((char)(4 * m), (char)(4 * m + 1), (char)(4 * m), (char)(4 * m + 1), (char)(4 * m),
                             (char)(4 * m + 1), (char)(4 * m), (char)(4 * m + 1), (char)(4 * m), (char)(4 * m + 1),
                             (char)(4 * m), (char)(4 * m + 1), (char)(4 * m), (char)(4 * m + 1), (char)(4 * m),
                             (char)(4 * m + 1), (char)(4 * m + 2), (char)(4 * m + 3), (char)(4 * m + 2),
                             (char)(4 * m + 3), (char)(4 * m + 2), (char)(4 * m + 3), (char)(4 * m + 2),
                             (char)(4 * m + 3), (char)(4 * m + 2), (char)(4 * m + 3), (char)(4 * m + 2),
                             (char)(4 * m + 3), (char)(4 * m + 2), (char)(4 * m + 3), (char)(4 * m + 2),
                             (char)(4 * m + 3));
        s[c] = _mm256_shuffle_epi8(half[c / 4], shuf);
    }
}

K3_AVX2 K3_INLINE void dec_q3_256(const sm_block_q3_K *x, k3_row256 *o)
{
    const __m256i m3 = _mm256_set1_epi8(3), k4 = _mm256_set1_epi8(4);
    const __m256i hm = _mm256_loadu_si256((const __m256i *)(const void *)x->hmask);
#pragma GCC unroll 8
    for (int h = 0; h < 2; h++) {
        const __m256i qs = _mm256_loadu_si256((const __m256i *)(const void *)(x->qs + 32 * h));
#pragma GCC unroll 8
        for (int j = 0; j < 4; j++) {
            const int c = 4 * h + j;
            const __m256i v = _mm256_and_si256(_mm256_srli_epi16(qs, 2 * j), m3);
            /* 4 where high bit c is set (no shift crosses into bit 2 of a byte) */
            const __m256i hb = c >= 2 ? _mm256_srli_epi16(hm, c - 2) : _mm256_slli_epi16(hm, 2 - c);
            o->q[c] = _mm256_or_si256(v, _mm256_and_si256(hb, k4));
        }
    }
    spread_scales256(q3_scales(x), o->s);
    o->mn = _mm256_setzero_si256();
    o->d = sm_f16_to_f32(x->d);
    o->dmin = 0.0f;
}

K3_AVX2 K3_INLINE void dec_q2_256(const sm_block_q2_K *x, k3_row256 *o)
{
    const __m256i m3 = _mm256_set1_epi8(3);
#pragma GCC unroll 8
    for (int h = 0; h < 2; h++) {
        const __m256i qs = _mm256_loadu_si256((const __m256i *)(const void *)(x->qs + 32 * h));
#pragma GCC unroll 8
        for (int j = 0; j < 4; j++)
            o->q[4 * h + j] = _mm256_and_si256(_mm256_srli_epi16(qs, 2 * j), m3);
    }
    const __m128i s = _mm_loadu_si128((const __m128i *)(const void *)x->scales);
    const __m128i m4 = _mm_set1_epi8(0x0F);
    spread_scales256(_mm_and_si128(s, m4), o->s);
    o->mn = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(s, 4), m4));
    o->d = sm_f16_to_f32(x->d);
    o->dmin = sm_f16_to_f32(x->dmin);
}

/* Rows r and r2 (r2 == r for a lone row) against tokens [t0, t1), as
 * tile512; acc is [t1 - t0][16], lanes 0..7 row r, 8..15 row r2.
 * one: t1 == t0 + 1 known at compile time, so the decoded rows can stay in
 * registers. */
K3_AVX2 K3_INLINE void pair256(const mmq_args *a, int is_q2, int64_t r, int64_t r2, int32_t t0, int32_t t1,
                               float *acc, int one)
{
    if (one)
        t1 = t0 + 1;
    const int64_t nb = a->K / 256;
    const size_t bsize = is_q2 ? sizeof(sm_block_q2_K) : sizeof(sm_block_q3_K);
    const __m256i k4 = _mm256_set1_epi8(4);
    for (int32_t t = t0; t < t1; t++) {
        _mm256_storeu_ps(acc + (t - t0) * 16, _mm256_setzero_ps());
        _mm256_storeu_ps(acc + (t - t0) * 16 + 8, _mm256_setzero_ps());
    }
    k3_row256 x[2];
    for (int64_t b = 0; b < nb; b++) {
#pragma GCC unroll 8
        for (int i = 0; i < 2; i++) {
            const uint8_t *p = row_block(a, i ? r2 : r, b, bsize);
            if (is_q2)
                dec_q2_256((const sm_block_q2_K *)(const void *)p, &x[i]);
            else
                dec_q3_256((const sm_block_q3_K *)(const void *)p, &x[i]);
        }
        for (int32_t t = t0; t < t1; t++) {
            const sm_block_q8_K *y = act_row(a, t) + b;
            __m256i s0 = _mm256_setzero_si256(), s1 = _mm256_setzero_si256();
#pragma GCC unroll 8
            for (int c = 0; c < 8; c++) {
                const __m256i yq = _mm256_loadu_si256((const __m256i *)(const void *)(y->qs + 32 * c));
                __m256i p0 = _mm256_maddubs_epi16(x[0].q[c], yq), p1 = _mm256_maddubs_epi16(x[1].q[c], yq);
                if (!is_q2) {
                    /* level = (level + 4) - 4 */
                    const __m256i c4 = _mm256_maddubs_epi16(k4, yq);
                    p0 = _mm256_sub_epi16(p0, c4);
                    p1 = _mm256_sub_epi16(p1, c4);
                }
                s0 = _mm256_add_epi32(s0, _mm256_madd_epi16(p0, x[0].s[c]));
                s1 = _mm256_add_epi32(s1, _mm256_madd_epi16(p1, x[1].s[c]));
            }
            float *ap = acc + (t - t0) * 16;
            __m256 a0 = _mm256_loadu_ps(ap), a1 = _mm256_loadu_ps(ap + 8);
            if (is_q2) {
                const __m256i bs = _mm256_loadu_si256((const __m256i *)(const void *)y->bsums);
                const float nd = -y->d;
                a0 = _mm256_fmadd_ps(_mm256_set1_ps(nd * x[0].dmin), _mm256_cvtepi32_ps(_mm256_madd_epi16(x[0].mn, bs)),
                                     a0);
                a1 = _mm256_fmadd_ps(_mm256_set1_ps(nd * x[1].dmin), _mm256_cvtepi32_ps(_mm256_madd_epi16(x[1].mn, bs)),
                                     a1);
            }
            a0 = _mm256_fmadd_ps(_mm256_set1_ps(y->d * x[0].d), _mm256_cvtepi32_ps(s0), a0);
            a1 = _mm256_fmadd_ps(_mm256_set1_ps(y->d * x[1].d), _mm256_cvtepi32_ps(s1), a1);
            _mm256_storeu_ps(ap, a0);
            _mm256_storeu_ps(ap + 8, a1);
        }
    }
}

K3_AVX2 static void rows256(const mmq_args *a, int is_q2)
{
    float acc[K3_PANEL * 16] __attribute__((aligned(32)));
    const int32_t panel = panel_tokens(a->K / 256);
    for (int32_t t0 = 0; t0 < a->n_tok; t0 += panel) {
        const int32_t t1 = a->n_tok - t0 < panel ? a->n_tok : t0 + panel;
        for (int64_t r = a->r0; r < a->r1; r += 2) {
            const int64_t r2 = r + 1 < a->r1 ? r + 1 : r;
            if (t1 - t0 == 1) {
                if (is_q2)
                    pair256(a, 1, r, r2, t0, t1, acc, 1);
                else
                    pair256(a, 0, r, r2, t0, t1, acc, 1);
            } else {
                if (is_q2)
                    pair256(a, 1, r, r2, t0, t1, acc, 0);
                else
                    pair256(a, 0, r, r2, t0, t1, acc, 0);
            }
            for (int32_t t = t0; t < t1; t++) {
                float *o = a->y + (int64_t)t * a->ldy;
                o[r] = finish(acc + (t - t0) * 16, a->bias, r);
                if (r2 != r)
                    o[r2] = finish(acc + (t - t0) * 16 + 8, a->bias, r2);
            }
        }
    }
}
#endif

int mmq_k3_handles(uint32_t type)
{
#if defined(__x86_64__)
    return (type == SM_TYPE_Q2_K || type == SM_TYPE_Q3_K) && cpu_level() >= CPU_AVX2;
#else
    (void)type;
    return 0;
#endif
}

int mmq_k3_rows(const mmq_args *a)
{
    if (!mmq_k3_handles(a->type))
        return 0;
#if defined(__x86_64__)
    const int is_q2 = a->type == SM_TYPE_Q2_K;
    if (cpu_level() >= CPU_AVX512 && cpu_has_vnni())
        rows512(a, is_q2);
    else
        rows256(a, is_q2);
    return 1;
#else
    return 0;
#endif
}
