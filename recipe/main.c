/* smelt-build — run a recipe: convert -> merge -> imatrix -> quantize ->
 * compare, skipping steps whose inputs have not changed. */
#include "recipe.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: smelt-build RECIPE.json [--force] [--dry-run]\n"
               "Runs convert -> merge -> imatrix -> quantize (each preset) -> compare as the recipe says,\n"
               "skipping steps whose inputs (content hashes) have not changed; writes OUT/manifest.json\n"
               "with the inputs, the tool version and every output's sha256 and size.\n"
               "  --force    run every step\n  --dry-run  only say what would run\n");
}

int main(int argc, char **argv)
{
    rc_opts o = {0};
    o.log = stderr;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--force")) {
            o.force = 1;
        } else if (!strcmp(argv[i], "--dry-run")) {
            o.dry_run = 1;
        } else if (!strcmp(argv[i], "--version")) {
            printf("smelt-build %s\n", SMELT_VERSION);
            return 0;
        } else if (argv[i][0] == '-' || o.recipe_path) {
            fprintf(stderr, "smelt-build: unexpected argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        } else {
            o.recipe_path = argv[i];
        }
    }
    if (!o.recipe_path) {
        usage(stderr);
        return 2;
    }
    rc_summary s;
    sm_err err = {0};
    if (rc_run(&o, &s, &err)) {
        fprintf(stderr, "smelt-build: %s: %s\n", o.recipe_path, err.msg);
        return 1;
    }
    fprintf(stderr, "smelt-build: %d steps, %d ran%s%s; outputs and manifest in %s\n", s.n_steps, s.n_ran,
            s.n_ran ? ": " : "", s.ran, s.out_dir);
    return 0;
}
