/* mmq.c — quantized matrix products: pick the fastest kernel that gives
 * the portable path's bits, else run the portable path itself. */
#include "matmul.h"
#include "mmq_impl.h"
#include "types.h"

int mmq_needs_act16(uint32_t type) { return !mmq_k_handles(type) && !mmq_k3_handles(type) && !mmq_b32_handles(type); }

void mmq_rows(uint32_t type, const uint8_t *w, uint64_t row_bytes, int64_t K, int64_t r0, int64_t r1,
              const uint8_t *act, uint64_t act_stride, const int16_t *act16, int32_t n_tok, float *y, int64_t ldy,
              const float *bias, mm_row *u)
{
    /* MM_TYPE_Q4_0_X8 is Q4_0 data in llama.cpp's repacked order */
    const int x8 = type == MM_TYPE_Q4_0_X8;
    const uint32_t wt = x8 ? SM_TYPE_Q4_0 : type;
    const mmq_args a = {wt, w, row_bytes, K, r0, r1, act, act_stride, n_tok, y, ldy, bias};
    if (x8 ? mmq_b32_q4_0_x8_rows(&a) : (mmq_k_rows(&a) || mmq_k3_rows(&a) || mmq_b32_rows(&a)))
        return;
    /* portable: unpack each row once, then its exact block dot with every
     * token */
    const int kind = mm_kind_of(wt), iq4nl_vec = wt == SM_TYPE_IQ4_NL && n_tok == 1;
    for (int64_t r = r0; r < r1; r++) {
        mm_unpack_row(wt, w + (uint64_t)r * row_bytes, K, u);
        for (int32_t t = 0; t < n_tok; t++) {
            const uint8_t *xt = act + (uint64_t)t * act_stride;
            const int16_t *x16 = act16 + (int64_t)t * K;
            const float v = x8          ? mm_dot_q4_0_x8(u, xt, x16, K)
                            : iq4nl_vec ? mm_dot_iq4nl_vec(u, xt, x16, K)
                                        : mm_dot(kind, u, xt, x16, K);
            y[(int64_t)t * ldy + r] = bias ? v + bias[r] : v;
        }
    }
}
