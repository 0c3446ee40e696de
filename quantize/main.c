/* smelt-quantize — quantize a GGUF model like llama-quantize.
 *
 *   smelt-quantize [options] IN.gguf [OUT.gguf] TYPE [nthreads]
 *
 * Prints one log line per tensor on stderr (a single updating status line
 * when stderr is a terminal), then the size summary. Exit status 0 on
 * success, 1 on failure, 2 on a usage error. */
#include "fileio.h"
#include "quantize.h"
#include "types.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *prog = "smelt-quantize";

static void usage(FILE *f)
{
    fprintf(f,
            "usage: %s [options] IN.gguf [OUT.gguf] TYPE [nthreads]\n"
            "\n"
            "TYPE: Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K_S Q3_K_M (Q3_K) Q3_K_L Q4_K_S Q4_K_M (Q4_K)\n"
            "      Q5_K_S Q5_K_M (Q5_K) Q6_K IQ4_NL F16 BF16 F32 COPY (case-insensitive) or the numeric\n"
            "      llama.cpp file type id. Without OUT the output is <dir of IN>/ggml-model-TYPE.gguf.\n"
            "\n"
            "options:\n"
            "  --imatrix FILE            importance matrix (legacy .dat or GGUF, detected by content)\n"
            "  --include-weights S       use the imatrix only for weights whose name contains S (repeatable)\n"
            "  --exclude-weights S       do not use the imatrix for weights containing S (repeatable)\n"
            "  --pure                    no per-tensor mixture: every quantized tensor gets TYPE's type\n"
            "  --leave-output-tensor     keep output.weight as it is\n"
            "  --output-tensor-type T    ggml type for output.weight (e.g. q8_0, f16)\n"
            "  --token-embedding-type T  ggml type for token_embd.weight\n"
            "  --tensor-type REGEX=T     ggml type for tensors whose name matches REGEX (repeatable,\n"
            "                            last match wins; ignored where the row length forces a fallback)\n"
            "  --allow-requantize        accept already-quantized input tensors\n"
            "  --override-kv KEY=TYPE:V  set a metadata key in the output (TYPE int, float, bool, str; repeatable)\n"
            "  --dry-run                 print each tensor's type and the sizes; write nothing\n"
            "  -t, --threads N           worker threads (default: trailing nthreads, else all CPUs)\n"
            "  --json                    print a JSON summary on stdout\n"
            "  --force                   overwrite an existing output (even the input; via temp + rename)\n"
            "  -q, --quiet               no per-tensor log\n"
            "  -h, --help                this text\n",
            prog);
}

typedef struct log_ctx {
    int tty, quiet, dry_run;
    json_t *tensors; /* per-tensor JSON records, or NULL */
    uint64_t last;   /* for the terminal status line */
} log_ctx;

static void shape_str(char *b, size_t n, const int64_t ne[4])
{
    snprintf(b, n, "%5lld, %5lld, %5lld, %5lld", (long long)ne[0], (long long)ne[1], (long long)ne[2],
             (long long)ne[3]);
}

static void on_tensor(void *ud, const sm_qz_event *ev)
{
    log_ctx *lc = ud;
    if (lc->tensors) {
        json_t *o = json_pack("{s:s, s:[I,I,I,I], s:s, s:s, s:b, s:b, s:I, s:I, s:s}", "name", ev->name, "shape",
                              (json_int_t)ev->ne[0], (json_int_t)ev->ne[1], (json_int_t)ev->ne[2],
                              (json_int_t)ev->ne[3], "src_type", sm_type_name(ev->src_type), "type",
                              sm_type_name(ev->dst_type), "converted", ev->converted, "imatrix", ev->imatrix_used,
                              "src_bytes", (json_int_t)ev->src_bytes, "bytes", (json_int_t)ev->dst_bytes, "note",
                              ev->note ? ev->note : "");
        if (o)
            json_array_append_new(lc->tensors, o);
    }
    if (lc->dry_run) {
        if (!lc->quiet && !lc->tensors) /* with --json stdout holds only JSON */
            printf("%-40s %-7s -> %-7s %12llu bytes%s%s\n", ev->name, sm_type_name(ev->src_type),
                   sm_type_name(ev->dst_type), (unsigned long long)ev->dst_bytes, ev->note[0] ? "  # " : "",
                   ev->note);
        return;
    }
    if (lc->quiet)
        return;
    char shape[96];
    shape_str(shape, sizeof shape, ev->ne);
    if (lc->tty) {
        fprintf(stderr, "\r\033[K[%4llu/%4llu] %-36s %s -> %s", (unsigned long long)ev->index + 1,
                (unsigned long long)ev->count, ev->name, sm_type_name(ev->src_type), sm_type_name(ev->dst_type));
        if (ev->index + 1 == ev->count)
            fputc('\n', stderr);
        fflush(stderr);
        return;
    }
    if (ev->converted)
        fprintf(stderr, "[%4llu/%4llu] %36s - [%s], type = %6s, converting to %s%s .. size = %8.2f MiB -> %8.2f MiB%s%s\n",
                (unsigned long long)ev->index + 1, (unsigned long long)ev->count, ev->name, shape,
                sm_type_name(ev->src_type), sm_type_name(ev->dst_type), ev->imatrix_used ? " (imatrix)" : "",
                ev->src_bytes / 1048576.0, ev->dst_bytes / 1048576.0, ev->note[0] ? "  # " : "", ev->note);
    else
        fprintf(stderr, "[%4llu/%4llu] %36s - [%s], type = %6s, size = %8.3f MB%s%s\n",
                (unsigned long long)ev->index + 1, (unsigned long long)ev->count, ev->name, shape,
                sm_type_name(ev->src_type), ev->src_bytes / 1048576.0, ev->note[0] ? "  # " : "", ev->note);
}

static int out_of_memory(void)
{
    fprintf(stderr, "%s: out of memory\n", prog);
    return 1;
}

static double bpw(uint64_t bytes, uint64_t n) { return n ? (double)bytes * 8.0 / (double)n : 0.0; }

/* Collects a repeatable string option. */
static int push(char ***v, uint32_t *n, char *s)
{
    char **t = realloc(*v, (*n + 1) * sizeof(char *));
    if (!t)
        return -1;
    t[(*n)++] = s;
    *v = t;
    return 0;
}

static int parse_threads(const char *s, int *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || !end || *end || v < 0 || v > 1024)
        return -1;
    *out = (int)v;
    return 0;
}

int main(int argc, char **argv)
{
    sm_qz_opts o;
    sm_err err = {0};
    char *pos[8];
    int npos = 0, json = 0, quiet = 0, rc = 1;
    int threads_opt = -1;
    char *out_alloc = NULL;
    sm_mix_override *ovr = NULL;
    uint32_t n_ovr = 0;
    sm_qz_kv *kvs = NULL;
    uint32_t n_kvs = 0;
    const char *canon = NULL;
    json_t *tensors = NULL;

    memset(&o, 0, sizeof(o));
    o.output_type = -1;
    o.token_embd_type = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has_val = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            rc = 0;
            goto done;
        } else if (!strcmp(a, "--pure")) {
            o.pure = 1;
        } else if (!strcmp(a, "--leave-output-tensor")) {
            o.leave_output = 1;
        } else if (!strcmp(a, "--allow-requantize")) {
            o.allow_requantize = 1;
        } else if (!strcmp(a, "--dry-run")) {
            o.dry_run = 1;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "--force")) {
            o.force = 1;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            quiet = 1;
        } else if (!strcmp(a, "--imatrix") && has_val) {
            o.imatrix_path = argv[++i];
        } else if (!strcmp(a, "--include-weights") && has_val) {
            if (push(&o.include, &o.n_include, argv[++i]) < 0) {
                rc = out_of_memory();
                goto done;
            }
        } else if (!strcmp(a, "--exclude-weights") && has_val) {
            if (push(&o.exclude, &o.n_exclude, argv[++i]) < 0) {
                rc = out_of_memory();
                goto done;
            }
        } else if ((!strcmp(a, "--output-tensor-type") || !strcmp(a, "--token-embedding-type")) && has_val) {
            int32_t t = sm_mix_parse_ggml_type(argv[++i]);
            if (t < 0) {
                fprintf(stderr, "%s: %s: unknown ggml type '%s'\n", prog, a, argv[i]);
                rc = 2;
                goto done;
            }
            if (a[2] == 'o')
                o.output_type = t;
            else
                o.token_embd_type = t;
        } else if (!strcmp(a, "--tensor-type") && has_val) {
            sm_mix_override *t = realloc(ovr, (n_ovr + 1) * sizeof(*ovr));
            if (!t) {
                rc = out_of_memory();
                goto done;
            }
            ovr = t;
            if (sm_mix_override_parse(&ovr[n_ovr], argv[++i], &err) < 0) {
                fprintf(stderr, "%s: %s\n", prog, err.msg);
                rc = 2;
                goto done;
            }
            n_ovr++;
        } else if (!strcmp(a, "--override-kv") && has_val) {
            sm_qz_kv *t = realloc(kvs, (n_kvs + 1) * sizeof(*kvs));
            if (!t) {
                rc = out_of_memory();
                goto done;
            }
            kvs = t;
            if (sm_qz_parse_kv_override(argv[++i], &kvs[n_kvs], &err) < 0) {
                fprintf(stderr, "%s: %s\n", prog, err.msg);
                rc = 2;
                goto done;
            }
            n_kvs++;
        } else if ((!strcmp(a, "-t") || !strcmp(a, "--threads")) && has_val) {
            if (parse_threads(argv[++i], &threads_opt) < 0) {
                fprintf(stderr, "%s: invalid thread count '%s'\n", prog, argv[i]);
                rc = 2;
                goto done;
            }
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "%s: unknown option or missing value: %s\n", prog, a);
            usage(stderr);
            rc = 2;
            goto done;
        } else {
            if (npos >= 4) {
                fprintf(stderr, "%s: too many arguments ('%s')\n", prog, a);
                rc = 2;
                goto done;
            }
            pos[npos++] = argv[i];
        }
    }
    if (o.n_include && o.n_exclude) {
        fprintf(stderr, "%s: --include-weights and --exclude-weights cannot be used together\n", prog);
        rc = 2;
        goto done;
    }
    if (npos < 2) {
        usage(stderr);
        rc = 2;
        goto done;
    }
    o.in_path = pos[0];
    int k = 1;
    int prc = sm_mix_parse_ftype(pos[1], &o.ftype, &canon, &err);
    if (prc == 0 || prc == SM_EUNSUPP) {
        /* second argument is the type: default output name */
        if (prc < 0) {
            fprintf(stderr, "%s: %s\n", prog, err.msg);
            rc = 2;
            goto done;
        }
        if (!(out_alloc = sm_qz_default_out(o.in_path, canon))) {
            rc = out_of_memory();
            goto done;
        }
        o.out_path = out_alloc;
        k = 2;
    } else {
        o.out_path = pos[1];
        if (npos < 3) {
            fprintf(stderr, "%s: missing TYPE\n", prog);
            rc = 2;
            goto done;
        }
        if (sm_mix_parse_ftype(pos[2], &o.ftype, &canon, &err) < 0) {
            fprintf(stderr, "%s: %s\n", prog, err.msg);
            rc = 2;
            goto done;
        }
        k = 3;
    }
    if (npos > k + 1) {
        fprintf(stderr, "%s: too many arguments ('%s')\n", prog, pos[k + 1]);
        rc = 2;
        goto done;
    }
    if (npos == k + 1 && parse_threads(pos[k], &o.nthreads) < 0) {
        fprintf(stderr, "%s: invalid nthread '%s'\n", prog, pos[k]);
        rc = 2;
        goto done;
    }
    if (threads_opt >= 0)
        o.nthreads = threads_opt;
    o.only_copy = strcmp(canon, "COPY") == 0;
    o.overrides = ovr;
    o.n_overrides = n_ovr;
    o.kv_overrides = kvs;
    o.n_kv_overrides = n_kvs;

    log_ctx lc = {isatty(STDERR_FILENO), quiet, o.dry_run, NULL, 0};
    if (json && !(tensors = json_array())) {
        rc = out_of_memory();
        goto done;
    }
    lc.tensors = tensors;
    o.on_tensor = on_tensor;
    o.ud = &lc;
    if (!quiet && !o.dry_run)
        fprintf(stderr, "%s: quantizing '%s' to '%s' as %s\n", prog, o.in_path, o.out_path, canon);
    sm_out_install_signal_cleanup();

    sm_qz_summary s;
    if (sm_quantize_file(&o, &s, &err) < 0) {
        if (lc.tty && !quiet)
            fputc('\n', stderr);
        fprintf(stderr, "%s: %s\n", prog, err.msg);
        rc = 1;
        goto done;
    }
    FILE *sf = o.dry_run && !json ? stdout : stderr;
    if (!quiet || o.dry_run) {
        fprintf(sf, "model size = %.2f MiB (%.2f BPW) -> quant size = %.2f MiB (%.2f BPW)%s\n",
                s.size_in / 1048576.0, bpw(s.size_in, s.n_elements), s.size_out / 1048576.0,
                bpw(s.size_out, s.n_elements), o.dry_run ? " [dry run, nothing written]" : "");
        if (s.n_fallback > 0)
            fprintf(sf, "%d of %d tensor(s) required fallback quantization\n", s.n_fallback,
                    s.n_fallback + s.n_k_quantized);
    }
    if (json) {
        json_t *imat = s.imatrix_used ? json_pack("{s:s, s:I, s:I}", "file", o.imatrix_path, "entries",
                                                  (json_int_t)s.imatrix_entries, "chunks",
                                                  (json_int_t)s.imatrix_chunks)
                                      : json_null();
        json_t *root = json_pack("{s:s, s:s?, s:s, s:I, s:b, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:I, s:o, s:o}",
                                 "input", o.in_path, "output", o.dry_run ? NULL : o.out_path, "type", canon, "ftype",
                                 (json_int_t)o.ftype, "dry_run", o.dry_run, "tensors", (json_int_t)s.n_tensors,
                                 "converted", (json_int_t)s.n_converted, "fallbacks", (json_int_t)s.n_fallback,
                                 "size_in", (json_int_t)s.size_in, "size_out", (json_int_t)s.size_out, "bpw_in",
                                 bpw(s.size_in, s.n_elements), "bpw_out", bpw(s.size_out, s.n_elements), "file_size",
                                 (json_int_t)s.file_size, "imatrix", imat, "tensor_list", tensors);
        tensors = NULL; /* owned by root now */
        if (!root) {
            rc = out_of_memory();
            goto done;
        }
        json_dumpf(root, stdout, JSON_INDENT(2));
        fputc('\n', stdout);
        json_decref(root);
    }
    rc = 0;
done:
    json_decref(tensors);
    for (uint32_t i = 0; i < n_ovr; i++)
        sm_mix_override_free(&ovr[i]);
    free(ovr);
    free(kvs);
    free(o.include);
    free(o.exclude);
    free(out_alloc);
    return rc;
}
