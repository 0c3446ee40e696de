/* smelt-infer gate: passes identical runs, fails a model degraded on purpose,
 * refuses runs that are not comparable. Runs real perplexity jobs on the
 * shared stories260K files (10 chunks of 128 tokens: well under a second). */
#include <criterion/criterion.h>

#include "infer/gate.h"
#include "support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *dir;

static void ppl_json(const char *model_rel, const char *text_rel, int ctx, const char *out_name)
{
    char *out = NULL;
    int st = ts_run(&out, "%s/smelt-infer perplexity -m %s -f %s -c %d -b %d --chunks 10 -t 2 --json > %s/%s 2>/dev/null",
                    ts_bin(), ts_path(model_rel), ts_path(text_rel), ctx, ctx, dir, out_name);
    cr_assert_eq(st, 0, "perplexity run failed: %s", out ? out : "");
    free(out);
}

static int gate(const char *base, const char *cur, const char *extra, char **out)
{
    return ts_run(out, "%s/smelt-infer gate --baseline %s/%s --current %s/%s %s", ts_bin(), dir, base, dir, cur, extra);
}

static void setup(void)
{
    dir = ts_tmpdir();
    ppl_json("reference/stories260K/convert-q8_0.gguf", "text/tinystories-valid.txt", 128, "q8.json");
    ppl_json("reference/stories260K/convert-q8_0.gguf", "text/tinystories-valid.txt", 128, "q8-again.json");
    ppl_json("reference/stories260K/Q3_K_S.gguf", "text/tinystories-valid.txt", 128, "q3.json");
    ppl_json("reference/stories260K/convert-q8_0.gguf", "text/tinystories-valid.txt", 64, "q8-ctx64.json");
    ppl_json("reference/stories260K/convert-q8_0.gguf", "text/tinystories-train-head.txt", 128, "q8-other-text.json");
}

static void teardown(void)
{
    ts_rmtree(dir);
    free(dir);
}

TestSuite(gate, .init = setup, .fini = teardown);

Test(gate, identical_runs_pass)
{
    char *out;
    int st = gate("q8.json", "q8-again.json", "", &out);
    cr_assert_eq(st, 0, "%s", out);
    cr_assert(strstr(out, "ok: PPL"), "%s", out);
    free(out);
}

Test(gate, degraded_model_fails_with_a_reason)
{
    char *out;
    int st = gate("q8.json", "q3.json", "--max-ppl-increase 0.5%", &out);
    cr_assert_eq(st, 1, "%s", out);
    cr_assert(strstr(out, "FAIL: PPL rose"), "%s", out);
    free(out);
    /* a loose bound lets it through */
    st = gate("q8.json", "q3.json", "--max-ppl-increase 20%", &out);
    cr_assert_eq(st, 0, "%s", out);
    free(out);
}

Test(gate, incomparable_runs_are_refused)
{
    char *out;
    int st = gate("q8.json", "q8-ctx64.json", "", &out);
    cr_assert_eq(st, 2, "%s", out);
    cr_assert(strstr(out, "context size") && strstr(out, "chunk count") == NULL, "%s", out);
    free(out);
    st = gate("q8.json", "q8-other-text.json", "", &out);
    cr_assert_eq(st, 2, "%s", out);
    cr_assert(strstr(out, "evaluation text bytes"), "%s", out);
    free(out);
    st = gate("q8.json", "missing.json", "", &out);
    cr_assert_eq(st, 2, "%s", out);
    free(out);
    /* --max-kld needs a KLD run */
    st = gate("q8.json", "q8-again.json", "--max-kld 0.05", &out);
    cr_assert_eq(st, 2, "%s", out);
    cr_assert(strstr(out, "kld_mean"), "%s", out);
    free(out);
}

Test(gate, kld_bound)
{
    char p[1200];
    snprintf(p, sizeof p, "%s/k-base.json", dir);
    FILE *f = fopen(p, "w");
    fprintf(f, "{\"ctx\": 128, \"chunks\": 20, \"ppl_q\": 6.0}");
    fclose(f);
    snprintf(p, sizeof p, "%s/k-now.json", dir);
    f = fopen(p, "w");
    fprintf(f, "{\"ctx\": 128, \"chunks\": 20, \"ppl_q\": 6.01, \"kld_mean\": 0.072}");
    fclose(f);
    char *out;
    int st = gate("k-base.json", "k-now.json", "--max-kld 0.05", &out);
    cr_assert_eq(st, 1, "%s", out);
    cr_assert(strstr(out, "FAIL: mean KLD"), "%s", out);
    free(out);
    st = gate("k-base.json", "k-now.json", "--max-kld 0.1", &out);
    cr_assert_eq(st, 0, "%s", out);
    free(out);
}

Test(gate, fraction_parsing)
{
    double v;
    cr_assert_eq(gate_parse_fraction("1%", &v), 0);
    cr_assert_float_eq(v, 0.01, 1e-15);
    cr_assert_eq(gate_parse_fraction("0.5 %", &v), 0);
    cr_assert_float_eq(v, 0.005, 1e-15);
    cr_assert_eq(gate_parse_fraction("0.02", &v), 0);
    cr_assert_float_eq(v, 0.02, 1e-15);
    cr_assert_neq(gate_parse_fraction("abc", &v), 0);
    cr_assert_neq(gate_parse_fraction("-1%", &v), 0);
    cr_assert_neq(gate_parse_fraction("1%%", &v), 0);
}
