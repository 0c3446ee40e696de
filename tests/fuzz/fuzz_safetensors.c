/* libFuzzer target: the safetensors header parser and f32 reads of every
 * tensor it accepted. */
#include "formats/safetensors.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    st_model m;
    memset(&m, 0, sizeof m);
    sm_err err;
    if (st_parse(&m, data, size, "fuzz.safetensors", 0, &err) == 0) {
        float buf[16];
        for (uint64_t i = 0; i < m.n_tensors; i++) {
            uint64_t n = m.tensors[i].n_elements < 16 ? m.tensors[i].n_elements : 16;
            st_tensor_read_f32(&m.tensors[i], m.tensors[i].n_elements - n, n, buf, &err);
        }
    }
    st_close(&m);
    return 0;
}
