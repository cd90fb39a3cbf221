/* The check macro and summary shared by the C unit tests. The summary line
 * "N passed, M failed" is what CI reads. */
#ifndef AIRLLM_TEST_UTIL_H
#define AIRLLM_TEST_UTIL_H

#include <stdio.h>

static int passed, failed;

#define CHECK(cond, ...)                                                                   \
    do {                                                                                   \
        if (cond) {                                                                        \
            passed++;                                                                      \
        } else {                                                                           \
            failed++;                                                                      \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                    \
            printf(__VA_ARGS__);                                                           \
            printf("\n");                                                                  \
        }                                                                                  \
    } while (0)

/* Prints the summary and gives main's exit status. */
static inline int test_summary(void)
{
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}

#endif
