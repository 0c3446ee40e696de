/* smelt-build: a recipe runs convert -> imatrix -> quantize -> compare; a
 * second run does no work; changing the calibration text reruns imatrix,
 * quantize and compare but not convert; the manifest records every output. */
#include <criterion/criterion.h>

#include "support.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int run_build(const char *recipe, char **out)
{
    return ts_run(out, "%s/smelt-build %s", ts_bin(), recipe);
}

Test(recipe, skips_unchanged_steps)
{
    char *dir = ts_tmpdir();
    char recipe[1200], calib[1200], cmd[8192];
    snprintf(calib, sizeof calib, "%s/calib.txt", dir);
    snprintf(cmd, sizeof cmd, "head -c 12000 %s > %s", ts_path("text/groups_merged.txt"), calib);
    cr_assert_eq(system(cmd), 0);
    snprintf(recipe, sizeof recipe, "%s/recipe.json", dir);
    FILE *f = fopen(recipe, "w");
    fprintf(f,
            "{\"base\": \"%s\", \"outtype\": \"f16\", \"calibration\": \"calib.txt\", \"imatrix_ctx\": 64,\n"
            " \"imatrix_chunks\": 4, \"presets\": [\"Q4_K_M\", \"Q6_K\"], \"eval\": \"%s\", \"ctx\": 64, \"chunks\": 6,\n"
            " \"ram_budget\": \"64M\", \"threads\": 2, \"out\": \"out\"}\n",
            ts_path("models/stories260K"), ts_path("text/tinystories-valid.txt"));
    fclose(f);
    char *out = NULL;
    int st = run_build(recipe, &out);
    cr_assert_eq(st, 0, "%s", out);
    cr_assert(strstr(out, "5 steps, 5 ran"), "%s", out);
    free(out);
    char p[1300];
    snprintf(p, sizeof p, "%s/out/report.md", dir);
    cr_assert(ts_exists(p));
    /* second run: nothing to do */
    st = run_build(recipe, &out);
    cr_assert_eq(st, 0, "%s", out);
    cr_assert(strstr(out, "5 steps, 0 ran"), "%s", out);
    free(out);
    /* new calibration text: imatrix, both quantizations and compare rerun, convert does not */
    /* prepended: the imatrix reads only the first 4 chunks */
    snprintf(cmd, sizeof cmd, "{ echo 'A new sentence changes the calibration.'; cat %s; } > %s.new && mv %s.new %s", calib,
             calib, calib, calib);
    cr_assert_eq(system(cmd), 0);
    st = run_build(recipe, &out);
    cr_assert_eq(st, 0, "%s", out);
    cr_assert(strstr(out, "4 ran: imatrix quantize-Q4_K_M quantize-Q6_K compare"), "%s", out);
    free(out);
    /* the manifest: tool version, inputs and outputs with sha256 and size */
    snprintf(p, sizeof p, "%s/out/manifest.json", dir);
    json_t *m = json_load_file(p, 0, NULL);
    cr_assert(m);
    cr_assert(json_is_string(json_object_get(m, "smelt_version")));
    json_t *steps = json_object_get(m, "steps");
    cr_assert_eq(json_object_size(steps), 5);
    json_t *conv = json_object_get(steps, "convert");
    cr_assert(json_is_false(json_object_get(conv, "ran")));
    json_t *outs = json_object_get(conv, "outputs");
    cr_assert_eq(json_array_size(outs), 1);
    cr_assert_eq(strlen(json_string_value(json_object_get(json_array_get(outs, 0), "sha256"))), 64);
    cr_assert_gt(json_integer_value(json_object_get(json_array_get(outs, 0), "size")), 100000);
    cr_assert_gt(json_object_size(json_object_get(m, "inputs")), 3);
    json_decref(m);
    /* a broken recipe is refused with the reason */
    f = fopen(recipe, "w");
    fprintf(f, "{\"base\": \"x\", \"presets\": \"Q4_K_M\", \"out\": \"o\"}");
    fclose(f);
    st = run_build(recipe, &out);
    cr_assert_eq(st, 1);
    cr_assert(strstr(out, "presets"), "%s", out);
    free(out);
    ts_rmtree(dir);
    free(dir);
}
