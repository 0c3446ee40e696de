#include "support_codecs.h"

#include "formats/gguf.h"
#include "formats/quants.h"
#include "formats/types.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ imatrix */

static int rd(const uint8_t *buf, size_t len, size_t *off, void *dst, size_t n)
{
    if (n > len - *off)
        return -1;
    memcpy(dst, buf + *off, n);
    *off += n;
    return 0;
}

int tc_imat_load(tc_imat *im, const char *path)
{
    memset(im, 0, sizeof *im);
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    fseek(f, 0, SEEK_END);
    long flen = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = flen > 0 ? malloc((size_t)flen) : NULL;
    int rc = -1;
    if (!buf || fread(buf, 1, (size_t)flen, f) != (size_t)flen)
        goto done;
    size_t len = (size_t)flen, off = 0;
    int32_t n;
    if (rd(buf, len, &off, &n, 4) || n < 1 || n > 100000)
        goto done;
    im->e = calloc((size_t)n, sizeof *im->e);
    if (!im->e)
        goto done;
    for (int32_t i = 0; i < n; i++) {
        int32_t nl, ncall, nval;
        if (rd(buf, len, &off, &nl, 4) || nl < 0 || (size_t)nl > len - off)
            goto done;
        im->e[i].name = calloc(1, (size_t)nl + 1);
        if (!im->e[i].name)
            goto done;
        memcpy(im->e[i].name, buf + off, (size_t)nl);
        off += (size_t)nl;
        im->n = i + 1;
        if (rd(buf, len, &off, &ncall, 4) || rd(buf, len, &off, &nval, 4) || nval < 1 ||
            (size_t)nval > (len - off) / 4)
            goto done;
        im->e[i].nval = nval;
        im->e[i].values = malloc((size_t)nval * 4);
        if (!im->e[i].values)
            goto done;
        memcpy(im->e[i].values, buf + off, (size_t)nval * 4);
        off += (size_t)nval * 4;
        if (ncall > 0)
            for (int32_t j = 0; j < nval; j++)
                im->e[i].values[j] /= (float)ncall;
    }
    rc = 0;
done:
    if (rc)
        tc_imat_free(im);
    free(buf);
    fclose(f);
    return rc;
}

void tc_imat_free(tc_imat *im)
{
    for (int32_t i = 0; i < im->n; i++) {
        free(im->e[i].name);
        free(im->e[i].values);
    }
    free(im->e);
    memset(im, 0, sizeof *im);
}

const float *tc_imat_find(const tc_imat *im, const char *name, int32_t *nval)
{
    for (int32_t i = 0; im && i < im->n; i++) {
        if (strcmp(im->e[i].name, name) == 0) {
            *nval = im->e[i].nval;
            return im->e[i].values;
        }
    }
    return NULL;
}

/* ------------------------------------------------------------ requant check */

int tc_requant_check(const char *in_path, const char *out_path, const tc_imat *im,
                     tc_type_stats stats[TC_NTYPES], char *first_bad, size_t len)
{
    gguf_file gin, gout;
    sm_err err = {0};
    int bad = 0;
    if (first_bad && len)
        first_bad[0] = 0;
    if (gguf_open(&gin, in_path, &err) < 0) {
        snprintf(first_bad, len, "%s", err.msg);
        return -1;
    }
    if (gguf_open(&gout, out_path, &err) < 0) {
        snprintf(first_bad, len, "%s", err.msg);
        gguf_close(&gin);
        return -1;
    }
    for (uint64_t t = 0; t < gout.n_tensors; t++) {
        const gguf_tensor *to = &gout.tensors[t];
        if (to->type == SM_TYPE_F32 || to->type == SM_TYPE_F16 || to->type == SM_TYPE_BF16)
            continue;
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)to->name.len, to->name.ptr);
        int64_t ii = gguf_find_tensor(&gin, name);
        if (ii < 0 || to->type >= TC_NTYPES) {
            if (!bad++)
                snprintf(first_bad, len, "%s: not in input", name);
            continue;
        }
        const gguf_tensor *ti = &gin.tensors[ii];
        int64_t n_per_row = to->ne[0];
        int64_t nel = to->ne[0] * to->ne[1] * to->ne[2] * to->ne[3];
        int64_t nrows = nel / n_per_row;
        stats[to->type].tensors++;
        float *f = malloc((size_t)nel * sizeof(float));
        uint8_t *q = malloc(to->nbytes ? to->nbytes : 1);
        int ok = f && q && sm_dequantize_row(ti->type, ti->data, f, nel) == 0;
        const float *qw = NULL;
        int32_t nval = 0;
        if (im) {
            qw = tc_imat_find(im, name, &nval);
            if (qw && nval != n_per_row)
                qw = NULL;
        }
        if (ok) {
            size_t w = sm_quantize_rows(to->type, f, q, nrows, n_per_row, qw);
            ok = w == to->nbytes && memcmp(q, to->data, w) == 0;
            if (!ok && !bad) {
                uint64_t at = 0;
                while (at < to->nbytes && q[at] == to->data[at])
                    at++;
                snprintf(first_bad, len, "%s (%s, %lld x %lld, imat %s): first differing byte %llu of %llu",
                         name, sm_type_name(to->type), (long long)n_per_row, (long long)nrows,
                         qw ? "yes" : "no", (unsigned long long)at, (unsigned long long)to->nbytes);
            }
        }
        if (ok) {
            stats[to->type].matched++;
            if (qw && sm_quantize_uses_imatrix(to->type))
                stats[to->type].imat++;
        } else {
            bad++;
        }
        free(f);
        free(q);
    }
    gguf_close(&gout);
    gguf_close(&gin);
    return bad;
}

/* ------------------------------------------------------------ rng */

uint64_t tc_rng_u64(tc_rng *r)
{
    uint64_t x = r->s ? r->s : 0x9E3779B97F4A7C15ull;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

double tc_rng_uniform(tc_rng *r)
{
    return (double)(tc_rng_u64(r) >> 11) * 0x1p-53;
}

double tc_rng_normal(tc_rng *r)
{
    double u1 = tc_rng_uniform(r), u2 = tc_rng_uniform(r);
    if (u1 < 1e-300)
        u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}
