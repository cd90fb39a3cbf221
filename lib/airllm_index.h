/* Name -> position map, for finding an entry by name in an array that must
 * keep its order (file order, manifest order) without a linear scan per
 * lookup: checkpoints and manifests hold up to millions of tensors, and a
 * scan per entry made planning and verification quadratic.
 *
 * Open addressing with linear probing over a power-of-two table kept at
 * most half full: 16 bytes per slot, so 32 to 64 bytes per name. Names are
 * not copied; they must outlive the index. The hash is seeded per process
 * so that names crafted to collide cannot be prepared in advance. */
#ifndef AIRLLM_INDEX_H
#define AIRLLM_INDEX_H

#include <stddef.h>
#include <stdint.h>

#include "airllm_err.h"

typedef struct {
    const char *name; /* NULL: empty */
    uint32_t hash;
    uint32_t pos;
} airllm_index_slot;

typedef struct {
    airllm_index_slot *slots;
    size_t cap, n; /* cap: a power of two, or 0 */
} airllm_index;

/* An empty index sized for about expected names (it grows past that). */
int airllm_index_init(airllm_index *ix, size_t expected, airllm_err *err);
/* Adds name at pos (pos < 2^32). When the name is already present the index
 * is left as it was and *prev gets the earlier position (so the first
 * occurrence is the one kept, as a forward scan would find it); otherwise
 * *prev is -1. */
int airllm_index_add(airllm_index *ix, const char *name, size_t pos, long *prev,
                     airllm_err *err);
/* Position given with the first add of name, or -1. */
long airllm_index_find(const airllm_index *ix, const char *name);
/* Builds an index over n records of stride bytes from base whose name is a
 * `char *` at byte offset name_off (NULL names are skipped); a repeated
 * name keeps its first position. */
int airllm_index_build(airllm_index *ix, const void *base, size_t n, size_t stride,
                       size_t name_off, airllm_err *err);
void airllm_index_free(airllm_index *ix);

#endif
