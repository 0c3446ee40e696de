/* libFuzzer target: tokenizer.json as smelt-convert reads it — vocabulary,
 * added tokens, merges (string and pair forms) and the pre-tokenizer
 * detection (cv_bpe_load, cv_bpe_detect_pre). Odd-sized inputs use a --pre
 * override so the loader gets past detection to the vocabulary; even-sized
 * ones run detection. No merges.txt exists in the (empty) scratch dir. */
#include "convert/vocab.h"
#include "fuzz_util.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_error_t je;
    json_t *tj = json_loadb((const char *)data, size, JSON_ALLOW_NUL, &je);
    if (!tj)
        return 0;
    cv_vocab_opts vo = {(size & 1) ? "qwen2" : NULL, (size & 2) ? 300u : 0u, "qwen2"};
    cv_bpe_result r;
    sm_err err;
    if (cv_bpe_load(&r, tj, NULL, fuzz_scratch(), &vo, &err) == 0)
        cv_bpe_free(&r);
    char pre[32];
    cv_bpe_detect_pre(tj, pre, sizeof pre, &err);
    json_decref(tj);
    return 0;
}
