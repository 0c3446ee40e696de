/* libFuzzer target: smelt-quantize's load path on an untrusted GGUF — the
 * mixture rules over its names, shapes and hyper-parameters, then (odd-sized
 * inputs) the actual widening, quantization and writing of every tensor into
 * a scratch directory. The file type comes from the input length, so rules
 * for K-quants, legacy quants and float outputs all run. */
#include "fuzz_util.h"
#include "quantize/quantize.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint32_t ftypes[] = {SM_FTYPE_Q4_K_M, SM_FTYPE_Q8_0, SM_FTYPE_Q3_K_S, SM_FTYPE_Q6_K, SM_FTYPE_Q4_0,
                                      SM_FTYPE_Q5_K_S, SM_FTYPE_IQ4_NL, SM_FTYPE_F16};
    static char in[4200], out[4200];
    if (!in[0]) {
        snprintf(in, sizeof in, "%s/in.gguf", fuzz_scratch());
        snprintf(out, sizeof out, "%s/out.gguf", fuzz_scratch());
    }
    fuzz_write("in.gguf", data, size);
    sm_qz_opts o = {0};
    o.in_path = in;
    o.out_path = out;
    o.ftype = ftypes[(size >> 1) % (sizeof ftypes / sizeof ftypes[0])];
    o.output_type = -1;
    o.token_embd_type = -1;
    o.dry_run = !(size & 1);
    o.force = 1;
    o.allow_requantize = (size >> 4) & 1;
    o.nthreads = 1;
    sm_qz_summary s;
    sm_err err;
    sm_quantize_file(&o, &s, &err);
    return 0;
}
