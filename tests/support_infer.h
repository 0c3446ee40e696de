/* support_infer.h — model helpers shared by the suites that link
 * libsmelt-infer (test_infer*.c, test_imatrix.c). */
#ifndef SMELT_TEST_SUPPORT_INFER_H
#define SMELT_TEST_SUPPORT_INFER_H

#include "infer/model.h"

#include <stddef.h>
#include <stdint.h>

/* Loads the GGUF at path into *m (caller frees with model_free); aborts the
 * test with the loader's message when it fails. */
void ts_load_model(sm_model *m, const char *path);
/* Tokenizes a whole text file as llama-perplexity does (BOS added, special
 * tokens not parsed); returns malloc'd ids, *n their count. Aborts the test
 * on any error. */
int32_t *ts_tokenize_file(const sm_model *m, const char *path, size_t *n);

#endif
