/* libFuzzer target: smelt-infer's model loader on an untrusted GGUF
 * (hyper-parameters against tensor shapes and types), then a context and a
 * three-token forward pass through whatever it accepted, so a shape the
 * loader let through that the kernels cannot handle shows up as an ASan
 * report. Seeded with a 4 KB one-layer llama (tests/fuzz/corpus/model). */
#include "formats/gguf.h"
#include "infer/forward.h"
#include "infer/model.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gguf_file g;
    sm_err err;
    if (gguf_parse(&g, data, size, "fuzz.gguf", &err) != 0)
        return 0;
    sm_model m;
    if (model_load_gguf(&m, &g, &err) != 0) /* g is closed either way */
        return 0;
    /* keep the work bounded: tiny contexts only for tiny models */
    if (m.hp.n_embd <= 256 && m.hp.n_layer <= 4 && m.n_params <= (1u << 20)) {
        sm_ctx c;
        if (ctx_init(&c, &m, 8, 4, 1, &err) == 0) {
            int32_t t[3] = {0, 1, 2};
            ctx_eval(&c, t, 3, 0, &err);
            ctx_free(&c);
        }
    }
    model_free(&m);
    return 0;
}
