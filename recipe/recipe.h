/* recipe.h — smelt-build: one recipe runs convert -> merge -> imatrix ->
 * quantize (every preset) -> compare, skipping each step whose inputs have
 * not changed since the last run.
 *
 * A recipe is a JSON object; paths are relative to the recipe's directory:
 *   {"base": "models/stories260K",             HF directory (required)
 *    "outtype": "f16",                         convert --outtype
 *    "adapters": ["lora/x", "lora/y:0.5"],     PEFT adapters merged in order
 *    "calibration": "calibration/groups_merged.txt", imatrix text (optional)
 *    "imatrix_ctx": 512, "imatrix_chunks": 0,  0 = all chunks
 *    "presets": ["Q4_K_M", "Q5_K_M"],
 *    "eval": "eval.txt", "ctx": 512, "chunks": 0, "ram_budget": "2G",
 *    "threads": 2, "out": "build/recipe-out"}
 * Every step's key is the sha256 of its tool, arguments and the sha256 of
 * each input file; the manifest (out/manifest.json) records keys, outputs
 * (path, sha256, size), the tool version and the input hashes. A step runs
 * again only when its key changed or an output is missing or altered. */
#ifndef SMELT_RECIPE_H
#define SMELT_RECIPE_H

#include "err.h"

#include <stdint.h>
#include <stdio.h>

#define SMELT_VERSION "0.1.0"

typedef struct rc_opts {
    const char *recipe_path;
    int force;           /* run every step */
    int dry_run;         /* say what would run */
    FILE *log;           /* progress lines (stderr) */
} rc_opts;

typedef struct rc_summary {
    int n_steps;         /* steps in the plan */
    int n_ran;           /* steps executed this time */
    char ran[1024];      /* names of the steps that ran, space-separated */
    char out_dir[4096];
} rc_summary;

/* Runs the recipe. Errors: SM_EFORMAT (recipe), SM_EMISSING (inputs),
 * SM_EIO (a tool failed: the message names the step and its log file). */
int rc_run(const rc_opts *o, rc_summary *sum, sm_err *err);

#endif
