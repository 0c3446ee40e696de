/* smelt-fetch — download a model directory (config, tokenizer, safetensors
 * shards) from a Hugging Face–compatible hub. */
#include "fetch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *prog = "smelt-fetch";

static void usage(FILE *f)
{
    fprintf(f,
            "usage: %s owner/name|URL [--revision R] [-o DIR] [--endpoint URL] [--all]\n"
            "                 [--retries N] [--backoff-ms MS] [--quiet]\n"
            "Downloads config.json, tokenizer files and safetensors shards (resumable,\n"
            "retried with backoff, sha256-verified where the server states it).\n"
            "  --revision R   branch, tag or commit (default main)\n"
            "  -o DIR         output directory (default: the repository name)\n"
            "  --endpoint URL hub base URL (default $HF_ENDPOINT or https://huggingface.co)\n"
            "  --all          every file of the repository, not only model files\n"
            "Set HF_TOKEN for gated repositories.\n",
            prog);
}

typedef struct ui {
    int tty, quiet;
    char last[256];
} ui;

static void on_progress(void *ctx, const char *file, uint64_t done, uint64_t total)
{
    ui *u = ctx;
    if (u->quiet || !u->tty)
        return;
    if (total)
        fprintf(stderr, "\r%-40s %8.1f / %.1f MB (%3.0f%%)", file, done / 1e6, total / 1e6, 100.0 * done / total);
    else
        fprintf(stderr, "\r%-40s %8.1f MB", file, done / 1e6);
}

static void on_log(void *ctx, const char *line)
{
    ui *u = ctx;
    if (u->quiet)
        return;
    fprintf(stderr, "%s%s: %s\n", u->tty ? "\n" : "", prog, line);
}

int main(int argc, char **argv)
{
    fx_opts o = {0};
    ui u = {isatty(2), 0, ""};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--revision") && i + 1 < argc) {
            o.revision = argv[++i];
        } else if ((!strcmp(a, "-o") || !strcmp(a, "--outdir")) && i + 1 < argc) {
            o.outdir = argv[++i];
        } else if (!strcmp(a, "--endpoint") && i + 1 < argc) {
            o.endpoint = argv[++i];
        } else if (!strcmp(a, "--retries") && i + 1 < argc) {
            o.max_tries = (uint32_t)strtoul(argv[++i], NULL, 10) + 1;
        } else if (!strcmp(a, "--backoff-ms") && i + 1 < argc) {
            o.backoff_ms = (uint32_t)strtoul(argv[++i], NULL, 10);
        } else if (!strcmp(a, "--all")) {
            o.all_files = 1;
        } else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
            u.quiet = 1;
        } else if (a[0] == '-') {
            fprintf(stderr, "%s: unknown or incomplete option '%s'\n", prog, a);
            return 2;
        } else if (!o.source) {
            o.source = a;
        } else {
            fprintf(stderr, "%s: unexpected argument '%s'\n", prog, a);
            return 2;
        }
    }
    if (!o.source) {
        usage(stderr);
        return 2;
    }
    o.progress = on_progress;
    o.log = on_log;
    o.progress_ctx = &u;
    fx_summary s;
    sm_err err = {0};
    int rc = fx_fetch(&o, &s, &err);
    if (u.tty && !u.quiet)
        fputc('\n', stderr);
    if (rc) {
        fprintf(stderr, "%s: %s: %s\n", prog, o.source, err.msg);
        return 1;
    }
    fprintf(stderr, "%s: %s: %u files (%u downloaded, %u sha256-verified), %.1f MB transferred, %u retries\n", prog,
            s.outdir, s.n_files, s.n_downloaded, s.n_verified, s.bytes / 1e6, s.retries);
    return 0;
}
