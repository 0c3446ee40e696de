/* smelt-imatrix — importance matrices from calibration text, interchangeable
 * with llama-imatrix's (c392e5094 .dat, newer GGUF); also merges and
 * converts imatrix files and prints their statistics. */
#include "args.h"
#include "collect.h"
#include "run.h"
#include "stats.h"

#include "fileio.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *prog = "smelt-imatrix";

static void usage(FILE *f)
{
    fprintf(f,
            "usage: smelt-imatrix -m MODEL.gguf -f CALIB.txt [-o imatrix.dat] [options]\n"
            "       smelt-imatrix --in-file A [--in-file B ...] [-o OUT] [--output-format gguf|dat]\n"
            "       smelt-imatrix --in-file A --show-statistics\n"
            "  -m, --model FILE          model to run (F32/F16/BF16/Q8_0/K-quants)\n"
            "  -f, --file FILE           calibration text (stored as the dataset name, as given)\n"
            "  -o, --output-file FILE    output (default imatrix.dat; imatrix.gguf with --output-format gguf)\n"
            "  --output-format gguf|dat  file format (default: from the -o extension, .gguf = GGUF, else dat)\n"
            "  -c, --ctx-size N          tokens per chunk (default 512)\n"
            "  -b, --batch-size N        logical batch (default 2048, clamped to -c)\n"
            "  -ub, --ubatch-size N      physical batch (default 512): the unit statistics are taken in\n"
            "  --chunks N                chunks to process (default all)\n"
            "  --chunk, --from-chunk N   skip the first N chunks\n"
            "  -ofreq, --output-frequency N  save the output every N chunks (default 10)\n"
            "  --save-frequency N        also save a copy OUT.at_K every N chunks (default 0 = off)\n"
            "  --process-output          collect output.weight too\n"
            "  --no-ppl                  do not compute the perplexity\n"
            "  --in-file FILE            load an imatrix (.dat or GGUF) first; repeat to merge\n"
            "  --show-statistics         print per-tensor statistics of the result\n"
            "  -t, --threads N           threads (default: all cores)\n");
}

typedef struct opts {
    const char *model, *text, *out;
    const char **in_files; /* [n_in] */
    int32_t n_in;
    int32_t n_ctx, n_batch, n_ubatch, n_chunks, skip, out_freq, save_freq, n_threads;
    int32_t format; /* 0 = from the extension */
    int process_output, no_ppl, show_stats, ctx_set;
} opts;

static int fail(const char *path, const sm_err *err)
{
    /* messages from the readers and the merge often name their file already */
    if (path && strncmp(err->msg, path, strlen(path)) != 0)
        fprintf(stderr, "%s: %s: %s\n", prog, path, err->msg);
    else
        fprintf(stderr, "%s: %s\n", prog, err->msg);
    return 1;
}

static int bad_arg(const char *msg, const char *arg)
{
    fprintf(stderr, "%s: %s%s%s\n", prog, msg, arg ? ": " : "", arg ? arg : "");
    return 2;
}

static int32_t default_threads(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (n > 64 ? 64 : (int32_t)n);
}

static int ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

/* Returns 0, or the exit code for a bad command line. */
static int parse_args(int argc, char **argv, opts *o)
{
    memset(o, 0, sizeof(*o));
    o->n_ctx = 512;
    o->n_batch = 2048;
    o->n_ubatch = 512;
    o->n_chunks = -1;
    o->out_freq = 10;
    o->n_threads = default_threads();
    o->in_files = calloc((size_t)argc, sizeof(char *));
    if (!o->in_files)
        return bad_arg("out of memory", NULL);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define IS(x) (strcmp(a, x) == 0)
#define NEED()                                                                                                         \
    do {                                                                                                               \
        if (!v)                                                                                                        \
            return bad_arg("missing value for", a);                                                                   \
        i++;                                                                                                           \
    } while (0)
#define INT(dst)                                                                                                       \
    do {                                                                                                               \
        NEED();                                                                                                        \
        if (sm_parse_i32(v, &(dst)))                                                                                      \
            return bad_arg("not an integer", v);                                                                       \
    } while (0)
        if (IS("-h") || IS("--help")) {
            usage(stdout);
            exit(0);
        } else if (IS("-m") || IS("--model")) {
            NEED();
            o->model = v;
        } else if (IS("-f") || IS("--file")) {
            NEED();
            o->text = v;
        } else if (IS("-o") || IS("--output") || IS("--output-file")) {
            NEED();
            o->out = v;
        } else if (IS("--output-format")) {
            NEED();
            if (strcmp(v, "gguf") == 0)
                o->format = SM_IMATRIX_GGUF;
            else if (strcmp(v, "dat") == 0)
                o->format = SM_IMATRIX_LEGACY;
            else
                return bad_arg("--output-format must be gguf or dat, got", v);
        } else if (IS("-c") || IS("--ctx-size")) {
            INT(o->n_ctx);
            o->ctx_set = 1;
        } else if (IS("-b") || IS("--batch-size")) {
            INT(o->n_batch);
        } else if (IS("-ub") || IS("--ubatch-size")) {
            INT(o->n_ubatch);
        } else if (IS("--chunks")) {
            INT(o->n_chunks);
        } else if (IS("--chunk") || IS("--from-chunk")) {
            INT(o->skip);
        } else if (IS("-ofreq") || IS("--output-frequency")) {
            INT(o->out_freq);
        } else if (IS("--save-frequency")) {
            INT(o->save_freq);
        } else if (IS("-t") || IS("--threads")) {
            INT(o->n_threads);
        } else if (IS("--in-file")) {
            NEED();
            o->in_files[o->n_in++] = v;
        } else if (IS("--process-output")) {
            o->process_output = 1;
        } else if (IS("--no-ppl")) {
            o->no_ppl = 1;
        } else if (IS("--show-statistics")) {
            o->show_stats = 1;
        } else {
            usage(stderr);
            return bad_arg("unknown argument", a);
        }
#undef IS
#undef NEED
#undef INT
    }
    if (o->n_ctx < 2)
        return bad_arg("-c must be >= 2", NULL);
    if (o->n_batch < 1 || o->n_ubatch < 1)
        return bad_arg("-b and -ub must be >= 1", NULL);
    if (o->n_threads < 1 || o->n_threads > 512)
        return bad_arg("-t must be 1..512", NULL);
    if (o->skip < 0)
        return bad_arg("--chunk must be >= 0", NULL);
    if (o->out_freq < 0 || o->save_freq < 0)
        return bad_arg("-ofreq and --save-frequency must be >= 0", NULL);
    if (o->text && !o->model)
        return bad_arg("-f needs a model (-m)", NULL);
    if (!o->text && o->n_in == 0) {
        usage(stderr);
        return bad_arg("nothing to do: give -m MODEL -f TEXT, or --in-file to merge/convert/inspect", NULL);
    }
    return 0;
}

int main(int argc, char **argv)
{
    opts o;
    int code = parse_args(argc, argv, &o);
    if (code) {
        free(o.in_files);
        return code;
    }
    sm_out_install_signal_cleanup();

    sm_err err = {0};
    im_collector c;
    sm_model model;
    int model_open = 0;
    int32_t *tokens = NULL;
    im_run_result res = {0};
    im_tstats *st = NULL;
    sm_imatrix *ins = calloc((size_t)(o.n_in ? o.n_in : 1), sizeof(sm_imatrix));
    im_init(&c, o.n_ctx, o.process_output);
    code = 1;
    if (!ins) {
        fprintf(stderr, "%s: out of memory\n", prog);
        goto done;
    }

    /* output name and format (llama.cpp c392e5094's default is imatrix.dat) */
    const int write_out = o.text || !o.show_stats || o.out;
    const char *out = o.out ? o.out : (o.format == SM_IMATRIX_GGUF ? "imatrix.gguf" : "imatrix.dat");
    const int format = o.format ? o.format : (ends_with(out, ".gguf") ? SM_IMATRIX_GGUF : SM_IMATRIX_LEGACY);

    /* inputs first: a bad file fails before anything runs or is written */
    for (int32_t i = 0; i < o.n_in; i++) {
        if (sm_imatrix_read(&ins[i], o.in_files[i], &err) < 0) {
            code = fail(NULL, &err);
            goto done;
        }
    }
    /* chunk size: -c for a run or when given; a pure merge takes it from
     * the first GGUF input, as that file recorded it */
    int32_t cs = o.n_ctx;
    if (!o.text && !o.ctx_set)
        for (int32_t i = 0; i < o.n_in; i++)
            if (ins[i].format == SM_IMATRIX_GGUF && ins[i].chunk_size > 0 && ins[i].chunk_size <= INT32_MAX) {
                cs = (int32_t)ins[i].chunk_size;
                break;
            }
    im_init(&c, cs, o.process_output);
    for (int32_t i = 0; i < o.n_in; i++) {
        fprintf(stderr, "%s: loading imatrix from '%s' (%u entries)\n", prog, o.in_files[i], ins[i].n_entries);
        if (im_merge(&c, &ins[i], o.in_files[i], &err) < 0) {
            code = fail(NULL, &err);
            goto done;
        }
    }

    if (o.model) {
        if (model_load(&model, o.model, &err) < 0) {
            code = fail(o.model, &err);
            goto done;
        }
        model_open = 1;
        if (im_check_model(&c, &model, o.model, &err) < 0) {
            code = fail(NULL, &err);
            goto done;
        }
    }

    if (o.text) {
        /* a run can take hours: find out now whether the output can be written */
        sm_out probe;
        if (sm_out_open(&probe, out, &err) < 0) {
            code = fail(NULL, &err);
            goto done;
        }
        sm_out_abort(&probe);
        int64_t n_tok = 0;
        fprintf(stderr, "%s: tokenizing the input ..\n", prog);
        if (im_tokenize_file(&model, o.text, &tokens, &n_tok, &err) < 0) {
            code = fail(o.text, &err);
            goto done;
        }
        fprintf(stderr, "%s: %s: %lld tokens\n", prog, o.text, (long long)n_tok);
        if (im_set_dataset(&c, o.text, &err) < 0) {
            code = fail(NULL, &err);
            goto done;
        }
        im_run_opts ro = {0};
        ro.n_ctx = o.n_ctx;
        ro.n_batch = o.n_batch;
        ro.n_ubatch = o.n_ubatch;
        ro.n_chunks = o.n_chunks;
        ro.skip_chunks = o.skip;
        ro.n_threads = o.n_threads;
        ro.compute_ppl = !o.no_ppl;
        ro.out_freq = o.out_freq;
        ro.save_freq = o.save_freq;
        ro.out_path = out;
        ro.out_format = format;
        ro.log = stdout;
        ro.log_tty = isatty(fileno(stdout));
        if (im_run(&c, &model, tokens, n_tok, &ro, &res, &err) < 0) {
            code = fail(o.text, &err);
            goto done;
        }
    }

    if (write_out) {
        if (im_save(&c, out, format, &err) < 0) {
            code = fail(out, &err);
            goto done;
        }
        fprintf(stderr, "%s: wrote %u entries to %s (%s)\n", prog, c.n, out,
                format == SM_IMATRIX_GGUF ? "GGUF" : "legacy .dat");
    }

    if (o.show_stats) {
        uint32_t ns = 0;
        if (im_stats_compute(&c, &st, &ns, &err) < 0) {
            code = fail(NULL, &err);
            goto done;
        }
        im_stats_print(stdout, o.text ? out : o.in_files[0], st, ns);
    }
    code = 0;
done:
    free(st);
    im_run_free(&res);
    free(tokens);
    if (model_open)
        model_free(&model);
    im_free(&c);
    for (int32_t i = 0; ins && i < o.n_in; i++)
        sm_imatrix_free(&ins[i]);
    free(ins);
    free(o.in_files);
    return code;
}
