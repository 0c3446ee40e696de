/* mmf_rows (float-weight products) at every CPU level equals ops.h's
 * reference dots bit for bit: F32/F16/BF16 weights, the tinyBLAS and
 * vec_dot kernel choices, row lengths on and off the kernels' steps, odd
 * row ranges, biases, and values including subnormals, signed zeros and
 * large finite magnitudes. */
#include <criterion/criterion.h>

#include "fp16.h"
#include "infer/cpu.h"
#include "infer/mmf.h"
#include "infer/ops.h"
#include "types.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint32_t next_u32(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

/* 1: every nonzero value is "tiny" (subnormal products for BF16) */
static int tiny_only;

static float uniform(void) { return (float)(next_u32() & 0xffffff) / 16777216.0f * 2.0f - 1.0f; }

/* A value for type: mostly ordinary, some subnormal (for the type), signed
 * zeros and large ones. Large and tiny magnitudes are chosen so that no sum
 * reaches infinity, yet BF16 products of two tiny values are f32
 * subnormals (where a fused and an unfused multiply-add differ). */
static float sample(uint32_t type, int act)
{
    const uint32_t c = next_u32() % 100;
    const float u = uniform();
    if (c < 4)
        return -0.0f;
    if (c < 7)
        return 0.0f;
    if (c < 15 || tiny_only) { /* tiny */
        if (type == SM_TYPE_F16)
            return u * 6.0e-5f; /* F16 subnormals below 6.1e-5 */
        if (type == SM_TYPE_BF16)
            return u * 0x1p-70f;
        return u * 1e-39f; /* f32 subnormal */
    }
    if (c < 22) { /* large */
        if (type == SM_TYPE_F16)
            return c < 18 ? (u < 0 ? -65504.0f : 65504.0f) : u * 60000.0f;
        return u * (act ? 0x1p40f : 0x1p60f);
    }
    return u * 2.0f;
}

/* Fills a weight of rows x K of type (raw bytes) and its f32 values. */
static uint8_t *make_weight(uint32_t type, int64_t rows, int64_t K, uint64_t *row_bytes)
{
    const uint64_t es = type == SM_TYPE_F32 ? 4 : 2;
    *row_bytes = es * (uint64_t)K;
    uint8_t *w = malloc(*row_bytes * (uint64_t)rows);
    cr_assert_not_null(w);
    for (int64_t i = 0; i < rows * K; i++) {
        const float v = sample(type, 0);
        if (type == SM_TYPE_F32) {
            memcpy(w + 4 * i, &v, 4);
        } else {
            const uint16_t h = type == SM_TYPE_F16 ? sm_f32_to_f16(v) : sm_f32_to_bf16(v);
            memcpy(w + 2 * i, &h, 2);
        }
    }
    return w;
}

/* The reference: ops.h's dot for the kernel llama.cpp would pick. */
static float ref_dot(uint32_t type, const float *wr, const float *x, int64_t K, int32_t n_tok)
{
    if (type == SM_TYPE_BF16)
        return n_tok >= 2 && K % 32 == 0 ? ops_dot_tb32bf(wr, x, K) : ops_dot_vbf16(wr, x, K);
    if (n_tok >= 2 && K % 16 == 0)
        return ops_dot_tb16(wr, x, K);
    return type == SM_TYPE_F16 ? ops_dot_vf16(wr, x, K) : ops_dot_vf32(wr, x, K);
}

static const char *type_name(uint32_t type)
{
    return type == SM_TYPE_F32 ? "F32" : type == SM_TYPE_F16 ? "F16" : "BF16";
}

/* Runs mmf_rows on rows [r0, r1) of a rows x K weight for n_tok tokens at
 * each CPU level and compares every output (and the untouched ones) with
 * the reference, bit for bit. */
static void check(uint32_t type, int64_t K, int32_t n_tok, int64_t rows, int64_t r0, int64_t r1, int with_bias)
{
    uint64_t row_bytes;
    uint8_t *w = make_weight(type, rows, K, &row_bytes);
    const int64_t ldx = K + 16, ldy = rows + 3;
    float *x = malloc(sizeof(float) * (size_t)(ldx * n_tok));
    float *bias = malloc(sizeof(float) * (size_t)rows);
    float *wf = malloc(sizeof(float) * (size_t)K);
    float *ref = malloc(sizeof(float) * (size_t)(ldy * n_tok));
    float *y = malloc(sizeof(float) * (size_t)(ldy * n_tok));
    float *scratch = malloc(sizeof(float) * (size_t)mmf_scratch_floats(K));
    cr_assert(x && bias && wf && ref && y && scratch);
    for (int64_t i = 0; i < ldx * n_tok; i++)
        x[i] = sample(type, 1);
    for (int32_t t = 0; t < n_tok; t++)
        ops_act_round(ops_act_for_type(type), x + t * ldx, x + t * ldx, K);
    for (int64_t r = 0; r < rows; r++)
        bias[r] = uniform() * 4.0f;
    const float sentinel = -12345.5f;

    ops_force_portable(1);
    for (int64_t i = 0; i < ldy * n_tok; i++)
        ref[i] = sentinel;
    for (int64_t r = r0; r < r1; r++) {
        ops_dequant_row(type, w + (uint64_t)r * row_bytes, wf, K);
        for (int32_t t = 0; t < n_tok; t++) {
            const float d = ref_dot(type, wf, x + t * ldx, K, n_tok);
            ref[t * ldy + r] = with_bias ? d + bias[r] : d;
        }
    }
    ops_force_portable(0);

    const int levels[3] = {CPU_AVX512, CPU_AVX2, CPU_PORTABLE};
    for (int li = 0; li < 3; li++) {
        cpu_force_level(levels[li]);
        ops_force_portable(levels[li] == CPU_PORTABLE);
        for (int64_t i = 0; i < ldy * n_tok; i++)
            y[i] = sentinel;
        mmf_rows(type, w, row_bytes, K, r0, r1, x, ldx, n_tok, y, ldy, with_bias ? bias : NULL, scratch);
        for (int64_t i = 0; i < ldy * n_tok; i++)
            if (memcmp(&y[i], &ref[i], sizeof(float)) != 0)
                cr_assert_fail("%s K=%ld n_tok=%d rows [%ld,%ld) bias=%d level %d: y[t=%ld][r=%ld] = %a, reference %a",
                               type_name(type), (long)K, n_tok, (long)r0, (long)r1, with_bias, levels[li],
                               (long)(i / ldy), (long)(i % ldy), (double)y[i], (double)ref[i]);
        /* nonzero, finite outputs: the comparison saw real sums */
        int live = 0;
        for (int64_t r = r0; r < r1; r++)
            live += isfinite(y[r]) && y[r] != 0.0f;
        cr_assert_gt(live, 0);
    }
    cpu_force_level(-1);
    ops_force_portable(0);
    free(w);
    free(x);
    free(bias);
    free(wf);
    free(ref);
    free(y);
    free(scratch);
}

static void init(void)
{
    ops_init();
    if (cpu_level() < CPU_AVX512)
        cr_log_info("this CPU lacks AVX-512 (level %d): the AVX-512 runs use the best level present", cpu_level());
}

TestSuite(mmf, .init = init);

static void sweep(uint32_t type)
{
    const int32_t toks[] = {1, 2, 3, 5, 16, 33};
    /* vec_dot tails (K % 64) of 63 (56 added + 7 fused for F32), 71 (7
     * fused), 72 (8 added), 88 (24 added), 100 (32 + 4), 172 (40 + 4) */
    const int64_t ks[] = {16, 32, 63, 64, 71, 72, 88, 100, 172, 2048};
    for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++)
        for (size_t ti = 0; ti < sizeof toks / sizeof toks[0]; ti++)
            for (int b = 0; b < 2; b++) {
                /* odd start, a partial 4-row group at the end */
                check(type, ks[ki], toks[ti], 12, 1, 10, b);
                /* a range shorter than one row tile */
                check(type, ks[ki], toks[ti], 7, 3, 5, b);
                /* more than one 16-row group with a partial last one (the
                 * vectorized tails of ggml_vec_dot_f16/f32) */
                check(type, ks[ki], toks[ti], 37, 1, 35, b);
            }
}

Test(mmf, f16_all_kernels_match_reference) { sweep(SM_TYPE_F16); }
Test(mmf, f32_all_kernels_match_reference) { sweep(SM_TYPE_F32); }
Test(mmf, bf16_all_kernels_match_reference) { sweep(SM_TYPE_BF16); }

/* Enough tokens for several activation blocks (the blocking keeps about
 * 1 MiB of activations in cache): the blocks must cover every token once. */
Test(mmf, token_blocks_cover_every_token)
{
    check(SM_TYPE_F16, 8192, 70, 6, 1, 6, 1);
    check(SM_TYPE_F32, 8192, 40, 5, 0, 5, 0);
    check(SM_TYPE_BF16, 8192, 45, 6, 1, 6, 1);
}

/* Rows of K up to the FFN width with a prompt-sized batch: the main tile
 * shapes of prompt processing. */
Test(mmf, prompt_sized_product)
{
    check(SM_TYPE_F16, 5632, 64, 9, 1, 9, 0);
    check(SM_TYPE_BF16, 2048, 64, 9, 1, 9, 1);
}

/* Only tiny values: BF16 products are then f32 subnormals, rounded before
 * the add as vdpbf16ps's emulation in ops.c does (an fma would differ). */
Test(mmf, bf16_subnormal_products)
{
    tiny_only = 1;
    check(SM_TYPE_BF16, 64, 5, 9, 1, 9, 0);
    check(SM_TYPE_BF16, 128, 1, 9, 1, 9, 0);
    check(SM_TYPE_BF16, 100, 3, 9, 1, 9, 0);
    check(SM_TYPE_F16, 128, 3, 9, 1, 9, 0);
    tiny_only = 0;
}

/* ggml_vec_dot_f32's tail as the reference build compiled it: products of
 * elements [K & ~63, K & ~7) are rounded before they are added, the last
 * K % 8 are fused. A planted pair tells them apart: -(1 + 2^-11) first,
 * then (1 + 2^-12)^2 = 1 + 2^-11 + 2^-24 at position p. Rounded, the
 * product is 1 + 2^-11 (a tie, to even) and the sum 0; fused, 2^-24. */
Test(mmf, f32_tail_rounds_then_fuses)
{
    const int64_t ks[] = {71, 100, 127, 172};
    const float one = 1.0f + 0x1p-12f;
    for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++) {
        const int64_t K = ks[ki], np = K & ~(int64_t)63, nf = K & ~(int64_t)7;
        float w[4][172], x[2][172], y[2][4], scratch[4 * 172 + 16];
        for (int64_t p = np + 1; p < K; p++) {
            memset(w, 0, sizeof w);
            memset(x, 0, sizeof x);
            for (int r = 0; r < 4; r++) {
                w[r][np] = -(1.0f + 0x1p-11f);
                w[r][p] = one;
            }
            for (int t = 0; t < 2; t++) {
                x[t][np] = 1.0f;
                x[t][p] = one;
            }
            const float want = p < nf ? 0.0f : 0x1p-24f;
            ops_force_portable(1);
            cr_assert_eq(ops_dot_vf32(w[0], x[0], K), want, "K=%ld p=%ld: %a", (long)K, (long)p,
                         (double)ops_dot_vf32(w[0], x[0], K));
            const int levels[3] = {CPU_AVX512, CPU_AVX2, CPU_PORTABLE};
            for (int li = 0; li < 3; li++) {
                cpu_force_level(levels[li]);
                ops_force_portable(levels[li] == CPU_PORTABLE);
                /* K % 16 != 0 or one token: always the vec_dot kernel */
                const int32_t n_tok = K % 16 ? 2 : 1;
                memset(y, 0xff, sizeof y);
                mmf_rows(SM_TYPE_F32, (const uint8_t *)w, sizeof w[0], K, 0, 4, x[0], 172, n_tok, y[0], 4, NULL,
                         scratch);
                for (int t = 0; t < n_tok; t++)
                    for (int r = 0; r < 4; r++)
                        cr_assert_eq(y[t][r], want, "K=%ld p=%ld level %d y[%d][%d] = %a", (long)K, (long)p,
                                     levels[li], t, r, (double)y[t][r]);
            }
            cpu_force_level(-1);
            ops_force_portable(0);
        }
    }
}

Test(mmf, scratch_covers_four_rows) { cr_assert_geq(mmf_scratch_floats(100), 400); }
