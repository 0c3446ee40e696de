/* mmq_k.c — AVX2 / AVX-512 VNNI kernels for K-quant weights (Q4_K, Q5_K,
 * Q6_K) against Q8_K activations.
 *
 * They compute exactly what mm_unpack_row + mm_dot compute. Per (row,
 * token) pair and 256-block the integer part is 8 exact int32 "lane sums"
 * (lane k = sum over the block of level * sub-block scale * activation for
 * the elements e with (e % 32) / 4 == k); any instruction sequence giving
 * those integers is equivalent. The f32 part is fixed, per block in order:
 *   acc[k] = fma(y.d * x.d, (float)lane[k], acc[k])
 *   Q4_K:  m4[k]  = fma(-y.d * x.dmin, (float)p[k], m4[k])      (k < 4)
 *   Q5_K:  summs  = fma(-y.d * x.dmin, (float)(p0+p1+p2+p3), summs)
 * with p[k] = min[2k] * bsum32[2k] + min[2k+1] * bsum32[2k+1], and at the
 * end y = hsum8(acc) + tail (Q4_K: (m4[0]+m4[2]) + (m4[1]+m4[3]); Q5_K:
 * summs; Q6_K: 0.0f) (+ bias).
 *
 * Integer part. A weight block is decoded in registers to byte levels (no
 * unpacked copy of the row): unsigned 0..15 / 0..31 for Q4_K / Q5_K, and
 * level - 32 (signed) for Q6_K. vpmaddubsw (u8 x s8, int16 pair sums) then
 * vpmaddwd / vpdpwssd with the int16 sub-block scale of each pair gives the
 * scaled 4-element sums in int32. Q4_K/Q5_K: maddubs(w, x). Q6_K:
 * maddubs(x + 128, w - 32), minus the row's 128 * sum((w - 32) * scale)
 * per lane, computed once per row block; so the activation side (x ^ 0x80)
 * is shared by every row and the weight side by every token. No int16 sum
 * can saturate: 2*15*128, 2*31*128, 2*255*32 < 2^15.
 *
 * Tiling. A micro-tile is R rows x T tokens (AVX-512 4x4, AVX2 2x4): each
 * weight block is decoded once for T tokens, each activation block is used
 * by R rows. Tokens are blocked so the activation panel stays in L2 while
 * the rows of the range stream through once per panel; with 1 or 2
 * tokens (generation) the weight blocks are prefetched a few blocks ahead.
 * AVX-512 without VNNI runs the AVX2 kernels. */
#include "mmq_impl.h"

#include "cpu.h"
#include "fp16.h"
#include "quants.h"
#include "types.h"

#include <stddef.h>
#include <string.h>

#if defined(__x86_64__)
#include "mmq_simd.h"

#define INLINE static inline __attribute__((always_inline))

/* Activation panel budget in bytes (a share of a 2 MiB L2). */
#define PANEL_BYTES (512 * 1024)

/* Generation: weight blocks prefetched this many blocks ahead of use. */
#define K_PREFETCH 4

/* Bytes per weight block of a handled type. */
static inline size_t kblock_bytes(uint32_t type)
{
    switch (type) {
    case SM_TYPE_Q4_K: return sizeof(sm_block_q4_K);
    case SM_TYPE_Q5_K: return sizeof(sm_block_q5_K);
    default: return sizeof(sm_block_q6_K);
    }
}

/* The 12 packed scale bytes of a Q4_K/Q5_K block: v[0..1] = the 8 6-bit
 * scales, v[2..3] = the 8 6-bit mins, one per byte, sub-block order. */
static inline void k4_scales(const uint8_t *s, uint32_t v[4])
{
    uint32_t a, b, c;
    memcpy(&a, s, 4);
    memcpy(&b, s + 4, 4);
    memcpy(&c, s + 8, 4);
    const uint32_t m6 = 0x3f3f3f3fu, m4 = 0x0f0f0f0fu, m2 = 0x03030303u;
    v[0] = a & m6;                                   /* scales 0..3: low 6 bits of bytes 0..3 */
    v[1] = (c & m4) | (((a >> 6) & m2) << 4);        /* scales 4..7: nibble of 8..11, top bits of 0..3 */
    v[2] = b & m6;                                   /* mins 0..3: low 6 bits of bytes 4..7 */
    v[3] = ((c >> 4) & m4) | (((b >> 6) & m2) << 4); /* mins 4..7: high nibble of 8..11, top of 4..7 */
}

/* The float tail of a pair after the 8-lane horizontal sum. */
INLINE float k_tail(uint32_t type, const float *m4, float summs)
{
    if (type == SM_TYPE_Q4_K)
        return (m4[0] + m4[2]) + (m4[1] + m4[3]);
    if (type == SM_TYPE_Q5_K)
        return summs;
    return 0.0f;
}

/* Per-pair f32 state of a tile: 8 lanes, Q4_K's 4 min lanes, Q5_K's scalar. */
typedef struct kacc {
    __m256 f[4][4];  /* [row][token] 8 f32 lanes */
    __m128 m4[4][4]; /* [row][token] Q4_K min lanes */
    float s[4][4];   /* [row][token] Q5_K sum of mins */
} kacc;

/* One block's f32 step for pair (i, j): lanes are its 8 exact lane sums,
 * mins the row's 8 int16 sub-block mins, bs the token's 8 bsum32. */
MMQ_T_AVX2 INLINE void k_pair_step(uint32_t type, kacc *A, int i, int j, __m256i lanes, float yd, float xd,
                                   float xdmin, __m128i mins, __m128i bs)
{
    const float d = yd * xd;
    A->f[i][j] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(lanes), A->f[i][j]);
    if (type == SM_TYPE_Q6_K)
        return;
    const float dmin = -yd * xdmin;
    __m128i p = _mm_madd_epi16(mins, bs);
    if (type == SM_TYPE_Q4_K) {
        A->m4[i][j] = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(p), A->m4[i][j]);
    } else {
        p = _mm_add_epi32(p, _mm_shuffle_epi32(p, 0x4E));
        p = _mm_add_epi32(p, _mm_shuffle_epi32(p, 0xB1));
        A->s[i][j] = _mm_cvtss_f32(_mm_fmadd_ss(_mm_set_ss(dmin), _mm_cvtepi32_ps(p), _mm_set_ss(A->s[i][j])));
    }
}

MMQ_T_AVX2 INLINE void k_acc_init(kacc *A)
{
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++)
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            A->f[i][j] = _mm256_setzero_ps();
            A->m4[i][j] = _mm_setzero_ps();
            A->s[i][j] = 0.0f;
        }
}

/* Writes the R x T results of a tile at rows r.., tokens t... */
MMQ_T_AVX2 INLINE void k_store(const mmq_args *a, uint32_t type, const kacc *A, int64_t r, int32_t t, int R, int T)
{
#pragma GCC unroll 4
    for (int i = 0; i < R; i++)
#pragma GCC unroll 4
        for (int j = 0; j < T; j++) {
            float m4[4];
            _mm_storeu_ps(m4, A->m4[i][j]);
            float v = mmq_hsum8(A->f[i][j]) + k_tail(type, m4, A->s[i][j]);
            if (a->bias)
                v = v + a->bias[r + i];
            a->y[(int64_t)(t + j) * a->ldy + r + i] = v;
        }
}

/* Row and activation pointers of a tile (unused slots repeat the first). */
INLINE void k_ptrs(const mmq_args *a, int64_t r, int32_t t, int R, int T, const uint8_t *wp[4],
                   const sm_block_q8_K *xp[4])
{
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        wp[i] = a->w + (uint64_t)(r + (i < R ? i : 0)) * a->row_bytes;
        xp[i] = (const sm_block_q8_K *)(const void *)(a->act + (uint64_t)(t + (i < T ? i : 0)) * a->act_stride);
    }
}

/* ------------------------------------------------------------ AVX-512 VNNI */

/* The AVX-512 tile is always 4 rows (a short range repeats its first row
 * and stores only the real ones) by T = 1..4 tokens. Rows go in pairs: a
 * zmm holds 32 elements (a chunk c = elements 32c..32c+31) of row 2h in its
 * low half and the same chunk of row 2h+1 in its high half, against the
 * token's 32 activations broadcast to both halves. So one int32 accumulator
 * per (row pair, token) ends each block with the 8 lane sums of both
 * pairs side by side, and the f32 step (cvt, fma with [d(2h) x8 | d(2h+1)
 * x8] * y.d) runs on it unchanged; the Q4_K/Q5_K mins take four rows per
 * zmm (4 lanes each). */

/* Per-block data of 4 rows shared by their chunks. */
typedef struct kr4 {
    __m512i s01, s23; /* int16 [row][16]: Q4_K/Q5_K sc[8] then mins[8]; Q6_K sc[16] (rows 0-1, 2-3) */
    __m512i mins;     /* Q4_K/Q5_K: int16 [4 rows][8 mins] */
    __m256 dd;        /* [4 rows] (d, dmin) pairs */
} kr4;

/* 16 bytes at p + off of each row into the 4 128-bit lanes of a zmm. */
MMQ_T_AVX512 INLINE __m512i k_load4x16(const uint8_t *const p[4], size_t off)
{
    __m512i v = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(const void *)(p[0] + off)));
    v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(const void *)(p[1] + off)), 1);
    v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(const void *)(p[2] + off)), 2);
    return _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(const void *)(p[3] + off)), 3);
}

/* Scales, mins and super-scales of the current block of 4 rows (blk[i]). */
MMQ_T_AVX512 INLINE void k_rows4(uint32_t type, const uint8_t *const blk[4], kr4 *o)
{
    if (type == SM_TYPE_Q6_K) {
        const __m512i s = k_load4x16(blk, offsetof(sm_block_q6_K, scales));
        o->s01 = _mm512_cvtepi8_epi16(_mm512_castsi512_si256(s));
        o->s23 = _mm512_cvtepi8_epi16(_mm512_extracti64x4_epi64(s, 1));
        uint16_t h[4];
        for (int i = 0; i < 4; i++)
            memcpy(&h[i], blk[i] + offsetof(sm_block_q6_K, d), 2);
        o->dd = _mm256_cvtph_ps(_mm_setr_epi16((short)h[0], 0, (short)h[1], 0, (short)h[2], 0, (short)h[3], 0));
        o->mins = _mm512_setzero_si512();
        return;
    }
    /* d and dmin lead both block types, the 12 scale bytes follow */
    uint32_t dm[4];
    for (int i = 0; i < 4; i++)
        memcpy(&dm[i], blk[i], 4);
    o->dd = _mm256_cvtph_ps(_mm_setr_epi32((int)dm[0], (int)dm[1], (int)dm[2], (int)dm[3]));
    /* per row dwords a, b, c = scale bytes 0-3, 4-7, 8-11 become
     * [a & 63, (c & 15) | top2(a) << 4, b & 63, (c >> 4) | top2(b) << 4]
     * bytewise = the 8 scales then the 8 mins (k4_scales, 4 rows at once) */
    const __m512i s = k_load4x16(blk, 4);
    const __m512i p = _mm512_srlv_epi32(_mm512_shuffle_epi32(s, 0x98), _mm512_set4_epi32(4, 0, 0, 0));
    const __m512i q = _mm512_srli_epi32(_mm512_shuffle_epi32(s, 0x50), 2);
    const __m512i v = _mm512_or_si512(
        _mm512_and_si512(p, _mm512_set4_epi32(0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f)),
        _mm512_and_si512(q, _mm512_set4_epi32(0x30303030, 0, 0x30303030, 0)));
    o->s01 = _mm512_cvtepu8_epi16(_mm512_castsi512_si256(v));
    o->s23 = _mm512_cvtepu8_epi16(_mm512_extracti64x4_epi64(v, 1));
    /* the mins: int16 8..15 of each row */
    const __m512i mi = _mm512_set_epi64(0x003f003e003d003cLL, 0x003b003a00390038LL, 0x002f002e002d002cLL,
                                        0x002b002a00290028LL, 0x001f001e001d001cLL, 0x001b001a00190018LL,
                                        0x000f000e000d000cLL, 0x000b000a00090008LL);
    o->mins = _mm512_permutex2var_epi16(o->s01, mi, o->s23);
}

/* Chunk c (elements 32c..32c+31) of two rows' blocks ba (bytes 0..31 of
 * the result) and bb (32..63): their levels as bytes. */
MMQ_T_AVX512 INLINE __m512i k_w2(uint32_t type, const uint8_t *ba, const uint8_t *bb, int c)
{
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    if (type == SM_TYPE_Q6_K) {
        /* 128-half h, ql bytes 32*(j&1).. (nibble j>>1), qh bits 2j, 2j+1 */
        const int h = c / 4, j = c % 4;
        const size_t lo = offsetof(sm_block_q6_K, ql) + (size_t)(64 * h + 32 * (j & 1));
        const size_t ho = offsetof(sm_block_q6_K, qh) + (size_t)(32 * h);
        const __m512i l = _mm512_inserti64x4(
            _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(const void *)(ba + lo))),
            _mm256_loadu_si256((const __m256i *)(const void *)(bb + lo)), 1);
        const __m512i qh = _mm512_inserti64x4(
            _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(const void *)(ba + ho))),
            _mm256_loadu_si256((const __m256i *)(const void *)(bb + ho)), 1);
        const __m512i nib = j < 2 ? _mm512_and_si512(l, m4) : _mm512_and_si512(_mm512_srli_epi16(l, 4), m4);
        /* bits 2j, 2j+1 moved to 4, 5 (16-bit shifts; the mask drops what
         * crosses bytes) */
        const __m512i hb = j == 0   ? _mm512_slli_epi16(qh, 4)
                           : j == 1 ? _mm512_slli_epi16(qh, 2)
                           : j == 2 ? qh
                                    : _mm512_srli_epi16(qh, 2);
        /* (nib | (hb & 0x30)) - 32 */
        return _mm512_sub_epi8(_mm512_ternarylogic_epi32(nib, hb, _mm512_set1_epi8(0x30), 0xF8),
                               _mm512_set1_epi8(32));
    }
    /* Q4_K/Q5_K: sub-block c = nibble c&1 of qs[32*(c/2)..], 5th bit = qh bit c */
    const size_t qo = (type == SM_TYPE_Q4_K ? offsetof(sm_block_q4_K, qs) : offsetof(sm_block_q5_K, qs)) +
                      (size_t)(32 * (c / 2));
    const __m512i q =
        _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(const void *)(ba + qo))),
                           _mm256_loadu_si256((const __m256i *)(const void *)(bb + qo)), 1);
    __m512i v = c & 1 ? _mm512_and_si512(_mm512_srli_epi16(q, 4), m4) : _mm512_and_si512(q, m4);
    if (type == SM_TYPE_Q5_K) {
        const size_t ho = offsetof(sm_block_q5_K, qh);
        const __m512i qh = _mm512_inserti64x4(
            _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(const void *)(ba + ho))),
            _mm256_loadu_si256((const __m256i *)(const void *)(bb + ho)), 1);
        const __mmask64 hb = _mm512_test_epi8_mask(qh, _mm512_set1_epi8((char)(1 << c)));
        v = _mm512_mask_add_epi8(v, hb, v, _mm512_set1_epi8(16));
    }
    return v;
}

/* The int16 scale of each byte pair of chunk c of two rows, in k_w2's
 * layout (s: the rows' int16 scales from k_rows4). */
MMQ_T_AVX512 INLINE __m512i k_sc1(uint32_t type, __m512i s, int c)
{
    if (type == SM_TYPE_Q6_K) {
        /* byte pair p of a row: sub-block 2c + p / 8 */
        const long long a0 = 0x0001000100010001LL * (2 * c), a1 = 0x0001000100010001LL * (2 * c + 1);
        const long long b0 = 0x0001000100010001LL * (16 + 2 * c), b1 = 0x0001000100010001LL * (17 + 2 * c);
        return _mm512_permutexvar_epi16(_mm512_set_epi64(b1, b1, b0, b0, a1, a1, a0, a0), s);
    }
    return _mm512_permutexvar_epi16(
        _mm512_mask_blend_epi32(0xFF00, _mm512_set1_epi16((short)c), _mm512_set1_epi16((short)(16 + c))), s);
}

/* Rows [r, r+4) (only the first R stored) x tokens [t, t+T). A zmm
 * accumulator holds the 8 lanes of two rows (rows 2h, 2h+1) for one token:
 * each chunk product is 32 elements of each row against the same 32
 * activations in both halves. */
MMQ_T_AVX512 INLINE void tile512(const mmq_args *a, uint32_t type, int64_t r, int32_t t, int R, int T)
{
    const size_t wb = kblock_bytes(type);
    const int64_t nb = a->K / 256;
    const int q6 = type == SM_TYPE_Q6_K;
    const uint8_t *wp[4];
    const sm_block_q8_K *xp[4];
    k_ptrs(a, r, t, R, T, wp, xp);
    __m512 F[2][4], M[4];
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        F[0][j] = F[1][j] = _mm512_setzero_ps();
        M[j] = _mm512_setzero_ps();
    }
    const __m512i i01 = _mm512_mask_blend_epi32(0xFF00, _mm512_set1_epi32(0), _mm512_set1_epi32(2));
    const __m512i i23 = _mm512_mask_blend_epi32(0xFF00, _mm512_set1_epi32(4), _mm512_set1_epi32(6));
    const __m512i imin = _mm512_set_epi32(7, 7, 7, 7, 5, 5, 5, 5, 3, 3, 3, 3, 1, 1, 1, 1);
    const __m512i k80 = _mm512_set1_epi8((char)0x80);
    /* Q6_K: the tokens' quants + 128 */
    uint8_t xu[4][256] __attribute__((aligned(64)));
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk[4];
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++)
            blk[i] = wp[i] + (size_t)b * wb;
        if (T <= 2) /* generation streams the rows from memory: ask early */
#pragma GCC unroll 4
            for (int i = 0; i < 4; i++)
                for (size_t o = 0; o < wb; o += 64)
                    _mm_prefetch((const char *)(blk[i] + K_PREFETCH * wb + o), _MM_HINT_T0);
        kr4 r4;
        k_rows4(type, blk, &r4);
        const int8_t *xq[4];
        float yd[4];
        __m512i bs[4];
#pragma GCC unroll 4
        for (int j = 0; j < T; j++) {
            const sm_block_q8_K *y = xp[j] + b;
            yd[j] = y->d;
            xq[j] = y->qs;
            if (q6) {
#pragma GCC unroll 4
                for (int k = 0; k < 4; k++)
                    _mm512_store_si512((void *)(xu[j] + 64 * k),
                                       _mm512_xor_si512(_mm512_loadu_si512((const void *)(y->qs + 64 * k)), k80));
                xq[j] = (const int8_t *)xu[j];
                bs[j] = _mm512_setzero_si512();
            } else {
                bs[j] = _mm512_broadcast_i32x4(mmq_q8k_bsum32(y));
            }
        }
        const __m512 dd = _mm512_castps256_ps512(r4.dd);
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            __m512i acc[4], corr = _mm512_setzero_si512();
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++)
                acc[j] = _mm512_setzero_si512();
#pragma GCC unroll 8
            for (int c = 0; c < 8; c++) {
                const __m512i w = k_w2(type, blk[2 * h], blk[2 * h + 1], c);
                const __m512i sc = k_sc1(type, h ? r4.s23 : r4.s01, c);
                if (q6) /* 128 * sum(level * scale): undoes the x + 128 */
                    corr = _mm512_dpwssd_epi32(corr, _mm512_maddubs_epi16(k80, w), sc);
#pragma GCC unroll 4
                for (int j = 0; j < T; j++) {
                    const __m512i x =
                        _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(const void *)(xq[j] + 32 * c)));
                    const __m512i p = q6 ? _mm512_maddubs_epi16(x, w) : _mm512_maddubs_epi16(w, x);
                    acc[j] = _mm512_dpwssd_epi32(acc[j], p, sc);
                }
            }
            const __m512 dh = _mm512_permutexvar_ps(h ? i23 : i01, dd);
#pragma GCC unroll 4
            for (int j = 0; j < T; j++) {
                const __m512i s = q6 ? _mm512_sub_epi32(acc[j], corr) : acc[j];
                F[h][j] = _mm512_fmadd_ps(_mm512_mul_ps(dh, _mm512_set1_ps(yd[j])), _mm512_cvtepi32_ps(s), F[h][j]);
            }
        }
        if (!q6) {
            const __m512 dm = _mm512_permutexvar_ps(imin, dd);
#pragma GCC unroll 4
            for (int j = 0; j < T; j++) {
                /* dmin = -y.d * x.dmin; p[k] = min[2k] bsum32[2k] + min[2k+1] bsum32[2k+1] */
                const __m512 dmin = _mm512_mul_ps(_mm512_set1_ps(-yd[j]), dm);
                __m512i p = _mm512_madd_epi16(r4.mins, bs[j]);
                if (type == SM_TYPE_Q5_K) {
                    p = _mm512_add_epi32(p, _mm512_shuffle_epi32(p, 0x4E));
                    p = _mm512_add_epi32(p, _mm512_shuffle_epi32(p, 0xB1));
                }
                M[j] = _mm512_fmadd_ps(dmin, _mm512_cvtepi32_ps(p), M[j]);
            }
        }
    }
    /* results: hsum8 of each pair's 8 lanes plus its tail */
    float f[2][4][16], m[4][16];
#pragma GCC unroll 4
    for (int j = 0; j < T; j++) {
        _mm512_storeu_ps(f[0][j], F[0][j]);
        _mm512_storeu_ps(f[1][j], F[1][j]);
        _mm512_storeu_ps(m[j], M[j]);
    }
    for (int i = 0; i < R; i++)
        for (int j = 0; j < T; j++) {
            const float *l = f[i / 2][j] + 8 * (i % 2), *mm = m[j] + 4 * i;
            float v = mmq_hsum8(_mm256_loadu_ps(l));
            if (type == SM_TYPE_Q4_K)
                v = v + ((mm[0] + mm[2]) + (mm[1] + mm[3]));
            else if (type == SM_TYPE_Q5_K)
                v = v + mm[0];
            else
                v = v + 0.0f;
            if (a->bias)
                v = v + a->bias[r + i];
            a->y[(int64_t)(t + j) * a->ldy + r + i] = v;
        }
}

/* The whole range for one type: token panels, then 4-row tiles, then
 * 4-token tiles; the tails use smaller tiles. */
MMQ_T_AVX512 INLINE void range512(const mmq_args *a, uint32_t type)
{
    int64_t tb = (int64_t)(PANEL_BYTES / (a->act_stride ? a->act_stride : 1)) & ~(int64_t)3;
    if (tb < 4)
        tb = 4;
    for (int32_t t0 = 0; t0 < a->n_tok; t0 += (int32_t)tb) {
        const int32_t t1 = t0 + tb < a->n_tok ? t0 + (int32_t)tb : a->n_tok;
        for (int64_t r = a->r0; r < a->r1; r += 4) {
            const int R = a->r1 - r < 4 ? (int)(a->r1 - r) : 4;
            int32_t t = t0;
            for (; t + 4 <= t1; t += 4)
                tile512(a, type, r, t, R, 4);
            switch (t1 - t) {
            case 3: tile512(a, type, r, t, R, 3); break;
            case 2: tile512(a, type, r, t, R, 2); break;
            case 1: tile512(a, type, r, t, R, 1); break;
            default: break;
            }
        }
    }
}

MMQ_T_AVX512 static void rows512_q4_K(const mmq_args *a) { range512(a, SM_TYPE_Q4_K); }
MMQ_T_AVX512 static void rows512_q5_K(const mmq_args *a) { range512(a, SM_TYPE_Q5_K); }
MMQ_T_AVX512 static void rows512_q6_K(const mmq_args *a) { range512(a, SM_TYPE_Q6_K); }

/* ------------------------------------------------------------ AVX2 */

/* One 256-block of a row decoded for the AVX2 kernel: 8 chunks of 32
 * consecutive elements (one sub-block of Q4_K/Q5_K, two of Q6_K). */
typedef struct kd256 {
    __m256i w[8];  /* [8][32] levels as bytes (Q6_K: level - 32) */
    __m256i sc[8]; /* [8][16] int16 sub-block scale of each byte pair */
    __m256i neg;   /* Q6_K: [8] int32 -128 * sum(level * scale) per lane */
    __m128i mins;  /* Q4_K/Q5_K: [8] int16 sub-block mins */
    float d, dmin; /* super-scales */
} kd256;

MMQ_T_AVX2 INLINE void dec256(uint32_t type, const uint8_t *blk, kd256 *o)
{
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    if (type == SM_TYPE_Q6_K) {
        const sm_block_q6_K *x = (const sm_block_q6_K *)(const void *)blk;
        o->d = sm_f16_to_f32(x->d);
        const __m256i k3 = _mm256_set1_epi8(3), k32 = _mm256_set1_epi8(32), k80 = _mm256_set1_epi8((char)0x80);
        __m256i c = _mm256_setzero_si256();
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++) {
            /* chunk i = elements 32i..: ql half h, low/high nibble of bytes
             * 32*(i&1).., qh bits 2*(i&3) */
            const int h = i / 4, j = i % 4;
            const __m256i l = _mm256_loadu_si256((const __m256i *)(const void *)(x->ql + 64 * h + 32 * (j & 1)));
            const __m256i qh = _mm256_loadu_si256((const __m256i *)(const void *)(x->qh + 32 * h));
            const __m256i nib = j < 2 ? _mm256_and_si256(l, m4) : _mm256_and_si256(_mm256_srli_epi16(l, 4), m4);
            const __m256i hb =
                _mm256_slli_epi16(_mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * j)), k3), 4);
            o->w[i] = _mm256_sub_epi8(_mm256_or_si256(nib, hb), k32);
            o->sc[i] = _mm256_set_m128i(_mm_set1_epi16(x->scales[2 * i + 1]), _mm_set1_epi16(x->scales[2 * i]));
            c = _mm256_add_epi32(c, _mm256_madd_epi16(_mm256_maddubs_epi16(k80, o->w[i]), o->sc[i]));
        }
        o->neg = _mm256_sub_epi32(_mm256_setzero_si256(), c);
        o->dmin = 0.0f;
        o->mins = _mm_setzero_si128();
        return;
    }
    const uint8_t *sc12, *qs, *qh = NULL;
    if (type == SM_TYPE_Q4_K) {
        const sm_block_q4_K *x = (const sm_block_q4_K *)(const void *)blk;
        o->d = sm_f16_to_f32(x->d);
        o->dmin = sm_f16_to_f32(x->dmin);
        sc12 = x->scales;
        qs = x->qs;
    } else {
        const sm_block_q5_K *x = (const sm_block_q5_K *)(const void *)blk;
        o->d = sm_f16_to_f32(x->d);
        o->dmin = sm_f16_to_f32(x->dmin);
        sc12 = x->scales;
        qs = x->qs;
        qh = x->qh;
    }
    uint32_t v[4];
    k4_scales(sc12, v);
    o->mins = _mm_cvtepu8_epi16(_mm_set_epi32(0, 0, (int)v[3], (int)v[2]));
    uint8_t s8[8];
    memcpy(s8, v, 8);
    __m256i hq = _mm256_setzero_si256();
    if (qh)
        hq = _mm256_loadu_si256((const __m256i *)(const void *)qh);
    const __m256i k1 = _mm256_set1_epi8(1);
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) {
        /* sub-block i: nibble i&1 of qs[32*(i/2)..], 5th bit = qh bit i */
        const __m256i q = _mm256_loadu_si256((const __m256i *)(const void *)(qs + 32 * (i / 2)));
        __m256i w = i & 1 ? _mm256_and_si256(_mm256_srli_epi16(q, 4), m4) : _mm256_and_si256(q, m4);
        if (qh)
            w = _mm256_or_si256(
                w, _mm256_slli_epi16(_mm256_and_si256(_mm256_srl_epi16(hq, _mm_cvtsi32_si128(i)), k1), 4));
        o->w[i] = w;
        o->sc[i] = _mm256_set1_epi16(s8[i]);
    }
    o->neg = _mm256_setzero_si256();
}

/* Rows [r, r+R) x tokens [t, t+T) (R <= 2, T <= 4). */
MMQ_T_AVX2 INLINE void tile256(const mmq_args *a, uint32_t type, int64_t r, int32_t t, int R, int T)
{
    const size_t wb = kblock_bytes(type);
    const int64_t nb = a->K / 256;
    const uint8_t *wp[4];
    const sm_block_q8_K *xp[4];
    k_ptrs(a, r, t, R, T, wp, xp);
    const __m256i k80 = _mm256_set1_epi8((char)0x80);
    kacc A;
    k_acc_init(&A);
    for (int64_t b = 0; b < nb; b++) {
        kd256 dw[2];
#pragma GCC unroll 2
        for (int i = 0; i < R; i++)
            dec256(type, wp[i] + (size_t)b * wb, &dw[i]);
        float yd[4];
        __m128i bs[4];
        __m256i acc[2][4];
#pragma GCC unroll 4
        for (int j = 0; j < T; j++) {
            yd[j] = xp[j][b].d;
            bs[j] = type == SM_TYPE_Q6_K ? _mm_setzero_si128() : mmq_q8k_bsum32(&xp[j][b]);
#pragma GCC unroll 2
            for (int i = 0; i < R; i++)
                acc[i][j] = dw[i].neg;
        }
#pragma GCC unroll 8
        for (int c = 0; c < 8; c++)
#pragma GCC unroll 4
            for (int j = 0; j < T; j++) {
                __m256i x = _mm256_loadu_si256((const __m256i *)(const void *)(xp[j][b].qs + 32 * c));
                if (type == SM_TYPE_Q6_K)
                    x = _mm256_xor_si256(x, k80);
#pragma GCC unroll 2
                for (int i = 0; i < R; i++) {
                    const __m256i p = type == SM_TYPE_Q6_K ? _mm256_maddubs_epi16(x, dw[i].w[c])
                                                           : _mm256_maddubs_epi16(dw[i].w[c], x);
                    acc[i][j] = _mm256_add_epi32(acc[i][j], _mm256_madd_epi16(p, dw[i].sc[c]));
                }
            }
#pragma GCC unroll 2
        for (int i = 0; i < R; i++)
#pragma GCC unroll 4
            for (int j = 0; j < T; j++)
                k_pair_step(type, &A, i, j, acc[i][j], yd[j], dw[i].d, dw[i].dmin, dw[i].mins, bs[j]);
    }
    k_store(a, type, &A, r, t, R, T);
}

MMQ_T_AVX2 INLINE void range256(const mmq_args *a, uint32_t type)
{
    int64_t tb = (int64_t)(PANEL_BYTES / (a->act_stride ? a->act_stride : 1)) & ~(int64_t)3;
    if (tb < 4)
        tb = 4;
    for (int32_t t0 = 0; t0 < a->n_tok; t0 += (int32_t)tb) {
        const int32_t t1 = t0 + tb < a->n_tok ? t0 + (int32_t)tb : a->n_tok;
        int64_t r = a->r0;
        for (; r + 2 <= a->r1; r += 2) {
            int32_t t = t0;
            for (; t + 4 <= t1; t += 4)
                tile256(a, type, r, t, 2, 4);
            switch (t1 - t) {
            case 3: tile256(a, type, r, t, 2, 3); break;
            case 2: tile256(a, type, r, t, 2, 2); break;
            case 1: tile256(a, type, r, t, 2, 1); break;
            default: break;
            }
        }
        for (; r < a->r1; r++) {
            int32_t t = t0;
            for (; t + 4 <= t1; t += 4)
                tile256(a, type, r, t, 1, 4);
            for (; t < t1; t++)
                tile256(a, type, r, t, 1, 1);
        }
    }
}

MMQ_T_AVX2 static void rows256_q4_K(const mmq_args *a) { range256(a, SM_TYPE_Q4_K); }
MMQ_T_AVX2 static void rows256_q5_K(const mmq_args *a) { range256(a, SM_TYPE_Q5_K); }
MMQ_T_AVX2 static void rows256_q6_K(const mmq_args *a) { range256(a, SM_TYPE_Q6_K); }

#endif /* __x86_64__ */

/* Q4_K, Q5_K and Q6_K at AVX2 and above. */
int mmq_k_handles(uint32_t type)
{
#if defined(__x86_64__)
    return (type == SM_TYPE_Q4_K || type == SM_TYPE_Q5_K || type == SM_TYPE_Q6_K) && cpu_level() >= CPU_AVX2;
#else
    (void)type;
    return 0;
#endif
}

/* The product of mmq_rows for Q4_K/Q5_K/Q6_K (contract in mmq_impl.h); 0
 * when this type or CPU level has no kernel here. */
int mmq_k_rows(const mmq_args *a)
{
#if defined(__x86_64__)
    if (!mmq_k_handles(a->type))
        return 0;
    if (a->r0 >= a->r1 || a->n_tok <= 0)
        return 1;
    const int vnni = cpu_has_vnni();
    switch (a->type) {
    case SM_TYPE_Q4_K: vnni ? rows512_q4_K(a) : rows256_q4_K(a); break;
    case SM_TYPE_Q5_K: vnni ? rows512_q5_K(a) : rows256_q5_K(a); break;
    case SM_TYPE_Q6_K: vnni ? rows512_q6_K(a) : rows256_q6_K(a); break;
    default: return 0;
    }
    return 1;
#else
    (void)a;
    return 0;
#endif
}
