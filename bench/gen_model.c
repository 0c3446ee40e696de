/* gen_model — writes a llama-shaped Hugging Face checkpoint with random
 * weights, for benchmarks (the shapes of real models without their size on
 * the repo). Output: DIR/config.json, DIR/model-0000K-of-0000N.safetensors +
 * index (or one model.safetensors), and a copy of a tokenizer.model.
 *
 * usage: gen_model DIR TOKENIZER_MODEL [--dtype bf16|f16|f32] [--hidden 2048]
 *        [--layers 22] [--heads 32] [--kv-heads 4] [--ffn 5632] [--vocab 32000]
 *        [--shard-mb 2000] [--seed 1]
 * Defaults are TinyLlama-1.1B's shape. Weights ~ N(0, 0.02), norms 1. */
#include "formats/fp16.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct spec {
    char name[128];
    int64_t rows, cols; /* cols 0 = 1-D */
    int is_norm;
} spec;

static uint64_t rng = 88172645463325252ull;
static double uniform(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return ((rng >> 11) + 0.5) * 0x1p-53;
}
static float gauss(void)
{
    /* Box-Muller; quality is irrelevant, speed matters a little */
    double u = uniform(), v = uniform();
    return (float)(sqrt(-2.0 * log(u)) * cos(2.0 * M_PI * v));
}

static int dtype_size(const char *d) { return strcmp(d, "f32") == 0 ? 4 : 2; }

static void fill(uint8_t *dst, int64_t n, const char *dtype, int is_norm)
{
    for (int64_t i = 0; i < n; i++) {
        float x = is_norm ? 1.0f : 0.02f * gauss();
        if (!strcmp(dtype, "f32"))
            memcpy(dst + 4 * i, &x, 4);
        else {
            uint16_t h = !strcmp(dtype, "bf16") ? sm_f32_to_bf16(x) : sm_f32_to_f16(x);
            memcpy(dst + 2 * i, &h, 2);
        }
    }
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s DIR TOKENIZER_MODEL [options]\n", argv[0]);
        return 2;
    }
    const char *dir = argv[1], *tok = argv[2], *dtype = "bf16";
    long hidden = 2048, layers = 22, heads = 32, kv = 4, ffn = 5632, vocab = 32000, shard_mb = 2000;
    for (int i = 3; i + 1 < argc; i += 2) {
        const char *k = argv[i];
        long v = strtol(argv[i + 1], NULL, 10);
        if (!strcmp(k, "--dtype")) dtype = argv[i + 1];
        else if (!strcmp(k, "--hidden")) hidden = v;
        else if (!strcmp(k, "--layers")) layers = v;
        else if (!strcmp(k, "--heads")) heads = v;
        else if (!strcmp(k, "--kv-heads")) kv = v;
        else if (!strcmp(k, "--ffn")) ffn = v;
        else if (!strcmp(k, "--vocab")) vocab = v;
        else if (!strcmp(k, "--shard-mb")) shard_mb = v;
        else if (!strcmp(k, "--seed")) rng = (uint64_t)v * 2654435761u + 1;
        else { fprintf(stderr, "unknown option %s\n", k); return 2; }
    }
    mkdir(dir, 0755);
    int64_t hd = hidden / heads;
    size_t n_specs = 3 + (size_t)layers * 9, k = 0;
    spec *s = calloc(n_specs, sizeof *s);
    snprintf(s[k].name, sizeof s[k].name, "model.embed_tokens.weight"); s[k].rows = vocab; s[k++].cols = hidden;
    for (long l = 0; l < layers; l++) {
        const struct { const char *n; int64_t r, c; int norm; } t[9] = {
            {"input_layernorm", hidden, 0, 1}, {"self_attn.q_proj", hidden, hidden, 0},
            {"self_attn.k_proj", kv * hd, hidden, 0}, {"self_attn.v_proj", kv * hd, hidden, 0},
            {"self_attn.o_proj", hidden, hidden, 0}, {"post_attention_layernorm", hidden, 0, 1},
            {"mlp.gate_proj", ffn, hidden, 0}, {"mlp.up_proj", ffn, hidden, 0}, {"mlp.down_proj", hidden, ffn, 0}};
        for (int j = 0; j < 9; j++) {
            snprintf(s[k].name, sizeof s[k].name, "model.layers.%ld.%s.weight", l, t[j].n);
            s[k].rows = t[j].r; s[k].cols = t[j].c; s[k++].is_norm = t[j].norm;
        }
    }
    snprintf(s[k].name, sizeof s[k].name, "model.norm.weight"); s[k].rows = hidden; s[k++].is_norm = 1;
    snprintf(s[k].name, sizeof s[k].name, "lm_head.weight"); s[k].rows = vocab; s[k++].cols = hidden;
    /* assign tensors to shards of at most shard_mb */
    int es = dtype_size(dtype);
    uint64_t limit = (uint64_t)shard_mb << 20, cur = 0, total = 0;
    int *shard = calloc(n_specs, sizeof *shard), n_shards = 1;
    for (size_t i = 0; i < n_specs; i++) {
        uint64_t b = (uint64_t)s[i].rows * (uint64_t)(s[i].cols ? s[i].cols : 1) * (uint64_t)es;
        if (cur && cur + b > limit) { n_shards++; cur = 0; }
        shard[i] = n_shards - 1;
        cur += b;
        total += b;
    }
    const char *st_dtype = !strcmp(dtype, "f32") ? "F32" : !strcmp(dtype, "f16") ? "F16" : "BF16";
    char path[4096];
    FILE *idx = NULL;
    if (n_shards > 1) {
        snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
        idx = fopen(path, "w");
        fprintf(idx, "{\"metadata\": {\"total_size\": %llu}, \"weight_map\": {", (unsigned long long)total);
    }
    int first_in_index = 1;
    uint8_t *buf = NULL;
    size_t cap = 0;
    for (int sh = 0; sh < n_shards; sh++) {
        if (n_shards > 1)
            snprintf(path, sizeof path, "%s/model-%05d-of-%05d.safetensors", dir, sh + 1, n_shards);
        else
            snprintf(path, sizeof path, "%s/model.safetensors", dir);
        /* header */
        size_t hcap = 1 << 20, hl = 0;
        char *h = malloc(hcap);
        hl += (size_t)snprintf(h + hl, hcap - hl, "{\"__metadata__\":{\"format\":\"pt\"}");
        uint64_t off = 0;
        for (size_t i = 0; i < n_specs; i++) {
            if (shard[i] != sh) continue;
            uint64_t b = (uint64_t)s[i].rows * (uint64_t)(s[i].cols ? s[i].cols : 1) * (uint64_t)es;
            if (s[i].cols)
                hl += (size_t)snprintf(h + hl, hcap - hl, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%lld,%lld],\"data_offsets\":[%llu,%llu]}",
                                       s[i].name, st_dtype, (long long)s[i].rows, (long long)s[i].cols,
                                       (unsigned long long)off, (unsigned long long)(off + b));
            else
                hl += (size_t)snprintf(h + hl, hcap - hl, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%lld],\"data_offsets\":[%llu,%llu]}",
                                       s[i].name, st_dtype, (long long)s[i].rows, (unsigned long long)off,
                                       (unsigned long long)(off + b));
            off += b;
            if (idx) {
                fprintf(idx, "%s\"%s\": \"model-%05d-of-%05d.safetensors\"", first_in_index ? "" : ", ", s[i].name, sh + 1, n_shards);
                first_in_index = 0;
            }
        }
        hl += (size_t)snprintf(h + hl, hcap - hl, "}");
        while (hl % 8) h[hl++] = ' '; /* align data to 8 like the python writer */
        FILE *f = fopen(path, "wb");
        if (!f) { perror(path); return 1; }
        uint64_t hl64 = hl;
        fwrite(&hl64, 8, 1, f);
        fwrite(h, 1, hl, f);
        free(h);
        for (size_t i = 0; i < n_specs; i++) {
            if (shard[i] != sh) continue;
            int64_t n = s[i].rows * (s[i].cols ? s[i].cols : 1);
            size_t b = (size_t)n * (size_t)es;
            if (b > cap) { buf = realloc(buf, b); cap = b; }
            fill(buf, n, dtype, s[i].is_norm);
            if (fwrite(buf, 1, b, f) != b) { perror(path); return 1; }
        }
        if (fclose(f) != 0) { perror(path); return 1; }
        fprintf(stderr, "wrote %s\n", path);
    }
    if (idx) { fprintf(idx, "}}\n"); fclose(idx); }
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *c = fopen(path, "w");
    fprintf(c, "{\n  \"architectures\": [\"LlamaForCausalLM\"],\n  \"model_type\": \"llama\",\n  \"hidden_size\": %ld,\n"
               "  \"intermediate_size\": %ld,\n  \"num_hidden_layers\": %ld,\n  \"num_attention_heads\": %ld,\n"
               "  \"num_key_value_heads\": %ld,\n  \"vocab_size\": %ld,\n  \"max_position_embeddings\": 2048,\n"
               "  \"rms_norm_eps\": 1e-05,\n  \"rope_theta\": 10000.0,\n  \"tie_word_embeddings\": false,\n"
               "  \"torch_dtype\": \"%s\",\n  \"bos_token_id\": 1,\n  \"eos_token_id\": 2\n}\n",
            hidden, ffn, layers, heads, kv, vocab, !strcmp(dtype, "f32") ? "float32" : !strcmp(dtype, "f16") ? "float16" : "bfloat16");
    fclose(c);
    char cmd[8300];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s/tokenizer.model'", tok, dir);
    if (system(cmd) != 0) { fprintf(stderr, "cannot copy tokenizer\n"); return 1; }
    fprintf(stderr, "%s: %llu parameters, %.2f GB %s in %d shard(s)\n", dir,
            (unsigned long long)(total / (uint64_t)es), total / 1e9, st_dtype, n_shards);
    free(buf); free(s); free(shard);
    return 0;
}
