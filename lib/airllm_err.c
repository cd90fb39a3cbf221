#include "airllm_err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int airllm_errf(airllm_err *err, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}

int airllm_err_prefix(airllm_err *err, const char *fmt, ...)
{
    if (err) {
        char prefix[AIRLLM_ERR_MSG_MAX];
        char old[AIRLLM_ERR_MSG_MAX];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(prefix, sizeof prefix, fmt, ap);
        va_end(ap);
        memcpy(old, err->msg, sizeof old);
        /* Truncation is acceptable: a long message keeps its beginning. */
        size_t n = strlen(prefix);
        if (n > sizeof err->msg - 3)
            n = sizeof err->msg - 3;
        memcpy(err->msg, prefix, n);
        memcpy(err->msg + n, ": ", 2);
        size_t room = sizeof err->msg - n - 3;
        size_t m = strlen(old);
        if (m > room)
            m = room;
        memcpy(err->msg + n + 2, old, m);
        err->msg[n + 2 + m] = '\0';
    }
    return -1;
}
