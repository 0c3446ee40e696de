/* mmf_x86.c — AVX-512 and AVX2 kernels for float-weight products (mmf.h).
 *
 * Each kernel reproduces one reference dot of ops.h bit for bit while
 * reading the F16/BF16/F32 weight rows in place:
 *   - tinyBLAS<16> (ops_dot_tb16): 16 fma lanes, lane = element % 16, gcc's
 *     512-bit reduction. Computed in register tiles of RM rows x RN tokens
 *     (one accumulator per pair): each weight vector is loaded once per
 *     16-element step for RN tokens, each activation vector for RM rows.
 *   - tinyBLAS<32> BF16 (ops_dot_tb32bf): 16 lanes, lane k of a 32-element
 *     step adds the product of elements 2k+1 then of 2k (vdpbf16ps order),
 *     products rounded before the add as in the reference.
 *   - ggml_vec_dot_f16/f32 (ops_dot_vf16/vf32): 4 x 16 lanes over 64-element
 *     steps, (s0+s2)+(s1+s3), the 512-bit reduction, then the tail (double
 *     for F16, fma chain for F32). Several rows per pass share the
 *     activation loads (generation streams the weights).
 *   - ggml_vec_dot_bf16 (ops_dot_vbf16): two vdpbf16ps accumulators over
 *     64-element steps, reduced into a double, tail in double.
 * Lanes are independent, so an AVX2 path holds the 16 lanes in two ymm
 * registers; F16 and BF16 widen to f32 exactly, and the order of every
 * lane's operations is the reference's, hence the same bits. */
#include "mmf.h"

#include "cpu.h"
#include "ops.h"
#include "simd_red.h"
#include "types.h"

#if defined(__x86_64__)
#include <immintrin.h>
#include <math.h>

#define T512 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl")))
#define T256 __attribute__((target("avx2,fma,f16c")))
#define INL inline __attribute__((always_inline))
/* the tile loops have constant trip counts once inlined; unrolled, the
 * accumulator arrays live in registers (-O2 alone keeps them in memory) */
#if defined(__clang__)
#define UNROLL _Pragma("unroll")
#else
#define UNROLL _Pragma("GCC unroll 8")
#endif

/* Largest register tiles (rows x tokens). */
enum { TB_RM = 4, TB_RN = 6, BF_RM = 4, BF_RN = 4, V_RM = 4, TB2_RM = 2, TB2_RN = 3, BF2_RM = 2, BF2_RN = 2 };

/* Activation bytes a token block may occupy: the block stays in L2 while
 * every row tile of the range runs over it. */
#define X_BLOCK_BYTES (1 << 20)

/* A tile at rows r.. (row i of the tile at w0 + i*rb) and tokens t.. */
typedef void (*tile_fn)(const mmf_job *j, const uint8_t *w0, uint64_t rb, int64_t r, int64_t t);
typedef void (*rows_fn)(const mmf_job *j, int64_t r, int64_t t);

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* Runs tab[rm-1][rn-1] over rows [r0, r1) x tokens [0, n_tok): tokens in
 * blocks of at most X_BLOCK_BYTES of activations, row tiles of rmax, token
 * tiles of rnmax or rnmax-1 (balanced, as tinyBLAS does, so no thin tile
 * is left at the end of a block). */
static void run_tiles(const mmf_job *j, const tile_fn *tab, int rmax, int rnmax)
{
    int64_t tbmax = X_BLOCK_BYTES / (j->K * 4);
    tbmax = tbmax < rnmax ? rnmax : tbmax / rnmax * rnmax;
    const int64_t nblk = (j->n_tok + tbmax - 1) / tbmax;
    int64_t t0 = 0;
    for (int64_t b = 0; b < nblk; b++) {
        const int64_t nb = j->n_tok / nblk + (b < j->n_tok % nblk);
        const int64_t ntile = (nb + rnmax - 1) / rnmax;
        for (int64_t r = j->r0; r < j->r1; r += rmax) {
            const int rm = (int)min64(rmax, j->r1 - r);
            const uint8_t *w0 = j->w + (uint64_t)r * j->row_bytes;
            const uint64_t rb = j->row_bytes;
            int64_t t = t0;
            for (int64_t i = 0; i < ntile; i++) {
                const int rn = (int)(nb / ntile + (i < nb % ntile));
                tab[(rm - 1) * rnmax + rn - 1](j, w0, rb, r, t);
                t += rn;
            }
        }
        t0 += nb;
    }
}

/* Vec-dot kernels: for each group of up to rmax rows, every token. */
static void run_rows(const mmf_job *j, const rows_fn *tab, int rmax)
{
    for (int64_t r = j->r0; r < j->r1; r += rmax) {
        const int rm = (int)min64(rmax, j->r1 - r);
        for (int64_t t = 0; t < j->n_tok; t++)
            tab[rm - 1](j, r, t);
    }
}

static void put(const mmf_job *j, int64_t r, int64_t t, float s)
{
    j->y[t * j->ldy + r] = j->bias ? s + j->bias[r] : s;
}

/* ------------------------------------------------------------ AVX-512 */

/* 16 weights from element l of a row (F16 when f16, else F32). */
T512 static INL __m512 ldw512(const uint8_t *p, int64_t l, int f16)
{
    if (f16)
        return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(p + 2 * l)));
    return _mm512_loadu_ps((const float *)(const void *)(p + 4 * l));
}

T512 static INL void tb16_tile512(const mmf_job *j, const uint8_t *w0, uint64_t rb, int64_t r, int64_t t, int f16,
                                  int RM, int RN)
{
    const uint8_t *wr[TB_RM];
    const float *xt[TB_RN];
    __m512 acc[TB_RM][TB_RN];
    UNROLL
    for (int i = 0; i < RM; i++)
        wr[i] = w0 + (uint64_t)i * rb;
    UNROLL
    for (int n = 0; n < RN; n++)
        xt[n] = j->x + (t + n) * j->ldx;
    UNROLL
    for (int i = 0; i < RM; i++)
        UNROLL
        for (int n = 0; n < RN; n++)
            acc[i][n] = _mm512_setzero_ps();
    for (int64_t l = 0; l < j->K; l += 16) {
        __m512 wv[TB_RM];
        UNROLL
        for (int i = 0; i < RM; i++)
            wv[i] = ldw512(wr[i], l, f16);
        UNROLL
        for (int n = 0; n < RN; n++) {
            const __m512 xv = _mm512_loadu_ps(xt[n] + l);
            UNROLL
            for (int i = 0; i < RM; i++)
                acc[i][n] = _mm512_fmadd_ps(wv[i], xv, acc[i][n]);
        }
    }
    if (RM == 4) {
        /* four rows of one token are adjacent in y: reduced together */
        UNROLL
        for (int n = 0; n < RN; n++) {
            __m128 v = simd_red512_x4_pack(simd_red512_x4(acc[0][n], acc[1][n], acc[2][n], acc[3][n]));
            if (j->bias)
                v = _mm_add_ps(v, _mm_loadu_ps(j->bias + r)); /* put(): s + bias[r] */
            _mm_storeu_ps(j->y + (t + n) * j->ldy + r, v);
        }
        return;
    }
    UNROLL
    for (int n = 0; n < RN; n++)
        UNROLL
        for (int i = 0; i < RM; i++)
            put(j, r + i, t + n, simd_red512(acc[i][n]));
}

/* vdpbf16ps step operands: 32 BF16 weights as even/odd f32 lanes, and the
 * same split of 32 activations (f32 holding BF16 values). */
T512 static INL void ldbf512(const uint8_t *p, int64_t l, __m512 *ev, __m512 *od)
{
    const __m512i u = _mm512_loadu_si512((const void *)(p + 2 * l));
    *ev = _mm512_castsi512_ps(_mm512_slli_epi32(u, 16));
    *od = _mm512_castsi512_ps(_mm512_and_si512(u, _mm512_set1_epi32((int)0xffff0000u)));
}

T512 static INL void ldxbf512(const float *x, __m512 *ev, __m512 *od)
{
    const __m512i ie = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i io = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    const __m512 a = _mm512_loadu_ps(x), b = _mm512_loadu_ps(x + 16);
    *ev = _mm512_permutex2var_ps(a, ie, b);
    *od = _mm512_permutex2var_ps(a, io, b);
}

/* acc + wo*xo, then + we*xe (ops.c dpbf16_step) */
T512 static INL __m512 dpbf512(__m512 acc, __m512 we, __m512 wo, __m512 xe, __m512 xo)
{
    return _mm512_add_ps(_mm512_add_ps(acc, _mm512_mul_ps(wo, xo)), _mm512_mul_ps(we, xe));
}

T512 static INL void tbbf_tile512(const mmf_job *j, const uint8_t *w0, uint64_t rb, int64_t r, int64_t t, int RM,
                                  int RN)
{
    const uint8_t *wr[BF_RM];
    const float *xt[BF_RN];
    __m512 acc[BF_RM][BF_RN];
    UNROLL
    for (int i = 0; i < RM; i++)
        wr[i] = w0 + (uint64_t)i * rb;
    UNROLL
    for (int n = 0; n < RN; n++)
        xt[n] = j->x + (t + n) * j->ldx;
    UNROLL
    for (int i = 0; i < RM; i++)
        UNROLL
        for (int n = 0; n < RN; n++)
            acc[i][n] = _mm512_setzero_ps();
    for (int64_t l = 0; l + 32 <= j->K; l += 32) {
        __m512 we[BF_RM], wo[BF_RM];
        UNROLL
        for (int i = 0; i < RM; i++)
            ldbf512(wr[i], l, &we[i], &wo[i]);
        UNROLL
        for (int n = 0; n < RN; n++) {
            __m512 xe, xo;
            ldxbf512(xt[n] + l, &xe, &xo);
            UNROLL
            for (int i = 0; i < RM; i++)
                acc[i][n] = dpbf512(acc[i][n], we[i], wo[i], xe, xo);
        }
    }
    UNROLL
    for (int n = 0; n < RN; n++)
        UNROLL
        for (int i = 0; i < RM; i++)
            put(j, r + i, t + n, simd_red512(acc[i][n]));
}

/* ggml_vec_dot_f16 / _f32 for RM rows and token t. */
/* ggml_vec_dot_f16/f32 for RM rows and token t over the 64-element steps
 * and their reduction; K % 64 == 0 when called from the row tables. With
 * mains != NULL the partial sums go to mains[i] and run_vtail512 adds the
 * tail. */
T512 static INL void v64_rows512(const mmf_job *j, int64_t r, int64_t t, int f16, int RM, float *mains)
{
    const int64_t K = j->K, np = K & ~(int64_t)63;
    const float *x = j->x + t * j->ldx;
    const uint8_t *wr[V_RM], *pf[V_RM];
    __m512 s[V_RM][4];
    UNROLL
    for (int i = 0; i < RM; i++) {
        wr[i] = j->w + (uint64_t)(r + i) * j->row_bytes;
        pf[i] = j->w + (uint64_t)(r + RM + i < j->r1 ? r + RM + i : r + i) * j->row_bytes;
        UNROLL
        for (int q = 0; q < 4; q++)
            s[i][q] = _mm512_setzero_ps();
    }
    const int64_t es = f16 ? 2 : 4;
    for (int64_t l = 0; l < np; l += 64) {
        /* the next row group, one step at a time: the rows are separate
         * pages the hardware prefetcher would only find late */
        UNROLL
        for (int i = 0; i < RM; i++) {
            _mm_prefetch((const char *)pf[i] + es * l, _MM_HINT_T0);
            _mm_prefetch((const char *)pf[i] + es * l + 64, _MM_HINT_T0);
            if (!f16) {
                _mm_prefetch((const char *)pf[i] + es * l + 128, _MM_HINT_T0);
                _mm_prefetch((const char *)pf[i] + es * l + 192, _MM_HINT_T0);
            }
        }
        const __m512 x0 = _mm512_loadu_ps(x + l), x1 = _mm512_loadu_ps(x + l + 16);
        const __m512 x2 = _mm512_loadu_ps(x + l + 32), x3 = _mm512_loadu_ps(x + l + 48);
        UNROLL
        for (int i = 0; i < RM; i++) {
            s[i][0] = _mm512_fmadd_ps(ldw512(wr[i], l, f16), x0, s[i][0]);
            s[i][1] = _mm512_fmadd_ps(ldw512(wr[i], l + 16, f16), x1, s[i][1]);
            s[i][2] = _mm512_fmadd_ps(ldw512(wr[i], l + 32, f16), x2, s[i][2]);
            s[i][3] = _mm512_fmadd_ps(ldw512(wr[i], l + 48, f16), x3, s[i][3]);
        }
    }
    UNROLL
    for (int i = 0; i < RM; i++) {
        const __m512 v = _mm512_add_ps(_mm512_add_ps(s[i][0], s[i][2]), _mm512_add_ps(s[i][1], s[i][3]));
        const float vs = simd_red512(v);
        /* no tail here: rows with K % 64 != 0 go through run_vtail512,
         * which takes mains and finishes them (for F16, (float)(double)vs
         * is vs) */
        if (mains)
            mains[i] = vs;
        else
            put(j, r + i, t, vs);
    }
}

/* ggml_vec_dot_bf16 for RM rows and token t. */
T512 static INL void vbf_rows512(const mmf_job *j, int64_t r, int64_t t, int RM)
{
    const int64_t K = j->K;
    const float *x = j->x + t * j->ldx;
    const uint8_t *wr[V_RM];
    __m512 c1[V_RM], c2[V_RM];
    UNROLL
    for (int i = 0; i < RM; i++) {
        wr[i] = j->w + (uint64_t)(r + i) * j->row_bytes;
        c1[i] = c2[i] = _mm512_setzero_ps();
    }
    int64_t l = 0;
    for (; l + 64 <= K; l += 64) {
        __m512 xe1, xo1, xe2, xo2;
        ldxbf512(x + l, &xe1, &xo1);
        ldxbf512(x + l + 32, &xe2, &xo2);
        UNROLL
        for (int i = 0; i < RM; i++) {
            __m512 we, wo;
            ldbf512(wr[i], l, &we, &wo);
            c1[i] = dpbf512(c1[i], we, wo, xe1, xo1);
            ldbf512(wr[i], l + 32, &we, &wo);
            c2[i] = dpbf512(c2[i], we, wo, xe2, xo2);
        }
    }
    UNROLL
    for (int i = 0; i < RM; i++) {
        const uint16_t *h = (const uint16_t *)(const void *)wr[i];
        double sum = 0.0;
        sum += (double)simd_red512(c1[i]);
        sum += (double)simd_red512(c2[i]);
        for (int64_t k = l; k < K; k++) {
            uint32_t u = (uint32_t)h[k] << 16;
            float wf;
            __builtin_memcpy(&wf, &u, 4);
            sum += (double)(wf * x[k]);
        }
        put(j, r + i, t, (float)sum);
    }
}

/* One function per tile shape (constant RM/RN: the tile lives in
 * registers), collected in tables indexed [rm-1][rn-1]. */
#define TILE512(NAME, BODY, RM, RN)                                                                                    \
    T512 static void NAME##_##RM##_##RN(const mmf_job *j, const uint8_t *w0, uint64_t rb, int64_t r, int64_t t)       \
    {                                                                                                                  \
        BODY;                                                                                                          \
    }
#define VROWS512(NAME, BODY, RM) T512 static void NAME##_##RM(const mmf_job *j, int64_t r, int64_t t) { BODY; }
#define TILE512_ROW(NAME, BODY, RM)                                                                                    \
    TILE512(NAME, BODY(RM, 1), RM, 1)                                                                                  \
    TILE512(NAME, BODY(RM, 2), RM, 2)                                                                                  \
    TILE512(NAME, BODY(RM, 3), RM, 3)                                                                                  \
    TILE512(NAME, BODY(RM, 4), RM, 4)                                                                                  \
    TILE512(NAME, BODY(RM, 5), RM, 5)                                                                                  \
    TILE512(NAME, BODY(RM, 6), RM, 6)
#define TILE512_ALL(NAME, BODY)                                                                                        \
    TILE512_ROW(NAME, BODY, 1) TILE512_ROW(NAME, BODY, 2) TILE512_ROW(NAME, BODY, 3) TILE512_ROW(NAME, BODY, 4)
#define TAB_ROW(NAME, RM) NAME##_##RM##_1, NAME##_##RM##_2, NAME##_##RM##_3, NAME##_##RM##_4, NAME##_##RM##_5, NAME##_##RM##_6
#define TAB_ROW4(NAME, RM) NAME##_##RM##_1, NAME##_##RM##_2, NAME##_##RM##_3, NAME##_##RM##_4

#define B_TB16H(RM, RN) tb16_tile512(j, w0, rb, r, t, 1, RM, RN)
#define B_TB16F(RM, RN) tb16_tile512(j, w0, rb, r, t, 0, RM, RN)
TILE512_ALL(tb16h512, B_TB16H)
TILE512_ALL(tb16f512, B_TB16F)
static const tile_fn tb16h512_tab[TB_RM * TB_RN] = {TAB_ROW(tb16h512, 1), TAB_ROW(tb16h512, 2), TAB_ROW(tb16h512, 3),
                                                    TAB_ROW(tb16h512, 4)};
static const tile_fn tb16f512_tab[TB_RM * TB_RN] = {TAB_ROW(tb16f512, 1), TAB_ROW(tb16f512, 2), TAB_ROW(tb16f512, 3),
                                                    TAB_ROW(tb16f512, 4)};

#define TILE512_ROW4(NAME, BODY, RM)                                                                                   \
    TILE512(NAME, BODY(RM, 1), RM, 1)                                                                                  \
    TILE512(NAME, BODY(RM, 2), RM, 2)                                                                                  \
    TILE512(NAME, BODY(RM, 3), RM, 3)                                                                                  \
    TILE512(NAME, BODY(RM, 4), RM, 4)
#define B_TBBF(RM, RN) tbbf_tile512(j, w0, rb, r, t, RM, RN)
TILE512_ROW4(tbbf512, B_TBBF, 1)
TILE512_ROW4(tbbf512, B_TBBF, 2)
TILE512_ROW4(tbbf512, B_TBBF, 3)
TILE512_ROW4(tbbf512, B_TBBF, 4)
static const tile_fn tbbf512_tab[BF_RM * BF_RN] = {TAB_ROW4(tbbf512, 1), TAB_ROW4(tbbf512, 2), TAB_ROW4(tbbf512, 3),
                                                   TAB_ROW4(tbbf512, 4)};

#define B_V16(RM, RN) v64_rows512(j, r, t, 1, RM, NULL)
#define B_V32(RM, RN) v64_rows512(j, r, t, 0, RM, NULL)
#define B_VBF(RM, RN) vbf_rows512(j, r, t, RM)
VROWS512(vh512, B_V16(1, 1), 1)
VROWS512(vh512, B_V16(2, 1), 2)
VROWS512(vh512, B_V16(3, 1), 3)
VROWS512(vh512, B_V16(4, 1), 4)
VROWS512(vf512, B_V32(1, 1), 1)
VROWS512(vf512, B_V32(2, 1), 2)
VROWS512(vf512, B_V32(3, 1), 3)
VROWS512(vf512, B_V32(4, 1), 4)
VROWS512(vbf512, B_VBF(1, 1), 1)
VROWS512(vbf512, B_VBF(2, 1), 2)
VROWS512(vbf512, B_VBF(3, 1), 3)
VROWS512(vbf512, B_VBF(4, 1), 4)
static const rows_fn vh512_tab[V_RM] = {vh512_1, vh512_2, vh512_3, vh512_4};
static const rows_fn vf512_tab[V_RM] = {vf512_1, vf512_2, vf512_3, vf512_4};
static const rows_fn vbf512_tab[V_RM] = {vbf512_1, vbf512_2, vbf512_3, vbf512_4};

/* ---- ggml_vec_dot_f16/f32 rows with a tail (K % 64 != 0). The reference
 * finishes each output with a sequential chain over the last K % 64
 * elements (adds of rounded products then an fma chain for F32, see
 * ops_dot_vf32; double adds of rounded products for F16): 4 cycles of latency per element and output, which made a 172-wide
 * FFN-down row cost ~20x its 128-element main part. Here each output is a
 * lane: the tail of 16 rows is transposed once per row group, and 4 tokens
 * run side by side, so the chain runs at fma throughput with every lane's
 * order unchanged. */
typedef void (*vmain_fn)(const mmf_job *j, int64_t r, int64_t t, float *mains);
#define VMAIN512(NAME, F16, RM) \
    T512 static void NAME##_##RM(const mmf_job *j, int64_t r, int64_t t, float *mains) \
    { \
        v64_rows512(j, r, t, F16, RM, mains); \
    }
VMAIN512(vmh512, 1, 1)
VMAIN512(vmh512, 1, 2)
VMAIN512(vmh512, 1, 3)
VMAIN512(vmh512, 1, 4)
VMAIN512(vmf512, 0, 1)
VMAIN512(vmf512, 0, 2)
VMAIN512(vmf512, 0, 3)
VMAIN512(vmf512, 0, 4)
static const vmain_fn vmh512_tab[V_RM] = {vmh512_1, vmh512_2, vmh512_3, vmh512_4};
static const vmain_fn vmf512_tab[V_RM] = {vmf512_1, vmf512_2, vmf512_3, vmf512_4};

enum { VT_TOK = 4 };

T512 static void run_vtail512(const mmf_job *j, int f16)
{
    const int64_t K = j->K, np = K & ~(int64_t)63, nt = K - np;
    const vmain_fn *mtab = f16 ? vmh512_tab : vmf512_tab;
    float tw[63 * 16] __attribute__((aligned(64))); /* [nt][16] tail of 16 rows, lane = row */
    for (int64_t r = j->r0; r < j->r1; r += 16) {
        const int rm = (int)min64(16, j->r1 - r);
        const __mmask16 rmask = (__mmask16)((1u << rm) - 1);
        for (int64_t k = 0; k < nt; k++)
            for (int i = 0; i < 16; i++) {
                const uint8_t *wr = j->w + (uint64_t)(r + (i < rm ? i : 0)) * j->row_bytes;
                tw[k * 16 + i] = f16 ? _cvtsh_ss(((const uint16_t *)(const void *)wr)[np + k])
                                     : ((const float *)(const void *)wr)[np + k];
            }
        const __m512 bias = j->bias ? _mm512_maskz_loadu_ps(rmask, j->bias + r) : _mm512_setzero_ps();
        for (int64_t t0 = 0; t0 < j->n_tok; t0 += VT_TOK) {
            const int tn = (int)min64(VT_TOK, j->n_tok - t0);
            float mains[VT_TOK][16] __attribute__((aligned(64)));
            const float *xt[VT_TOK];
            for (int u = 0; u < VT_TOK; u++) {
                /* missing tokens repeat the last one; their lanes are dropped */
                const int64_t t = t0 + (u < tn ? u : tn - 1);
                xt[u] = j->x + t * j->ldx + np;
                for (int i = 0; i < rm; i += V_RM)
                    mtab[min64(V_RM, rm - i) - 1](j, r + i, t, &mains[u][i]);
            }
            __m512 out[VT_TOK];
            if (!f16) {
                __m512 acc[VT_TOK];
                UNROLL
                for (int u = 0; u < VT_TOK; u++)
                    acc[u] = _mm512_load_ps(mains[u]);
                /* rounded products added in order, then the fused
                 * remainder (see ops_dot_vf32) */
                const int64_t nm = ops_vf32_fma_from(K) - np;
                for (int64_t k = 0; k < nm; k++) {
                    const __m512 w = _mm512_load_ps(tw + k * 16);
                    UNROLL
                    for (int u = 0; u < VT_TOK; u++)
                        acc[u] = _mm512_add_ps(acc[u], _mm512_mul_ps(w, _mm512_set1_ps(xt[u][k])));
                }
                for (int64_t k = nm; k < nt; k++) {
                    const __m512 w = _mm512_load_ps(tw + k * 16);
                    UNROLL
                    for (int u = 0; u < VT_TOK; u++)
                        acc[u] = _mm512_fmadd_ps(w, _mm512_set1_ps(xt[u][k]), acc[u]);
                }
                UNROLL
                for (int u = 0; u < VT_TOK; u++)
                    out[u] = acc[u];
            } else {
                /* lanes 0-7 and 8-15 as doubles: sum += (double)(w * x) */
                __m512d lo[VT_TOK], hi[VT_TOK];
                UNROLL
                for (int u = 0; u < VT_TOK; u++) {
                    const __m512 m = _mm512_load_ps(mains[u]);
                    lo[u] = _mm512_cvtps_pd(_mm512_castps512_ps256(m));
                    hi[u] = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(m), 1)));
                }
                for (int64_t k = 0; k < nt; k++) {
                    const __m512 w = _mm512_load_ps(tw + k * 16);
                    UNROLL
                    for (int u = 0; u < VT_TOK; u++) {
                        const __m512 p = _mm512_mul_ps(w, _mm512_set1_ps(xt[u][k]));
                        lo[u] = _mm512_add_pd(lo[u], _mm512_cvtps_pd(_mm512_castps512_ps256(p)));
                        hi[u] = _mm512_add_pd(
                            hi[u], _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(p), 1))));
                    }
                }
                UNROLL
                for (int u = 0; u < VT_TOK; u++)
                    out[u] = _mm512_insertf32x8(_mm512_castps256_ps512(_mm512_cvtpd_ps(lo[u])), _mm512_cvtpd_ps(hi[u]),
                                                1);
            }
            for (int u = 0; u < tn; u++) {
                /* put(): s + bias[r] in float */
                const __m512 y = j->bias ? _mm512_add_ps(out[u], bias) : out[u];
                _mm512_mask_storeu_ps(j->y + (t0 + u) * j->ldy + r, rmask, y);
            }
        }
    }
}

/* ---- tinyBLAS<16> blocked over K (prompt processing). The plain tiles
 * read each activation vector from L2 once per row tile; here a token tile
 * runs over a block of KB_ROWS rows one K chunk at a time, so its chunk of
 * activations stays in L1 for every row tile of the block while the
 * block's weights come from L2. The tile accumulators wait in scratch
 * between chunks: a store and a reload are exact, and each lane still
 * takes its fmas in k order. */
enum { KC = 512, KB_ROWS = 84 };

/* Tile (RM rows from w0, stride rb) x (RN tokens from x0, stride ldx) over
 * elements [l0, l1), accumulators acc[i*TB_RN + n] (16 floats each). */
T512 static INL void tb16_kc512(const uint8_t *w0, uint64_t rb, const float *x0, int64_t ldx, int64_t l0, int64_t l1,
                                float *acc, int f16, int RM, int RN)
{
    __m512 a[TB_RM][TB_RN];
    const uint8_t *wr[TB_RM];
    UNROLL
    for (int i = 0; i < RM; i++) {
        wr[i] = w0 + (uint64_t)i * rb;
        UNROLL
        for (int n = 0; n < RN; n++)
            a[i][n] = _mm512_load_ps(acc + (i * TB_RN + n) * 16);
    }
    for (int64_t l = l0; l < l1; l += 16) {
        __m512 wv[TB_RM];
        UNROLL
        for (int i = 0; i < RM; i++)
            wv[i] = ldw512(wr[i], l, f16);
        UNROLL
        for (int n = 0; n < RN; n++) {
            const __m512 xv = _mm512_loadu_ps(x0 + n * ldx + l);
            UNROLL
            for (int i = 0; i < RM; i++)
                a[i][n] = _mm512_fmadd_ps(wv[i], xv, a[i][n]);
        }
    }
    UNROLL
    for (int i = 0; i < RM; i++)
        UNROLL
        for (int n = 0; n < RN; n++)
            _mm512_store_ps(acc + (i * TB_RN + n) * 16, a[i][n]);
}

typedef void (*kc_fn)(const uint8_t *w0, uint64_t rb, const float *x0, int64_t ldx, int64_t l0, int64_t l1,
                      float *acc);
#define KC512(F, FL, RM, RN)                                                                                           \
    T512 static void kc512_##F##_##RM##_##RN(const uint8_t *w0, uint64_t rb, const float *x0, int64_t ldx,           \
                                             int64_t l0, int64_t l1, float *acc)                                      \
    {                                                                                                                  \
        tb16_kc512(w0, rb, x0, ldx, l0, l1, acc, FL, RM, RN);                                                          \
    }
#define KC512_ROW(F, FL, RM)                                                                                           \
    KC512(F, FL, RM, 1) KC512(F, FL, RM, 2) KC512(F, FL, RM, 3) KC512(F, FL, RM, 4) KC512(F, FL, RM, 5)              \
        KC512(F, FL, RM, 6)
KC512_ROW(h, 1, 1) KC512_ROW(h, 1, 2) KC512_ROW(h, 1, 3) KC512_ROW(h, 1, 4)
KC512_ROW(f, 0, 1) KC512_ROW(f, 0, 2) KC512_ROW(f, 0, 3) KC512_ROW(f, 0, 4)
static const kc_fn kc512h_tab[TB_RM * TB_RN] = {TAB_ROW(kc512_h, 1), TAB_ROW(kc512_h, 2), TAB_ROW(kc512_h, 3),
                                                TAB_ROW(kc512_h, 4)};
static const kc_fn kc512f_tab[TB_RM * TB_RN] = {TAB_ROW(kc512_f, 1), TAB_ROW(kc512_f, 2), TAB_ROW(kc512_f, 3),
                                                TAB_ROW(kc512_f, 4)};

/* Rows per block the scratch can hold accumulators for (a multiple of
 * TB_RM, at most KB_ROWS), 0 when too few for blocking to pay. */
static int64_t kblock_rows(const mmf_job *j)
{
    const int64_t avail = mmf_scratch_floats(j->K) - 16; /* after aligning */
    int64_t rows = avail / (TB_RN * 16) / TB_RM * TB_RM;
    rows = rows > KB_ROWS ? KB_ROWS : rows;
    return j->K >= 2 * KC && rows >= 4 * TB_RM ? rows : 0;
}

T512 static void run_kblocked512(const mmf_job *j, int f16, int64_t brows)
{
    const kc_fn *tab = f16 ? kc512h_tab : kc512f_tab;
    float *acc = j->scratch + ((0u - (uintptr_t)j->scratch) / sizeof(float) & 15);
    const int64_t K = j->K, nt = j->n_tok;
    const int64_t ntile = (nt + TB_RN - 1) / TB_RN;
    for (int64_t b0 = j->r0; b0 < j->r1; b0 += brows) {
        const int64_t b1 = min64(b0 + brows, j->r1);
        int64_t t = 0;
        for (int64_t it = 0; it < ntile; it++) {
            const int rn = (int)(nt / ntile + (it < nt % ntile));
            const float *x0 = j->x + t * j->ldx;
            for (int64_t q = 0; q < (b1 - b0) * TB_RN * 16; q += 16)
                _mm512_store_ps(acc + q, _mm512_setzero_ps());
            for (int64_t l0 = 0; l0 < K; l0 += KC) {
                const int64_t l1 = min64(l0 + KC, K);
                for (int64_t r = b0; r < b1; r += TB_RM) {
                    const int rm = (int)min64(TB_RM, b1 - r);
                    tab[(rm - 1) * TB_RN + rn - 1](j->w + (uint64_t)r * j->row_bytes, j->row_bytes, x0, j->ldx, l0, l1,
                                                   acc + (r - b0) * TB_RN * 16);
                }
            }
            for (int64_t r = b0; r < b1; r++)
                for (int n = 0; n < rn; n++)
                    put(j, r, t + n, simd_red512(_mm512_load_ps(acc + ((r - b0) * TB_RN + n) * 16)));
            t += rn;
        }
    }
}

/* ------------------------------------------------------------ AVX2 */

/* red512 of the 16 lanes held as lo (0..7) and hi (8..15). */
T256 static INL float red256x2(__m256 lo, __m256 hi)
{
    const __m256 s = _mm256_add_ps(hi, lo);
    __m128 q = _mm_add_ps(_mm256_extractf128_ps(s, 1), _mm256_castps256_ps128(s));
    q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    q = _mm_add_ss(q, _mm_movehdup_ps(q));
    return _mm_cvtss_f32(q);
}

T256 static INL __m256 ldw256(const uint8_t *p, int64_t l, int f16)
{
    if (f16)
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(p + 2 * l)));
    return _mm256_loadu_ps((const float *)(const void *)(p + 4 * l));
}

T256 static INL void tb16_tile256(const mmf_job *j, const uint8_t *w0, uint64_t rb, int64_t r, int64_t t, int f16,
                                  int RM, int RN)
{
    const uint8_t *wr[TB2_RM];
    const float *xt[TB2_RN];
    __m256 acc[TB2_RM][TB2_RN][2];
    UNROLL
    for (int i = 0; i < RM; i++)
        wr[i] = w0 + (uint64_t)i * rb;
    UNROLL
    for (int n = 0; n < RN; n++)
        xt[n] = j->x + (t + n) * j->ldx;
    UNROLL
    for (int i = 0; i < RM; i++)
        UNROLL
        for (int n = 0; n < RN; n++)
            acc[i][n][0] = acc[i][n][1] = _mm256_setzero_ps();
    for (int64_t l = 0; l < j->K; l += 16)
        UNROLL
        for (int h = 0; h < 2; h++) {
            __m256 wv[TB2_RM];
            UNROLL
            for (int i = 0; i < RM; i++)
                wv[i] = ldw256(wr[i], l + 8 * h, f16);
            UNROLL
            for (int n = 0; n < RN; n++) {
                const __m256 xv = _mm256_loadu_ps(xt[n] + l + 8 * h);
                UNROLL
                for (int i = 0; i < RM; i++)
                    acc[i][n][h] = _mm256_fmadd_ps(wv[i], xv, acc[i][n][h]);
            }
        }
    UNROLL
    for (int n = 0; n < RN; n++)
        UNROLL
        for (int i = 0; i < RM; i++)
            put(j, r + i, t + n, red256x2(acc[i][n][0], acc[i][n][1]));
}

/* 16 BF16 weights (lanes 8h..8h+7 of a 32-step) as even/odd f32 lanes */
T256 static INL void ldbf256(const uint8_t *p, int64_t l, __m256 *ev, __m256 *od)
{
    const __m256i u = _mm256_loadu_si256((const __m256i *)(const void *)(p + 2 * l));
    *ev = _mm256_castsi256_ps(_mm256_slli_epi32(u, 16));
    *od = _mm256_castsi256_ps(_mm256_and_si256(u, _mm256_set1_epi32((int)0xffff0000u)));
}

/* 16 activations split into their even and odd elements, in order */
T256 static INL void ldxbf256(const float *x, __m256 *ev, __m256 *od)
{
    const __m256 a = _mm256_loadu_ps(x), b = _mm256_loadu_ps(x + 8);
    *ev = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0x88)), 0xd8));
    *od = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0xdd)), 0xd8));
}

T256 static INL __m256 dpbf256(__m256 acc, __m256 we, __m256 wo, __m256 xe, __m256 xo)
{
    return _mm256_add_ps(_mm256_add_ps(acc, _mm256_mul_ps(wo, xo)), _mm256_mul_ps(we, xe));
}

T256 static INL void tbbf_tile256(const mmf_job *j, const uint8_t *w0, uint64_t rb, int64_t r, int64_t t, int RM,
                                  int RN)
{
    const uint8_t *wr[BF2_RM];
    const float *xt[BF2_RN];
    __m256 acc[BF2_RM][BF2_RN][2];
    UNROLL
    for (int i = 0; i < RM; i++)
        wr[i] = w0 + (uint64_t)i * rb;
    UNROLL
    for (int n = 0; n < RN; n++)
        xt[n] = j->x + (t + n) * j->ldx;
    UNROLL
    for (int i = 0; i < RM; i++)
        UNROLL
        for (int n = 0; n < RN; n++)
            acc[i][n][0] = acc[i][n][1] = _mm256_setzero_ps();
    for (int64_t l = 0; l + 32 <= j->K; l += 32)
        UNROLL
        for (int h = 0; h < 2; h++) {
            __m256 we[BF2_RM], wo[BF2_RM];
            UNROLL
            for (int i = 0; i < RM; i++)
                ldbf256(wr[i], l + 16 * h, &we[i], &wo[i]);
            UNROLL
            for (int n = 0; n < RN; n++) {
                __m256 xe, xo;
                ldxbf256(xt[n] + l + 16 * h, &xe, &xo);
                UNROLL
                for (int i = 0; i < RM; i++)
                    acc[i][n][h] = dpbf256(acc[i][n][h], we[i], wo[i], xe, xo);
            }
        }
    UNROLL
    for (int n = 0; n < RN; n++)
        UNROLL
        for (int i = 0; i < RM; i++)
            put(j, r + i, t + n, red256x2(acc[i][n][0], acc[i][n][1]));
}

/* ggml_vec_dot_f16 / _f32, one row and token t */
T256 static INL void v64_row256(const mmf_job *j, int64_t r, int64_t t, int f16)
{
    const int64_t K = j->K, np = K & ~(int64_t)63;
    const float *x = j->x + t * j->ldx;
    const uint8_t *wr = j->w + (uint64_t)r * j->row_bytes;
    __m256 s[4][2];
    UNROLL
    for (int q = 0; q < 4; q++)
        s[q][0] = s[q][1] = _mm256_setzero_ps();
    for (int64_t l = 0; l < np; l += 64)
        UNROLL
        for (int q = 0; q < 4; q++)
            UNROLL
            for (int h = 0; h < 2; h++) {
                const int64_t o = l + 16 * q + 8 * h;
                s[q][h] = _mm256_fmadd_ps(ldw256(wr, o, f16), _mm256_loadu_ps(x + o), s[q][h]);
            }
    const __m256 lo = _mm256_add_ps(_mm256_add_ps(s[0][0], s[2][0]), _mm256_add_ps(s[1][0], s[3][0]));
    const __m256 hi = _mm256_add_ps(_mm256_add_ps(s[0][1], s[2][1]), _mm256_add_ps(s[1][1], s[3][1]));
    const float vs = red256x2(lo, hi);
    if (f16) {
        const uint16_t *h = (const uint16_t *)(const void *)wr;
        double sum = (double)vs;
        for (int64_t k = np; k < K; k++)
            sum += (double)(_cvtsh_ss(h[k]) * x[k]);
        put(j, r, t, (float)sum);
    } else {
        const float *f = (const float *)(const void *)wr;
        const int64_t nf = ops_vf32_fma_from(K);
        float sum = vs;
        int64_t k = np;
        for (; k < nf; k++)
            sum += f[k] * x[k]; /* rounded product, then add (see ops_dot_vf32) */
        for (; k < K; k++)
            sum = fmaf(f[k], x[k], sum);
        put(j, r, t, sum);
    }
}

/* ggml_vec_dot_bf16, one row and token t */
T256 static INL void vbf_row256(const mmf_job *j, int64_t r, int64_t t)
{
    const int64_t K = j->K;
    const float *x = j->x + t * j->ldx;
    const uint8_t *wr = j->w + (uint64_t)r * j->row_bytes;
    __m256 c[2][2];
    c[0][0] = c[0][1] = c[1][0] = c[1][1] = _mm256_setzero_ps();
    int64_t l = 0;
    for (; l + 64 <= K; l += 64)
        UNROLL
        for (int a = 0; a < 2; a++)
            UNROLL
            for (int h = 0; h < 2; h++) {
                __m256 we, wo, xe, xo;
                ldbf256(wr, l + 32 * a + 16 * h, &we, &wo);
                ldxbf256(x + l + 32 * a + 16 * h, &xe, &xo);
                c[a][h] = dpbf256(c[a][h], we, wo, xe, xo);
            }
    const uint16_t *h = (const uint16_t *)(const void *)wr;
    double sum = 0.0;
    sum += (double)red256x2(c[0][0], c[0][1]);
    sum += (double)red256x2(c[1][0], c[1][1]);
    for (int64_t k = l; k < K; k++) {
        uint32_t u = (uint32_t)h[k] << 16;
        float wf;
        __builtin_memcpy(&wf, &u, 4);
        sum += (double)(wf * x[k]);
    }
    put(j, r, t, (float)sum);
}

#define TILE256(NAME, BODY, RM, RN)                                                                                    \
    T256 static void NAME##_##RM##_##RN(const mmf_job *j, const uint8_t *w0, uint64_t rb, int64_t r, int64_t t)       \
    {                                                                                                                  \
        BODY;                                                                                                          \
    }
#define VROW256(NAME, BODY) T256 static void NAME(const mmf_job *j, int64_t r, int64_t t) { BODY; }
#define B2_TB16H(RM, RN) tb16_tile256(j, w0, rb, r, t, 1, RM, RN)
#define B2_TB16F(RM, RN) tb16_tile256(j, w0, rb, r, t, 0, RM, RN)
#define B2_TBBF(RM, RN) tbbf_tile256(j, w0, rb, r, t, RM, RN)
#define TILE256_2x3(NAME, B)                                                                                           \
    TILE256(NAME, B(1, 1), 1, 1)                                                                                       \
    TILE256(NAME, B(1, 2), 1, 2)                                                                                       \
    TILE256(NAME, B(1, 3), 1, 3)                                                                                       \
    TILE256(NAME, B(2, 1), 2, 1)                                                                                       \
    TILE256(NAME, B(2, 2), 2, 2)                                                                                       \
    TILE256(NAME, B(2, 3), 2, 3)
TILE256_2x3(tb16h256, B2_TB16H)
TILE256_2x3(tb16f256, B2_TB16F)
TILE256(tbbf256, B2_TBBF(1, 1), 1, 1)
TILE256(tbbf256, B2_TBBF(1, 2), 1, 2)
TILE256(tbbf256, B2_TBBF(2, 1), 2, 1)
TILE256(tbbf256, B2_TBBF(2, 2), 2, 2)
static const tile_fn tb16h256_tab[TB2_RM * TB2_RN] = {tb16h256_1_1, tb16h256_1_2, tb16h256_1_3,
                                                      tb16h256_2_1, tb16h256_2_2, tb16h256_2_3};
static const tile_fn tb16f256_tab[TB2_RM * TB2_RN] = {tb16f256_1_1, tb16f256_1_2, tb16f256_1_3,
                                                      tb16f256_2_1, tb16f256_2_2, tb16f256_2_3};
static const tile_fn tbbf256_tab[BF2_RM * BF2_RN] = {tbbf256_1_1, tbbf256_1_2, tbbf256_2_1, tbbf256_2_2};

VROW256(vh256, v64_row256(j, r, t, 1))
VROW256(vf256, v64_row256(j, r, t, 0))
VROW256(vbf256, vbf_row256(j, r, t))
static const rows_fn vh256_tab[1] = {vh256};
static const rows_fn vf256_tab[1] = {vf256};
static const rows_fn vbf256_tab[1] = {vbf256};

int mmf_x86_rows(const mmf_job *j)
{
    const int lv = cpu_level();
    if (lv < CPU_AVX2)
        return 0;
    const int f16 = j->type == SM_TYPE_F16, bf16 = j->type == SM_TYPE_BF16;
    if (!f16 && !bf16 && j->type != SM_TYPE_F32)
        return 0;
    /* BF16 rows only with the BF16 kernels, F32/F16 only with the others */
    if (bf16 != (j->kernel == MMF_TB32BF || j->kernel == MMF_VBF16))
        return 0;
    const int big = lv >= CPU_AVX512;
    switch (j->kernel) {
    case MMF_TB16:
        if (big && kblock_rows(j))
            run_kblocked512(j, f16, kblock_rows(j));
        else if (big)
            run_tiles(j, f16 ? tb16h512_tab : tb16f512_tab, TB_RM, TB_RN);
        else
            run_tiles(j, f16 ? tb16h256_tab : tb16f256_tab, TB2_RM, TB2_RN);
        return 1;
    case MMF_TB32BF:
        if (big)
            run_tiles(j, tbbf512_tab, BF_RM, BF_RN);
        else
            run_tiles(j, tbbf256_tab, BF2_RM, BF2_RN);
        return 1;
    case MMF_VF16:
    case MMF_VF32:
        if (big && j->K % 64)
            run_vtail512(j, f16);
        else if (big)
            run_rows(j, f16 ? vh512_tab : vf512_tab, V_RM);
        else
            run_rows(j, f16 ? vh256_tab : vf256_tab, 1);
        return 1;
    case MMF_VBF16:
        if (big)
            run_rows(j, vbf512_tab, V_RM);
        else
            run_rows(j, vbf256_tab, 1);
        return 1;
    default: return 0;
    }
}

#else

int mmf_x86_rows(const mmf_job *j)
{
    (void)j;
    return 0;
}

#endif
