/* libFuzzer target: a sharded checkpoint's model.safetensors.index.json.
 * The two real shards of stories260K-bf16-sharded are opened once (st_open
 * on a scratch directory holding symlinks to them and no index); each input
 * is then checked against them in memory by st_check_index, the function
 * st_open runs on the index file it reads, so every input exercises the
 * same JSON and weight_map validation without re-mapping and re-parsing the
 * shards (which cut the rate to ~1 000/s). One input in 64 also goes the
 * whole file way — written as the scratch directory's index.json and opened
 * with st_open — and both ways must give the same verdict. */
#include "formats/safetensors.h"
#include "fuzz_util.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static st_model shards;
    static int ready;
    sm_err err;
    if (!ready) {
        fuzz_link_shared("models/stories260K-bf16-sharded/model-00001-of-00002.safetensors",
                         "model-00001-of-00002.safetensors");
        fuzz_link_shared("models/stories260K-bf16-sharded/model-00002-of-00002.safetensors",
                         "model-00002-of-00002.safetensors");
        if (st_open(&shards, fuzz_scratch(), &err) != 0 || shards.n_tensors == 0 || shards.n_shards != 2) {
            fprintf(stderr, "fuzz: cannot open the shards: %s\n", err.msg);
            abort();
        }
        ready = 1;
    }
    int rc = st_check_index(&shards, fuzz_scratch(), (const char *)data, size, "model.safetensors.index.json", &err);
    if (size % 64 == 0) {
        fuzz_write("model.safetensors.index.json", data, size);
        st_model m;
        int rc_file = st_open(&m, fuzz_scratch(), &err);
        if (rc_file == 0)
            st_close(&m);
        fuzz_unlink("model.safetensors.index.json");
        if ((rc == 0) != (rc_file == 0))
            __builtin_trap(); /* the in-memory check must judge as st_open does */
    }
    return 0;
}
