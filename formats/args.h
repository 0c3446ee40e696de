/* args.h — strict number parsing for the tools' command lines: the whole
 * string must be a number in range ("12x", "" and overflow are errors),
 * unlike atoi/strtol used bare. */
#ifndef SMELT_ARGS_H
#define SMELT_ARGS_H

#include <stdint.h>

/* Base-10 int32. Returns 0 and sets *out, or -1 leaving *out unchanged. */
int sm_parse_i32(const char *s, int32_t *out);
/* A float (strtof syntax). Returns 0 and sets *out, or -1. */
int sm_parse_f32(const char *s, float *out);

#endif
