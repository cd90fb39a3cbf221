/* A strict JSON scanner over a memory buffer, for documents too large to
 * hold as a tree: a safetensors header or a manifest of a million tensors
 * took 1 to 2 KiB per tensor as a cJSON tree, against about 100 bytes of
 * text. Nothing here allocates.
 *
 * Use: airllm_js_check() validates one whole value (RFC 8259 grammar: no
 * leading zeros, no control characters in strings, paired surrogates,
 * nesting at most AIRLLM_JS_MAX_DEPTH), then airllm_js_iter walks an object's
 * members or an array's elements, returning each value's byte span; a
 * nested value is skipped in one linear pass and can be walked in turn.
 * Callers decode only the strings and numbers they keep. The iterator
 * assumes a checked document but still never reads outside [0, len). */
#ifndef AIRLLM_JSCAN_H
#define AIRLLM_JSCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "airllm_err.h"

/* cJSON's default nesting limit is 1000; our documents nest 4 deep. */
#define AIRLLM_JS_MAX_DEPTH 64

typedef enum {
    AIRLLM_JS_OBJECT,
    AIRLLM_JS_ARRAY,
    AIRLLM_JS_STRING,
    AIRLLM_JS_NUMBER,
    AIRLLM_JS_TRUE,
    AIRLLM_JS_FALSE,
    AIRLLM_JS_NULL
} airllm_js_kind;

/* One value: its kind and bytes [start, end) of the buffer (a string's span
 * includes its quotes). */
typedef struct {
    airllm_js_kind kind;
    size_t start, end;
} airllm_js_val;

/* Why a document was refused: what (e.g. "control character 0x01 inside a
 * string") at byte offset at. */
typedef struct {
    size_t at;
    char what[96];
} airllm_js_error;

/* Checks that buf[0..len) starts with one JSON value (whitespace before it
 * allowed) and sets *end to the offset just after it; what follows is the
 * caller's to judge. 0, or -1 with *e filled. */
int airllm_js_check(const uint8_t *buf, size_t len, size_t *end, airllm_js_error *e);

/* Walks the members of an object or the elements of an array. */
typedef struct {
    const uint8_t *buf;
    size_t pos, end; /* inside the container's span */
    bool object, first;
} airllm_js_iter;

void airllm_js_iter_init(airllm_js_iter *it, const uint8_t *buf, const airllm_js_val *v);
/* The next member (key set, for an object) or element: 1, 0 at the end, -1
 * when the bytes are not what airllm_js_check accepts. */
int airllm_js_iter_next(airllm_js_iter *it, airllm_js_val *key, airllm_js_val *val);

/* The value starting at or after pos (whitespace skipped); 0 or -1. */
int airllm_js_value_at(const uint8_t *buf, size_t len, size_t pos, airllm_js_val *v);

/* Decodes a checked string value into out, which must hold at least
 * (v->end - v->start - 1) bytes (the decoded text never grows); it is
 * NUL-terminated. *n gets the decoded length (it may hold NUL bytes, from
 * \u0000: *has_nul says so). */
void airllm_js_str(const uint8_t *buf, const airllm_js_val *v, char *out, size_t *n,
                   bool *has_nul);
/* 1 if a checked string value holds \u0000 anywhere (no decoding, no
 * length limit), else 0. */
int airllm_js_str_has_nul(const uint8_t *buf, const airllm_js_val *v);
/* 1 if the string value decodes to exactly lit (no NUL inside), else 0.
 * No allocation: escapes are decoded into a small buffer. */
int airllm_js_str_eq(const uint8_t *buf, const airllm_js_val *v, const char *lit);

/* Classification of a number for airllm_js_uint. */
enum { AIRLLM_JS_NUM_OK, AIRLLM_JS_NUM_NEG, AIRLLM_JS_NUM_FRAC, AIRLLM_JS_NUM_BIG };
/* A number as an exact non-negative integer <= max (at most 2^63): the class
 * says why not when it is not one (negative, has a fraction or exponent, or
 * larger than max). */
int airllm_js_uint(const uint8_t *buf, const airllm_js_val *v, uint64_t max, uint64_t *out);
/* A number as the nearest double (strtod of its text, as cJSON gives). */
double airllm_js_double(const uint8_t *buf, const airllm_js_val *v);

#endif
