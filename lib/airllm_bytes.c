#include "airllm_bytes.h"

#include <stdint.h>
#include <stdlib.h>

/* ------------------------------------------------------------------ UTF-8 */

/* Returns the offset of the first byte that starts an invalid sequence, or
 * len if the whole buffer is valid. Ranges follow RFC 3629 table 3-7, which
 * excludes overlongs (C0, C1, E0 80..9F, F0 80..8F), surrogates (ED A0..BF)
 * and code points above U+10FFFF (F4 90.., F5..FF). */
size_t airllm_utf8_first_bad(const uint8_t *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint8_t b = s[i];
        if (b < 0x80) {
            i++;
            continue;
        }
        size_t n;          /* continuation bytes */
        uint8_t lo = 0x80; /* bounds of the first continuation byte */
        uint8_t hi = 0xBF;
        if (b >= 0xC2 && b <= 0xDF) {
            n = 1;
        } else if (b >= 0xE0 && b <= 0xEF) {
            n = 2;
            if (b == 0xE0)
                lo = 0xA0;
            else if (b == 0xED)
                hi = 0x9F;
        } else if (b >= 0xF0 && b <= 0xF4) {
            n = 3;
            if (b == 0xF0)
                lo = 0x90;
            else if (b == 0xF4)
                hi = 0x8F;
        } else {
            return i;
        }
        if (len - i - 1 < n)
            return i;
        if (s[i + 1] < lo || s[i + 1] > hi)
            return i;
        for (size_t k = 2; k <= n; k++)
            if ((s[i + k] & 0xC0) != 0x80)
                return i;
        i += n + 1;
    }
    return len;
}

int airllm_utf8_check(const uint8_t *buf, size_t len)
{
    if (len == 0)
        return 0;
    if (!buf)
        return -1;
    return airllm_utf8_first_bad(buf, len) == len ? 0 : -1;
}

int airllm_utf8_cont_ok(uint8_t lead, size_t pos, uint8_t b)
{
    if (pos == 1) {
        if (lead == 0xE0)
            return b >= 0xA0 && b <= 0xBF;
        if (lead == 0xED)
            return b >= 0x80 && b <= 0x9F;
        if (lead == 0xF0)
            return b >= 0x90 && b <= 0xBF;
        if (lead == 0xF4)
            return b >= 0x80 && b <= 0x8F;
    }
    return b >= 0x80 && b <= 0xBF;
}

static const uint8_t FFFD[3] = {0xEF, 0xBF, 0xBD};

size_t airllm_utf8_lossy_byte(airllm_utf8_lossy *u, uint8_t b, uint8_t *out)
{
    size_t n = 0;
    if (u->npend) {
        if (airllm_utf8_cont_ok(u->pend[0], u->npend, b)) {
            u->pend[u->npend++] = b;
            if (u->npend < u->need)
                return 0;
            u->npend = 0;
            memcpy(out, u->pend, u->need);
            return u->need;
        }
        /* the held bytes are a maximal invalid subsequence; b starts over */
        u->npend = 0;
        memcpy(out, FFFD, 3);
        n = 3;
    }
    if (b < 0x80) {
        out[n] = b;
        return n + 1;
    }
    if (b >= 0xC2 && b <= 0xF4) {
        u->pend[0] = b;
        u->npend = 1;
        u->need = b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
        return n;
    }
    memcpy(out + n, FFFD, 3); /* C0, C1, F5..FF, or a stray continuation byte */
    return n + 3;
}

size_t airllm_utf8_lossy_end(airllm_utf8_lossy *u, uint8_t *out)
{
    size_t n = u->npend ? 3 : 0;
    if (n)
        memcpy(out, FFFD, 3);
    memset(u, 0, sizeof *u);
    return n;
}

/* ------------------------------------------------------------ arrays */

void *airllm_grow(void *items, size_t *cap, size_t n, size_t elem_size, size_t first)
{
    if (n < *cap)
        return items;
    size_t c = *cap ? *cap : first;
    if (*cap) {
        if (c > SIZE_MAX / 2)
            return NULL;
        c *= 2;
    }
    if (c > SIZE_MAX / elem_size)
        return NULL;
    void *q = realloc(items, c * elem_size);
    if (q)
        *cap = c;
    return q;
}
