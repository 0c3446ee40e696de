/* libFuzzer target: config.json as smelt-convert reads it (hyper-parameters,
 * architecture, rope scaling, naming). The input is written as config.json
 * into a scratch model directory next to stories260K's real weights and
 * tokenizer, and cv_convert() runs in vocab-only mode into the same
 * directory (the tensor plan needs a full conversion per input, which would
 * cut the exec rate a hundredfold; the F16 plan is covered by the convert
 * test suite's malformed-config table). */
#include "convert/convert.h"
#include "fuzz_util.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    static char out[4200];
    if (!ready) {
        fuzz_link_shared("models/stories260K/model.safetensors", "model.safetensors");
        fuzz_link_shared("models/stories260K/tokenizer.model", "tokenizer.model");
        fuzz_link_shared("models/stories260K/tokenizer_config.json", "tokenizer_config.json");
        snprintf(out, sizeof out, "%s/out.gguf", fuzz_scratch());
        ready = 1;
    }
    fuzz_write("config.json", data, size);
    cv_opts o = {0};
    o.model_dir = fuzz_scratch();
    o.outfile = out;
    o.outtype = CV_OUT_F16;
    o.vocab_only = 1;
    o.force = 1;
    cv_summary sum;
    sm_err err;
    cv_convert(&o, &sum, &err);
    return 0;
}
