/* test_faults_io.c — the tools under disk-full, read errors, SIGINT/SIGTERM
 * in the middle of writing, and outputs that exist or equal an input.
 *
 * The tool binaries come from $SMELT_BIN. Each runs as a child process:
 *   disk full   RLIMIT_FSIZE in the child with SIGXFSZ ignored, so every
 *               write past the limit fails with EFBIG, like ENOSPC would
 *               (no tmpfs mount or LD_PRELOAD needed);
 *   read error  an input that cannot be read (a directory where config.json
 *               should be, a GGUF cut short);
 *   signals     the test waits until the tool's temp output appears, stops
 *               it (SIGSTOP) so it cannot finish meanwhile, queues SIGINT or
 *               SIGTERM and continues it.
 * Invariant checked every time: the destination keeps its old bytes or does
 * not exist (never a partial file), no temp file or directory is left, and
 * the exit status says what happened (non-zero exit with one "prog: ..."
 * line, or death by the very signal that was sent). */
#include "support.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_ARGS 24
#define PATH_CAP 4096

/* dst = a "/" b (or a + suffix when b starts with '.'); PATH_CAP bytes. */
static __attribute__((noinline)) void pjoin(char *dst, const char *a, const char *b)
{
    int n = snprintf(dst, PATH_CAP, b[0] == '.' ? "%s%s" : "%s/%s", a, b);
    cr_assert(n > 0 && n < PATH_CAP, "path too long: %s/%s", a, b);
}

/* Starts tool (a name under $SMELT_BIN) with args (NULL-terminated list),
 * stdout+stderr to log_path. fsize_limit > 0 sets RLIMIT_FSIZE and ignores
 * SIGXFSZ in the child. Returns the pid. */
static pid_t spawn_tool(const char *tool, const char *const *args, const char *log_path, long fsize_limit)
{
    char exe[1024];
    snprintf(exe, sizeof exe, "%s/%s", ts_bin(), tool);
    cr_assert_eq(access(exe, X_OK), 0, "%s not found (set SMELT_BIN)", exe);
    char *argv[MAX_ARGS];
    int n = 0;
    argv[n++] = exe;
    for (int i = 0; args[i]; i++) {
        cr_assert_lt(n, MAX_ARGS - 1);
        argv[n++] = (char *)args[i];
    }
    argv[n] = NULL;
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        if (fsize_limit > 0) {
            struct rlimit rl = {(rlim_t)fsize_limit, (rlim_t)fsize_limit};
            signal(SIGXFSZ, SIG_IGN); /* kept across exec: writes fail with EFBIG */
            setrlimit(RLIMIT_FSIZE, &rl);
        }
        execv(exe, argv);
        _exit(127);
    }
    return pid;
}

static int wait_status(pid_t pid)
{
    int st;
    while (waitpid(pid, &st, 0) < 0)
        cr_assert_eq(errno, EINTR);
    return st;
}

/* Runs a tool to completion; returns the wait status. */
static int run_tool(const char *tool, const char *const *args, const char *log_path, long fsize_limit)
{
    return wait_status(spawn_tool(tool, args, log_path, fsize_limit));
}

/* Entries of dir whose name contains needle (NULL: all), excluding the
 * file named except. */
static int count_matching(const char *dir, const char *needle, const char *except)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        if (except && !strcmp(e->d_name, except))
            continue;
        if (!needle || strstr(e->d_name, needle))
            n++;
    }
    closedir(d);
    return n;
}

/* Lists dir into buf for failure messages. */
static const char *list_dir(const char *dir)
{
    static char buf[2048];
    buf[0] = 0;
    DIR *d = opendir(dir);
    if (!d)
        return "(no dir)";
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && strlen(buf) + strlen(e->d_name) + 2 < sizeof buf) {
            strcat(buf, e->d_name);
            strcat(buf, " ");
        }
    closedir(d);
    return buf;
}

/* The log has a "prog: ..." line mentioning what (the error line; tools may
 * also print "prog: quantizing ..." progress lines, so at least one). */
static void check_one_error_line(const char *log_path, const char *prog, const char *what)
{
    size_t len = 0;
    char *log = (char *)ts_read(log_path, &len);
    cr_assert_not_null(log);
    log = realloc(log, len + 1);
    cr_assert_not_null(log);
    log[len] = 0;
    char pfx[64];
    snprintf(pfx, sizeof pfx, "%s:", prog);
    int lines = 0;
    for (char *l = log; l && *l;) {
        char *nl = strchr(l, '\n');
        const char *hit = strstr(l, what);
        if (!strncmp(l, pfx, strlen(pfx)) && hit && (!nl || hit < nl))
            lines++;
        l = nl ? nl + 1 : NULL;
    }
    cr_assert_geq(lines, 1, "%s: no '%s ... %s' error line in:\n%s", prog, pfx, what, log);
    free(log);
}

static void write_marker(const char *path)
{
    cr_assert_eq(ts_write(path, "OLD CONTENT\n", 12), 0);
}

static void check_marker(const char *path)
{
    size_t len = 0;
    uint8_t *b = ts_read(path, &len);
    cr_assert_not_null(b, "%s vanished", path);
    cr_assert(len == 12 && !memcmp(b, "OLD CONTENT\n", 12), "%s was changed (%zu bytes)", path, len);
    free(b);
}

/* ------------------------------------------------------------ disk full */

typedef struct tool_case {
    const char *tool;          /* smelt-convert, ... */
    const char *args[MAX_ARGS];/* "@OUT" is replaced by the output path */
    const char *out_name;      /* output name inside the temp dir */
} tool_case;

static void expand_args(const tool_case *tc, const char *out, const char **args)
{
    int i = 0;
    for (; tc->args[i]; i++)
        args[i] = strcmp(tc->args[i], "@OUT") == 0 ? out : tc->args[i];
    args[i] = NULL;
}

static tool_case convert_case(void)
{
    tool_case c = {"smelt-convert", {NULL}, "out.gguf"};
    const char *a[] = {ts_path("models/stories260K"), "--outfile", "@OUT", "--outtype", "f32", "--force", "--quiet",
                       NULL};
    memcpy(c.args, a, sizeof a);
    return c;
}

static tool_case quantize_case(void)
{
    tool_case c = {"smelt-quantize", {NULL}, "out.gguf"};
    const char *a[] = {"--force", ts_path("reference/tinystories-3m/convert-f32.gguf"), "@OUT", "Q8_0", "1", NULL};
    memcpy(c.args, a, sizeof a);
    return c;
}

static tool_case merge_gguf_case(void)
{
    tool_case c = {"smelt-merge", {NULL}, "out.gguf"};
    const char *a[] = {"--base", ts_path("reference/tinystories-3m/convert-f32.gguf"), "--lora",
                       ts_path("lora/tinystories-3m-domain"), "-o", "@OUT", "--quiet", NULL};
    memcpy(c.args, a, sizeof a);
    return c;
}

static tool_case merge_hf_case(void)
{
    tool_case c = {"smelt-merge", {NULL}, "merged"};
    const char *a[] = {"--base", ts_path("models/tinystories-3m"), "--lora", ts_path("lora/tinystories-3m-domain"),
                       "-o", "@OUT", "--quiet", NULL};
    memcpy(c.args, a, sizeof a);
    return c;
}

/* Disk full: fresh destination and existing destination (--force). */
static void disk_full(tool_case tc, int preexisting)
{
    char *dir = ts_tmpdir();
    char out[PATH_CAP], log[1300], logdir[1200];
    pjoin(logdir, dir, ".log");
    mkdir(logdir, 0755);
    pjoin(out, dir, tc.out_name);
    pjoin(log, logdir, "log.txt");
    if (preexisting) {
        if (!strcmp(tc.out_name, "merged")) {
            mkdir(out, 0755);
            char m[PATH_CAP];
            pjoin(m, out, "marker");
            write_marker(m);
        } else {
            write_marker(out);
        }
    }
    const char *args[MAX_ARGS];
    expand_args(&tc, out, args);
    if (preexisting && strcmp(tc.tool, "smelt-quantize") != 0) {
        /* quantize's case already passes --force; the others need it */
        int i = 0;
        while (args[i])
            i++;
        args[i++] = "--force";
        args[i] = NULL;
    }
    int st = run_tool(tc.tool, args, log, 256 * 1024);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) != 0, "%s under a 256 KiB file size limit: status %#x", tc.tool, st);
    check_one_error_line(log, tc.tool, dir);
    if (preexisting) {
        if (!strcmp(tc.out_name, "merged")) {
            char m[PATH_CAP];
            pjoin(m, out, "marker");
            check_marker(m);
            cr_assert_eq(count_matching(out, NULL, "marker"), 0, "partial files in %s: %s", out, list_dir(out));
            cr_assert_eq(count_matching(dir, NULL, tc.out_name), 0, "left behind: %s", list_dir(dir));
        } else {
            check_marker(out);
            cr_assert_eq(count_matching(dir, NULL, tc.out_name), 0, "left behind: %s", list_dir(dir));
        }
    } else {
        cr_assert_eq(count_matching(dir, NULL, NULL), 0, "left behind: %s", list_dir(dir));
    }
    ts_rmtree(dir);
    ts_rmtree(logdir);
    free(dir);
}

Test(faults_io, disk_full_convert)
{
    disk_full(convert_case(), 0);
    disk_full(convert_case(), 1);
}

Test(faults_io, disk_full_quantize)
{
    disk_full(quantize_case(), 0);
    disk_full(quantize_case(), 1);
}

Test(faults_io, disk_full_merge)
{
    disk_full(merge_gguf_case(), 0);
    disk_full(merge_gguf_case(), 1);
    disk_full(merge_hf_case(), 0);
    disk_full(merge_hf_case(), 1);
}

/* A real ENOSPC: a 512 KiB tmpfs as the output directory (needs root, as in
 * the CI container; elsewhere the RLIMIT_FSIZE cases above stand in and
 * this case runs the same checks under that limit instead). */
Test(faults_io, disk_full_enospc_tmpfs)
{
    char *dir = ts_tmpdir();
    char out[PATH_CAP], log[PATH_CAP], logdir[PATH_CAP];
    pjoin(logdir, dir, ".log");
    mkdir(logdir, 0755);
    int mounted = mount("tmpfs", dir, "tmpfs", 0, "size=512k") == 0;
    long limit = mounted ? 0 : 256 * 1024;
    if (!mounted)
        cr_log_warn("mount tmpfs: %s; using RLIMIT_FSIZE instead", strerror(errno));
    pjoin(out, dir, "out.gguf");
    pjoin(log, logdir, "log.txt");
    for (int pre = 0; pre < 2; pre++) {
        if (pre)
            write_marker(out);
        const char *ca[] = {ts_path("models/stories260K"), "--outfile", out, "--outtype", "f32", "--force",
                            "--quiet", NULL};
        int st = run_tool("smelt-convert", ca, log, limit);
        cr_assert(WIFEXITED(st) && WEXITSTATUS(st) != 0, "convert on a full disk: status %#x", st);
        check_one_error_line(log, "smelt-convert", mounted ? "No space left" : dir);
        if (pre)
            check_marker(out);
        cr_assert_eq(count_matching(dir, NULL, pre ? "out.gguf" : NULL), 0, "left behind: %s", list_dir(dir));
        const char *qa[] = {"--force", ts_path("reference/tinystories-3m/convert-f32.gguf"), out, "Q8_0", "1", NULL};
        st = run_tool("smelt-quantize", qa, log, limit);
        cr_assert(WIFEXITED(st) && WEXITSTATUS(st) != 0, "quantize on a full disk: status %#x", st);
        check_one_error_line(log, "smelt-quantize", mounted ? "No space left" : dir);
        if (pre)
            check_marker(out);
        cr_assert_eq(count_matching(dir, NULL, pre ? "out.gguf" : NULL), 0, "left behind: %s", list_dir(dir));
    }
    if (mounted)
        cr_assert_eq(umount2(dir, MNT_DETACH), 0, "umount %s: %s", dir, strerror(errno));
    ts_rmtree(dir);
    ts_rmtree(logdir);
    free(dir);
}

/* ------------------------------------------------------------ read errors */

Test(faults_io, read_error_config_is_a_directory)
{
    char *dir = ts_tmpdir();
    char model[PATH_CAP], p[PATH_CAP], out[PATH_CAP], log[PATH_CAP], src[PATH_CAP], full[PATH_CAP];
    pjoin(model, dir, "model");
    mkdir(model, 0755);
    const char *files[] = {"model.safetensors", "tokenizer.model", "tokenizer_config.json"};
    if (ts_shared()[0] == '/') {
        snprintf(src, PATH_CAP, "%s", ts_path("models/stories260K"));
    } else {
        char cwd[1024];
        cr_assert_not_null(getcwd(cwd, sizeof cwd));
        pjoin(src, cwd, ts_path("models/stories260K"));
    }
    for (int i = 0; i < 3; i++) {
        pjoin(p, model, files[i]);
        pjoin(full, src, files[i]);
        cr_assert_eq(symlink(full, p), 0);
    }
    pjoin(p, model, "config.json");
    mkdir(p, 0755); /* read() gives EISDIR */
    pjoin(out, dir, "out.gguf");
    pjoin(log, dir, "log.txt");
    const char *args[] = {model, "--outfile", out, "--quiet", NULL};
    int st = run_tool("smelt-convert", args, log, 0);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) != 0, "status %#x", st);
    check_one_error_line(log, "smelt-convert", "config.json");
    cr_assert_not(ts_exists(out));
    cr_assert_eq(count_matching(dir, ".tmp", NULL), 0, "left behind: %s", list_dir(dir));
    ts_rmtree(dir);
    free(dir);
}

Test(faults_io, read_error_truncated_gguf)
{
    char *dir = ts_tmpdir();
    char in[PATH_CAP], out[1100], log[1100];
    pjoin(in, dir, "in.gguf");
    pjoin(out, dir, "out.gguf");
    pjoin(log, dir, "log.txt");
    size_t len = 0;
    uint8_t *b = ts_read(ts_path("reference/stories260K/convert-f16.gguf"), &len);
    cr_assert_not_null(b);
    cr_assert_eq(ts_write(in, b, len / 2), 0); /* tensor data cut in the middle */
    free(b);
    const char *qa[] = {in, out, "Q4_K_M", NULL};
    int st = run_tool("smelt-quantize", qa, log, 0);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) != 0, "quantize status %#x", st);
    check_one_error_line(log, "smelt-quantize", "in.gguf");
    cr_assert_not(ts_exists(out));
    const char *ma[] = {"--base", in, "--lora", ts_path("lora/tinystories-3m-domain"), "-o", out, "--quiet", NULL};
    st = run_tool("smelt-merge", ma, log, 0);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) != 0, "merge status %#x", st);
    check_one_error_line(log, "smelt-merge", "in.gguf");
    cr_assert_not(ts_exists(out));
    cr_assert_eq(count_matching(dir, ".tmp", NULL), 0, "left behind: %s", list_dir(dir));
    ts_rmtree(dir);
    free(dir);
}

static void sleep_us(long us);

/* ------------------------------------------------------------ input shrinks */

/* Runs tool with args (outputs in dir) and, once a temp file shows up in
 * dir, cuts victim to 4 KiB while the tool is stopped: the next access to
 * the lost pages raises SIGBUS. The tool must still exit with an error (or
 * die of SIGBUS) and leave nothing in dir but keep (its inputs). Returns 1
 * when the truncation happened mid-run, 0 when the tool had read
 * everything before the cut (no test). Cleans dir and logdir up. */
static int shrink_during_run(const char *tool, const char *const *args, char *dir, const char *logdir,
                             const char *victim, const char *keep)
{
    char log[PATH_CAP];
    pjoin(log, logdir, "log.txt");
    pid_t pid = spawn_tool(tool, args, log, 0);
    int caught = 0, st = 0, exited = 0;
    for (int i = 0; i < 200000 && !exited; i++) {
        if (count_matching(dir, ".tmp", NULL) > 0) {
            kill(pid, SIGSTOP);
            if (count_matching(dir, ".tmp", NULL) > 0) {
                caught = 1;
                cr_assert_eq(truncate(victim, 4096), 0);
                kill(pid, SIGCONT);
                break;
            }
            kill(pid, SIGCONT);
        }
        if (waitpid(pid, &st, WNOHANG) == pid)
            exited = 1;
        else
            sleep_us(100);
    }
    if (!exited)
        st = wait_status(pid);
    if (caught && !(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
        cr_assert(WIFSIGNALED(st) ? WTERMSIG(st) == SIGBUS : WEXITSTATUS(st) != 0, "%s: status %#x", tool, st);
        cr_assert_eq(count_matching(dir, NULL, keep), 0, "%s: left behind after %s shrank: %s", tool, keep,
                     list_dir(dir));
    } else {
        caught = 0;
    }
    ts_rmtree(dir);
    ts_rmtree(logdir);
    free(dir);
    return caught;
}

/* A GGUF input of quantize or merge cut while mapped. */
static int shrink_once(const char *tool, int is_quantize)
{
    char *dir = ts_tmpdir();
    char in[PATH_CAP], out[PATH_CAP], logdir[PATH_CAP];
    pjoin(logdir, dir, ".log");
    mkdir(logdir, 0755);
    pjoin(in, dir, "in.gguf");
    pjoin(out, dir, "out.gguf");
    size_t len = 0;
    uint8_t *b = ts_read(ts_path("reference/tinystories-3m/convert-f32.gguf"), &len);
    cr_assert_not_null(b);
    cr_assert_eq(ts_write(in, b, len), 0);
    free(b);
    const char *qa[] = {in, out, "Q8_0", "1", NULL};
    const char *ma[] = {"--base", in, "--lora", ts_path("lora/tinystories-3m-domain"), "-o", out, "--quiet", NULL};
    return shrink_during_run(tool, is_quantize ? qa : ma, dir, logdir, in, "in.gguf");
}

Test(faults_io, input_truncated_while_mapped)
{
    int caught = 0;
    for (int attempt = 0; attempt < 8 && !caught; attempt++)
        caught = shrink_once("smelt-quantize", 1);
    cr_assert(caught, "quantize never ran into the truncated input");
    caught = 0;
    for (int attempt = 0; attempt < 8 && !caught; attempt++)
        caught = shrink_once("smelt-merge", 0);
    cr_assert(caught, "merge never ran into the truncated input");
}

/* The same for an HF merge: the base checkpoint's shard is cut while mapped.
 * Besides fileio's temp file, merge's own SIGBUS handling must remove the
 * temporary output directory (out.tmp-XXXXXX) and the files committed in it. */
static int shrink_hf_once(void)
{
    char *dir = ts_tmpdir();
    char base[PATH_CAP], shard[PATH_CAP], out[PATH_CAP], logdir[PATH_CAP], cmd[3 * PATH_CAP];
    pjoin(logdir, dir, ".log");
    mkdir(logdir, 0755);
    pjoin(base, dir, "base");
    pjoin(out, dir, "out");
    pjoin(shard, base, "model.safetensors");
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' && cp %s/models/tinystories-3m/* '%s/'", base, ts_shared(), base);
    cr_assert_eq(system(cmd), 0);
    const char *ma[] = {"--base", base, "--lora", ts_path("lora/tinystories-3m-domain"), "-o", out, "--quiet", NULL};
    return shrink_during_run("smelt-merge", ma, dir, logdir, shard, "base");
}

Test(faults_io, hf_base_truncated_while_mapped)
{
    int caught = 0;
    for (int attempt = 0; attempt < 8 && !caught; attempt++)
        caught = shrink_hf_once();
    cr_assert(caught, "the HF merge never ran into the truncated base");
}

/* ------------------------------------------------------------ signals */

static void sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

/* Interrupts tc with sig once its temp output exists. Returns 1 when the
 * signal landed mid-write (checked), 0 when the tool finished first. */
static int interrupt_once(tool_case tc, int sig, int preexisting)
{
    char *dir = ts_tmpdir();
    char out[PATH_CAP], log[1300], logdir[1200];
    pjoin(logdir, dir, ".log");
    mkdir(logdir, 0755);
    pjoin(out, dir, tc.out_name);
    pjoin(log, logdir, "log.txt");
    int is_dir = !strcmp(tc.out_name, "merged");
    char marker[PATH_CAP];
    if (is_dir)
        pjoin(marker, out, "marker");
    else
        snprintf(marker, PATH_CAP, "%s", out);
    if (preexisting) {
        if (is_dir)
            mkdir(out, 0755);
        write_marker(marker);
    }
    const char *args[MAX_ARGS];
    expand_args(&tc, out, args);
    if (preexisting && strcmp(tc.tool, "smelt-quantize") != 0) {
        int i = 0;
        while (args[i])
            i++;
        args[i++] = "--force";
        args[i] = NULL;
    }
    pid_t pid = spawn_tool(tc.tool, args, log, 0);
    int caught = 0, st = 0, exited = 0;
    for (int i = 0; i < 200000 && !exited; i++) {
        if (count_matching(dir, ".tmp", NULL) > 0) {
            kill(pid, SIGSTOP);
            /* still writing? (it may have renamed between our look and the stop) */
            if (count_matching(dir, ".tmp", NULL) > 0) {
                caught = 1;
                kill(pid, sig);
                kill(pid, SIGCONT);
                break;
            }
            kill(pid, SIGCONT);
        }
        if (waitpid(pid, &st, WNOHANG) == pid)
            exited = 1;
        else
            sleep_us(100);
    }
    if (!exited)
        st = wait_status(pid);
    if (caught) {
        cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == sig,
                  "%s: after signal %d the status is %#x (expected death by that signal)", tc.tool, sig, st);
        if (preexisting) {
            check_marker(marker);
            if (is_dir)
                cr_assert_eq(count_matching(out, NULL, "marker"), 0, "partial files in %s: %s", out, list_dir(out));
            cr_assert_eq(count_matching(dir, NULL, tc.out_name), 0, "left behind: %s", list_dir(dir));
        } else {
            char *lg = (char *)ts_read(log, NULL);
            cr_assert_eq(count_matching(dir, NULL, NULL), 0, "left behind after signal %d: %s; the tool said:\n%s", sig,
                         list_dir(dir), lg ? lg : "");
            free(lg);
        }
    } else {
        cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s failed on its own: status %#x", tc.tool, st);
    }
    ts_rmtree(dir);
    ts_rmtree(logdir);
    free(dir);
    return caught;
}

static void interrupt(tool_case tc, int sig, int preexisting)
{
    int caught = 0;
    for (int attempt = 0; attempt < 8 && !caught; attempt++)
        caught = interrupt_once(tc, sig, preexisting);
    cr_assert(caught, "%s finished before its temp output could be seen 8 times in a row", tc.tool);
}

Test(faults_io, interrupted_convert_leaves_nothing)
{
    interrupt(convert_case(), SIGINT, 0);
    interrupt(convert_case(), SIGTERM, 1);
}

Test(faults_io, interrupted_quantize_leaves_nothing)
{
    interrupt(quantize_case(), SIGINT, 0);
    interrupt(quantize_case(), SIGTERM, 1);
}

Test(faults_io, interrupted_merge_leaves_nothing)
{
    interrupt(merge_gguf_case(), SIGINT, 0);
    interrupt(merge_gguf_case(), SIGTERM, 1);
    interrupt(merge_hf_case(), SIGINT, 0);
    interrupt(merge_hf_case(), SIGTERM, 1);
}

/* ------------------------------------------------------------ outputs that exist */

/* Copies a shared file into dir/name (writable); returns the path in buf. */
static void copy_shared(const char *rel, const char *dir, const char *name, char *buf)
{
    size_t len = 0;
    uint8_t *b = ts_read(ts_path(rel), &len);
    cr_assert_not_null(b, "%s", rel);
    pjoin(buf, dir, name);
    cr_assert_eq(ts_write(buf, b, len), 0);
    free(b);
}

/* Runs a tool that must refuse; checks the message and that path kept its bytes. */
static void refused(const char *tool, const char *const *args, const char *log, const char *needle,
                    const char *path, const uint8_t *old, size_t old_len)
{
    int st = run_tool(tool, args, log, 0);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) != 0, "%s did not refuse (status %#x)", tool, st);
    check_one_error_line(log, tool, needle);
    size_t len = 0;
    uint8_t *now = ts_read(path, &len);
    cr_assert_not_null(now);
    cr_assert(len == old_len && !memcmp(now, old, len), "%s: %s changed although refused", tool, path);
    free(now);
}

Test(faults_io, existing_output_refused_without_force)
{
    char *dir = ts_tmpdir();
    char out[PATH_CAP], log[PATH_CAP], hf[PATH_CAP], m[PATH_CAP];
    pjoin(out, dir, "out.gguf");
    pjoin(log, dir, "log.txt");
    write_marker(out);
    const uint8_t *old = (const uint8_t *)"OLD CONTENT\n";
    const char *ca[] = {ts_path("models/stories260K"), "--outfile", out, "--quiet", NULL};
    refused("smelt-convert", ca, log, "--force", out, old, 12);
    const char *qa[] = {ts_path("reference/stories260K/convert-f16.gguf"), out, "Q4_K_M", NULL};
    refused("smelt-quantize", qa, log, "--force", out, old, 12);
    const char *ma[] = {"--base", ts_path("reference/tinystories-3m/convert-f32.gguf"), "--lora",
                        ts_path("lora/tinystories-3m-domain"), "-o", out, "--quiet", NULL};
    refused("smelt-merge", ma, log, "--force", out, old, 12);
    /* an HF output directory that is not empty */
    pjoin(hf, dir, "merged");
    mkdir(hf, 0755);
    pjoin(m, hf, "marker");
    write_marker(m);
    const char *ha[] = {"--base", ts_path("models/tinystories-3m"), "--lora", ts_path("lora/tinystories-3m-domain"),
                        "-o", hf, "--quiet", NULL};
    refused("smelt-merge", ha, log, "--force", m, old, 12);
    cr_assert_eq(count_matching(hf, NULL, "marker"), 0, "%s", list_dir(hf));
    cr_assert_eq(count_matching(dir, ".tmp", NULL), 0, "left behind: %s", list_dir(dir));
    ts_rmtree(dir);
    free(dir);
}

Test(faults_io, output_equal_to_input)
{
    char *dir = ts_tmpdir();
    char log[PATH_CAP], in[PATH_CAP], model[PATH_CAP], st_path[PATH_CAP];
    pjoin(log, dir, "log.txt");
    size_t len = 0;

    /* convert: writing over the checkpoint is refused even with --force */
    pjoin(model, dir, "model");
    mkdir(model, 0755);
    const char *files[] = {"config.json", "model.safetensors", "tokenizer.model", "tokenizer_config.json"};
    for (int i = 0; i < 4; i++) {
        char rel[256], p[PATH_CAP];
        snprintf(rel, sizeof rel, "models/stories260K/%s", files[i]);
        copy_shared(rel, model, files[i], p);
    }
    pjoin(st_path, model, "model.safetensors");
    uint8_t *st_old = ts_read(st_path, &len);
    const char *ca[] = {model, "--outfile", st_path, "--force", "--quiet", NULL};
    refused("smelt-convert", ca, log, "input", st_path, st_old, len);
    free(st_old);

    /* quantize: refused without --force; with it, written aside and renamed,
     * so a reader holding the input open still sees the old bytes */
    copy_shared("reference/stories260K/convert-f16.gguf", dir, "in.gguf", in);
    uint8_t *in_old = ts_read(in, &len);
    const char *qa[] = {in, in, "Q4_K_M", NULL};
    refused("smelt-quantize", qa, log, "--force", in, in_old, len);
    struct stat before, after;
    cr_assert_eq(stat(in, &before), 0);
    int fd = open(in, O_RDONLY);
    cr_assert_geq(fd, 0);
    const char *qf[] = {"--force", in, in, "Q4_K_M", NULL};
    int st = run_tool("smelt-quantize", qf, log, 0);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "quantize --force IN IN: status %#x", st);
    cr_assert_eq(stat(in, &after), 0);
    cr_assert_neq(before.st_ino, after.st_ino, "the input was rewritten in place, not replaced by rename");
    cr_assert_lt(after.st_size, before.st_size, "Q4_K_M output should be smaller than F16");
    uint8_t *via_fd = malloc(len);
    cr_assert_eq(pread(fd, via_fd, len, 0), (ssize_t)len);
    cr_assert_eq(memcmp(via_fd, in_old, len), 0, "an open reader of the input saw its bytes change");
    free(via_fd);
    close(fd);
    free(in_old);

    /* merge: the base as output is refused even with --force */
    char base[PATH_CAP];
    copy_shared("reference/tinystories-3m/convert-f32.gguf", dir, "base.gguf", base);
    uint8_t *base_old = ts_read(base, &len);
    const char *ma[] = {"--base", base, "--lora", ts_path("lora/tinystories-3m-domain"), "-o", base, "--force",
                        "--quiet", NULL};
    refused("smelt-merge", ma, log, "base", base, base_old, len);
    free(base_old);
    cr_assert_eq(count_matching(dir, ".tmp", NULL), 0, "left behind: %s", list_dir(dir));
    ts_rmtree(dir);
    free(dir);
}
