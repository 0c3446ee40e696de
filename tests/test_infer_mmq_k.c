/* test_infer_mmq_k.c — the Q4_K / Q5_K / Q6_K kernels of mmq_k.c against
 * the portable path (mm_unpack_row + mm_dot), bit for bit.
 *
 * Every check runs mmq_rows once with the portable kernels forced and once
 * per SIMD level the CPU has (AVX2, AVX-512 with VNNI), into output buffers
 * pre-filled with a sentinel, and compares the whole buffers with memcmp:
 * same values, no write outside rows [r0, r1) x tokens. */
#include "infer/cpu.h"
#include "infer/matmul.h"
#include "infer/mmq_impl.h"
#include "fp16.h"
#include "quants.h"
#include "types.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ data */

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* How the weight blocks are filled. */
enum wmode {
    W_RANDOM,    /* random bytes, moderate random (signed) super-scales */
    W_MAX,       /* every quant and sub-block scale at its maximum */
    W_ZERO,      /* zero sub-block scales / mins, random quants */
    W_NEG,       /* negative super-scales, Q6_K scales at -128 */
    W_BIGSCALE,  /* largest f16 super-scales, random quants */
};

/* How the q8_K activation blocks are filled. */
enum amode {
    A_RANDOM, /* random int8 quants (including -128) */
    A_FLOAT,  /* mm_quantize_act of random floats (the forward pass's way) */
    A_PM127,  /* only +127, -127 and -128 */
    A_MIN,    /* every quant -128 */
};

/* A random finite f16 of moderate magnitude (about 2^-6 .. 2^2). */
static uint16_t rnd_f16(uint64_t *s, int allow_neg)
{
    uint64_t r = rng_next(s);
    uint16_t e = (uint16_t)(9 + r % 8), m = (uint16_t)((r >> 8) & 0x3ff);
    uint16_t sign = allow_neg && ((r >> 20) & 1) ? 0x8000 : 0;
    return (uint16_t)(sign | e << 10 | m);
}

static size_t block_bytes(uint32_t type)
{
    switch (type) {
    case SM_TYPE_Q4_K: return sizeof(sm_block_q4_K);
    case SM_TYPE_Q5_K: return sizeof(sm_block_q5_K);
    default: return sizeof(sm_block_q6_K);
    }
}

/* rows weight rows of K elements, 2 bytes past a malloc'd pointer (so no
 * block is 4-, 16- or 64-byte aligned; 2 is what a GGUF tensor of these
 * block sizes guarantees); *base is what to free. */
static uint8_t *make_weights(uint32_t type, int64_t K, int64_t rows, int mode, uint64_t *s, uint8_t **base)
{
    const size_t bb = block_bytes(type), nblk = (size_t)(K / 256 * rows);
    *base = malloc(bb * nblk + 2);
    cr_assert_not_null(*base);
    uint8_t *w = *base + 2;
    for (size_t i = 0; i < bb * nblk; i++)
        w[i] = (uint8_t)rng_next(s);
    for (size_t b = 0; b < nblk; b++) {
        uint8_t *blk = w + b * bb;
        uint16_t d = rnd_f16(s, 1), dmin = rnd_f16(s, 1);
        if (mode == W_NEG) {
            d |= 0x8000;
            dmin |= 0x8000;
        } else if (mode == W_BIGSCALE) {
            d = 0x7bff; /* 65504 */
            dmin = 0xfbff;
        }
        if (type == SM_TYPE_Q6_K) {
            sm_block_q6_K *x = (sm_block_q6_K *)(void *)blk;
            x->d = d;
            if (mode == W_MAX) {
                memset(x->ql, 0xff, sizeof x->ql);
                memset(x->qh, 0xff, sizeof x->qh);
                memset(x->scales, 127, sizeof x->scales);
            } else if (mode == W_ZERO) {
                memset(x->scales, 0, sizeof x->scales);
            } else if (mode == W_NEG) {
                memset(x->scales, 0x80, sizeof x->scales); /* -128 */
                memset(x->ql, 0, sizeof x->ql);            /* level -32 */
                memset(x->qh, 0, sizeof x->qh);
            }
        } else {
            /* Q4_K and Q5_K share d, dmin, scales at the start */
            sm_block_q4_K *x = (sm_block_q4_K *)(void *)blk;
            x->d = d;
            x->dmin = dmin;
            uint8_t *qs = type == SM_TYPE_Q4_K ? x->qs : ((sm_block_q5_K *)(void *)blk)->qs;
            if (mode == W_MAX) {
                memset(x->scales, 0xff, sizeof x->scales); /* every scale and min 63 */
                memset(qs, 0xff, 128);
                if (type == SM_TYPE_Q5_K)
                    memset(((sm_block_q5_K *)(void *)blk)->qh, 0xff, 32);
            } else if (mode == W_ZERO) {
                memset(x->scales, 0, sizeof x->scales);
            }
        }
    }
    return w;
}

/* n_tok activation rows of K elements as q8_K blocks (bsums consistent). */
static uint8_t *make_act(int64_t K, int32_t n_tok, int mode, uint64_t *s)
{
    const uint64_t stride = mm_act_bytes(MM_K, K);
    uint8_t *act = malloc(stride * (uint64_t)n_tok);
    cr_assert_not_null(act);
    float *x = malloc(sizeof(float) * (size_t)K);
    cr_assert_not_null(x);
    for (int32_t t = 0; t < n_tok; t++) {
        sm_block_q8_K *y = (sm_block_q8_K *)(void *)(act + stride * (uint64_t)t);
        if (mode == A_FLOAT) {
            for (int64_t e = 0; e < K; e++)
                x[e] = (float)((int64_t)(rng_next(s) % 20001) - 10000) / 1000.0f;
            mm_quantize_act(MM_K, x, y, K);
            continue;
        }
        for (int64_t b = 0; b < K / 256; b++) {
            y[b].d = sm_f16_to_f32(rnd_f16(s, 1));
            for (int e = 0; e < 256; e++) {
                uint64_t r = rng_next(s);
                int8_t v = (int8_t)r;
                if (mode == A_PM127)
                    v = (int8_t)(r % 3 == 0 ? 127 : r % 3 == 1 ? -127 : -128);
                else if (mode == A_MIN)
                    v = -128;
                y[b].qs[e] = v;
            }
            for (int g = 0; g < 16; g++) {
                int sum = 0;
                for (int e = 0; e < 16; e++)
                    sum += y[b].qs[16 * g + e];
                y[b].bsums[g] = (int16_t)sum;
            }
        }
    }
    free(x);
    return act;
}

/* ------------------------------------------------------------ runs */

static const char *level_name(int lv) { return lv == CPU_AVX512 ? "avx512" : lv == CPU_AVX2 ? "avx2" : "portable"; }

/* mmq_rows at CPU level lv (CPU_PORTABLE also forces matmul.c's portable
 * kernels). */
static void run_level(int lv, uint32_t type, const uint8_t *w, int64_t K, int64_t r0, int64_t r1, const uint8_t *act,
                      int32_t n_tok, float *y, int64_t ldy, const float *bias)
{
    const uint64_t stride = mm_act_bytes(MM_K, K);
    mm_force_portable(lv == CPU_PORTABLE);
    cpu_force_level(lv);
    const int need16 = mmq_needs_act16(type);
    if (lv == CPU_PORTABLE)
        cr_assert(need16, "the portable path reads act16");
    else
        cr_assert(!need16 && mmq_k_handles(type), "%s: mmq_k must handle type %u", level_name(lv), type);
    int16_t *act16 = NULL;
    if (need16) {
        act16 = malloc(sizeof(int16_t) * (size_t)(K * n_tok));
        cr_assert_not_null(act16);
        for (int32_t t = 0; t < n_tok; t++)
            mm_widen_act(MM_K, act + stride * (uint64_t)t, act16 + (int64_t)t * K, K);
    }
    mm_row u;
    cr_assert_eq(mm_row_alloc(&u, K), 0);
    mmq_rows(type, w, (uint64_t)(K / 256) * block_bytes(type), K, r0, r1, act, stride, act16, n_tok, y, ldy, bias,
             &u);
    mm_row_free(&u);
    free(act16);
    cpu_force_level(-1);
    mm_force_portable(0);
}

/* The SIMD levels to compare (those this CPU has); logs the missing ones. */
static int levels(int *lv)
{
    static int logged;
    cpu_force_level(-1);
    const int best = cpu_level();
    const int vnni = cpu_has_vnni();
    int n = 0;
    if (best >= CPU_AVX2)
        lv[n++] = CPU_AVX2;
    if (best >= CPU_AVX512)
        lv[n++] = CPU_AVX512;
    if (!logged) {
        logged = 1;
        if (best < CPU_AVX2)
            cr_log_info("this CPU has no AVX2: only the portable path can run here");
        else if (best < CPU_AVX512)
            cr_log_info("this CPU has no AVX-512: testing the AVX2 kernels only");
        else if (!vnni)
            cr_log_info("this CPU has AVX-512 without VNNI: the AVX-512 level runs the AVX2 kernels");
    }
    return n;
}

/* One agreement check: rows [r0, r1) of a rows x K weight, n_tok tokens,
 * y with leading dimension ldy = rows + 3, optional bias. Returns the
 * number of SIMD levels compared. */
static int check(uint32_t type, int64_t K, int64_t rows, int64_t r0, int64_t r1, int32_t n_tok, int wmode, int amode,
                 int with_bias, uint64_t seed)
{
    uint64_t s = seed * 0x9E3779B97F4A7C15ULL + 1;
    uint8_t *wbase;
    const uint8_t *w = make_weights(type, K, rows, wmode, &s, &wbase);
    uint8_t *act = make_act(K, n_tok, amode, &s);
    const int64_t ldy = rows + 3;
    const size_t ny = (size_t)(ldy * n_tok);
    float *bias = NULL;
    if (with_bias) {
        bias = malloc(sizeof(float) * (size_t)rows);
        cr_assert_not_null(bias);
        for (int64_t r = 0; r < rows; r++)
            bias[r] = (float)((int64_t)(rng_next(&s) % 2001) - 1000) / 64.0f;
    }
    float *ref = malloc(sizeof(float) * ny), *got = malloc(sizeof(float) * ny);
    cr_assert(ref && got);
    for (size_t i = 0; i < ny; i++)
        ref[i] = -12345.0f;
    run_level(CPU_PORTABLE, type, w, K, r0, r1, act, n_tok, ref, ldy, bias);
    /* the reference wrote real values where it should */
    int nonzero = 0;
    for (int32_t t = 0; t < n_tok; t++)
        for (int64_t r = r0; r < r1; r++) {
            float v = ref[(int64_t)t * ldy + r];
            cr_assert(v != -12345.0f && !isnan(v), "reference left (%d, %lld) unwritten", t, (long long)r);
            nonzero += v != 0.0f;
        }
    if (r1 > r0 && wmode != W_ZERO)
        cr_assert_gt(nonzero, 0, "reference is all zero");
    int lv[2];
    const int n = levels(lv);
    for (int li = 0; li < n; li++) {
        for (size_t i = 0; i < ny; i++)
            got[i] = -12345.0f;
        run_level(lv[li], type, w, K, r0, r1, act, n_tok, got, ldy, bias);
        if (memcmp(ref, got, sizeof(float) * ny) != 0) {
            size_t i = 0;
            while (memcmp(&ref[i], &got[i], sizeof(float)) == 0)
                i++;
            cr_assert_fail("type %u K %lld rows [%lld,%lld) n_tok %d wmode %d amode %d bias %d: %s differs at token "
                           "%lld row %lld: %.9g vs portable %.9g",
                           type, (long long)K, (long long)r0, (long long)r1, n_tok, wmode, amode, with_bias,
                           level_name(lv[li]), (long long)(i / (size_t)ldy), (long long)(i % (size_t)ldy),
                           (double)got[i], (double)ref[i]);
        }
    }
    free(ref);
    free(got);
    free(bias);
    free(act);
    free(wbase);
    return n;
}

static const uint32_t types[3] = {SM_TYPE_Q4_K, SM_TYPE_Q5_K, SM_TYPE_Q6_K};

/* ------------------------------------------------------------ tests */

Test(mmq_k, handles_the_three_types_at_simd_levels)
{
    int lv[2];
    const int n = levels(lv);
    for (int li = 0; li < n; li++) {
        cpu_force_level(lv[li]);
        for (int ti = 0; ti < 3; ti++) {
            cr_expect(mmq_k_handles(types[ti]), "%s: type %u", level_name(lv[li]), types[ti]);
            cr_expect(!mmq_needs_act16(types[ti]));
        }
        cr_expect(!mmq_k_handles(SM_TYPE_Q8_0));
        cr_expect(!mmq_k_handles(SM_TYPE_Q3_K));
    }
    cpu_force_level(CPU_PORTABLE);
    for (int ti = 0; ti < 3; ti++)
        cr_expect(!mmq_k_handles(types[ti]), "portable level must fall back");
    cpu_force_level(-1);
}

/* Every tile shape: n_tok around the 4-token tile, row ranges around the
 * 4-row (AVX-512) and 2-row (AVX2) tiles at odd starts, several K. */
Test(mmq_k, shapes_random)
{
    static const int32_t ntoks[] = {1, 2, 3, 4, 5, 7, 8, 16, 33};
    static const int64_t Ks[] = {256, 512, 1280};
    uint64_t seed = 1;
    for (int ti = 0; ti < 3; ti++)
        for (int ki = 0; ki < 3; ki++)
            for (int ni = 0; ni < 9; ni++) {
                const int64_t r0 = 1 + ni % 3, r1 = r0 + 1 + (ni * 5 + ki) % 9;
                check(types[ti], Ks[ki], 13, r0, r1, ntoks[ni], W_RANDOM, A_RANDOM, ni & 1, seed++);
            }
}

/* Activations as the forward pass makes them (q8_K of float rows). */
Test(mmq_k, quantized_activations)
{
    for (int ti = 0; ti < 3; ti++) {
        check(types[ti], 2048, 9, 0, 9, 1, W_RANDOM, A_FLOAT, 0, 100 + ti);
        check(types[ti], 768, 10, 3, 10, 6, W_RANDOM, A_FLOAT, 1, 200 + ti);
    }
}

/* Extreme weights x extreme activations: all-max quants and scales, zero
 * scales, negative (and -128) scales, the largest f16 super-scales, with
 * activations of +-127 and -128 only or all -128. */
Test(mmq_k, extremes)
{
    static const int wm[] = {W_MAX, W_ZERO, W_NEG, W_BIGSCALE, W_RANDOM};
    static const int am[] = {A_PM127, A_MIN, A_RANDOM};
    uint64_t seed = 1000;
    for (int ti = 0; ti < 3; ti++)
        for (int wi = 0; wi < 5; wi++)
            for (int ai = 0; ai < 3; ai++) {
                check(types[ti], 512, 7, 1, 6, 5, wm[wi], am[ai], 1, seed++);
                check(types[ti], 256, 3, 0, 3, 1, wm[wi], am[ai], 0, seed++);
            }
}

/* Enough tokens and K for several activation panels (the panel holds
 * 512 KiB of activations: 112 tokens at K = 4096). */
Test(mmq_k, token_panels)
{
    for (int ti = 0; ti < 3; ti++)
        cr_assert_gt(check(types[ti], 4096, 6, 1, 6, 130, W_RANDOM, A_FLOAT, 1, 300 + ti), -1);
}

/* An empty row range writes nothing. */
Test(mmq_k, empty_range)
{
    for (int ti = 0; ti < 3; ti++)
        check(types[ti], 256, 4, 2, 2, 3, W_RANDOM, A_RANDOM, 0, 400 + ti);
}
