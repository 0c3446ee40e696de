/* libFuzzer target: the GGUF reader (header, metadata, tensor table) and the
 * typed getters over whatever it accepted. */
#include "formats/gguf.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gguf_file g;
    sm_err err;
    if (gguf_parse(&g, data, size, "fuzz.gguf", &err) != 0)
        return 0;
    uint32_t u;
    float f;
    sm_str s;
    bool b;
    gguf_get_u32(&g, "general.alignment", &u, &err);
    gguf_get_str(&g, "general.architecture", &s, &err);
    gguf_get_f32(&g, "llama.rope.freq_base", &f, &err);
    gguf_get_bool(&g, "tokenizer.ggml.add_bos_token", &b, &err);
    volatile uint64_t sum = 0;
    for (uint64_t i = 0; i < g.n_tensors; i++)
        if (g.tensors[i].nbytes)
            sum += g.tensors[i].data[0] + g.tensors[i].data[g.tensors[i].nbytes - 1];
    for (uint64_t i = 0; i < g.n_kv; i++)
        if (g.kv[i].strs)
            for (uint64_t j = 0; j < g.kv[i].n; j++)
                sum += g.kv[i].strs[j].len ? (uint8_t)g.kv[i].strs[j].ptr[g.kv[i].strs[j].len - 1] : 0;
    (void)sum;
    gguf_close(&g);
    return 0;
}
