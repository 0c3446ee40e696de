/* fetch.h — download a model directory from a Hugging Face–compatible hub
 * over HTTP(S) with libcurl: resume, retries with backoff, size and sha256
 * verification where the server states them. Never touches the network
 * unless called.
 *
 * A source is "owner/name" (on opts->endpoint, $HF_ENDPOINT, or
 * https://huggingface.co) or a URL "scheme://host[:port]/owner/name". The
 * file list comes from GET {endpoint}/api/models/{repo}/revision/{rev}
 * ?blobs=true (siblings[].rfilename, size, lfs.sha256); each wanted file is
 * GET {endpoint}/{repo}/resolve/{rev}/{file}. Files download to
 * "DIR/.{file}.part", resume with a Range request after a dropped
 * connection, and are renamed into place only once complete and verified;
 * a checksum mismatch deletes the partial file. */
#ifndef SMELT_FETCH_H
#define SMELT_FETCH_H

#include "err.h"

#include <stdint.h>

typedef void (*fx_progress_fn)(void *ctx, const char *file, uint64_t done, uint64_t total);

typedef struct fx_opts {
    const char *source;      /* "owner/name" or a URL */
    const char *revision;    /* default "main" */
    const char *outdir;      /* default: the repo name */
    const char *endpoint;    /* overrides $HF_ENDPOINT / huggingface.co */
    const char *token;       /* bearer token or NULL ($HF_TOKEN used when NULL) */
    uint32_t max_tries;      /* attempts per request (default 5) */
    uint32_t backoff_ms;     /* first retry delay, doubled each time (default 500) */
    int all_files;           /* fetch every file, not only model files */
    fx_progress_fn progress; /* may be NULL */
    void *progress_ctx;
    /* log line callback (retries, skips); may be NULL */
    void (*log)(void *ctx, const char *line);
} fx_opts;

typedef struct fx_summary {
    char outdir[4096];
    uint32_t n_files;        /* files now present */
    uint32_t n_downloaded;   /* of which fetched in this run */
    uint32_t n_verified;     /* checked against a server-stated sha256 */
    uint64_t bytes;          /* bytes transferred */
    uint32_t retries;
} fx_summary;

/* Downloads. Errors: SM_EINVAL (bad source), SM_EIO (network, HTTP status,
 * local file; the message names the URL and status), SM_EMISMATCH (size or
 * sha256 differs from what the server stated; the file is removed),
 * SM_EFORMAT (the file list is not the expected JSON). */
int fx_fetch(const fx_opts *opts, fx_summary *sum, sm_err *err);

/* 1 when a repo file is one smelt needs (config, tokenizer, safetensors,
 * index, adapter files, generation config, README). */
int fx_wanted_file(const char *name);

#endif
