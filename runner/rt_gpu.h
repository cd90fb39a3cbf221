/* Host-side planning for a device backend (runner/cuda/): which units live in
 * device memory and which stream through it, where each tensor goes in a
 * unit's device buffer, and which host-to-device copies a load needs. Plain
 * C with no device calls, so all of it is tested on machines without a GPU
 * (tests/test_gpu_plan.c): the backend only carries out these copies. */
#ifndef AIRLLM_RT_GPU_H
#define AIRLLM_RT_GPU_H

#include <stdbool.h>
#include <stdint.h>

#include "rt.h"

/* Where unit u's tensors go in its device buffer. A tensor's data is what
 * the kernels read: raw and zstd tensors their decoded elements, quantized
 * ones their stored bytes (codes, then the scales at scales_off), and a
 * double-quantized one also its decompressed absmax floats. Every offset is
 * a multiple of 256, so vector loads stay aligned. */
typedef struct {
    uint64_t *data_off, *data_len; /* per tensor */
    uint64_t *abs_off;             /* per tensor: UINT64_MAX unless double-quantized */
    uint64_t *abs_len;
    uint64_t bytes;                /* the whole buffer */
} rt_gpu_layout;

int rt_gpu_layout_make(const rt_unit *u, rt_gpu_layout *out, airllm_err *err);
void rt_gpu_layout_free(rt_gpu_layout *l);

/* One host-to-device copy: len bytes from src to dev_base + dst_off. */
typedef struct {
    const void *src;
    uint64_t dst_off, len;
} rt_gpu_copy;

/* The copies that bring the loaded tensors of slot sl (unit u, laid out as
 * l) to the device; tensors not loaded yet (streamed MoE experts) are left
 * out. out has room for 2 * n_tensors entries; returns the count. With
 * only_tensor >= 0, just that tensor's copies (an expert fetched later). */
size_t rt_gpu_copies(const rt_unit *u, const rt_slot *sl, const rt_gpu_layout *l,
                     long only_tensor, rt_gpu_copy *out);

/* The tensor views of sl rebased onto a device buffer at dev_base: same
 * names, shapes and encodings, data/absmax pointing into device memory.
 * out has sl->n_tensors entries. Pointers are only computed, never read. */
void rt_gpu_views(const rt_slot *sl, const rt_gpu_layout *l, uintptr_t dev_base,
                  rt_tensor *out);

/* Which units the device holds and how much it streams through.
 *
 * The device runs, in order, every layer, the final norm and the LM head
 * (the embedding, when the head is tied to it); the embedding lookup stays
 * on the host. Those units are taken in execution order to live in device
 * memory while, with what is left, two stream buffers of the largest unit
 * not held still fit the budget: weights in device memory never exceed
 * budget. A tied embedding can be held only if its rows can be read from
 * its file (the host then never needs it in memory). */
typedef struct {
    size_t *units;        /* the units the device runs, in execution order */
    size_t n_units;
    bool *held;           /* per store unit: lives in device memory */
    uint64_t *dev_bytes;  /* per store unit: its device buffer (layout bytes) */
    uint64_t held_bytes;  /* sum over held units */
    uint64_t stream_bytes;/* each of the two stream buffers (0: nothing streams) */
    uint64_t min_budget;  /* the smallest budget that works: two stream buffers of the
                           * largest unit */
    uint64_t all_budget;  /* the budget that holds every unit */
} rt_gpu_plan;

/* Fails, naming min_budget, when budget is below it. With unified memory
 * (a Jetson: the GPU reads host memory) nothing is held or copied: the plan
 * only lists the units. */
int rt_gpu_plan_make(const rt_store *s, uint64_t budget, bool unified, rt_gpu_plan *out,
                     airllm_err *err);
void rt_gpu_plan_free(rt_gpu_plan *p);

/* b bytes as whole MiB, rounded up ("123M"), as --gpu-mem-budget takes
 * them: a budget named in a message always fits what it describes. */
const char *rt_gpu_mib(char *buf, size_t n, uint64_t b);

#endif
