/* gen_lora — writes a PEFT LoRA adapter with small random weights for a
 * llama-shaped HF model, so the merge step of the pipeline can be shown and
 * benchmarked without a trained adapter. The deltas are small on purpose
 * (||scale*B*A|| is about 1 % of ||W||): the merged model stays usable.
 *
 * usage: gen_lora OUT_DIR --layers N --hidden H --kv-dim K [--rank 4] [--alpha 4] [--seed 1]
 * Targets q_proj and v_proj (PEFT's default for llama). */
#include "formats/err.h"
#include "formats/safetensors.h"
#include "formats/safetensors_write.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static float gauss(void)
{
    double u[2];
    for (int i = 0; i < 2; i++) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        u[i] = ((rng >> 11) + 0.5) * 0x1p-53;
    }
    return (float)(sqrt(-2.0 * log(u[0])) * cos(2.0 * M_PI * u[1]));
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s OUT_DIR --layers N --hidden H --kv-dim K [--rank 4] [--alpha 4] [--seed 1]\n", argv[0]);
        return 2;
    }
    const char *dir = argv[1];
    long layers = 5, hidden = 64, kv = 32, rank = 4, alpha = 4;
    for (int i = 2; i + 1 < argc; i += 2) {
        long v = strtol(argv[i + 1], NULL, 10);
        if (!strcmp(argv[i], "--layers")) layers = v;
        else if (!strcmp(argv[i], "--hidden")) hidden = v;
        else if (!strcmp(argv[i], "--kv-dim")) kv = v;
        else if (!strcmp(argv[i], "--rank")) rank = v;
        else if (!strcmp(argv[i], "--alpha")) alpha = v;
        else if (!strcmp(argv[i], "--seed")) rng = (uint64_t)v * 0x9E3779B97F4A7C15ull + 1;
        else { fprintf(stderr, "unknown option %s\n", argv[i]); return 2; }
    }
    mkdir(dir, 0755);
    char path[4096];
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    FILE *f = fopen(path, "w");
    if (!f) { perror(path); return 1; }
    fprintf(f, "{\n  \"peft_type\": \"LORA\",\n  \"task_type\": \"CAUSAL_LM\",\n  \"base_model_name_or_path\": \"stories260K\",\n"
               "  \"r\": %ld,\n  \"lora_alpha\": %ld,\n  \"lora_dropout\": 0.0,\n  \"target_modules\": [\"q_proj\", \"v_proj\"],\n"
               "  \"fan_in_fan_out\": false,\n  \"bias\": \"none\",\n  \"use_rslora\": false,\n  \"use_dora\": false,\n"
               "  \"modules_to_save\": null,\n  \"inference_mode\": true\n}\n", rank, alpha);
    fclose(f);
    st_writer *w = st_writer_init();
    sm_err err = {0};
    const char *proj[2] = {"q_proj", "v_proj"};
    for (long l = 0; l < layers; l++)
        for (int p = 0; p < 2; p++) {
            long out = p == 0 ? hidden : kv;
            char name[256];
            snprintf(name, sizeof name, "base_model.model.model.layers.%ld.self_attn.%s.lora_A.weight", l, proj[p]);
            int64_t sa[2] = {rank, hidden}, sb[2] = {out, rank};
            if (st_writer_add_tensor(w, name, ST_F32, 2, sa, &err)) goto fail;
            snprintf(name, sizeof name, "base_model.model.model.layers.%ld.self_attn.%s.lora_B.weight", l, proj[p]);
            if (st_writer_add_tensor(w, name, ST_F32, 2, sb, &err)) goto fail;
        }
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    if (st_writer_begin(w, path, &err)) goto fail;
    for (long l = 0; l < layers; l++)
        for (int p = 0; p < 2; p++) {
            long out = p == 0 ? hidden : kv;
            size_t na = (size_t)(rank * hidden), nb = (size_t)(out * rank);
            float *a = malloc(na * 4), *b = malloc(nb * 4);
            for (size_t i = 0; i < na; i++) a[i] = 0.1f * gauss();
            for (size_t i = 0; i < nb; i++) b[i] = 0.01f * gauss();
            if (st_writer_write(w, a, na * 4, &err) || st_writer_write(w, b, nb * 4, &err)) goto fail;
            free(a);
            free(b);
        }
    if (st_writer_finish(w, &err)) goto fail;
    st_writer_free(w);
    fprintf(stderr, "wrote %s (r %ld, alpha %ld, %ld layers, q_proj + v_proj)\n", dir, rank, alpha, layers);
    return 0;
fail:
    fprintf(stderr, "gen_lora: %s\n", err.msg);
    st_writer_free(w);
    return 1;
}
