/* mmq_b32.c — AVX2 / AVX-512 kernels for 32-element block weights (Q4_0,
 * Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL) against Q8_0 / Q8_1 activations. */
#include "mmq_impl.h"

int mmq_b32_handles(uint32_t type)
{
    (void)type;
    return 0;
}

int mmq_b32_rows(const mmq_args *a)
{
    (void)a;
    return 0;
}
