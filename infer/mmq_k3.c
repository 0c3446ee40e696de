/* mmq_k3.c — AVX2 / AVX-512 kernels for Q2_K and Q3_K weights
 * against Q8_K activations. */
#include "mmq_impl.h"

int mmq_k3_handles(uint32_t type)
{
    (void)type;
    return 0;
}

int mmq_k3_rows(const mmq_args *a)
{
    (void)a;
    return 0;
}
