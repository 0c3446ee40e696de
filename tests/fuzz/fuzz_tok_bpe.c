/* libFuzzer target: the byte-level BPE tokenizer (tokenizer.ggml.model
 * "gpt2") with its PCRE2 pre-tokenizers on arbitrary bytes, over llama.cpp's
 * real vocabularies with different pre-tokenizers. */
#include "fuzz_tok_common.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        static const char *const names[] = {
            "ggml-vocab-qwen2.gguf", "ggml-vocab-gpt-2.gguf", "ggml-vocab-deepseek-llm.gguf",
            "ggml-vocab-deepseek-coder.gguf", "ggml-vocab-falcon.gguf", "ggml-vocab-starcoder.gguf",
            "ggml-vocab-refact.gguf", "ggml-vocab-mpt.gguf", "ggml-vocab-gpt-neox.gguf",
        };
        fuzz_tok_init(names, 9, TOK_KIND_BPE);
        ready = 1;
    }
    return fuzz_tok_run(data, size);
}
