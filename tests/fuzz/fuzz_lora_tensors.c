/* libFuzzer target: adapter_model.safetensors as smelt-merge parses it
 * (lora_tensors_parse), then every accepted tensor widened to f32. */
#include "merge/adapter.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lora_tensor *t = NULL;
    uint64_t n = 0;
    sm_err err;
    if (lora_tensors_parse(data, size, "adapter_model.safetensors", &t, &n, &err) != 0)
        return 0;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t elems = 1;
        for (uint32_t d = 0; d < t[i].n_dims; d++)
            elems *= (uint64_t)t[i].shape[d];
        if (elems > (1u << 20))
            continue; /* the data is in the input, so this is bounded anyway */
        float *f = malloc((elems ? elems : 1) * sizeof *f);
        if (f) {
            lora_tensor_to_f32(&t[i], f);
            free(f);
        }
    }
    lora_tensors_free(t, n);
    return 0;
}
