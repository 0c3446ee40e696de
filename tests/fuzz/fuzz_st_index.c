/* libFuzzer target: a sharded checkpoint's model.safetensors.index.json.
 * st_open() only reads an index from a directory, so the input is written
 * as the index of a scratch directory holding (symlinks to) the two real
 * shards of stories260K-bf16-sharded; st_open() then parses the shards and
 * checks every weight_map entry against them. */
#include "formats/safetensors.h"
#include "fuzz_util.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        fuzz_link_shared("models/stories260K-bf16-sharded/model-00001-of-00002.safetensors",
                         "model-00001-of-00002.safetensors");
        fuzz_link_shared("models/stories260K-bf16-sharded/model-00002-of-00002.safetensors",
                         "model-00002-of-00002.safetensors");
        ready = 1;
    }
    fuzz_write("model.safetensors.index.json", data, size);
    st_model m;
    sm_err err;
    if (st_open(&m, fuzz_scratch(), &err) == 0) {
        if (m.n_tensors == 0 || m.n_shards != 2)
            __builtin_trap(); /* the real shards always hold tensors */
        st_close(&m);
    }
    return 0;
}
