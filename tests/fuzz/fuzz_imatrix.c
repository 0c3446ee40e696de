/* libFuzzer target: importance matrices, legacy .dat and GGUF (detected by
 * content), then the per-entry values llama-quantize would use. */
#include "formats/imatrix.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sm_imatrix im;
    sm_err err;
    if (sm_imatrix_parse(&im, data, size, "fuzz.imatrix", &err) != 0)
        return 0;
    for (uint32_t i = 0; i < im.n_entries; i++) {
        const sm_imatrix_entry *e = &im.entries[i];
        uint64_t n = (uint64_t)e->n_mat * (uint64_t)e->n_per_mat;
        float *v = malloc((n ? n : 1) * sizeof *v);
        if (v) {
            sm_imatrix_entry_values(e, v);
            free(v);
        }
        sm_imatrix_find(&im, e->name);
    }
    sm_imatrix_free(&im);
    return 0;
}
