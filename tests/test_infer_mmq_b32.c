/* The 32-block kernels of infer/mmq_b32.c (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
 * IQ4_NL) against the portable unpack + mm_dot path: every CPU level this
 * machine has must give the same bits (memcmp) for random and extreme
 * weights and activations, odd row ranges, every tile tail and token
 * panels split by a large activation stride. */
#include <criterion/criterion.h>

#include "formats/fp16.h"
#include "formats/quants.h"
#include "formats/types.h"
#include "infer/cpu.h"
#include "infer/matmul.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const uint32_t b32_types[] = {SM_TYPE_Q4_0, SM_TYPE_Q4_1, SM_TYPE_Q5_0,
                                     SM_TYPE_Q5_1, SM_TYPE_Q8_0, SM_TYPE_IQ4_NL};
#define N_B32 (sizeof b32_types / sizeof b32_types[0])

static uint64_t rng_state;

static uint32_t rnd(void)
{
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(rng_state >> 33);
}

/* uniform in [-1, 1) */
static float rndf(void) { return (float)rnd() / 2147483648.0f - 1.0f; }

static size_t block_bytes(uint32_t type) { return sm_type_get(type)->size; }

/* How a test fills weights and activations. */
enum fill {
    FILL_RANDOM = 0,  /* random quants, random scales of both signs */
    FILL_MAX,         /* all quants at their largest code, scales at the f16 maximum magnitude */
    FILL_MIN,         /* all quants at their smallest code (-128 for int8) */
    FILL_ZERO_SCALES, /* random quants, every other scale +-0 */
};

/* A scale as f16 bits for fill f. */
static uint16_t fill_scale(enum fill f, int64_t b)
{
    switch (f) {
    case FILL_MAX: return (uint16_t)(b % 2 ? 0xFBFF : 0x7BFF); /* -+65504 */
    case FILL_ZERO_SCALES:
        if (b % 2 == 0)
            return (uint16_t)(b % 4 ? 0x8000 : 0x0000);
        /* fall through */
    default: return sm_f32_to_f16(rndf() * 0.1f);
    }
}

/* Weight rows [rows][K] of type in buf (row_bytes each). */
static void make_weights(uint32_t type, uint8_t *buf, int64_t rows, int64_t K, enum fill f)
{
    const size_t bs = block_bytes(type);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t b = 0; b < K / 32; b++) {
            uint8_t *blk = buf + ((size_t)(r * (K / 32) + b)) * bs;
            for (size_t i = 0; i < bs; i++)
                blk[i] = f == FILL_MAX ? (type == SM_TYPE_Q8_0 ? 0x7F : 0xFF)
                         : f == FILL_MIN ? (type == SM_TYPE_Q8_0 ? 0x80 : 0x00)
                                         : (uint8_t)rnd();
            uint16_t d = fill_scale(f, b + r);
            memcpy(blk, &d, 2);
            if (type == SM_TYPE_Q4_1 || type == SM_TYPE_Q5_1) {
                uint16_t m = f == FILL_MAX ? (uint16_t)0xFBFF : sm_f32_to_f16(rndf());
                memcpy(blk + 2, &m, 2);
            }
        }
}

/* n_tok activation rows of K elements, act_stride bytes apart. FILL_RANDOM
 * quantizes random floats as the forward pass does; the others write the
 * blocks directly: int8 quants at +-127 and -128, big and zero scales. */
static void make_act(int kind, uint8_t *act, uint64_t stride, int32_t n_tok, int64_t K, enum fill f)
{
    float *x = malloc((size_t)K * sizeof *x);
    cr_assert_not_null(x);
    const size_t ab = kind == MM_B32M ? sizeof(sm_block_q8_1) : sizeof(sm_block_q8_0);
    const size_t aq = kind == MM_B32M ? 4 : 2;
    for (int32_t t = 0; t < n_tok; t++) {
        uint8_t *row = act + (uint64_t)t * stride;
        if (f == FILL_RANDOM) {
            for (int64_t e = 0; e < K; e++)
                x[e] = rndf() * (e % 7 == 0 ? 4.0f : 1.0f);
            mm_quantize_act(kind, x, row, K);
            continue;
        }
        for (int64_t b = 0; b < K / 32; b++) {
            uint8_t *blk = row + (size_t)b * ab;
            uint16_t d = fill_scale(f, b + t), s = sm_f32_to_f16(rndf() * 30.0f);
            memcpy(blk, &d, 2);
            if (kind == MM_B32M)
                memcpy(blk + 2, &s, 2);
            int8_t *q = (int8_t *)(blk + aq);
            for (int e = 0; e < 32; e++) {
                switch (f) {
                case FILL_MAX: q[e] = (int8_t)((e + t) % 3 == 0 ? -127 : 127); break;
                case FILL_MIN: q[e] = (int8_t)((e + t) % 3 == 0 ? 127 : -128); break;
                default: q[e] = (int8_t)rnd(); break;
                }
            }
        }
    }
    free(x);
}

/* One product at the current CPU level: y[n_tok][ldy] (NaN-filled first so
 * unwritten entries show up). */
static void run_level(uint32_t type, const uint8_t *w, int64_t K, int64_t r0, int64_t r1, const uint8_t *act,
                      uint64_t stride, const int16_t *act16, int32_t n_tok, float *y, int64_t ldy, const float *bias)
{
    mm_row u;
    cr_assert_eq(mm_row_alloc(&u, K), 0);
    for (int64_t i = 0; i < (int64_t)n_tok * ldy; i++)
        y[i] = NAN;
    const uint64_t row_bytes = (uint64_t)(K / 32) * block_bytes(type);
    mmq_rows(type, w, row_bytes, K, r0, r1, act, stride, act16, n_tok, y, ldy, bias, &u);
    mm_row_free(&u);
}

/* Levels to compare against the portable path, with their names; level
 * CPU_AVX512 + 10 means AVX-512 with VNNI switched off (cpu_force_no_vnni),
 * which runs the AVX2 kernels. */
static int levels(int *lv, const char **name)
{
    int n = 0;
    cpu_force_no_vnni(0);
    cpu_force_level(-1);
    const int best = cpu_level();
    const int vnni = cpu_has_vnni();
    if (best >= CPU_AVX2) {
        lv[n] = CPU_AVX2;
        name[n++] = "avx2";
    } else {
        cr_log_info("this CPU has no AVX2: only the portable path is tested");
    }
    if (best >= CPU_AVX512) {
        lv[n] = CPU_AVX512;
        name[n++] = vnni ? "avx512-vnni" : "avx512 (no VNNI: the AVX2 kernels)";
        if (vnni) {
            lv[n] = CPU_AVX512 + 10;
            name[n++] = "avx512 with VNNI off";
        }
    } else {
        cr_log_info("this CPU has no AVX-512: the VNNI kernels are not tested here");
    }
    return n;
}

/* Applies a level from levels(). */
static void set_level(int lv)
{
    cpu_force_no_vnni(lv >= 10);
    cpu_force_level(lv >= 10 ? lv - 10 : lv);
}

/* Compares every level with the portable path for one configuration;
 * returns the number of level runs compared. */
static int check_case(uint32_t type, int64_t K, int64_t rows, int64_t r0, int64_t r1, int32_t n_tok, int with_bias,
                      enum fill fw, enum fill fa, uint64_t pad)
{
    const int kind = mm_kind_of(type);
    const uint64_t stride = mm_act_bytes(kind, K) + pad;
    uint8_t *w = malloc((size_t)rows * (size_t)(K / 32) * block_bytes(type));
    uint8_t *act = calloc((size_t)n_tok, (size_t)stride);
    int16_t *act16 = malloc((size_t)n_tok * (size_t)K * sizeof(int16_t));
    float *bias = malloc((size_t)rows * sizeof(float));
    const int64_t ldy = rows + 3;
    float *ref = malloc((size_t)n_tok * (size_t)ldy * sizeof(float));
    float *got = malloc((size_t)n_tok * (size_t)ldy * sizeof(float));
    cr_assert(w && act && act16 && bias && ref && got);
    make_weights(type, w, rows, K, fw);
    make_act(kind, act, stride, n_tok, K, fa);
    for (int32_t t = 0; t < n_tok; t++)
        mm_widen_act(kind, act + (uint64_t)t * stride, act16 + (int64_t)t * K, K);
    for (int64_t r = 0; r < rows; r++)
        bias[r] = rndf() * 2.0f;

    mm_force_portable(1);
    cpu_force_level(CPU_PORTABLE);
    cr_assert_eq(mmq_needs_act16(type), 1);
    run_level(type, w, K, r0, r1, act, stride, act16, n_tok, ref, ldy, with_bias ? bias : NULL);
    mm_force_portable(0);
    for (int64_t t = 0; t < n_tok; t++)
        for (int64_t r = r0; r < r1; r++)
            cr_assert(!isnan(ref[t * ldy + r]) || fw == FILL_MAX || fa == FILL_MAX, "portable result missing");

    int lv[3];
    const char *name[3];
    const int n = levels(lv, name);
    for (int l = 0; l < n; l++) {
        set_level(lv[l]);
        cr_assert_eq(mmq_needs_act16(type), 0, "%s should have a %s kernel", sm_type_name(type), name[l]);
        /* act16 is not read by the fast kernels: hand them NULL */
        run_level(type, w, K, r0, r1, act, stride, NULL, n_tok, got, ldy, with_bias ? bias : NULL);
        for (int64_t t = 0; t < n_tok; t++)
            for (int64_t r = 0; r < ldy; r++) {
                const float a = ref[t * ldy + r], b = got[t * ldy + r];
                const int inside = r >= r0 && r < r1;
                if (!inside) {
                    cr_assert(isnan(b), "%s %s wrote outside [%lld, %lld): row %lld", sm_type_name(type), name[l],
                              (long long)r0, (long long)r1, (long long)r);
                    continue;
                }
                cr_assert(memcmp(&a, &b, sizeof a) == 0,
                          "%s %s K=%lld rows [%lld,%lld) n_tok=%d bias=%d fill %d/%d: y[%lld][%lld] = %a, portable %a",
                          sm_type_name(type), name[l], (long long)K, (long long)r0, (long long)r1, n_tok, with_bias,
                          (int)fw, (int)fa, (long long)t, (long long)r, (double)b, (double)a);
            }
    }
    set_level(-1);
    free(w);
    free(act);
    free(act16);
    free(bias);
    free(ref);
    free(got);
    return n;
}

static const int32_t tok_counts[] = {1, 2, 3, 4, 5, 7, 8, 16, 33};

Test(mmq_b32, random_all_shapes)
{
    rng_state = 1;
    int runs = 0;
    const int64_t Ks[] = {32, 96, 256, 1056};
    for (size_t ti = 0; ti < N_B32; ti++)
        for (size_t ki = 0; ki < sizeof Ks / sizeof Ks[0]; ki++)
            for (size_t ni = 0; ni < sizeof tok_counts / sizeof tok_counts[0]; ni++) {
                const int32_t n = tok_counts[ni];
                /* 11 rows, range [1, 10): odd start, 4-row tiles plus a tail */
                runs += check_case(b32_types[ti], Ks[ki], 11, 1, 10, n, (int)(ni % 2), FILL_RANDOM, FILL_RANDOM, 0);
            }
    cr_assert_gt(runs, 0);
}

Test(mmq_b32, row_ranges)
{
    rng_state = 2;
    /* every start and length up to 9 rows: all row-tile tails */
    for (size_t ti = 0; ti < N_B32; ti++)
        for (int64_t r0 = 0; r0 < 4; r0++)
            for (int64_t len = 1; len <= 9; len++)
                check_case(b32_types[ti], 64, 13, r0, r0 + len, 5, 1, FILL_RANDOM, FILL_RANDOM, 0);
}

Test(mmq_b32, token_panels)
{
    rng_state = 3;
    /* a large stride makes the activation panel a few tokens long, so the
     * token loop crosses panel boundaries mid-range */
    for (size_t ti = 0; ti < N_B32; ti++) {
        check_case(b32_types[ti], 128, 9, 0, 9, 33, 1, FILL_RANDOM, FILL_RANDOM, 40000);
        check_case(b32_types[ti], 64, 6, 1, 6, 70, 0, FILL_RANDOM, FILL_RANDOM, 100000);
    }
}

Test(mmq_b32, extreme_values)
{
    rng_state = 4;
    const enum fill fills[] = {FILL_RANDOM, FILL_MAX, FILL_MIN, FILL_ZERO_SCALES};
    for (size_t ti = 0; ti < N_B32; ti++)
        for (size_t fw = 0; fw < 4; fw++)
            for (size_t fa = 0; fa < 4; fa++)
                for (size_t ni = 0; ni < sizeof tok_counts / sizeof tok_counts[0]; ni += 2)
                    check_case(b32_types[ti], 160, 7, 1, 7, tok_counts[ni], (int)((fw + fa) % 2), fills[fw],
                               fills[fa], 0);
}

/* A single -128 in an activation switches the AVX2 Q8_0 / IQ4_NL kernels to
 * their int16 path for the whole call; the result must not change. */
Test(mmq_b32, one_min8_activation)
{
    rng_state = 5;
    const uint32_t types[] = {SM_TYPE_Q8_0, SM_TYPE_IQ4_NL, SM_TYPE_Q4_0};
    for (size_t ti = 0; ti < 3; ti++) {
        const uint32_t type = types[ti];
        const int64_t K = 128, rows = 6;
        const int32_t n_tok = 5;
        const uint64_t stride = mm_act_bytes(MM_B32, K);
        uint8_t *w = malloc((size_t)rows * (size_t)(K / 32) * block_bytes(type));
        uint8_t *act = malloc((size_t)n_tok * stride);
        int16_t *act16 = malloc((size_t)n_tok * (size_t)K * sizeof(int16_t));
        float ref[5 * 6], got[5 * 6], fast[5 * 6];
        cr_assert(w && act && act16);
        make_weights(type, w, rows, K, FILL_RANDOM);
        make_act(MM_B32, act, stride, n_tok, K, FILL_RANDOM);
        /* token 3, block 2, element 9: -128, against negative weights too */
        sm_block_q8_0 *blk = (sm_block_q8_0 *)(void *)(act + 3 * stride) + 2;
        blk->qs[9] = -128;
        blk->qs[10] = -128;
        for (int32_t t = 0; t < n_tok; t++)
            mm_widen_act(MM_B32, act + (uint64_t)t * stride, act16 + (int64_t)t * K, K);
        mm_force_portable(1);
        cpu_force_level(CPU_PORTABLE);
        run_level(type, w, K, 0, rows, act, stride, act16, n_tok, ref, rows, NULL);
        mm_force_portable(0);
        int lv[3];
        const char *name[3];
        const int n = levels(lv, name);
        for (int l = 0; l < n; l++) {
            set_level(lv[l]);
            run_level(type, w, K, 0, rows, act, stride, NULL, n_tok, got, rows, NULL);
            cr_assert(memcmp(ref, got, sizeof ref) == 0, "%s %s differs with a -128 activation", sm_type_name(type),
                      name[l]);
        }
        /* the value must actually depend on the -128 entries: the
         * weight's element 9 and 10 of block 2 contribute */
        blk->qs[9] = 0;
        blk->qs[10] = 0;
        set_level(-1);
        run_level(type, w, K, 0, rows, act, stride, NULL, n_tok, fast, rows, NULL);
        int differs = 0;
        for (int r = 0; r < rows; r++)
            differs |= memcmp(&fast[3 * rows + r], &ref[3 * rows + r], sizeof(float)) != 0;
        cr_assert(differs, "%s: the -128 activations did not reach the result", sm_type_name(type));
        /* one-token products (IQ4_NL: ggml_vec_dot_iq4_nl_q8_0's order)
         * with the -128 token alone */
        blk->qs[9] = -128;
        mm_widen_act(MM_B32, act + 3 * stride, act16 + 3 * K, K);
        mm_force_portable(1);
        cpu_force_level(CPU_PORTABLE);
        run_level(type, w, K, 0, rows, act + 3 * stride, stride, act16 + 3 * K, 1, ref, rows, NULL);
        mm_force_portable(0);
        for (int l = 0; l < n; l++) {
            set_level(lv[l]);
            run_level(type, w, K, 0, rows, act + 3 * stride, stride, NULL, 1, got, rows, NULL);
            cr_assert(memcmp(ref, got, (size_t)rows * sizeof(float)) == 0, "%s %s one token differs with a -128",
                      sm_type_name(type), name[l]);
        }
        set_level(-1);
        free(w);
        free(act);
        free(act16);
    }
}

/* A known value: one Q8_0 block of weights 1..32 (d = 1) against
 * activations all 2 (d = 0.5): sum = 528, plus bias. */
Test(mmq_b32, known_value)
{
    sm_block_q8_0 wb, xb;
    wb.d = sm_f32_to_f16(1.0f);
    xb.d = sm_f32_to_f16(0.5f);
    for (int e = 0; e < 32; e++) {
        wb.qs[e] = (int8_t)(e + 1);
        xb.qs[e] = 2;
    }
    const float bias = 0.25f;
    int lv[3];
    const char *name[3];
    const int n = levels(lv, name);
    cr_assert_gt(n, 0);
    for (int l = 0; l < n; l++) {
        set_level(lv[l]);
        float y = 0.0f;
        run_level(SM_TYPE_Q8_0, (const uint8_t *)&wb, 32, 0, 1, (const uint8_t *)&xb, sizeof xb, NULL, 1, &y, 1, &bias);
        cr_assert_float_eq(y, 528.25f, 0.0f, "%s: %g", name[l], (double)y);
    }
    set_level(-1);
}

/* Q4_0 in llama.cpp's repacked order (MM_TYPE_Q4_0_X8): every level gives
 * the plain statement of it, computed here from the raw blocks: per block
 * the exact integer dot of (nibble - 8) and the activation quants, then
 * acc = fma((float)dot, dw * dx, acc), plus the bias. */
static void check_q4x8(int64_t K, int32_t n_tok, enum fill fill, int with_bias)
{
    const int64_t rows = 16, ranges[3][2] = {{0, 16}, {1, 15}, {3, 4}};
    const int64_t nb = K / 32;
    const uint64_t stride = mm_act_bytes(MM_B32, K), row_bytes = (uint64_t)nb * sizeof(sm_block_q4_0);
    uint8_t *w = malloc((size_t)(rows * (int64_t)row_bytes));
    uint8_t *act = malloc((size_t)n_tok * stride);
    int16_t *act16 = malloc((size_t)n_tok * (size_t)K * sizeof(int16_t));
    float bias[16], ref[9 * 16], got[9 * 16];
    cr_assert(w && act && act16);
    make_weights(SM_TYPE_Q4_0, w, rows, K, fill);
    make_act(MM_B32, act, stride, n_tok, K, fill);
    for (int32_t t = 0; t < n_tok; t++)
        mm_widen_act(MM_B32, act + (uint64_t)t * stride, act16 + (int64_t)t * K, K);
    for (int r = 0; r < rows; r++)
        bias[r] = rndf();
    for (int32_t t = 0; t < n_tok; t++)
        for (int64_t r = 0; r < rows; r++) {
            float acc = 0.0f;
            for (int64_t b = 0; b < nb; b++) {
                const sm_block_q4_0 *wb = (const sm_block_q4_0 *)(const void *)(w + r * row_bytes) + b;
                const sm_block_q8_0 *xb = (const sm_block_q8_0 *)(const void *)(act + t * stride) + b;
                int32_t dot = 0;
                for (int e = 0; e < 16; e++)
                    dot += ((wb->qs[e] & 0xF) - 8) * xb->qs[e] + ((wb->qs[e] >> 4) - 8) * xb->qs[e + 16];
                acc = fmaf((float)dot, sm_f16_to_f32(wb->d) * sm_f16_to_f32(xb->d), acc);
            }
            ref[t * rows + r] = with_bias ? acc + bias[r] : acc;
        }
    int lv[3];
    const char *name[3];
    const int n = levels(lv, name);
    for (int l = -1; l < n; l++) {
        if (l < 0) {
            mm_force_portable(1);
            cpu_force_level(CPU_PORTABLE);
        } else {
            mm_force_portable(0);
            set_level(lv[l]);
        }
        for (int c = 0; c < 3; c++) {
            const int64_t r0 = ranges[c][0], r1 = ranges[c][1];
            mm_row u;
            cr_assert_eq(mm_row_alloc(&u, K), 0);
            for (int i = 0; i < n_tok * rows; i++)
                got[i] = NAN;
            mmq_rows(MM_TYPE_Q4_0_X8, w, row_bytes, K, r0, r1, act, stride, act16, n_tok, got, rows,
                     with_bias ? bias : NULL, &u);
            mm_row_free(&u);
            for (int32_t t = 0; t < n_tok; t++)
                for (int64_t r = 0; r < rows; r++) {
                    const float g = got[t * rows + r], e = ref[t * rows + r];
                    if (r < r0 || r >= r1)
                        cr_assert(isnan(g), "wrote row %lld outside [%lld, %lld)", (long long)r, (long long)r0,
                                  (long long)r1);
                    else
                        cr_assert(memcmp(&g, &e, sizeof g) == 0,
                                  "%s K=%lld n_tok=%d fill %d y[%d][%lld] = %a, expected %a",
                                  l < 0 ? "portable" : name[l], (long long)K, n_tok, (int)fill, t, (long long)r,
                                  (double)g, (double)e);
                }
        }
    }
    mm_force_portable(0);
    set_level(-1);
    free(w);
    free(act);
    free(act16);
}

Test(mmq_b32, q4_0_repacked_order)
{
    rng_state = 6;
    const int64_t Ks[] = {32, 96, 1056};
    const int32_t toks[] = {1, 2, 3, 5, 9}; /* 4- and 8-token tiles and every remainder */
    const enum fill fills[] = {FILL_RANDOM, FILL_MAX, FILL_MIN};
    for (size_t ki = 0; ki < 3; ki++)
        for (size_t ti = 0; ti < 5; ti++)
            for (size_t fi = 0; fi < 3; fi++)
                check_q4x8(Ks[ki], toks[ti], fills[fi], (int)(ti % 2));
    /* rows of more than the kernels' per-panel table (8192 blocks): the
     * activation sums and scales are computed where used */
    check_q4x8(8193 * 32, 1, FILL_RANDOM, 1);
    check_q4x8(8193 * 32, 5, FILL_RANDOM, 0);
}

/* One-token IQ4_NL rows longer than the kernels' per-call table (2048
 * blocks), even and odd block counts. */
Test(mmq_b32, iq4_nl_one_token_long_rows)
{
    rng_state = 7;
    check_case(SM_TYPE_IQ4_NL, 2049 * 32, 9, 1, 9, 1, 1, FILL_RANDOM, FILL_RANDOM, 0);
    check_case(SM_TYPE_IQ4_NL, 2050 * 32, 5, 0, 5, 1, 0, FILL_RANDOM, FILL_RANDOM, 0);
}
