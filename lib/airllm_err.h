/* Error reporting for lib/: functions never print or exit. They return 0 on
 * success and -1 on failure, with a human-readable message in an airllm_err
 * that the calling tool decides how to show. */
#ifndef AIRLLM_ERR_H
#define AIRLLM_ERR_H

#include <stddef.h>

#define AIRLLM_ERR_MSG_MAX 1024

typedef struct {
    char msg[AIRLLM_ERR_MSG_MAX];
} airllm_err;

/* Formats a message into err (if err is non-NULL) and returns -1, so callers
 * can write `return airllm_errf(err, "...")`. */
int airllm_errf(airllm_err *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Prepends "prefix: " to an existing message, e.g. to add a file name that a
 * buffer-level parser could not know. Returns -1. */
int airllm_err_prefix(airllm_err *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
