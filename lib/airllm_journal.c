#include "airllm_journal.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *kind_name(airllm_jr_kind k)
{
    switch (k) {
    case AIRLLM_JR_UNIT: return "unit";
    case AIRLLM_JR_SOURCE: return "source";
    case AIRLLM_JR_DELETED: return "deleted";
    case AIRLLM_JR_QSTATS: return "qstats";
    }
    return NULL;
}

static bool name_ok(const char *s)
{
    size_t n = strlen(s);
    return n > 0 && n <= AIRLLM_JOURNAL_NAME_MAX && !memchr(s, '\n', n);
}

/* Appends "<len>:<name>" at out[*n]; false if it does not fit. */
static bool put_name(char *out, size_t cap, size_t *n, const char *name)
{
    size_t l = strlen(name);
    int k = snprintf(out + *n, cap - *n, " %zu:", l);
    if (k < 0 || (size_t)k >= cap - *n || l >= cap - *n - (size_t)k)
        return false;
    memcpy(out + *n + k, name, l);
    *n += (size_t)k + l;
    return true;
}

static bool put_fmt(char *out, size_t cap, size_t *n, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static bool put_fmt(char *out, size_t cap, size_t *n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(out + *n, cap - *n, fmt, ap);
    va_end(ap);
    if (k < 0 || (size_t)k >= cap - *n)
        return false;
    *n += (size_t)k;
    return true;
}

size_t airllm_journal_encode(const airllm_jrec *r, char *out, size_t cap)
{
    const char *kind = kind_name(r->kind);
    size_t n = 0;
    if (!kind || !cap || !name_ok(r->name) || !put_fmt(out, cap, &n, "%s", kind))
        return 0;
    bool ok = true;
    switch (r->kind) {
    case AIRLLM_JR_UNIT:
        ok = airllm_sha256_hex_valid(r->sha) && airllm_sha256_hex_valid(r->ck_sha) &&
             (!r->ck_source[0] || name_ok(r->ck_source)) && put_name(out, cap, &n, r->name) &&
             put_fmt(out, cap, &n, " %" PRIu64 " %s", r->size, r->sha) &&
             put_name(out, cap, &n, r->ck_source) &&
             put_fmt(out, cap, &n, " %" PRIu64 " %s", r->ck_offset, r->ck_sha);
        break;
    case AIRLLM_JR_SOURCE:
        ok = airllm_sha256_hex_valid(r->sha) && put_name(out, cap, &n, r->name) &&
             put_fmt(out, cap, &n, " %" PRIu64 " %s", r->size, r->sha);
        break;
    case AIRLLM_JR_DELETED:
        ok = put_name(out, cap, &n, r->name);
        break;
    case AIRLLM_JR_QSTATS:
        ok = put_fmt(out, cap, &n, " %" PRIu64 " %a %a %a", r->size, r->stats[0], r->stats[1],
                     r->stats[2]) &&
             put_name(out, cap, &n, r->name);
        break;
    }
    if (!ok || !put_fmt(out, cap, &n, "\n"))
        return 0;
    return n;
}

/* A cursor over one line; every getter consumes a leading space. */
typedef struct {
    const char *p, *end;
} cur;

static bool get_space(cur *c)
{
    if (c->p >= c->end || *c->p != ' ')
        return false;
    c->p++;
    return true;
}

static bool get_u64(cur *c, uint64_t *v)
{
    if (!get_space(c) || c->p >= c->end || *c->p < '0' || *c->p > '9')
        return false;
    uint64_t x = 0;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
        unsigned d = (unsigned)(*c->p++ - '0');
        if (x > (UINT64_MAX - d) / 10)
            return false;
        x = x * 10 + d;
    }
    *v = x;
    return true;
}

static bool get_name_or_empty(cur *c, char out[AIRLLM_JOURNAL_NAME_MAX + 1], bool empty_ok)
{
    uint64_t l;
    if (!get_u64(c, &l) || (l == 0 && !empty_ok) || l > AIRLLM_JOURNAL_NAME_MAX || c->p >= c->end ||
        *c->p != ':' || (uint64_t)(c->end - c->p - 1) < l)
        return false;
    memcpy(out, c->p + 1, (size_t)l);
    out[l] = '\0';
    if (memchr(out, '\0', (size_t)l))
        return false;
    c->p += 1 + l;
    return true;
}

static bool get_name(cur *c, char out[AIRLLM_JOURNAL_NAME_MAX + 1])
{
    return get_name_or_empty(c, out, false);
}

static bool get_sha(cur *c, char out[AIRLLM_SHA256_HEX])
{
    if (!get_space(c) || c->end - c->p < 64)
        return false;
    memcpy(out, c->p, 64);
    out[64] = '\0';
    c->p += 64;
    return airllm_sha256_hex_valid(out);
}

static bool get_double(cur *c, double *v)
{
    char buf[64];
    if (!get_space(c))
        return false;
    size_t n = 0;
    while (c->p + n < c->end && c->p[n] != ' ' && n < sizeof buf - 1)
        n++;
    if (n == 0 || n == sizeof buf - 1)
        return false;
    memcpy(buf, c->p, n);
    buf[n] = '\0';
    char *e;
    *v = strtod(buf, &e);
    if (*e)
        return false;
    c->p += n;
    return true;
}

static bool get_kind(cur *c, airllm_jr_kind *k)
{
    static const airllm_jr_kind all[] = {AIRLLM_JR_UNIT, AIRLLM_JR_SOURCE, AIRLLM_JR_DELETED,
                                         AIRLLM_JR_QSTATS};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) {
        const char *name = kind_name(all[i]);
        size_t l = strlen(name);
        if ((size_t)(c->end - c->p) > l && memcmp(c->p, name, l) == 0 && c->p[l] == ' ') {
            *k = all[i];
            c->p += l;
            return true;
        }
    }
    return false;
}

int airllm_journal_decode(const char *line, size_t len, airllm_jrec *r)
{
    cur c = {line, line + len};
    memset(r, 0, sizeof *r);
    if (!get_kind(&c, &r->kind))
        return -1;
    bool ok = false;
    switch (r->kind) {
    case AIRLLM_JR_UNIT:
        ok = get_name(&c, r->name) && get_u64(&c, &r->size) && get_sha(&c, r->sha) &&
             get_name_or_empty(&c, r->ck_source, true) && get_u64(&c, &r->ck_offset) &&
             get_sha(&c, r->ck_sha);
        break;
    case AIRLLM_JR_SOURCE:
        ok = get_name(&c, r->name) && get_u64(&c, &r->size) && get_sha(&c, r->sha);
        break;
    case AIRLLM_JR_DELETED:
        ok = get_name(&c, r->name);
        break;
    case AIRLLM_JR_QSTATS:
        ok = get_u64(&c, &r->size) && get_double(&c, &r->stats[0]) &&
             get_double(&c, &r->stats[1]) && get_double(&c, &r->stats[2]) &&
             get_name(&c, r->name);
        break;
    }
    return ok && c.p == c.end ? 0 : -1;
}

/* Format 1: the fixed fields are the last ones (qstats: the index is the
 * first), so they are taken from the ends and the name is what lies between,
 * spaces and all. */
static bool take_last(cur *c, const char **tok, size_t *n)
{
    const char *q = c->end;
    while (q > c->p && q[-1] != ' ')
        q--;
    if (q == c->end || q == c->p)
        return false; /* empty token, or no space before it */
    *tok = q;
    *n = (size_t)(c->end - q);
    c->end = q - 1;
    return true;
}

static bool tok_u64(const char *t, size_t n, uint64_t *v)
{
    cur c = {t - 1, t + n};
    /* get_u64 wants a leading space; t[-1] is one (take_last checked). */
    return get_u64(&c, v) && c.p == c.end;
}

int airllm_journal_decode_v1(const char *line, size_t len, airllm_jrec *r)
{
    cur c = {line, line + len};
    memset(r, 0, sizeof *r);
    if (!get_kind(&c, &r->kind) || !get_space(&c))
        return -1;
    const char *t;
    size_t n;
    if (r->kind == AIRLLM_JR_UNIT || r->kind == AIRLLM_JR_SOURCE) {
        if (!take_last(&c, &t, &n) || n != 64)
            return -1;
        memcpy(r->sha, t, 64);
        if (!airllm_sha256_hex_valid(r->sha) || !take_last(&c, &t, &n) ||
            !tok_u64(t, n, &r->size))
            return -1;
    } else if (r->kind == AIRLLM_JR_QSTATS) {
        for (int i = 2; i >= 0; i--) {
            char buf[64];
            char *e;
            if (!take_last(&c, &t, &n) || n >= sizeof buf)
                return -1;
            memcpy(buf, t, n);
            buf[n] = '\0';
            r->stats[i] = strtod(buf, &e);
            if (*e)
                return -1;
        }
        const char *sp = memchr(c.p, ' ', (size_t)(c.end - c.p));
        if (!sp || !tok_u64(c.p, (size_t)(sp - c.p), &r->size))
            return -1;
        c.p = sp + 1;
    }
    n = (size_t)(c.end - c.p);
    if (n == 0 || n > AIRLLM_JOURNAL_NAME_MAX || memchr(c.p, '\0', n))
        return -1;
    memcpy(r->name, c.p, n);
    r->name[n] = '\0';
    return 0;
}
