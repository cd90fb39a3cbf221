#include "airllm_heap.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define AT(h, i) ((h)->items + (i) * (h)->size)

void airllm_heap_init(airllm_heap *h, size_t size, bool (*before)(const void *, const void *))
{
    *h = (airllm_heap){NULL, 0, 0, size, before};
}

int airllm_heap_push(airllm_heap *h, const void *item)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        if (cap > (SIZE_MAX / h->size) - 1)
            return -1;
        unsigned char *q = realloc(h->items, (cap + 1) * h->size);
        if (!q)
            return -1;
        h->items = q;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0 && h->before(item, AT(h, (i - 1) / 2))) {
        memcpy(AT(h, i), AT(h, (i - 1) / 2), h->size);
        i = (i - 1) / 2;
    }
    memcpy(AT(h, i), item, h->size);
    return 0;
}

void airllm_heap_pop(airllm_heap *h, void *out)
{
    memcpy(out, AT(h, 0), h->size);
    unsigned char *last = AT(h, h->cap); /* scratch: the last item, moved down */
    memcpy(last, AT(h, --h->n), h->size);
    size_t i = 0, n = h->n;
    for (;;) {
        size_t k = 2 * i + 1;
        if (k >= n)
            break;
        if (k + 1 < n && h->before(AT(h, k + 1), AT(h, k)))
            k++;
        if (!h->before(AT(h, k), last))
            break;
        memcpy(AT(h, i), AT(h, k), h->size);
        i = k;
    }
    if (n)
        memcpy(AT(h, i), last, h->size);
}

void airllm_heap_free(airllm_heap *h)
{
    free(h->items);
    h->items = NULL;
    h->n = h->cap = 0;
}
