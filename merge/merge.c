/* merge.c — the merge engine: PEFT arithmetic, HF-directory and GGUF bases. */
#include "merge.h"

#include "fileio.h"
#include "fp16.h"
#include "gguf.h"
#include "safetensors.h"
#include "safetensors_write.h"
#include "types.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------ math */

/* Four floats as one SSE register (GCC/Clang vector extension): the lane-
 * wise mul and add are the same IEEE float operations as the scalar code
 * (no FMA: -ffp-contract=off), only four at a time. -O2 does not vectorize
 * these loops by itself because their length is not a multiple of 4. */
typedef float v4f __attribute__((vector_size(16)));

static inline v4f v4_load(const float *p)
{
    v4f v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void v4_store(float *p, v4f v) { memcpy(p, &v, sizeof v); }

/* acc[j] = acc[j] + x * src[j] for j < n */
static void axpy_f32(float *acc, float x, const float *src, int64_t n)
{
    int64_t j = 0;
    const v4f xv = {x, x, x, x};
    for (; j + 8 <= n; j += 8) {
        v4_store(acc + j, v4_load(acc + j) + xv * v4_load(src + j));
        v4_store(acc + j + 4, v4_load(acc + j + 4) + xv * v4_load(src + j + 4));
    }
    for (; j < n; j++)
        acc[j] = acc[j] + x * src[j];
}

/* acc[j] = x * src[j] for j < n */
static void scale_f32(float *acc, float x, const float *src, int64_t n)
{
    int64_t j = 0;
    const v4f xv = {x, x, x, x};
    for (; j + 4 <= n; j += 4)
        v4_store(acc + j, xv * v4_load(src + j));
    for (; j < n; j++)
        acc[j] = x * src[j];
}

void merge_apply_rows(float *w, const float *a, const float *b, int64_t out, int64_t in, uint32_t r,
                      float scale, int transpose, int64_t row0, int64_t row1, float *acc)
{
    /* Column blocks of 512 keep the r x 512 slice of A in L1 across rows. */
    const int64_t jb = 512;
    for (int64_t j0 = 0; j0 < in; j0 += jb) {
        int64_t n = in - j0 < jb ? in - j0 : jb;
        for (int64_t i = row0; i < row1; i++) {
            /* acc[j] = ((B[i][0]*A[0][j] + B[i][1]*A[1][j]) + ...) + B[i][r-1]*A[r-1][j]:
             * every element keeps numpy's order (the first product, then k
             * ascending); j innermost so four elements go at once. */
            const float *bi = b + i * r;
            scale_f32(acc, bi[0], a + j0, n);
            for (uint32_t k = 1; k < r; k++)
                axpy_f32(acc, bi[k], a + (int64_t)k * in + j0, n);
            if (transpose) {
                for (int64_t j = 0; j < n; j++)
                    w[(j0 + j) * out + i] = w[(j0 + j) * out + i] + scale * acc[j];
            } else {
                axpy_f32(w + i * in + j0, scale, acc, n);
            }
        }
    }
}

void merge_apply_f32(float *w, const float *a, const float *b, int64_t out, int64_t in,
                     uint32_t r, float scale, int transpose, float *acc)
{
    merge_apply_rows(w, a, b, out, in, r, scale, transpose, 0, out, acc);
}

int merge_permute_rows(float *m, int64_t rows, int64_t cols, uint32_t n_head, float *scratch)
{
    if (n_head == 0 || rows % (2 * (int64_t)n_head) != 0)
        return SM_EINVAL;
    int64_t hd = rows / n_head, half = hd / 2;
    memcpy(scratch, m, (size_t)(rows * cols) * sizeof(float));
    /* destination row h*hd + j*2 + i comes from source row h*hd + i*half + j */
    for (int64_t h = 0; h < n_head; h++)
        for (int64_t i = 0; i < 2; i++)
            for (int64_t j = 0; j < half; j++)
                memcpy(m + (h * hd + j * 2 + i) * cols, scratch + (h * hd + i * half + j) * cols,
                       (size_t)cols * sizeof(float));
    return SM_OK;
}

/* HF <-> GGUF tensor names of llama-family and qwen2 checkpoints. */
static const struct {
    const char *hf, *gguf;
} name_global[] = {
    {"model.embed_tokens", "token_embd"}, {"lm_head", "output"}, {"model.norm", "output_norm"},
};
static const struct {
    const char *hf, *gguf;
} name_layer[] = {
    {"self_attn.q_proj", "attn_q"}, {"self_attn.k_proj", "attn_k"}, {"self_attn.v_proj", "attn_v"},
    {"self_attn.o_proj", "attn_output"}, {"mlp.gate_proj", "ffn_gate"}, {"mlp.up_proj", "ffn_up"},
    {"mlp.down_proj", "ffn_down"}, {"input_layernorm", "attn_norm"},
    {"post_attention_layernorm", "ffn_norm"},
};

/* GGUF "blk.N.attn_q.weight" -> HF "model.layers.N.self_attn.q_proj.weight"; -1 if unknown. */
static int gguf_to_hf_name(const char *gg, char *out, size_t out_len)
{
    const char *dot = strrchr(gg, '.');
    if (!dot || (strcmp(dot, ".weight") != 0 && strcmp(dot, ".bias") != 0))
        return -1;
    size_t mlen = (size_t)(dot - gg);
    for (size_t i = 0; i < sizeof name_global / sizeof name_global[0]; i++)
        if (strlen(name_global[i].gguf) == mlen && strncmp(gg, name_global[i].gguf, mlen) == 0) {
            int w = snprintf(out, out_len, "%s%s", name_global[i].hf, dot);
            return (w < 0 || (size_t)w >= out_len) ? -1 : 0;
        }
    if (strncmp(gg, "blk.", 4) != 0)
        return -1;
    char *end = NULL;
    long bid = strtol(gg + 4, &end, 10);
    if (end == gg + 4 || *end != '.' || bid < 0)
        return -1;
    const char *rest = end + 1;
    size_t rlen = (size_t)(dot - rest);
    for (size_t i = 0; i < sizeof name_layer / sizeof name_layer[0]; i++)
        if (strlen(name_layer[i].gguf) == rlen && strncmp(rest, name_layer[i].gguf, rlen) == 0) {
            int w = snprintf(out, out_len, "model.layers.%ld.%s%s", bid, name_layer[i].hf, dot);
            return (w < 0 || (size_t)w >= out_len) ? -1 : 0;
        }
    return -1;
}

int merge_hf_to_gguf_name(const char *hf, char *out, size_t out_len)
{
    const char *suffix = NULL;
    size_t n = strlen(hf);
    /* split "<module>.<weight|bias>" */
    const char *dot = strrchr(hf, '.');
    if (!dot || (strcmp(dot, ".weight") != 0 && strcmp(dot, ".bias") != 0))
        return -1;
    suffix = dot;
    size_t mlen = n - strlen(suffix);
    for (size_t i = 0; i < sizeof name_global / sizeof name_global[0]; i++)
        if (strlen(name_global[i].hf) == mlen && strncmp(hf, name_global[i].hf, mlen) == 0) {
            int w = snprintf(out, out_len, "%s%s", name_global[i].gguf, suffix);
            return (w < 0 || (size_t)w >= out_len) ? -1 : 0;
        }
    static const char lp[] = "model.layers.";
    if (strncmp(hf, lp, sizeof lp - 1) != 0)
        return -1;
    const char *p = hf + sizeof lp - 1;
    char *end = NULL;
    long bid = strtol(p, &end, 10);
    if (end == p || *end != '.' || bid < 0)
        return -1;
    const char *rest = end + 1;
    size_t rlen = (size_t)(suffix - rest);
    for (size_t i = 0; i < sizeof name_layer / sizeof name_layer[0]; i++)
        if (strlen(name_layer[i].hf) == rlen && strncmp(rest, name_layer[i].hf, rlen) == 0) {
            int w = snprintf(out, out_len, "blk.%ld.%s%s", bid, name_layer[i].gguf, suffix);
            return (w < 0 || (size_t)w >= out_len) ? -1 : 0;
        }
    return -1;
}

/* ------------------------------------------------------------ helpers */

static void f32_to_type(const float *src, uint64_t n, uint32_t type, uint8_t *dst)
{
    for (uint64_t i = 0; i < n; i++) {
        if (type == SM_TYPE_F32) {
            memcpy(dst + 4 * i, &src[i], 4);
        } else {
            uint16_t h = type == SM_TYPE_F16 ? sm_f32_to_f16(src[i]) : sm_f32_to_bf16(src[i]);
            dst[2 * i] = (uint8_t)h;
            dst[2 * i + 1] = (uint8_t)(h >> 8);
        }
    }
}

static float type_elem_f32(const uint8_t *p, uint32_t type, uint64_t i)
{
    if (type == SM_TYPE_F32) {
        float f;
        memcpy(&f, p + 4 * i, 4);
        return f;
    }
    uint16_t h = (uint16_t)(p[2 * i] | (p[2 * i + 1] << 8));
    return type == SM_TYPE_F16 ? sm_f16_to_f32(h) : sm_bf16_to_f32(h);
}

static uint32_t st_to_sm_type(uint32_t d)
{
    return d == ST_F32 ? SM_TYPE_F32 : d == ST_F16 ? SM_TYPE_F16 : d == ST_BF16 ? SM_TYPE_BF16 : UINT32_MAX;
}

static uint32_t sm_to_st_type(uint32_t t)
{
    return t == SM_TYPE_F32 ? ST_F32 : t == SM_TYPE_F16 ? ST_F16 : ST_BF16;
}

static uint32_t type_size(uint32_t t) { return t == SM_TYPE_F32 ? 4 : 2; }

void merge_report_free(merge_report *rep)
{
    if (!rep)
        return;
    for (uint64_t i = 0; i < rep->n_stats; i++)
        free(rep->stats[i].name);
    free(rep->stats);
    memset(rep, 0, sizeof *rep);
}

static int report_add(merge_report *rep, const char *name, uint32_t n_deltas, int replaced,
                      double delta_norm, double base_norm)
{
    merge_stat *p = realloc(rep->stats, (size_t)(rep->n_stats + 1) * sizeof *p);
    if (!p)
        return SM_ENOMEM;
    rep->stats = p;
    merge_stat *s = &p[rep->n_stats];
    s->name = strdup(name);
    if (!s->name)
        return SM_ENOMEM;
    s->n_deltas = n_deltas;
    s->replaced = replaced;
    s->delta_norm = delta_norm;
    s->base_norm = base_norm;
    rep->n_stats++;
    return SM_OK;
}

int merge_report_print(const merge_report *rep, FILE *fp, int json, sm_err *err)
{
    if (json) {
        json_t *o = json_object(), *arr = json_array();
        for (uint64_t i = 0; i < rep->n_stats; i++) {
            const merge_stat *s = &rep->stats[i];
            json_array_append_new(arr, json_pack("{s:s,s:i,s:b,s:f,s:f,s:f}", "name", s->name, "adapters",
                                                 (int)s->n_deltas, "replaced", s->replaced, "delta_norm",
                                                 s->delta_norm, "base_norm", s->base_norm, "relative",
                                                 s->base_norm > 0 ? s->delta_norm / s->base_norm : 0.0));
        }
        json_object_set_new(o, "tensors_written", json_integer((json_int_t)rep->n_tensors));
        json_object_set_new(o, "tensors_changed", json_integer((json_int_t)rep->n_stats));
        json_object_set_new(o, "bytes_written", json_integer((json_int_t)rep->bytes_out));
        json_object_set_new(o, "changed", arr);
        int w = json_dumpf(o, fp, JSON_INDENT(1));
        json_decref(o);
        if (w < 0 || fputc('\n', fp) == EOF)
            return sm_err_set(err, SM_EIO, "writing the JSON summary failed");
        return SM_OK;
    }
    fprintf(fp, "changed %" PRIu64 " of %" PRIu64 " tensors:\n", rep->n_stats, rep->n_tensors);
    for (uint64_t i = 0; i < rep->n_stats; i++) {
        const merge_stat *s = &rep->stats[i];
        fprintf(fp, "  %-48s %s ||delta|| %.6g  ||W|| %.6g  (%.4f)\n", s->name,
                s->replaced ? "replaced" : "lora    ", s->delta_norm, s->base_norm,
                s->base_norm > 0 ? s->delta_norm / s->base_norm : 0.0);
    }
    if (ferror(fp))
        return sm_err_set(err, SM_EIO, "writing the summary failed");
    return SM_OK;
}

static void progress_line(const merge_opts *o, uint64_t i, uint64_t n, const char *name, const char *what)
{
    if (!o->progress)
        return;
    if (o->progress_tty)
        fprintf(o->progress, "\r\033[K[%4" PRIu64 "/%4" PRIu64 "] %s %s", i + 1, n, what, name);
    else
        fprintf(o->progress, "[%4" PRIu64 "/%4" PRIu64 "] %s %s\n", i + 1, n, what, name);
    if (o->progress_tty && i + 1 == n)
        fputc('\n', o->progress);
    fflush(o->progress);
}

/* One planned change to a base tensor. */
typedef struct merge_job {
    const lora_adapter *ad;
    const lora_module *m;     /* LoRA delta, or NULL */
    const lora_saved *saved;  /* full replacement, or NULL */
    int permute_heads;        /* >0: permute lora_B rows with this many heads */
} merge_job;

/* Scratch buffers sized for the largest job. */
typedef struct merge_scratch {
    float *a, *b, *at, *perm;  /* at: one accumulator row of `in` floats per thread */
    size_t a_cap, b_cap, at_cap, perm_cap;
    uint32_t n_threads;
} merge_scratch;

/* One thread's share of a delta: rows [row0, row1). */
typedef struct apply_task {
    float *w;
    const float *a, *b;
    int64_t out, in, row0, row1;
    uint32_t r;
    float scale;
    int transpose;
    float *acc;
} apply_task;

static void *apply_thread(void *p)
{
    apply_task *t = p;
    merge_apply_rows(t->w, t->a, t->b, t->out, t->in, t->r, t->scale, t->transpose, t->row0, t->row1, t->acc);
    return NULL;
}

/* Splits the rows of a large delta over threads. Each element is still
 * computed by exactly one thread in the same order, so the result does not
 * depend on the thread count. */
static void apply_parallel(float *w, const float *a, const float *b, int64_t out, int64_t in, uint32_t r,
                           float scale, int transpose, uint32_t n_threads, float *acc)
{
    apply_task tasks[MERGE_MAX_THREADS];
    pthread_t tid[MERGE_MAX_THREADS];
    int started[MERGE_MAX_THREADS] = {0};
    if ((double)out * (double)in * r < (double)(1 << 22) || n_threads < 2 || out < 2)
        n_threads = 1;
    if (n_threads > (uint32_t)out)
        n_threads = (uint32_t)out;
    for (uint32_t t = 0; t < n_threads; t++) {
        tasks[t] = (apply_task){w, a, b, out, in, out * t / n_threads, out * (t + 1) / n_threads, r, scale,
                                transpose, acc + (int64_t)t * in};
        if (t > 0)
            started[t] = pthread_create(&tid[t], NULL, apply_thread, &tasks[t]) == 0;
    }
    apply_thread(&tasks[0]);
    for (uint32_t t = 1; t < n_threads; t++) {
        if (started[t])
            pthread_join(tid[t], NULL);
        else
            apply_thread(&tasks[t]); /* could not start a thread: do its rows here */
    }
}

static int grow(float **p, size_t *cap, size_t n)
{
    if (n <= *cap)
        return SM_OK;
    float *q = realloc(*p, (n ? n : 1) * sizeof(float));
    if (!q)
        return SM_ENOMEM;
    *p = q;
    *cap = n;
    return SM_OK;
}

static void scratch_free(merge_scratch *s)
{
    free(s->a);
    free(s->b);
    free(s->at);
    free(s->perm);
}

/* Applies the jobs to w (F32, the base tensor's shape, checked by validate()). */
static int apply_jobs(float *w, const merge_job *jobs, uint32_t n_jobs, merge_scratch *s, const char *tname,
                      sm_err *err)
{
    for (uint32_t j = 0; j < n_jobs; j++) {
        const merge_job *jb = &jobs[j];
        if (jb->saved) {
            lora_tensor_to_f32(jb->saved->t, w);
            continue;
        }
        const lora_module *m = jb->m;
        size_t na = (size_t)(m->r * m->in), nb = (size_t)(m->out * m->r);
        if (grow(&s->a, &s->a_cap, na) < 0 || grow(&s->b, &s->b_cap, nb) < 0 ||
            grow(&s->at, &s->at_cap, (size_t)m->in * s->n_threads) < 0 || grow(&s->perm, &s->perm_cap, nb) < 0)
            return sm_err_set(err, SM_ENOMEM, "%s: out of memory for the LoRA factors", tname);
        lora_tensor_to_f32(m->a, s->a);
        lora_tensor_to_f32(m->b, s->b);
        if (jb->permute_heads > 0 &&
            merge_permute_rows(s->b, m->out, m->r, (uint32_t)jb->permute_heads, s->perm) < 0)
            return sm_err_set(err, SM_EMISMATCH, "%s: %" PRId64 " rows cannot be split into %d heads for the Q/K permutation",
                              tname, m->out, jb->permute_heads);
        int transpose = m->kind == LORA_EMBEDDING || jb->ad->cfg.fan_in_fan_out;
        float scale = (float)(m->scale * jb->ad->user_scale);
        apply_parallel(w, s->a, s->b, m->out, m->in, m->r, scale, transpose, s->n_threads, s->at);
    }
    return SM_OK;
}

/* Checks the stored shape (rows, cols) against what a module changes. */
static int check_shape(const lora_adapter *ad, const lora_module *m, int64_t rows, int64_t cols,
                       const char *tname, sm_err *err)
{
    int transpose = m->kind == LORA_EMBEDDING || ad->cfg.fan_in_fan_out;
    int64_t er = transpose ? m->in : m->out, ec = transpose ? m->out : m->in;
    if (rows != er || cols != ec)
        return sm_err_set(err, SM_EMISMATCH, "%s: module '%s' needs base tensor '%s' of shape [%" PRId64 ", %" PRId64
                          "], the base has [%" PRId64 ", %" PRId64 "] (adapter for another model?)",
                          ad->dir, m->name, tname, er, ec, rows, cols);
    return SM_OK;
}

/* ------------------------------------------------------------ signals */

/* Files already committed inside the temporary output directory, and the
 * directory itself, so that an interrupted HF merge leaves nothing behind.
 * Written only outside the handler; the handler uses only unlink/rmdir. */
#define MERGE_SIG_FILES 1024
static char *volatile sig_files[MERGE_SIG_FILES];
static char *volatile sig_dir;
/* SIGBUS: a base shard truncated while mapped faults on the lost pages;
 * fileio's handler then removes its open temp file, and this one the
 * directory (tests/test_faults_io.c, hf_base_truncated_while_mapped). */
#define MERGE_N_SIGS 4
static struct sigaction sig_prev[MERGE_N_SIGS];
static const int sig_nums[MERGE_N_SIGS] = {SIGINT, SIGTERM, SIGHUP, SIGBUS};

static void merge_signal_handler(int sig)
{
    /* fileio's handler first: it unlinks open temp files and re-raises with
     * the default action, which stays pending until we return. */
    for (int i = 0; i < MERGE_N_SIGS; i++)
        if (sig_nums[i] == sig && sig_prev[i].sa_handler != SIG_DFL && sig_prev[i].sa_handler != SIG_IGN &&
            !(sig_prev[i].sa_flags & SA_SIGINFO))
            sig_prev[i].sa_handler(sig);
    for (int i = 0; i < MERGE_SIG_FILES; i++) {
        char *p = sig_files[i];
        if (p)
            unlink(p);
    }
    if (sig_dir)
        rmdir(sig_dir);
    signal(sig, SIG_DFL);
    raise(sig);
}

void merge_install_signal_cleanup(void)
{
    static int installed;
    if (installed)
        return;
    installed = 1;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = merge_signal_handler;
    sigemptyset(&sa.sa_mask);
    for (int i = 0; i < MERGE_N_SIGS; i++)
        sigaction(sig_nums[i], &sa, &sig_prev[i]);
}

static void sig_track_file(const char *path)
{
    for (int i = 0; i < MERGE_SIG_FILES; i++)
        if (!sig_files[i]) {
            sig_files[i] = strdup(path);
            return;
        }
}

static void sig_forget_all(void)
{
    char *d = sig_dir;
    sig_dir = NULL;
    free(d);
    for (int i = 0; i < MERGE_SIG_FILES; i++) {
        char *p = sig_files[i];
        sig_files[i] = NULL;
        free(p);
    }
}

/* ------------------------------------------------------------ HF path */

/* Replaces the value of "torch_dtype" (newer transformers: "dtype") in
 * config.json text, keeping every other byte (so the file stays identical
 * apart from that string). */
static char *config_set_dtype(const char *txt, uint64_t len, const char *dtype, uint64_t *out_len)
{
    const char *key = "\"torch_dtype\"";
    const char *k = strstr(txt, key);
    if (!k) {
        key = "\"dtype\"";
        k = strstr(txt, key);
    }
    const char *p = k ? k + strlen(key) : NULL;
    while (p && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == ':'))
        p++;
    const char *q = p && *p == '"' ? strchr(p + 1, '"') : NULL;
    char *res = NULL;
    if (!q) {
        /* no torch_dtype string (absent or null): the file is copied as is */
        res = malloc(len + 1);
        if (res) {
            memcpy(res, txt, len + 1);
            *out_len = len;
        }
        return res;
    }
    size_t pre = (size_t)(p + 1 - txt), post = (size_t)(len - (uint64_t)(q - txt));
    size_t dl = strlen(dtype);
    res = malloc(pre + dl + post + 1);
    if (!res)
        return NULL;
    memcpy(res, txt, pre);
    memcpy(res + pre, dtype, dl);
    memcpy(res + pre + dl, q, post);
    res[pre + dl + post] = '\0';
    *out_len = pre + dl + post;
    return res;
}

static int write_whole(const char *path, const void *data, uint64_t n, sm_err *err)
{
    sm_out o;
    int rc = sm_out_open(&o, path, err);
    if (rc < 0)
        return rc;
    rc = sm_out_write(&o, data, (size_t)n, err);
    if (rc < 0) {
        sm_out_abort(&o);
        return rc;
    }
    return sm_out_commit(&o, err);
}

/* Copies src to dst (temp + rename) in 1 MiB chunks. */
static int copy_file(const char *src, const char *dst, sm_err *err)
{
    FILE *in = fopen(src, "rb");
    if (!in)
        return sm_err_set(err, SM_EIO, "%s: cannot open: %s", src, strerror(errno));
    sm_out o;
    char *buf = malloc(1u << 20);
    int rc = buf ? sm_out_open(&o, dst, err) : sm_err_set(err, SM_ENOMEM, "out of memory");
    if (rc < 0)
        goto done;
    size_t n;
    while (rc == SM_OK && (n = fread(buf, 1, 1u << 20, in)) > 0)
        rc = sm_out_write(&o, buf, n, err);
    if (rc == SM_OK && ferror(in))
        rc = sm_err_set(err, SM_EIO, "%s: read error", src);
    if (rc < 0)
        sm_out_abort(&o);
    else
        rc = sm_out_commit(&o, err);
done:
    free(buf);
    fclose(in);
    return rc;
}

/* Weights in other formats are not copied: they would be the unmerged base. */
static int is_weight_file(const char *name)
{
    static const char *const ext[] = {".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".h5",
                                      ".msgpack", ".onnx", ".bin.index.json"};
    for (size_t i = 0; i < sizeof ext / sizeof ext[0]; i++) {
        size_t n = strlen(name), m = strlen(ext[i]);
        if (n >= m && strcmp(name + n - m, ext[i]) == 0)
            return 1;
    }
    return 0;
}

static void remove_tree_files(const char *dir)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        char p[4096];
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(dir);
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static int has_suffix(const char *s, const char *suf)
{
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && strcmp(s + n - m, suf) == 0;
}

/* "__metadata__" pairs of one shard and whether they come after the tensors. */
static int shard_metadata(const st_shard *sh, st_writer *w, sm_err *err)
{
    const uint8_t *p = sh->map.ptr;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = (hlen << 8) | p[i];
    json_t *root = json_loadb((const char *)p + 8, (size_t)hlen, 0, NULL);
    if (!root)
        return sm_err_set(err, SM_EFORMAT, "%s: header JSON unreadable", sh->path);
    int rc = SM_OK;
    const json_t *md = json_object_get(root, "__metadata__");
    if (json_is_object(md)) {
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)md, k, v) {
            if (json_is_string(v) && (rc = st_writer_set_metadata(w, k, json_string_value(v), err)) < 0)
                break;
        }
        /* first key of the header decides where the metadata goes */
        void *it = json_object_iter(root);
        st_writer_set_metadata_last(w, !(it && strcmp(json_object_iter_key(it), "__metadata__") == 0));
    }
    json_decref(root);
    return rc;
}

static const char *dtype_torch_name(uint32_t t)
{
    return t == SM_TYPE_F32 ? "float32" : t == SM_TYPE_F16 ? "float16" : "bfloat16";
}

/* Collects the jobs of base tensor `name` from every adapter, in order. */
static uint32_t collect_jobs(const merge_opts *o, const char *name, merge_job *jobs, uint32_t max_jobs,
                             int use_gguf_names, int permute_q, int permute_k)
{
    uint32_t n = 0;
    char buf[512], gg[512];
    for (uint32_t a = 0; a < o->n_adapters; a++) {
        const lora_adapter *ad = &o->adapters[a];
        for (uint64_t s = 0; s < ad->n_saved && n < max_jobs; s++) {
            const char *tn = ad->saved[s].target;
            if (use_gguf_names) {
                if (merge_hf_to_gguf_name(tn, gg, sizeof gg) < 0)
                    continue;
                tn = gg;
            }
            if (strcmp(tn, name) == 0)
                jobs[n++] = (merge_job){ad, NULL, &ad->saved[s], 0};
        }
        for (uint64_t i = 0; i < ad->n_modules && n < max_jobs; i++) {
            snprintf(buf, sizeof buf, "%s.weight", ad->modules[i].name);
            const char *tn = buf;
            if (use_gguf_names) {
                if (merge_hf_to_gguf_name(buf, gg, sizeof gg) < 0)
                    continue;
                tn = gg;
            }
            if (strcmp(tn, name) == 0) {
                int heads = 0;
                if (use_gguf_names && has_suffix(name, ".attn_q.weight"))
                    heads = permute_q;
                else if (use_gguf_names && has_suffix(name, ".attn_k.weight"))
                    heads = permute_k;
                jobs[n++] = (merge_job){ad, &ad->modules[i], NULL, heads};
            }
        }
    }
    return n;
}

#define MERGE_MAX_JOBS 64

/* Every module and saved tensor must land on a base tensor of the right
 * shape; every module the config targets must have tensors. lookup returns
 * the index of a base tensor name and its (rows, cols, is_float). */
typedef int (*base_lookup_fn)(const void *ctx, const char *name, int64_t *rows, int64_t *cols, int *is_float,
                              char *shown, size_t shown_len);

static int validate(const merge_opts *o, base_lookup_fn lookup, const void *ctx, sm_err *err)
{
    char name[512], shown[512];
    for (uint32_t a = 0; a < o->n_adapters; a++) {
        const lora_adapter *ad = &o->adapters[a];
        for (uint64_t i = 0; i < ad->n_modules; i++) {
            const lora_module *m = &ad->modules[i];
            int64_t rows, cols;
            int is_float;
            snprintf(name, sizeof name, "%s.weight", m->name);
            if (lookup(ctx, name, &rows, &cols, &is_float, shown, sizeof shown) < 0)
                return sm_err_set(err, SM_EMISMATCH, "%s: module '%s' has no base tensor '%s' in %s (adapter for another architecture?)",
                                  ad->dir, m->name, shown, o->base);
            if (!is_float)
                return sm_err_set(err, SM_ETYPE, "%s: base tensor '%s' is not F32/F16/BF16; merging needs unquantized weights",
                                  o->base, shown);
            int rc = check_shape(ad, m, rows, cols, shown, err);
            if (rc < 0)
                return rc;
        }
        for (uint64_t i = 0; i < ad->n_saved; i++) {
            const lora_saved *s = &ad->saved[i];
            int64_t rows, cols;
            int is_float;
            if (lookup(ctx, s->target, &rows, &cols, &is_float, shown, sizeof shown) < 0)
                return sm_err_set(err, SM_EMISMATCH, "%s: modules_to_save tensor '%s' has no base tensor in %s",
                                  ad->dir, s->target, o->base);
            int64_t sr = s->t->n_dims >= 1 ? s->t->shape[0] : 1, sc = s->t->n_dims >= 2 ? s->t->shape[1] : 1;
            if (!is_float || s->t->n_dims > 2 || sr != rows || sc != cols)
                return sm_err_set(err, SM_EMISMATCH, "%s: modules_to_save tensor '%s' [%" PRId64 ", %" PRId64
                                  "] does not match the base [%" PRId64 ", %" PRId64 "]", ad->dir, s->target, sr, sc, rows, cols);
        }
    }
    return SM_OK;
}

/* Targeted modules without tensors (checked against the base's 2-D weights). */
static int check_targets_present(const merge_opts *o, const char *tname, sm_err *err)
{
    if (!has_suffix(tname, ".weight"))
        return SM_OK;
    char module[512];
    size_t n = strlen(tname) - strlen(".weight");
    if (n >= sizeof module)
        return SM_OK;
    memcpy(module, tname, n);
    module[n] = '\0';
    for (uint32_t a = 0; a < o->n_adapters; a++) {
        const lora_adapter *ad = &o->adapters[a];
        if (ad->cfg.target_all_linear || !lora_config_targets(&ad->cfg, module))
            continue;
        int found = 0;
        for (uint64_t i = 0; i < ad->n_modules && !found; i++)
            found = strcmp(ad->modules[i].name, module) == 0;
        if (!found)
            return sm_err_set(err, SM_EMISSING, "%s: target_modules selects '%s' of the base, but the adapter has no "
                              "lora_A/lora_B pair for it", ad->dir, module);
    }
    return SM_OK;
}

static int hf_lookup(const void *ctx, const char *name, int64_t *rows, int64_t *cols, int *is_float,
                     char *shown, size_t shown_len)
{
    const st_model *m = ctx;
    snprintf(shown, shown_len, "%s", name);
    int64_t i = st_find(m, name);
    if (i < 0)
        return -1;
    const st_tensor *t = &m->tensors[i];
    *rows = t->n_dims >= 1 ? t->shape[0] : 1;
    *cols = t->n_dims >= 2 ? t->shape[1] : 1;
    *is_float = st_to_sm_type(t->dtype) != UINT32_MAX && t->n_dims <= 2;
    return 0;
}

/* Streams one tensor: verbatim bytes or the merged result in out_type. */
static int emit_tensor(const merge_opts *o, const char *name, const uint8_t *data, uint64_t nbytes,
                       uint32_t in_type, uint32_t out_type, uint64_t nelem,
                       const merge_job *jobs, uint32_t n_jobs, merge_scratch *s, merge_report *rep,
                       int (*write)(void *, const void *, uint64_t, sm_err *), void *wctx, sm_err *err)
{
    if (n_jobs == 0 && in_type == out_type)
        return write(wctx, data, nbytes, err);
    int rc = SM_OK;
    float *w = malloc((size_t)(nelem ? nelem : 1) * sizeof(float));
    uint8_t *ob = NULL;
    if (!w) {
        rc = sm_err_set(err, SM_ENOMEM, "%s: out of memory (%" PRIu64 " elements)", name, nelem);
        goto cleanup;
    }
    for (uint64_t i = 0; i < nelem; i++)
        w[i] = type_elem_f32(data, in_type, i);
    if (n_jobs > 0) {
        rc = apply_jobs(w, jobs, n_jobs, s, name, err);
        if (rc < 0)
            goto cleanup;
        double dn = 0, bn = 0;
        int replaced = 0;
        uint32_t n_deltas = 0;
        for (uint32_t j = 0; j < n_jobs; j++) {
            replaced |= jobs[j].saved != NULL;
            n_deltas += jobs[j].m != NULL;
        }
        for (uint64_t i = 0; i < nelem; i++) {
            double b0 = type_elem_f32(data, in_type, i);
            double d = (double)w[i] - b0;
            dn += d * d;
            bn += b0 * b0;
        }
        if (report_add(rep, name, n_deltas, replaced, sqrt(dn), sqrt(bn)) < 0) {
            rc = sm_err_set(err, SM_ENOMEM, "out of memory");
            goto cleanup;
        }
    }
    if (out_type == SM_TYPE_F32) {
        rc = write(wctx, w, nelem * 4, err);
    } else {
        ob = malloc((size_t)(nelem ? nelem : 1) * 2);
        if (!ob) {
            rc = sm_err_set(err, SM_ENOMEM, "%s: out of memory", name);
            goto cleanup;
        }
        f32_to_type(w, nelem, out_type, ob);
        rc = write(wctx, ob, nelem * 2, err);
    }
cleanup:
    free(w);
    free(ob);
    return rc;
}

static int st_write_cb(void *ctx, const void *data, uint64_t n, sm_err *err)
{
    return st_writer_write(ctx, data, n, err);
}

static uint32_t pick_threads(const merge_opts *o)
{
    long n = o->n_threads ? (long)o->n_threads : sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1u : n > MERGE_MAX_THREADS ? MERGE_MAX_THREADS : (uint32_t)n;
}

static int merge_hf(const merge_opts *o, merge_report *rep, sm_err *err)
{
    st_model base;
    merge_scratch s = {.n_threads = pick_threads(o)};
    st_writer *w = NULL;
    char *tmpdir = NULL, *cfg = NULL, *idx = NULL;
    DIR *d = NULL;
    int rc = st_open(&base, o->base, err);
    if (rc < 0)
        return rc;
    uint64_t total_out = 0, done = 0;

    rc = validate(o, hf_lookup, &base, err);
    if (rc < 0)
        goto cleanup;
    for (uint64_t i = 0; i < base.n_tensors; i++) {
        const st_tensor *t = &base.tensors[i];
        if (t->n_dims == 2 && (rc = check_targets_present(o, t->name, err)) < 0)
            goto cleanup;
    }

    /* Output directory: build it beside the destination, rename at the end. */
    struct stat sb;
    if (stat(o->out, &sb) == 0) {
        DIR *od = S_ISDIR(sb.st_mode) ? opendir(o->out) : NULL;
        int empty = od != NULL;
        struct dirent *e;
        while (od && (e = readdir(od)) != NULL)
            if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
                empty = 0;
        if (od)
            closedir(od);
        if (!empty && (!o->force || !S_ISDIR(sb.st_mode))) {
            rc = sm_err_set(err, SM_EINVAL, "%s: output exists and is not an empty directory (pass --force to replace it)", o->out);
            goto cleanup;
        }
    }
    size_t tl = strlen(o->out) + 16;
    tmpdir = malloc(tl);
    if (!tmpdir) {
        rc = sm_err_set(err, SM_ENOMEM, "out of memory");
        goto cleanup;
    }
    /* "out/" would put the temp dir inside out: drop trailing slashes */
    size_t ol = strlen(o->out);
    while (ol > 1 && o->out[ol - 1] == '/')
        ol--;
    snprintf(tmpdir, tl, "%.*s.tmp-XXXXXX", (int)ol, o->out);
    /* no SIGINT/SIGTERM/SIGHUP between creating the directory and telling
     * the handler its name (tests/test_faults_io.c signals right then) */
    sigset_t sig_block, sig_old;
    sigemptyset(&sig_block);
    sigaddset(&sig_block, SIGINT);
    sigaddset(&sig_block, SIGTERM);
    sigaddset(&sig_block, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sig_block, &sig_old);
    if (!mkdtemp(tmpdir)) {
        pthread_sigmask(SIG_SETMASK, &sig_old, NULL);
        rc = sm_err_set(err, SM_EIO, "%s: cannot create a temporary directory: %s", tmpdir, strerror(errno));
        free(tmpdir);
        tmpdir = NULL;
        goto cleanup;
    }
    /* mkdtemp makes it 0700; give the result the usual umask-based mode */
    mode_t um = umask(0);
    umask(um);
    chmod(tmpdir, 0777 & ~um);
    sig_dir = strdup(tmpdir);
    pthread_sigmask(SIG_SETMASK, &sig_old, NULL);

    char path[4096];
    for (uint32_t sh = 0; sh < base.n_shards; sh++) {
        w = st_writer_init();
        if (!w) {
            rc = sm_err_set(err, SM_ENOMEM, "out of memory");
            goto cleanup;
        }
        rc = shard_metadata(&base.shards[sh], w, err);
        if (rc < 0)
            goto cleanup;
        for (uint64_t i = 0; i < base.n_tensors; i++) {
            const st_tensor *t = &base.tensors[i];
            if (t->shard != sh)
                continue;
            uint32_t it = st_to_sm_type(t->dtype);
            uint32_t dt = t->dtype;
            if (it != UINT32_MAX && o->outtype != MERGE_OUT_AUTO)
                dt = sm_to_st_type((uint32_t)o->outtype);
            rc = st_writer_add_tensor(w, t->name, dt, t->n_dims, t->shape, err);
            if (rc < 0)
                goto cleanup;
        }
        snprintf(path, sizeof path, "%s/%s", tmpdir, base_name(base.shards[sh].path));
        rc = st_writer_begin(w, path, err);
        if (rc < 0)
            goto cleanup;
        for (uint64_t i = 0; i < base.n_tensors; i++) {
            const st_tensor *t = &base.tensors[i];
            if (t->shard != sh)
                continue;
            merge_job jobs[MERGE_MAX_JOBS];
            uint32_t nj = collect_jobs(o, t->name, jobs, MERGE_MAX_JOBS, 0, 0, 0);
            uint32_t it = st_to_sm_type(t->dtype);
            progress_line(o, done++, base.n_tensors, t->name, nj ? "merge" : "copy ");
            if (it == UINT32_MAX) {
                rc = st_writer_write(w, t->data, t->nbytes, err); /* ints etc.: verbatim */
            } else {
                uint32_t ot = o->outtype == MERGE_OUT_AUTO ? it : (uint32_t)o->outtype;
                rc = emit_tensor(o, t->name, t->data, t->nbytes, it, ot, t->n_elements, jobs, nj, &s,
                                 rep, st_write_cb, w, err);
            }
            if (rc < 0)
                goto cleanup;
            st_tensor_release(&base, t);
            rep->n_tensors++;
        }
        total_out += st_writer_file_size(w) ; /* for the index: data bytes computed below */
        sig_track_file(path); /* before it exists: a signal right after the rename must find it */
        rc = st_writer_finish(w, err);
        st_writer_free(w);
        w = NULL;
        if (rc < 0)
            goto cleanup;
    }
    rep->bytes_out = total_out;

    /* Other files of the base directory: config.json (torch_dtype), index, rest verbatim. */
    struct stat bs;
    if (stat(o->base, &bs) == 0 && S_ISDIR(bs.st_mode)) {
        d = opendir(o->base);
        if (!d) {
            rc = sm_err_set(err, SM_EIO, "%s: cannot list: %s", o->base, strerror(errno));
            goto cleanup;
        }
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            char src[4096];
            snprintf(src, sizeof src, "%s/%s", o->base, e->d_name);
            struct stat fs;
            if (stat(src, &fs) != 0 || !S_ISREG(fs.st_mode) || is_weight_file(e->d_name))
                continue;
            snprintf(path, sizeof path, "%s/%s", tmpdir, e->d_name);
            int edited = strcmp(e->d_name, "model.safetensors.index.json") == 0 ||
                         strcmp(e->d_name, "config.json") == 0;
            if (!edited || o->outtype == MERGE_OUT_AUTO) {
                sig_track_file(path);
                rc = copy_file(src, path, err); /* tokenizer files, README, ... */
                if (rc < 0)
                    goto cleanup;
                continue;
            }
            uint64_t len = 0, nlen = 0;
            rc = sm_read_file(src, 64u << 20, &cfg, &len, err);
            if (rc < 0)
                goto cleanup;
            const char *data = cfg;
            if (strcmp(e->d_name, "config.json") == 0 && o->outtype != MERGE_OUT_AUTO) {
                idx = config_set_dtype(cfg, len, dtype_torch_name((uint32_t)o->outtype), &nlen);
                if (!idx) {
                    rc = sm_err_set(err, SM_ENOMEM, "%s: out of memory", src);
                    goto cleanup;
                }
                data = idx;
                len = nlen;
            } else if (strcmp(e->d_name, "model.safetensors.index.json") == 0 && o->outtype != MERGE_OUT_AUTO) {
                /* total_size = sum of the tensors' data bytes of the new shards */
                json_t *root = json_loadb(cfg, (size_t)len, 0, NULL);
                uint64_t total = 0;
                for (uint64_t i = 0; i < base.n_tensors; i++) {
                    const st_tensor *t = &base.tensors[i];
                    uint32_t it = st_to_sm_type(t->dtype);
                    total += (it == UINT32_MAX || o->outtype == MERGE_OUT_AUTO) ? t->nbytes
                             : t->n_elements * type_size((uint32_t)o->outtype);
                }
                json_t *md = root ? json_object_get(root, "metadata") : NULL;
                if (json_is_object(md))
                    json_object_set_new(md, "total_size", json_integer((json_int_t)total));
                /* same layout as transformers' save_pretrained (indent 2, key order kept) */
                idx = root ? json_dumps(root, JSON_INDENT(2)) : NULL;
                json_decref(root);
                if (!idx) {
                    rc = sm_err_set(err, SM_EFORMAT, "%s: invalid JSON", src);
                    goto cleanup;
                }
                size_t il = strlen(idx);
                char *t2 = realloc(idx, il + 2);
                if (!t2) {
                    rc = sm_err_set(err, SM_ENOMEM, "out of memory");
                    goto cleanup;
                }
                idx = t2;
                int nl = len > 0 && cfg[len - 1] == '\n';
                idx[il] = nl ? '\n' : '\0';
                idx[il + 1] = '\0';
                data = idx;
                len = il + (size_t)nl;
            }
            sig_track_file(path);
            rc = write_whole(path, data, len, err);
            free(cfg);
            free(idx);
            cfg = idx = NULL;
            if (rc < 0)
                goto cleanup;
        }
        closedir(d);
        d = NULL;
    }
    if (rename(tmpdir, o->out) != 0) {
        /* --force over a non-empty directory. rename() cannot replace one,
         * so Linux's renameat2(RENAME_EXCHANGE) swaps the two trees in one
         * step: the destination is always the complete old or the complete
         * new tree, and the old one ends up at tmpdir, removed below. Where
         * the file system lacks the exchange (EINVAL: NFS, some FUSE; ENOSYS:
         * kernels before 3.15) the old tree is moved aside first, leaving a
         * moment in which the destination does not exist, and is moved back
         * if the second rename fails. */
        int e = errno;
        if (!o->force || (e != ENOTEMPTY && e != EEXIST)) {
            rc = sm_err_set(err, SM_EIO, "%s: cannot rename %s into place: %s", o->out, tmpdir, strerror(e));
            goto cleanup;
        }
        if (renameat2(AT_FDCWD, tmpdir, AT_FDCWD, o->out, RENAME_EXCHANGE) != 0) {
            e = errno;
            char old[4200];
            snprintf(old, sizeof old, "%s.old-%ld", o->out, (long)getpid());
            if ((e != EINVAL && e != ENOSYS) || rename(o->out, old) != 0) {
                rc = sm_err_set(err, SM_EIO, "%s: cannot rename %s into place: %s", o->out, tmpdir,
                                strerror(e != EINVAL && e != ENOSYS ? e : errno));
                goto cleanup;
            }
            if (rename(tmpdir, o->out) != 0) {
                e = errno;
                rename(old, o->out);
                rc = sm_err_set(err, SM_EIO, "%s: cannot rename %s into place: %s", o->out, tmpdir, strerror(e));
                goto cleanup;
            }
            remove_tree_files(old);
        } else {
            /* tmpdir now names the old tree; the signal handler's list
             * names files in it, which are to go anyway */
            remove_tree_files(tmpdir);
        }
    }
    free(tmpdir);
    tmpdir = NULL;

cleanup:
    sig_forget_all();
    if (d)
        closedir(d);
    free(cfg);
    free(idx);
    st_writer_free(w);
    if (tmpdir) {
        remove_tree_files(tmpdir);
        free(tmpdir);
    }
    scratch_free(&s);
    st_close(&base);
    return rc;
}

/* ------------------------------------------------------------ GGUF path */

typedef struct gguf_ctx {
    const gguf_file *g;
} gguf_ctx;

static int gguf_lookup(const void *ctx, const char *name, int64_t *rows, int64_t *cols, int *is_float,
                       char *shown, size_t shown_len)
{
    const gguf_file *g = ((const gguf_ctx *)ctx)->g;
    char gg[512];
    if (merge_hf_to_gguf_name(name, gg, sizeof gg) < 0) {
        snprintf(shown, shown_len, "%s (no GGUF name known)", name);
        return -1;
    }
    snprintf(shown, shown_len, "%s", gg);
    int64_t i = gguf_find_tensor(g, gg);
    if (i < 0)
        return -1;
    const gguf_tensor *t = &g->tensors[i];
    *cols = t->ne[0];
    *rows = t->ne[1];
    *is_float = (t->type == SM_TYPE_F32 || t->type == SM_TYPE_F16 || t->type == SM_TYPE_BF16) && t->n_dims <= 2;
    return 0;
}

static int gguf_write_cb(void *ctx, const void *data, uint64_t n, sm_err *err)
{
    return gguf_writer_write_tensor(ctx, data, n, err);
}

static int merge_gguf(const merge_opts *o, merge_report *rep, sm_err *err)
{
    struct stat ob;
    if (!o->force && stat(o->out, &ob) == 0)
        return sm_err_set(err, SM_EINVAL, "%s: output exists (pass --force to overwrite it)", o->out);
    gguf_file g;
    gguf_writer *w = NULL;
    merge_scratch s = {.n_threads = pick_threads(o)};
    int rc = gguf_open(&g, o->base, err);
    if (rc < 0)
        return rc;
    char key[256];
    sm_str arch = {0};
    char archz[64] = "";
    uint32_t n_head = 0, n_head_kv = 0;
    int permute = 0;
    rc = gguf_get_str(&g, "general.architecture", &arch, err);
    if (rc < 0)
        goto cleanup;
    snprintf(archz, sizeof archz, "%.*s", (int)(arch.len < 63 ? arch.len : 63), arch.ptr);
    if (strcmp(archz, "llama") == 0) {
        permute = 1;
    } else if (strcmp(archz, "qwen2") != 0) {
        rc = sm_err_set(err, SM_EUNSUPP, "%s: architecture '%s': GGUF merging knows llama and qwen2 names "
                        "(merge the HF checkpoint instead)", o->base, archz);
        goto cleanup;
    }
    for (uint32_t a = 0; a < o->n_adapters; a++)
        if (o->adapters[a].cfg.fan_in_fan_out) {
            rc = sm_err_set(err, SM_EUNSUPP, "%s: fan_in_fan_out adapters cannot be merged into a GGUF base", o->adapters[a].dir);
            goto cleanup;
        }
    if (permute) {
        snprintf(key, sizeof key, "%s.attention.head_count", archz);
        rc = gguf_get_u32(&g, key, &n_head, err);
        if (rc < 0)
            goto cleanup;
        snprintf(key, sizeof key, "%s.attention.head_count_kv", archz);
        if (gguf_get_u32(&g, key, &n_head_kv, NULL) < 0)
            n_head_kv = n_head;
    }
    gguf_ctx ctx = {&g};
    rc = validate(o, gguf_lookup, &ctx, err);
    if (rc < 0)
        goto cleanup;
    for (uint64_t i = 0; i < g.n_tensors; i++) {
        char gg[512], hf[512];
        snprintf(gg, sizeof gg, "%.*s", (int)g.tensors[i].name.len, g.tensors[i].name.ptr);
        if (g.tensors[i].n_dims == 2 && gguf_to_hf_name(gg, hf, sizeof hf) == 0 &&
            (rc = check_targets_present(o, hf, err)) < 0)
            goto cleanup;
    }

    w = gguf_writer_init();
    if (!w) {
        rc = sm_err_set(err, SM_ENOMEM, "out of memory");
        goto cleanup;
    }
    for (uint64_t i = 0; i < g.n_kv; i++)
        if ((rc = gguf_writer_copy_kv(w, &g.kv[i])) < 0) {
            rc = sm_err_set(err, rc, "%s: cannot copy key %.*s", o->base, (int)g.kv[i].key.len, g.kv[i].key.ptr);
            goto cleanup;
        }
    if (o->outtype != MERGE_OUT_AUTO && gguf_writer_find_key(w, "general.file_type") >= 0) {
        uint32_t ft = o->outtype == SM_TYPE_F32 ? 0 : o->outtype == SM_TYPE_F16 ? 1 : 32;
        gguf_writer_replace_u32(w, "general.file_type", ft);
    }
    for (uint64_t i = 0; i < g.n_tensors; i++) {
        const gguf_tensor *t = &g.tensors[i];
        char name[512];
        snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.ptr);
        uint32_t type = t->type;
        int is_float = type == SM_TYPE_F32 || type == SM_TYPE_F16 || type == SM_TYPE_BF16;
        if (is_float && t->n_dims >= 2 && o->outtype != MERGE_OUT_AUTO)
            type = (uint32_t)o->outtype;
        rc = gguf_writer_add_tensor(w, name, t->n_dims, t->ne, type, err);
        if (rc < 0)
            goto cleanup;
    }
    rc = gguf_writer_begin(w, o->out, err);
    if (rc < 0)
        goto cleanup;
    for (uint64_t i = 0; i < g.n_tensors; i++) {
        const gguf_tensor *t = &g.tensors[i];
        char name[512];
        snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.ptr);
        merge_job jobs[MERGE_MAX_JOBS];
        uint32_t nj = collect_jobs(o, name, jobs, MERGE_MAX_JOBS, 1, permute ? (int)n_head : 0,
                                   permute ? (int)n_head_kv : 0);
        progress_line(o, i, g.n_tensors, name, nj ? "merge" : "copy ");
        int is_float = t->type == SM_TYPE_F32 || t->type == SM_TYPE_F16 || t->type == SM_TYPE_BF16;
        if (!is_float) {
            rc = gguf_writer_write_tensor(w, t->data, t->nbytes, err);
        } else {
            uint32_t ot = (t->n_dims >= 2 && o->outtype != MERGE_OUT_AUTO) ? (uint32_t)o->outtype : t->type;
            uint64_t nelem = 1;
            for (uint32_t dd = 0; dd < t->n_dims; dd++)
                nelem *= (uint64_t)t->ne[dd];
            rc = emit_tensor(o, name, t->data, t->nbytes, t->type, ot, nelem, jobs, nj, &s, rep,
                             gguf_write_cb, w, err);
        }
        if (rc < 0)
            goto cleanup;
        sm_map_release(&g.map, g.data_offset + t->offset, t->nbytes);
        rep->n_tensors++;
    }
    rep->bytes_out = gguf_writer_file_size(w);
    rc = gguf_writer_finish(w, err);

cleanup:
    if (rc < 0 && w)
        gguf_writer_abort(w);
    gguf_writer_free(w);
    scratch_free(&s);
    gguf_close(&g);
    return rc;
}

int merge_run(const merge_opts *o, merge_report *rep, sm_err *err)
{
    memset(rep, 0, sizeof *rep);
    if (o->n_adapters == 0)
        return sm_err_set(err, SM_EINVAL, "no adapter given");
    if (o->outtype != MERGE_OUT_AUTO && o->outtype != SM_TYPE_F32 && o->outtype != SM_TYPE_F16 &&
        o->outtype != SM_TYPE_BF16)
        return sm_err_set(err, SM_EINVAL, "output type must be auto, f32, f16 or bf16");
    struct stat sb;
    if (stat(o->base, &sb) != 0)
        return sm_err_set(err, SM_EIO, "%s: %s", o->base, strerror(errno));
    if (sm_same_file(o->base, o->out))
        return sm_err_set(err, SM_EINVAL, "%s: output is the base itself", o->out);
    int rc;
    if (S_ISDIR(sb.st_mode) || has_suffix(o->base, ".safetensors") || has_suffix(o->base, ".json"))
        rc = merge_hf(o, rep, err);
    else
        rc = merge_gguf(o, rep, err);
    if (o->progress && o->progress_tty && rc < 0)
        fputc('\n', o->progress);
    if (rc < 0)
        merge_report_free(rep);
    return rc;
}
