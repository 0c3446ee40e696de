/* test_infer_mmq_k3.c — the Q2_K / Q3_K fast kernels (infer/mmq_k3.c) give
 * the portable unpack + dot's bits at every CPU level this machine has:
 * random blocks (every bit pattern of the packed fields, finite f16
 * scales), extreme blocks (all-max and all-min levels, zero, negative and
 * max-magnitude scales and mins), activations with -128 and 127, several K,
 * odd row ranges, token counts around the kernels' tiles and panels, with
 * and without bias. */
#include "infer/cpu.h"
#include "infer/matmul.h"
#include "infer/mmq_impl.h"
#include "fp16.h"
#include "quants.h"
#include "types.h"

#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng_state;

static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* A finite f16 of either sign, magnitudes 2^-14 .. 2^3. */
static uint16_t rnd_f16(void)
{
    uint16_t sign = (uint16_t)((rnd() & 1) << 15);
    uint16_t e = (uint16_t)(1 + rnd() % 18);
    return (uint16_t)(sign | e << 10 | (rnd() & 0x3FF));
}

enum fill { F_RANDOM, F_MAX, F_MIN, F_ZERO_SCALES, F_MIXED };

static void fill_bytes(uint8_t *p, size_t n, int fill)
{
    for (size_t i = 0; i < n; i++)
        p[i] = fill == F_MAX ? 0xFF : fill == F_MIN ? 0x00 : (uint8_t)rnd();
}

/* rows x nb weight blocks of type, filled per the pattern; F_MIXED picks a
 * pattern per block. */
static void make_weights(uint32_t type, uint8_t *w, int64_t rows, int64_t nb, int fill)
{
    for (int64_t i = 0; i < rows * nb; i++) {
        int f = fill == F_MIXED ? (int)(rnd() % 4) : fill;
        if (type == SM_TYPE_Q3_K) {
            sm_block_q3_K *x = (sm_block_q3_K *)(void *)w + i;
            fill_bytes(x->hmask, sizeof x->hmask, f);
            fill_bytes(x->qs, sizeof x->qs, f);
            /* all scale bits 0 -> -32 (the largest magnitude), all 1 -> 31;
             * "zero scales" = 32 encoded: low nibble 0, high bits 2 */
            if (f == F_ZERO_SCALES) {
                memset(x->scales, 0, 8);
                memset(x->scales + 8, 0xAA, 4);
            } else {
                fill_bytes(x->scales, sizeof x->scales, f == F_MIN || f == F_MAX ? f : F_RANDOM);
            }
            x->d = f == F_MAX ? 0x7BFF /* 65504 */ : rnd_f16();
        } else {
            sm_block_q2_K *x = (sm_block_q2_K *)(void *)w + i;
            fill_bytes(x->qs, sizeof x->qs, f);
            if (f == F_ZERO_SCALES)
                memset(x->scales, 0, sizeof x->scales);
            else
                fill_bytes(x->scales, sizeof x->scales, f == F_MIN || f == F_MAX ? f : F_RANDOM);
            x->d = f == F_MAX ? 0x7BFF : rnd_f16();
            x->dmin = f == F_MAX ? 0xFBFF /* -65504 */ : rnd_f16();
        }
    }
}

enum act { A_QUANTIZED, A_EXTREME };

/* n_tok activation rows of K elements as q8_K blocks: quantized from random
 * floats, or raw quants drawn from {-128, -127, 127, random} with consistent
 * bsums. */
static void make_act(uint8_t *act, uint64_t stride, int32_t n_tok, int64_t K, int kind)
{
    float *x = malloc((size_t)K * sizeof *x);
    cr_assert_not_null(x);
    for (int32_t t = 0; t < n_tok; t++) {
        sm_block_q8_K *y = (sm_block_q8_K *)(void *)(act + (uint64_t)t * stride);
        if (kind == A_QUANTIZED) {
            float amp = (float)(1 + rnd() % 1000) / 100.0f;
            for (int64_t e = 0; e < K; e++)
                x[e] = amp * ((float)(int64_t)(rnd() % 2001) - 1000.0f) / 1000.0f;
            mm_quantize_act(MM_K, x, y, K);
            continue;
        }
        for (int64_t b = 0; b < K / 256; b++) {
            static const int8_t pick[4] = {-128, -127, 127, 0};
            int mode = (int)(rnd() % 3); /* all -128, all 127, mixed */
            for (int e = 0; e < 256; e++) {
                int8_t v = mode == 0 ? -128 : mode == 1 ? 127 : pick[rnd() % 4];
                y[b].qs[e] = v == 0 ? (int8_t)rnd() : v;
            }
            for (int g = 0; g < 16; g++) {
                int s = 0;
                for (int e = 0; e < 16; e++)
                    s += y[b].qs[16 * g + e];
                y[b].bsums[g] = (int16_t)s;
            }
            y[b].d = (rnd() & 1 ? -1.0f : 1.0f) * (float)(1 + rnd() % 1000) / 4096.0f;
        }
    }
    free(x);
}

typedef struct product {
    uint32_t type;
    int64_t K, rows, r0, r1;
    int32_t n_tok;
    int with_bias;
    int wfill, afill;
} product;

/* mmq_rows of the product at the current CPU level into y ([n_tok][ldy],
 * pre-filled with a canary so untouched entries compare too). */
static void run_product(const product *p, const uint8_t *w, uint64_t row_bytes, const uint8_t *act,
                        uint64_t stride, const int16_t *act16, const float *bias, float *y, int64_t ldy)
{
    const int64_t K = p->K;
    int8_t *q = malloc((size_t)K);
    float *d = malloc((size_t)K * sizeof(float)), *m = malloc((size_t)K * sizeof(float));
    int16_t *sc = malloc((size_t)K * sizeof(int16_t)), *mn = malloc((size_t)K * sizeof(int16_t));
    int16_t *w16 = malloc((size_t)K * sizeof(int16_t));
    cr_assert(q && d && m && sc && mn && w16);
    mm_row u = {q, d, m, sc, mn, w16, 0};
    for (int64_t i = 0; i < (int64_t)p->n_tok * ldy; i++)
        y[i] = -12345.0f;
    mmq_rows(p->type, w, row_bytes, K, p->r0, p->r1, act, stride, act16, p->n_tok, y, ldy, bias, &u);
    free(q);
    free(d);
    free(m);
    free(sc);
    free(mn);
    free(w16);
}

/* The fast levels present on this CPU (the ones mmq_k3.c implements). */
static int fast_levels(int *lv, int *vnni)
{
    int n = 0;
    cpu_force_level(-1);
    int best = cpu_level();
    if (best >= CPU_AVX2) {
        lv[n] = CPU_AVX2;
        vnni[n++] = 0;
    } else {
        cr_log_info("CPU has no AVX2: only the portable path can run here");
    }
    if (best >= CPU_AVX512) {
        cpu_force_level(CPU_AVX512);
        lv[n] = CPU_AVX512;
        vnni[n++] = cpu_has_vnni();
        if (!cpu_has_vnni())
            cr_log_info("CPU has AVX-512 but no VNNI: its kernel is the AVX2 one");
    } else {
        cr_log_info("CPU has no AVX-512: the VNNI kernel is not tested here");
    }
    cpu_force_level(-1);
    return n;
}

/* Every fast level's y equals the portable y bit for bit; returns the number
 * of fast levels compared. */
static int check_product(const product *p)
{
    const int64_t nb = p->K / 256;
    const uint64_t row_bytes =
        (uint64_t)nb * (p->type == SM_TYPE_Q3_K ? sizeof(sm_block_q3_K) : sizeof(sm_block_q2_K));
    const uint64_t stride = mm_act_bytes(MM_K, p->K);
    const int64_t ldy = p->rows + 3;
    uint8_t *w = malloc((size_t)(row_bytes * (uint64_t)p->rows));
    uint8_t *act = malloc((size_t)(stride * (uint64_t)p->n_tok));
    int16_t *act16 = malloc((size_t)(p->K * p->n_tok) * sizeof(int16_t));
    float *bias = malloc((size_t)p->rows * sizeof(float));
    float *ref = malloc((size_t)(p->n_tok * ldy) * sizeof(float));
    float *got = malloc((size_t)(p->n_tok * ldy) * sizeof(float));
    cr_assert(w && act && act16 && bias && ref && got);
    make_weights(p->type, w, p->rows, nb, p->wfill);
    make_act(act, stride, p->n_tok, p->K, p->afill);
    for (int32_t t = 0; t < p->n_tok; t++)
        mm_widen_act(MM_K, act + (uint64_t)t * stride, act16 + (int64_t)t * p->K, p->K);
    for (int64_t r = 0; r < p->rows; r++)
        bias[r] = (float)((int64_t)(rnd() % 2001) - 1000) / 64.0f;
    const float *bp = p->with_bias ? bias : NULL;

    cpu_force_level(CPU_PORTABLE);
    mm_force_portable(1);
    cr_assert_eq(mmq_k3_handles(p->type), 0, "portable level must not take the fast kernel");
    run_product(p, w, row_bytes, act, stride, act16, bp, ref, ldy);
    mm_force_portable(0);
    cpu_force_level(-1);
    /* the reference is a real result: every computed entry finite and set */
    for (int32_t t = 0; t < p->n_tok; t++)
        for (int64_t r = p->r0; r < p->r1; r++)
            cr_assert(ref[t * ldy + r] != -12345.0f && isfinite(ref[t * ldy + r]), "portable y[%d][%ld] = %g", t,
                      (long)r, (double)ref[t * ldy + r]);

    int lv[2], vnni[2];
    const int n = fast_levels(lv, vnni);
    for (int i = 0; i < n; i++) {
        cpu_force_level(lv[i]);
        cr_assert_eq(mmq_k3_handles(p->type), 1, "level %d must take the fast kernel", lv[i]);
        cr_assert_eq(cpu_has_vnni(), vnni[i]);
        run_product(p, w, row_bytes, act, stride, act16, bp, got, ldy);
        cpu_force_level(-1);
        for (int32_t t = 0; t < p->n_tok; t++)
            for (int64_t r = 0; r < ldy; r++) {
                const float a = ref[t * ldy + r], b = got[t * ldy + r];
                cr_assert_eq(memcmp(&a, &b, sizeof a), 0,
                             "%s K=%ld rows [%ld,%ld) n_tok=%d bias=%d fill=%d/%d level=%d vnni=%d: "
                             "y[%d][%ld] fast %.9g vs portable %.9g",
                             sm_type_name(p->type), (long)p->K, (long)p->r0, (long)p->r1, p->n_tok, p->with_bias,
                             p->wfill, p->afill, lv[i], vnni[i], t, (long)r, (double)b, (double)a);
            }
    }
    free(w);
    free(act);
    free(act16);
    free(bias);
    free(ref);
    free(got);
    return n;
}

static void sweep(uint32_t type, uint64_t seed)
{
    static const int32_t toks[] = {1, 2, 3, 4, 5, 7, 8, 16, 33};
    static const int64_t ks[] = {256, 512, 2304};
    rng_state = seed;
    int compared = 0;
    for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++)
        for (size_t ti = 0; ti < sizeof toks / sizeof toks[0]; ti++) {
            /* odd start, odd and even counts, a lone row */
            const int64_t r0 = 1 + (int64_t)(ti % 3), cnt = ti % 4 == 3 ? 1 : 4 + (int64_t)(ti % 2);
            product p = {type, ks[ki], r0 + cnt + 2, r0, r0 + cnt, toks[ti], (int)(ti % 2), F_RANDOM, A_QUANTIZED};
            compared += check_product(&p);
        }
    cr_assert_gt(compared, 0);
}

Test(infer_mmq_k3, q3_K_random_blocks_match_portable) { sweep(SM_TYPE_Q3_K, 1); }

Test(infer_mmq_k3, q2_K_random_blocks_match_portable) { sweep(SM_TYPE_Q2_K, 2); }

/* all-max / all-min levels and scales (Q3_K: -4 * -32 and 3 * 31 with
 * activations -128 and 127), zero scales, mixed blocks, extreme quants */
static void extremes(uint32_t type, uint64_t seed)
{
    static const int fills[] = {F_MAX, F_MIN, F_ZERO_SCALES, F_MIXED};
    rng_state = seed;
    for (size_t fi = 0; fi < sizeof fills / sizeof fills[0]; fi++)
        for (int ai = 0; ai < 2; ai++) {
            product p = {type, 768, 7, 1, 6, ai ? 5 : 1, (int)fi % 2, fills[fi], ai ? A_EXTREME : A_QUANTIZED};
            cr_assert_gt(check_product(&p), 0);
            product q = {type, 256, 4, 0, 4, 9, 1, fills[fi], A_EXTREME};
            cr_assert_gt(check_product(&q), 0);
        }
}

Test(infer_mmq_k3, q3_K_extreme_blocks_match_portable) { extremes(SM_TYPE_Q3_K, 3); }

Test(infer_mmq_k3, q2_K_extreme_blocks_match_portable) { extremes(SM_TYPE_Q2_K, 4); }

/* More tokens than one panel (the kernels block the tokens), a K large
 * enough to shrink the panel, panels of 1 and 2 tokens. */
Test(infer_mmq_k3, token_panels_match_portable)
{
    rng_state = 5;
    const uint32_t types[] = {SM_TYPE_Q3_K, SM_TYPE_Q2_K};
    for (int i = 0; i < 2; i++) {
        product p = {types[i], 256, 5, 0, 5, 66, 1, F_RANDOM, A_QUANTIZED};
        cr_assert_gt(check_product(&p), 0);
        product q = {types[i], 256 * 48, 3, 1, 3, 67, 0, F_MIXED, A_EXTREME};
        cr_assert_gt(check_product(&q), 0);
        /* a last panel of one token; few tokens but too many blocks for the
         * precomputed Q3_K token side (the other VNNI variant) */
        product r = {types[i], 512, 4, 1, 4, 65, 1, F_RANDOM, A_QUANTIZED};
        cr_assert_gt(check_product(&r), 0);
        for (int32_t n = 1; n <= 3; n++) {
            product s = {types[i], 256 * 48, 4, 0, 3, n, n % 2, F_MIXED, A_QUANTIZED};
            cr_assert_gt(check_product(&s), 0);
        }
    }
}

/* The quantized-activation reference also equals the float dot of the
 * dequantized rows up to f32 rounding (the kernels compute a real product). */
Test(infer_mmq_k3, fast_result_is_the_dequantized_dot)
{
    rng_state = 6;
    const uint32_t types[] = {SM_TYPE_Q3_K, SM_TYPE_Q2_K};
    enum { K = 512, ROWS = 3, NT = 2 };
    for (int i = 0; i < 2; i++) {
        float wf[ROWS * K], xf[NT * K], wd[K], xd[K], y[NT * ROWS];
        static uint8_t w[ROWS * K], act[NT * 2 * 292];
        for (int e = 0; e < ROWS * K; e++)
            wf[e] = (float)((int64_t)(rnd() % 2001) - 1000) / 1000.0f;
        for (int e = 0; e < NT * K; e++)
            xf[e] = (float)((int64_t)(rnd() % 2001) - 1000) / 500.0f;
        cr_assert(sm_quantize_rows(types[i], wf, w, ROWS, K, NULL) > 0);
        const uint64_t row_bytes = sm_type_row_size(types[i], K, NULL), stride = mm_act_bytes(MM_K, K);
        for (int t = 0; t < NT; t++)
            mm_quantize_act(MM_K, xf + t * K, act + t * stride, K);
        cpu_force_level(-1);
        cr_assert_eq(mmq_k3_handles(types[i]), cpu_level() >= CPU_AVX2);
        mmq_args a = {types[i], w, row_bytes, K, 0, ROWS, act, stride, NT, y, ROWS, NULL};
        if (!mmq_k3_rows(&a)) {
            cr_log_info("no fast kernel on this CPU");
            continue;
        }
        for (int t = 0; t < NT; t++) {
            cr_assert_eq(sm_dequantize_row(SM_TYPE_Q8_K, act + t * stride, xd, K), 0);
            for (int r = 0; r < ROWS; r++) {
                cr_assert_eq(sm_dequantize_row(types[i], w + r * row_bytes, wd, K), 0);
                double ref = 0;
                for (int e = 0; e < K; e++)
                    ref += (double)wd[e] * (double)xd[e];
                cr_expect(fabs(y[t * ROWS + r] - ref) <= 1e-5 * (fabs(ref) + 1.0), "%s y[%d][%d] %.7g vs %.7g",
                          sm_type_name(types[i]), t, r, (double)y[t * ROWS + r], ref);
            }
        }
    }
}
