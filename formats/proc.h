/* proc.h — running the other smelt tools from an orchestrating tool
 * (smelt-build, smelt-infer compare): spawn, wait, capture, measure.
 * Separate processes keep each step's peak RSS measurable and its failure
 * contained. */
#ifndef SMELT_PROC_H
#define SMELT_PROC_H

#include "err.h"

#include <stddef.h>

typedef struct sm_proc_result {
    int status;        /* exit status, or 128 + signal number */
    long maxrss_kb;    /* peak resident set of the child (getrusage via wait4) */
    double seconds;    /* wall time */
} sm_proc_result;

/* Runs argv (argv[0] is a path; NULL-terminated) and waits. stdout/stderr
 * go to the named files (truncated) or are inherited when NULL; stdin is
 * /dev/null. Returns 0 when the process ran (whatever its status, see
 * res->status), SM_EIO when it could not be started. */
int sm_proc_run(char *const argv[], const char *stdout_path, const char *stderr_path, sm_proc_result *res,
                sm_err *err);

/* Directory of the running executable (from /proc/self/exe) into buf.
 * Returns 0, or SM_EIO. */
int sm_self_dir(char *buf, size_t cap);

/* "<dir of this executable>/smelt-<tool>" into buf. */
void sm_tool_path(const char *tool, char *buf, size_t cap);

#endif
