/* libFuzzer target: tokenizer_config.json (special token ids and flags,
 * added_tokens_decoder, chat_template in its string and list forms) as
 * smelt-convert's vocabulary builder reads it next to stories260K's real
 * tokenizer.model and config.json. All tokenizer.* KVs go into a writer that
 * is then discarded. */
#include "convert/vocab.h"
#include "fuzz_util.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        fuzz_link_shared("models/stories260K/tokenizer.model", "tokenizer.model");
        fuzz_link_shared("models/stories260K/config.json", "config.json");
        ready = 1;
    }
    fuzz_write("tokenizer_config.json", data, size);
    gguf_writer *w = gguf_writer_init();
    if (!w)
        return 0;
    cv_vocab_opts vo = {NULL, 512, "llama"};
    cv_vocab_info info;
    sm_err err;
    cv_vocab_add_kv_info(w, fuzz_scratch(), &vo, &info, &err);
    gguf_writer_free(w);
    return 0;
}
