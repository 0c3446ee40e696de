/* libFuzzer target: PEFT adapter_config.json (lora_config_parse), then the
 * module selection and scale resolution over a few real module names, which
 * run the regular expressions the config supplies. */
#include "merge/adapter.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const modules[] = {
        "model.layers.0.self_attn.q_proj", "model.layers.3.mlp.down_proj", "model.embed_tokens", "lm_head",
        "model.layers.12.self_attn.o_proj",
    };
    lora_config cfg;
    sm_err err;
    if (lora_config_parse(&cfg, (const char *)data, size, "adapter_config.json", &err) != 0)
        return 0;
    volatile double acc = 0;
    for (size_t i = 0; i < sizeof modules / sizeof modules[0]; i++) {
        uint32_t r = 0;
        double alpha = 0;
        const char *rk = NULL, *ak = NULL;
        acc += lora_config_targets(&cfg, modules[i]);
        acc += lora_config_scale(&cfg, modules[i], &r, &alpha, &rk, &ak) + r + alpha;
    }
    (void)acc;
    lora_config_free(&cfg);
    return 0;
}
