/* support_codecs.h — test helpers for the block codecs: a minimal legacy
 * imatrix loader and the "requantize a llama.cpp output and compare bytes"
 * check, usable by any suite that wants to prove bit-exact quantization. */
#ifndef SMELT_TEST_SUPPORT_CODECS_H
#define SMELT_TEST_SUPPORT_CODECS_H

#include <stddef.h>
#include <stdint.h>

/* One weight of a legacy imatrix.dat, values already divided by ncall the
 * way llama-quantize's load_imatrix does (float division, ncall > 0). */
typedef struct tc_imat_entry {
    char *name;     /* owned */
    int32_t nval;
    float *values;  /* [nval] owned */
} tc_imat_entry;

typedef struct tc_imat {
    int32_t n;
    tc_imat_entry *e; /* [n] owned */
} tc_imat;

/* Loads path; returns 0 or -1 (malformed / unreadable). */
int tc_imat_load(tc_imat *im, const char *path);
void tc_imat_free(tc_imat *im);
/* Values of the entry named name, or NULL; *nval set when found. */
const float *tc_imat_find(const tc_imat *im, const char *name, int32_t *nval);

/* Per-type tallies of a requantization check. */
typedef struct tc_type_stats {
    uint32_t tensors;   /* quantized tensors of this type in the output */
    uint32_t matched;   /* of which our bytes equal llama.cpp's */
    uint32_t imat;      /* of which were quantized with imatrix weights */
} tc_type_stats;

#define TC_NTYPES 40

/* For every tensor of a quantized type (not F32/F16/BF16) in out_path:
 * decode the same-named tensor of in_path to f32, quantize it with the
 * output's type (with the imatrix entry of that name when im != NULL and its
 * length equals the row length, as llama-quantize does) and compare with the
 * output's bytes. Fills stats[type]; returns the number of mismatching
 * tensors, or -1 when a file cannot be read. When the first mismatch occurs,
 * a description is written to first_bad[len]. */
int tc_requant_check(const char *in_path, const char *out_path, const tc_imat *im,
                     tc_type_stats stats[TC_NTYPES], char *first_bad, size_t len);

/* Deterministic random numbers (xorshift64*), so failures reproduce. */
typedef struct tc_rng {
    uint64_t s;
} tc_rng;
uint64_t tc_rng_u64(tc_rng *r);
/* Uniform in [0, 1). */
double tc_rng_uniform(tc_rng *r);
/* Standard normal (Box-Muller). */
double tc_rng_normal(tc_rng *r);

/* Deterministic test inputs made only of exact float/double operations
 * (no libm), so a separate program built from llama.cpp's sources produces
 * the very same floats: that is how the golden hashes in the suite were
 * made. dist: 0 normal-like, 1 heavy-tailed, 2 constant per row, 3 zeros,
 * 4 tiny (1e-30), 5 huge (1e4), 6 mixed (zero sub-blocks + outliers),
 * 7 ties (multiples of 1/4), 8 near-eps (1e-15..1e-14 magnitudes). */
#define TC_NDIST 9

static inline uint64_t tc_gen_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

static inline double tc_gen_u01(uint64_t *s)
{
    return (double)(tc_gen_next(s) >> 11) * (1.0 / 9007199254740992.0);
}

/* Irwin-Hall(4), centred: mean 0, variance 1/3. */
static inline double tc_gen_bell(uint64_t *s)
{
    double a = tc_gen_u01(s), b = tc_gen_u01(s), c = tc_gen_u01(s), d = tc_gen_u01(s);
    return (a + b + c + d) - 2.0;
}

static inline void tc_gen_fill(int dist, uint64_t seed, float *x, int64_t nrows, int64_t n_per_row)
{
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 12345u;
    for (int64_t r = 0; r < nrows; r++) {
        double row_c = 0.03125 * (double)(r + 1);
        for (int64_t j = 0; j < n_per_row; j++) {
            double v;
            switch (dist) {
            case 0: v = 0.02 * tc_gen_bell(&s); break;
            case 1: v = 0.002 * tc_gen_bell(&s) / (tc_gen_u01(&s) + 0.02); break;
            case 2: v = (r % 2) ? -row_c : row_c; break;
            case 3: v = 0.0; break;
            case 4: v = 1e-30 * tc_gen_bell(&s); break;
            case 5: v = 1e4 * tc_gen_bell(&s); break;
            case 6:
                if ((j / 16) % 5 == 1) v = 0.0;
                else if (tc_gen_next(&s) % 97 == 0) v = 3.0 * tc_gen_bell(&s);
                else v = 0.05 * tc_gen_bell(&s);
                break;
            case 7: v = 0.25 * (double)((int64_t)(tc_gen_next(&s) % 33) - 16); break;
            default: v = 1e-14 * tc_gen_bell(&s); break;
            }
            x[r * n_per_row + j] = (float)v;
        }
    }
}

/* Importance weights: positive, spread over 3 decades, 1 in 16 exactly 0. */
static inline void tc_gen_imatrix(uint64_t seed, float *w, int64_t n)
{
    uint64_t s = seed * 0xD1B54A32D192ED03ull + 777u;
    for (int64_t j = 0; j < n; j++) {
        double u = tc_gen_u01(&s);
        w[j] = (tc_gen_next(&s) % 16 == 0) ? 0.0f : (float)(0.01 + 10.0 * u * u);
    }
}

static inline uint64_t tc_fnv1a(const void *p, size_t n)
{
    const uint8_t *b = p;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

#endif
