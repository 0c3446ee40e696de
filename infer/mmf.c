#include "mmf.h"

#include "ops.h"
#include "types.h"

/* Which ggml kernel llama.cpp's CPU backend (AVX-512 build with AVX512-BF16,
 * as on the machine that made the references) uses for a float weight:
 * llamafile's tinyBLAS (<16> for F32/F16, <32> with vdpbf16ps for BF16) when
 * the product has >= 2 tokens and the row length fits, else the type's
 * vec_dot. */
static int float_kernel(uint32_t type, int64_t k, int32_t n_tokens)
{
    /* the reference machine has AVX512-BF16: tinyBLAS<32> with vdpbf16ps */
    if (type == SM_TYPE_BF16)
        return n_tokens >= 2 && k % 32 == 0 ? MMF_TB32BF : MMF_VBF16;
    if (n_tokens >= 2 && k % 16 == 0)
        return MMF_TB16;
    if (type == SM_TYPE_F16)
        return MMF_VF16;
    return MMF_VF32;
}

static float float_dot(int fk, const float *w, const float *x, int64_t k)
{
    switch (fk) {
    case MMF_TB16: return ops_dot_tb16(w, x, k);
    case MMF_TB32BF: return ops_dot_tb32bf(w, x, k);
    case MMF_VF16: return ops_dot_vf16(w, x, k);
    case MMF_VBF16: return ops_dot_vbf16(w, x, k);
    default: return ops_dot_vf32(w, x, k);
    }
}

/* 4 rows of K (the portable path's dequantized rows; the AVX-512 path's
 * K-blocked tile accumulators), plus room to align them to 64 bytes */
int64_t mmf_scratch_floats(int64_t K) { return 4 * K + 16; }

/* SIMD kernels when the CPU has them; else the portable path: rows in
 * groups of 4, each group dequantized once into scratch and reused for
 * every token with ops.h's reference dots. */
void mmf_rows(uint32_t type, const uint8_t *w, uint64_t row_bytes, int64_t K, int64_t r0, int64_t r1,
              const float *x, int64_t ldx, int32_t n_tok, float *y, int64_t ldy, const float *bias, float *scratch)
{
    const int fk = float_kernel(type, K, n_tok);
    if (r0 >= r1 || n_tok <= 0)
        return;
    const mmf_job j = {type, fk, w, row_bytes, K, r0, r1, x, ldx, n_tok, y, ldy, bias, scratch};
    if (mmf_x86_rows(&j))
        return;
    for (int64_t g = r0; g < r1; g += 4) {
        const int64_t nr = r1 - g < 4 ? r1 - g : 4;
        for (int64_t r = 0; r < nr; r++)
            ops_dequant_row(type, w + (uint64_t)(g + r) * row_bytes, scratch + r * K, K);
        for (int32_t t = 0; t < n_tok; t++) {
            float out[4];
            const float *xt = x + (int64_t)t * ldx;
            if (fk == MMF_TB16 && nr == 4)
                ops_dot_tb16x4(scratch, K, xt, K, out);
            else
                for (int64_t r = 0; r < nr; r++)
                    out[r] = float_dot(fk, scratch + r * K, xt, K);
            float *yt = y + (int64_t)t * ldy + g;
            for (int64_t r = 0; r < nr; r++)
                yt[r] = bias ? out[r] + bias[g + r] : out[r];
        }
    }
}
