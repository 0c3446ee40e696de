/* tok_spm.c — llama.cpp's SentencePiece tokenizer (llm_tokenizer_spm_session).
 *
 * The text is cut into UTF-8 characters (by lead byte only, like llama.cpp:
 * no validation), then the adjacent pair whose concatenation is a token with
 * the highest score is merged, repeatedly. Ties go to the leftmost pair, which
 * is what llama.cpp's std::priority_queue comparator gives. Symbols that are
 * not tokens at the end are emitted as <0xXX> byte tokens. */
#include "infer/tok_internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct spm_sym {
    int32_t prev, next; /* neighbour symbol indices, -1 at the ends */
    uint32_t off;       /* byte offset in the text */
    uint32_t n;         /* byte length; 0 once merged into its left neighbour */
} spm_sym;

typedef struct spm_bigram {
    int32_t left, right; /* symbol indices */
    float score;         /* score of the merged token */
    uint32_t size;       /* byte length of the merged text when queued */
} spm_bigram;

typedef struct spm_heap {
    spm_bigram *v; /* [cap] binary max-heap */
    size_t n, cap;
} spm_heap;

/* 1 when a must be popped before b: higher score first, then leftmost. */
static int spm_before(const spm_bigram *a, const spm_bigram *b)
{
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static int spm_heap_push(spm_heap *h, spm_bigram b)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        spm_bigram *nv = realloc(h->v, cap * sizeof *nv);
        if (!nv)
            return SM_ENOMEM;
        h->v = nv;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!spm_before(&b, &h->v[p]))
            break;
        h->v[i] = h->v[p];
        i = p;
    }
    h->v[i] = b;
    return 0;
}

static spm_bigram spm_heap_pop(spm_heap *h)
{
    spm_bigram top = h->v[0];
    spm_bigram last = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && spm_before(&h->v[c + 1], &h->v[c]))
            c++;
        if (!spm_before(&h->v[c], &last))
            break;
        h->v[i] = h->v[c];
        i = c;
    }
    if (h->n > 0)
        h->v[i] = last;
    return top;
}

static int spm_try_bigram(const tok_vocab *v, const char *text, const spm_sym *syms, int32_t left, int32_t right,
                          spm_heap *h)
{
    if (left < 0 || right < 0)
        return 0;
    uint64_t len = (uint64_t)syms[left].n + syms[right].n;
    if (len > v->max_token_len)
        return 0; /* no token is that long: skip the hash lookup */
    int32_t id = tok_lookup(v, text + syms[left].off, (size_t)len);
    if (id == TOK_NULL)
        return 0;
    spm_bigram b = {left, right, v->scores[id], (uint32_t)len};
    return spm_heap_push(h, b);
}

int tok_spm_encode(const tok_vocab *v, const char *text, size_t len, tok_ids *out)
{
    int rc = 0;
    spm_sym *syms = NULL;
    spm_heap heap = {0};
    if (len == 0)
        return 0;
    syms = malloc(len * sizeof *syms);
    if (!syms) {
        rc = SM_ENOMEM;
        goto done;
    }

    /* one symbol per UTF-8 character, length from the lead byte alone */
    static const uint8_t lead_len[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    int32_t n_syms = 0;
    for (size_t off = 0; off < len;) {
        size_t n = lead_len[(uint8_t)text[off] >> 4];
        if (n > len - off)
            n = len - off;
        syms[n_syms].off = (uint32_t)off;
        syms[n_syms].n = (uint32_t)n;
        syms[n_syms].prev = n_syms - 1;
        off += n;
        syms[n_syms].next = off == len ? -1 : n_syms + 1;
        n_syms++;
    }

    for (int32_t i = 1; i < n_syms; i++)
        if ((rc = spm_try_bigram(v, text, syms, i - 1, i, &heap)) < 0)
            goto done;

    while (heap.n > 0) {
        spm_bigram b = spm_heap_pop(&heap);
        spm_sym *l = &syms[b.left], *r = &syms[b.right];
        /* stale entry: one side was merged away or grew since it was queued */
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size)
            continue;
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0)
            syms[r->next].prev = b.left;
        if ((rc = spm_try_bigram(v, text, syms, l->prev, b.left, &heap)) < 0)
            goto done;
        if ((rc = spm_try_bigram(v, text, syms, b.left, l->next, &heap)) < 0)
            goto done;
    }

    for (int32_t i = 0; i != -1; i = syms[i].next) {
        const spm_sym *s = &syms[i];
        int32_t id = tok_lookup(v, text + s->off, s->n);
        if (id != TOK_NULL) {
            if ((rc = tok_ids_push(out, id)) < 0)
                goto done;
            continue;
        }
        /* byte fallback; llama.cpp throws when the vocabulary has no token
         * for a byte, we emit the unknown token instead (or nothing) */
        for (uint32_t j = 0; j < s->n; j++) {
            int32_t bid = v->byte_tok[(uint8_t)text[s->off + j]];
            if (bid == TOK_NULL)
                bid = v->unk;
            if (bid != TOK_NULL && (rc = tok_ids_push(out, bid)) < 0)
                goto done;
        }
    }

done:
    free(heap.v);
    free(syms);
    return rc;
}
