#include "compare.h"

#include "eval.h"
#include "model.h"
#include "proc.h"
#include "types.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *prog = "smelt-infer compare";

#define CMP_MAX 32

typedef struct cand {
    char label[64];        /* preset name or file base name */
    char path[4096];       /* GGUF file */
    int is_base;
    uint64_t file_bytes;
    uint64_t n_params;
    uint64_t weight_bytes;
    double bpw;
    uint64_t ram_bytes;    /* weights + KV cache + compute at ctx */
    uint64_t kv_bytes;
    uint64_t peak_rss;     /* measured during the perplexity run */
    double ppl, ppl_err, dppl;
    double kld, kld_err, same_top;
    double pp_tps, tg_tps;
    int fits;
} cand;

int compare_parse_size(const char *s, uint64_t *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || !(v >= 0) || !isfinite(v))
        return -1;
    double mul = 1;
    switch (toupper((unsigned char)*end)) {
    case 0: break;
    case 'K': mul = 1024.0; end++; break;
    case 'M': mul = 1024.0 * 1024; end++; break;
    case 'G': mul = 1024.0 * 1024 * 1024; end++; break;
    case 'T': mul = 1024.0 * 1024 * 1024 * 1024; end++; break;
    default: return -1;
    }
    if (*end == 'i' || *end == 'I')
        end++;
    if (*end == 'B' || *end == 'b')
        end++;
    if (*end)
        return -1;
    *out = (uint64_t)(v * mul);
    return 0;
}

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* Runs smelt-<tool> args..., stdout to out_json (parsed and returned). */
static json_t *run_json(const char *tool, char **args, const char *log_path, sm_proc_result *pr, const char *what)
{
    char exe[4200], out[4400];
    sm_tool_path(tool, exe, sizeof exe);
    snprintf(out, sizeof out, "%s.json", log_path);
    char *argv[48];
    int n = 0;
    argv[n++] = exe;
    for (int i = 0; args[i] && n < 46; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    sm_err err = {0};
    if (sm_proc_run(argv, out, log_path, pr, &err)) {
        fprintf(stderr, "%s: %s: %s\n", prog, what, err.msg);
        return NULL;
    }
    if (pr->status != 0) {
        fprintf(stderr, "%s: %s failed (exit %d); see %s\n", prog, what, pr->status, log_path);
        return NULL;
    }
    int want_json = 0;
    for (int i = 0; args[i]; i++)
        want_json |= strcmp(args[i], "--json") == 0;
    if (!want_json)
        return json_object();
    json_error_t je;
    json_t *j = json_load_file(out, 0, &je);
    if (!j)
        fprintf(stderr, "%s: %s: no JSON result (%s)\n", prog, what, je.text);
    return j;
}

static double jnum(json_t *j, const char *k)
{
    json_t *v = json_object_get(j, k);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

/* ------------------------------------------------------------ outputs */

static void fmt_bytes(uint64_t b, char *out, size_t cap)
{
    snprintf(out, cap, "%.2f MiB", b / 1048576.0);
}

static int write_md(const char *path, cand *c, int n, uint64_t budget, int best, const char *why, int ctx)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fprintf(f, "# smelt compare: %s\n\n", base_name(c[0].path));
    fprintf(f, "Context %d tokens; RAM = weights + F16 KV cache + compute buffers at that context", ctx);
    if (budget) {
        char b[32];
        fmt_bytes(budget, b, sizeof b);
        fprintf(f, "; budget %s", b);
    }
    fprintf(f, ".\n\n| candidate | file | BPW | RAM needed | peak RSS | PPL | ΔPPL | mean KLD | same top p | pp t/s | tg t/s | fits |\n");
    fprintf(f, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|\n");
    for (int i = 0; i < n; i++) {
        char fb[32], rb[32], pb[32];
        fmt_bytes(c[i].file_bytes, fb, sizeof fb);
        fmt_bytes(c[i].ram_bytes, rb, sizeof rb);
        fmt_bytes(c[i].peak_rss, pb, sizeof pb);
        fprintf(f, "| %s%s%s | %s | %.2f | %s | %s | %.4f ± %.4f | %+.4f | %.6f | %.2f %% | %.1f | %.1f | %s |\n",
                i == best ? "**" : "", c[i].label, i == best ? "**" : "", fb, c[i].bpw, rb, pb, c[i].ppl, c[i].ppl_err,
                c[i].dppl, c[i].kld, c[i].same_top, c[i].pp_tps, c[i].tg_tps,
                budget ? (c[i].fits ? "yes" : "no") : "-");
    }
    fprintf(f, "\n**Recommendation:** %s\n", why);
    return fclose(f);
}

static int write_csv(const char *path, cand *c, int n)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fprintf(f, "candidate,file,file_bytes,n_params,bpw,ram_bytes,kv_bytes,peak_rss_bytes,ppl,ppl_err,delta_ppl,kld_mean,"
               "kld_mean_err,same_top_p_pct,pp_tps,tg_tps,fits_budget,is_base\n");
    for (int i = 0; i < n; i++)
        fprintf(f, "%s,%s,%llu,%llu,%.4f,%llu,%llu,%llu,%.6f,%.6f,%.6f,%.8f,%.8f,%.4f,%.2f,%.2f,%d,%d\n", c[i].label,
                c[i].path, (unsigned long long)c[i].file_bytes, (unsigned long long)c[i].n_params, c[i].bpw,
                (unsigned long long)c[i].ram_bytes, (unsigned long long)c[i].kv_bytes, (unsigned long long)c[i].peak_rss,
                c[i].ppl, c[i].ppl_err, c[i].dppl, c[i].kld, c[i].kld_err, c[i].same_top, c[i].pp_tps, c[i].tg_tps,
                c[i].fits, c[i].is_base);
    return fclose(f);
}

static int write_json(const char *path, cand *c, int n, uint64_t budget, int best, const char *why, int ctx,
                      const char *text)
{
    json_t *j = json_object(), *arr = json_array();
    json_object_set_new(j, "base", json_string(c[0].path));
    json_object_set_new(j, "text", json_string(text));
    json_object_set_new(j, "ctx", json_integer(ctx));
    json_object_set_new(j, "ram_budget_bytes", budget ? json_integer((json_int_t)budget) : json_null());
    for (int i = 0; i < n; i++) {
        json_t *o = json_object();
        json_object_set_new(o, "candidate", json_string(c[i].label));
        json_object_set_new(o, "file", json_string(c[i].path));
        json_object_set_new(o, "is_base", json_boolean(c[i].is_base));
        json_object_set_new(o, "file_bytes", json_integer((json_int_t)c[i].file_bytes));
        json_object_set_new(o, "n_params", json_integer((json_int_t)c[i].n_params));
        json_object_set_new(o, "bpw", json_real(c[i].bpw));
        json_object_set_new(o, "ram_bytes", json_integer((json_int_t)c[i].ram_bytes));
        json_object_set_new(o, "kv_cache_bytes", json_integer((json_int_t)c[i].kv_bytes));
        json_object_set_new(o, "peak_rss_bytes", json_integer((json_int_t)c[i].peak_rss));
        json_object_set_new(o, "ppl", json_real(c[i].ppl));
        json_object_set_new(o, "ppl_err", json_real(c[i].ppl_err));
        json_object_set_new(o, "delta_ppl", json_real(c[i].dppl));
        json_object_set_new(o, "kld_mean", json_real(c[i].kld));
        json_object_set_new(o, "kld_mean_err", json_real(c[i].kld_err));
        json_object_set_new(o, "same_top_p_pct", json_real(c[i].same_top));
        json_object_set_new(o, "pp_tps", json_real(c[i].pp_tps));
        json_object_set_new(o, "tg_tps", json_real(c[i].tg_tps));
        json_object_set_new(o, "fits_budget", budget ? json_boolean(c[i].fits) : json_null());
        json_array_append_new(arr, o);
    }
    json_object_set_new(j, "candidates", arr);
    json_object_set_new(j, "recommended", best >= 0 ? json_string(c[best].label) : json_null());
    json_object_set_new(j, "reason", json_string(why));
    int rc = json_dump_file(j, path, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
    json_decref(j);
    return rc;
}

static void xml_escape(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '<')
            fputs("&lt;", f);
        else if (*s == '>')
            fputs("&gt;", f);
        else if (*s == '&')
            fputs("&amp;", f);
        else
            fputc(*s, f);
    }
}

/* Size (x, MiB of RAM needed) against mean KLD (y, log scale), one labelled
 * point per candidate, the budget as a vertical line. Our own small SVG. */
static int write_svg(const char *path, cand *c, int n, uint64_t budget, int best)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    const double W = 720, H = 440, L = 80, R = 30, T = 40, B = 60;
    double xmax = 0, kmin = 1e30, kmax = 0;
    for (int i = 0; i < n; i++) {
        double x = c[i].ram_bytes / 1048576.0;
        if (x > xmax)
            xmax = x;
        if (!c[i].is_base && c[i].kld > 0) {
            kmin = fmin(kmin, c[i].kld);
            kmax = fmax(kmax, c[i].kld);
        }
    }
    if (budget && budget / 1048576.0 > xmax)
        xmax = budget / 1048576.0;
    xmax *= 1.1;
    if (!(kmax > 0)) {
        kmin = 1e-6;
        kmax = 1;
    }
    double lo = floor(log10(kmin)), hi = ceil(log10(kmax));
    if (hi <= lo)
        hi = lo + 1;
#define PX(v) (L + (W - L - R) * (v) / xmax)
#define PY(k) (T + (H - T - B) * (hi - log10(k)) / (hi - lo))
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" font-family=\"sans-serif\" font-size=\"12\">\n", W, H);
    fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    fprintf(f, "<text x=\"%.0f\" y=\"22\" font-size=\"15\">RAM needed vs mean KLD against %s</text>\n", L, base_name(c[0].path));
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n", L, H - B, W - R, H - B);
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n", L, T, L, H - B);
    for (int t = 0; t <= 5; t++) {
        double v = xmax * t / 5;
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%.3g</text>\n", PX(v), H - B + 16, v);
    }
    for (double e = lo; e <= hi; e += 1)
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">1e%.0f</text>\n", L - 6, PY(pow(10, e)) + 4, e);
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">RAM needed at the context (MiB)</text>\n", (L + W - R) / 2, H - 18);
    fprintf(f, "<text x=\"18\" y=\"%.1f\" transform=\"rotate(-90 18 %.1f)\" text-anchor=\"middle\">mean KLD (log scale)</text>\n",
            (T + H - B) / 2, (T + H - B) / 2);
    if (budget) {
        double bx = PX(budget / 1048576.0);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#c00\" stroke-dasharray=\"6 4\"/>\n", bx, T, bx, H - B);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" fill=\"#c00\">budget %.0f MiB</text>\n", bx + 4, T + 12, budget / 1048576.0);
    }
    for (int i = 0; i < n; i++) {
        if (c[i].is_base || !(c[i].kld > 0))
            continue;
        double x = PX(c[i].ram_bytes / 1048576.0), y = PY(c[i].kld);
        fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"%d\" fill=\"%s\"/>\n", x, y, i == best ? 7 : 5,
                i == best ? "#080" : (c[i].fits || !budget) ? "#246" : "#999");
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\">", x + 8, y + 4);
        xml_escape(f, c[i].label);
        fprintf(f, "</text>\n");
    }
    fprintf(f, "</svg>\n");
#undef PX
#undef PY
    return fclose(f);
}

/* ------------------------------------------------------------ driver */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: smelt-infer compare --base BASE.gguf [--quants Q4_K_M,Q5_K_M,... | FILE.gguf ...] -f EVAL.txt\n"
            "                           [--imatrix F] [-c CTX] [--chunks N] [--ram-budget 2G] [-t N]\n"
            "                           [--bench-pp 64] [--bench-tg 16] [-o REPORT]\n"
            "Quantizes the base for every preset name (smelt-quantize), measures each candidate and writes\n"
            "REPORT.md, REPORT.json, REPORT.csv and REPORT.svg (default REPORT: report). The recommendation\n"
            "is the lowest mean KLD among the candidates whose RAM need fits the budget.\n");
}

int compare_main(int argc, char **argv)
{
    const char *basep = NULL, *text = NULL, *imatrix = NULL, *report = "report";
    char *list[CMP_MAX];
    int n_list = 0, ctx = 512, chunks = -1, threads = 2, bpp = 64, btg = 16;
    uint64_t budget = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--base") && more) {
            basep = argv[++i];
        } else if (!strcmp(a, "--quants") && more) {
            char *s = strdup(argv[++i]), *save = NULL;
            for (char *t = strtok_r(s, ",", &save); t && n_list < CMP_MAX; t = strtok_r(NULL, ",", &save))
                list[n_list++] = strdup(t);
            free(s);
        } else if (!strcmp(a, "-f") && more) {
            text = argv[++i];
        } else if (!strcmp(a, "--imatrix") && more) {
            imatrix = argv[++i];
        } else if ((!strcmp(a, "-c") || !strcmp(a, "--ctx-size")) && more) {
            ctx = atoi(argv[++i]);
        } else if (!strcmp(a, "--chunks") && more) {
            chunks = atoi(argv[++i]);
        } else if ((!strcmp(a, "-t") || !strcmp(a, "--threads")) && more) {
            threads = atoi(argv[++i]);
        } else if (!strcmp(a, "--ram-budget") && more) {
            if (compare_parse_size(argv[++i], &budget)) {
                fprintf(stderr, "%s: --ram-budget: '%s' is not a size like 2G or 800M\n", prog, argv[i]);
                return 2;
            }
        } else if (!strcmp(a, "--bench-pp") && more) {
            bpp = atoi(argv[++i]);
        } else if (!strcmp(a, "--bench-tg") && more) {
            btg = atoi(argv[++i]);
        } else if (!strcmp(a, "-o") && more) {
            report = argv[++i];
        } else if (a[0] != '-' && n_list < CMP_MAX) {
            list[n_list++] = strdup(a);
        } else {
            fprintf(stderr, "%s: unknown or incomplete option '%s'\n", prog, a);
            usage(stderr);
            return 2;
        }
    }
    if (!basep || !text || n_list == 0 || ctx <= 0 || threads <= 0) {
        usage(stderr);
        return 2;
    }
    int ret = 1;
    cand *c = calloc((size_t)n_list + 1, sizeof *c);
    char workdir[2048];
    if (strlen(report) > sizeof workdir - 8) {
        fprintf(stderr, "%s: -o: path too long\n", prog);
        return 2;
    }
    snprintf(workdir, sizeof workdir, "%s.work", report);
    mkdir(workdir, 0755);
    char sctx[16], schunks[16], sthreads[16];
    snprintf(sctx, sizeof sctx, "%d", ctx);
    snprintf(schunks, sizeof schunks, "%d", chunks);
    snprintf(sthreads, sizeof sthreads, "%d", threads);
    /* candidates: base first, then each file or preset */
    snprintf(c[0].label, sizeof c[0].label, "base (%s)", base_name(basep));
    snprintf(c[0].path, sizeof c[0].path, "%s", basep);
    c[0].is_base = 1;
    int n = 1;
    for (int i = 0; i < n_list; i++, n++) {
        struct stat st;
        if (stat(list[i], &st) == 0) {
            snprintf(c[n].label, sizeof c[n].label, "%s", base_name(list[i]));
            snprintf(c[n].path, sizeof c[n].path, "%s", list[i]);
            continue;
        }
        /* a preset name: quantize the base */
        snprintf(c[n].label, sizeof c[n].label, "%s", list[i]);
        snprintf(c[n].path, sizeof c[n].path, "%s/%s.gguf", workdir, list[i]);
        char logp[4400];
        snprintf(logp, sizeof logp, "%s/quantize-%s.log", workdir, list[i]);
        char *qa[10];
        int k = 0;
        qa[k++] = "--force";
        if (imatrix) {
            qa[k++] = "--imatrix";
            qa[k++] = (char *)imatrix;
        }
        qa[k++] = (char *)basep;
        qa[k++] = c[n].path;
        qa[k++] = list[i];
        qa[k++] = sthreads;
        qa[k] = NULL;
        fprintf(stderr, "%s: quantizing %s ...\n", prog, list[i]);
        sm_proc_result pr;
        json_t *j = run_json("quantize", qa, logp, &pr, "quantize");
        if (!j)
            goto out;
        json_decref(j);
    }
    /* base logits for KLD */
    char logits[4400], logp[4400];
    snprintf(logits, sizeof logits, "%s/base.logits", workdir);
    snprintf(logp, sizeof logp, "%s/base-logits.log", workdir);
    {
        char *ka[] = {"kld", "-m", (char *)basep, "-f", (char *)text, "--save-logits", logits, "-c", sctx, "-b", sctx,
                      "--chunks", schunks, "-t", sthreads, NULL};
        sm_proc_result pr;
        fprintf(stderr, "%s: base logits ...\n", prog);
        json_t *j = run_json("infer", ka, logp, &pr, "saving the base logits");
        if (!j)
            goto out;
        json_decref(j);
    }
    for (int i = 0; i < n; i++) {
        fprintf(stderr, "%s: measuring %s ...\n", prog, c[i].label);
        struct stat st;
        if (stat(c[i].path, &st) != 0) {
            fprintf(stderr, "%s: %s: %s\n", prog, c[i].path, strerror(errno));
            goto out;
        }
        c[i].file_bytes = (uint64_t)st.st_size;
        sm_proc_result pr;
        snprintf(logp, sizeof logp, "%s/ppl-%d.log", workdir, i);
        char *pa[] = {"perplexity", "-m", c[i].path, "-f", (char *)text, "-c", sctx, "-b", sctx, "--chunks", schunks,
                      "-t", sthreads, "--json", NULL};
        json_t *pj = run_json("infer", pa, logp, &pr, "perplexity");
        if (!pj)
            goto out;
        c[i].ppl = jnum(pj, "ppl");
        c[i].ppl_err = jnum(pj, "ppl_err");
        c[i].peak_rss = (uint64_t)pr.maxrss_kb * 1024;
        json_decref(pj);
        if (c[i].is_base) {
            c[i].kld = 0;
            c[i].same_top = 100;
        } else {
            snprintf(logp, sizeof logp, "%s/kld-%d.log", workdir, i);
            char *ka[] = {"kld", "-m", c[i].path, "--logits", logits, "-t", sthreads, "--json", NULL};
            json_t *kj = run_json("infer", ka, logp, &pr, "kld");
            if (!kj)
                goto out;
            c[i].kld = jnum(kj, "kld_mean");
            c[i].kld_err = jnum(kj, "kld_mean_err");
            c[i].same_top = jnum(kj, "same_top_p_pct");
            json_decref(kj);
        }
        c[i].dppl = c[i].ppl - c[0].ppl;
        /* size, RAM and speed in this process */
        sm_model m;
        sm_err err = {0};
        if (model_load(&m, c[i].path, &err)) {
            fprintf(stderr, "%s: %s: %s\n", prog, c[i].path, err.msg);
            goto out;
        }
        sm_mem_report mr;
        mem_estimate(&m, ctx, ctx, threads, &mr);
        c[i].ram_bytes = mr.total;
        c[i].kv_bytes = mr.kv_cache;
        c[i].n_params = m.n_params;
        c[i].weight_bytes = m.weight_bytes;
        c[i].bpw = m.n_params ? 8.0 * (double)m.weight_bytes / (double)m.n_params : 0;
        sm_bench_result br;
        memset(&br, 0, sizeof br);
        if ((bpp > 0 || btg > 0) && bench_run(&m, bpp, btg, ctx, threads, 2, &br, &err))
            fprintf(stderr, "%s: bench %s: %s\n", prog, c[i].label, err.msg);
        c[i].pp_tps = br.pp_tps;
        c[i].tg_tps = br.tg_tps;
        model_free(&m);
        c[i].fits = !budget || c[i].ram_bytes <= budget;
    }
    /* recommendation: lowest mean KLD among non-base candidates that fit */
    int best = -1, n_fit = 0;
    for (int i = 1; i < n; i++) {
        if (!c[i].fits)
            continue;
        n_fit++;
        if (best < 0 || c[i].kld < c[best].kld || (c[i].kld == c[best].kld && c[i].ram_bytes < c[best].ram_bytes))
            best = i;
    }
    char why[1024];
    if (best < 0) {
        snprintf(why, sizeof why, "none of the %d candidates fits the budget; the smallest needs %.2f MiB", n - 1,
                 c[1].ram_bytes / 1048576.0);
    } else {
        int second = -1;
        for (int i = 1; i < n; i++)
            if (i != best && c[i].fits && (second < 0 || c[i].kld < c[second].kld))
                second = i;
        int n_len = snprintf(why, sizeof why, "%s: the lowest mean KLD (%.6f, same top token %.2f %%) of the %d candidate%s that fit%s; "
                                              "it needs %.2f MiB at ctx %d",
                             c[best].label, c[best].kld, c[best].same_top, n_fit, n_fit == 1 ? "" : "s",
                             budget ? " the budget" : " (no budget given)", c[best].ram_bytes / 1048576.0, ctx);
        if (second >= 0 && n_len > 0 && (size_t)n_len < sizeof why)
            snprintf(why + n_len, sizeof why - (size_t)n_len, "; next best %s (KLD %.6f, %.2f MiB)", c[second].label,
                     c[second].kld, c[second].ram_bytes / 1048576.0);
    }
    char p[4400];
    int werr = 0;
    snprintf(p, sizeof p, "%s.md", report);
    werr |= write_md(p, c, n, budget, best, why, ctx);
    snprintf(p, sizeof p, "%s.json", report);
    werr |= write_json(p, c, n, budget, best, why, ctx, text);
    snprintf(p, sizeof p, "%s.csv", report);
    werr |= write_csv(p, c, n);
    snprintf(p, sizeof p, "%s.svg", report);
    werr |= write_svg(p, c, n, budget, best);
    if (werr) {
        fprintf(stderr, "%s: cannot write %s.{md,json,csv,svg}\n", prog, report);
        goto out;
    }
    snprintf(p, sizeof p, "%s.md", report);
    FILE *f = fopen(p, "r");
    if (f) {
        char line[2048];
        while (fgets(line, sizeof line, f))
            fputs(line, stdout);
        fclose(f);
    }
    fprintf(stderr, "%s: wrote %s.md, %s.json, %s.csv, %s.svg\n", prog, report, report, report, report);
    ret = best >= 0 || !budget ? 0 : 1;
out:
    for (int i = 0; i < n_list; i++)
        free(list[i]);
    free(c);
    return ret;
}
