/* stats.h — per-tensor statistics of an importance matrix (--show-statistics),
 * modelled on newer llama-imatrix's table: for each weight the per-column
 * mean squared activation v_j = sum2_j / count is summarised. */
#ifndef SMELT_IMATRIX_STATS_H
#define SMELT_IMATRIX_STATS_H

#include "collect.h"
#include "err.h"

#include <stdint.h>
#include <stdio.h>

typedef struct im_tstats {
    const char *name;   /* weight name (borrowed from the collector) */
    int32_t layer;      /* N of "blk.N.", -1 otherwise */
    char kind[64];      /* the name part before ".weight", e.g. "attn_q" */
    int64_t n;          /* columns with data */
    double sum;         /* sum of v_j (llama.cpp's "Σ E[Act²]") */
    double mean;        /* mean of v_j */
    double std;         /* sample standard deviation of v_j */
    double min, max;
    double entropy;     /* bits, of p_j = v_j / sum */
    double h_norm;      /* 100 * entropy / log2(n) */
    double zd;          /* fraction of columns with |v_j - mean| > std */
    double top_share;   /* fraction of sum held by the top 10 % of columns */
    double cossim;      /* cosine similarity of v with the previous layer's same weight; 0 when none */
} im_tstats;

/* Computes statistics for every entry of c. *out is malloc'd [*n], sorted
 * by kind then by decreasing sum (llama.cpp's order). SM_ENOMEM only. */
int im_stats_compute(const im_collector *c, im_tstats **out, uint32_t *n, sm_err *err);

/* Prints the tensor table and the per-layer summary. */
void im_stats_print(FILE *f, const char *title, const im_tstats *s, uint32_t n);

#endif
