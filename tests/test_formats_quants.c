/* Block codecs: bit-exact against llama.cpp's quantized reference files,
 * scalar vs AVX2 agreement, round-trip error bounds, known values and the
 * argument-checking table. */
#include <criterion/criterion.h>

#include "formats/fp16.h"
#include "formats/quants.h"
#include "formats/types.h"
#include "support.h"
#include "support_codecs.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ references
 *
 * Every quantized tensor of every llama-quantize output is re-made from
 * convert-f16.gguf (convert-f32.gguf for *-from-f32) and compared byte for
 * byte; -imat files use imatrix.dat. One Criterion test per file so the
 * suite spreads over the cores. */

static void check_reference(const char *model, const char *file)
{
    char in_rel[256], out_rel[256], im_rel[256];
    /* convert-q8_0.gguf was quantized by gguf-py straight from the
     * checkpoint, i.e. from the F32 values */
    int from_f32 = strstr(file, "from-f32") != NULL || strstr(file, "convert-") != NULL;
    int imat = strstr(file, "-imat") != NULL;
    snprintf(in_rel, sizeof in_rel, "reference/%s/%s", model, from_f32 ? "convert-f32.gguf" : "convert-f16.gguf");
    snprintf(out_rel, sizeof out_rel, "reference/%s/%s", model, file);
    snprintf(im_rel, sizeof im_rel, "reference/%s/imatrix.dat", model);
    char in_path[1024], out_path[1024];
    snprintf(in_path, sizeof in_path, "%s", ts_path(in_rel));
    snprintf(out_path, sizeof out_path, "%s", ts_path(out_rel));

    tc_imat im;
    if (imat)
        cr_assert_eq(tc_imat_load(&im, ts_path(im_rel)), 0, "cannot load %s", im_rel);
    tc_type_stats stats[TC_NTYPES];
    memset(stats, 0, sizeof stats);
    char first_bad[512];
    int bad = tc_requant_check(in_path, out_path, imat ? &im : NULL, stats, first_bad, sizeof first_bad);
    char line[1024];
    int off = snprintf(line, sizeof line, "%s/%s:", model, file);
    uint32_t total = 0, weighted_types = 0, weighted = 0;
    for (uint32_t t = 0; t < TC_NTYPES; t++) {
        if (!stats[t].tensors)
            continue;
        total += stats[t].tensors;
        weighted += stats[t].imat;
        if (sm_quantize_uses_imatrix(t))
            weighted_types += stats[t].tensors;
        off += snprintf(line + off, sizeof line - (size_t)off, " %s %u/%u%s", sm_type_name(t), stats[t].matched,
                        stats[t].tensors, stats[t].imat ? " (imatrix)" : "");
    }
    fprintf(stderr, "[codecs] %s\n", line);
    if (imat)
        tc_imat_free(&im);
    cr_assert_eq(bad, 0, "%s: %d tensors differ; first: %s", line, bad, first_bad);
    cr_assert_gt(total, 0, "%s: no quantized tensors", line);
    /* an -imat file whose types use weights must have matched through the
     * weighted path (proves the imatrix was applied, not skipped) */
    if (imat && weighted_types)
        cr_assert_gt(weighted, 0, "%s: imatrix never used", line);
}

#define REF_TEST(ident, model, file) \
    Test(quants_ref, ident) { check_reference(model, file); }

REF_TEST(ts3m_Q3_K_S, "tinystories-3m", "Q3_K_S.gguf")
REF_TEST(ts3m_Q3_K_S_imat, "tinystories-3m", "Q3_K_S-imat.gguf")
REF_TEST(ts3m_Q3_K_M, "tinystories-3m", "Q3_K_M.gguf")
REF_TEST(ts3m_Q3_K_M_imat, "tinystories-3m", "Q3_K_M-imat.gguf")
REF_TEST(ts3m_Q3_K_L, "tinystories-3m", "Q3_K_L.gguf")
REF_TEST(ts3m_Q3_K_L_imat, "tinystories-3m", "Q3_K_L-imat.gguf")
REF_TEST(ts3m_Q4_K_S, "tinystories-3m", "Q4_K_S.gguf")
REF_TEST(ts3m_Q4_K_S_imat, "tinystories-3m", "Q4_K_S-imat.gguf")
REF_TEST(ts3m_Q4_K_M, "tinystories-3m", "Q4_K_M.gguf")
REF_TEST(ts3m_Q4_K_M_imat, "tinystories-3m", "Q4_K_M-imat.gguf")
REF_TEST(ts3m_Q4_K_M_from_f32, "tinystories-3m", "Q4_K_M-from-f32.gguf")
REF_TEST(ts3m_Q5_K_S, "tinystories-3m", "Q5_K_S.gguf")
REF_TEST(ts3m_Q5_K_S_imat, "tinystories-3m", "Q5_K_S-imat.gguf")
REF_TEST(ts3m_Q5_K_M, "tinystories-3m", "Q5_K_M.gguf")
REF_TEST(ts3m_Q5_K_M_imat, "tinystories-3m", "Q5_K_M-imat.gguf")
REF_TEST(ts3m_Q6_K, "tinystories-3m", "Q6_K.gguf")
REF_TEST(ts3m_Q6_K_imat, "tinystories-3m", "Q6_K-imat.gguf")
REF_TEST(ts3m_Q8_0, "tinystories-3m", "Q8_0.gguf")
REF_TEST(ts3m_Q8_0_imat, "tinystories-3m", "Q8_0-imat.gguf")
REF_TEST(ts3m_convert_q8_0, "tinystories-3m", "convert-q8_0.gguf")

REF_TEST(s260k_Q3_K_S, "stories260K", "Q3_K_S.gguf")
REF_TEST(s260k_Q3_K_S_imat, "stories260K", "Q3_K_S-imat.gguf")
REF_TEST(s260k_Q3_K_M, "stories260K", "Q3_K_M.gguf")
REF_TEST(s260k_Q3_K_M_imat, "stories260K", "Q3_K_M-imat.gguf")
REF_TEST(s260k_Q3_K_L, "stories260K", "Q3_K_L.gguf")
REF_TEST(s260k_Q3_K_L_imat, "stories260K", "Q3_K_L-imat.gguf")
REF_TEST(s260k_Q4_K_S, "stories260K", "Q4_K_S.gguf")
REF_TEST(s260k_Q4_K_S_imat, "stories260K", "Q4_K_S-imat.gguf")
REF_TEST(s260k_Q4_K_M, "stories260K", "Q4_K_M.gguf")
REF_TEST(s260k_Q4_K_M_imat, "stories260K", "Q4_K_M-imat.gguf")
REF_TEST(s260k_Q4_K_M_from_f32, "stories260K", "Q4_K_M-from-f32.gguf")
REF_TEST(s260k_Q5_K_S, "stories260K", "Q5_K_S.gguf")
REF_TEST(s260k_Q5_K_S_imat, "stories260K", "Q5_K_S-imat.gguf")
REF_TEST(s260k_Q5_K_M, "stories260K", "Q5_K_M.gguf")
REF_TEST(s260k_Q5_K_M_imat, "stories260K", "Q5_K_M-imat.gguf")
REF_TEST(s260k_Q6_K, "stories260K", "Q6_K.gguf")
REF_TEST(s260k_Q6_K_imat, "stories260K", "Q6_K-imat.gguf")
REF_TEST(s260k_convert_q8_0, "stories260K", "convert-q8_0.gguf")

/* ------------------------------------------------------------ golden hashes
 *
 * FNV-1a hashes of llama.cpp's own output for tc_gen_fill inputs (4 rows x
 * 512, every distribution, without and with tc_gen_imatrix weights), made
 * by a throwaway program linking ggml-quants.c at c392e5094 built like
 * llama.cpp's release (gcc -O3 -DNDEBUG, generic x86-64): calls of
 * quantize_<type>(src, dst, 4, 512, imatrix-or-NULL), i.e. what
 * ggml_quantize_chunk runs, then ggml's dequantize_row_<type> on the result.
 * Q8_K / Q8_1 rows are quantize_row_q8_K_ref / quantize_row_q8_1_ref (Q8_K
 * bsums of all-zero blocks zeroed, as smelt writes them). This covers what
 * the reference GGUFs cannot: Q2_K, Q4_0, Q4_1, IQ4_XS, the imatrix paths of
 * the 32-blocks, zeros, constants, ties, tiny and huge magnitudes. */
typedef struct golden {
    uint32_t type;
    int dist;
    int imat;
    uint64_t hq;   /* hash of the quantized bytes */
    uint64_t hd;   /* hash of the dequantized floats (0: not recorded) */
} golden;

static const golden goldens[] = {
    {SM_TYPE_Q4_0, 0, 0, 0x6df7db05149a7020ull, 0xab41c9116d0e431aull},
    {SM_TYPE_Q4_0, 0, 1, 0x354a2997a1e4c5b5ull, 0xf4ba0276d9f2bbafull},
    {SM_TYPE_Q4_1, 0, 0, 0xfcf5190d548117a0ull, 0x14b1b193c3b444deull},
    {SM_TYPE_Q4_1, 0, 1, 0x9b656b212965b621ull, 0xd77df8ad44fc996aull},
    {SM_TYPE_Q5_0, 0, 0, 0x42f04a6e053ddf17ull, 0x9e9b178ac93aa089ull},
    {SM_TYPE_Q5_0, 0, 1, 0xe4da5f0eda619592ull, 0x05035976b18fd9d4ull},
    {SM_TYPE_Q5_1, 0, 0, 0x988338678f7f7a21ull, 0xb25a53c25b94601full},
    {SM_TYPE_Q5_1, 0, 1, 0x12a7a0cb49e79212ull, 0xabb09c1a3b539769ull},
    {SM_TYPE_Q8_0, 0, 0, 0x48344d3d885fcc5dull, 0xf8ef5162641bacc1ull},
    {SM_TYPE_Q8_0, 0, 1, 0x48344d3d885fcc5dull, 0xf8ef5162641bacc1ull},
    {SM_TYPE_IQ4_NL, 0, 0, 0x0b86386179fb9501ull, 0x2e5ff14110924a0full},
    {SM_TYPE_IQ4_NL, 0, 1, 0xb53c35e83bbf8377ull, 0x31a771dd716ef643ull},
    {SM_TYPE_Q2_K, 0, 0, 0xb1f7de8565c6eaa5ull, 0xe850859e0ca7274dull},
    {SM_TYPE_Q2_K, 0, 1, 0xaf54d88dab91780full, 0xdf2df00c6f9a0ed0ull},
    {SM_TYPE_Q3_K, 0, 0, 0x734027dd1c6782b3ull, 0xe0c8f88a04af7b63ull},
    {SM_TYPE_Q3_K, 0, 1, 0x2b64a3ebfc66a1cdull, 0x79b7c6727f19a77bull},
    {SM_TYPE_Q4_K, 0, 0, 0x1cccdac090f6c01aull, 0x775bc30a5979de6eull},
    {SM_TYPE_Q4_K, 0, 1, 0xe01ad1d94cf64f5full, 0x7bd4b78c134bea1aull},
    {SM_TYPE_Q5_K, 0, 0, 0x35e31455ead3d2c2ull, 0xef2b4fb1a0fafa62ull},
    {SM_TYPE_Q5_K, 0, 1, 0x5e8730f2654f6befull, 0x1423bf4554daa70bull},
    {SM_TYPE_Q6_K, 0, 0, 0xef8be5f10aa961f1ull, 0x70f44d91047155bdull},
    {SM_TYPE_Q6_K, 0, 1, 0x0ec7e57ce07a0894ull, 0xb8ad241c97b4eb8dull},
    {SM_TYPE_IQ4_XS, 0, 0, 0x9b69c341c03fe0b6ull, 0x154ee31e8a320f19ull},
    {SM_TYPE_IQ4_XS, 0, 1, 0x134ee1a5d9122537ull, 0x3b54134699b66c2aull},
    {SM_TYPE_Q8_K, 0, 0, 0xa18722f2d760efa6ull, 0xa0ade56e7001e583ull},
    {SM_TYPE_Q8_1, 0, 0, 0xffe17930ddc70eb8ull, 0},
    {SM_TYPE_Q4_0, 1, 0, 0xe72b4bc3f010965cull, 0x5c573199a7804859ull},
    {SM_TYPE_Q4_0, 1, 1, 0xac8f6d609e6c69daull, 0x66b9fa82cb7ffc81ull},
    {SM_TYPE_Q4_1, 1, 0, 0xa4e3dac5d2f4a11eull, 0xe07f0e72154bb04cull},
    {SM_TYPE_Q4_1, 1, 1, 0xbaa6365d8ae22c88ull, 0x94cebf1e39e7fb96ull},
    {SM_TYPE_Q5_0, 1, 0, 0x12248d485adf24ecull, 0xf8acadcbfb291aa7ull},
    {SM_TYPE_Q5_0, 1, 1, 0x1fb549787c822473ull, 0xa6acbb5f137e465dull},
    {SM_TYPE_Q5_1, 1, 0, 0xf6a0cdafbb859906ull, 0xa3708e1e3319bb46ull},
    {SM_TYPE_Q5_1, 1, 1, 0x8f7d7f3b1fbca7f8ull, 0x909f03ffcb71a121ull},
    {SM_TYPE_Q8_0, 1, 0, 0x7191e036e417107full, 0xd0b9202707edd654ull},
    {SM_TYPE_Q8_0, 1, 1, 0x7191e036e417107full, 0xd0b9202707edd654ull},
    {SM_TYPE_IQ4_NL, 1, 0, 0x94c4875418f9c84eull, 0xee6ed41b01824c98ull},
    {SM_TYPE_IQ4_NL, 1, 1, 0x56b1945c8d7b2707ull, 0x272554a0682f39c4ull},
    {SM_TYPE_Q2_K, 1, 0, 0x3adf548f9b4365c4ull, 0x6237ebbb29110c44ull},
    {SM_TYPE_Q2_K, 1, 1, 0x156371db589103b3ull, 0x965cda1021c8419aull},
    {SM_TYPE_Q3_K, 1, 0, 0xa9bcb4d105b70130ull, 0x774615bf7b546692ull},
    {SM_TYPE_Q3_K, 1, 1, 0x0b3302208961d378ull, 0xfbb63de18c72d625ull},
    {SM_TYPE_Q4_K, 1, 0, 0xdd8f00c86fee4f9aull, 0x1f265846bf825f3bull},
    {SM_TYPE_Q4_K, 1, 1, 0xc5d69226ddb9f20bull, 0xe21c59db6b8f0624ull},
    {SM_TYPE_Q5_K, 1, 0, 0x0be59a8753adc494ull, 0x6804348b2e03ad82ull},
    {SM_TYPE_Q5_K, 1, 1, 0x677aaac5978e3d33ull, 0x9b6a68b373bfa53bull},
    {SM_TYPE_Q6_K, 1, 0, 0x5f0f20f350d7428eull, 0x54e8c733a16cc52aull},
    {SM_TYPE_Q6_K, 1, 1, 0x6862e0b874b2c620ull, 0xcc5f6a5ba0079c9full},
    {SM_TYPE_IQ4_XS, 1, 0, 0x17f8c7347c449bacull, 0x3321a20a92ee426cull},
    {SM_TYPE_IQ4_XS, 1, 1, 0xc98b3fa8891ebbf9ull, 0xffb95fa909fc77dfull},
    {SM_TYPE_Q8_K, 1, 0, 0x1318f9110cc1c92dull, 0x922a2ab2024ae1b3ull},
    {SM_TYPE_Q8_1, 1, 0, 0x06a5f3da8627ab09ull, 0},
    {SM_TYPE_Q4_0, 2, 0, 0x4fcd795280c64d25ull, 0x20a015c1e907d325ull},
    {SM_TYPE_Q4_0, 2, 1, 0xe16c3bc7d48e0973ull, 0xed533fc6005e7ba5ull},
    {SM_TYPE_Q4_1, 2, 0, 0xeb8ee7a9fdbd9925ull, 0x20a015c1e907d325ull},
    {SM_TYPE_Q4_1, 2, 1, 0x8cf998a9e39b99a5ull, 0x53ce24548dfbdb25ull},
    {SM_TYPE_Q5_0, 2, 0, 0x90813ac51a5e4325ull, 0x20a015c1e907d325ull},
    {SM_TYPE_Q5_0, 2, 1, 0x2803d60213e9b7b3ull, 0x05d56531e9e32025ull},
    {SM_TYPE_Q5_1, 2, 0, 0x3be39e1d57787925ull, 0x20a015c1e907d325ull},
    {SM_TYPE_Q5_1, 2, 1, 0xe6b1076e766f1765ull, 0xc9d684489a7e9f25ull},
    {SM_TYPE_Q8_0, 2, 0, 0x96601e54ca1814a5ull, 0x07b2452dd6bcf325ull},
    {SM_TYPE_Q8_0, 2, 1, 0x96601e54ca1814a5ull, 0x07b2452dd6bcf325ull},
    {SM_TYPE_IQ4_NL, 2, 0, 0x2b4b75511d2f80a5ull, 0xcb66cc995244c325ull},
    {SM_TYPE_IQ4_NL, 2, 1, 0x73c92fe030fda7a5ull, 0x0045dc76e2495225ull},
    {SM_TYPE_Q2_K, 2, 0, 0x9d10cc0ad3806585ull, 0xfe9232c54bf8bb25ull},
    {SM_TYPE_Q2_K, 2, 1, 0x9d10cc0ad3806585ull, 0xfe9232c54bf8bb25ull},
    {SM_TYPE_Q3_K, 2, 0, 0x9008ed79e04445a5ull, 0x20a015c1e907d325ull},
    {SM_TYPE_Q3_K, 2, 1, 0x5faa274c5781d909ull, 0x7e7fdd7b3e87eb25ull},
    {SM_TYPE_Q4_K, 2, 0, 0x7ca28d79c375bac1ull, 0x7a27a8b04be2e325ull},
    {SM_TYPE_Q4_K, 2, 1, 0x7ca28d79c375bac1ull, 0x7a27a8b04be2e325ull},
    {SM_TYPE_Q5_K, 2, 0, 0xae9408d5e3d8c3b5ull, 0xd7d2aa7da39a1f25ull},
    {SM_TYPE_Q5_K, 2, 1, 0xb5956cf728b9b3aaull, 0x1e533e7958876525ull},
    {SM_TYPE_Q6_K, 2, 0, 0x2b03233c24333805ull, 0x20a015c1e907d325ull},
    {SM_TYPE_Q6_K, 2, 1, 0x8bc6f191ba7865b1ull, 0x7b4be0a6829f5b25ull},
    {SM_TYPE_IQ4_XS, 2, 0, 0x19dc1f1830e7cb61ull, 0xcb66cc995244c325ull},
    {SM_TYPE_IQ4_XS, 2, 1, 0xc2f4c76da9f8b8f6ull, 0x4c9291461fe20fa5ull},
    {SM_TYPE_Q8_K, 2, 0, 0x259128af3e153e15ull, 0x20a015c1e907d325ull},
    {SM_TYPE_Q8_1, 2, 0, 0xaaceafd5aca85c25ull, 0},
    {SM_TYPE_Q4_0, 3, 0, 0x4e0119afe2293d25ull, 0xa7fe97a26854a325ull},
    {SM_TYPE_Q4_0, 3, 1, 0x36fe4d3f1c233d25ull, 0xa7fe97a26854a325ull},
    {SM_TYPE_Q4_1, 3, 0, 0x963548a7b7b20725ull, 0xb9d103fd6854a325ull},
    {SM_TYPE_Q4_1, 3, 1, 0x963548a7b7b20725ull, 0xb9d103fd6854a325ull},
    {SM_TYPE_Q5_0, 3, 0, 0xea001e5ae1603e25ull, 0xa7fe97a26854a325ull},
    {SM_TYPE_Q5_0, 3, 1, 0x5135e870d9d4d125ull, 0xa7fe97a26854a325ull},
    {SM_TYPE_Q5_1, 3, 0, 0x6ab05ef9aa8b9b25ull, 0xb9d103fd6854a325ull},
    {SM_TYPE_Q5_1, 3, 1, 0x6ab05ef9aa8b9b25ull, 0xb9d103fd6854a325ull},
    {SM_TYPE_Q8_0, 3, 0, 0x92c509c370c98d25ull, 0xb9d103fd6854a325ull},
    {SM_TYPE_Q8_0, 3, 1, 0x92c509c370c98d25ull, 0xb9d103fd6854a325ull},
    {SM_TYPE_IQ4_NL, 3, 0, 0x1101150a1a6f3d25ull, 0xb9d103fd6854a325ull},
    {SM_TYPE_IQ4_NL, 3, 1, 0x1101150a1a6f3d25ull, 0xb9d103fd6854a325ull},
    {SM_TYPE_Q2_K, 3, 0, 0x82342c0a6891e7a5ull, 0xb9d103fd6854a325ull},
    {SM_TYPE_Q2_K, 3, 1, 0x82342c0a6891e7a5ull, 0xb9d103fd6854a325ull},
    {SM_TYPE_Q3_K, 3, 0, 0x064bd2022b6d37e5ull, 0xb9d103fd6854a325ull},
    {SM_TYPE_Q3_K, 3, 1, 0x064bd2022b6d37e5ull, 0xb9d103fd6854a325ull},
    {SM_TYPE_Q4_K, 3, 0, 0x36fe4d3f1c233d25ull, 0xb9d103fd6854a325ull},
    {SM_TYPE_Q4_K, 3, 1, 0x36fe4d3f1c233d25ull, 0xb9d103fd6854a325ull},
    {SM_TYPE_Q5_K, 3, 0, 0x5135e870d9d4d125ull, 0xb9d103fd6854a325ull},
    {SM_TYPE_Q5_K, 3, 1, 0x5135e870d9d4d125ull, 0xb9d103fd6854a325ull},
    {SM_TYPE_Q6_K, 3, 0, 0x26dfcaf1ebf42665ull, 0xa7fe97a26854a325ull},
    {SM_TYPE_Q6_K, 3, 1, 0x26dfcaf1ebf42665ull, 0xa7fe97a26854a325ull},
    {SM_TYPE_IQ4_XS, 3, 0, 0x7c9267de8244cbe5ull, 0xa7fe97a26854a325ull},
    {SM_TYPE_IQ4_XS, 3, 1, 0x7c9267de8244cbe5ull, 0xa7fe97a26854a325ull},
    {SM_TYPE_Q8_K, 3, 0, 0x39e9fbae5a7b29a5ull, 0xb9d103fd6854a325ull},
    {SM_TYPE_Q8_1, 3, 0, 0xd3f7ec18a0f85725ull, 0},
    {SM_TYPE_Q4_0, 4, 0, 0x01a8f289921a9629ull, 0x46f2f3f1f84b4ca5ull},
    {SM_TYPE_Q4_0, 4, 1, 0x36fe4d3f1c233d25ull, 0xa7fe97a26854a325ull},
    {SM_TYPE_Q4_1, 4, 0, 0xa9d3053b14454696ull, 0xb9d103fd6854a325ull},
    {SM_TYPE_Q4_1, 4, 1, 0xa9d3053b14454696ull, 0xb9d103fd6854a325ull},
    {SM_TYPE_Q5_0, 4, 0, 0x9d89ed3a7ac39d1dull, 0xbec171ac60f840a5ull},
    {SM_TYPE_Q5_0, 4, 1, 0x5135e870d9d4d125ull, 0xa7fe97a26854a325ull},
    {SM_TYPE_Q5_1, 4, 0, 0x8d3917045fb2e8d6ull, 0xb9d103fd6854a325ull},
    {SM_TYPE_Q5_1, 4, 1, 0x8d3917045fb2e8d6ull, 0xb9d103fd6854a325ull},
    {SM_TYPE_Q8_0, 4, 0, 0x9ff937732a53c44aull, 0x26dd202512faa9a5ull},
    {SM_TYPE_Q8_0, 4, 1, 0x9ff937732a53c44aull, 0x26dd202512faa9a5ull},
    {SM_TYPE_IQ4_NL, 4, 0, 0x1101150a1a6f3d25ull, 0xb9d103fd6854a325ull},
    {SM_TYPE_IQ4_NL, 4, 1, 0x1101150a1a6f3d25ull, 0xb9d103fd6854a325ull},
    {SM_TYPE_Q2_K, 4, 0, 0x5bcab6051dd1fe08ull, 0xb9d103fd6854a325ull},
    {SM_TYPE_Q2_K, 4, 1, 0x618b4b4cfaec59e5ull, 0x58a2b78ec6cb6325ull},
    {SM_TYPE_Q3_K, 4, 0, 0x064bd2022b6d37e5ull, 0xb9d103fd6854a325ull},
    {SM_TYPE_Q3_K, 4, 1, 0x064bd2022b6d37e5ull, 0xb9d103fd6854a325ull},
    {SM_TYPE_Q4_K, 4, 0, 0x06e098ee69f84c8dull, 0xb9d103fd6854a325ull},
    {SM_TYPE_Q4_K, 4, 1, 0xbfd9819198454642ull, 0x58a2b78ec6cb6325ull},
    {SM_TYPE_Q5_K, 4, 0, 0xdbeddc1048219c9full, 0xb9d103fd6854a325ull},
    {SM_TYPE_Q5_K, 4, 1, 0xa1cd09f3f163dec2ull, 0x58a2b78ec6cb6325ull},
    {SM_TYPE_Q6_K, 4, 0, 0x26dfcaf1ebf42665ull, 0xa7fe97a26854a325ull},
    {SM_TYPE_Q6_K, 4, 1, 0x26dfcaf1ebf42665ull, 0xa7fe97a26854a325ull},
    {SM_TYPE_IQ4_XS, 4, 0, 0x7c9267de8244cbe5ull, 0xa7fe97a26854a325ull},
    {SM_TYPE_IQ4_XS, 4, 1, 0x7c9267de8244cbe5ull, 0xa7fe97a26854a325ull},
    {SM_TYPE_Q8_K, 4, 0, 0x91509039d68c68b8ull, 0x1e1c20a72bfde8a5ull},
    {SM_TYPE_Q8_1, 4, 0, 0xe684bdfbb20d5ae2ull, 0},
    {SM_TYPE_Q4_0, 5, 0, 0xd070c4324028542bull, 0x03c225db7d362d6cull},
    {SM_TYPE_Q4_0, 5, 1, 0x84d44336021adad9ull, 0x27d5265751bbf508ull},
    {SM_TYPE_Q4_1, 5, 0, 0xba3eacfe74549b3full, 0x6ce1667eb6413b5eull},
    {SM_TYPE_Q4_1, 5, 1, 0xbea5421b270b7a70ull, 0x689efebc037d26d0ull},
    {SM_TYPE_Q5_0, 5, 0, 0x1d71ebb422d3450eull, 0xf88378dc53402b40ull},
    {SM_TYPE_Q5_0, 5, 1, 0xc5acf4eba6b4af78ull, 0x0a8077e7fa25a747ull},
    {SM_TYPE_Q5_1, 5, 0, 0x3da790ff5a68af7bull, 0x575aa96232618415ull},
    {SM_TYPE_Q5_1, 5, 1, 0x2ec1eed1c0d87b05ull, 0xd31d1bb211af5ddfull},
    {SM_TYPE_Q8_0, 5, 0, 0x624b65586d928fc3ull, 0x2db7a018299e943aull},
    {SM_TYPE_Q8_0, 5, 1, 0x624b65586d928fc3ull, 0x2db7a018299e943aull},
    {SM_TYPE_IQ4_NL, 5, 0, 0xf95fc6dc674967efull, 0xe4a99aa25fbb518full},
    {SM_TYPE_IQ4_NL, 5, 1, 0x9025d749daa98896ull, 0xe9bf419a9ac1a43aull},
    {SM_TYPE_Q2_K, 5, 0, 0x07608133cbe07ab2ull, 0xef73a134bb67d79cull},
    {SM_TYPE_Q2_K, 5, 1, 0x9b546bbcf7bf7df3ull, 0x0872846939c37c3dull},
    {SM_TYPE_Q3_K, 5, 0, 0x074294ba7851e2efull, 0x3b864e9ee7882834ull},
    {SM_TYPE_Q3_K, 5, 1, 0xf01fa30d7c03a96bull, 0x0948171544faf151ull},
    {SM_TYPE_Q4_K, 5, 0, 0x6d07c845c11aeee0ull, 0x236e3511ddab9715ull},
    {SM_TYPE_Q4_K, 5, 1, 0xd0c95e1028a3deb3ull, 0x78d6095f231a719aull},
    {SM_TYPE_Q5_K, 5, 0, 0xde4f4feea5ee0947ull, 0x165556bfc7ac070dull},
    {SM_TYPE_Q5_K, 5, 1, 0x7bf05d7734916830ull, 0x1b729968d17b264eull},
    {SM_TYPE_Q6_K, 5, 0, 0xa299910795b3c8c2ull, 0x55d90c66ebdb44f6ull},
    {SM_TYPE_Q6_K, 5, 1, 0x1f5a947faf90804cull, 0x1fe356c5214c8e89ull},
    {SM_TYPE_IQ4_XS, 5, 0, 0x7346e81505a0a352ull, 0xbf7673398c083ba2ull},
    {SM_TYPE_IQ4_XS, 5, 1, 0x06f1a9448e1882f7ull, 0xe121deeb092e591dull},
    {SM_TYPE_Q8_K, 5, 0, 0xdc39be86e0ecd1c7ull, 0xa69a04b519fc0900ull},
    {SM_TYPE_Q8_1, 5, 0, 0x6d58a1bb3a4401d1ull, 0},
    {SM_TYPE_Q4_0, 6, 0, 0x5d6c740ea10dc84aull, 0xe9b2e1dc04daa7b4ull},
    {SM_TYPE_Q4_0, 6, 1, 0xd9f2c608d3b83f1cull, 0x5f0c55b105d9bbf9ull},
    {SM_TYPE_Q4_1, 6, 0, 0xdfe6d94204aebbcaull, 0xbdac119be94c2127ull},
    {SM_TYPE_Q4_1, 6, 1, 0x30799b0c1f93c1f4ull, 0x6bfa2e01f17f8b44ull},
    {SM_TYPE_Q5_0, 6, 0, 0xf2ecd720efc93464ull, 0x9519cee4e6561eccull},
    {SM_TYPE_Q5_0, 6, 1, 0xcbd8fb3cc3d5768cull, 0xcbe0df98e5626bf0ull},
    {SM_TYPE_Q5_1, 6, 0, 0x13af1d6b979758aeull, 0x8478cdcee8cc4dbfull},
    {SM_TYPE_Q5_1, 6, 1, 0x44803b8ea4b24080ull, 0x84da04df80c1deecull},
    {SM_TYPE_Q8_0, 6, 0, 0x62d25286705f5dd8ull, 0xba717881283cb00full},
    {SM_TYPE_Q8_0, 6, 1, 0x62d25286705f5dd8ull, 0xba717881283cb00full},
    {SM_TYPE_IQ4_NL, 6, 0, 0x4eaf376be5638f8eull, 0x24bdeef7545fa02eull},
    {SM_TYPE_IQ4_NL, 6, 1, 0x778926aca713fcfaull, 0xd03a4a8c35e741f8ull},
    {SM_TYPE_Q2_K, 6, 0, 0xe62b3fa22be1e5d2ull, 0x71d6296aad68a3a3ull},
    {SM_TYPE_Q2_K, 6, 1, 0xc96b0d2496f014cdull, 0xd9aeea8266200817ull},
    {SM_TYPE_Q3_K, 6, 0, 0xf55bc39213e6310dull, 0xfe079ff7480870a7ull},
    {SM_TYPE_Q3_K, 6, 1, 0xce4a4e959bddf8f7ull, 0xb7d8f58bdac18045ull},
    {SM_TYPE_Q4_K, 6, 0, 0x36a64981584efbfeull, 0x0db3a55c0ff985dbull},
    {SM_TYPE_Q4_K, 6, 1, 0xa97977598f3affecull, 0x60a49d1bbc149e0bull},
    {SM_TYPE_Q5_K, 6, 0, 0x728600e9da5f4e30ull, 0xe41b86ad2215240eull},
    {SM_TYPE_Q5_K, 6, 1, 0x71d08d5d462281b0ull, 0x863806965cad49b9ull},
    {SM_TYPE_Q6_K, 6, 0, 0x823df3c07e5bfeabull, 0x952d49c13063d6d2ull},
    {SM_TYPE_Q6_K, 6, 1, 0xd7fecd083089c145ull, 0x73ee566c108d1ba0ull},
    {SM_TYPE_IQ4_XS, 6, 0, 0xa5b32fdc857d2688ull, 0xf2f4519e8c03edceull},
    {SM_TYPE_IQ4_XS, 6, 1, 0x2086c03a880751e4ull, 0xc26612f7cfac358bull},
    {SM_TYPE_Q8_K, 6, 0, 0xc50e52aa43785089ull, 0x226d8b3ada69510aull},
    {SM_TYPE_Q8_1, 6, 0, 0x33c18125a504a249ull, 0},
    {SM_TYPE_Q4_0, 7, 0, 0x01a384a31e5a4885ull, 0x8ae49376a2a02e3eull},
    {SM_TYPE_Q4_0, 7, 1, 0x3dbe3b18d9fe23fbull, 0xa05c387180382e9full},
    {SM_TYPE_Q4_1, 7, 0, 0xa638582422990f82ull, 0x9220bedc09fc6fa2ull},
    {SM_TYPE_Q4_1, 7, 1, 0x03fbc8def6159d69ull, 0xf28387eab4195804ull},
    {SM_TYPE_Q5_0, 7, 0, 0xb5d45585ac3f83e1ull, 0xf6fd0a7ae21c4658ull},
    {SM_TYPE_Q5_0, 7, 1, 0xad9851c406883219ull, 0x8f3115fe0591cfeeull},
    {SM_TYPE_Q5_1, 7, 0, 0x8b93a11b52da8259ull, 0x09349eee6a984970ull},
    {SM_TYPE_Q5_1, 7, 1, 0x4c69bab29423618dull, 0x2f9c3007eb28d132ull},
    {SM_TYPE_Q8_0, 7, 0, 0xd41beaecc852bdeaull, 0x6109a6b73bdd8cd7ull},
    {SM_TYPE_Q8_0, 7, 1, 0xd41beaecc852bdeaull, 0x6109a6b73bdd8cd7ull},
    {SM_TYPE_IQ4_NL, 7, 0, 0xbe87acaab6b7c842ull, 0xfbde112352e9833aull},
    {SM_TYPE_IQ4_NL, 7, 1, 0x797da8f0c35847e4ull, 0x92176d4c18adc90full},
    {SM_TYPE_Q2_K, 7, 0, 0x49e80c7112ac863full, 0x8f07c712d3421a43ull},
    {SM_TYPE_Q2_K, 7, 1, 0x51cafc38ab350222ull, 0x8317f0c8a46200e1ull},
    {SM_TYPE_Q3_K, 7, 0, 0x1743ab7f137e8762ull, 0x8543d8921e178605ull},
    {SM_TYPE_Q3_K, 7, 1, 0xad2bd79622066850ull, 0x6db195cd2b5bef7eull},
    {SM_TYPE_Q4_K, 7, 0, 0x22ca0ee95d5ac6f9ull, 0x20f6f3cd08461566ull},
    {SM_TYPE_Q4_K, 7, 1, 0x8c0ae637fcb3bcd7ull, 0xf9fbb02a03374099ull},
    {SM_TYPE_Q5_K, 7, 0, 0xd9e978aa3b0ba764ull, 0xc2dcbbd3839bf9aeull},
    {SM_TYPE_Q5_K, 7, 1, 0x87336e19b41e964full, 0x2bc2e32cc643acf1ull},
    {SM_TYPE_Q6_K, 7, 0, 0xb41951538fc288c6ull, 0x6af646068d4f5275ull},
    {SM_TYPE_Q6_K, 7, 1, 0x003a8b8b3f326aacull, 0x07de7b33ebdc3696ull},
    {SM_TYPE_IQ4_XS, 7, 0, 0x10dbf83363bbf28eull, 0x81dddbb30e0d9c55ull},
    {SM_TYPE_IQ4_XS, 7, 1, 0x75ecd8e13eeb250full, 0x12a63ae1d1afabe4ull},
    {SM_TYPE_Q8_K, 7, 0, 0x928f806d0e927a50ull, 0xba53ecd785c847eaull},
    {SM_TYPE_Q8_1, 7, 0, 0x3b0fbaaac638e700ull, 0},
    {SM_TYPE_Q4_0, 8, 0, 0xfef760c46c4f61c2ull, 0xb264ce05618868a5ull},
    {SM_TYPE_Q4_0, 8, 1, 0xfef760c46c4f61c2ull, 0xb264ce05618868a5ull},
    {SM_TYPE_Q4_1, 8, 0, 0xe583b8b5e56114e0ull, 0xb9d103fd6854a325ull},
    {SM_TYPE_Q4_1, 8, 1, 0xc7733bf7bee9ed70ull, 0xb9d103fd6854a325ull},
    {SM_TYPE_Q5_0, 8, 0, 0x2d39985c2760a3eeull, 0xa887226dc3058d25ull},
    {SM_TYPE_Q5_0, 8, 1, 0x2d39985c2760a3eeull, 0xa887226dc3058d25ull},
    {SM_TYPE_Q5_1, 8, 0, 0x27bbbddb5cffe0dcull, 0xb9d103fd6854a325ull},
    {SM_TYPE_Q5_1, 8, 1, 0xc0304838f11b885eull, 0xb9d103fd6854a325ull},
    {SM_TYPE_Q8_0, 8, 0, 0x3047574bd38540feull, 0xb50f50ef444a83a5ull},
    {SM_TYPE_Q8_0, 8, 1, 0x3047574bd38540feull, 0xb50f50ef444a83a5ull},
    {SM_TYPE_IQ4_NL, 8, 0, 0x3ef58448fec57fd2ull, 0xdbb3bc061ecd71a5ull},
    {SM_TYPE_IQ4_NL, 8, 1, 0x70ff90fbe640b21full, 0x32dac0ba93274125ull},
    {SM_TYPE_Q2_K, 8, 0, 0x99579f03e101ffceull, 0xb9d103fd6854a325ull},
    {SM_TYPE_Q2_K, 8, 1, 0x6288aa2f9bd43176ull, 0xb9d103fd6854a325ull},
    {SM_TYPE_Q3_K, 8, 0, 0x2a332f1e2be3b09dull, 0x517cf41fa7b7eda5ull},
    {SM_TYPE_Q3_K, 8, 1, 0x8cf6f58f2d478badull, 0x517cf41fa7b7eda5ull},
    {SM_TYPE_Q4_K, 8, 0, 0x8a0135580ee292f1ull, 0xb9d103fd6854a325ull},
    {SM_TYPE_Q4_K, 8, 1, 0x0631b7529c697102ull, 0xb9d103fd6854a325ull},
    {SM_TYPE_Q5_K, 8, 0, 0xbd8ce3016d248f7dull, 0xb9d103fd6854a325ull},
    {SM_TYPE_Q5_K, 8, 1, 0x8cdaac177268f67aull, 0xb9d103fd6854a325ull},
    {SM_TYPE_Q6_K, 8, 0, 0x26dfcaf1ebf42665ull, 0xa7fe97a26854a325ull},
    {SM_TYPE_Q6_K, 8, 1, 0x26dfcaf1ebf42665ull, 0xa7fe97a26854a325ull},
    {SM_TYPE_IQ4_XS, 8, 0, 0xe9cc498e85900016ull, 0xdbb3bc061ecd71a5ull},
    {SM_TYPE_IQ4_XS, 8, 1, 0x54875787c4b1413dull, 0xdbb3bc061ecd71a5ull},
    {SM_TYPE_Q8_K, 8, 0, 0xab4e0f6a45283f3dull, 0xd2e8b82713d71c94ull},
    {SM_TYPE_Q8_1, 8, 0, 0x785c716e244c781eull, 0},
};

#define G_ROWS 4
#define G_COLS 512

static void check_golden(int simd)
{
    sm_quants_set_simd(simd);
    float *x = malloc(G_ROWS * G_COLS * sizeof(float));
    float *w = malloc(G_COLS * sizeof(float));
    float *y = malloc(G_ROWS * G_COLS * sizeof(float));
    uint8_t *q = malloc(G_ROWS * G_COLS * 4);
    cr_assert(x && w && y && q);
    uint32_t n_ok = 0, n_all = 0, per_type_ok[TC_NTYPES] = {0}, per_type_all[TC_NTYPES] = {0};
    char first_bad[256] = "";
    for (size_t i = 0; i < sizeof goldens / sizeof goldens[0]; i++) {
        const golden *g = &goldens[i];
        tc_gen_fill(g->dist, 100 + (uint64_t)g->dist, x, G_ROWS, G_COLS);
        tc_gen_imatrix(200 + (uint64_t)g->dist, w, G_COLS);
        memset(q, 0, G_ROWS * G_COLS * 4);
        size_t n;
        if (g->type == SM_TYPE_Q8_K) {
            sm_quantize_row_q8_K_ref(x, (sm_block_q8_K *)q, G_ROWS * G_COLS);
            n = G_ROWS * G_COLS / SM_QK_K * sizeof(sm_block_q8_K);
        } else if (g->type == SM_TYPE_Q8_1) {
            sm_quantize_row_q8_1_ref(x, (sm_block_q8_1 *)q, G_ROWS * G_COLS);
            n = G_ROWS * G_COLS / 32 * sizeof(sm_block_q8_1);
        } else {
            n = sm_quantize_rows(g->type, x, q, G_ROWS, G_COLS, g->imat ? w : NULL);
        }
        int ok = tc_fnv1a(q, n) == g->hq;
        if (ok && g->hd) {
            cr_assert_eq(sm_dequantize_row(g->type, q, y, G_ROWS * G_COLS), 0);
            ok = tc_fnv1a(y, G_ROWS * G_COLS * sizeof(float)) == g->hd;
        }
        n_all++;
        per_type_all[g->type]++;
        if (ok) {
            n_ok++;
            per_type_ok[g->type]++;
        } else if (!first_bad[0]) {
            snprintf(first_bad, sizeof first_bad, "%s dist %d imat %d", sm_type_name(g->type), g->dist, g->imat);
        }
    }
    char line[1024];
    int off = snprintf(line, sizeof line, "golden:");
    for (uint32_t t = 0; t < TC_NTYPES; t++)
        if (per_type_all[t])
            off += snprintf(line + off, sizeof line - (size_t)off, " %s %u/%u", sm_type_name(t), per_type_ok[t],
                            per_type_all[t]);
    fprintf(stderr, "[codecs] %s (simd %d)\n", line, simd && sm_quants_simd_active());
    sm_quants_set_simd(1);
    free(x);
    free(w);
    free(y);
    free(q);
    cr_assert_eq(n_ok, n_all, "%u of %u golden cases differ; first: %s", n_all - n_ok, n_all, first_bad);
    cr_assert_eq(n_all, 234);
}

Test(quants_golden, llama_cpp_hashes_scalar) { check_golden(0); }
Test(quants_golden, llama_cpp_hashes_simd) { check_golden(1); }

/* ggml's CPU backend activation quantizers quantize_row_q8_0/q8_1 from
 * ggml-cpu-quants.c at c392e5094, built with -O3 -march=haswell (its AVX2
 * path, the one llama.cpp runs on AVX2/AVX-512 machines), same inputs. */
typedef struct golden_act {
    uint32_t type;
    int dist;
    uint64_t hq;
} golden_act;

static const golden_act goldens_act[] = {
    {SM_TYPE_Q8_0, 0, 0x48344d3d885fcc5dull},
    {SM_TYPE_Q8_1, 0, 0xffe17930ddc70eb8ull},
    {SM_TYPE_Q8_0, 1, 0x7191e036e417107full},
    {SM_TYPE_Q8_1, 1, 0x06a5f3da8627ab09ull},
    {SM_TYPE_Q8_0, 2, 0x96601e54ca1814a5ull},
    {SM_TYPE_Q8_1, 2, 0xaaceafd5aca85c25ull},
    {SM_TYPE_Q8_0, 3, 0x92c509c370c98d25ull},
    {SM_TYPE_Q8_1, 3, 0xd3f7ec18a0f85725ull},
    {SM_TYPE_Q8_0, 4, 0x9ff937732a53c44aull},
    {SM_TYPE_Q8_1, 4, 0xe684bdfbb20d5ae2ull},
    {SM_TYPE_Q8_0, 5, 0x624b65586d928fc3ull},
    {SM_TYPE_Q8_1, 5, 0x6d58a1bb3a4401d1ull},
    {SM_TYPE_Q8_0, 6, 0x62d25286705f5dd8ull},
    {SM_TYPE_Q8_1, 6, 0x33c18125a504a249ull},
    {SM_TYPE_Q8_0, 7, 0xd41beaecc852bdeaull},
    {SM_TYPE_Q8_1, 7, 0x3b0fbaaac638e700ull},
    {SM_TYPE_Q8_0, 8, 0x3047574bd38540feull},
    {SM_TYPE_Q8_1, 8, 0x785c716e244c781eull},
};

static void check_act(int simd)
{
    sm_quants_set_simd(simd);
    float *x = malloc(G_ROWS * G_COLS * sizeof(float));
    uint8_t *q = malloc(G_ROWS * G_COLS * 4);
    cr_assert(x && q);
    uint32_t ok = 0, all = 0;
    for (size_t i = 0; i < sizeof goldens_act / sizeof goldens_act[0]; i++) {
        const golden_act *g = &goldens_act[i];
        tc_gen_fill(g->dist, 100 + (uint64_t)g->dist, x, G_ROWS, G_COLS);
        size_t n;
        if (g->type == SM_TYPE_Q8_0) {
            sm_quantize_row_q8_0_act(x, (sm_block_q8_0 *)q, G_ROWS * G_COLS);
            n = G_ROWS * G_COLS / 32 * sizeof(sm_block_q8_0);
        } else {
            sm_quantize_row_q8_1_act(x, (sm_block_q8_1 *)q, G_ROWS * G_COLS);
            n = G_ROWS * G_COLS / 32 * sizeof(sm_block_q8_1);
        }
        all++;
        if (tc_fnv1a(q, n) == g->hq)
            ok++;
        else
            cr_log_error("act %s dist %d differs (simd %d)", sm_type_name(g->type), g->dist, simd);
    }
    sm_quants_set_simd(1);
    fprintf(stderr, "[codecs] golden act (simd %d): %u/%u\n", simd && sm_quants_simd_active(), ok, all);
    free(x);
    free(q);
    cr_assert_eq(ok, all);
}

Test(quants_golden, cpu_activation_hashes_scalar) { check_act(0); }
Test(quants_golden, cpu_activation_hashes_simd) { check_act(1); }

/* ------------------------------------------------------------ scalar vs AVX2 */

/* Random floats with specials sprinkled in: NaN, +-inf, -0, subnormals,
 * whole tiny blocks (1/d overflows), huge values, ties of the rounding. */
static void fill_nasty(tc_rng *r, float *x, int64_t n, int specials)
{
    for (int64_t i = 0; i < n; i++) {
        uint64_t u = tc_rng_u64(r);
        double v = tc_rng_normal(r);
        switch (u % 23) {
        case 0: v *= 1e-38; break;
        case 1: v *= 1e30; break;
        case 2: v = 0.5 * (double)((int64_t)(u >> 8) % 64); break;
        default: break;
        }
        x[i] = (float)v;
        if (specials && u % 101 == 0) {
            static const float sp[] = {NAN, INFINITY, -INFINITY, -0.0f, 1e-45f, -3e-39f};
            x[i] = sp[(u >> 20) % 6];
        }
    }
    /* a block of subnormals and a block of zeros */
    if (n >= 96) {
        for (int j = 32; j < 64; j++)
            x[j] = (float)j * 1e-44f;
        for (int j = 64; j < 96; j++)
            x[j] = 0.0f;
    }
}

Test(quants_simd, quantizers_agree_with_scalar)
{
    /* on a host without AVX2 both sides run the portable code */
    fprintf(stderr, "[codecs] simd active: %d\n", sm_quants_simd_active());
    const int64_t n = 256 * 64;
    float *x = malloc((size_t)n * sizeof(float));
    uint8_t *a = malloc((size_t)n * 2), *b = malloc((size_t)n * 2);
    cr_assert(x && a && b);
    tc_rng r = {42};
    for (int round = 0; round < 40; round++) {
        fill_nasty(&r, x, n, round % 2);
        size_t nb8 = (size_t)(n / 32), nbk = (size_t)(n / 256);

        sm_quantize_row_q8_0_ref(x, (sm_block_q8_0 *)a, n);
        sm_quantize_row_q8_0(x, (sm_block_q8_0 *)b, n);
        cr_assert(memcmp(a, b, nb8 * sizeof(sm_block_q8_0)) == 0, "q8_0 round %d", round);

        sm_quantize_row_q8_0_act_scalar(x, (sm_block_q8_0 *)a, n);
        sm_quantize_row_q8_0_act(x, (sm_block_q8_0 *)b, n);
        cr_assert(memcmp(a, b, nb8 * sizeof(sm_block_q8_0)) == 0, "q8_0 act round %d", round);

        sm_quantize_row_q8_1_act_scalar(x, (sm_block_q8_1 *)a, n);
        sm_quantize_row_q8_1_act(x, (sm_block_q8_1 *)b, n);
        cr_assert(memcmp(a, b, nb8 * sizeof(sm_block_q8_1)) == 0, "q8_1 act round %d", round);

        sm_quantize_row_q8_K_ref(x, (sm_block_q8_K *)a, n);
        sm_quantize_row_q8_K(x, (sm_block_q8_K *)b, n);
        cr_assert(memcmp(a, b, nbk * sizeof(sm_block_q8_K)) == 0, "q8_K round %d", round);
    }
    free(x);
    free(a);
    free(b);
}

Test(quants_simd, dequantizers_agree_with_scalar)
{
    const int64_t n = 256 * 64;
    uint8_t *blocks = malloc((size_t)n * 2);
    float *a = malloc((size_t)n * sizeof(float)), *b = malloc((size_t)n * sizeof(float));
    cr_assert(blocks && a && b);
    tc_rng r = {7};
    for (int round = 0; round < 20; round++) {
        /* random bytes: every scale pattern including f16 inf/NaN */
        for (int64_t i = 0; i < n * 2; i++)
            blocks[i] = (uint8_t)tc_rng_u64(&r);
        sm_dequantize_row_q8_0_scalar((const sm_block_q8_0 *)blocks, a, n);
        sm_dequantize_row_q8_0((const sm_block_q8_0 *)blocks, b, n);
        cr_assert(memcmp(a, b, (size_t)n * sizeof(float)) == 0, "q8_0 round %d", round);
        sm_dequantize_row_q4_K_scalar((const sm_block_q4_K *)blocks, a, n);
        sm_dequantize_row_q4_K((const sm_block_q4_K *)blocks, b, n);
        cr_assert(memcmp(a, b, (size_t)n * sizeof(float)) == 0, "q4_K round %d", round);
        sm_dequantize_row_q6_K_scalar((const sm_block_q6_K *)blocks, a, n);
        sm_dequantize_row_q6_K((const sm_block_q6_K *)blocks, b, n);
        cr_assert(memcmp(a, b, (size_t)n * sizeof(float)) == 0, "q6_K round %d", round);
    }
    /* the generic entry point takes the same path */
    cr_assert_eq(sm_dequantize_row(SM_TYPE_Q6_K, blocks, a, n), 0);
    sm_dequantize_row_q6_K_scalar((const sm_block_q6_K *)blocks, b, n);
    cr_assert(memcmp(a, b, (size_t)n * sizeof(float)) == 0);
    free(blocks);
    free(a);
    free(b);
}

/* A GGUF declaring general.alignment 1 or 2 can put a tensor's blocks at an
 * odd address of the map (fuzz_quantize's finding): sm_dequantize_row must
 * decode them there with the bits it gives at an aligned address, for
 * every block type (UBSan in the ASan build flags a misaligned read). */
Test(quants_known, dequantize_at_any_address)
{
    static const uint32_t types[] = {SM_TYPE_Q4_0, SM_TYPE_Q4_1, SM_TYPE_Q5_0,  SM_TYPE_Q5_1,   SM_TYPE_Q8_0,
                                     SM_TYPE_Q8_1, SM_TYPE_Q2_K, SM_TYPE_Q3_K,  SM_TYPE_Q4_K,   SM_TYPE_Q5_K,
                                     SM_TYPE_Q6_K, SM_TYPE_Q8_K, SM_TYPE_IQ4_NL, SM_TYPE_IQ4_XS, SM_TYPE_F16};
    const int64_t n = 256 * 3;
    uint8_t *aligned = malloc(8192), *raw = malloc(8192 + 8);
    float *a = malloc((size_t)n * sizeof(float)), *b = malloc((size_t)n * sizeof(float));
    cr_assert(aligned && raw && a && b);
    tc_rng r = {11};
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        const sm_type_info *info = sm_type_get(types[ti]);
        const size_t bytes = (size_t)(n / info->blck) * info->size;
        cr_assert_leq(bytes, 8192);
        for (size_t i = 0; i < bytes; i++)
            aligned[i] = (uint8_t)tc_rng_u64(&r);
        /* scales as small finite fp16 values (0x1000-0x2fff): every value
         * decoded is finite and comparable */
        for (size_t blk = 0; blk < bytes / info->size; blk++)
            for (size_t k = 1; k < info->size; k += 2)
                if (types[ti] != SM_TYPE_Q8_K)
                    aligned[blk * info->size + k] &= 0x2f;
        cr_assert_eq(sm_dequantize_row(types[ti], aligned, a, n), 0, "%s", info->name);
        for (size_t off = 1; off < 8; off++) {
            memcpy(raw + off, aligned, bytes);
            memset(b, 0xff, (size_t)n * sizeof(float));
            cr_assert_eq(sm_dequantize_row(types[ti], raw + off, b, n), 0, "%s", info->name);
            cr_assert(memcmp(a, b, (size_t)n * sizeof(float)) == 0, "%s at offset %zu", info->name, off);
        }
    }
    free(aligned);
    free(raw);
    free(a);
    free(b);
}

/* ------------------------------------------------------------ round-trip error */

typedef struct rms_bound {
    uint32_t type;
    double bound; /* max relative RMS error rms(x - deq(q(x))) / rms(x) */
} rms_bound;

/* Bounds hold with margin on 64 x 1024 samples of the normal-like,
 * heavy-tailed, huge (1e4) and tie-grid inputs, with and without an
 * imatrix (measured worst cases: q2_K 0.36, q3_K 0.22, q4_0 0.15, q4_1
 * 0.12, iq4_nl 0.12, q4_K 0.12, q5_0 0.08, q5_1 0.06, q5_K 0.06, q6_K 0.04,
 * q8_0 0.011, bf16 0.0017, f16 0.0002). */
static const rms_bound rms_bounds[] = {
    {SM_TYPE_Q4_0, 0.20}, {SM_TYPE_Q4_1, 0.16}, {SM_TYPE_Q5_0, 0.10}, {SM_TYPE_Q5_1, 0.08},
    {SM_TYPE_Q8_0, 0.015}, {SM_TYPE_IQ4_NL, 0.16}, {SM_TYPE_Q2_K, 0.45}, {SM_TYPE_Q3_K, 0.28},
    {SM_TYPE_Q4_K, 0.16}, {SM_TYPE_Q5_K, 0.08}, {SM_TYPE_Q6_K, 0.06}, {SM_TYPE_IQ4_XS, 0.16},
    {SM_TYPE_F16, 0.001},
    {SM_TYPE_BF16, 0.005},
};

static double rel_rms(const float *x, const float *y, int64_t n)
{
    double e = 0, s = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)x[i] - (double)y[i];
        e += d * d;
        s += (double)x[i] * (double)x[i];
    }
    return s > 0 ? sqrt(e / s) : sqrt(e);
}

Test(quants_roundtrip, rms_error_bounds)
{
    const int64_t R = 64, C = 1024;
    float *x = malloc((size_t)(R * C) * sizeof(float)), *y = malloc((size_t)(R * C) * sizeof(float));
    float *w = malloc((size_t)C * sizeof(float));
    uint8_t *q = malloc((size_t)(R * C) * 4);
    cr_assert(x && y && w && q);
    static const int dists[] = {0, 1, 5, 7};
    for (size_t t = 0; t < sizeof rms_bounds / sizeof rms_bounds[0]; t++) {
        const rms_bound *b = &rms_bounds[t];
        double worst = 0;
        for (size_t di = 0; di < sizeof dists / sizeof dists[0]; di++) {
            for (int im = 0; im < 2; im++) {
                tc_gen_fill(dists[di], 5 + (uint64_t)dists[di], x, R, C);
                tc_gen_imatrix(9, w, C);
                size_t n = sm_quantize_rows(b->type, x, q, R, C, im ? w : NULL);
                uint64_t want = sm_type_row_size(b->type, C, NULL) * (uint64_t)R;
                cr_assert_eq(n, want, "%s: wrote %zu bytes, want %llu", sm_type_name(b->type), n,
                             (unsigned long long)want);
                cr_assert_eq(sm_dequantize_row(b->type, q, y, R * C), 0);
                double e = rel_rms(x, y, R * C);
                cr_assert(e < b->bound, "%s dist %d imat %d: relative RMS error %.4f >= bound %.4f",
                          sm_type_name(b->type), dists[di], im, e, b->bound);
                if (e > worst)
                    worst = e;
            }
        }
        fprintf(stderr, "[codecs] %-7s worst relative RMS error %.4f (bound %.3f)\n", sm_type_name(b->type), worst,
                b->bound);
    }
    free(x);
    free(y);
    free(w);
    free(q);
}

/* Degenerate inputs: zeros decode to exact zeros, a constant row decodes
 * to within f16 rounding of the constant, tiny and huge inputs stay finite
 * (tiny ones may flush to zero: their scales are below f16's range). */
Test(quants_roundtrip, degenerate_inputs)
{
    const int64_t R = 4, C = 512;
    float x[4 * 512], y[4 * 512];
    uint8_t q[4 * 512 * 4];
    for (size_t t = 0; t < sizeof rms_bounds / sizeof rms_bounds[0]; t++) {
        uint32_t type = rms_bounds[t].type;
        for (int im = 0; im < 2; im++) {
            float w[512];
            tc_gen_imatrix(3, w, C);
            tc_gen_fill(3, 1, x, R, C); /* zeros */
            sm_quantize_rows(type, x, q, R, C, im ? w : NULL);
            cr_assert_eq(sm_dequantize_row(type, q, y, R * C), 0);
            for (int64_t i = 0; i < R * C; i++)
                cr_assert(y[i] == 0.0f, "%s imat %d: zero input decodes to %g at %lld", sm_type_name(type), im,
                          (double)y[i], (long long)i);

            tc_gen_fill(2, 1, x, R, C); /* constants +-k/32 */
            sm_quantize_rows(type, x, q, R, C, im ? w : NULL);
            sm_dequantize_row(type, q, y, R * C);
            double e = rel_rms(x, y, R * C);
            /* IQ4_XS: 6-bit group scales against non-linear levels cannot
             * hit a constant exactly (llama.cpp gives the same bytes) */
            double tol = type == SM_TYPE_IQ4_XS ? 0.02 : 2e-3;
            cr_assert(e < tol, "%s imat %d: constant rows relative RMS error %.5f", sm_type_name(type), im, e);

            tc_gen_fill(4, 1, x, R, C); /* 1e-30 */
            sm_quantize_rows(type, x, q, R, C, im ? w : NULL);
            sm_dequantize_row(type, q, y, R * C);
            /* llama.cpp quirk, reproduced (the golden hashes cover it): with
             * weights, make_qp's 1/max overflows for such tiny sub-block
             * scales and ends in 0/0, so Q2_K/Q4_K/Q5_K store NaN scales */
            int nan_quirk = im && (type == SM_TYPE_Q2_K || type == SM_TYPE_Q4_K || type == SM_TYPE_Q5_K);
            for (int64_t i = 0; i < R * C; i++) {
                if (nan_quirk)
                    cr_assert(isnan(y[i]), "%s imat: expected llama.cpp's NaN scale", sm_type_name(type));
                else
                    cr_assert(isfinite(y[i]) && fabsf(y[i]) <= 1e-29f, "%s imat %d: tiny input decodes to %g",
                              sm_type_name(type), im, (double)y[i]);
            }
        }
    }
}

/* ------------------------------------------------------------ known values */

Test(quants_known, q8_0_reference_vs_activation_rounding)
{
    /* amax 127 -> d = 1 exactly; 2.5 is a tie: the reference (roundf) goes
     * away from zero, ggml's AVX2 activation path (vroundps) to even */
    float x[32] = {2.5f, 127.0f, -3.5f, 0.49999997f, -127.0f};
    sm_block_q8_0 ref, act;
    sm_quantize_row_q8_0_ref(x, &ref, 32);
    sm_quantize_row_q8_0_act(x, &act, 32);
    cr_assert_eq(ref.d, 0x3c00);
    cr_assert_eq(act.d, 0x3c00);
    cr_assert_eq(ref.qs[0], 3);
    cr_assert_eq(act.qs[0], 2);
    cr_assert_eq(ref.qs[1], 127);
    cr_assert_eq(ref.qs[2], -4);
    cr_assert_eq(act.qs[2], -4);
    cr_assert_eq(ref.qs[3], 0);
    cr_assert_eq(ref.qs[4], -127);
    cr_assert_eq(ref.qs[5], 0);
}

Test(quants_known, q4_0_blocks)
{
    float x[64];
    for (int j = 0; j < 32; j++)
        x[j] = (float)(j - 16); /* max |x| = 16 at x = -16 -> d = 2 */
    for (int j = 32; j < 64; j++)
        x[j] = 0.0f;
    sm_block_q4_0 b[2];
    sm_quantize_row_q4_0_ref(x, b, 64);
    cr_assert_eq(b[0].d, 0x4000); /* 2.0 */
    cr_assert_eq(b[0].qs[0], 0x80); /* -16 -> 0; 0 -> 8 */
    cr_assert_eq(b[0].qs[15], 0xF8); /* -1 -> 8 (8.0 truncates); 15 -> 16 clamped to 15 */
    cr_assert_eq(b[1].d, 0x8000); /* d = 0 / -8 = -0.0, kept as llama.cpp keeps it */
    for (int j = 0; j < 16; j++)
        cr_assert_eq(b[1].qs[j], 0x88, "zero block byte %d", j);
    float y[64];
    sm_dequantize_row_q4_0(b, y, 64);
    cr_assert_eq(y[0], -16.0f);
    cr_assert_eq(y[16], 0.0f);
    cr_assert_eq(y[31], 14.0f);
    cr_assert_eq(y[40], 0.0f);
}

Test(quants_known, dequantize_hand_made_blocks)
{
    float y[256];

    sm_block_q8_0 q8 = {.d = 0x3800}; /* 0.5 */
    for (int j = 0; j < 32; j++)
        q8.qs[j] = (int8_t)(j - 16);
    cr_assert_eq(sm_dequantize_row(SM_TYPE_Q8_0, &q8, y, 32), 0);
    cr_assert_eq(y[0], -8.0f);
    cr_assert_eq(y[31], 7.5f);

    sm_block_iq4_nl nl = {.d = 0x3c00};
    for (int j = 0; j < 16; j++)
        nl.qs[j] = (uint8_t)(j | ((15 - j) << 4));
    sm_dequantize_row_iq4_nl(&nl, y, 32);
    cr_assert_eq(y[0], -127.0f);
    cr_assert_eq(y[15], 113.0f);
    cr_assert_eq(y[16], 113.0f);
    cr_assert_eq(y[31], -127.0f);

    sm_block_q5_0 q5 = {.d = 0x3c00, .qh = {0x01, 0, 0, 0x80}};
    memset(q5.qs, 0xFF, sizeof q5.qs);
    sm_dequantize_row_q5_0(&q5, y, 32);
    cr_assert_eq(y[0], 15.0f);  /* 31 - 16 */
    cr_assert_eq(y[1], -1.0f);  /* 15 - 16 */
    cr_assert_eq(y[31], 15.0f); /* bit 31 set */

    /* Q4_K: sub-block 0 scale 1 / min 2, sub-block 5 scale 0x23 / min 0x31
     * through the packed upper bits; d 1.0, dmin 0.5 */
    sm_block_q4_K k4;
    memset(&k4, 0, sizeof k4);
    k4.d = 0x3c00;
    k4.dmin = 0x3800;
    k4.scales[0] = 1;
    k4.scales[4] = 2;
    k4.scales[9] = 0x13;              /* j = 5: low nibbles scale 3, min 1 */
    k4.scales[1] |= 2 << 6;           /* scale high bits: 2 -> 0x23 */
    k4.scales[5] |= 3 << 6;           /* min high bits: 3 -> 0x31 */
    memset(k4.qs, 0x5A, sizeof k4.qs); /* low nibble 10, high nibble 5 */
    sm_dequantize_row(SM_TYPE_Q4_K, &k4, y, 256);
    cr_assert_eq(y[0], 1.0f * 10 - 0.5f * 2);
    cr_assert_eq(y[5 * 32], 35.0f * 5 - 0.5f * 49);

    /* Q6_K: all quants 0 -> level -32; scale[0] 2, scale[15] -1, d 0.25 */
    sm_block_q6_K k6;
    memset(&k6, 0, sizeof k6);
    k6.d = 0x3400;
    k6.scales[0] = 2;
    k6.scales[15] = -1;
    sm_dequantize_row(SM_TYPE_Q6_K, &k6, y, 256);
    cr_assert_eq(y[0], -16.0f);
    cr_assert_eq(y[255], 8.0f);
    cr_assert_eq(y[16], 0.0f);

    /* Q8_K: f32 scale */
    sm_block_q8_K k8;
    memset(&k8, 0, sizeof k8);
    k8.d = 0.25f;
    k8.qs[3] = -100;
    sm_dequantize_row(SM_TYPE_Q8_K, &k8, y, 256);
    cr_assert_eq(y[3], -25.0f);
}

Test(quants_known, q8_K_sums_and_scale)
{
    float x[256];
    for (int j = 0; j < 256; j++)
        x[j] = (float)(j % 16) - 4.0f; /* max |x| = 11 at x = 11 */
    sm_block_q8_K b;
    sm_quantize_row_q8_K(x, &b, 256);
    cr_assert_eq(b.d, 1 / (-127.f / 11.0f));
    cr_assert_eq(b.qs[15], -127);
    int sum = 0;
    for (int j = 0; j < 16; j++)
        sum += b.qs[j];
    cr_assert_eq(b.bsums[0], sum);
    cr_assert_eq(b.bsums[15], sum);
}

Test(quants_known, float_types_and_imatrix_semantics)
{
    float x[64], w[64];
    tc_gen_fill(1, 11, x, 1, 64);
    tc_gen_imatrix(12, w, 64);
    uint16_t h[64];
    cr_assert_eq(sm_quantize_rows(SM_TYPE_F16, x, h, 1, 64, NULL), 128);
    for (int i = 0; i < 64; i++)
        cr_assert_eq(h[i], sm_f32_to_f16(x[i]));
    cr_assert_eq(sm_quantize_rows(SM_TYPE_BF16, x, h, 1, 64, w), 128);
    for (int i = 0; i < 64; i++)
        cr_assert_eq(h[i], sm_f32_to_bf16(x[i]));
    float f[64];
    cr_assert_eq(sm_quantize_rows(SM_TYPE_F32, x, f, 1, 64, NULL), 256);
    cr_assert(memcmp(f, x, sizeof x) == 0);

    /* Q8_0 ignores the imatrix; the weighted types do not */
    uint8_t a[256], b[256];
    sm_quantize_rows(SM_TYPE_Q8_0, x, a, 2, 32, NULL);
    sm_quantize_rows(SM_TYPE_Q8_0, x, b, 2, 32, w);
    cr_assert(memcmp(a, b, 68) == 0);
    sm_quantize_rows(SM_TYPE_Q4_0, x, a, 1, 64, NULL);
    sm_quantize_rows(SM_TYPE_Q4_0, x, b, 1, 64, w);
    cr_assert(memcmp(a, b, 36) != 0);
    cr_assert(!sm_quantize_uses_imatrix(SM_TYPE_Q8_0));
    cr_assert(sm_quantize_uses_imatrix(SM_TYPE_Q4_K));
    cr_assert(sm_quantize_uses_imatrix(SM_TYPE_IQ4_NL));
    cr_assert(!sm_quantize_uses_imatrix(SM_TYPE_F16));

    /* mirrors ggml_quantize_requires_imatrix */
    cr_assert(sm_quantize_requires_imatrix(SM_TYPE_IQ2_XXS));
    cr_assert(sm_quantize_requires_imatrix(SM_TYPE_IQ2_XS));
    cr_assert(sm_quantize_requires_imatrix(SM_TYPE_IQ1_S));
    cr_assert(!sm_quantize_requires_imatrix(SM_TYPE_IQ1_M));
    cr_assert(!sm_quantize_requires_imatrix(SM_TYPE_Q2_K));
}

Test(quants_known, rows_are_independent)
{
    /* quantizing a matrix in one call or row range by row range (how the
     * quantize tool splits work over threads) gives the same bytes */
    const int64_t R = 6, C = 512;
    float x[6 * 512], w[512];
    uint8_t all[6 * 512 * 2], parts[6 * 512 * 2];
    tc_gen_fill(0, 21, x, R, C);
    tc_gen_imatrix(22, w, C);
    static const uint32_t types[] = {SM_TYPE_Q4_K, SM_TYPE_Q3_K, SM_TYPE_Q5_0, SM_TYPE_IQ4_NL, SM_TYPE_Q8_0};
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        for (int im = 0; im < 2; im++) {
            size_t rs = (size_t)sm_type_row_size(types[t], C, NULL);
            size_t n = sm_quantize_rows(types[t], x, all, R, C, im ? w : NULL);
            cr_assert_eq(n, rs * (size_t)R);
            size_t m = sm_quantize_rows(types[t], x, parts, 2, C, im ? w : NULL);
            m += sm_quantize_rows(types[t], x + 2 * C, parts + m, 4, C, im ? w : NULL);
            cr_assert_eq(m, n);
            cr_assert(memcmp(all, parts, n) == 0, "%s imat %d", sm_type_name(types[t]), im);
        }
    }
}

/* ------------------------------------------------------------ argument errors */

typedef struct bad_call {
    uint32_t type;
    int64_t nrows, n_per_row;
    int code;
    const char *msg; /* substring of the error message */
} bad_call;

static const bad_call bad_calls[] = {
    {SM_TYPE_IQ2_XXS, 1, 256, SM_ETYPE, "iq2_xxs (16) is not supported"},
    {99, 1, 256, SM_ETYPE, "? (99) is not supported"},
    {SM_TYPE_Q8_K, 1, 256, SM_ETYPE, "q8_K (15) is not supported"},
    {SM_TYPE_Q8_1, 1, 32, SM_ETYPE, "q8_1 (9)"},
    {SM_TYPE_I32, 1, 32, SM_ETYPE, "i32"},
    {SM_TYPE_Q4_K, 1, 100, SM_EINVAL, "row length 100 is not a multiple of the block size 256"},
    {SM_TYPE_Q4_0, 1, 172, SM_EINVAL, "row length 172 is not a multiple of the block size 32"},
    {SM_TYPE_IQ4_NL, 2, 48, SM_EINVAL, "iq4_nl: row length 48"},
    {SM_TYPE_Q6_K, 1, 0, SM_EINVAL, "bad shape 1 rows x 0 columns"},
    {SM_TYPE_Q8_0, -1, 32, SM_EINVAL, "bad shape -1 rows"},
    {SM_TYPE_F16, 1, -2, SM_EINVAL, "bad shape"},
    {SM_TYPE_Q8_0, INT64_MAX / 2, 1 << 20, SM_ERANGE, "overflow size_t"},
};

Test(quants_errors, quantize_argument_table)
{
    float x[256] = {1.0f};
    uint8_t dst[1024];
    for (size_t i = 0; i < sizeof bad_calls / sizeof bad_calls[0]; i++) {
        const bad_call *c = &bad_calls[i];
        sm_err err = {0};
        int rc = sm_quantize_check(c->type, c->nrows, c->n_per_row, &err);
        cr_assert_eq(rc, c->code, "case %zu: code %d, want %d (%s)", i, rc, c->code, err.msg);
        cr_assert_eq(err.code, c->code, "case %zu", i);
        cr_assert(strstr(err.msg, c->msg) != NULL, "case %zu: message '%s' lacks '%s'", i, err.msg, c->msg);
        cr_assert(strchr(err.msg, '\n') == NULL, "case %zu: one line", i);
        /* sm_quantize_rows refuses the same calls without writing */
        memset(dst, 0xAB, sizeof dst);
        if (c->nrows >= 0 && c->nrows <= 2 && c->n_per_row >= 0 && c->n_per_row <= 256) {
            cr_assert_eq(sm_quantize_rows(c->type, x, dst, c->nrows, c->n_per_row, NULL), 0, "case %zu", i);
            for (size_t j = 0; j < sizeof dst; j++)
                cr_assert_eq(dst[j], 0xAB, "case %zu wrote byte %zu", i, j);
        }
    }
    /* and accepts good ones, NULL err allowed */
    cr_assert_eq(sm_quantize_check(SM_TYPE_Q4_K, 3, 512, NULL), 0);
    cr_assert_eq(sm_quantize_check(SM_TYPE_Q8_0, 0, 32, NULL), 0);
    cr_assert_eq(sm_quantize_rows(SM_TYPE_Q8_0, x, dst, 0, 32, NULL), 0); /* zero rows: zero bytes */
}

Test(quants_errors, dequantize_argument_table)
{
    uint8_t src[512] = {0};
    float y[512];
    cr_assert_eq(sm_dequantize_row(SM_TYPE_IQ2_XS, src, y, 256), SM_ETYPE);
    cr_assert_eq(sm_dequantize_row(SM_TYPE_I8, src, y, 256), SM_ETYPE);
    cr_assert_eq(sm_dequantize_row(1000, src, y, 256), SM_ETYPE);
    cr_assert_eq(sm_dequantize_row(SM_TYPE_Q4_K, src, y, 100), SM_EINVAL);
    cr_assert_eq(sm_dequantize_row(SM_TYPE_Q8_0, src, y, -32), SM_EINVAL);
    cr_assert_eq(sm_dequantize_row(SM_TYPE_Q4_0, src, y, 33), SM_EINVAL);
    cr_assert_eq(sm_dequantize_row(SM_TYPE_Q4_0, src, y, 0), SM_OK);
    cr_assert(sm_dequantize_supported(SM_TYPE_Q8_K));
    cr_assert(sm_dequantize_supported(SM_TYPE_Q8_1));
    cr_assert(!sm_quantize_supported(SM_TYPE_Q8_K));
    cr_assert(!sm_dequantize_supported(SM_TYPE_IQ3_S));
    cr_assert(sm_dequantize_supported(SM_TYPE_IQ4_XS));
    /* F16 path decodes every bit pattern like sm_f16_to_f32 */
    uint16_t hs[256];
    for (int i = 0; i < 256; i++)
        hs[i] = (uint16_t)(i * 257);
    cr_assert_eq(sm_dequantize_row(SM_TYPE_F16, hs, y, 256), 0);
    for (int i = 0; i < 256; i++) {
        float want = sm_f16_to_f32(hs[i]);
        cr_assert(memcmp(&y[i], &want, 4) == 0, "f16 %04x", hs[i]);
    }
}
