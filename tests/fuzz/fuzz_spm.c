/* libFuzzer target: the SentencePiece ModelProto decoder (tokenizer.model)
 * and its loader checks (cv_spm_parse). Every accepted piece is read. */
#include "convert/vocab.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cv_spm_model m;
    sm_err err;
    if (cv_spm_parse(&m, data, size, "tokenizer.model", &err) == 0) {
        volatile uint32_t sum = 0;
        for (uint32_t i = 0; i < m.n_pieces; i++)
            sum += m.pieces[i].len ? m.pieces[i].ptr[m.pieces[i].len - 1] : 0;
        (void)sum;
    }
    cv_spm_free(&m);
    return 0;
}
