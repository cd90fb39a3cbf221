/* The CUDA backend of airllm-run (runner/cuda/rt_cuda.cu). docs/runner.md
 * "CUDA" describes it.
 *
 * It is a module, airllm-cuda.so, that runner/rt_cuda_loader.c loads with
 * dlopen on the first --device cuda: linking the CUDA runtime and cuBLAS
 * into airllm-run cost every CPU run 150 MiB of RSS (their relocations),
 * and made the binary fail to start where the toolkit's libraries are
 * missing. The functions below are the loader's; they forward to the
 * module's rt_cuda_backend table, or fail with a message saying why there
 * is no backend.
 *
 * Layers move disk -> pinned host slot (the store's prefetch thread) ->
 * device stream buffer (cudaMemcpyAsync on a copy stream) -> kernels (a
 * compute stream); events order the two streams, so the read of layer i+2,
 * the copy of layer i+1 and the compute of layer i overlap. Units the VRAM
 * budget can hold are copied once at startup (rt_gpu_plan_make decides). */
#ifndef AIRLLM_RT_CUDA_H
#define AIRLLM_RT_CUDA_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "rt.h"

typedef struct {
    char device[256];
    bool unified;           /* integrated GPU (Jetson): host memory read in place */
    uint64_t budget;        /* the weight budget used */
    uint64_t held_bytes;    /* weights resident in VRAM */
    uint64_t stream_bytes;  /* each of the two stream buffers */
    size_t n_held, n_streamed;
    uint64_t kv_bytes;      /* KV caches in VRAM (0 with kv_host) */
    uint64_t work_bytes;    /* activations and scratch */
    uint64_t peak_bytes;    /* the most this backend had allocated in VRAM at once */
    uint64_t peak_used;     /* the device's used memory at its peak (all processes,
                             * the CUDA context included), from cudaMemGetInfo */
    uint64_t h2d_bytes;     /* weight bytes copied to the device */
    double h2d_s;           /* time the copy stream spent on them */
} rt_cuda_info;

/* The module's table: airllm_cuda_backend() returns it. RT_CUDA_ABI changes
 * whenever this table, rt_model, rt_seq, rt_store or any struct they reach
 * changes layout (the module is built from the same tree as airllm-run). */
#define RT_CUDA_ABI 1
typedef struct rt_cuda_backend {
    int abi;
    int (*open)(struct rt_cuda **out, rt_model *m, const rt_cuda_opts *o, rt_allocator *alloc,
                airllm_err *err);
    int (*load)(struct rt_cuda *g, rt_model *m, airllm_err *err);
    int (*seq_init)(struct rt_cuda *g, rt_seq *s, airllm_err *err);
    void (*seq_free)(struct rt_cuda *g, rt_seq *s);
    int (*forward)(struct rt_cuda *g, rt_model *m, rt_seq **seqs, size_t n_seqs, float *logits,
                   airllm_err *err);
    void (*get_info)(const struct rt_cuda *g, rt_cuda_info *out);
    void (*close)(struct rt_cuda *g);
} rt_cuda_backend;
/* Between rt_store_scan and rt_store_start: opens the device, plans which
 * units stay in VRAM (marks them external in m->store) and fills *alloc with
 * the pinned-memory allocator the store must use. */
int rt_cuda_open(struct rt_cuda **out, rt_model *m, const rt_cuda_opts *o, rt_allocator *alloc,
                 airllm_err *err);
/* After rt_store_start: copies the held units to the device. */
int rt_cuda_load(struct rt_cuda *g, rt_model *m, airllm_err *err);
int rt_cuda_seq_init(struct rt_cuda *g, rt_seq *s, airllm_err *err);
void rt_cuda_seq_free(struct rt_cuda *g, rt_seq *s);
/* rt_forward on the device (same contract). */
int rt_cuda_forward(struct rt_cuda *g, rt_model *m, rt_seq **seqs, size_t n_seqs,
                    float *logits, airllm_err *err);
void rt_cuda_get_info(const struct rt_cuda *g, rt_cuda_info *out);
void rt_cuda_close(struct rt_cuda *g);

#ifdef __cplusplus
}
#endif

#endif
