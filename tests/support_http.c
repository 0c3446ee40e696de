#include "support_http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static void send_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t k = send(fd, c, n, MSG_NOSIGNAL);
        if (k <= 0)
            return;
        c += k;
        n -= (size_t)k;
    }
}

static void serve(int lfd, const th_route *routes, int n, const char *log_path)
{
    int *hits = calloc((size_t)n + 1, sizeof *hits);
    for (;;) {
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0)
            continue;
        char req[8192];
        size_t got = 0;
        while (got < sizeof req - 1) {
            ssize_t k = recv(fd, req + got, sizeof req - 1 - got, 0);
            if (k <= 0)
                break;
            got += (size_t)k;
            req[got] = 0;
            if (strstr(req, "\r\n\r\n"))
                break;
        }
        req[got] = 0;
        char method[16] = "", path[4096] = "";
        sscanf(req, "%15s %4095s", method, path);
        char *q = strchr(path, '?');
        if (q)
            *q = 0;
        long long range = -1;
        const char *r = strcasestr(req, "\r\nRange: bytes=");
        if (r)
            range = atoll(r + 15);
        FILE *lf = fopen(log_path, "a");
        if (lf) {
            fprintf(lf, "%s %s range=%lld\n", method, path, range);
            fclose(lf);
        }
        int i;
        for (i = 0; i < n; i++)
            if (strcmp(routes[i].path, path) == 0)
                break;
        char hdr[1024];
        if (i == n || routes[i].status == 404) {
            const char *b = "not found";
            int hl = snprintf(hdr, sizeof hdr, "HTTP/1.1 404 Not Found\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n", strlen(b));
            send_all(fd, hdr, (size_t)hl);
            send_all(fd, b, strlen(b));
            close(fd);
            continue;
        }
        const th_route *rt = &routes[i];
        int hit = hits[i]++;
        if (hit < rt->fail_first || (rt->status && rt->status != 200)) {
            int st = rt->status && rt->status != 200 ? rt->status : 500;
            int hl = snprintf(hdr, sizeof hdr, "HTTP/1.1 %d Error\r\nContent-Length: 5\r\nConnection: close\r\n\r\nerror", st);
            send_all(fd, hdr, (size_t)hl);
            close(fd);
            continue;
        }
        size_t start = 0;
        int partial = 0;
        if (range >= 0 && !rt->no_range) {
            if ((size_t)range >= rt->len && rt->len) {
                int hl = snprintf(hdr, sizeof hdr, "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                send_all(fd, hdr, (size_t)hl);
                close(fd);
                continue;
            }
            start = (size_t)range;
            partial = 1;
        }
        size_t body = rt->len - start;
        int hl;
        if (partial)
            hl = snprintf(hdr, sizeof hdr,
                          "HTTP/1.1 206 Partial Content\r\nContent-Length: %zu\r\nContent-Range: bytes %zu-%zu/%zu\r\n%s%s%sConnection: close\r\n\r\n",
                          body, start, rt->len - 1, rt->len, rt->etag ? "X-Linked-Etag: \"" : "", rt->etag ? rt->etag : "",
                          rt->etag ? "\"\r\n" : "");
        else
            hl = snprintf(hdr, sizeof hdr, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n%s%s%sConnection: close\r\n\r\n", body,
                          rt->etag ? "X-Linked-Etag: \"" : "", rt->etag ? rt->etag : "", rt->etag ? "\"\r\n" : "");
        send_all(fd, hdr, (size_t)hl);
        if (strcmp(method, "HEAD") != 0) {
            size_t n_send = body;
            if (rt->drop_after && hit == rt->fail_first && rt->drop_after < body)
                n_send = rt->drop_after;
            send_all(fd, (const char *)rt->body + start, n_send);
        }
        close(fd);
    }
}

int th_start(th_server *s, const th_route *routes, int n_routes)
{
    memset(s, 0, sizeof *s);
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    if (lfd < 0)
        return -1;
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    if (bind(lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(lfd, 16) != 0) {
        close(lfd);
        return -1;
    }
    socklen_t al = sizeof a;
    getsockname(lfd, (struct sockaddr *)&a, &al);
    s->port = ntohs(a.sin_port);
    snprintf(s->log_path, sizeof s->log_path, "/tmp/smelt-http-%d-%d.log", (int)getpid(), s->port);
    remove(s->log_path);
    pid_t pid = fork();
    if (pid < 0) {
        close(lfd);
        return -1;
    }
    if (pid == 0) {
        alarm(120); /* never outlive a hung test */
        serve(lfd, routes, n_routes, s->log_path);
        _exit(0);
    }
    close(lfd);
    s->pid = pid;
    return 0;
}

void th_stop(th_server *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
    }
    s->pid = 0;
    remove(s->log_path);
}

int th_count(const th_server *s, const char *needle)
{
    FILE *f = fopen(s->log_path, "r");
    if (!f)
        return 0;
    char line[8192];
    int n = 0;
    while (fgets(line, sizeof line, f))
        if (strstr(line, needle))
            n++;
    fclose(f);
    return n;
}
