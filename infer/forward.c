#include "forward.h"

#include "fp16.h"
#include "matmul.h"
#include "mmf.h"
#include "ops.h"
#include "types.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ sizes */

/* llama.cpp pads the attended KV length to a multiple of 32 (at least 32);
 * the padded cells are masked (probability 0). */
static int64_t kv_pad(int64_t n) { return n < 32 ? 32 : (n + 31) / 32 * 32; }

/* Attention's per-thread scratch in floats: sc[kv_pad(C)] scores, qh[H]
 * (rounded up to 16 floats so kt stays 64-byte aligned relative to sc), kt
 * [H, kv_pad(C)]: F16 for heads of a multiple of 16 (tinyBLAS KQ), else
 * doubles (ops_kq_t64). */
static int64_t att_qh_floats(int64_t H) { return (H + 15) / 16 * 16; }
static int64_t att_scratch(int64_t H, int64_t C)
{
    const int64_t kt = H % 16 ? 2 * H * kv_pad(C) : (H * kv_pad(C) + 1) / 2;
    return kv_pad(C) + att_qh_floats(H) + kt;
}

typedef struct dims {
    int64_t E, H, nq, nkv, F, V, max_in, scratch;
} dims;

static dims get_dims(const sm_model *m, int32_t n_ctx)
{
    const sm_hparams *hp = &m->hp;
    dims d;
    d.E = hp->n_embd;
    d.H = hp->n_embd_head;
    d.nq = d.H * hp->n_head;
    d.nkv = d.H * hp->n_head_kv;
    d.F = hp->n_ff;
    d.V = hp->n_vocab;
    d.max_in = d.E;
    if (d.nq > d.max_in)
        d.max_in = d.nq;
    if (d.F > d.max_in)
        d.max_in = d.F;
    /* per thread, used by one job at a time: the float products' rows
     * (mmf_scratch_floats), or attention's scores over the KV length padded
     * to 32 (llama.cpp's n_kv), the F16-rounded q and one K head transposed
     * to [H, n_kv] F16 (att_scratch) */
    int64_t att = att_scratch(d.H, n_ctx);
    int64_t mm = mmf_scratch_floats(d.max_in);
    /* a multiple of 16 floats keeps every thread's part 64-byte aligned */
    d.scratch = ((att > mm ? att : mm) + 31) / 16 * 16;
    return d;
}

void ctx_estimate(const sm_model *m, int32_t n_ctx, int32_t n_batch, int32_t n_threads, uint64_t *kv_bytes,
                  uint64_t *buf_bytes)
{
    dims d = get_dims(m, n_ctx);
    uint64_t B = (uint64_t)n_batch;
    /* F16 K and V, llama.cpp's default cache types */
    *kv_bytes = 2ull * (uint64_t)m->hp.n_layer * (uint64_t)n_ctx * (uint64_t)d.nkv * sizeof(uint16_t);
    uint64_t fl = B * (uint64_t)(3 * d.E + d.max_in + 2 * d.nq + 2 * d.nkv + 2 * d.F + m->hp.n_rot + d.V + 1) +
                  (uint64_t)n_threads * (uint64_t)d.scratch;
    uint64_t xq = (uint64_t)B * ((uint64_t)d.max_in * 292 / 256 + 292);
    xq += (uint64_t)B * (uint64_t)d.max_in * 2;
    uint64_t un = (uint64_t)n_threads * (3 * (uint64_t)d.max_in + 16 * (uint64_t)(d.max_in / 32 + 1) +
                                          4 * (uint64_t)(d.max_in / 16 + 1));
    *buf_bytes = fl * sizeof(float) + xq + un;
}

/* ------------------------------------------------------------ lifetime */

void ctx_free(sm_ctx *c)
{
    if (!c)
        return;
    pool_free(c->pool);
    free(c->k_cache);
    free(c->v_cache);
    free(c->x);
    free(c->xn);
    free(c->xr);
    free(c->q);
    free(c->k);
    free(c->v);
    free(c->att);
    free(c->tmp);
    free(c->gate);
    free(c->up);
    free(c->rope_cs);
    free(c->scratch);
    free(c->logits);
    free(c->tok_buf);
    free(c->xq);
    free(c->uq);
    free(c->ud);
    free(c->um);
    free(c->usc);
    free(c->umn);
    free(c->uw);
    free(c->xq16);
    memset(c, 0, sizeof *c);
}

static float *falloc(int64_t n, int *fail)
{
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    if (!p)
        *fail = 1;
    return p;
}

int ctx_init(sm_ctx *c, const sm_model *m, int32_t n_ctx, int32_t n_batch, int32_t n_threads, sm_err *err)
{
    memset(c, 0, sizeof *c);
    if (n_ctx < 1 || n_batch < 1 || n_threads < 1)
        return sm_err_set(err, SM_EINVAL, "context %d, batch %d, threads %d: each must be >= 1", (int)n_ctx,
                          (int)n_batch, (int)n_threads);
    if (n_batch > n_ctx)
        n_batch = n_ctx;
    ops_init();
    c->m = m;
    c->n_ctx = n_ctx;
    c->n_batch = n_batch;
    dims d = get_dims(m, n_ctx);
    const int64_t B = n_batch;
    uint64_t kv_elems = (uint64_t)m->hp.n_layer * (uint64_t)n_ctx * (uint64_t)d.nkv;
    c->k_cache = calloc(kv_elems ? kv_elems : 1, sizeof(uint16_t));
    c->v_cache = calloc(kv_elems ? kv_elems : 1, sizeof(uint16_t));
    int fail = !c->k_cache || !c->v_cache;
    c->x = falloc(B * d.E, &fail);
    c->xn = falloc(B * d.E, &fail);
    c->xr = falloc(B * d.max_in, &fail);
    c->q = falloc(B * d.nq, &fail);
    c->k = falloc(B * d.nkv, &fail);
    c->v = falloc(B * d.nkv, &fail);
    c->att = falloc(B * d.nq, &fail);
    c->tmp = falloc(B * d.E, &fail);
    c->gate = falloc(B * d.F, &fail);
    c->up = falloc(B * d.F, &fail);
    c->rope_cs = falloc(B * m->hp.n_rot, &fail);
    c->scratch_stride = d.scratch;
    c->scratch_rows = d.max_in;
    c->scratch = falloc((int64_t)n_threads * d.scratch, &fail);
    c->logits = falloc(B * d.V, &fail);
    c->tok_buf = malloc((size_t)B * sizeof(int32_t));
    fail |= !c->tok_buf;
    c->n_threads = n_threads;
    c->xq_stride = (uint64_t)d.max_in * 292 / 256 + 292;
    c->xq = malloc((size_t)B * c->xq_stride);
    c->u_stride = d.max_in;
    c->uq = malloc((size_t)n_threads * (size_t)d.max_in);
    c->ud = malloc((size_t)n_threads * (size_t)(d.max_in / 32 + 1) * sizeof(float));
    c->um = malloc((size_t)n_threads * (size_t)(d.max_in / 32 + 1) * sizeof(float));
    c->usc = malloc((size_t)n_threads * (size_t)(d.max_in / 16 + 1) * sizeof(int16_t));
    c->umn = malloc((size_t)n_threads * (size_t)(d.max_in / 16 + 1) * sizeof(int16_t));
    c->uw = malloc((size_t)n_threads * (size_t)d.max_in * sizeof(int16_t));
    c->xq16 = malloc((size_t)B * (size_t)d.max_in * sizeof(int16_t));
    fail |= !c->xq || !c->uq || !c->ud || !c->um || !c->usc || !c->umn || !c->uw || !c->xq16;
    if (fail) {
        ctx_free(c);
        return sm_err_set(err, SM_ENOMEM, "out of memory for a context of %d positions, batch %d", (int)n_ctx,
                          (int)n_batch);
    }
    c->pool = pool_create(n_threads, err);
    if (!c->pool) {
        ctx_free(c);
        return err ? err->code : SM_ENOMEM;
    }
    ctx_estimate(m, n_ctx, n_batch, n_threads, &c->kv_bytes, &c->buf_bytes);
    return SM_OK;
}

void ctx_clear(sm_ctx *c) { c->n_pos = 0; }

/* ------------------------------------------------------------ jobs */

/* Below this many multiply-adds a step runs on the calling thread alone:
 * waking the pool costs more than the work (decode steps of small models).
 * At 262144 a 512-token prompt of stories260K (64 wide) ran its norms and
 * RoPE on one thread while the other spun; at 32768 they split, ~5% off a
 * perplexity run, and decode steps of such models stay on one thread. */
#define PAR_MIN_WORK 32768

static void run(sm_ctx *c, pool_fn fn, void *arg, int64_t work)
{
    if (work < PAR_MIN_WORK)
        fn(arg, 0, 1);
    else
        pool_run(c->pool, fn, arg);
}

typedef struct mm_item {
    const sm_weight *w;
    float *y;              /* [n, w->n_out] */
    const float *bias;     /* [w->n_out] or NULL */
} mm_item;

typedef struct job {
    sm_ctx *c;
    int32_t n;             /* tokens in this step */
    int32_t layer;
    /* round */
    int act;
    const float *src;      /* [n, len] */
    int64_t len;
    /* matmul */
    const float *xr;       /* [n, n_in] rounded input */
    mm_item items[3];
    int32_t n_items;
    /* norm */
    const float *addend;   /* [n, E] added to c->x first, or NULL */
    const float *norm_w;
    float *norm_out;
    const int32_t *tokens;
    int widen;             /* quant_act: also fill xq16 (portable kernels) */
} job;

static void job_round(void *arg, int32_t ith, int32_t nth)
{
    job *j = arg;
    int64_t lo, hi;
    pool_split(j->n, ith, nth, &lo, &hi);
    for (int64_t t = lo; t < hi; t++)
        ops_act_round(j->act, j->src + t * j->len, j->c->xr + t * j->len, j->len);
}

/* Float weights (F32/F16/BF16): rows are split across threads in groups of
 * 4 (mmf_rows's unit). */
static void job_matmul(void *arg, int32_t ith, int32_t nth)
{
    job *j = arg;
    float *wbuf = j->c->scratch + (int64_t)ith * j->c->scratch_stride;
    for (int32_t it = 0; it < j->n_items; it++) {
        const mm_item *mi = &j->items[it];
        const sm_weight *w = mi->w;
        int64_t groups = (w->n_out + 3) / 4, glo, ghi;
        pool_split(groups, ith, nth, &glo, &ghi);
        int64_t r1 = ghi * 4 < w->n_out ? ghi * 4 : w->n_out;
        if (glo * 4 < r1)
            mmf_rows(w->type, w->data, w->row_bytes, w->n_in, glo * 4, r1, j->xr, w->n_in, j->n, mi->y, w->n_out,
                     mi->bias, wbuf);
    }
}

static void job_quant_act(void *arg, int32_t ith, int32_t nth)
{
    job *j = arg;
    int64_t lo, hi;
    pool_split(j->n, ith, nth, &lo, &hi);
    for (int64_t t = lo; t < hi; t++) {
        uint8_t *dst = j->c->xq + (uint64_t)t * j->c->xq_stride;
        mm_quantize_act(j->act, j->src + t * j->len, dst, j->len);
        if (j->widen)
            mm_widen_act(j->act, dst, j->c->xq16 + t * j->len, j->len);
    }
}

/* Quantized weights: each thread takes a contiguous range of rows with
 * every token (mmq_rows tiles it). */
static void job_matmul_q(void *arg, int32_t ith, int32_t nth)
{
    job *j = arg;
    sm_ctx *c = j->c;
    const int64_t us = c->u_stride;
    mm_row r = {c->uq + ith * us, c->ud + ith * (us / 32 + 1), c->um + ith * (us / 32 + 1),
                c->usc + ith * (us / 16 + 1), c->umn + ith * (us / 16 + 1), c->uw + ith * us, 0};
    for (int32_t it = 0; it < j->n_items; it++) {
        const mm_item *mi = &j->items[it];
        const sm_weight *w = mi->w;
        int64_t lo, hi;
        pool_split(w->n_out, ith, nth, &lo, &hi);
        if (lo < hi)
            mmq_rows(mm_weight_type(w->type, w->n_out), w->data, w->row_bytes, w->n_in, lo, hi, c->xq, c->xq_stride,
                     c->xq16, j->n, mi->y, w->n_out, mi->bias, &r);
    }
}

/* Runs the products of items (all reading src[n, n_in]) with the activation
 * rounding each weight type needs. */
static void matmul_group(sm_ctx *c, const float *src, int32_t n, mm_item *items, int32_t n_items)
{
    int done[3] = {0, 0, 0};
    if (c->hook)
        for (int32_t i = 0; i < n_items; i++)
            c->hook(c->hook_user, items[i].w->name, src, n, items[i].w->n_in);
    for (int32_t i = 0; i < n_items; i++) {
        if (done[i])
            continue;
        job j;
        memset(&j, 0, sizeof j);
        j.c = c;
        j.n = n;
        int kind = mm_kind_of(items[i].w->type);
        if (kind != MM_FLOAT) {
            j.act = kind;
            j.src = src;
            j.len = items[i].w->n_in;
            for (int32_t k = i; k < n_items; k++)
                if (!done[k] && mm_kind_of(items[k].w->type) == kind && mmq_needs_act16(items[k].w->type))
                    j.widen = 1;
            run(c, job_quant_act, &j, (int64_t)n * j.len * 4);
            int64_t work = 0;
            for (int32_t k = i; k < n_items; k++) {
                if (!done[k] && mm_kind_of(items[k].w->type) == kind) {
                    j.items[j.n_items++] = items[k];
                    done[k] = 1;
                    work += items[k].w->n_in * items[k].w->n_out * (n + 4);
                }
            }
            run(c, job_matmul_q, &j, work);
            continue;
        }
        j.act = ops_act_for_type(items[i].w->type);
        j.src = src;
        j.len = items[i].w->n_in;
        const float *xr = src;
        if (j.act != OPS_ACT_F32) {
            run(c, job_round, &j, (int64_t)n * j.len * 4);
            xr = c->xr;
        }
        j.xr = xr;
        int64_t work = 0;
        for (int32_t k = i; k < n_items; k++) {
            if (!done[k] && mm_kind_of(items[k].w->type) == MM_FLOAT &&
                ops_act_for_type(items[k].w->type) == j.act) {
                j.items[j.n_items++] = items[k];
                done[k] = 1;
                work += items[k].w->n_in * items[k].w->n_out * (n + 1);
            }
        }
        run(c, job_matmul, &j, work);
    }
}

static void job_embed(void *arg, int32_t ith, int32_t nth)
{
    job *j = arg;
    const sm_model *m = j->c->m;
    const int64_t E = m->hp.n_embd;
    int64_t lo, hi;
    pool_split(j->n, ith, nth, &lo, &hi);
    for (int64_t t = lo; t < hi; t++) {
        const sm_weight *w = &m->tok_embd;
        ops_dequant_row(w->type, w->data + (uint64_t)j->tokens[t] * w->row_bytes, j->c->x + t * E, E);
        /* rope table of this token's position */
        ops_rope_table(j->c->rope_cs + t * m->hp.n_rot, m->hp.n_rot, j->c->n_pos + (int32_t)t,
                       m->hp.rope_freq_base, m->hp.rope_freq_scale, m->rope_freqs);
    }
}

/* x += addend (when set); norm_out = rmsnorm(x) * norm_w. */
static void job_norm(void *arg, int32_t ith, int32_t nth)
{
    job *j = arg;
    const sm_model *m = j->c->m;
    const int64_t E = m->hp.n_embd;
    int64_t lo, hi;
    pool_split(j->n, ith, nth, &lo, &hi);
    for (int64_t t = lo; t < hi; t++) {
        float *x = j->c->x + t * E;
        if (j->addend) {
            const float *a = j->addend + t * E;
            for (int64_t i = 0; i < E; i++)
                x[i] += a[i];
        }
        if (j->norm_w)
            ops_rmsnorm(x, j->norm_w, j->norm_out + t * E, E, m->hp.rms_eps);
    }
}

/* RoPE on q and k, then k and v stored as F16 into the cache. */
static void job_rope_store(void *arg, int32_t ith, int32_t nth)
{
    job *j = arg;
    sm_ctx *c = j->c;
    const sm_hparams *hp = &c->m->hp;
    const int64_t H = hp->n_embd_head, nq = H * hp->n_head, nkv = H * hp->n_head_kv;
    int64_t lo, hi;
    pool_split(j->n, ith, nth, &lo, &hi);
    for (int64_t t = lo; t < hi; t++) {
        const float *cs = c->rope_cs + t * hp->n_rot;
        for (int32_t h = 0; h < hp->n_head; h++)
            ops_rope(c->q + t * nq + h * H, cs, hp->n_rot, hp->rope_neox);
        for (int32_t h = 0; h < hp->n_head_kv; h++)
            ops_rope(c->k + t * nkv + h * H, cs, hp->n_rot, hp->rope_neox);
        int64_t pos = c->n_pos + t;
        /* K row per position; V transposed (each dimension runs over
         * positions), the layouts of llama.cpp's cache */
        uint16_t *kl = c->k_cache + (uint64_t)j->layer * (uint64_t)nkv * (uint64_t)c->n_ctx;
        uint16_t *vl = c->v_cache + (uint64_t)j->layer * (uint64_t)nkv * (uint64_t)c->n_ctx;
        for (int64_t i = 0; i < nkv; i++) {
            kl[pos * nkv + i] = sm_f32_to_f16(c->k[t * nkv + i]);
            vl[i * c->n_ctx + pos] = sm_f32_to_f16(c->v[t * nkv + i]);
        }
    }
}

/* Fixed cost of one (token, head) pair of attention in units of one KV
 * cell's work: q rounding, softmax and reduction set-up, the KQV
 * reductions. Only balances the split between threads. */
#define ATT_PAIR_COST 16

/* Causal attention of every (token, head) pair over the cache, computed as
 * llama.cpp without flash attention on the reference machine: q rounded to
 * F16, KQ with the F16 mul_mat kernel (tinyBLAS<16> for batches when the
 * head size is a multiple of 16, else vec_dot_f16), ggml's softmax over the
 * padded KV length, probabilities rounded to F16, KQV with the same kernel
 * choice over the padded length (ops_kq_t / ops_kq_rows, ops_softmax_ggml,
 * ops_pv).
 *
 * Work items are (kv head g, token t, query head of g) in that order; a
 * token's items cost its KV length, so the threads get contiguous runs of
 * equal total cost (the causal triangle would otherwise give the last
 * thread most of the work). A thread keeps the K head it works on
 * transposed in its scratch ([H, cells], F16 or as doubles), extended as t
 * grows, so the batched KQ runs across 16 cells per vector; single tokens
 * read the K rows in place. */
static void job_attention(void *arg, int32_t ith, int32_t nth)
{
    job *j = arg;
    sm_ctx *c = j->c;
    const sm_hparams *hp = &c->m->hp;
    const int64_t H = hp->n_embd_head, nq = H * hp->n_head, nkv = H * hp->n_head_kv;
    const int64_t C = c->n_ctx, ldk = kv_pad(C);
    const int32_t gqa = hp->n_head / hp->n_head_kv;
    const int64_t n = j->n, pos0 = c->n_pos;
    const int64_t npad = kv_pad(pos0 + n);
    const int batched = n >= 2;
    const int tb16 = batched && H % 16 == 0;
    float *sc = c->scratch + (int64_t)ith * c->scratch_stride;
    float *qh = sc + kv_pad(C);
    uint16_t *kt = (uint16_t *)(void *)(qh + att_qh_floats(H));
    double *kt64 = (double *)(void *)kt;
    const uint16_t *kl = c->k_cache + (uint64_t)j->layer * (uint64_t)nkv * (uint64_t)C;
    const uint16_t *vl = c->v_cache + (uint64_t)j->layer * (uint64_t)nkv * (uint64_t)C;

    /* this thread's share of the total cost: items whose cost prefix
     * starts in [c_lo, c_hi) */
    const int64_t per_g = gqa * (n * (pos0 + 1 + ATT_PAIR_COST) + n * (n - 1) / 2);
    const int64_t total = per_g * hp->n_head_kv;
    const int64_t c_lo = total * ith / nth, c_hi = total * (ith + 1) / nth;
    int64_t g = c_lo / per_g, acc = g * per_g;
    int64_t t = 0, hh = 0;
    /* skip whole tokens, then single heads, up to c_lo */
    while (t < n && acc + gqa * (pos0 + t + 1 + ATT_PAIR_COST) <= c_lo) {
        acc += gqa * (pos0 + t + 1 + ATT_PAIR_COST);
        t++;
    }
    while (t < n && hh < gqa && acc + pos0 + t + 1 + ATT_PAIR_COST <= c_lo) {
        acc += pos0 + t + 1 + ATT_PAIR_COST;
        hh++;
    }
    /* an item belongs to the thread whose range holds its cost prefix */
    if (acc < c_lo) {
        acc += pos0 + t + 1 + ATT_PAIR_COST;
        if (++hh == gqa) {
            hh = 0;
            t++;
        }
    }
    int64_t have = 0, have_g = -1; /* cells of head have_g in kt */
    while (acc < c_hi && g < hp->n_head_kv) {
        if (t == n) {
            t = 0;
            hh = 0;
            g++;
            continue;
        }
        const int64_t n_kv = pos0 + t + 1;
        const int64_t h = g * gqa + hh;
        const float *q = c->q + t * nq + h * H;
        for (int64_t i = 0; i < H; i++)
            qh[i] = ops_f16_table[sm_f32_to_f16(q[i])];
        if (batched) {
            if (have_g != g) {
                have_g = g;
                have = 0;
            }
            for (; have < n_kv; have++) {
                const uint16_t *kr = kl + have * nkv + g * H;
                if (tb16)
                    for (int64_t i = 0; i < H; i++)
                        kt[i * ldk + have] = kr[i];
                else
                    for (int64_t i = 0; i < H; i++)
                        kt64[i * ldk + have] = (double)ops_f16_table[kr[i]];
            }
            if (tb16)
                ops_kq_t(kt, ldk, qh, H, n_kv, 1, sc);
            else
                ops_kq_t64(kt64, ldk, qh, H, n_kv, sc);
        } else {
            ops_kq_rows(kl + g * H, nkv, qh, H, n_kv, 0, sc);
        }
        ops_softmax_ggml(sc, n_kv, hp->kq_scale);
        ops_pv(vl + g * H * C, C, sc, n_kv, npad, H, batched, c->att + t * nq + h * H);
        acc += n_kv + ATT_PAIR_COST;
        if (++hh == gqa) {
            hh = 0;
            t++;
        }
    }
}

static void job_swiglu(void *arg, int32_t ith, int32_t nth)
{
    job *j = arg;
    const int64_t F = j->c->m->hp.n_ff;
    int64_t lo, hi;
    pool_split(j->n, ith, nth, &lo, &hi);
    for (int64_t t = lo; t < hi; t++)
        ops_swiglu(j->c->gate + t * F, j->c->up + t * F, F);
}

/* ------------------------------------------------------------ eval */

int ctx_eval(sm_ctx *c, const int32_t *tokens, int32_t n, int32_t out_first, sm_err *err)
{
    const sm_model *m = c->m;
    const sm_hparams *hp = &m->hp;
    if (n < 1 || n > c->n_batch)
        return sm_err_set(err, SM_ERANGE, "batch of %d tokens: expected 1..%d", (int)n, (int)c->n_batch);
    if ((int64_t)c->n_pos + n > c->n_ctx)
        return sm_err_set(err, SM_ERANGE, "context full: %d cached + %d new tokens exceed n_ctx %d", (int)c->n_pos,
                          (int)n, (int)c->n_ctx);
    if (out_first < 0 || out_first > n)
        return sm_err_set(err, SM_EINVAL, "out_first %d outside 0..%d", (int)out_first, (int)n);
    for (int32_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= hp->n_vocab)
            return sm_err_set(err, SM_ERANGE, "token %d at index %d is outside the vocabulary (0..%d)", (int)tokens[i],
                              (int)i, (int)hp->n_vocab - 1);
    const int64_t E = hp->n_embd;
    job j;
    memset(&j, 0, sizeof j);
    j.c = c;
    j.n = n;
    j.tokens = tokens;
    const int64_t nqd = (int64_t)hp->n_head * hp->n_embd_head;
    int trimmed = 0;
    run(c, job_embed, &j, (int64_t)n * (E + 8 * hp->n_rot));

    for (int32_t il = 0; il < hp->n_layer; il++) {
        const sm_layer *L = &m->layers[il];
        j.layer = il;
        /* attention block */
        j.addend = NULL;
        j.norm_w = L->attn_norm;
        j.norm_out = c->xn;
        run(c, job_norm, &j, (int64_t)n * E * 2);
        mm_item qkv[3] = {{&L->wq, c->q, L->bq}, {&L->wk, c->k, L->bk}, {&L->wv, c->v, L->bv}};
        matmul_group(c, c->xn, n, qkv, 3);
        run(c, job_rope_store, &j, (int64_t)n * nqd * 4);
        run(c, job_attention, &j, (int64_t)n * nqd * (c->n_pos + n) * 2);
        mm_item o[1] = {{&L->wo, c->tmp, L->bo}};
        matmul_group(c, c->att, j.n, o, 1);
        if (il == hp->n_layer - 1 && out_first > 0 && n - out_first < 2 && !c->hook) {
            /* llama.cpp computes the last FFN only for the output rows
             * (ggml_get_rows of inp_out_ids); with one row that picks other
             * kernels (vec_dot instead of tinyBLAS). With 2+ rows the rows
             * come out the same either way, and callers like perplexity that
             * skip logits still get llama.cpp's all-rows numbers; the hook
             * (imatrix) sees every row as with llama.cpp. */
            int32_t n_out = n - out_first;
            trimmed = 1;
            if (n_out == 0)
                break;
            memmove(c->x, c->x + (int64_t)out_first * E, (size_t)n_out * (size_t)E * sizeof(float));
            memmove(c->tmp, c->tmp + (int64_t)out_first * E, (size_t)n_out * (size_t)E * sizeof(float));
            j.n = n_out;
        }
        /* x += attn; xn = ffn_norm(x) */
        j.addend = c->tmp;
        j.norm_w = L->ffn_norm;
        j.norm_out = c->xn;
        run(c, job_norm, &j, (int64_t)j.n * E * 3);
        mm_item gu[2] = {{&L->ffn_gate, c->gate, NULL}, {&L->ffn_up, c->up, NULL}};
        matmul_group(c, c->xn, j.n, gu, 2);
        run(c, job_swiglu, &j, (int64_t)j.n * hp->n_ff * 16);
        mm_item dn[1] = {{&L->ffn_down, c->tmp, NULL}};
        matmul_group(c, c->gate, j.n, dn, 1);
        j.addend = c->tmp;
        j.norm_w = NULL;
        run(c, job_norm, &j, (int64_t)j.n * E);
    }
    c->n_pos += n;
    c->n_logits = n - out_first;
    if (c->n_logits > 0) {
        job jo;
        memset(&jo, 0, sizeof jo);
        jo.c = c;
        jo.n = c->n_logits;
        jo.norm_w = m->output_norm;
        jo.norm_out = c->xn;
        /* the residual rows of the requested tokens (unless the last layer
         * already kept only those) */
        if (out_first > 0 && !trimmed)
            memmove(c->x, c->x + (int64_t)out_first * E, (size_t)c->n_logits * (size_t)E * sizeof(float));
        run(c, job_norm, &jo, (int64_t)jo.n * E * 2);
        mm_item out[1] = {{&m->output, c->logits, NULL}};
        matmul_group(c, c->xn, c->n_logits, out, 1);
    }
    return SM_OK;
}
