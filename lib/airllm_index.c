#include "airllm_index.h"

#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>

/* FNV-1a over the name, its basis mixed with 8 of the 16 random bytes the
 * kernel hands every process (AT_RANDOM), then a 64-bit finaliser so that
 * the low bits used for the slot depend on every byte. */
static uint64_t seed(void)
{
    /* Threads may race to set it; they all store the same value. */
    static uint64_t s;
    uint64_t v = __atomic_load_n(&s, __ATOMIC_RELAXED);
    if (!v) {
        const unsigned char *r = (const unsigned char *)getauxval(AT_RANDOM);
        v = 0x9e3779b97f4a7c15ull;
        if (r)
            memcpy(&v, r, sizeof v);
        v |= 1;
        __atomic_store_n(&s, v, __ATOMIC_RELAXED);
    }
    return v;
}

static uint32_t hash_name(const char *name)
{
    uint64_t h = 0xcbf29ce484222325ull ^ seed();
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * 0x100000001b3ull;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return (uint32_t)h;
}

static int resize(airllm_index *ix, size_t cap, airllm_err *err)
{
    airllm_index_slot *s = calloc(cap, sizeof *s);
    if (!s)
        return airllm_errf(err, "out of memory for a name index of %zu entries", cap);
    for (size_t i = 0; i < ix->cap; i++) {
        const airllm_index_slot *o = &ix->slots[i];
        if (!o->name)
            continue;
        size_t k = o->hash & (cap - 1);
        while (s[k].name)
            k = (k + 1) & (cap - 1);
        s[k] = *o;
    }
    free(ix->slots);
    ix->slots = s;
    ix->cap = cap;
    return 0;
}

int airllm_index_init(airllm_index *ix, size_t expected, airllm_err *err)
{
    memset(ix, 0, sizeof *ix);
    size_t cap = 16;
    while (cap / 2 < expected) {
        if (cap > SIZE_MAX / 4 / sizeof(airllm_index_slot))
            return airllm_errf(err, "name index of %zu entries is too large", expected);
        cap *= 2;
    }
    return resize(ix, cap, err);
}

int airllm_index_add(airllm_index *ix, const char *name, size_t pos, long *prev,
                     airllm_err *err)
{
    *prev = -1;
    if (pos > UINT32_MAX)
        return airllm_errf(err, "name index: position %zu out of range", pos);
    if ((ix->n + 1) * 2 > ix->cap && resize(ix, ix->cap ? ix->cap * 2 : 16, err))
        return -1;
    uint32_t h = hash_name(name);
    size_t k = h & (ix->cap - 1);
    for (; ix->slots[k].name; k = (k + 1) & (ix->cap - 1))
        if (ix->slots[k].hash == h && strcmp(ix->slots[k].name, name) == 0) {
            *prev = (long)ix->slots[k].pos;
            return 0;
        }
    ix->slots[k] = (airllm_index_slot){name, h, (uint32_t)pos};
    ix->n++;
    return 0;
}

long airllm_index_find(const airllm_index *ix, const char *name)
{
    if (!ix->cap || !name)
        return -1;
    uint32_t h = hash_name(name);
    for (size_t k = h & (ix->cap - 1); ix->slots[k].name; k = (k + 1) & (ix->cap - 1))
        if (ix->slots[k].hash == h && strcmp(ix->slots[k].name, name) == 0)
            return (long)ix->slots[k].pos;
    return -1;
}

int airllm_index_build(airllm_index *ix, const void *base, size_t n, size_t stride,
                       size_t name_off, airllm_err *err)
{
    if (airllm_index_init(ix, n, err))
        return -1;
    for (size_t i = 0; i < n; i++) {
        const char *name;
        memcpy(&name, (const char *)base + i * stride + name_off, sizeof name);
        long prev;
        if (name && airllm_index_add(ix, name, i, &prev, err)) {
            airllm_index_free(ix);
            return -1;
        }
    }
    return 0;
}

void airllm_index_free(airllm_index *ix)
{
    free(ix->slots);
    memset(ix, 0, sizeof *ix);
}
