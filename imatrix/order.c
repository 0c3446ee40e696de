/* order.c — the iteration order of libstdc++'s std::unordered_map.
 *
 * llama-imatrix (c392e5094) keeps its statistics in a
 * std::unordered_map<std::string, Stats> and writes the .dat entries in the
 * map's iteration order, so reproducing its files byte for byte needs that
 * order. It depends only on the hash of each name, the bucket counts the
 * prime rehash policy picks, and where a node is linked on insertion and on
 * rehash (libstdc++'s hashtable.h / hashtable_policy.h and
 * src/c++11/hashtable_c++0x.cc). Verified against g++ 12 and against the
 * reference files (tests/test_imatrix.c). */
#include "collect.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ hash */

static uint64_t shift_mix(uint64_t v)
{
    return v ^ (v >> 47);
}

uint64_t im_hash_bytes(const void *p, uint64_t len)
{
    const uint64_t mul = ((uint64_t)0xc6a4a793u << 32) + 0x5bd1e995u;
    const unsigned char *b = p;
    const uint64_t aligned = len & ~(uint64_t)7;
    uint64_t h = 0xc70f6907u ^ (len * mul);
    for (uint64_t i = 0; i < aligned; i += 8) {
        uint64_t d = 0;
        for (int k = 7; k >= 0; k--)
            d = (d << 8) | b[i + (uint64_t)k];
        d = shift_mix(d * mul) * mul;
        h ^= d;
        h *= mul;
    }
    if (len & 7) {
        uint64_t d = 0;
        for (uint64_t k = len; k > aligned; k--)
            d = (d << 8) | b[k - 1];
        h ^= d;
        h *= mul;
    }
    h = shift_mix(h) * mul;
    return shift_mix(h);
}

/* ------------------------------------------------------------ bucket counts */

/* The start of libstdc++'s __prime_list (format constants). */
static const uint32_t primes[] = {
    2,       3,       5,       7,       11,      13,      17,      19,      23,      29,      31,      37,
    41,      43,      47,      53,      59,      61,      67,      71,      73,      79,      83,      89,
    97,      103,     109,     113,     127,     137,     139,     149,     157,     167,     179,     193,
    199,     211,     227,     241,     257,     277,     293,     313,     337,     359,     383,     409,
    439,     467,     503,     541,     577,     619,     661,     709,     761,     823,     887,     953,
    1031,    1109,    1193,    1289,    1381,    1493,    1613,    1741,    1879,    2029,    2179,    2357,
    2549,    2753,    2971,    3209,    3469,    3739,    4027,    4349,    4703,    5087,    5503,    5953,
    6427,    6949,    7517,    8123,    8783,    9497,    10273,   11113,   12011,   12983,   14033,   15173,
    16411,   17749,   19183,   20753,   22447,   24281,   26267,   28411,   30727,   33223,   35933,   38873,
    42043,   45481,   49201,   53201,   57557,   62233,   67307,   72817,   78779,   85229,   92203,   99733,
    107897,  116731,  126271,  136607,  147793,  159871,  172933,  187091,  202409,  218971,  236897,  256279,
    277261,  299951,  324503,  351061,  379787,  410857,  444487,  480881,  520241,  562841,  608903,  658753,
    712697,  771049,  834181,  902483,  976369,  1056323, 1142821, 1236397, 1337629, 1447153, 1565659,
    1693859, 1832561, 1982627, 2144977,
};
#define N_PRIMES (sizeof(primes) / sizeof(primes[0]))

/* _Prime_rehash_policy::_M_next_bkt: the bucket count for at least n
 * buckets; sets *next_resize (max load factor 1). 0 when past the table. */
static uint64_t next_bkt(uint64_t n, uint64_t *next_resize)
{
    static const unsigned char fast[] = {2, 2, 2, 3, 5, 5, 7, 7, 11, 11, 11, 11, 13, 13};
    if (n < sizeof(fast)) {
        if (n == 0)
            return 1;
        *next_resize = fast[n];
        return fast[n];
    }
    for (size_t i = 6; i < N_PRIMES - 1; i++) /* lower_bound from the 7th prime */
        if (primes[i] >= n) {
            *next_resize = primes[i];
            return primes[i];
        }
    return 0;
}

/* ------------------------------------------------------------ the table */

#define BEFORE_BEGIN (-1) /* bucket points at the list head sentinel */
#define EMPTY (-2)

typedef struct table {
    int64_t *next;       /* [n] next node in the single list, -1 at the end */
    int64_t head;        /* first node, -1 when empty */
    int64_t *bucket;     /* [n_bkt] node before the bucket's first, BEFORE_BEGIN or EMPTY */
    uint64_t n_bkt;
    uint64_t *code;      /* [n] cached hash codes */
} table;

static void rehash(table *t, int64_t *newb, uint64_t n_bkt)
{
    for (uint64_t i = 0; i < n_bkt; i++)
        newb[i] = EMPTY;
    int64_t p = t->head;
    t->head = -1;
    uint64_t bbegin = 0;
    while (p >= 0) {
        int64_t nx = t->next[p];
        uint64_t b = t->code[p] % n_bkt;
        if (newb[b] == EMPTY) {
            t->next[p] = t->head;
            t->head = p;
            newb[b] = BEFORE_BEGIN;
            if (t->next[p] >= 0)
                newb[bbegin] = p;
            bbegin = b;
        } else {
            int64_t before = newb[b];
            if (before == BEFORE_BEGIN) { /* the bucket that holds the head */
                t->next[p] = t->head;
                t->head = p;
            } else {
                t->next[p] = t->next[before];
                t->next[before] = p;
            }
        }
        p = nx;
    }
    t->bucket = newb;
    t->n_bkt = n_bkt;
}

static void insert_begin(table *t, int64_t node)
{
    uint64_t b = t->code[node] % t->n_bkt;
    if (t->bucket[b] != EMPTY) {
        int64_t before = t->bucket[b];
        if (before == BEFORE_BEGIN) {
            t->next[node] = t->head;
            t->head = node;
        } else {
            t->next[node] = t->next[before];
            t->next[before] = node;
        }
    } else {
        t->next[node] = t->head;
        t->head = node;
        if (t->next[node] >= 0)
            t->bucket[t->code[t->next[node]] % t->n_bkt] = node;
        t->bucket[b] = BEFORE_BEGIN;
    }
}

int im_order_stdmap(const char *const *names, uint32_t n, uint32_t *order)
{
    int rc = SM_OK;
    table t = {0};
    int64_t *bufs[2] = {NULL, NULL};
    int64_t single = EMPTY;
    t.next = malloc((n ? n : 1) * sizeof(int64_t));
    t.code = malloc((n ? n : 1) * sizeof(uint64_t));
    if (!t.next || !t.code) {
        rc = SM_ENOMEM;
        goto done;
    }
    t.head = -1;
    t.bucket = &single; /* a default-constructed map has one bucket */
    t.n_bkt = 1;
    uint64_t next_resize = 0;
    int cur = 0;
    for (uint32_t i = 0; i < n; i++) {
        t.code[i] = im_hash_bytes(names[i], strlen(names[i]));
        /* _M_need_rehash(n_bkt, n_elt = i, n_ins = 1) */
        if ((uint64_t)i + 1 > next_resize) {
            uint64_t min_bkts = (uint64_t)i + 1;
            if (!next_resize && min_bkts < 11)
                min_bkts = 11;
            if (min_bkts >= t.n_bkt) {
                uint64_t want = min_bkts + 1 > t.n_bkt * 2 ? min_bkts + 1 : t.n_bkt * 2;
                uint64_t nb = next_bkt(want, &next_resize);
                if (!nb) {
                    rc = SM_ERANGE;
                    goto done;
                }
                int64_t *newb = realloc(bufs[cur], nb * sizeof(int64_t));
                if (!newb) {
                    rc = SM_ENOMEM;
                    goto done;
                }
                bufs[cur] = newb;
                rehash(&t, newb, nb);
                cur ^= 1; /* the old bucket array is free for the next rehash */
            } else {
                next_resize = t.n_bkt;
            }
        }
        insert_begin(&t, (int64_t)i);
    }
    uint32_t k = 0;
    for (int64_t p = t.head; p >= 0; p = t.next[p])
        order[k++] = (uint32_t)p;
done:
    free(bufs[0]);
    free(bufs[1]);
    free(t.next);
    free(t.code);
    return rc;
}
