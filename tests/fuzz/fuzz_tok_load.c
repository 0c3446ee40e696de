/* libFuzzer target: building a tokenizer from the tokenizer.ggml.* keys of
 * an untrusted GGUF (what smelt-infer does with any model file), then a
 * short round trip through it. */
#include "formats/gguf.h"
#include "infer/tokenizer.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gguf_file g;
    sm_err err;
    if (gguf_parse(&g, data, size, "fuzz.gguf", &err) != 0)
        return 0;
    tok_vocab *v = NULL;
    if (tok_load(&v, &g, &err) == 0) {
        static const char text[] = " Hello world! <s>12 34\n\tüñí 日本 </s>";
        int32_t *ids = NULL;
        size_t n = 0;
        if (tok_encode(v, text, sizeof text - 1, true, true, &ids, &n, &err) == 0) {
            char *out = NULL;
            size_t out_len = 0;
            if (tok_detokenize(v, ids, n, false, true, &out, &out_len, &err) == 0)
                free(out);
            free(ids);
        }
        tok_free(v);
    }
    gguf_close(&g);
    return 0;
}
