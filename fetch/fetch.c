#include "fetch.h"

#include "sha256.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdarg.h>
#include <strings.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* The file list is JSON of a few KB per file; 64 MiB is far beyond any repo. */
#define FX_MAX_LISTING (64u << 20)

int fx_wanted_file(const char *n)
{
    static const char *exact[] = {"config.json", "generation_config.json", "tokenizer.json", "tokenizer.model",
                                  "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                                  "model.safetensors.index.json", "adapter_config.json", "README.md", NULL};
    for (int i = 0; exact[i]; i++)
        if (strcmp(n, exact[i]) == 0)
            return 1;
    size_t l = strlen(n);
    if (strchr(n, '/'))
        return 0; /* subfolders (onnx/, original/) are not part of an HF model dir */
    return l > 12 && strcmp(n + l - 12, ".safetensors") == 0;
}

typedef struct membuf {
    char *p;
    size_t n, cap, max;
} membuf;

static size_t mem_write(char *data, size_t size, size_t nmemb, void *ud)
{
    membuf *m = ud;
    size_t k = size * nmemb;
    if (m->n + k + 1 > m->max)
        return 0; /* abort the transfer: too large */
    if (m->n + k + 1 > m->cap) {
        size_t cap = (m->n + k + 1) * 2;
        char *p = realloc(m->p, cap);
        if (!p)
            return 0;
        m->p = p;
        m->cap = cap;
    }
    memcpy(m->p + m->n, data, k);
    m->n += k;
    m->p[m->n] = 0;
    return k;
}

static void sleep_ms(uint32_t ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void logf_(const fx_opts *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_(const fx_opts *o, const char *fmt, ...)
{
    if (!o->log)
        return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    o->log(o->progress_ctx, line);
}

/* Retry policy: connection problems and 5xx/429 are transient; other HTTP
 * statuses are final. */
static int transient(CURLcode cc, long status)
{
    if (cc == CURLE_OK)
        return status >= 500 || status == 429 || status == 408;
    return cc == CURLE_COULDNT_CONNECT || cc == CURLE_PARTIAL_FILE || cc == CURLE_RECV_ERROR ||
           cc == CURLE_SEND_ERROR || cc == CURLE_OPERATION_TIMEDOUT || cc == CURLE_GOT_NOTHING ||
           cc == CURLE_COULDNT_RESOLVE_HOST || cc == CURLE_SSL_CONNECT_ERROR || cc == CURLE_HTTP2 ||
           cc == CURLE_HTTP2_STREAM;
}

static struct curl_slist *auth_headers(const fx_opts *o)
{
    const char *tok = o->token ? o->token : getenv("HF_TOKEN");
    if (!tok || !*tok)
        return NULL;
    char h[1024];
    snprintf(h, sizeof h, "Authorization: Bearer %s", tok);
    return curl_slist_append(NULL, h);
}

static void setup(CURL *c, const char *url, struct curl_slist *hdrs)
{
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "smelt-fetch/1");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
    /* abort a stalled transfer: less than 1 byte/s for 60 s */
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
    if (hdrs)
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
}

static int get_listing(CURL *c, const fx_opts *o, const char *endpoint, const char *repo, const char *rev,
                       struct curl_slist *hdrs, json_t **out, fx_summary *sum, sm_err *err)
{
    char url[4096];
    snprintf(url, sizeof url, "%s/api/models/%s/revision/%s?blobs=true", endpoint, repo, rev);
    uint32_t delay = o->backoff_ms;
    for (uint32_t attempt = 1;; attempt++) {
        membuf m = {NULL, 0, 0, FX_MAX_LISTING};
        setup(c, url, hdrs);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, mem_write);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &m);
        CURLcode cc = curl_easy_perform(c);
        long status = 0;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        if (cc == CURLE_OK && status == 200) {
            json_error_t je;
            *out = json_loadb(m.p ? m.p : "", m.n, 0, &je);
            free(m.p);
            if (!*out || !json_is_array(json_object_get(*out, "siblings"))) {
                json_decref(*out);
                *out = NULL;
                return sm_err_set(err, SM_EFORMAT, "%s: the file list is not a JSON object with \"siblings\"", url);
            }
            return SM_OK;
        }
        free(m.p);
        if (!transient(cc, status) || attempt >= o->max_tries) {
            if (cc != CURLE_OK)
                return sm_err_set(err, SM_EIO, "%s: %s (after %u attempts)", url, curl_easy_strerror(cc), attempt);
            return sm_err_set(err, SM_EIO, "%s: HTTP %ld%s", url, status,
                              status == 404 ? " (no such repository or revision)" : status == 401 ? " (set HF_TOKEN)" : "");
        }
        logf_(o, "%s: %s, retrying in %u ms", url, cc != CURLE_OK ? curl_easy_strerror(cc) : "server error", delay);
        sum->retries++;
        sleep_ms(delay);
        delay *= 2;
    }
}

typedef struct dl_state {
    FILE *fp;
    sm_sha256 *sha;
    uint64_t done;      /* bytes in the .part file */
    uint64_t total;     /* expected size or 0 */
    const fx_opts *o;
    const char *name;
    char etag[128];     /* sha256 from X-Linked-Etag / ETag, if any */
    long range_ok;      /* 206 seen */
} dl_state;

static size_t file_write(char *data, size_t size, size_t nmemb, void *ud)
{
    dl_state *d = ud;
    size_t k = size * nmemb;
    if (fwrite(data, 1, k, d->fp) != k)
        return 0;
    sm_sha256_update(d->sha, data, k);
    d->done += k;
    return k;
}

static size_t header_cb(char *buf, size_t size, size_t nitems, void *ud)
{
    dl_state *d = ud;
    size_t n = size * nitems;
    const char *keys[] = {"x-linked-etag:", "etag:"};
    for (int i = 0; i < 2; i++) {
        size_t kl = strlen(keys[i]);
        if (n > kl && strncasecmp(buf, keys[i], kl) == 0) {
            const char *v = buf + kl;
            while (*v == ' ' || *v == '"' || *v == 'W' || *v == '/')
                v++;
            size_t j = 0;
            while (j < 64 && v + j < buf + n && ((v[j] >= '0' && v[j] <= '9') || (v[j] >= 'a' && v[j] <= 'f')))
                j++;
            /* only a 64-hex ETag is a sha256 (LFS files); git blob ETags are 40 */
            if (j == 64 && (i == 0 || !d->etag[0])) {
                memcpy(d->etag, v, 64);
                d->etag[64] = 0;
            }
        }
    }
    return n;
}

static int xfer_cb(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
    (void)ultotal;
    (void)ulnow;
    (void)dlnow;
    (void)dltotal;
    dl_state *d = ud;
    if (d->o->progress)
        d->o->progress(d->o->progress_ctx, d->name, d->done, d->total);
    return 0;
}

/* Feeds the bytes already in the .part file into the hash (resume). */
static int hash_existing(const char *path, sm_sha256 *sha, uint64_t *len)
{
    FILE *f = fopen(path, "rb");
    *len = 0;
    if (!f)
        return 0;
    uint8_t buf[1 << 16];
    size_t k;
    while ((k = fread(buf, 1, sizeof buf, f)) > 0) {
        sm_sha256_update(sha, buf, k);
        *len += k;
    }
    fclose(f);
    return 1;
}

static int file_sha256(const char *path, char hex[65])
{
    sm_sha256 s;
    sm_sha256_init(&s);
    uint64_t n;
    if (!hash_existing(path, &s, &n))
        return 0;
    uint8_t dg[32];
    sm_sha256_final(&s, dg);
    sm_sha256_to_hex(dg, hex);
    return 1;
}

static int mkdirs(const char *path)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            mkdir(tmp, 0755);
            *p = '/';
        }
    return mkdir(tmp, 0755) == 0 || errno == EEXIST ? 0 : -1;
}

static int download(CURL *c, const fx_opts *o, const char *url, const char *dir, const char *name, uint64_t size,
                    const char *sha_expected, struct curl_slist *hdrs, fx_summary *sum, int *verified, sm_err *err)
{
    char final[4200], part[4300];
    snprintf(final, sizeof final, "%s/%s", dir, name);
    snprintf(part, sizeof part, "%s/.%s.part", dir, name);
    uint32_t delay = o->backoff_ms;
    int rc = SM_OK;
    for (uint32_t attempt = 1;; attempt++) {
        sm_sha256 sha;
        sm_sha256_init(&sha);
        dl_state d = {0};
        d.sha = &sha;
        d.o = o;
        d.name = name;
        d.total = size;
        hash_existing(part, &sha, &d.done);
        if (size && d.done > size) { /* stale partial file: start over */
            unlink(part);
            sm_sha256_init(&sha);
            d.done = 0;
        }
        uint64_t start = d.done;
        d.fp = fopen(part, "ab");
        if (!d.fp)
            return sm_err_set(err, SM_EIO, "%s: cannot write: %s", part, strerror(errno));
        setup(c, url, hdrs);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, file_write);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &d);
        curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, header_cb);
        curl_easy_setopt(c, CURLOPT_HEADERDATA, &d);
        curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, xfer_cb);
        curl_easy_setopt(c, CURLOPT_XFERINFODATA, &d);
        curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L);
        if (start && (!size || start < size))
            curl_easy_setopt(c, CURLOPT_RESUME_FROM_LARGE, (curl_off_t)start);
        CURLcode cc = CURLE_OK;
        long status = 200;
        if (!size || start < size) {
            cc = curl_easy_perform(c);
            curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        }
        if (fclose(d.fp) != 0 && cc == CURLE_OK)
            return sm_err_set(err, SM_EIO, "%s: write failed: %s", part, strerror(errno));
        sum->bytes += d.done - start;
        if (cc == CURLE_OK) {
            if (size && d.done != size) {
                unlink(part);
                return sm_err_set(err, SM_EMISMATCH, "%s: %llu bytes received, the server stated %llu", name,
                                  (unsigned long long)d.done, (unsigned long long)size);
            }
            uint8_t dg[32];
            char hex[65];
            sm_sha256_final(&sha, dg);
            sm_sha256_to_hex(dg, hex);
            const char *want = sha_expected && *sha_expected ? sha_expected : d.etag[0] ? d.etag : NULL;
            if (want) {
                if (strcasecmp(want, hex) != 0) {
                    unlink(part);
                    return sm_err_set(err, SM_EMISMATCH, "%s: sha256 %s does not match the server's %s; file removed",
                                      name, hex, want);
                }
                *verified = 1;
            }
            if (rename(part, final) != 0) {
                rc = sm_err_set(err, SM_EIO, "%s: cannot rename into place: %s", final, strerror(errno));
                unlink(part);
            }
            return rc;
        }
        if (cc == CURLE_RANGE_ERROR || (cc == CURLE_HTTP_RETURNED_ERROR && status == 416)) {
            /* the server cannot resume (or our partial file is longer than
             * its file): restart from byte 0 */
            unlink(part);
            if (attempt < o->max_tries)
                continue;
        }
        int retry = cc == CURLE_HTTP_RETURNED_ERROR ? (status >= 500 || status == 429 || status == 408)
                                                    : transient(cc, 0);
        if (!retry) {
            unlink(part);
            if (cc == CURLE_HTTP_RETURNED_ERROR)
                return sm_err_set(err, SM_EIO, "%s: HTTP %ld", url, status);
            return sm_err_set(err, SM_EIO, "%s: %s", url, curl_easy_strerror(cc));
        }
        if (attempt >= o->max_tries) {
            /* keep the partial file: a later run resumes it */
            return sm_err_set(err, SM_EIO, "%s: %s after %u attempts (partial file kept for resuming)", url,
                              cc == CURLE_HTTP_RETURNED_ERROR ? "server error" : curl_easy_strerror(cc), attempt);
        }
        logf_(o, "%s: %s at byte %llu, retrying in %u ms", name,
              cc == CURLE_HTTP_RETURNED_ERROR ? "server error" : curl_easy_strerror(cc), (unsigned long long)d.done,
              delay);
        sum->retries++;
        sleep_ms(delay);
        delay *= 2;
    }
}

/* Splits a source into endpoint and "owner/name". */
static int parse_source(const fx_opts *o, char *endpoint, size_t ecap, char *repo, size_t rcap, sm_err *err)
{
    const char *s = o->source;
    const char *scheme = strstr(s, "://");
    if (scheme) {
        const char *host = scheme + 3;
        const char *path = strchr(host, '/');
        if (!path)
            return sm_err_set(err, SM_EINVAL, "%s: URL has no /owner/name path", s);
        snprintf(endpoint, ecap, "%.*s", (int)(path - s), s);
        snprintf(repo, rcap, "%s", path + 1);
    } else {
        const char *ep = o->endpoint ? o->endpoint : getenv("HF_ENDPOINT");
        snprintf(endpoint, ecap, "%s", ep && *ep ? ep : "https://huggingface.co");
        snprintf(repo, rcap, "%s", s);
    }
    size_t n = strlen(repo);
    while (n && repo[n - 1] == '/')
        repo[--n] = 0;
    const char *slash = strchr(repo, '/');
    if (!slash || slash == repo || !slash[1] || strchr(slash + 1, '/') || strstr(repo, ".."))
        return sm_err_set(err, SM_EINVAL, "%s: expected owner/name", s);
    return SM_OK;
}

int fx_fetch(const fx_opts *oin, fx_summary *sum, sm_err *err)
{
    fx_opts o = *oin;
    if (!o.revision)
        o.revision = "main";
    if (!o.max_tries)
        o.max_tries = 5;
    if (!o.backoff_ms)
        o.backoff_ms = 500;
    memset(sum, 0, sizeof *sum);
    char endpoint[2048], repo[1024];
    int rc = parse_source(&o, endpoint, sizeof endpoint, repo, sizeof repo, err);
    if (rc)
        return rc;
    const char *outdir = o.outdir ? o.outdir : strchr(repo, '/') + 1;
    snprintf(sum->outdir, sizeof sum->outdir, "%s", outdir);
    if (mkdirs(outdir) != 0)
        return sm_err_set(err, SM_EIO, "%s: cannot create directory: %s", outdir, strerror(errno));
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
        return sm_err_set(err, SM_EIO, "libcurl initialisation failed");
    CURL *c = curl_easy_init();
    struct curl_slist *hdrs = auth_headers(&o);
    json_t *listing = NULL;
    if (!c) {
        rc = sm_err_set(err, SM_ENOMEM, "libcurl: cannot create a handle");
        goto done;
    }
    if ((rc = get_listing(c, &o, endpoint, repo, o.revision, hdrs, &listing, sum, err)))
        goto done;
    json_t *sib = json_object_get(listing, "siblings");
    size_t i;
    json_t *f;
    json_array_foreach(sib, i, f) {
        const char *name = json_string_value(json_object_get(f, "rfilename"));
        if (!name)
            continue;
        if (!o.all_files && !fx_wanted_file(name))
            continue;
        if (name[0] == '/' || strstr(name, "..")) {
            rc = sm_err_set(err, SM_EFORMAT, "file list names an unsafe path '%s'", name);
            goto done;
        }
        json_t *lfs = json_object_get(f, "lfs");
        const char *sha = json_string_value(json_object_get(lfs, "sha256"));
        json_t *sz = json_object_get(lfs, "size");
        if (!json_is_integer(sz))
            sz = json_object_get(f, "size");
        uint64_t size = json_is_integer(sz) && json_integer_value(sz) > 0 ? (uint64_t)json_integer_value(sz) : 0;
        char final[4200];
        snprintf(final, sizeof final, "%s/%s", outdir, name);
        if (strchr(name, '/')) {
            char sub[4200];
            snprintf(sub, sizeof sub, "%s", final);
            *strrchr(sub, '/') = 0;
            mkdirs(sub);
        }
        struct stat st;
        if (stat(final, &st) == 0 && (!size || (uint64_t)st.st_size == size)) {
            char hex[65];
            if (!sha || (file_sha256(final, hex) && strcasecmp(hex, sha) == 0)) {
                logf_(&o, "%s: present%s, skipped", name, sha ? " and verified" : "");
                sum->n_files++;
                sum->n_verified += sha != NULL;
                continue;
            }
        }
        char url[8192];
        snprintf(url, sizeof url, "%s/%s/resolve/%s/%s", endpoint, repo, o.revision, name);
        int verified = 0;
        if ((rc = download(c, &o, url, outdir, name, size, sha, hdrs, sum, &verified, err)))
            goto done;
        sum->n_files++;
        sum->n_downloaded++;
        sum->n_verified += verified;
    }
    if (sum->n_files == 0)
        rc = sm_err_set(err, SM_EMISSING, "%s/%s: no model files in revision %s", endpoint, repo, o.revision);
done:
    json_decref(listing);
    curl_slist_free_all(hdrs);
    if (c)
        curl_easy_cleanup(c);
    curl_global_cleanup();
    return rc;
}
