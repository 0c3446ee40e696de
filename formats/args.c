#include "args.h"

#include <errno.h>
#include <stdlib.h>

int sm_parse_i32(const char *s, int32_t *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno || v < INT32_MIN || v > INT32_MAX)
        return -1;
    *out = (int32_t)v;
    return 0;
}

int sm_parse_f32(const char *s, float *out)
{
    char *end;
    float v = strtof(s, &end);
    if (!*s || *end)
        return -1;
    *out = v;
    return 0;
}
