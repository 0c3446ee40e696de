/* smelt-merge — fold PEFT LoRA adapters into base weights, export an adapter
 * as a llama.cpp GGUF LoRA, or describe an adapter.
 *
 *   smelt-merge --base BASE --lora DIR[:SCALE] [--lora ...] -o OUT
 *               [--outtype auto|f32|f16|bf16] [--threads N] [--json] [--quiet]
 *   smelt-merge --export-gguf-lora DIR[:SCALE] --base BASE -o ADAPTER.gguf
 *   smelt-merge --inspect DIR [--json] */
#include "adapter.h"
#include "export.h"
#include "merge.h"

#include "fileio.h"
#include "types.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_ADAPTERS 32

static const char *prog = "smelt-merge";

static void usage(FILE *fp)
{
    fprintf(fp,
            "usage: %s --base BASE --lora ADAPTER_DIR[:SCALE] [--lora ...] -o OUT [--outtype auto|f32|f16|bf16]\n"
            "                   [--threads N] [--json] [--quiet] [--force]\n"
            "       %s --export-gguf-lora ADAPTER_DIR[:SCALE] --base BASE -o ADAPTER.gguf\n"
            "       %s --inspect ADAPTER_DIR [--json]\n"
            "\n"
            "BASE is a Hugging Face model directory (output: a directory of the same layout)\n"
            "or a GGUF with F32/F16/BF16 weights (output: a GGUF). W' = W + scale * B.A in F32,\n"
            "rounded once to the output type; scale = alpha/r (alpha/sqrt(r) with rsLoRA,\n"
            "per-module alpha_pattern/rank_pattern) times SCALE. Adapters apply in order.\n"
            "  --outtype T   auto keeps each tensor's type (default); f32/f16/bf16 converts\n"
            "                every float tensor (GGUF: every float matrix)\n"
            "  --threads N   threads for the B.A products (default: one per CPU; the\n"
            "                result does not depend on it)\n"
            "  --json        print the summary (changed tensors, delta norms) as JSON\n"
            "  --quiet       no progress lines\n",
            prog, prog, prog);
}

/* Splits "DIR[:SCALE]": SCALE is taken only when what follows the last ':'
 * is a complete finite number, so directory names with ':' still work. */
static void split_scale(char *arg, double *scale)
{
    *scale = 1.0;
    char *c = strrchr(arg, ':');
    if (!c || c[1] == '\0')
        return;
    char *end = NULL;
    errno = 0;
    double v = strtod(c + 1, &end);
    if (errno == 0 && end && *end == '\0' && isfinite(v)) {
        *scale = v;
        *c = '\0';
    }
}

static int fail(const sm_err *err)
{
    fprintf(stderr, "%s: %s\n", prog, err->msg);
    return 1;
}

int main(int argc, char **argv)
{
    const char *base = NULL, *out = NULL, *inspect = NULL, *outtype_s = "auto";
    char *export_dir = NULL;
    char *loras[MAX_ADAPTERS];
    uint32_t n_loras = 0;
    int json = 0, quiet = 0, force = 0;
    uint32_t n_threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has_val = i + 1 < argc;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--base") == 0 && has_val) {
            base = argv[++i];
        } else if (strcmp(a, "--lora") == 0 && has_val) {
            if (n_loras == MAX_ADAPTERS) {
                fprintf(stderr, "%s: at most %d adapters\n", prog, MAX_ADAPTERS);
                return 2;
            }
            loras[n_loras++] = argv[++i];
        } else if ((strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0) && has_val) {
            out = argv[++i];
        } else if (strcmp(a, "--outtype") == 0 && has_val) {
            outtype_s = argv[++i];
        } else if (strcmp(a, "--export-gguf-lora") == 0 && has_val) {
            export_dir = argv[++i];
        } else if (strcmp(a, "--inspect") == 0 && has_val) {
            inspect = argv[++i];
        } else if ((strcmp(a, "--threads") == 0 || strcmp(a, "-t") == 0) && has_val) {
            char *end = NULL;
            long v = strtol(argv[++i], &end, 10);
            if (!end || *end || v < 1 || v > MERGE_MAX_THREADS) {
                fprintf(stderr, "%s: --threads %s: expected 1..%d\n", prog, argv[i], MERGE_MAX_THREADS);
                return 2;
            }
            n_threads = (uint32_t)v;
        } else if (strcmp(a, "--json") == 0) {
            json = 1;
        } else if (strcmp(a, "--quiet") == 0 || strcmp(a, "-q") == 0) {
            quiet = 1;
        } else if (strcmp(a, "--force") == 0) {
            force = 1;
        } else {
            fprintf(stderr, "%s: unknown or incomplete option '%s'\n", prog, a);
            usage(stderr);
            return 2;
        }
    }
    sm_err err = {0};
    sm_out_install_signal_cleanup();
    merge_install_signal_cleanup();
    /* a closed stdout (| head) must not kill a merge half-way */
    signal(SIGPIPE, SIG_IGN);

    if (inspect) {
        lora_adapter ad;
        if (lora_open(&ad, inspect, &err) < 0)
            return fail(&err);
        int rc = lora_describe(&ad, stdout, json, &err);
        lora_close(&ad);
        return rc < 0 ? fail(&err) : 0;
    }

    if (export_dir) {
        if (!base || !out) {
            fprintf(stderr, "%s: --export-gguf-lora needs --base BASE and -o OUT\n", prog);
            return 2;
        }
        double scale;
        split_scale(export_dir, &scale);
        lora_adapter ad;
        if (lora_open(&ad, export_dir, &err) < 0)
            return fail(&err);
        ad.user_scale = scale;
        export_info info;
        int rc = export_gguf_lora(&ad, base, out, &info, &err);
        lora_close(&ad);
        if (rc < 0)
            return fail(&err);
        if (!quiet)
            fprintf(stderr, "%s: wrote %s: %u tensors, adapter.lora.alpha = %.9g, name \"%s\"\n", prog, out,
                    info.n_tensors, info.alpha, info.name);
        return 0;
    }

    if (!base || !out || n_loras == 0) {
        usage(stderr);
        return 2;
    }
    int32_t outtype = MERGE_OUT_AUTO;
    if (strcmp(outtype_s, "auto") != 0) {
        int t = sm_type_from_name(outtype_s);
        if (t != SM_TYPE_F32 && t != SM_TYPE_F16 && t != SM_TYPE_BF16) {
            fprintf(stderr, "%s: --outtype %s: expected auto, f32, f16 or bf16\n", prog, outtype_s);
            return 2;
        }
        outtype = t;
    }
    lora_adapter ads[MAX_ADAPTERS];
    uint32_t n_open = 0;
    int rc = 0;
    for (uint32_t i = 0; i < n_loras; i++) {
        double scale;
        split_scale(loras[i], &scale);
        if (lora_open(&ads[i], loras[i], &err) < 0) {
            rc = fail(&err);
            goto cleanup;
        }
        ads[i].user_scale = scale;
        n_open++;
    }
    merge_opts o = {
        .base = base, .out = out, .adapters = ads, .n_adapters = n_loras, .outtype = outtype,
        .progress = quiet ? NULL : stderr, .progress_tty = isatty(2), .n_threads = n_threads, .force = force,
    };
    merge_report rep;
    if (merge_run(&o, &rep, &err) < 0) {
        rc = fail(&err);
        goto cleanup;
    }
    if (merge_report_print(&rep, stdout, json, &err) < 0)
        rc = fail(&err);
    merge_report_free(&rep);
cleanup:
    for (uint32_t i = 0; i < n_open; i++)
        lora_close(&ads[i]);
    return rc;
}
