/* Byte-level helpers shared by every reader and writer: explicit
 * little-endian loads and stores (never a struct read from a file), and
 * strict UTF-8 validation of names and JSON read from files. */
#ifndef AIRLLM_BYTES_H
#define AIRLLM_BYTES_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline uint16_t airllm_get_le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}
static inline uint32_t airllm_get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t airllm_get_le64(const uint8_t *p)
{
    return (uint64_t)airllm_get_le32(p) | (uint64_t)airllm_get_le32(p + 4) << 32;
}
static inline float airllm_get_lef32(const uint8_t *p)
{
    uint32_t u = airllm_get_le32(p);
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static inline void airllm_put_lef32(uint8_t *p, float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    p[0] = (uint8_t)u;
    p[1] = (uint8_t)(u >> 8);
    p[2] = (uint8_t)(u >> 16);
    p[3] = (uint8_t)(u >> 24);
}
static inline void airllm_put_le16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static inline void airllm_put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static inline void airllm_put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Offset of the first byte that starts an invalid UTF-8 sequence in
 * s[0..len), or len if all of it is valid (RFC 3629: no overlongs, no
 * surrogates, nothing above U+10FFFF). */
size_t airllm_utf8_first_bad(const uint8_t *s, size_t len);
/* 0 if buf[0..len) is valid UTF-8, -1 otherwise. */
int airllm_utf8_check(const uint8_t *buf, size_t len);
/* Whether b is valid at position pos (1..3) of a sequence led by lead, by
 * the same rules: what the byte-level decoders ask of each byte they hold
 * back while a character is incomplete. */
int airllm_utf8_cont_ok(uint8_t lead, size_t pos, uint8_t b);

/* Python's bytes.decode("utf-8", errors="replace") (and Rust's
 * String::from_utf8_lossy) a byte at a time, for decoders that see their
 * bytes a token at a time: each maximal invalid subsequence ("U+FFFD
 * substitution of maximal subparts", Unicode ch. 3) becomes one U+FFFD,
 * and an incomplete character is held back until it completes or breaks.
 * Zeroed: the start of a stream. */
typedef struct {
    uint8_t pend[4];     /* the incomplete character held back */
    uint8_t npend, need; /* bytes held; bytes that character needs */
} airllm_utf8_lossy;

/* Feeds byte b. Writes the text it completes to out (room for 6 bytes: a
 * U+FFFD for held bytes that b does not continue, then b's own) and returns
 * its length. Over a stream the output is at most 3 bytes per byte fed. */
size_t airllm_utf8_lossy_byte(airllm_utf8_lossy *u, uint8_t b, uint8_t *out);
/* End of the stream: a held incomplete character becomes one U+FFFD
 * written to out (room for 3 bytes); returns 3 or 0, and zeroes u. */
size_t airllm_utf8_lossy_end(airllm_utf8_lossy *u, uint8_t *out);

/* Room for one more element in a growable array of elem_size-byte
 * elements holding n of *cap: when full, doubles the capacity (the first
 * allocation holds `first`) and returns the reallocated array; otherwise
 * returns items. NULL when out of memory or the size would overflow: then
 * items and *cap are unchanged, and the caller still owns items. */
void *airllm_grow(void *items, size_t *cap, size_t n, size_t elem_size, size_t first);

#endif
