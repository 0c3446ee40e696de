#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int sm_err_set(sm_err *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

void sm_err_prefix(sm_err *err, const char *fmt, ...)
{
    if (!err)
        return;
    char pre[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    char old[sizeof err->msg];
    memcpy(old, err->msg, sizeof old);
    size_t n = strlen(pre);
    if (n > sizeof err->msg - 3)
        n = sizeof err->msg - 3;
    memcpy(err->msg, pre, n);
    memcpy(err->msg + n, ": ", 2);
    size_t rest = sizeof err->msg - n - 2 - 1;
    size_t m = strnlen(old, rest);
    memcpy(err->msg + n + 2, old, m);
    err->msg[n + 2 + m] = 0;
}

const char *sm_code_name(int code)
{
    switch (code) {
    case SM_OK: return "ok";
    case SM_EIO: return "I/O error";
    case SM_ENOMEM: return "out of memory";
    case SM_EFORMAT: return "format error";
    case SM_ERANGE: return "out of range";
    case SM_EDUP: return "duplicate";
    case SM_ETYPE: return "bad type";
    case SM_EMISSING: return "missing";
    case SM_EUNSUPP: return "unsupported";
    case SM_EINVAL: return "invalid argument";
    case SM_EMISMATCH: return "mismatch";
    case SM_EINTR: return "interrupted";
    default: return "error";
    }
}
