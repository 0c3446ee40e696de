#include "recipe.h"

#include "proc.h"
#include "sha256.h"

#include <dirent.h>
#include <stdarg.h>
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define RC_MAX_RECIPE (1u << 20)
#define RC_MAX_PRESETS 32
#define RC_MAX_ADAPTERS 16

typedef struct recipe {
    char dir[4096];                  /* the recipe's directory: relative paths start here */
    char base[4096];
    char outtype[16];
    char adapters[RC_MAX_ADAPTERS][4096];
    int n_adapters;
    char calibration[4096];
    int imatrix_ctx, imatrix_chunks;
    char presets[RC_MAX_PRESETS][32];
    int n_presets;
    char eval[4096];
    int ctx, chunks, threads;
    char budget[32];
    char out[4096];
} recipe;

typedef struct hash_cache {
    json_t *entries; /* path -> {size, mtime, sha256} */
} hash_cache;

/* ------------------------------------------------------------ helpers */

/* snprintf that reports truncation (paths that do not fit are errors, never
 * silently cut); returns 0 or -1. */
static int fmt(char *out, size_t cap, const char *f, ...) __attribute__((format(printf, 3, 4)));
static int fmt(char *out, size_t cap, const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    int n = vsnprintf(out, cap, f, ap);
    va_end(ap);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

static void resolve(const recipe *r, const char *p, char *out, size_t cap)
{
    if (p[0] == '/')
        fmt(out, cap, "%s", p);
    else
        fmt(out, cap, "%s/%s", r->dir, p);
}

static int str_field(const recipe *r, json_t *j, const char *key, char *out, size_t cap, int path, int required,
                     const char *file, sm_err *err)
{
    json_t *v = json_object_get(j, key);
    if (!v) {
        if (required)
            return sm_err_set(err, SM_EFORMAT, "%s: \"%s\" is required", file, key);
        out[0] = 0;
        return SM_OK;
    }
    if (!json_is_string(v))
        return sm_err_set(err, SM_EFORMAT, "%s: \"%s\" must be a string", file, key);
    if (path)
        resolve(r, json_string_value(v), out, cap);
    else
        fmt(out, cap, "%s", json_string_value(v));
    return SM_OK;
}

static int int_field(json_t *j, const char *key, int def, int *out, const char *file, sm_err *err)
{
    json_t *v = json_object_get(j, key);
    if (!v) {
        *out = def;
        return SM_OK;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 1 << 24)
        return sm_err_set(err, SM_EFORMAT, "%s: \"%s\" must be a non-negative integer", file, key);
    *out = (int)json_integer_value(v);
    return SM_OK;
}

static int load_recipe(const char *path, recipe *r, sm_err *err)
{
    memset(r, 0, sizeof *r);
    json_error_t je;
    json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!j)
        return sm_err_set(err, SM_EFORMAT, "%s: line %d: %s", path, je.line, je.text);
    int rc = SM_OK;
    if (!json_is_object(j)) {
        rc = sm_err_set(err, SM_EFORMAT, "%s: not a JSON object", path);
        goto done;
    }
    static const char *known[] = {"base", "outtype", "adapters", "calibration", "imatrix_ctx", "imatrix_chunks",
                                  "presets", "eval", "ctx", "chunks", "ram_budget", "threads", "out", "name", NULL};
    const char *k;
    json_t *v;
    json_object_foreach(j, k, v) {
        int ok = 0;
        for (int i = 0; known[i]; i++)
            ok |= strcmp(k, known[i]) == 0;
        if (!ok) {
            rc = sm_err_set(err, SM_EFORMAT, "%s: unknown key \"%s\"", path, k);
            goto done;
        }
    }
    fmt(r->dir, sizeof r->dir, "%s", path);
    char *slash = strrchr(r->dir, '/');
    if (slash)
        *slash = 0;
    else
        fmt(r->dir, sizeof r->dir, ".");
    if ((rc = str_field(r, j, "base", r->base, sizeof r->base, 1, 1, path, err)) ||
        (rc = str_field(r, j, "outtype", r->outtype, sizeof r->outtype, 0, 0, path, err)) ||
        (rc = str_field(r, j, "calibration", r->calibration, sizeof r->calibration, 1, 0, path, err)) ||
        (rc = str_field(r, j, "eval", r->eval, sizeof r->eval, 1, 0, path, err)) ||
        (rc = str_field(r, j, "ram_budget", r->budget, sizeof r->budget, 0, 0, path, err)) ||
        (rc = str_field(r, j, "out", r->out, sizeof r->out, 1, 1, path, err)) ||
        (rc = int_field(j, "imatrix_ctx", 512, &r->imatrix_ctx, path, err)) ||
        (rc = int_field(j, "imatrix_chunks", 0, &r->imatrix_chunks, path, err)) ||
        (rc = int_field(j, "ctx", 512, &r->ctx, path, err)) || (rc = int_field(j, "chunks", 0, &r->chunks, path, err)) ||
        (rc = int_field(j, "threads", 2, &r->threads, path, err)))
        goto done;
    if (!r->outtype[0])
        fmt(r->outtype, sizeof r->outtype, "f16");
    json_t *ad = json_object_get(j, "adapters"), *pr = json_object_get(j, "presets");
    if (ad && (!json_is_array(ad) || json_array_size(ad) > RC_MAX_ADAPTERS)) {
        rc = sm_err_set(err, SM_EFORMAT, "%s: \"adapters\" must be an array of at most %d paths", path, RC_MAX_ADAPTERS);
        goto done;
    }
    size_t i;
    json_array_foreach(ad, i, v) {
        if (!json_is_string(v)) {
            rc = sm_err_set(err, SM_EFORMAT, "%s: adapters[%zu] must be a string", path, i);
            goto done;
        }
        resolve(r, json_string_value(v), r->adapters[r->n_adapters++], sizeof r->adapters[0]);
    }
    if (pr && (!json_is_array(pr) || json_array_size(pr) > RC_MAX_PRESETS)) {
        rc = sm_err_set(err, SM_EFORMAT, "%s: \"presets\" must be an array of at most %d names", path, RC_MAX_PRESETS);
        goto done;
    }
    json_array_foreach(pr, i, v) {
        const char *s = json_string_value(v);
        if (!s || strlen(s) >= sizeof r->presets[0] || strchr(s, '/')) {
            rc = sm_err_set(err, SM_EFORMAT, "%s: presets[%zu] must be a type name like \"Q4_K_M\"", path, i);
            goto done;
        }
        fmt(r->presets[r->n_presets++], sizeof r->presets[0], "%s", s);
    }
done:
    json_decref(j);
    return rc;
}

/* sha256 of a file, reusing the cached value when size and mtime match. */
static int file_hash(hash_cache *hc, const char *path, char hex[65], uint64_t *size, sm_err *err)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return sm_err_set(err, SM_EMISSING, "%s: %s", path, strerror(errno));
    *size = (uint64_t)st.st_size;
    json_t *e = json_object_get(hc->entries, path);
    double mt = (double)st.st_mtim.tv_sec + st.st_mtim.tv_nsec * 1e-9;
    if (e && json_integer_value(json_object_get(e, "size")) == (json_int_t)st.st_size &&
        json_real_value(json_object_get(e, "mtime")) == mt && json_string_value(json_object_get(e, "sha256"))) {
        fmt(hex, 65, "%s", json_string_value(json_object_get(e, "sha256")));
        return SM_OK;
    }
    FILE *f = fopen(path, "rb");
    if (!f)
        return sm_err_set(err, SM_EIO, "%s: %s", path, strerror(errno));
    sm_sha256 s;
    sm_sha256_init(&s);
    static uint8_t buf[1 << 20];
    size_t k;
    while ((k = fread(buf, 1, sizeof buf, f)) > 0)
        sm_sha256_update(&s, buf, k);
    fclose(f);
    uint8_t dg[32];
    sm_sha256_final(&s, dg);
    sm_sha256_to_hex(dg, hex);
    json_object_set_new(hc->entries, path,
                        json_pack("{s:I, s:f, s:s}", "size", (json_int_t)st.st_size, "mtime", mt, "sha256", hex));
    return SM_OK;
}

/* A step's key: sha256 over its description and its inputs' hashes. */
typedef struct keybuf {
    sm_sha256 s;
} keybuf;

static void key_add(keybuf *k, const char *text)
{
    sm_sha256_update(&k->s, text, strlen(text));
    sm_sha256_update(&k->s, "\n", 1);
}

static int key_add_file(keybuf *k, hash_cache *hc, const char *path, json_t *inputs, sm_err *err)
{
    char hex[65];
    uint64_t size;
    int rc = file_hash(hc, path, hex, &size, err);
    if (rc)
        return rc;
    key_add(k, path);
    key_add(k, hex);
    if (inputs && !json_object_get(inputs, path))
        json_object_set_new(inputs, path, json_pack("{s:s, s:I}", "sha256", hex, "size", (json_int_t)size));
    return SM_OK;
}

/* All regular files of a directory, sorted, into the key. */
static int key_add_dir(keybuf *k, hash_cache *hc, const char *dir, json_t *inputs, sm_err *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return sm_err_set(err, SM_EMISSING, "%s: cannot open directory", dir);
    char *names[4096];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 4096) {
        if (e->d_name[0] == '.')
            continue;
        char p[8300];
        fmt(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(p, &st) == 0 && S_ISREG(st.st_mode))
            names[n++] = strdup(e->d_name);
    }
    closedir(d);
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
            char *t = names[j];
            names[j] = names[j - 1];
            names[j - 1] = t;
        }
    int rc = SM_OK;
    for (int i = 0; i < n; i++) {
        char p[8300];
        fmt(p, sizeof p, "%s/%s", dir, names[i]);
        if (!rc && !strstr(names[i], ".gguf")) /* outputs written into the dir are not inputs */
            rc = key_add_file(k, hc, p, inputs, err);
        free(names[i]);
    }
    return rc;
}

static void key_final(keybuf *k, char hex[65])
{
    uint8_t dg[32];
    sm_sha256_final(&k->s, dg);
    sm_sha256_to_hex(dg, hex);
}

/* ------------------------------------------------------------ steps */

typedef struct runner {
    const rc_opts *o;
    const recipe *r;
    json_t *old_steps;   /* from the previous manifest */
    json_t *steps;       /* new manifest's steps */
    json_t *inputs;
    hash_cache hc;
    rc_summary *sum;
    char logdir[4200];
} runner;

/* 1 when the previous run of step `name` had this key and its outputs are
 * still there unchanged. */
static int up_to_date(runner *R, const char *name, const char *key)
{
    json_t *s = json_object_get(R->old_steps, name);
    if (!s || !json_is_string(json_object_get(s, "key")) || strcmp(json_string_value(json_object_get(s, "key")), key))
        return 0;
    size_t i;
    json_t *out;
    json_array_foreach(json_object_get(s, "outputs"), i, out) {
        const char *p = json_string_value(json_object_get(out, "path"));
        const char *h = json_string_value(json_object_get(out, "sha256"));
        char hex[65];
        uint64_t size;
        sm_err e;
        if (!p || !h || file_hash(&R->hc, p, hex, &size, &e) || strcmp(hex, h))
            return 0;
    }
    return 1;
}

/* Runs a tool for a step unless up to date; records the step. argv[0] is
 * the tool name ("convert"); outputs lists the files the step produces. */
static int step(runner *R, const char *name, const char *key, const char *tool, char **args, const char **outputs,
                int n_out, sm_err *err)
{
    R->sum->n_steps++;
    json_t *rec = json_object();
    json_object_set_new(rec, "key", json_string(key));
    json_object_set_new(rec, "tool", json_string(tool));
    int rc = SM_OK;
    if (!R->o->force && up_to_date(R, name, key)) {
        fprintf(R->o->log, "smelt-build: %-16s up to date\n", name);
        json_object_set_new(rec, "ran", json_false());
        json_object_set_new(rec, "seconds", json_real(0));
    } else if (R->o->dry_run) {
        fprintf(R->o->log, "smelt-build: %-16s would run\n", name);
        json_decref(rec);
        return SM_OK;
    } else {
        char exe[4200], logp[8400];
        sm_tool_path(tool, exe, sizeof exe);
        fmt(logp, sizeof logp, "%s/%s.log", R->logdir, name);
        char *argv[64];
        int n = 0;
        argv[n++] = exe;
        for (int i = 0; args[i] && n < 62; i++)
            argv[n++] = args[i];
        argv[n] = NULL;
        fprintf(R->o->log, "smelt-build: %-16s running smelt-%s ...\n", name, tool);
        fflush(R->o->log);
        sm_proc_result pr;
        if ((rc = sm_proc_run(argv, logp, logp, &pr, err)))
            goto out;
        if (pr.status != 0) {
            rc = sm_err_set(err, SM_EIO, "step %s: smelt-%s exited with status %d (log: %s)", name, tool, pr.status, logp);
            goto out;
        }
        fprintf(R->o->log, "smelt-build: %-16s done in %.2f s (peak RSS %ld MiB)\n", name, pr.seconds, pr.maxrss_kb / 1024);
        json_object_set_new(rec, "ran", json_true());
        json_object_set_new(rec, "seconds", json_real(pr.seconds));
        json_object_set_new(rec, "peak_rss_kb", json_integer(pr.maxrss_kb));
        json_object_set_new(rec, "log", json_string(logp));
        R->sum->n_ran++;
        size_t l = strlen(R->sum->ran);
        fmt(R->sum->ran + l, sizeof R->sum->ran - l, "%s%s", l ? " " : "", name);
    }
    json_t *outs = json_array();
    for (int i = 0; i < n_out; i++) {
        char hex[65];
        uint64_t size;
        if ((rc = file_hash(&R->hc, outputs[i], hex, &size, err))) {
            json_decref(outs);
            goto out;
        }
        json_array_append_new(outs, json_pack("{s:s, s:s, s:I}", "path", outputs[i], "sha256", hex, "size", (json_int_t)size));
    }
    json_object_set_new(rec, "outputs", outs);
    json_object_set(R->steps, name, rec);
out:
    json_decref(rec);
    return rc;
}

static int mkdirs(const char *path)
{
    char tmp[4096];
    fmt(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            mkdir(tmp, 0755);
            *p = '/';
        }
    return mkdir(tmp, 0755) == 0 || errno == EEXIST ? 0 : -1;
}

static int write_manifest(runner *R, const char *path, sm_err *err)
{
    json_t *m = json_object();
    json_object_set_new(m, "smelt_version", json_string(SMELT_VERSION));
    json_object_set_new(m, "recipe", json_string(R->o->recipe_path));
    json_object_set(m, "inputs", R->inputs);
    json_object_set(m, "steps", R->steps);
    json_object_set(m, "hash_cache", R->hc.entries);
    char tmp[4300];
    fmt(tmp, sizeof tmp, "%s.tmp", path);
    int rc = SM_OK;
    if (json_dump_file(m, tmp, JSON_INDENT(2) | JSON_PRESERVE_ORDER) != 0 || rename(tmp, path) != 0)
        rc = sm_err_set(err, SM_EIO, "%s: cannot write the manifest", path);
    json_decref(m);
    return rc;
}

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

int rc_run(const rc_opts *o, rc_summary *sum, sm_err *err)
{
    memset(sum, 0, sizeof *sum);
    recipe *r = calloc(1, sizeof *r);
    runner R;
    memset(&R, 0, sizeof R);
    int rc;
    if (!r)
        return sm_err_set(err, SM_ENOMEM, "out of memory");
    if ((rc = load_recipe(o->recipe_path, r, err)))
        goto done;
    R.o = o;
    R.r = r;
    R.sum = sum;
    fmt(sum->out_dir, sizeof sum->out_dir, "%s", r->out);
    if (mkdirs(r->out) != 0) {
        rc = sm_err_set(err, SM_EIO, "%s: cannot create: %s", r->out, strerror(errno));
        goto done;
    }
    fmt(R.logdir, sizeof R.logdir, "%s/logs", r->out);
    mkdirs(R.logdir);
    char manifest[4300];
    fmt(manifest, sizeof manifest, "%s/manifest.json", r->out);
    json_t *old = json_load_file(manifest, 0, NULL);
    R.old_steps = json_incref(json_object_get(old, "steps"));
    R.hc.entries = json_object_get(old, "hash_cache") ? json_deep_copy(json_object_get(old, "hash_cache")) : json_object();
    json_decref(old);
    R.steps = json_object();
    R.inputs = json_object();
    char threads[16], ctx[16], chunks[16], ictx[16], ichunks[16];
    fmt(threads, sizeof threads, "%d", r->threads);
    fmt(ctx, sizeof ctx, "%d", r->ctx);
    fmt(chunks, sizeof chunks, "%d", r->chunks);
    fmt(ictx, sizeof ictx, "%d", r->imatrix_ctx);
    fmt(ichunks, sizeof ichunks, "%d", r->imatrix_chunks);
    const char *name = base_name(r->base);
    char key[65];
    keybuf k;

    /* 1. convert */
    char model[4300];
    fmt(model, sizeof model, "%s/%s-%s.gguf", r->out, name, r->outtype);
    sm_sha256_init(&k.s);
    key_add(&k, "convert " SMELT_VERSION);
    key_add(&k, r->outtype);
    if ((rc = key_add_dir(&k, &R.hc, r->base, R.inputs, err)))
        goto done;
    key_final(&k, key);
    {
        char *args[] = {r->base, "--outtype", r->outtype, "--outfile", model, "--force", "--quiet", NULL};
        const char *outs[] = {model};
        if ((rc = step(&R, "convert", key, "convert", args, outs, 1, err)))
            goto done;
    }
    /* 2. merge */
    if (r->n_adapters) {
        char merged[4300];
        fmt(merged, sizeof merged, "%s/%s-merged-%s.gguf", r->out, name, r->outtype);
        sm_sha256_init(&k.s);
        key_add(&k, "merge " SMELT_VERSION);
        if ((rc = key_add_file(&k, &R.hc, model, NULL, err)))
            goto done;
        char *args[8 + 2 * RC_MAX_ADAPTERS];
        int n = 0;
        args[n++] = "--base";
        args[n++] = model;
        for (int i = 0; i < r->n_adapters; i++) {
            char dirpart[4096];
            fmt(dirpart, sizeof dirpart, "%s", r->adapters[i]);
            char *colon = strrchr(dirpart, ':');
            struct stat st;
            if (colon && stat(dirpart, &st) != 0)
                *colon = 0; /* "dir:scale" */
            key_add(&k, r->adapters[i]);
            if ((rc = key_add_dir(&k, &R.hc, dirpart, R.inputs, err)))
                goto done;
            args[n++] = "--lora";
            args[n++] = r->adapters[i];
        }
        args[n++] = "-o";
        args[n++] = merged;
        args[n++] = "--force";
        args[n] = NULL;
        key_final(&k, key);
        const char *outs[] = {merged};
        if ((rc = step(&R, "merge", key, "merge", args, outs, 1, err)))
            goto done;
        fmt(model, sizeof model, "%s", merged);
    }
    /* 3. imatrix */
    char imatrix[4300] = "";
    if (r->calibration[0]) {
        fmt(imatrix, sizeof imatrix, "%s/imatrix.gguf", r->out);
        sm_sha256_init(&k.s);
        key_add(&k, "imatrix " SMELT_VERSION);
        key_add(&k, ictx);
        key_add(&k, ichunks);
        if ((rc = key_add_file(&k, &R.hc, model, NULL, err)) ||
            (rc = key_add_file(&k, &R.hc, r->calibration, R.inputs, err)))
            goto done;
        key_final(&k, key);
        char *args[] = {"-m", model, "-f", r->calibration, "-o", imatrix, "-c", ictx, "--chunks", ichunks, "-t", threads, NULL};
        if (r->imatrix_chunks == 0)
            args[8] = NULL; /* all chunks */
        const char *outs[] = {imatrix};
        if ((rc = step(&R, "imatrix", key, "imatrix", args, outs, 1, err)))
            goto done;
    }
    /* 4. quantize */
    char qfiles[RC_MAX_PRESETS][4300];
    for (int i = 0; i < r->n_presets; i++) {
        fmt(qfiles[i], sizeof qfiles[i], "%s/%s-%s%s.gguf", r->out, name, r->presets[i], imatrix[0] ? "-imat" : "");
        sm_sha256_init(&k.s);
        key_add(&k, "quantize " SMELT_VERSION);
        key_add(&k, r->presets[i]);
        if ((rc = key_add_file(&k, &R.hc, model, NULL, err)))
            goto done;
        if (imatrix[0] && (rc = key_add_file(&k, &R.hc, imatrix, NULL, err)))
            goto done;
        key_final(&k, key);
        char *args[12];
        int n = 0;
        args[n++] = "--force";
        if (imatrix[0]) {
            args[n++] = "--imatrix";
            args[n++] = imatrix;
        }
        args[n++] = model;
        args[n++] = qfiles[i];
        args[n++] = r->presets[i];
        args[n++] = threads;
        args[n] = NULL;
        char sname[64];
        fmt(sname, sizeof sname, "quantize-%s", r->presets[i]);
        const char *outs[] = {qfiles[i]};
        if ((rc = step(&R, sname, key, "quantize", args, outs, 1, err)))
            goto done;
    }
    /* 5. compare */
    if (r->eval[0] && r->n_presets) {
        char list[RC_MAX_PRESETS * 4300] = "", report[4300];
        fmt(report, sizeof report, "%s/report", r->out);
        sm_sha256_init(&k.s);
        key_add(&k, "compare " SMELT_VERSION);
        key_add(&k, ctx);
        key_add(&k, chunks);
        key_add(&k, r->budget);
        if ((rc = key_add_file(&k, &R.hc, model, NULL, err)) || (rc = key_add_file(&k, &R.hc, r->eval, R.inputs, err)))
            goto done;
        for (int i = 0; i < r->n_presets; i++) {
            if ((rc = key_add_file(&k, &R.hc, qfiles[i], NULL, err)))
                goto done;
            size_t l = strlen(list);
            fmt(list + l, sizeof list - l, "%s%s", i ? "," : "", qfiles[i]);
        }
        key_final(&k, key);
        char *args[24];
        int n = 0;
        args[n++] = "compare";
        args[n++] = "--base";
        args[n++] = model;
        args[n++] = "--quants";
        args[n++] = list;
        args[n++] = "-f";
        args[n++] = r->eval;
        args[n++] = "-c";
        args[n++] = ctx;
        if (r->chunks) {
            args[n++] = "--chunks";
            args[n++] = chunks;
        }
        if (r->budget[0]) {
            args[n++] = "--ram-budget";
            args[n++] = r->budget;
        }
        args[n++] = "-t";
        args[n++] = threads;
        args[n++] = "-o";
        args[n++] = report;
        args[n] = NULL;
        char o1[4400], o2[4400], o3[4400], o4[4400];
        fmt(o1, sizeof o1, "%s.md", report);
        fmt(o2, sizeof o2, "%s.json", report);
        fmt(o3, sizeof o3, "%s.csv", report);
        fmt(o4, sizeof o4, "%s.svg", report);
        const char *outs[] = {o1, o2, o3, o4};
        if ((rc = step(&R, "compare", key, "infer", args, outs, 4, err)))
            goto done;
    }
    /* the manifest also records every output's sha256 and size */
    if (!o->dry_run)
        rc = write_manifest(&R, manifest, err);
done:
    json_decref(R.old_steps);
    json_decref(R.steps);
    json_decref(R.inputs);
    json_decref(R.hc.entries);
    free(r);
    return rc;
}
