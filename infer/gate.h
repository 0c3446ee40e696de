/* gate.h — `smelt-infer gate`: a perplexity/KLD regression gate for CI.
 *
 * Compares two JSON results of `smelt-infer perplexity --json` (or of the
 * KLD mode, which adds kld_mean) and decides: within bounds (exit 0),
 * regressed (exit 1, one line per violation), or not comparable (exit 2:
 * different text bytes, tokenizer, context, chunk count or architecture —
 * the JSON records a hash or value of each). */
#ifndef SMELT_INFER_GATE_H
#define SMELT_INFER_GATE_H

#include <stdio.h>

/* Unreadable inputs and usage errors also exit 2: nothing could be compared. */
enum { GATE_PASS = 0, GATE_FAIL = 1, GATE_INCOMPARABLE = 2, GATE_USAGE = 2 };

typedef struct gate_opts {
    const char *baseline;      /* path of the baseline JSON */
    const char *current;       /* path of the current JSON */
    double max_ppl_increase;   /* relative, e.g. 0.01 for 1 %; < 0 = unchecked */
    double max_kld;            /* absolute mean KLD; < 0 = unchecked */
} gate_opts;

/* Decides; writes the verdict lines to out (violations / reasons, then a
 * summary). Returns GATE_PASS, GATE_FAIL, GATE_INCOMPARABLE, or GATE_USAGE
 * for unreadable or malformed files. */
int gate_check(const gate_opts *o, FILE *out);

/* Parses "1%", "0.5 %", "0.01" into a relative fraction (1% -> 0.01).
 * Returns 0 on success. */
int gate_parse_fraction(const char *s, double *out);

/* CLI entry: argv[0] is "gate". */
int gate_main(int argc, char **argv);

#endif
