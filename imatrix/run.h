/* run.h — llama-imatrix's compute_imatrix(): the model over calibration
 * tokens in chunks, statistics through the matmul hook, running perplexity.
 *
 * Chunking (c392e5094): the chunk length is -c rounded up to a multiple of
 * 32 (llama.cpp pads its context so; llama-imatrix chunks by the padded
 * llama_n_ctx()), batches are -b clamped to -c as given.
 * tokens = tokenize(text, add_special) (BOS first when
 * the vocabulary adds one; the text's one trailing newline is dropped by the
 * reader, as common's -f does); --chunk K drops the first K*n_ctx tokens;
 * at least 2*n_ctx tokens must remain; n_chunk = min(--chunks, tokens/n_ctx).
 * Each chunk starts from an empty cache, its first token replaced by BOS
 * (add_bos vocabularies), and runs in batches of n_batch tokens, each split
 * into physical batches of n_ubatch (llama_decode's ubatches: the hook sees
 * one call per ubatch). Perplexity scores the second half of each chunk:
 * logits of positions n_ctx/2 .. n_ctx-2 against the next token. */
#ifndef SMELT_IMATRIX_RUN_H
#define SMELT_IMATRIX_RUN_H

#include "collect.h"
#include "err.h"
#include "infer/model.h"

#include <stdint.h>
#include <stdio.h>

typedef struct im_run_opts {
    int32_t n_ctx;          /* -c: chunk length before padding to 32 */
    int32_t n_batch;        /* -b: clamped to n_ctx */
    int32_t n_ubatch;       /* -ub: physical batch, clamped to n_batch */
    int32_t n_chunks;       /* --chunks, < 0 = all */
    int32_t skip_chunks;    /* --chunk: chunks dropped from the start */
    int32_t n_threads;      /* -t */
    int32_t compute_ppl;    /* 0 with --no-ppl */
    int32_t out_freq;       /* -ofreq: save every N chunks (0 = never) */
    int32_t save_freq;      /* --save-frequency: copy to "<out>.at_N" every N chunks (0 = never) */
    const char *out_path;   /* where periodic saves go, or NULL */
    int32_t out_format;     /* enum sm_imatrix_format of those saves */
    FILE *log;              /* progress and messages, or NULL */
    int32_t log_tty;        /* 1: llama.cpp's single "[k]ppl," line; 0: one line per chunk */
} im_run_opts;

typedef struct im_run_result {
    int32_t n_chunks;       /* chunks evaluated */
    int64_t n_tokens;       /* tokens after --chunk */
    double ppl;             /* final estimate (0 with --no-ppl) */
    double ppl_err;
    double *chunk_ppl;      /* [n_chunks] running PPL after each chunk, NULL with --no-ppl (owned) */
} im_run_result;

/* Reads path (one trailing '\n' dropped) and tokenizes it with the model's
 * vocabulary, add_special on, parse_special off (llama-imatrix). *ids is
 * malloc'd (caller frees). Errors: unreadable file, tokenizer errors. */
int im_tokenize_file(const sm_model *m, const char *path, int32_t **ids, int64_t *n, sm_err *err);

/* Runs the model m over tokens[n_tokens] feeding c (the hook is installed
 * here). Fails with SM_ERANGE when fewer than 2*n_ctx tokens remain after
 * the skipped chunks (message says how many there are), SM_EINVAL for bad
 * options, or a hook / save / evaluation error. Free r with im_run_free. */
int im_run(im_collector *c, const sm_model *m, const int32_t *tokens, int64_t n_tokens, const im_run_opts *o,
           im_run_result *r, sm_err *err);
void im_run_free(im_run_result *r);

#endif
