/* test_merge_synth.c — smelt-merge on synthetic adapters for stories260K:
 * sharded BF16 base, regex target_modules, embedding LoRA, modules_to_save,
 * fan_in_fan_out, output types, the Q/K permutation of the GGUF path (8
 * heads / 4 KV heads) and the CLI with several adapters and scales. The
 * expected values are recomputed here with the plain PEFT float32 loop. */
#include "merge/adapter.h"
#include "merge/export.h"
#include "merge/merge.h"

#include "fp16.h"
#include "gguf.h"
#include "safetensors.h"
#include "safetensors_write.h"
#include "types.h"

#include "support.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* Deterministic small values, exactly representable in BF16 so F32 and
 * BF16 adapter files hold the same numbers. */
static float synth_val(uint32_t seed, uint64_t i)
{
    uint32_t x = (uint32_t)(i * 2654435761u) ^ (seed * 40503u + 0x9e37u);
    x ^= x >> 13;
    x *= 0x5bd1e995u;
    x ^= x >> 15;
    float v = ((float)(x % 2001u) - 1000.0f) / 16384.0f;
    return sm_bf16_to_f32(sm_f32_to_bf16(v));
}

typedef struct synth_tensor {
    const char *name;     /* PEFT name without "base_model.model." */
    int64_t rows, cols;   /* cols 0: a vector */
    uint32_t seed;
    uint32_t dtype;       /* ST_F32 or ST_BF16 */
} synth_tensor;

static void synth_fill(const synth_tensor *t, float *dst)
{
    int64_t n = t->rows * (t->cols ? t->cols : 1);
    for (int64_t i = 0; i < n; i++)
        dst[i] = synth_val(t->seed, (uint64_t)i);
}

static void write_adapter(const char *dir, const char *cfg, const synth_tensor *ts, size_t n)
{
    char p[1024];
    sm_err err = {0};
    mkdir(dir, 0755);
    snprintf(p, sizeof p, "%s/adapter_config.json", dir);
    FILE *f = fopen(p, "wb");
    cr_assert_not_null(f);
    fputs(cfg, f);
    fclose(f);
    st_writer *w = st_writer_init();
    for (size_t i = 0; i < n; i++) {
        char name[256];
        snprintf(name, sizeof name, "base_model.model.%s", ts[i].name);
        int64_t shape[2] = {ts[i].rows, ts[i].cols};
        cr_assert_eq(st_writer_add_tensor(w, name, ts[i].dtype, ts[i].cols ? 2 : 1, shape, &err), 0, "%s", err.msg);
    }
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", dir);
    cr_assert_eq(st_writer_begin(w, p, &err), 0, "%s", err.msg);
    for (size_t i = 0; i < n; i++) {
        int64_t ne = ts[i].rows * (ts[i].cols ? ts[i].cols : 1);
        float *v = malloc((size_t)ne * sizeof *v);
        synth_fill(&ts[i], v);
        if (ts[i].dtype == ST_BF16) {
            uint16_t *h = malloc((size_t)ne * 2);
            for (int64_t k = 0; k < ne; k++)
                h[k] = sm_f32_to_bf16(v[k]);
            cr_assert_eq(st_writer_write(w, h, (uint64_t)ne * 2, &err), 0);
            free(h);
        } else {
            cr_assert_eq(st_writer_write(w, v, (uint64_t)ne * 4, &err), 0);
        }
        free(v);
    }
    cr_assert_eq(st_writer_finish(w, &err), 0, "%s", err.msg);
    st_writer_free(w);
}

/* q/k of every layer, down_proj of layer 2 only (regex target), r 4, alpha 8 */
#define N_QK 10
static synth_tensor qk_tensors[N_QK * 2 + 2];
static size_t n_qk_tensors;
static char qk_names[N_QK * 2 + 2][128];

static void build_qk_list(void)
{
    size_t n = 0;
    for (int l = 0; l < 5; l++)
        for (int q = 0; q < 2; q++) {
            const char *proj = q ? "k_proj" : "q_proj";
            int64_t out = q ? 32 : 64;
            snprintf(qk_names[n], sizeof qk_names[n], "model.layers.%d.self_attn.%s.lora_A.weight", l, proj);
            qk_tensors[n] = (synth_tensor){qk_names[n], 4, 64, (uint32_t)(100 + n), l == 3 ? ST_BF16 : ST_F32};
            n++;
            snprintf(qk_names[n], sizeof qk_names[n], "model.layers.%d.self_attn.%s.lora_B.weight", l, proj);
            qk_tensors[n] = (synth_tensor){qk_names[n], out, 4, (uint32_t)(100 + n), ST_F32};
            n++;
        }
    snprintf(qk_names[n], sizeof qk_names[n], "model.layers.2.mlp.down_proj.lora_A.weight");
    qk_tensors[n] = (synth_tensor){qk_names[n], 4, 172, 900, ST_F32};
    n++;
    snprintf(qk_names[n], sizeof qk_names[n], "model.layers.2.mlp.down_proj.lora_B.weight");
    qk_tensors[n] = (synth_tensor){qk_names[n], 64, 4, 901, ST_F32};
    n++;
    n_qk_tensors = n;
}

static const char qk_cfg[] =
    "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8, \"bias\": \"none\", \"use_dora\": false,\n"
    " \"target_modules\": \".*layers\\\\.2\\\\.mlp\\\\.down_proj|.*\\\\.(q|k)_proj\", \"fan_in_fan_out\": false}\n";

/* Expected merged values of HF tensor `name` (F32 result of the PEFT loop). */
static int expected_merge(const st_tensor *base, const char *name, float scale, float *w)
{
    sm_err err = {0};
    cr_assert_eq(st_tensor_read_f32(base, 0, base->n_elements, w, &err), 0);
    char a_name[200], b_name[200];
    const char *dot = strrchr(name, '.');
    snprintf(a_name, sizeof a_name, "%.*s.lora_A.weight", (int)(dot - name), name);
    snprintf(b_name, sizeof b_name, "%.*s.lora_B.weight", (int)(dot - name), name);
    const synth_tensor *ta = NULL, *tb = NULL;
    for (size_t i = 0; i < n_qk_tensors; i++) {
        if (strcmp(qk_tensors[i].name, a_name) == 0)
            ta = &qk_tensors[i];
        if (strcmp(qk_tensors[i].name, b_name) == 0)
            tb = &qk_tensors[i];
    }
    if (!ta)
        return 0;
    float *A = malloc((size_t)(ta->rows * ta->cols) * 4), *B = malloc((size_t)(tb->rows * tb->cols) * 4);
    synth_fill(ta, A);
    synth_fill(tb, B);
    int64_t out = tb->rows, in = ta->cols, r = ta->rows;
    for (int64_t i = 0; i < out; i++)
        for (int64_t j = 0; j < in; j++) {
            float acc = 0;
            for (int64_t k = 0; k < r; k++)
                acc += B[i * r + k] * A[k * in + j];
            w[i * in + j] = w[i * in + j] + scale * acc;
        }
    free(A);
    free(B);
    return 1;
}

static void merge_one(const char *base, const char *ad_dir, const char *out, int32_t outtype, double user_scale)
{
    lora_adapter ad;
    sm_err err = {0};
    cr_assert_eq(lora_open(&ad, ad_dir, &err), 0, "%s", err.msg);
    ad.user_scale = user_scale;
    merge_opts o = {.base = base, .out = out, .adapters = &ad, .n_adapters = 1, .outtype = outtype};
    merge_report rep;
    cr_assert_eq(merge_run(&o, &rep, &err), 0, "%s", err.msg);
    cr_assert_eq(rep.n_stats, 11);
    merge_report_free(&rep);
    lora_close(&ad);
}

static void check_sharded(int32_t outtype)
{
    build_qk_list();
    char *tmp = ts_tmpdir();
    char ad[1100], out[1100], base[1024], p[1200];
    snprintf(ad, sizeof ad, "%s/synth-qk", tmp);
    write_adapter(ad, qk_cfg, qk_tensors, n_qk_tensors);
    snprintf(base, sizeof base, "%s/models/stories260K-bf16-sharded", ts_shared());
    snprintf(out, sizeof out, "%s/out", tmp);
    merge_one(base, ad, out, outtype, 1.0);

    sm_err err = {0};
    st_model o, b;
    cr_assert_eq(st_open(&b, base, &err), 0, "%s", err.msg);
    cr_assert_eq(st_open(&o, out, &err), 0, "%s", err.msg);
    cr_assert_eq(o.n_shards, 2);
    cr_assert_eq(o.n_tensors, b.n_tensors);
    float *w = malloc(512 * 64 * 4);
    int merged = 0;
    uint64_t total = 0;
    for (uint64_t i = 0; i < o.n_tensors; i++) {
        const st_tensor *ot = &o.tensors[i], *bt = &b.tensors[i];
        cr_assert_str_eq(ot->name, bt->name);
        cr_assert_eq(ot->shard, bt->shard);
        cr_assert_eq(ot->dtype, outtype == SM_TYPE_F32 ? ST_F32 : ST_BF16);
        total += ot->nbytes;
        merged += expected_merge(bt, ot->name, 2.0f, w);
        for (uint64_t k = 0; k < ot->n_elements; k++) {
            if (outtype == SM_TYPE_F32) {
                float got;
                memcpy(&got, ot->data + 4 * k, 4);
                cr_assert_eq(sm_f32_bits(got), sm_f32_bits(w[k]), "%s[%llu]", ot->name, (unsigned long long)k);
            } else {
                uint16_t got = (uint16_t)(ot->data[2 * k] | ot->data[2 * k + 1] << 8);
                cr_assert_eq(got, sm_f32_to_bf16(w[k]), "%s[%llu]", ot->name, (unsigned long long)k);
            }
        }
    }
    cr_assert_eq(merged, 11);
    /* shard names kept, index total_size and config torch_dtype follow the output type */
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", out);
    json_t *idx = json_load_file(p, 0, NULL);
    cr_assert_not_null(idx);
    cr_assert_eq((uint64_t)json_integer_value(json_object_get(json_object_get(idx, "metadata"), "total_size")), total);
    json_decref(idx);
    snprintf(p, sizeof p, "%s/config.json", out);
    json_t *cfg = json_load_file(p, 0, NULL);
    cr_assert_str_eq(json_string_value(json_object_get(cfg, "torch_dtype")), outtype == SM_TYPE_F32 ? "float32" : "bfloat16");
    json_decref(cfg);
    snprintf(p, sizeof p, "%s/tokenizer.model", out);
    cr_assert_eq(access(p, R_OK), 0);
    free(w);
    st_close(&o);
    st_close(&b);
    ts_rmtree(tmp);
    free(tmp);
}

Test(merge_synth, sharded_bf16_base_to_f32)
{
    check_sharded(SM_TYPE_F32);
}

Test(merge_synth, sharded_bf16_base_auto_keeps_bf16)
{
    check_sharded(MERGE_OUT_AUTO);
}

Test(merge_synth, gguf_path_permutes_q_and_k_rows)
{
    /* HF F32 merge, then the converter's permutation, equals the GGUF merge
     * of llama.cpp's F32 conversion bit for bit (8 heads, 4 KV heads). */
    build_qk_list();
    char *tmp = ts_tmpdir();
    char ad[1100], out_hf[1100], out_gg[1100], base_hf[1024], base_gg[1024];
    snprintf(ad, sizeof ad, "%s/synth-qk", tmp);
    write_adapter(ad, qk_cfg, qk_tensors, n_qk_tensors);
    snprintf(base_hf, sizeof base_hf, "%s/models/stories260K", ts_shared());
    snprintf(base_gg, sizeof base_gg, "%s/reference/stories260K/convert-f32.gguf", ts_shared());
    snprintf(out_hf, sizeof out_hf, "%s/hf", tmp);
    snprintf(out_gg, sizeof out_gg, "%s/m.gguf", tmp);
    merge_one(base_hf, ad, out_hf, SM_TYPE_F32, 0.75);
    merge_one(base_gg, ad, out_gg, MERGE_OUT_AUTO, 0.75);
    sm_err err = {0};
    st_model h;
    gguf_file g;
    cr_assert_eq(st_open(&h, out_hf, &err), 0, "%s", err.msg);
    cr_assert_eq(gguf_open(&g, out_gg, &err), 0, "%s", err.msg);
    float *perm = malloc(512 * 64 * 4), *scratch = malloc(512 * 64 * 4);
    int checked = 0;
    for (uint64_t i = 0; i < h.n_tensors; i++) {
        const st_tensor *t = &h.tensors[i];
        char gg[256];
        cr_assert_eq(merge_hf_to_gguf_name(t->name, gg, sizeof gg), 0, "%s", t->name);
        int64_t gi = gguf_find_tensor(&g, gg);
        cr_assert_geq(gi, 0, "%s", gg);
        const gguf_tensor *gt = &g.tensors[gi];
        cr_assert_eq(gt->type, SM_TYPE_F32);
        cr_assert_eq(gt->nbytes, t->nbytes);
        memcpy(perm, t->data, t->nbytes);
        if (strstr(gg, "attn_q.weight"))
            merge_permute_rows(perm, t->shape[0], t->shape[1], 8, scratch);
        else if (strstr(gg, "attn_k.weight"))
            merge_permute_rows(perm, t->shape[0], t->shape[1], 4, scratch);
        cr_assert_eq(memcmp(perm, gt->data, t->nbytes), 0, "%s differs from %s", gg, t->name);
        checked++;
    }
    cr_assert_eq(checked, 47);
    free(perm);
    free(scratch);
    st_close(&h);
    gguf_close(&g);
    ts_rmtree(tmp);
    free(tmp);
}

Test(merge_synth, embedding_lora_saved_norm_and_fan_in_fan_out)
{
    char *tmp = ts_tmpdir();
    char ad[1100], ad2[1100], out[1100], base[1024];
    snprintf(ad, sizeof ad, "%s/emb", tmp);
    snprintf(ad2, sizeof ad2, "%s/fifo", tmp);
    const synth_tensor emb[] = {
        {"model.embed_tokens.lora_embedding_A", 4, 512, 7, ST_F32},
        {"model.embed_tokens.lora_embedding_B", 64, 4, 8, ST_F32},
        {"model.norm.weight", 64, 0, 9, ST_F32},
    };
    write_adapter(ad, "{\"peft_type\":\"LORA\",\"r\":4,\"lora_alpha\":2,\"target_modules\":[\"embed_tokens\"],"
                      "\"modules_to_save\":[\"norm\"]}", emb, 3);
    const synth_tensor fifo[] = {
        {"model.layers.1.self_attn.o_proj.lora_A.weight", 2, 64, 11, ST_F32},
        {"model.layers.1.self_attn.o_proj.lora_B.weight", 64, 2, 12, ST_F32},
    };
    write_adapter(ad2, "{\"peft_type\":\"LORA\",\"r\":2,\"lora_alpha\":3,\"target_modules\":[\"o_proj\"],"
                       "\"layers_to_transform\":[1],\"fan_in_fan_out\":true}", fifo, 2);
    snprintf(base, sizeof base, "%s/models/stories260K", ts_shared());
    snprintf(out, sizeof out, "%s/out", tmp);
    lora_adapter ads[2];
    sm_err err = {0};
    cr_assert_eq(lora_open(&ads[0], ad, &err), 0, "%s", err.msg);
    cr_assert_eq(lora_open(&ads[1], ad2, &err), 0, "%s", err.msg);
    cr_assert_eq(ads[0].n_saved, 1);
    cr_assert_str_eq(ads[0].saved[0].target, "model.norm.weight");
    cr_assert_eq(ads[0].modules[0].kind, LORA_EMBEDDING);
    merge_opts o = {.base = base, .out = out, .adapters = ads, .n_adapters = 2, .outtype = MERGE_OUT_AUTO};
    merge_report rep;
    cr_assert_eq(merge_run(&o, &rep, &err), 0, "%s", err.msg);
    cr_assert_eq(rep.n_stats, 3);
    int saw_replaced = 0;
    for (uint64_t i = 0; i < rep.n_stats; i++)
        saw_replaced |= rep.stats[i].replaced;
    cr_assert(saw_replaced);
    merge_report_free(&rep);

    st_model m, b;
    cr_assert_eq(st_open(&m, out, &err), 0, "%s", err.msg);
    cr_assert_eq(st_open(&b, base, &err), 0, "%s", err.msg);
    /* embeddings: W[e][d] += 0.5 * sum_k B[d][k] A[k][e] */
    const st_tensor *me = &m.tensors[st_find(&m, "model.embed_tokens.weight")];
    const st_tensor *be = &b.tensors[st_find(&b, "model.embed_tokens.weight")];
    float *A = malloc(4 * 512 * 4), *B = malloc(64 * 4 * 4), *W = malloc(512 * 64 * 4);
    synth_fill(&emb[0], A);
    synth_fill(&emb[1], B);
    st_tensor_read_f32(be, 0, 512 * 64, W, &err);
    for (int e = 0; e < 512; e++)
        for (int d = 0; d < 64; d++) {
            float acc = 0;
            for (int k = 0; k < 4; k++)
                acc += B[d * 4 + k] * A[k * 512 + e];
            float want = W[e * 64 + d] + 0.5f * acc, got;
            memcpy(&got, me->data + 4 * (e * 64 + d), 4);
            cr_assert_eq(got, want, "embed[%d][%d]", e, d);
        }
    /* modules_to_save: the norm is replaced whole */
    const st_tensor *mn = &m.tensors[st_find(&m, "model.norm.weight")];
    float nv[64];
    synth_fill(&emb[2], nv);
    cr_assert_eq(memcmp(mn->data, nv, sizeof nv), 0);
    /* fan_in_fan_out: W[j][i] += 1.5 * (B A)[i][j] */
    const st_tensor *mo = &m.tensors[st_find(&m, "model.layers.1.self_attn.o_proj.weight")];
    const st_tensor *bo = &b.tensors[st_find(&b, "model.layers.1.self_attn.o_proj.weight")];
    synth_fill(&fifo[0], A);
    synth_fill(&fifo[1], B);
    st_tensor_read_f32(bo, 0, 64 * 64, W, &err);
    for (int i = 0; i < 64; i++)
        for (int j = 0; j < 64; j++) {
            float acc = 0;
            for (int k = 0; k < 2; k++)
                acc += B[i * 2 + k] * A[k * 64 + j];
            float want = W[j * 64 + i] + 1.5f * acc, got;
            memcpy(&got, mo->data + 4 * (j * 64 + i), 4);
            cr_assert_eq(got, want, "o_proj[%d][%d]", j, i);
        }
    /* untouched layer-0 o_proj is byte-identical */
    const st_tensor *m0 = &m.tensors[st_find(&m, "model.layers.0.self_attn.o_proj.weight")];
    const st_tensor *b0 = &b.tensors[st_find(&b, "model.layers.0.self_attn.o_proj.weight")];
    cr_assert_eq(memcmp(m0->data, b0->data, b0->nbytes), 0);
    free(A);
    free(B);
    free(W);
    st_close(&m);
    st_close(&b);

    /* GGUF export: token_embd lora_a is stored transposed; the saved norm is refused */
    char og[1100];
    snprintf(og, sizeof og, "%s/emb.gguf", tmp);
    export_info info;
    cr_assert_eq(export_gguf_lora(&ads[0], base, og, &info, &err), SM_EUNSUPP);
    cr_assert_not_null(strstr(err.msg, "modules_to_save"), "%s", err.msg);
    cr_assert_eq(access(og, F_OK), -1);
    cr_assert_eq(export_gguf_lora(&ads[1], base, og, &info, &err), SM_EUNSUPP);
    cr_assert_not_null(strstr(err.msg, "fan_in_fan_out"), "%s", err.msg);
    lora_close(&ads[0]);
    lora_close(&ads[1]);
    ts_rmtree(tmp);
    free(tmp);
}

Test(merge_synth, export_embedding_lora_transposes_a)
{
    char *tmp = ts_tmpdir();
    char ad[1100], og[1100], base[1024];
    snprintf(ad, sizeof ad, "%s/emb-only", tmp);
    const synth_tensor emb[] = {
        {"model.embed_tokens.lora_embedding_A", 4, 512, 7, ST_F32},
        {"model.embed_tokens.lora_embedding_B", 64, 4, 8, ST_F32},
        {"model.layers.0.self_attn.k_proj.lora_A.weight", 4, 64, 21, ST_F32},
        {"model.layers.0.self_attn.k_proj.lora_B.weight", 32, 4, 22, ST_F32},
    };
    write_adapter(ad, "{\"peft_type\":\"LORA\",\"r\":4,\"lora_alpha\":2,"
                      "\"target_modules\":\"model\\\\.embed_tokens|.*layers\\\\.0\\\\.self_attn\\\\.k_proj\"}", emb, 4);
    snprintf(base, sizeof base, "%s/reference/stories260K/convert-f16.gguf", ts_shared());
    snprintf(og, sizeof og, "%s/a.gguf", tmp);
    lora_adapter a;
    sm_err err = {0};
    cr_assert_eq(lora_open(&a, ad, &err), 0, "%s", err.msg);
    export_info info;
    cr_assert_eq(export_gguf_lora(&a, base, og, &info, &err), 0, "%s", err.msg);
    lora_close(&a);
    gguf_file g;
    cr_assert_eq(gguf_open(&g, og, &err), 0, "%s", err.msg);
    cr_assert_eq(g.n_tensors, 4);
    const gguf_tensor *la = &g.tensors[gguf_find_tensor(&g, "token_embd.weight.lora_a")];
    cr_assert_eq(la->ne[0], 4);
    cr_assert_eq(la->ne[1], 512);
    float A[4 * 512], got;
    synth_fill(&emb[0], A);
    for (int e = 0; e < 512; e += 17)
        for (int k = 0; k < 4; k++) {
            memcpy(&got, la->data + 4 * (e * 4 + k), 4);
            cr_assert_eq(got, A[k * 512 + e]);
        }
    const gguf_tensor *kb = &g.tensors[gguf_find_tensor(&g, "blk.0.attn_k.weight.lora_b")];
    cr_assert_eq(kb->ne[0], 4);
    cr_assert_eq(kb->ne[1], 32);
    /* rows permuted with 4 KV heads of 8: dest row 1 = source row 4 */
    float B[32 * 4];
    synth_fill(&emb[3], B);
    memcpy(&got, kb->data + 4 * (1 * 4 + 2), 4);
    cr_assert_eq(got, B[4 * 4 + 2]);
    sm_str name;
    cr_assert_eq(gguf_get_str(&g, "general.name", &name, &err), 0);
    cr_assert(sm_str_eq(name, "Emb Only"));
    gguf_close(&g);
    ts_rmtree(tmp);
    free(tmp);
}

Test(merge_synth, cli_two_adapters_json_summary)
{
    build_qk_list();
    char *tmp = ts_tmpdir();
    char ad[1100], cmd[4096], out[1100];
    snprintf(ad, sizeof ad, "%s/synth-qk", tmp);
    write_adapter(ad, qk_cfg, qk_tensors, n_qk_tensors);
    snprintf(out, sizeof out, "%s/o.gguf", tmp);
    const char *bin = getenv("SMELT_BIN");
    snprintf(cmd, sizeof cmd, "%s/smelt-merge --base %s/reference/stories260K/convert-f16.gguf --lora %s:0.5 --lora %s:-0.5 "
             "-o %s --json --outtype f32 2>/dev/null", bin && *bin ? bin : "build/release", ts_shared(), ad, ad, out);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, p);
    buf[n] = '\0';
    cr_assert_eq(pclose(p), 0, "%s", buf);
    json_t *j = json_loads(buf, 0, NULL);
    cr_assert_not_null(j, "%s", buf);
    cr_assert_eq(json_integer_value(json_object_get(j, "tensors_changed")), 11);
    cr_assert_eq(json_integer_value(json_object_get(json_array_get(json_object_get(j, "changed"), 0), "adapters")), 2);
    json_decref(j);
    /* +0.5 then -0.5 of the same adapter: every matrix is F32 now and nearly the base */
    gguf_file g, b;
    sm_err err = {0};
    char base[1024];
    snprintf(base, sizeof base, "%s/reference/stories260K/convert-f16.gguf", ts_shared());
    cr_assert_eq(gguf_open(&g, out, &err), 0, "%s", err.msg);
    cr_assert_eq(gguf_open(&b, base, &err), 0, "%s", err.msg);
    uint32_t ft;
    cr_assert_eq(gguf_get_u32(&g, "general.file_type", &ft, &err), 0);
    cr_assert_eq(ft, 0);
    const gguf_tensor *q = &g.tensors[gguf_find_tensor(&g, "blk.0.attn_q.weight")];
    const gguf_tensor *bq = &b.tensors[gguf_find_tensor(&b, "blk.0.attn_q.weight")];
    cr_assert_eq(q->type, SM_TYPE_F32);
    for (int k = 0; k < 64 * 64; k++) {
        float x;
        memcpy(&x, q->data + 4 * k, 4);
        float y = sm_f16_to_f32((uint16_t)(bq->data[2 * k] | bq->data[2 * k + 1] << 8));
        cr_assert_float_eq(x, y, 1e-6f, "[%d]", k);
    }
    gguf_close(&g);
    gguf_close(&b);
    ts_rmtree(tmp);
    free(tmp);
}

Test(merge_synth, export_reads_model_card_front_matter)
{
    char *tmp = ts_tmpdir();
    char ad[1100], og[1100], base[1024], p[1200];
    snprintf(ad, sizeof ad, "%s/stories-chat-lora", tmp);
    const synth_tensor ts[] = {
        {"model.layers.0.self_attn.v_proj.lora_A.weight", 4, 64, 31, ST_F32},
        {"model.layers.0.self_attn.v_proj.lora_B.weight", 32, 4, 32, ST_F32},
    };
    write_adapter(ad, "{\"peft_type\":\"LORA\",\"r\":4,\"lora_alpha\":4,\"target_modules\":[\"v_proj\"],"
                      "\"layers_to_transform\":[0]}", ts, 2);
    snprintf(p, sizeof p, "%s/README.md", ad);
    FILE *f = fopen(p, "w");
    fputs("---\nlicense: mit\ntags:\n- a\n- 'b'\npipeline_tag: text-generation\nlanguage: [en, fr]\n"
          "base_model: org/Some-Model-v1.2-7B\nlibrary_name: peft\n---\n# card\n", f);
    fclose(f);
    snprintf(base, sizeof base, "%s/reference/stories260K/convert-f32.gguf", ts_shared());
    snprintf(og, sizeof og, "%s/a.gguf", tmp);
    lora_adapter a;
    sm_err err = {0};
    cr_assert_eq(lora_open(&a, ad, &err), 0, "%s", err.msg);
    export_info info;
    cr_assert_eq(export_gguf_lora(&a, base, og, &info, &err), 0, "%s", err.msg);
    lora_close(&a);
    gguf_file g;
    cr_assert_eq(gguf_open(&g, og, &err), 0, "%s", err.msg);
    sm_str s;
    cr_assert_eq(gguf_get_str(&g, "general.name", &s, &err), 0);
    cr_assert(sm_str_eq(s, "Stories Chat Lora"));
    cr_assert_eq(gguf_get_str(&g, "general.finetune", &s, &err), 0);
    cr_assert(sm_str_eq(s, "chat")); /* "lora" is dropped for an adapter */
    cr_assert_eq(gguf_get_str(&g, "general.license", &s, &err), 0);
    cr_assert(sm_str_eq(s, "mit"));
    cr_assert_eq(gguf_get_str(&g, "general.base_model.0.name", &s, &err), 0);
    cr_assert(sm_str_eq(s, "Some Model v1.2 7B"));
    cr_assert_eq(gguf_get_str(&g, "general.base_model.0.organization", &s, &err), 0);
    cr_assert(sm_str_eq(s, "Org"));
    cr_assert_eq(gguf_find_key(&g, "general.base_model.0.version"), -1);
    const gguf_kv *tags = gguf_get(&g, "general.tags");
    cr_assert_not_null(tags);
    cr_assert_eq(tags->n, 3);
    cr_assert(sm_str_eq(tags->strs[1], "b"));
    cr_assert(sm_str_eq(tags->strs[2], "text-generation"));
    const gguf_kv *langs = gguf_get(&g, "general.languages");
    cr_assert_not_null(langs);
    cr_assert_eq(langs->n, 2);
    cr_assert(sm_str_eq(langs->strs[1], "fr"));
    gguf_close(&g);
    ts_rmtree(tmp);
    free(tmp);
}

Test(merge_synth, threads_do_not_change_bits)
{
    /* a 1024 x 1536 matrix (12.6 M multiply-adds at r 8) is split over threads */
    char *tmp = ts_tmpdir();
    char base[1100], ad[1100], p[1200];
    snprintf(base, sizeof base, "%s/base", tmp);
    snprintf(ad, sizeof ad, "%s/ad", tmp);
    mkdir(base, 0755);
    snprintf(p, sizeof p, "%s/config.json", base);
    FILE *f = fopen(p, "w");
    fputs("{\"torch_dtype\": \"float32\"}\n", f);
    fclose(f);
    const synth_tensor wt = {"model.layers.0.mlp.up_proj.weight", 1024, 1536, 77, ST_F32};
    float *W = malloc(1024 * 1536 * 4);
    synth_fill(&wt, W);
    st_writer *w = st_writer_init();
    sm_err err = {0};
    int64_t shape[2] = {1024, 1536};
    cr_assert_eq(st_writer_add_tensor(w, wt.name, ST_F32, 2, shape, &err), 0);
    snprintf(p, sizeof p, "%s/model.safetensors", base);
    cr_assert_eq(st_writer_begin(w, p, &err), 0);
    cr_assert_eq(st_writer_write(w, W, 1024 * 1536 * 4, &err), 0);
    cr_assert_eq(st_writer_finish(w, &err), 0);
    st_writer_free(w);
    const synth_tensor ts[] = {
        {"model.layers.0.mlp.up_proj.lora_A.weight", 8, 1536, 78, ST_F32},
        {"model.layers.0.mlp.up_proj.lora_B.weight", 1024, 8, 79, ST_F32},
    };
    write_adapter(ad, "{\"peft_type\":\"LORA\",\"r\":8,\"lora_alpha\":8,\"target_modules\":[\"up_proj\"]}", ts, 2);
    float *A = malloc(8 * 1536 * 4), *B = malloc(1024 * 8 * 4);
    synth_fill(&ts[0], A);
    synth_fill(&ts[1], B);
    for (int i = 0; i < 1024; i++)
        for (int j = 0; j < 1536; j++) {
            float acc = 0;
            for (int k = 0; k < 8; k++)
                acc += B[i * 8 + k] * A[k * 1536 + j];
            W[i * 1536 + j] = W[i * 1536 + j] + 1.0f * acc;
        }
    const uint32_t threads[] = {1, 3, 16};
    for (int t = 0; t < 3; t++) {
        lora_adapter a;
        cr_assert_eq(lora_open(&a, ad, &err), 0, "%s", err.msg);
        char out[1200];
        snprintf(out, sizeof out, "%s/out%d", tmp, t);
        merge_opts o = {.base = base, .out = out, .adapters = &a, .n_adapters = 1, .outtype = MERGE_OUT_AUTO,
                        .n_threads = threads[t]};
        merge_report rep;
        cr_assert_eq(merge_run(&o, &rep, &err), 0, "%s", err.msg);
        merge_report_free(&rep);
        lora_close(&a);
        st_model m;
        cr_assert_eq(st_open(&m, out, &err), 0, "%s", err.msg);
        cr_assert_eq(memcmp(m.tensors[0].data, W, 1024 * 1536 * 4), 0, "%u threads", threads[t]);
        st_close(&m);
    }
    free(A);
    free(B);
    free(W);
    ts_rmtree(tmp);
    free(tmp);
}
