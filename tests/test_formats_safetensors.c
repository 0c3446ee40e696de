/* safetensors reader: single file, sharded index, dtype conversion. (The
 * malformed-header table lives in test_convert.c, where each case must also
 * leave no output file.) */
#include <criterion/criterion.h>

#include "formats/fp16.h"
#include "formats/safetensors.h"
#include "support.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

Test(safetensors, single_file_in_header_order)
{
    st_model m;
    sm_err err = {0};
    cr_assert_eq(st_open(&m, ts_path("models/stories260K/model.safetensors"), &err), 0, "%s", err.msg);
    cr_assert_eq(m.n_shards, 1);
    cr_assert_eq(m.n_tensors, 47);
    /* insertion order, __metadata__ first in this file */
    cr_assert_str_eq(m.tensors[0].name, "model.embed_tokens.weight");
    cr_assert_str_eq(m.tensors[1].name, "model.layers.0.input_layernorm.weight");
    const st_tensor *t = &m.tensors[0];
    cr_assert_eq(t->dtype, ST_F32);
    cr_assert_eq(t->n_dims, 2);
    cr_assert_eq(t->shape[0], 512);
    cr_assert_eq(t->shape[1], 64);
    cr_assert_eq(t->nbytes, 512u * 64u * 4u);
    cr_assert(m.metadata_json && strstr(m.metadata_json, "\"format\""));
    cr_assert_eq(st_find(&m, "model.norm.weight") >= 0, 1);
    cr_assert_eq(st_find(&m, "nope"), -1);
    st_close(&m);
}

Test(safetensors, sharded_directory_and_index)
{
    st_model a, b, f32;
    sm_err err = {0};
    cr_assert_eq(st_open(&a, ts_path("models/stories260K-bf16-sharded"), &err), 0, "%s", err.msg);
    cr_assert_eq(a.n_shards, 2);
    cr_assert_eq(a.n_tensors, 47);
    cr_assert_eq(st_open(&b, ts_path("models/stories260K-bf16-sharded/model.safetensors.index.json"), &err), 0, "%s",
                 err.msg);
    cr_assert_eq(b.n_tensors, 47);
    cr_assert_eq(st_open(&f32, ts_path("models/stories260K"), &err), 0, "%s", err.msg);
    /* the BF16 shards hold the F32 weights rounded to nearest even */
    int64_t i = st_find(&a, "model.layers.3.mlp.down_proj.weight"), j = st_find(&f32, "model.layers.3.mlp.down_proj.weight");
    cr_assert(i >= 0 && j >= 0);
    uint64_t n = a.tensors[i].n_elements;
    float *x = malloc(n * 4), *y = malloc(n * 4);
    cr_assert_eq(st_tensor_read_f32(&a.tensors[i], 0, n, x, &err), 0);
    cr_assert_eq(st_tensor_read_f32(&f32.tensors[j], 0, n, y, &err), 0);
    for (uint64_t k = 0; k < n; k++)
        cr_assert_eq(x[k], sm_bf16_to_f32(sm_f32_to_bf16(y[k])), "element %llu", (unsigned long long)k);
    /* partial reads and range checks */
    cr_assert_eq(st_tensor_read_f32(&a.tensors[i], n - 2, 2, x, &err), 0);
    cr_assert_eq(st_tensor_read_f32(&a.tensors[i], n - 1, 2, x, &err), SM_ERANGE);
    free(x);
    free(y);
    st_close(&a);
    st_close(&b);
    st_close(&f32);
}

Test(safetensors, parse_from_memory)
{
    const char *hdr = "{\"w\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[0,8]},\"__metadata__\":{\"k\":\"v\"}}";
    size_t hl = strlen(hdr);
    uint8_t buf[256] = {0};
    uint64_t l = hl;
    memcpy(buf, &l, 8);
    memcpy(buf + 8, hdr, hl);
    uint16_t h[4] = {0x3c00, 0xc000, 0x0001, 0x7bff};
    memcpy(buf + 8 + hl, h, 8);
    st_model m;
    memset(&m, 0, sizeof m);
    sm_err err = {0};
    cr_assert_eq(st_parse(&m, buf, 8 + hl + 8, "mem", 0, &err), 0, "%s", err.msg);
    float f[4];
    cr_assert_eq(st_tensor_read_f32(&m.tensors[0], 0, 4, f, &err), 0);
    cr_assert_eq(f[0], 1.0f);
    cr_assert_eq(f[1], -2.0f);
    cr_assert_eq(f[2], 0x1p-24f);
    cr_assert_eq(f[3], 65504.0f);
    st_close(&m);
    /* a metadata value that is not a string */
    const char *bad = "{\"__metadata__\":{\"k\":1}}";
    hl = strlen(bad);
    l = hl;
    memcpy(buf, &l, 8);
    memcpy(buf + 8, bad, hl);
    memset(&m, 0, sizeof m);
    cr_assert_eq(st_parse(&m, buf, 8 + hl, "mem", 0, &err), SM_EFORMAT);
    cr_assert(strstr(err.msg, "__metadata__.k"), "%s", err.msg);
    st_close(&m);
}

/* st_check_index on a buffer judges as st_open does on the file: the real
 * index passes, and each malformed one gets st_open's code and message. */
Test(safetensors, index_check_from_memory)
{
    st_model m;
    sm_err err = {0};
    const char *dir = ts_path("models/stories260K-bf16-sharded");
    cr_assert_eq(st_open(&m, dir, &err), 0, "%s", err.msg);
    size_t len;
    uint8_t *real = ts_read(ts_path("models/stories260K-bf16-sharded/model.safetensors.index.json"), &len);
    cr_assert(real);
    cr_assert_eq(st_check_index(&m, dir, (const char *)real, len, "index.json", &err), 0, "%s", err.msg);
    free(real);
    static const struct {
        const char *text;
        int code;
        const char *msg;
    } bad[] = {
        {"{\"weight_map\": ", SM_EFORMAT, "invalid JSON"},
        {"[]", SM_EFORMAT, "weight_map"},
        {"{\"metadata\": {}}", SM_EFORMAT, "weight_map"},
        {"{\"weight_map\": {\"model.norm.weight\": 7}}", SM_EFORMAT, "plain file name"},
        {"{\"weight_map\": {\"model.norm.weight\": \"../x.safetensors\"}}", SM_EFORMAT, "plain file name"},
        {"{\"weight_map\": {\"model.norm.weight\": \"..\"}}", SM_EFORMAT, "plain file name"},
        {"{\"weight_map\": {\"model.norm.weight\": \"model-00009-of-00009.safetensors\"}}", SM_EMISSING, "missing"},
        {"{\"weight_map\": {\"model.nope.weight\": \"model-00001-of-00002.safetensors\"}}", SM_EMISSING,
         "model.nope.weight"},
        {"{\"weight_map\": {}}", SM_EMISMATCH, "not in weight_map"},
        {"{\"weight_map\": {}, \"weight_map\": {}}", SM_EFORMAT, "invalid JSON"},
    };
    char *tmp = ts_tmpdir();
    char p[4096];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sm_err e1 = {0}, e2 = {0};
        int rc = st_check_index(&m, dir, bad[i].text, strlen(bad[i].text), "index.json", &e1);
        cr_assert_eq(rc, bad[i].code, "case %zu: %d %s", i, rc, e1.msg);
        cr_assert(strstr(e1.msg, bad[i].msg), "case %zu: %s", i, e1.msg);
        /* the file way: the same shards (symlinked) with this index */
        for (int s = 1; s <= 2; s++) {
            char src[4096];
            snprintf(src, sizeof src, "%s/model-0000%d-of-00002.safetensors", dir, s);
            snprintf(p, sizeof p, "%s/model-0000%d-of-00002.safetensors", tmp, s);
            if (!ts_exists(p))
                cr_assert_eq(symlink(src, p), 0);
        }
        snprintf(p, sizeof p, "%s/model.safetensors.index.json", tmp);
        cr_assert_eq(ts_write(p, bad[i].text, strlen(bad[i].text)), 0);
        st_model f;
        cr_assert_eq(st_open(&f, tmp, &e2), rc, "case %zu: %s", i, e2.msg);
        cr_assert(strstr(e2.msg, bad[i].msg), "case %zu: %s", i, e2.msg);
    }
    /* the size cap */
    cr_assert_eq(st_check_index(&m, dir, "{}", (uint64_t)ST_MAX_INDEX + 1, "index.json", &err), SM_ERANGE);
    ts_rmtree(tmp);
    free(tmp);
    st_close(&m);
}
