/* A binary heap of fixed-size items, ordered by the caller's `before`: the
 * queue of candidate merges that the three BPE encoders (tokenizer.json,
 * SentencePiece, tiktoken) pop best-first. */
#ifndef AIRLLM_HEAP_H
#define AIRLLM_HEAP_H

#include <stdbool.h>
#include <stddef.h>

typedef struct {
    unsigned char *items; /* [cap + 1] items of `size` bytes; the last is scratch */
    size_t n, cap, size;
    bool (*before)(const void *a, const void *b); /* a pops before b */
} airllm_heap;

/* An empty heap of items of `size` bytes; allocates nothing yet. */
void airllm_heap_init(airllm_heap *h, size_t size, bool (*before)(const void *, const void *));
/* 0, or -1 when memory runs out (the heap is unchanged then). */
int airllm_heap_push(airllm_heap *h, const void *item);
/* The first item by `before` into out, removed; h->n must be > 0. */
void airllm_heap_pop(airllm_heap *h, void *out);
void airllm_heap_free(airllm_heap *h);

#endif
