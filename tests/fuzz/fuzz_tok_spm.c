/* libFuzzer target: the SentencePiece tokenizer (tokenizer.ggml.model
 * "llama") on arbitrary bytes with llama.cpp's real llama-spm, phi-3 and
 * baichuan vocabularies. */
#include "fuzz_tok_common.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        static const char *const names[] = {"ggml-vocab-llama-spm.gguf", "ggml-vocab-phi-3.gguf",
                                            "ggml-vocab-baichuan.gguf"};
        fuzz_tok_init(names, 3, TOK_KIND_SPM);
        ready = 1;
    }
    return fuzz_tok_run(data, size);
}
