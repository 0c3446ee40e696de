/* smelt-convert — Hugging Face checkpoint directory to GGUF. */
#include "convert.h"
#include "fileio.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *prog = "smelt-convert";

static void usage(FILE *f)
{
    fprintf(f,
            "usage: %s MODEL_DIR [--outtype f32|f16|bf16|q8_0|auto] [--outfile PATH]\n"
            "                     [--vocab-only] [--pre NAME] [--force] [--quiet]\n"
            "\n"
            "Converts a Hugging Face model directory (config.json, model*.safetensors or a\n"
            "sharded index, tokenizer.model or tokenizer.json) to GGUF, byte-identical to\n"
            "llama.cpp's convert_hf_to_gguf.py. Architectures: llama (and Mistral), qwen2.\n"
            "\n"
            "  --outtype T    output type of the matrices (default f16, as llama.cpp);\n"
            "                 auto = f16 for F16 checkpoints, else bf16\n"
            "  --outfile P    output path (default: <MODEL_DIR>/<Name>-<Size>-<TYPE>.gguf)\n"
            "  --vocab-only   write only the metadata and the vocabulary\n"
            "  --pre NAME     set tokenizer.ggml.pre instead of detecting it from tokenizer.json\n"
            "  --force        overwrite an existing output file\n"
            "  --quiet        no progress lines\n",
            prog);
}

typedef struct progress_state {
    int tty;
    int quiet;
} progress_state;

static void on_progress(void *ctx, uint64_t i, uint64_t n, const char *name, const char *src, const char *dst,
                        const int64_t *ne, uint32_t n_dims, uint64_t done, uint64_t total)
{
    progress_state *ps = ctx;
    if (ps->quiet)
        return;
    if (ps->tty) {
        fprintf(stderr, "\r[%3llu/%3llu] %5.1f%% %-40s", (unsigned long long)i + 1, (unsigned long long)n,
                total ? 100.0 * (double)done / (double)total : 100.0, name);
        if (i + 1 == n)
            fputc('\n', stderr);
    } else {
        char shape[96] = "";
        size_t o = 0;
        for (uint32_t d = 0; d < n_dims; d++)
            o += (size_t)snprintf(shape + o, sizeof shape - o, "%s%lld", d ? ", " : "", (long long)ne[d]);
        fprintf(stderr, "[%llu/%llu] %s, %s --> %s, shape = {%s}\n", (unsigned long long)i + 1,
                (unsigned long long)n, name, src, dst, shape);
    }
    fflush(stderr);
}

int main(int argc, char **argv)
{
    cv_opts o = {0};
    o.outtype = CV_OUT_F16;
    progress_state ps = {isatty(2), 0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--outtype") && i + 1 < argc) {
            o.outtype = cv_outtype_parse(argv[++i]);
            if (o.outtype < 0) {
                fprintf(stderr, "%s: --outtype: '%s' is not one of f32, f16, bf16, q8_0, auto\n", prog, argv[i]);
                return 2;
            }
        } else if (!strcmp(a, "--outfile") && i + 1 < argc) {
            o.outfile = argv[++i];
        } else if (!strcmp(a, "--pre") && i + 1 < argc) {
            o.pre = argv[++i];
        } else if (!strcmp(a, "--vocab-only")) {
            o.vocab_only = 1;
        } else if (!strcmp(a, "--force")) {
            o.force = 1;
        } else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
            ps.quiet = 1;
        } else if (a[0] == '-') {
            fprintf(stderr, "%s: unknown or incomplete option '%s'\n", prog, a);
            usage(stderr);
            return 2;
        } else if (!o.model_dir) {
            o.model_dir = a;
        } else {
            fprintf(stderr, "%s: unexpected argument '%s'\n", prog, a);
            return 2;
        }
    }
    if (!o.model_dir) {
        usage(stderr);
        return 2;
    }
    o.progress = on_progress;
    o.progress_ctx = &ps;
    sm_out_install_signal_cleanup();
    cv_summary sum;
    sm_err err = {0};
    int rc = cv_convert(&o, &sum, &err);
    if (rc) {
        if (ps.tty && !ps.quiet)
            fputc('\n', stderr);
        fprintf(stderr, "%s: %s: %s\n", prog, o.model_dir, err.msg);
        return 1;
    }
    if (sum.f16_overflow || sum.f16_underflow)
        fprintf(stderr,
                "%s: warning: %llu values overflowed to inf and %llu nonzero values became 0 in F16 (in %s); "
                "consider --outtype bf16\n",
                prog, (unsigned long long)sum.f16_overflow, (unsigned long long)sum.f16_underflow, sum.f16_tensors);
    double mb = (double)sum.bytes_out / 1e6;
    fprintf(stderr, "%s: wrote %s: %s, %llu tensors, %.2f MB in %.2f s (%.1f MB/s)\n", prog, sum.outfile,
            cv_outtype_name(sum.outtype), (unsigned long long)sum.n_tensors, mb, sum.seconds,
            sum.seconds > 0 ? mb / sum.seconds : 0.0);
    return 0;
}
