/* libFuzzer target: config.json as smelt-convert reads it (hyper-parameters,
 * architecture, rope scaling, naming), then the vocabulary step that depends
 * on it (vocab_size padding up to 2048 entries, special ids from config) with
 * stories260K's real tokenizer.model and tokenizer_config.json.
 *
 * The input goes through cv_config_kv — the converter's own config parser,
 * checks and KV writers on a buffer — for one of the four output types and
 * both vocab-only settings (picked by the input length), then through
 * cv_vocab_add_kv_mem with the tokenizer.model parsed once per process: no
 * file is written or read per input (a vocab-only cv_convert per input,
 * writing config.json and the output GGUF, had held the rate near 1 000/s).
 * The tensor plan needs a full conversion per input and is covered by the
 * convert suite's malformed-config table. One input in 64 also goes the
 * whole file way — written as config.json into a scratch model directory
 * next to (symlinks to) the real weights and tokenizer, then a vocab-only
 * cv_convert — and both ways must give the same verdict. */
#include "convert/convert.h"
#include "fuzz_vocab.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    static char out[4200], mem_dir[4200];
    static char *tc;
    static size_t tc_len;
    static cv_spm_model spm;
    sm_err err;
    if (!ready) {
        fuzz_link_shared("models/stories260K/model.safetensors", "model.safetensors");
        fuzz_link_shared("models/stories260K/tokenizer.model", "tokenizer.model");
        fuzz_link_shared("models/stories260K/tokenizer_config.json", "tokenizer_config.json");
        snprintf(out, sizeof out, "%s/out.gguf", fuzz_scratch());
        tc = fuzz_read_shared("models/stories260K/tokenizer_config.json", &tc_len);
        fuzz_vocab_setup(&spm, mem_dir, sizeof mem_dir);
        ready = 1;
    }
    static const int outtypes[] = {CV_OUT_F16, CV_OUT_F32, CV_OUT_BF16, CV_OUT_Q8_0};
    gguf_writer *w = gguf_writer_init();
    if (!w)
        return 0;
    cv_config_info ci;
    int rc = cv_config_kv(w, (const char *)data, size, "config.json", "stories260K", outtypes[size % 4],
                          (size >> 2) & 1, &ci, &err);
    /* a vocab_size past the pieces only repeats the [PAD{i}] loop: past 2048
     * it would cost more than everything else here and test nothing new */
    if (rc == 0 && ci.vocab_size <= 2048) {
        cv_vocab_opts vo = {NULL, ci.vocab_size, ci.arch};
        rc = cv_vocab_add_kv_mem(w, mem_dir, &spm, tc, tc_len, (const char *)data, size, &vo, NULL, &err);
    }
    gguf_writer_free(w);
    if (size % 64 == 0 && ci.vocab_size <= 2048) {
        fuzz_write("config.json", data, size);
        cv_opts o = {0};
        o.model_dir = fuzz_scratch();
        o.outfile = out;
        o.outtype = CV_OUT_F16;
        o.vocab_only = 1;
        o.force = 1;
        cv_summary sum;
        int rc_file = cv_convert(&o, &sum, &err);
        if ((rc == 0) != (rc_file == 0))
            __builtin_trap(); /* the in-memory entries must judge as cv_convert does */
    }
    return 0;
}
