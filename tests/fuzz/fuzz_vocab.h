/* fuzz_vocab.h — set-up shared by the targets that drive smelt-convert's
 * vocabulary builder in memory (fuzz_config, fuzz_tokenizer_config). */
#ifndef SMELT_FUZZ_VOCAB_H
#define SMELT_FUZZ_VOCAB_H

#include "convert/vocab.h"
#include "fuzz_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

/* Parses stories260K's real tokenizer.model into *spm (aborts when it does
 * not parse: nothing would be fuzzed) and creates the empty scratch
 * directory mem_dir (cap bytes) that the in-memory entries get as their
 * model_dir — they look for tokenizer.json / added_tokens.json there, and
 * the file way's scratch directory has none either. */
static inline void fuzz_vocab_setup(cv_spm_model *spm, char *mem_dir, size_t cap)
{
    static char *spm_buf; /* the pieces borrow their bytes: kept for the process */
    size_t spm_len = 0;
    spm_buf = fuzz_read_shared("models/stories260K/tokenizer.model", &spm_len);
    sm_err err;
    if (cv_spm_parse(spm, (const uint8_t *)spm_buf, spm_len, "tokenizer.model", &err) != 0) {
        fprintf(stderr, "fuzz: %s\n", err.msg);
        abort();
    }
    snprintf(mem_dir, cap, "%s/mem", fuzz_scratch());
    if (mkdir(mem_dir, 0700) != 0) {
        perror("fuzz: mkdir");
        abort();
    }
}

#endif
