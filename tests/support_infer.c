/* support_infer.c — see support_infer.h. */
#include "support_infer.h"

#include "infer/tokenizer.h"
#include "fileio.h"

#include <criterion/criterion.h>
#include <stdlib.h>

void ts_load_model(sm_model *m, const char *path)
{
    sm_err err = {0};
    int rc = model_load(m, path, &err);
    cr_assert_eq(rc, 0, "%s: %s", path, err.msg);
}

int32_t *ts_tokenize_file(const sm_model *m, const char *path, size_t *n)
{
    sm_err err = {0};
    tok_vocab *v = NULL;
    cr_assert_eq(tok_load(&v, &m->gguf, &err), 0, "%s: %s", path, err.msg);
    char *text = NULL;
    uint64_t len = 0;
    cr_assert_eq(sm_read_file(path, 1u << 30, &text, &len, &err), 0, "%s", err.msg);
    int32_t *ids = NULL;
    cr_assert_eq(tok_encode(v, text, (size_t)len, true, false, &ids, n, &err), 0, "%s: %s", path, err.msg);
    free(text);
    tok_free(v);
    return ids;
}
