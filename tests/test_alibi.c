/* Prints rt_alibi_slopes for the head counts given as arguments, one line
 * per count ("N s0 s1 ..." with %.9g, enough to round-trip a float), for
 * tests/check_alibi.py to compare with Baichuan's rule. */
#include <stdio.h>
#include <stdlib.h>

#include "rt.h"

int main(int argc, char **argv)
{
    for (int a = 1; a < argc; a++) {
        int n = atoi(argv[a]);
        if (n < 1 || n > 4096)
            return 2;
        float *s = malloc(sizeof(float) * (size_t)n);
        if (!s)
            return 1;
        rt_alibi_slopes(n, s);
        printf("%d", n);
        for (int i = 0; i < n; i++)
            printf(" %.9g", s[i]);
        printf("\n");
        free(s);
    }
    return 0;
}
