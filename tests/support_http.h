/* support_http.h — a tiny HTTP/1.1 server on 127.0.0.1 for tests: serves an
 * in-memory route table from a forked child, with Range support and fault
 * modes (drop the connection mid-body, fail with 5xx, 404). Loopback only;
 * the child handles connections one at a time and exits when stopped. */
#ifndef SMELT_TEST_HTTP_H
#define SMELT_TEST_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct th_route {
    const char *path;        /* exact path, query string ignored */
    const void *body;
    size_t len;
    int status;              /* 0 = 200 */
    size_t drop_after;       /* 0 = never; else on the first request send this many body bytes, then close */
    int fail_first;          /* answer 500 to the first N requests */
    const char *etag;        /* sent as X-Linked-Etag when non-NULL */
    int no_range;            /* ignore Range headers */
} th_route;

typedef struct th_server {
    pid_t pid;
    int port;
    char log_path[256];      /* one line per request: "GET /path range=N" */
} th_server;

/* Starts the server; returns 0 and fills s. Routes must stay alive. */
int th_start(th_server *s, const th_route *routes, int n_routes);
void th_stop(th_server *s);
/* Number of log lines containing needle. */
int th_count(const th_server *s, const char *needle);

#endif
