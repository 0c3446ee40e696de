#include "types.h"

#include <strings.h>

/* Block geometry from ggml's type traits (ggml.c), which define the on-disk
 * sizes; the K-quant struct layouts are pinned with static_assert in quants.h. */
static const sm_type_info type_table[SM_TYPE_COUNT] = {
    [SM_TYPE_F32] = {"f32", 1, 4},
    [SM_TYPE_F16] = {"f16", 1, 2},
    [SM_TYPE_Q4_0] = {"q4_0", 32, 18},
    [SM_TYPE_Q4_1] = {"q4_1", 32, 20},
    [SM_TYPE_Q5_0] = {"q5_0", 32, 22},
    [SM_TYPE_Q5_1] = {"q5_1", 32, 24},
    [SM_TYPE_Q8_0] = {"q8_0", 32, 34},
    [SM_TYPE_Q8_1] = {"q8_1", 32, 36},
    [SM_TYPE_Q2_K] = {"q2_K", 256, 84},
    [SM_TYPE_Q3_K] = {"q3_K", 256, 110},
    [SM_TYPE_Q4_K] = {"q4_K", 256, 144},
    [SM_TYPE_Q5_K] = {"q5_K", 256, 176},
    [SM_TYPE_Q6_K] = {"q6_K", 256, 210},
    [SM_TYPE_Q8_K] = {"q8_K", 256, 292},
    [SM_TYPE_IQ2_XXS] = {"iq2_xxs", 256, 66},
    [SM_TYPE_IQ2_XS] = {"iq2_xs", 256, 74},
    [SM_TYPE_IQ3_XXS] = {"iq3_xxs", 256, 98},
    [SM_TYPE_IQ1_S] = {"iq1_s", 256, 50},
    [SM_TYPE_IQ4_NL] = {"iq4_nl", 32, 18},
    [SM_TYPE_IQ3_S] = {"iq3_s", 256, 110},
    [SM_TYPE_IQ2_S] = {"iq2_s", 256, 82},
    [SM_TYPE_IQ4_XS] = {"iq4_xs", 256, 136},
    [SM_TYPE_I8] = {"i8", 1, 1},
    [SM_TYPE_I16] = {"i16", 1, 2},
    [SM_TYPE_I32] = {"i32", 1, 4},
    [SM_TYPE_I64] = {"i64", 1, 8},
    [SM_TYPE_F64] = {"f64", 1, 8},
    [SM_TYPE_IQ1_M] = {"iq1_m", 256, 56},
    [SM_TYPE_BF16] = {"bf16", 1, 2},
    [SM_TYPE_TQ1_0] = {"tq1_0", 256, 54},
    [SM_TYPE_TQ2_0] = {"tq2_0", 256, 66},
};

const sm_type_info *sm_type_get(uint32_t t)
{
    if (t >= SM_TYPE_COUNT || type_table[t].blck == 0)
        return NULL;
    return &type_table[t];
}

const char *sm_type_name(uint32_t t)
{
    const sm_type_info *ti = sm_type_get(t);
    return ti ? ti->name : "?";
}

int sm_type_from_name(const char *name)
{
    for (uint32_t t = 0; t < SM_TYPE_COUNT; t++)
        if (type_table[t].blck && strcasecmp(type_table[t].name, name) == 0)
            return (int)t;
    return -1;
}

uint64_t sm_type_row_size(uint32_t t, int64_t n, int *ok)
{
    const sm_type_info *ti = sm_type_get(t);
    if (!ti || n < 0 || n % ti->blck != 0) {
        if (ok)
            *ok = 0;
        return 0;
    }
    if (ok)
        *ok = 1;
    return (uint64_t)(n / ti->blck) * ti->size;
}
