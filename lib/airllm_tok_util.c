/* The tokenizer's containers: the string -> id and u64 -> u64 hash maps
 * behind the vocab, the merges and the trie, the byte trie that finds added
 * tokens, and GPT-2's byte-to-unicode map. Shared by the loaders, the
 * encoder and the decoder (lib/airllm_tok_impl.h declares them, and holds
 * the inline growable buffer); they know nothing of tokenizers. */
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "airllm_tok_impl.h"

/* ------------------------------------------------------------------------
 * Hash maps: string -> id, and 64-bit key -> 64-bit value
 * ------------------------------------------------------------------------ */

static uint64_t hash_bytes(const uint8_t *p, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h ^ h >> 29;
}

static uint64_t mix64(uint64_t x) /* splitmix64's finalizer */
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ x >> 31;
}

int airllm_tok_sm_alloc(strmap *m, size_t cap)
{
    m->s = malloc(cap * sizeof *m->s);
    if (!m->s)
        return -1;
    for (size_t i = 0; i < cap; i++)
        m->s[i].val = -1;
    m->cap = cap;
    m->n = 0;
    return 0;
}

int32_t airllm_tok_sm_get(const strmap *m, const uint8_t *base, const void *key, size_t n)
{
    if (!m->cap)
        return -1;
    size_t mask = m->cap - 1;
    for (size_t i = hash_bytes(key, n) & mask;; i = (i + 1) & mask) {
        const sm_slot *e = &m->s[i];
        if (e->val < 0)
            return -1;
        if (e->key.len == n && memcmp(base + e->key.off, key, n) == 0)
            return e->val;
    }
}

/* Inserts key -> val unless the key is there; returns the id already there,
 * or -1 when inserted, or -2 when out of memory. */
int32_t airllm_tok_sm_put(strmap *m, const uint8_t *base, span key, int32_t val)
{
    if ((m->n + 1) * 2 > m->cap) {
        strmap g;
        if (airllm_tok_sm_alloc(&g, m->cap ? m->cap * 2 : 64))
            return -2;
        for (size_t i = 0; i < m->cap; i++) {
            if (m->s[i].val < 0)
                continue;
            size_t j = hash_bytes(base + m->s[i].key.off, m->s[i].key.len) & (g.cap - 1);
            while (g.s[j].val >= 0)
                j = (j + 1) & (g.cap - 1);
            g.s[j] = m->s[i];
        }
        g.n = m->n;
        free(m->s);
        *m = g;
    }
    size_t mask = m->cap - 1;
    for (size_t i = hash_bytes(base + key.off, key.len) & mask;; i = (i + 1) & mask) {
        sm_slot *e = &m->s[i];
        if (e->val < 0) {
            e->key = key;
            e->val = val;
            m->n++;
            return -1;
        }
        if (e->key.len == key.len && memcmp(base + e->key.off, base + key.off, key.len) == 0)
            return e->val;
    }
}

int airllm_tok_um_alloc(u64map *m, size_t cap)
{
    m->s = malloc(cap * sizeof *m->s);
    if (!m->s)
        return -1;
    for (size_t i = 0; i < cap; i++)
        m->s[i].k = UM_EMPTY;
    m->cap = cap;
    m->n = 0;
    return 0;
}

int airllm_tok_um_get(const u64map *m, uint64_t k, uint64_t *v)
{
    if (!m->cap)
        return 0;
    size_t mask = m->cap - 1;
    for (size_t i = mix64(k) & mask;; i = (i + 1) & mask) {
        if (m->s[i].k == k) {
            *v = m->s[i].v;
            return 1;
        }
        if (m->s[i].k == UM_EMPTY)
            return 0;
    }
}

/* Inserts or overwrites. */
int airllm_tok_um_put(u64map *m, uint64_t k, uint64_t v)
{
    if ((m->n + 1) * 2 > m->cap) {
        u64map g;
        if (airllm_tok_um_alloc(&g, m->cap ? m->cap * 2 : 64))
            return -1;
        for (size_t i = 0; i < m->cap; i++) {
            if (m->s[i].k == UM_EMPTY)
                continue;
            size_t j = mix64(m->s[i].k) & (g.cap - 1);
            while (g.s[j].k != UM_EMPTY)
                j = (j + 1) & (g.cap - 1);
            g.s[j] = m->s[i];
        }
        g.n = m->n;
        free(m->s);
        *m = g;
    }
    size_t mask = m->cap - 1;
    for (size_t i = mix64(k) & mask;; i = (i + 1) & mask) {
        if (m->s[i].k == k) {
            m->s[i].v = v;
            return 0;
        }
        if (m->s[i].k == UM_EMPTY) {
            m->s[i].k = k;
            m->s[i].v = v;
            m->n++;
            return 0;
        }
    }
}

/* ------------------------------------------------------------------------
 * Byte trie of added tokens
 * ------------------------------------------------------------------------ */

int airllm_tok_trie_init(trie *tr)
{
    memset(tr, 0, sizeof *tr);
    tr->empty = true;
    tr->cap_nodes = 64;
    tr->term = malloc(tr->cap_nodes * sizeof *tr->term);
    if (!tr->term || airllm_tok_um_alloc(&tr->edges, 64))
        return -1;
    tr->term[0] = -1;
    tr->n_nodes = 1;
    return 0;
}

void airllm_tok_trie_free(trie *tr)
{
    free(tr->term);
    free(tr->edges.s);
}

/* Returns the index already stored for this exact string, -1 when added,
 * -2 when out of memory. */
int airllm_tok_trie_add(trie *tr, const uint8_t *s, size_t n, int32_t idx)
{
    uint64_t node = 0, child;
    for (size_t i = 0; i < n; i++) {
        uint64_t key = node << 8 | s[i];
        if (!airllm_tok_um_get(&tr->edges, key, &child)) {
            if (tr->n_nodes == tr->cap_nodes) {
                int32_t *q = realloc(tr->term, tr->cap_nodes * 2 * sizeof *q);
                if (!q)
                    return -2;
                tr->term = q;
                tr->cap_nodes *= 2;
            }
            child = tr->n_nodes++;
            tr->term[child] = -1;
            if (airllm_tok_um_put(&tr->edges, key, child))
                return -2;
        }
        node = child;
    }
    if (tr->term[node] >= 0)
        return tr->term[node];
    tr->term[node] = idx;
    tr->first[s[0]] = true;
    tr->empty = false;
    return -1;
}

/* The longest token starting at s[p]: its index in added[] (and *len), or -1. */
int32_t airllm_tok_trie_longest(const trie *tr, const uint8_t *s, size_t n, size_t p, size_t *len)
{
    uint64_t node = 0;
    int32_t best = -1;
    for (size_t j = p; j < n; j++) {
        if (!airllm_tok_um_get(&tr->edges, node << 8 | s[j], &node))
            break;
        if (tr->term[node] >= 0) {
            best = tr->term[node];
            *len = j + 1 - p;
        }
    }
    return best;
}

/* ------------------------------------------------------------------------
 * GPT-2's byte-to-unicode map
 * ------------------------------------------------------------------------ */

uint32_t airllm_tok_byte_char[256];
int16_t airllm_tok_char_byte[324];

static void init_byte_map_once(void)
{
    uint32_t n = 0;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
        airllm_tok_byte_char[b] = printable ? (uint32_t)b : 256 + n++;
    }
    for (int c = 0; c < 324; c++)
        airllm_tok_char_byte[c] = -1;
    for (int b = 0; b < 256; b++)
        airllm_tok_char_byte[airllm_tok_byte_char[b]] = (int16_t)b;
}

void airllm_tok_init_byte_map(void)
{
    /* tokenizers may be loaded from several threads at once */
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, init_byte_map_once);
}
