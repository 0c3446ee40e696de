/* export.c — PEFT adapter -> llama.cpp GGUF LoRA (see export.h). */
#include "export.h"
#include "naming.h"

#include "merge.h"

#include "gguf.h"
#include "safetensors.h"
#include "types.h"

#include <ctype.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ------------------------------------------------------------ naming */

/* Metadata.id_to_title of gguf-py (formats/naming.c), into a fixed buffer. */
static void id_to_title(const char *id, char *out, size_t out_len)
{
    char *t = sm_id_to_title(id);
    snprintf(out, out_len, "%s", t ? t : id);
    free(t);
}

void export_model_names(const char *dir_name, int64_t total_params, export_names *out)
{
    memset(out, 0, sizeof *out);
    sm_naming n = {0};
    if (sm_naming_from_id(&n, dir_name, total_params) == 0) {
        snprintf(out->name, sizeof out->name, "%s", n.name ? n.name : "");
        snprintf(out->basename, sizeof out->basename, "%s", n.basename ? n.basename : "");
        snprintf(out->finetune, sizeof out->finetune, "%s", n.finetune ? n.finetune : "");
        snprintf(out->version, sizeof out->version, "%s", n.version ? n.version : "");
        snprintf(out->size_label, sizeof out->size_label, "%s", n.size_label ? n.size_label : "");
    }
    sm_naming_free(&n);
}

/* ------------------------------------------------------------ model card */

/* The part of a README.md model card gguf-py turns into keys, from a YAML
 * front matter limited to "key: scalar", "key: [a, b]" and block lists. */
#define CARD_MAX_ITEMS 32
typedef struct card_info {
    char base_models[CARD_MAX_ITEMS][256];
    uint32_t n_base_models;
    char license[256];
    char tags[CARD_MAX_ITEMS][128];
    uint32_t n_tags;
    char langs[CARD_MAX_ITEMS][64];
    uint32_t n_langs;
} card_info;

static void card_scalar(char *v)
{
    size_t n = strlen(v);
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\r' || v[n - 1] == '\t'))
        v[--n] = '\0';
    if (n >= 2 && (v[0] == '"' || v[0] == '\'') && v[n - 1] == v[0]) {
        memmove(v, v + 1, n - 2);
        v[n - 2] = '\0';
    }
}

/* Appends the item(s) of value v (scalar or [a, b]) to list. */
static void card_add(char *v, char *list, size_t item_len, uint32_t *n)
{
    char *p = v;
    while (*p == ' ')
        p++;
    int flow = *p == '[';
    if (flow) {
        p++;
        char *end = strrchr(p, ']');
        if (end)
            *end = '\0';
    }
    char *save = NULL;
    for (char *it = flow ? strtok_r(p, ",", &save) : p; it; it = flow ? strtok_r(NULL, ",", &save) : NULL) {
        while (*it == ' ')
            it++;
        card_scalar(it);
        if (*it && *n < CARD_MAX_ITEMS)
            snprintf(list + item_len * (*n)++, item_len, "%s", it);
    }
}

static void card_load(const char *dir, card_info *c)
{
    memset(c, 0, sizeof *c);
    char path[4096];
    char *txt = NULL;
    uint64_t len = 0;
    snprintf(path, sizeof path, "%s/README.md", dir);
    if (sm_read_file(path, 1u << 20, &txt, &len, NULL) < 0)
        return;
    if (strncmp(txt, "---\n", 4) != 0) {
        free(txt);
        return;
    }
    char *body = txt + 4;
    char *end = strstr(body, "---\n"); /* Python: f.read().partition("---\n")[0] */
    if (end)
        *end = '\0';
    /* key of the current block list, and lists for the two kinds of tags */
    char cur[64] = "";
    char tags[CARD_MAX_ITEMS][128], ptags[CARD_MAX_ITEMS][128], langs1[CARD_MAX_ITEMS][64], langs2[CARD_MAX_ITEMS][64];
    uint32_t nt = 0, npt = 0, nl1 = 0, nl2 = 0;
    char *save = NULL;
    for (char *line = strtok_r(body, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *v;
        if (line[0] == ' ' || line[0] == '-') {
            char *p = line;
            while (*p == ' ')
                p++;
            if (*p != '-')
                continue;
            v = p + 1;
        } else {
            char *colon = strchr(line, ':');
            if (!colon)
                continue;
            *colon = '\0';
            snprintf(cur, sizeof cur, "%s", line);
            v = colon + 1;
            while (*v == ' ')
                v++;
            if (!*v)
                continue;
        }
        if (strcmp(cur, "base_model") == 0)
            card_add(v, &c->base_models[0][0], sizeof c->base_models[0], &c->n_base_models);
        else if (strcmp(cur, "license") == 0 && !c->license[0]) {
            card_scalar(v);
            snprintf(c->license, sizeof c->license, "%s", v);
        } else if (strcmp(cur, "tags") == 0)
            card_add(v, &tags[0][0], sizeof tags[0], &nt);
        else if (strcmp(cur, "pipeline_tag") == 0)
            card_add(v, &ptags[0][0], sizeof ptags[0], &npt);
        else if (strcmp(cur, "languages") == 0)
            card_add(v, &langs1[0][0], sizeof langs1[0], &nl1);
        else if (strcmp(cur, "language") == 0)
            card_add(v, &langs2[0][0], sizeof langs2[0], &nl2);
    }
    /* gguf-py order: tags then pipeline_tag; languages then language */
    for (uint32_t i = 0; i < nt && c->n_tags < CARD_MAX_ITEMS; i++)
        memcpy(c->tags[c->n_tags++], tags[i], sizeof c->tags[0]);
    for (uint32_t i = 0; i < npt && c->n_tags < CARD_MAX_ITEMS; i++)
        memcpy(c->tags[c->n_tags++], ptags[i], sizeof c->tags[0]);
    for (uint32_t i = 0; i < nl1 && c->n_langs < CARD_MAX_ITEMS; i++)
        memcpy(c->langs[c->n_langs++], langs1[i], sizeof c->langs[0]);
    for (uint32_t i = 0; i < nl2 && c->n_langs < CARD_MAX_ITEMS; i++)
        memcpy(c->langs[c->n_langs++], langs2[i], sizeof c->langs[0]);
    free(txt);
}

/* general.base_model.N.* for one model id, as gguf-py derives them. */
static int card_write_base_model(gguf_writer *w, uint32_t idx, const char *id, int64_t total_params)
{
    char key[96], org[256] = "", full[256] = "", repo[600] = "", title[256];
    const char *hf = id;
    int is_url = strncmp(id, "http://", 7) == 0 || strncmp(id, "https://", 8) == 0 || strncmp(id, "ssh://", 6) == 0;
    int rc = 0;
    if (is_url) {
        snprintf(repo, sizeof repo, "%s", id);
        const char *p = strstr(id, "huggingface.co/");
        hf = NULL;
        if (p && sm_fullmatch("https?://huggingface.co/[^/]+/[^/]+", id, 1) && strncmp(id, "http", 4) == 0)
            hf = p + strlen("huggingface.co/");
    }
    if (hf) {
        const char *slash = strchr(hf, '/');
        if (slash) {
            snprintf(org, sizeof org, "%.*s", (int)(slash - hf), hf);
            snprintf(full, sizeof full, "%s", slash + 1);
            if (org[0] == '.')
                org[0] = '\0';
        } else {
            snprintf(full, sizeof full, "%s", hf);
        }
        if (strchr(hf, ' ')) { /* a sentence, not an id */
            snprintf(full, sizeof full, "%s", hf);
            org[0] = '\0';
        }
    }
    if (full[0]) {
        id_to_title(full, title, sizeof title);
        snprintf(key, sizeof key, "general.base_model.%u.name", idx);
        rc |= gguf_writer_set_str(w, key, title);
    }
    if (full[0] && !strchr(full, ' ')) {
        export_names nm;
        export_model_names(full, total_params, &nm);
        if (nm.version[0]) {
            snprintf(key, sizeof key, "general.base_model.%u.version", idx);
            rc |= gguf_writer_set_str(w, key, nm.version);
        }
    }
    if (org[0]) {
        id_to_title(org, title, sizeof title);
        snprintf(key, sizeof key, "general.base_model.%u.organization", idx);
        rc |= gguf_writer_set_str(w, key, title);
    }
    if (!is_url && org[0] && full[0])
        snprintf(repo, sizeof repo, "https://huggingface.co/%s/%s", org, full);
    if (repo[0]) {
        snprintf(key, sizeof key, "general.base_model.%u.repo_url", idx);
        rc |= gguf_writer_set_str(w, key, repo);
    }
    return rc;
}

/* ------------------------------------------------------------ base info */

typedef struct base_info {
    char arch[64];
    uint32_t n_head, n_head_kv;
    gguf_file g;              /* when the base is a GGUF */
    int have_gguf;
    st_model st;              /* when the base is an HF directory */
    int have_st;
} base_info;

static int base_load(base_info *b, const char *base, sm_err *err)
{
    memset(b, 0, sizeof *b);
    struct stat sb;
    int rc;
    if (stat(base, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        char path[4096];
        char *txt = NULL;
        uint64_t len = 0;
        snprintf(path, sizeof path, "%s/config.json", base);
        rc = sm_read_file(path, 16u << 20, &txt, &len, err);
        if (rc < 0)
            return rc;
        json_error_t je;
        json_t *root = json_loadb(txt, (size_t)len, 0, &je);
        free(txt);
        if (!root)
            return sm_err_set(err, SM_EFORMAT, "%s: invalid JSON at line %d: %s", path, je.line, je.text);
        const char *a = json_string_value(json_array_get(json_object_get(root, "architectures"), 0));
        const json_t *nh = json_object_get(root, "num_attention_heads");
        const json_t *nkv = json_object_get(root, "num_key_value_heads");
        rc = SM_OK;
        if (!a)
            rc = sm_err_set(err, SM_EMISSING, "%s: \"architectures\" missing", path);
        else if (strcmp(a, "LlamaForCausalLM") == 0 || strcmp(a, "MistralForCausalLM") == 0 ||
                 strcmp(a, "LLaMAForCausalLM") == 0)
            snprintf(b->arch, sizeof b->arch, "llama");
        else if (strcmp(a, "Qwen2ForCausalLM") == 0)
            snprintf(b->arch, sizeof b->arch, "qwen2");
        else
            rc = sm_err_set(err, SM_EUNSUPP, "%s: architecture %s: GGUF LoRA export knows llama and qwen2", path, a);
        if (rc == SM_OK && !json_is_integer(nh))
            rc = sm_err_set(err, SM_EMISSING, "%s: num_attention_heads missing", path);
        if (rc == SM_OK) {
            b->n_head = (uint32_t)json_integer_value(nh);
            b->n_head_kv = json_is_integer(nkv) ? (uint32_t)json_integer_value(nkv) : b->n_head;
        }
        json_decref(root);
        if (rc < 0)
            return rc;
        /* Tensors are optional (llama.cpp converts with a config-only base). */
        sm_err e2;
        if (st_open(&b->st, base, &e2) == SM_OK)
            b->have_st = 1;
        return SM_OK;
    }
    rc = gguf_open(&b->g, base, err);
    if (rc < 0)
        return rc;
    b->have_gguf = 1;
    sm_str arch;
    rc = gguf_get_str(&b->g, "general.architecture", &arch, err);
    if (rc < 0)
        return rc;
    snprintf(b->arch, sizeof b->arch, "%.*s", (int)(arch.len < 63 ? arch.len : 63), arch.ptr);
    if (strcmp(b->arch, "llama") != 0 && strcmp(b->arch, "qwen2") != 0)
        return sm_err_set(err, SM_EUNSUPP, "%s: architecture %s: GGUF LoRA export knows llama and qwen2", base, b->arch);
    char key[128];
    snprintf(key, sizeof key, "%s.attention.head_count", b->arch);
    rc = gguf_get_u32(&b->g, key, &b->n_head, err);
    if (rc < 0)
        return rc;
    snprintf(key, sizeof key, "%s.attention.head_count_kv", b->arch);
    if (gguf_get_u32(&b->g, key, &b->n_head_kv, NULL) < 0)
        b->n_head_kv = b->n_head;
    return SM_OK;
}

static void base_free(base_info *b)
{
    if (b->have_gguf)
        gguf_close(&b->g);
    if (b->have_st)
        st_close(&b->st);
}

/* Base shape [rows, cols] of the module's weight, when the base has tensors. */
static int base_shape(const base_info *b, const char *hf_name, const char *gg_name, int64_t *rows, int64_t *cols)
{
    if (b->have_gguf) {
        int64_t i = gguf_find_tensor(&b->g, gg_name);
        if (i < 0)
            return -1;
        *rows = b->g.tensors[i].ne[1];
        *cols = b->g.tensors[i].ne[0];
        return 1;
    }
    if (b->have_st) {
        int64_t i = st_find(&b->st, hf_name);
        if (i < 0)
            return -1;
        *rows = b->st.tensors[i].shape[0];
        *cols = b->st.tensors[i].n_dims > 1 ? b->st.tensors[i].shape[1] : 1;
        return 1;
    }
    return 0;
}

/* ------------------------------------------------------------ export */

int export_gguf_lora(const lora_adapter *ad, const char *base, const char *out, export_info *info, sm_err *err)
{
    base_info b;
    gguf_writer *w = NULL;
    float *a = NULL, *bb = NULL, *tmp = NULL;
    memset(info, 0, sizeof *info);
    const lora_config *c = &ad->cfg;
    int rc = base_load(&b, base, err);
    if (rc < 0)
        goto cleanup;

    /* What the format cannot say: refuse instead of writing a wrong scale. */
    if (c->n_alpha_pattern > 0) {
        rc = sm_err_set(err, SM_EUNSUPP, "%s: alpha_pattern gives per-module alphas; a GGUF LoRA has one "
                        "adapter.lora.alpha, so it cannot be exported (merge it instead)", ad->dir);
        goto cleanup;
    }
    if (ad->n_saved > 0) {
        rc = sm_err_set(err, SM_EUNSUPP, "%s: modules_to_save tensor '%s' (a full replacement) cannot be expressed "
                        "in a GGUF LoRA (merge it instead)", ad->dir, ad->saved[0].target);
        goto cleanup;
    }
    if (c->fan_in_fan_out) {
        rc = sm_err_set(err, SM_EUNSUPP, "%s: fan_in_fan_out adapters are not supported for GGUF export", ad->dir);
        goto cleanup;
    }
    for (uint64_t i = 0; c->use_rslora && i < ad->n_modules; i++)
        if (ad->modules[i].r != ad->modules[0].r) {
            rc = sm_err_set(err, SM_EUNSUPP, "%s: rsLoRA with per-module ranks (%s: r %u, %s: r %u) needs per-module "
                            "alphas, which a GGUF LoRA cannot express", ad->dir, ad->modules[0].name,
                            ad->modules[0].r, ad->modules[i].name, ad->modules[i].r);
            goto cleanup;
        }
    /* llama.cpp scales by alpha / r (r = each lora_a's rank): rsLoRA's
     * alpha/sqrt(r) is alpha*sqrt(r)/r. */
    double alpha = c->alpha;
    if (c->use_rslora)
        alpha = c->alpha * sqrt((double)ad->modules[0].r);
    alpha *= ad->user_scale;
    int permute = strcmp(b.arch, "llama") == 0;

    w = gguf_writer_init();
    if (!w) {
        rc = sm_err_set(err, SM_ENOMEM, "out of memory");
        goto cleanup;
    }
    /* Tensors first: the size label heuristics need the parameter count. */
    int64_t total_params = 0;
    size_t max_a = 0, max_b = 0;
    for (uint64_t i = 0; i < ad->n_modules; i++) {
        const lora_module *m = &ad->modules[i];
        char hf[512], gg[512], name[600];
        snprintf(hf, sizeof hf, "%s.weight", m->name);
        if (merge_hf_to_gguf_name(hf, gg, sizeof gg) < 0) {
            rc = sm_err_set(err, SM_EUNSUPP, "%s: module '%s' has no GGUF tensor name for %s", ad->dir, m->name, b.arch);
            goto cleanup;
        }
        int embd = m->kind == LORA_EMBEDDING;
        int64_t rows, cols;
        int have = base_shape(&b, hf, gg, &rows, &cols);
        int64_t er = embd ? m->in : m->out, ec = embd ? m->out : m->in;
        if (have < 0) {
            rc = sm_err_set(err, SM_EMISMATCH, "%s: module '%s': base %s has no tensor '%s' (adapter for another architecture?)",
                            ad->dir, m->name, base, b.have_gguf ? gg : hf);
            goto cleanup;
        }
        if (have > 0 && (rows != er || cols != ec)) {
            rc = sm_err_set(err, SM_EMISMATCH, "%s: module '%s': the adapter changes a [%" PRId64 ", %" PRId64
                            "] matrix, base tensor '%s' is [%" PRId64 ", %" PRId64 "]", ad->dir, m->name, er, ec,
                            b.have_gguf ? gg : hf, rows, cols);
            goto cleanup;
        }
        /* lora_a: PEFT [r, in] -> ne [in, r]; embeddings store A transposed
         * ([n_vocab, r] -> ne [r, n_vocab]) as llama.cpp's llm_build_inp_embd expects. */
        int64_t ne_a[2], ne_b[2] = {m->r, m->out};
        if (embd) {
            ne_a[0] = m->r;
            ne_a[1] = m->in;
        } else {
            ne_a[0] = m->in;
            ne_a[1] = m->r;
        }
        snprintf(name, sizeof name, "%s.lora_a", gg);
        if ((rc = gguf_writer_add_tensor(w, name, 2, ne_a, SM_TYPE_F32, err)) < 0)
            goto cleanup;
        snprintf(name, sizeof name, "%s.lora_b", gg);
        if ((rc = gguf_writer_add_tensor(w, name, 2, ne_b, SM_TYPE_F32, err)) < 0)
            goto cleanup;
        total_params += m->out * (embd ? m->r : m->in);
        if ((size_t)(m->r * m->in) > max_a)
            max_a = (size_t)(m->r * m->in);
        if ((size_t)(m->out * m->r) > max_b)
            max_b = (size_t)(m->out * m->r);
    }

    export_names nm;
    const char *dn = ad->dir + strlen(ad->dir);
    while (dn > ad->dir && dn[-1] == '/')
        dn--;
    const char *ds = dn;
    while (ds > ad->dir && ds[-1] != '/')
        ds--;
    char dirname[256];
    snprintf(dirname, sizeof dirname, "%.*s", (int)(dn - ds), ds);
    export_model_names(dirname, -total_params, &nm);
    if (!nm.name[0])
        snprintf(nm.name, sizeof nm.name, "%s", dirname);

    /* Key order of convert_lora_to_gguf.py: architecture (writer init),
     * set_type, set_gguf_meta_model, set_gguf_parameters, quantization version. */
    int kr = gguf_writer_set_str(w, "general.architecture", b.arch);
    kr |= gguf_writer_set_str(w, "general.type", "adapter");
    kr |= gguf_writer_set_str(w, "adapter.type", "lora");
    kr |= gguf_writer_set_str(w, "general.name", nm.name);
    if (nm.version[0])
        kr |= gguf_writer_set_str(w, "general.version", nm.version);
    if (nm.finetune[0])
        kr |= gguf_writer_set_str(w, "general.finetune", nm.finetune);
    if (nm.basename[0])
        kr |= gguf_writer_set_str(w, "general.basename", nm.basename);
    if (nm.size_label[0])
        kr |= gguf_writer_set_str(w, "general.size_label", nm.size_label);
    card_info card;
    card_load(ad->dir, &card);
    if (card.license[0])
        kr |= gguf_writer_set_str(w, "general.license", card.license);
    if (card.n_base_models) {
        kr |= gguf_writer_set_u32(w, "general.base_model.count", card.n_base_models);
        for (uint32_t i = 0; i < card.n_base_models; i++)
            kr |= card_write_base_model(w, i, card.base_models[i], -total_params);
    }
    sm_str items[CARD_MAX_ITEMS];
    if (card.n_tags) {
        for (uint32_t i = 0; i < card.n_tags; i++)
            items[i] = (sm_str){card.tags[i], strlen(card.tags[i])};
        kr |= gguf_writer_set_arr_str(w, "general.tags", items, card.n_tags);
    }
    if (card.n_langs) {
        for (uint32_t i = 0; i < card.n_langs; i++)
            items[i] = (sm_str){card.langs[i], strlen(card.langs[i])};
        kr |= gguf_writer_set_arr_str(w, "general.languages", items, card.n_langs);
    }
    kr |= gguf_writer_set_f32(w, "adapter.lora.alpha", (float)alpha);
    kr |= gguf_writer_set_u32(w, "general.quantization_version", 2);
    if (kr != 0) {
        rc = sm_err_set(err, SM_ENOMEM, "%s: cannot set the GGUF keys", out);
        goto cleanup;
    }

    a = malloc((max_a ? max_a : 1) * sizeof *a);
    bb = malloc((max_b ? max_b : 1) * sizeof *bb);
    tmp = malloc((max_a > max_b ? max_a : max_b ? max_b : 1) * sizeof *tmp);
    if (!a || !bb || !tmp) {
        rc = sm_err_set(err, SM_ENOMEM, "out of memory");
        goto cleanup;
    }
    rc = gguf_writer_begin(w, out, err);
    if (rc < 0)
        goto cleanup;
    for (uint64_t i = 0; i < ad->n_modules; i++) {
        const lora_module *m = &ad->modules[i];
        char hf[512], gg[512];
        snprintf(hf, sizeof hf, "%s.weight", m->name);
        merge_hf_to_gguf_name(hf, gg, sizeof gg);
        lora_tensor_to_f32(m->a, a);
        lora_tensor_to_f32(m->b, bb);
        if (m->kind == LORA_EMBEDDING) {
            /* A [r, n_vocab] -> A^T [n_vocab, r] */
            for (int64_t k = 0; k < (int64_t)m->r; k++)
                for (int64_t j = 0; j < m->in; j++)
                    tmp[j * m->r + k] = a[k * m->in + j];
            memcpy(a, tmp, (size_t)(m->r * m->in) * sizeof *a);
        }
        uint32_t heads = 0;
        if (permute) {
            size_t gl = strlen(gg);
            if (gl > 14 && strcmp(gg + gl - 14, ".attn_q.weight") == 0)
                heads = b.n_head;
            else if (gl > 14 && strcmp(gg + gl - 14, ".attn_k.weight") == 0)
                heads = b.n_head_kv;
        }
        if (heads && merge_permute_rows(bb, m->out, m->r, heads, tmp) < 0) {
            rc = sm_err_set(err, SM_EMISMATCH, "%s: module '%s': %" PRId64 " rows do not split into %u heads",
                            ad->dir, m->name, m->out, heads);
            goto cleanup;
        }
        rc = gguf_writer_write_tensor(w, a, (uint64_t)(m->r * m->in) * 4, err);
        if (rc == SM_OK)
            rc = gguf_writer_write_tensor(w, bb, (uint64_t)(m->out * m->r) * 4, err);
        if (rc < 0)
            goto cleanup;
        info->n_tensors += 2;
    }
    rc = gguf_writer_finish(w, err);
    info->alpha = (float)alpha;
    snprintf(info->name, sizeof info->name, "%s", nm.name);

cleanup:
    if (rc < 0 && w)
        gguf_writer_abort(w);
    gguf_writer_free(w);
    free(a);
    free(bb);
    free(tmp);
    base_free(&b);
    return rc;
}
