/* smelt-fetch against a local HTTP server on 127.0.0.1: downloads, resume
 * after a dropped connection, checksum mismatch, HTTP errors and retries. */
#include <criterion/criterion.h>

#include "fetch/fetch.h"
#include "formats/sha256.h"
#include "support.h"
#include "support_http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint8_t weights[300000];
static const char config[] = "{\"architectures\": [\"LlamaForCausalLM\"]}";
static const char tok[] = "not really a tokenizer";
static char listing[2048], listing_badsha[2048];
static char sha_hex[65];

static void init_data(void)
{
    uint32_t s = 7;
    for (size_t i = 0; i < sizeof weights; i++) {
        s = s * 1103515245u + 12345u;
        weights[i] = (uint8_t)(s >> 16);
    }
    sm_sha256_hex(weights, sizeof weights, sha_hex);
#define LISTING_FMT "{\"id\": \"acme/tiny\", \"siblings\": [" \
    "{\"rfilename\": \"config.json\", \"size\": %zu}," \
    "{\"rfilename\": \"tokenizer.model\", \"size\": %zu}," \
    "{\"rfilename\": \"pytorch_model.bin\", \"size\": 3}," \
    "{\"rfilename\": \"model.safetensors\", \"size\": %zu, \"lfs\": {\"sha256\": \"%s\", \"size\": %zu}}]}"
    snprintf(listing, sizeof listing, LISTING_FMT, strlen(config), strlen(tok), sizeof weights, sha_hex, sizeof weights);
    snprintf(listing_badsha, sizeof listing_badsha, LISTING_FMT, strlen(config), strlen(tok), sizeof weights,
             "0000000000000000000000000000000000000000000000000000000000000000", sizeof weights);
}

typedef struct fixture {
    th_server srv;
    th_route routes[6];
    char *dir;
    char out[1200];
    char endpoint[64];
} fixture;

static void setup_routes(fixture *f, const char *list, size_t drop, int fail_list, int fail_file)
{
    init_data();
    th_route r[] = {
        {"/api/models/acme/tiny/revision/main", list, strlen(list), 0, 0, fail_list, NULL, 0},
        {"/acme/tiny/resolve/main/config.json", config, strlen(config), 0, 0, 0, NULL, 0},
        {"/acme/tiny/resolve/main/tokenizer.model", tok, strlen(tok), 0, 0, 0, NULL, 0},
        {"/acme/tiny/resolve/main/pytorch_model.bin", "abc", 3, 0, 0, 0, NULL, 0},
        {"/acme/tiny/resolve/main/model.safetensors", weights, sizeof weights, 0, drop, fail_file, NULL, 0},
    };
    memcpy(f->routes, r, sizeof r);
    cr_assert_eq(th_start(&f->srv, f->routes, 5), 0);
    f->dir = ts_tmpdir();
    snprintf(f->out, sizeof f->out, "%s/tiny", f->dir);
    snprintf(f->endpoint, sizeof f->endpoint, "http://127.0.0.1:%d", f->srv.port);
}

static void teardown(fixture *f)
{
    th_stop(&f->srv);
    ts_rmtree(f->dir);
    free(f->dir);
}

static int run_fetch(fixture *f, fx_summary *s, sm_err *err, uint32_t tries)
{
    fx_opts o = {0};
    o.source = "acme/tiny";
    o.endpoint = f->endpoint;
    o.outdir = f->out;
    o.backoff_ms = 1;
    o.max_tries = tries;
    return fx_fetch(&o, s, err);
}

static void assert_file(const fixture *f, const char *name, const void *want, size_t n)
{
    char p[1400];
    snprintf(p, sizeof p, "%s/%s", f->out, name);
    size_t len;
    uint8_t *b = ts_read(p, &len);
    cr_assert(b, "%s missing", name);
    cr_assert_eq(len, n, "%s: %zu bytes, expected %zu", name, len, n);
    cr_assert(memcmp(b, want, n) == 0, "%s: content differs", name);
    free(b);
}

Test(fetch, downloads_model_files_and_skips_the_rest)
{
    fixture f;
    setup_routes(&f, listing, 0, 0, 0);
    fx_summary s;
    sm_err err = {0};
    cr_assert_eq(run_fetch(&f, &s, &err, 3), 0, "%s", err.msg);
    cr_assert_eq(s.n_files, 3);
    cr_assert_eq(s.n_downloaded, 3);
    cr_assert_eq(s.n_verified, 1);
    assert_file(&f, "config.json", config, strlen(config));
    assert_file(&f, "tokenizer.model", tok, strlen(tok));
    assert_file(&f, "model.safetensors", weights, sizeof weights);
    cr_assert_eq(ts_count_entries(f.out), 3, "pytorch_model.bin or a .part file was left");
    /* a second run downloads nothing */
    cr_assert_eq(run_fetch(&f, &s, &err, 3), 0, "%s", err.msg);
    cr_assert_eq(s.n_downloaded, 0);
    cr_assert_eq(th_count(&f.srv, "GET /acme/tiny/resolve/main/model.safetensors"), 1);
    teardown(&f);
}

Test(fetch, resumes_after_dropped_connection)
{
    fixture f;
    setup_routes(&f, listing, 123457, 0, 0);
    fx_summary s;
    sm_err err = {0};
    cr_assert_eq(run_fetch(&f, &s, &err, 3), 0, "%s", err.msg);
    assert_file(&f, "model.safetensors", weights, sizeof weights);
    cr_assert_eq(s.retries, 1);
    cr_assert_eq(th_count(&f.srv, "model.safetensors range=123457"), 1, "no Range request from the dropped byte");
    cr_assert_eq(s.n_verified, 1);
    teardown(&f);
}

Test(fetch, checksum_mismatch_leaves_nothing)
{
    fixture f;
    setup_routes(&f, listing_badsha, 0, 0, 0);
    fx_summary s;
    sm_err err = {0};
    cr_assert_eq(run_fetch(&f, &s, &err, 3), SM_EMISMATCH, "%s", err.msg);
    cr_assert(strstr(err.msg, "sha256") && strstr(err.msg, "model.safetensors"), "%s", err.msg);
    char p[1400];
    snprintf(p, sizeof p, "%s/model.safetensors", f.out);
    cr_assert(!ts_exists(p));
    snprintf(p, sizeof p, "%s/.model.safetensors.part", f.out);
    cr_assert(!ts_exists(p), "partial file left");
    teardown(&f);
}

Test(fetch, http_errors_and_retries)
{
    fixture f;
    /* 500 twice on the listing and once on the weights: succeeds with retries */
    setup_routes(&f, listing, 0, 2, 1);
    fx_summary s;
    sm_err err = {0};
    cr_assert_eq(run_fetch(&f, &s, &err, 4), 0, "%s", err.msg);
    cr_assert_eq(s.retries, 3);
    assert_file(&f, "model.safetensors", weights, sizeof weights);
    teardown(&f);

    /* persistent 500: gives up after max_tries attempts */
    setup_routes(&f, listing, 0, 100, 0);
    cr_assert_eq(run_fetch(&f, &s, &err, 3), SM_EIO);
    cr_assert(strstr(err.msg, "3 attempts") || strstr(err.msg, "HTTP 500"), "%s", err.msg);
    cr_assert_eq(th_count(&f.srv, "GET /api/models/acme/tiny"), 3);
    teardown(&f);

    /* 404: final at once */
    setup_routes(&f, listing, 0, 0, 0);
    fx_opts o = {0};
    o.source = "acme/missing";
    o.endpoint = f.endpoint;
    o.outdir = f.out;
    o.backoff_ms = 1;
    cr_assert_eq(fx_fetch(&o, &s, &err), SM_EIO);
    cr_assert(strstr(err.msg, "HTTP 404"), "%s", err.msg);
    cr_assert_eq(th_count(&f.srv, "GET /api/models/acme/missing"), 1);
    o.source = "no-slash";
    cr_assert_eq(fx_fetch(&o, &s, &err), SM_EINVAL);
    teardown(&f);
}

Test(fetch, cli)
{
    fixture f;
    setup_routes(&f, listing, 0, 0, 0);
    char *out = NULL;
    int st = ts_run(&out, "%s/smelt-fetch %s/acme/tiny -o %s --quiet", ts_bin(), f.endpoint, f.out);
    cr_assert_eq(st, 0, "%s", out);
    free(out);
    assert_file(&f, "model.safetensors", weights, sizeof weights);
    st = ts_run(&out, "%s/smelt-fetch %s/acme/nothere -o %s/x --retries 0", ts_bin(), f.endpoint, f.dir);
    cr_assert_eq(st, 1);
    cr_assert(strstr(out, "smelt-fetch: ") && strstr(out, "404"), "%s", out);
    free(out);
    teardown(&f);
}
