/* smelt-infer compare: the four report files, numbers equal to what
 * perplexity/kld print for the same files, and the recommendation is the
 * lowest-KLD candidate that fits the budget. */
#include <criterion/criterion.h>

#include "infer/compare.h"
#include "support.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

Test(compare, size_parsing)
{
    uint64_t v;
    cr_assert_eq(compare_parse_size("2G", &v), 0);
    cr_assert_eq(v, 2ull << 30);
    cr_assert_eq(compare_parse_size("1.5GiB", &v), 0);
    cr_assert_eq(v, 3ull << 29);
    cr_assert_eq(compare_parse_size("800M", &v), 0);
    cr_assert_eq(v, 800ull << 20);
    cr_assert_eq(compare_parse_size("4096", &v), 0);
    cr_assert_eq(v, 4096);
    cr_assert_neq(compare_parse_size("2X", &v), 0);
    cr_assert_neq(compare_parse_size("-1G", &v), 0);
    cr_assert_neq(compare_parse_size("G", &v), 0);
}

static json_t *find(json_t *cands, const char *label)
{
    size_t i;
    json_t *c;
    json_array_foreach(cands, i, c) if (!strcmp(json_string_value(json_object_get(c, "candidate")), label)) return c;
    return NULL;
}

/* RAM need of a file at ctx 128 as `smelt-infer mem` reports it. */
static long long mem_total(const char *model)
{
    char *out = NULL;
    int st = ts_run(&out, "%s/smelt-infer mem -m %s -c 128 -b 128 -t 2 --json 2>/dev/null", ts_bin(), model);
    cr_assert_eq(st, 0, "%s", out);
    json_t *j = json_loads(out, 0, NULL);
    free(out);
    cr_assert(j);
    long long v = json_integer_value(json_object_get(j, "total_bytes"));
    json_decref(j);
    return v;
}

Test(compare, report_on_tinystories)
{
    char *dir = ts_tmpdir(), *out = NULL;
    const char *base = ts_path("reference/tinystories-3m/convert-f16.gguf");
    const char *q5 = ts_path("reference/tinystories-3m/Q5_K_M.gguf");
    const char *text = ts_path("text/tinystories-valid.txt");
    /* budget between Q4_K_M's and Q5_K_M's RAM need: Q5_K_M must not win.
     * (smelt-quantize's Q4_K_M is byte-identical to the reference file.) */
    long long m4 = mem_total(ts_path("reference/tinystories-3m/Q4_K_M.gguf")), m5 = mem_total(q5);
    cr_assert_lt(m4, m5);
    int st = ts_run(&out, "%s/smelt-infer compare --base %s --quants Q3_K_S,Q4_K_M,%s -f %s -c 128 --chunks 12 "
                          "--ram-budget %lld --bench-pp 16 --bench-tg 4 -o %s/report",
                    ts_bin(), base, q5, text, (m4 + m5) / 2, dir);
    cr_assert_eq(st, 0, "%s", out);
    free(out);
    const char *ext[] = {"md", "json", "csv", "svg"};
    for (int i = 0; i < 4; i++) {
        char p[1200];
        snprintf(p, sizeof p, "%s/report.%s", dir, ext[i]);
        cr_assert(ts_exists(p), "report.%s missing", ext[i]);
    }
    char p[1200];
    snprintf(p, sizeof p, "%s/report.json", dir);
    json_t *j = json_load_file(p, 0, NULL);
    cr_assert(j);
    json_t *cands = json_object_get(j, "candidates");
    cr_assert_eq(json_array_size(cands), 4);
    json_t *q3 = find(cands, "Q3_K_S"), *q4 = find(cands, "Q4_K_M"), *q5c = find(cands, "Q5_K_M.gguf");
    cr_assert(q3 && q4 && q5c);
    /* KLD ordering as expected from the bit widths */
    double k3 = json_real_value(json_object_get(q3, "kld_mean")), k4 = json_real_value(json_object_get(q4, "kld_mean")),
           k5 = json_real_value(json_object_get(q5c, "kld_mean"));
    cr_assert(k3 > k4 && k4 > k5 && k5 > 0, "KLD %g %g %g", k3, k4, k5);
    cr_assert(json_is_true(json_object_get(q4, "fits_budget")));
    cr_assert(json_is_false(json_object_get(q5c, "fits_budget")));
    cr_assert_str_eq(json_string_value(json_object_get(j, "recommended")), "Q4_K_M");
    cr_assert(strstr(json_string_value(json_object_get(j, "reason")), "lowest mean KLD"));
    /* the numbers equal a separate perplexity run of the same file */
    double ppl5 = json_real_value(json_object_get(q5c, "ppl"));
    st = ts_run(&out, "%s/smelt-infer perplexity -m %s -f %s -c 128 -b 128 --chunks 12 -t 2 --json 2>/dev/null", ts_bin(),
                q5, text);
    cr_assert_eq(st, 0);
    json_t *pj = json_loads(out, 0, NULL);
    free(out);
    cr_assert(pj);
    cr_assert_float_eq(json_real_value(json_object_get(pj, "ppl")), ppl5, 1e-9);
    json_decref(pj);
    /* CSV: header + 4 rows; SVG draws the budget */
    snprintf(p, sizeof p, "%s/report.csv", dir);
    size_t n;
    char *csv = (char *)ts_read(p, &n);
    int lines = 0;
    for (size_t i = 0; i < n; i++)
        lines += csv[i] == '\n';
    cr_assert_eq(lines, 5);
    free(csv);
    snprintf(p, sizeof p, "%s/report.svg", dir);
    char *svg = (char *)ts_read(p, &n);
    cr_assert(svg && strstr(svg, "<svg") && strstr(svg, "budget"));
    free(svg);
    json_decref(j);
    ts_rmtree(dir);
    free(dir);
}
