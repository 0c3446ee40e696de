/* libFuzzer target: tokenizer_config.json (special token ids and flags,
 * added_tokens_decoder, chat_template in its string and list forms) as
 * smelt-convert's vocabulary builder reads it next to stories260K's real
 * tokenizer.model and config.json. All tokenizer.* KVs go into a writer that
 * is then discarded.
 *
 * The input goes through cv_vocab_add_kv_mem: the real tokenizer.model is
 * parsed and config.json read once per process, and the input is parsed as
 * the file would be and fed to the same builder cv_vocab_add_kv_info ends in
 * (re-reading and re-parsing the 512-piece tokenizer.model and writing the
 * input to disk per input had held the rate near 3 000/s). One input in 64
 * also goes the whole file way — written as tokenizer_config.json into a
 * scratch model directory with (symlinks to) the real tokenizer.model and
 * config.json, then cv_vocab_add_kv_info — and both ways must agree on the
 * verdict and the number of KVs. */
#include "fuzz_vocab.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    static char *cfg;
    static size_t cfg_len;
    static cv_spm_model spm;
    static char mem_dir[4200];
    sm_err err;
    if (!ready) {
        fuzz_link_shared("models/stories260K/tokenizer.model", "tokenizer.model");
        fuzz_link_shared("models/stories260K/config.json", "config.json");
        cfg = fuzz_read_shared("models/stories260K/config.json", &cfg_len);
        fuzz_vocab_setup(&spm, mem_dir, sizeof mem_dir);
        ready = 1;
    }
    cv_vocab_opts vo = {NULL, 512, "llama"};
    cv_vocab_info info, info_file;
    gguf_writer *w = gguf_writer_init();
    if (!w)
        return 0;
    int rc = cv_vocab_add_kv_mem(w, mem_dir, &spm, (const char *)data, size, cfg, cfg_len, &vo, &info, &err);
    gguf_writer_free(w);
    if (size % 64 == 0 && (w = gguf_writer_init())) {
        fuzz_write("tokenizer_config.json", data, size);
        int rc_file = cv_vocab_add_kv_info(w, fuzz_scratch(), &vo, &info_file, &err);
        gguf_writer_free(w);
        if ((rc == 0) != (rc_file == 0) || (rc == 0 && info.n_kv != info_file.n_kv))
            __builtin_trap(); /* the in-memory entry must judge as the file one does */
    }
    return 0;
}
