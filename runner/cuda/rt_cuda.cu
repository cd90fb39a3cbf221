/* The CUDA backend of airllm-run: see runner/rt_cuda.h and docs/runner.md
 * "CUDA". Activations are float32 [tokens, width], row-major, as on the CPU;
 * weights stay as stored (F32/F16/BF16, int8, nf4, fp4) and are decoded in
 * registers by the matrix-vector kernel (decode, up to RT_MAXT tokens), or
 * dequantized a slice of rows at a time into a float32 scratch for a cuBLAS
 * SGEMM (prefill, large batches). Every CUDA call is checked and reports
 * its file and line. */
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "airllm_quant.h"
#include "rt_cuda.h"
#include "rt_gpu.h"
}
#include "rt_decode.h"

/* ---- errors ---- */

static int cuda_fail(airllm_err *err, cudaError_t e, const char *what, const char *file,
                     int line)
{
    return airllm_errf(err, "CUDA error at %s:%d: %s: %s", file, line, what,
                       cudaGetErrorString(e));
}

static int blas_fail(airllm_err *err, cublasStatus_t e, const char *what, const char *file,
                     int line)
{
    return airllm_errf(err, "cuBLAS error at %s:%d: %s: status %d", file, line, what, (int)e);
}

#define CU(call)                                                                           \
    do {                                                                                   \
        cudaError_t e_ = (call);                                                           \
        if (e_ != cudaSuccess)                                                             \
            return cuda_fail(err, e_, #call, __FILE__, __LINE__);                          \
    } while (0)
#define BLAS(call)                                                                         \
    do {                                                                                   \
        cublasStatus_t e_ = (call);                                                        \
        if (e_ != CUBLAS_STATUS_SUCCESS)                                                   \
            return blas_fail(err, e_, #call, __FILE__, __LINE__);                          \
    } while (0)
/* after a kernel launch: a bad configuration shows up here */
#define KCHECK() CU(cudaGetLastError())

/* ---- state ---- */

typedef struct {
    void *buf;           /* held: the unit's device buffer */
    rt_tensor *views;    /* held: its tensors in device memory */
    rt_gpu_layout lay;
    bool has_lay;
} dev_unit;

typedef struct {
    float *k, *v;        /* [layer][ctx][kv_heads * head_dim], device-visible */
    bool host;           /* pinned host memory (--kv-host, unified) */
    void *hk, *hv;       /* then: the host addresses */
    uint64_t bytes;      /* each of k and v */
} seq_dev;

struct rt_cuda {
    int dev;
    cudaDeviceProp prop;
    bool unified, kv_host;
    uint64_t budget, total_mem, max_tensors;
    int n_layers;
    size_t kvd;          /* kv_heads * head_dim */
    rt_gpu_plan plan;
    dev_unit *units; /* per store unit */
    cudaStream_t compute, copy;
    cudaEvent_t copy_start[2], copied[2], done[2];
    bool done_recorded[2];
    void *sbuf[2];        /* stream buffers */
    rt_tensor *sviews[2];
    int next_buf;
    cublasHandle_t blas;
    /* work buffers, for cap tokens and cap_seqs sequences */
    size_t cap, cap_seqs;
    float *x, *xb, *q, *k, *v, *att, *hb, *hb2, *acc, *router, *xg, *vec, *vec2, *xl, *logits;
    int *tok_pos, *tok_seq, *idx;
    float *wts;
    float **seq_k, **seq_v;
    long long *seq_ctx;
    float *deq;            /* dequantized rows for SGEMM */
    size_t deq_elems;
    float *inv_freq;       /* [rope_dim / 2] */
    float *alibi;          /* [n_heads] ALiBi slopes (Baichuan 13B), or NULL */
    /* [cap, max(Q + 2 KV, 2 I)]: a fused matmul's output (q/k/v of ChatGLM,
     * Baichuan, Qwen v1, InternLM2; gate | up of ChatGLM) */
    float *fused;
    /* Qwen v1 / InternLM (rt_family_a.c): each token's RoPE cos/sin
     * [cap, head_dim] and query scale [cap] */
    float *rope_cs, *tok_scale;
    /* InternLM v1 dynamic RoPE: per sequence, the inverse frequencies its
     * cached keys have and must get [cap_seqs, 2, head_dim / 2], and how many
     * keys to turn (0: none) [cap_seqs] */
    float *rr_inv;
    int *rr_n;
    /* accounting */
    uint64_t alloc_bytes, peak_bytes, kv_bytes, work_bytes, held_bytes, peak_used;
    uint64_t h2d_bytes;
    double h2d_s;
    size_t n_held, n_streamed;
};

__constant__ float c_book[2][16]; /* nf4, fp4 codebooks */

/* ---- device memory, with a clear message when it runs out ---- */

static int dev_alloc(rt_cuda *g, void **p, uint64_t bytes, const char *what, airllm_err *err)
{
    cudaError_t e = cudaMalloc(p, bytes ? bytes : 1);
    if (e == cudaErrorMemoryAllocation) {
        cudaGetLastError(); /* clear it */
        size_t fr = 0, tot = 0;
        cudaMemGetInfo(&fr, &tot);
        /* weights could shrink by what is missing, down to two stream
         * buffers of the largest unit */
        uint64_t weights = g->held_bytes + 2 * g->plan.stream_bytes;
        uint64_t short_by = bytes > fr ? bytes - fr : bytes;
        uint64_t fit = weights > short_by + (64u << 20) ? weights - short_by - (64u << 20) : 0;
        char a[32], b[32], c[32], d[32];
        if (fit >= g->plan.min_budget)
            return airllm_errf(err, "out of GPU memory for %s (%s; %s free): a "
                                    "--gpu-mem-budget of %s would fit",
                               what, rt_gpu_mib(a, sizeof a, bytes), rt_gpu_mib(b, sizeof b, fr),
                               rt_gpu_mib(c, sizeof c, fit));
        return airllm_errf(err, "out of GPU memory for %s (%s; %s free): even the smallest "
                                "budget (%s, two buffers of the largest layer) leaves too "
                                "little; use --kv-host or fewer tokens",
                           what, rt_gpu_mib(a, sizeof a, bytes), rt_gpu_mib(b, sizeof b, fr),
                           rt_gpu_mib(d, sizeof d, g->plan.min_budget));
    }
    if (e != cudaSuccess)
        return cuda_fail(err, e, "cudaMalloc", __FILE__, __LINE__);
    g->alloc_bytes += bytes;
    if (g->alloc_bytes > g->peak_bytes)
        g->peak_bytes = g->alloc_bytes;
    return 0;
}

static void dev_free(rt_cuda *g, void *p, uint64_t bytes)
{
    if (!p)
        return;
    cudaFree(p);
    g->alloc_bytes -= bytes;
}

/* Pinned host memory for the store's slots: copies from it run
 * asynchronously at full bus speed; mapped, so an integrated GPU reads it in
 * place. cudaHostAlloc returns page-aligned memory (O_DIRECT reads). */
static void *pin_alloc(size_t bytes, void *ctx)
{
    rt_cuda *g = (rt_cuda *)ctx;
    void *p = NULL;
    if (cudaHostAlloc(&p, bytes, g->unified ? cudaHostAllocMapped : cudaHostAllocDefault) ==
        cudaSuccess)
        return p;
    cudaGetLastError();
    /* A discrete GPU can still copy from pageable memory (through the
     * driver's staging buffers, slower); an integrated one must map it. */
    if (g->unified || posix_memalign(&p, 4096, bytes) != 0)
        return NULL;
    return p;
}

static void pin_free(void *p, void *ctx)
{
    (void)ctx;
    cudaPointerAttributes a;
    if (cudaPointerGetAttributes(&a, p) == cudaSuccess && a.type == cudaMemoryTypeHost) {
        cudaFreeHost(p);
    } else {
        cudaGetLastError();
        free(p);
    }
}

/* ---- kernels ---- */

__device__ __forceinline__ float warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Sum (or max) over the block, returned to every thread; red has one float
 * per warp. Starts with a barrier so red can be reused right away. */
__device__ float block_reduce(float v, float *red, bool is_max)
{
    v = is_max ? warp_max(v) : warp_sum(v);
    int w = threadIdx.x / 32, nw = (blockDim.x + 31) / 32;
    __syncthreads();
    if (threadIdx.x % 32 == 0)
        red[w] = v;
    __syncthreads();
    float r = red[0];
    for (int i = 1; i < nw; i++)
        r = is_max ? fmaxf(r, red[i]) : r + red[i];
    return r;
}

__device__ __forceinline__ void load_book(int kind, float *book)
{
    if (threadIdx.x < 16)
        book[threadIdx.x] = kind == RT_W_FP4 ? c_book[1][threadIdx.x] : c_book[0][threadIdx.x];
    __syncthreads();
}

#define MV_WARPS 8

/* y[t, r] = W[r] . x[t], t < nt <= RT_MAXT: one warp per row, the weights
 * decoded in registers (rt_row_dot_part), read once for all nt tokens. */
template <int KIND>
__global__ void __launch_bounds__(MV_WARPS * 32)
k_matvec(rt_dmat w, const float *__restrict__ x, int nt, uint64_t ldx, float *__restrict__ y,
         uint64_t ldy)
{
    __shared__ float book[16];
    load_book(KIND, book);
    w.kind = KIND; /* a constant: the decoder's switch folds away */
    uint64_t row = (uint64_t)blockIdx.x * MV_WARPS + threadIdx.x / 32;
    if (row >= w.rows)
        return;
    float acc[RT_MAXT];
#pragma unroll
    for (int t = 0; t < RT_MAXT; t++)
        acc[t] = 0;
    rt_row_dot_part(&w, row, x, nt, ldx, threadIdx.x % 32, 32, book, acc);
#pragma unroll
    for (int t = 0; t < RT_MAXT; t++) {
        if (t < nt) {
            float s = warp_sum(acc[t]);
            if (threadIdx.x % 32 == 0)
                y[(uint64_t)t * ldy + row] = s;
        }
    }
}

/* out[i] = W element e0 + i, i < count: 8 per thread when rows split into
 * groups of 8 (then e0 and count are multiples of 8), else one. */
template <int KIND>
__global__ void k_dequant(rt_dmat w, uint64_t e0, uint64_t count, float *__restrict__ out)
{
    __shared__ float book[16];
    load_book(KIND, book);
    w.kind = KIND;
    uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (rt_w_vec8(&w)) {
        if (i * 8 >= count)
            return;
        float v[8];
        rt_w_dec8(&w, e0 + i * 8, book, v);
#pragma unroll
        for (int k = 0; k < 8; k++)
            out[i * 8 + k] = v[k];
    } else if (i < count) {
        out[i] = rt_w_elem(&w, e0 + i, book);
    }
}

/* out[r] = w * (in[r] / rms(in[r])), one block per row of width n. */
__global__ void k_rmsnorm(float *out, const float *in, const float *__restrict__ w, int n,
                          float eps)
{
    __shared__ float red[32];
    const float *x = in + (size_t)blockIdx.x * n;
    float *o = out + (size_t)blockIdx.x * n;
    float ss = 0;
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        ss += x[i] * x[i];
    ss = block_reduce(ss, red, false);
    float r = (float)(1.0 / sqrt((double)ss / n + eps));
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        o[i] = w[i] * (x[i] * r);
}

__global__ void k_add(float *x, const float *y, size_t n)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        x[i] += y[i];
}

/* y[t, i] += b[i] over n * dim elements */
__global__ void k_add_bias(float *y, const float *b, size_t n, size_t dim)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n * dim)
        y[i] += b[i % dim];
}

__global__ void k_silu_mul(float *a, const float *b, size_t n)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        float x = a[i];
        a[i] = x / (1.0f + expf(-x)) * b[i];
    }
}

/* Pair f of the head x turned by the angle whose cos and sin are c, s:
 * rotate-half (f, f + half), or adjacent (2f, 2f + 1) (ChatGLM). */
__device__ void rope_pair(float *x, int f, int half, int adjacent, float c, float s)
{
    int ia = adjacent ? 2 * f : f, ib = adjacent ? 2 * f + 1 : f + half;
    float a = x[ia], b = x[ib];
    x[ia] = a * c - b * s;
    x[ib] = b * c + a * s;
}

/* RoPE on v [n, heads, hd] at each token's position, over the first rd
 * dims of each head: rotate-half pairs (f, f + rd / 2), or adjacent pairs
 * (2f, 2f + 1) (ChatGLM); the rest of the head passes through. */
__global__ void k_rope(float *v, int n, int heads, int hd, int rd, int adjacent, const int *pos,
                       const float *inv)
{
    int half = rd / 2;
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)n * heads * half)
        return;
    int f = (int)(i % half);
    size_t th = i / half; /* token * heads + head */
    int t = (int)(th / heads);
    float ang = (float)pos[t] * inv[f];
    float c = cosf(ang), s = sinf(ang);
    rope_pair(v + th * hd, f, half, adjacent, c, s);
}

/* A fused projection y [n, Q + 2 KV] into q [n, Q], k [n, KV], v [n, KV]:
 * grouped 0 (RT_QKV_CONCAT: ChatGLM, Baichuan, Qwen v1) rows q | k | v;
 * grouped 1 (RT_QKV_GROUPED: InternLM2) per KV head j, its G query heads,
 * then k_j, then v_j (rt_qkv_split is the reference). */
__global__ void k_qkv_split(const float *y, float *q, float *k, float *v, int n, int heads,
                            int kv_heads, int hd, int grouped)
{
    size_t Q = (size_t)heads * hd, KV = (size_t)kv_heads * hd, F = Q + 2 * KV;
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)n * F)
        return;
    size_t t = i / F, r = i % F;
    float x = y[i];
    if (!grouped) {
        if (r < Q)
            q[t * Q + r] = x;
        else if (r < Q + KV)
            k[t * KV + r - Q] = x;
        else
            v[t * KV + r - Q - KV] = x;
        return;
    }
    size_t G = (size_t)(heads / kv_heads), blk = r / ((G + 2) * hd), w = r % ((G + 2) * hd);
    size_t slot = w / hd, d = w % hd;
    if (slot < G)
        q[t * Q + (blk * G + slot) * hd + d] = x;
    else if (slot == G)
        k[t * KV + blk * hd + d] = x;
    else
        v[t * KV + blk * hd + d] = x;
}

/* ChatGLM's SwiGLU halves: h[t, i] = silu(f[t, i]) * f[t, I + i], f [n, 2I]. */
__global__ void k_swiglu_halves(const float *f, float *h, int n, int I)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)n * I)
        return;
    size_t t = i / I, c = i % I;
    float g = f[t * 2 * I + c];
    h[i] = g / (1.0f + expf(-g)) * f[t * 2 * I + I + c];
}

#include "rt_family_a_kernels.cuh"

/* Each token's k and v rows [kvd] into its sequence's cache at (layer, pos). */
__global__ void k_kv_store(const float *k, const float *v, int n, int kvd, int layer,
                           const int *tok_seq, const int *tok_pos, float *const *seq_k,
                           float *const *seq_v, const long long *seq_ctx)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)n * kvd)
        return;
    int t = (int)(i / kvd), d = (int)(i % kvd);
    int s = tok_seq[t];
    size_t off = ((size_t)layer * (size_t)seq_ctx[s] + (size_t)tok_pos[t]) * kvd + d;
    seq_k[s][off] = k[i];
    seq_v[s][off] = v[i];
}

#define ATT_THREADS 128
#define ATT_CHUNK 1024
#define ATT_MAXD 2 /* head_dim <= ATT_THREADS * ATT_MAXD */

/* Causal (and sliding-window) attention of one (token, head) per block over
 * its sequence's cached positions: scores a chunk at a time in shared
 * memory, with a running max and sum (online softmax), so any context
 * length works in fixed memory. q, out: [n, heads * hd]. */
__global__ void __launch_bounds__(ATT_THREADS)
k_attention(const float *q, float *out, int n_heads, int n_kv, int hd, int layer, int window,
            float scale, const float *alibi, const int *tok_seq, const int *tok_pos,
            float *const *seq_k, float *const *seq_v, const long long *seq_ctx)
{
    extern __shared__ float sh[];
    float *qs = sh, *sc = sh + hd, *red = sc + ATT_CHUNK;
    int t = blockIdx.x / n_heads, h = blockIdx.x % n_heads;
    int s = tok_seq[t];
    long long pos = tok_pos[t], ctx = seq_ctx[s];
    size_t kvd = (size_t)n_kv * hd;
    size_t head_off = (size_t)(h / (n_heads / n_kv)) * hd;
    const float *kc = seq_k[s] + (size_t)layer * ctx * kvd + head_off;
    const float *vc = seq_v[s] + (size_t)layer * ctx * kvd + head_off;
    for (int i = threadIdx.x; i < hd; i += blockDim.x)
        qs[i] = q[((size_t)t * n_heads + h) * hd + i];
    long long lo = window > 0 && pos + 1 > window ? pos + 1 - window : 0;
    float m = -INFINITY, l = 0, o[ATT_MAXD] = {0, 0};
    for (long long c0 = lo; c0 <= pos; c0 += ATT_CHUNK) {
        int len = (int)((pos + 1 - c0) < ATT_CHUNK ? pos + 1 - c0 : ATT_CHUNK);
        __syncthreads(); /* qs written; the last chunk's sc read */
        /* q.k: a warp per position, its lanes across head_dim (coalesced
         * reads of the cached row) */
        float lmax = -INFINITY;
        int lane = threadIdx.x % 32, nw = blockDim.x / 32;
        for (int j = threadIdx.x / 32; j < len; j += nw) {
            const float *k = kc + (size_t)(c0 + j) * kvd;
            float d = 0;
            for (int i = lane; i < hd; i += 32)
                d += qs[i] * k[i];
            d = warp_sum(d) * scale;
            /* ALiBi: slope * (key position - query position), as the CPU */
            if (alibi)
                d += alibi[h] * ((float)(c0 + j) - (float)pos);
            if (lane == 0)
                sc[j] = d;
            lmax = fmaxf(lmax, d);
        }
        float cmax = block_reduce(lmax, red, true);
        float mnew = fmaxf(m, cmax);
        float corr = expf(m - mnew); /* 0 on the first chunk */
        float lsum = 0;
        for (int j = threadIdx.x; j < len; j += blockDim.x) {
            float p = expf(sc[j] - mnew);
            sc[j] = p;
            lsum += p;
        }
        float csum = block_reduce(lsum, red, false); /* its barrier publishes sc */
        l = l * corr + csum;
#pragma unroll
        for (int k = 0; k < ATT_MAXD; k++) {
            int d = threadIdx.x + k * ATT_THREADS;
            if (d >= hd)
                break;
            float a = 0;
            for (int j = 0; j < len; j++)
                a += sc[j] * vc[(size_t)(c0 + j) * kvd + d];
            o[k] = o[k] * corr + a;
        }
        m = mnew;
    }
#pragma unroll
    for (int k = 0; k < ATT_MAXD; k++) {
        int d = threadIdx.x + k * ATT_THREADS;
        if (d < hd)
            out[((size_t)t * n_heads + h) * hd + d] = o[k] / l;
    }
}

/* dst[i] = src[idx[i]], rows of width w */
__global__ void k_gather(float *dst, const float *src, const int *idx, int cnt, int w)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < (size_t)cnt * w)
        dst[i] = src[(size_t)idx[i / w] * w + i % w];
}

/* acc[idx[i]] += wts[i] * src[i], rows of width w (idx distinct) */
__global__ void k_scatter_add(float *acc, const float *src, const int *idx, const float *wts,
                              int cnt, int w)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < (size_t)cnt * w) {
        size_t r = i / w;
        acc[(size_t)idx[r] * w + i % w] += wts[r] * src[i];
    }
}

static unsigned blocks(size_t n, unsigned per)
{
    return (unsigned)((n + per - 1) / per);
}

/* ---- matrices ---- */

static int dmat_of(const rt_tensor *t, rt_dmat *d, airllm_err *err)
{
    d->data = t->data;
    d->absmax = t->absmax;
    d->rows = t->rows;
    d->cols = t->cols;
    d->block = t->block;
    switch (t->enc) {
    case AIRLLM_ENC_NF4: d->kind = RT_W_NF4; return 0;
    case AIRLLM_ENC_FP4: d->kind = RT_W_FP4; return 0;
    case AIRLLM_ENC_INT8: d->kind = RT_W_INT8; return 0;
    case AIRLLM_ENC_RAW:
        if (t->dtype == AIRLLM_DTYPE_F32)
            d->kind = RT_W_F32;
        else if (t->dtype == AIRLLM_DTYPE_F16)
            d->kind = RT_W_F16;
        else if (t->dtype == AIRLLM_DTYPE_BF16)
            d->kind = RT_W_BF16;
        else
            return airllm_errf(err, "%s: dtype %s is not a float type", t->name,
                               airllm_dtype_name(t->dtype));
        return 0;
    default: return airllm_errf(err, "%s: encoding %d unsupported", t->name, (int)t->enc);
    }
}

template <int KIND>
static void launch_matvec(const rt_dmat &w, const float *x, int nt, float *y, cudaStream_t st)
{
    k_matvec<KIND><<<blocks(w.rows, MV_WARPS), MV_WARPS * 32, 0, st>>>(w, x, nt, w.cols, y,
                                                                       w.rows);
}

template <int KIND>
static void launch_dequant(const rt_dmat &w, uint64_t e0, uint64_t count, float *out,
                           cudaStream_t st)
{
    uint64_t threads = rt_w_vec8(&w) ? (count + 7) / 8 : count;
    k_dequant<KIND><<<blocks(threads, 256), 256, 0, st>>>(w, e0, count, out);
}

static void dispatch_dequant(const rt_dmat &w, uint64_t e0, uint64_t count, float *out,
                             cudaStream_t st)
{
    switch (w.kind) {
    case RT_W_F32: launch_dequant<RT_W_F32>(w, e0, count, out, st); break;
    case RT_W_F16: launch_dequant<RT_W_F16>(w, e0, count, out, st); break;
    case RT_W_BF16: launch_dequant<RT_W_BF16>(w, e0, count, out, st); break;
    case RT_W_INT8: launch_dequant<RT_W_INT8>(w, e0, count, out, st); break;
    case RT_W_NF4: launch_dequant<RT_W_NF4>(w, e0, count, out, st); break;
    default: launch_dequant<RT_W_FP4>(w, e0, count, out, st); break;
    }
}

/* y [n, rows] = x [n, cols] W^T. */
static int mm(rt_cuda *g, const rt_tensor *t, const float *x, size_t n, float *y,
              airllm_err *err)
{
    rt_dmat w;
    if (dmat_of(t, &w, err))
        return -1;
    cudaStream_t st = g->compute;
    if (n <= RT_MAXT) {
        switch (w.kind) {
        case RT_W_F32: launch_matvec<RT_W_F32>(w, x, (int)n, y, st); break;
        case RT_W_F16: launch_matvec<RT_W_F16>(w, x, (int)n, y, st); break;
        case RT_W_BF16: launch_matvec<RT_W_BF16>(w, x, (int)n, y, st); break;
        case RT_W_INT8: launch_matvec<RT_W_INT8>(w, x, (int)n, y, st); break;
        case RT_W_NF4: launch_matvec<RT_W_NF4>(w, x, (int)n, y, st); break;
        default: launch_matvec<RT_W_FP4>(w, x, (int)n, y, st); break;
        }
        KCHECK();
        return 0;
    }
    /* Column-major view for cuBLAS: C [rows, n] (ldc rows) = A^T B with A
     * the weight rows as a [cols, rc] matrix (lda cols) and B = x^T
     * [cols, n] (ldb cols). */
    const float one = 1.0f, zero = 0.0f;
    int cols = (int)w.cols;
    if (w.kind == RT_W_F32) {
        BLAS(cublasSgemm(g->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)w.rows, (int)n, cols, &one,
                         (const float *)(const void *)w.data, cols, x, cols, &zero, y,
                         (int)w.rows));
        return 0;
    }
    uint64_t rc = g->deq_elems / w.cols;
    if (rc > w.rows)
        rc = w.rows;
    if (rt_w_vec8(&w) == 0)
        rc = rc ? rc : 1;
    for (uint64_t r0 = 0; r0 < w.rows; r0 += rc) {
        uint64_t r1 = r0 + rc < w.rows ? r0 + rc : w.rows;
        dispatch_dequant(w, r0 * w.cols, (r1 - r0) * w.cols, g->deq, st);
        KCHECK();
        BLAS(cublasSgemm(g->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)(r1 - r0), (int)n, cols, &one,
                         g->deq, cols, x, cols, &zero, y + r0, (int)w.rows));
    }
    return 0;
}

/* A 1-D tensor (norm weight, bias) widened to n floats at out. */
static int vec(rt_cuda *g, const rt_tensor *t, float *out, size_t n, airllm_err *err)
{
    rt_dmat w;
    if (dmat_of(t, &w, err))
        return -1;
    if (t->rows * t->cols != n)
        return airllm_errf(err, "%s: %llu elements, %zu expected", t->name,
                           (unsigned long long)(t->rows * t->cols), n);
    w.rows = 1;
    w.cols = n;
    dispatch_dequant(w, 0, n, out, g->compute);
    KCHECK();
    return 0;
}

/* ---- open ---- */

static int cu_open(rt_cuda **out, rt_model *m, const rt_cuda_opts *o, rt_allocator *alloc,
                   airllm_err *err)
{
    *out = NULL;
    const rt_config *c = &m->cfg;
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count == 0)
        return airllm_errf(err, "--device cuda: no CUDA device is available (%s)",
                           e != cudaSuccess ? cudaGetErrorString(e) : "none found");
    if (o->device >= count)
        return airllm_errf(err, "--device cuda:%d: this machine has %d CUDA device%s",
                           o->device, count, count == 1 ? "" : "s");
    if (c->head_dim > ATT_THREADS * ATT_MAXD || c->head_dim % 2)
        return airllm_errf(err, "head_dim %d: the CUDA attention kernel takes even sizes up "
                                "to %d",
                           c->head_dim, ATT_THREADS * ATT_MAXD);
    rt_cuda *g = (rt_cuda *)calloc(1, sizeof *g);
    if (!g)
        return airllm_errf(err, "out of memory");
    *out = g;
    g->dev = o->device;
    g->kv_host = o->kv_host;
    g->n_layers = c->n_layers;
    g->kvd = (size_t)c->n_kv_heads * c->head_dim;
    CU(cudaSetDevice(g->dev));
    /* Waiting host threads sleep rather than spin: the prefetch thread
     * needs the cores. (Applies to the device just made current; a failure
     * only costs that.) */
    if (cudaSetDeviceFlags(cudaDeviceScheduleBlockingSync | cudaDeviceMapHost) != cudaSuccess)
        cudaGetLastError();
    CU(cudaGetDeviceProperties(&g->prop, g->dev));
    if (g->prop.major < 8)
        return airllm_errf(err, "%s is compute capability %d.%d; the CUDA backend needs 8.0 "
                                "(Ampere) or newer",
                           g->prop.name, g->prop.major, g->prop.minor);
    g->unified = g->prop.integrated != 0;
    size_t fr = 0, tot = 0;
    CU(cudaMemGetInfo(&fr, &tot));
    g->total_mem = tot;
    g->peak_used = tot - fr;
    uint64_t budget = o->budget;
    if (budget == UINT64_MAX) {
        /* what is free, less a tenth and 512 MiB for the KV cache, the
         * work buffers and cuBLAS */
        uint64_t reserve = fr / 10 + (512u << 20);
        budget = fr > reserve ? fr - reserve : 0;
    }
    g->budget = budget;
    if (rt_gpu_plan_make(&m->store, budget, g->unified, &g->plan, err))
        return -1;
    g->units = (dev_unit *)calloc(m->store.n_units, sizeof *g->units);
    if (!g->units)
        return airllm_errf(err, "out of memory");
    for (size_t k = 0; k < g->plan.n_units; k++) {
        size_t u = g->plan.units[k];
        m->store.units[u].external = g->plan.held[u];
        g->n_held += g->plan.held[u];
        g->n_streamed += !g->plan.held[u];
        if (rt_gpu_layout_make(&m->store.units[u], &g->units[u].lay, err))
            return -1;
        g->units[u].has_lay = true;
        if (m->store.units[u].hdr.n_tensors > g->max_tensors)
            g->max_tensors = m->store.units[u].hdr.n_tensors;
    }
    CU(cudaStreamCreateWithFlags(&g->compute, cudaStreamNonBlocking));
    CU(cudaStreamCreateWithFlags(&g->copy, cudaStreamNonBlocking));
    for (int b = 0; b < 2; b++) {
        CU(cudaEventCreate(&g->copy_start[b]));
        CU(cudaEventCreate(&g->copied[b]));
        CU(cudaEventCreateWithFlags(&g->done[b], cudaEventDisableTiming));
    }
    BLAS(cublasCreate(&g->blas));
    BLAS(cublasSetStream(g->blas, g->compute));
    /* float32 GEMMs stay float32 (no TF32), like the CPU backend */
    BLAS(cublasSetMathMode(g->blas, CUBLAS_DEFAULT_MATH));
    float books[2][16];
    memcpy(books[0], airllm_nf4_code, sizeof books[0]);
    memcpy(books[1], airllm_fp4_code, sizeof books[1]);
    CU(cudaMemcpyToSymbol(c_book, books, sizeof books));
    alloc->alloc = pin_alloc;
    alloc->free = pin_free;
    alloc->ctx = g;
    return 0;
}

/* The copies of a loaded slot into a device buffer, on the copy stream. */
static int copy_slot(rt_cuda *g, const rt_unit *u, const rt_slot *sl, const rt_gpu_layout *l,
                     long only, void *dst, cudaStream_t st, airllm_err *err)
{
    rt_gpu_copy cp[2 * 64];
    rt_gpu_copy *c = cp;
    if (u->hdr.n_tensors > 64) {
        c = (rt_gpu_copy *)malloc(sizeof *c * 2 * u->hdr.n_tensors);
        if (!c)
            return airllm_errf(err, "out of memory");
    }
    size_t n = rt_gpu_copies(u, sl, l, only, c);
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        cudaError_t e = cudaMemcpyAsync((uint8_t *)dst + c[i].dst_off, c[i].src, c[i].len,
                                        cudaMemcpyHostToDevice, st);
        if (e != cudaSuccess)
            rc = cuda_fail(err, e, "cudaMemcpyAsync", __FILE__, __LINE__);
        g->h2d_bytes += c[i].len;
    }
    if (c != cp)
        free(c);
    return rc;
}

static int cu_load(rt_cuda *g, rt_model *m, airllm_err *err)
{
    rt_store *s = &m->store;
    const rt_config *c = &m->cfg;
    size_t nf = (size_t)c->rope_dim / 2, nh = (size_t)c->n_heads;
    float *inv = (float *)malloc(sizeof(float) * (nf > nh ? nf : nh));
    if (!inv)
        return airllm_errf(err, "out of memory");
    rt_rope_init(c, inv);
    int rc = dev_alloc(g, (void **)&g->inv_freq, sizeof(float) * nf, "RoPE frequencies", err);
    if (!rc && cudaMemcpy(g->inv_freq, inv, sizeof(float) * nf, cudaMemcpyHostToDevice) !=
                   cudaSuccess)
        rc = airllm_errf(err, "CUDA error at %s:%d: copying RoPE frequencies", __FILE__,
                         __LINE__);
    if (!rc && c->alibi) {
        rt_alibi_slopes(c->n_heads, inv);
        rc = dev_alloc(g, (void **)&g->alibi, sizeof(float) * nh, "ALiBi slopes", err);
        if (!rc && cudaMemcpy(g->alibi, inv, sizeof(float) * nh, cudaMemcpyHostToDevice) !=
                       cudaSuccess)
            rc = airllm_errf(err, "CUDA error at %s:%d: copying ALiBi slopes", __FILE__,
                             __LINE__);
    }
    free(inv);
    if (rc || g->unified)
        return rc;
    if (g->plan.stream_bytes)
        for (int b = 0; b < 2; b++) {
            if (dev_alloc(g, &g->sbuf[b], g->plan.stream_bytes, "a layer stream buffer", err))
                return -1;
            g->sviews[b] = (rt_tensor *)calloc(g->max_tensors + 1, sizeof(rt_tensor));
            if (!g->sviews[b])
                return airllm_errf(err, "out of memory");
        }
    /* Held units: read once into one pinned slot (sized for the largest),
     * copied, viewed. */
    size_t *held = (size_t *)malloc(sizeof(size_t) * (g->plan.n_units + 1));
    size_t n_held = 0;
    if (!held)
        return airllm_errf(err, "out of memory");
    for (size_t k = 0; k < g->plan.n_units; k++)
        if (g->plan.held[g->plan.units[k]])
            held[n_held++] = g->plan.units[k];
    rt_slot tmp;
    memset(&tmp, 0, sizeof tmp);
    rc = n_held ? rt_store_slot_new(s, held, n_held, &tmp, err) : 0;
    for (size_t k = 0; !rc && k < n_held; k++) {
        size_t u = held[k];
        dev_unit *du = &g->units[u];
        char what[128];
        snprintf(what, sizeof what, "%s (held in GPU memory)", s->units[u].file);
        if ((rc = dev_alloc(g, &du->buf, du->lay.bytes, what, err)))
            break;
        g->held_bytes += du->lay.bytes;
        du->views = (rt_tensor *)calloc(s->units[u].hdr.n_tensors + 1, sizeof(rt_tensor));
        if (!du->views) {
            rc = airllm_errf(err, "out of memory");
            break;
        }
        rc = rt_store_load(s, u, &tmp, err);
        if (!rc)
            rc = copy_slot(g, &s->units[u], &tmp, &du->lay, -1, du->buf, g->copy, err);
        /* the slot is reused by the next unit: wait for the copies */
        cudaError_t e = cudaStreamSynchronize(g->copy);
        if (!rc && e != cudaSuccess)
            rc = cuda_fail(err, e, "cudaStreamSynchronize", __FILE__, __LINE__);
        if (!rc)
            rt_gpu_views(&tmp, &du->lay, (uintptr_t)du->buf, du->views);
    }
    if (n_held)
        rt_store_slot_free(s, &tmp);
    free(held);
    return rc;
}

/* ---- sequences ---- */

static int cu_seq_init(rt_cuda *g, rt_seq *s, airllm_err *err)
{
    seq_dev *d = (seq_dev *)calloc(1, sizeof *d);
    if (!d)
        return airllm_errf(err, "out of memory");
    s->dev = d;
    d->bytes = sizeof(float) * (uint64_t)g->n_layers * s->ctx * g->kvd;
    d->host = g->kv_host || g->unified;
    if (d->host) {
        /* mapped pinned memory: the kernels read it over the bus (in place
         * on an integrated GPU) */
        void *k = NULL, *v = NULL;
        if (cudaHostAlloc(&k, d->bytes, cudaHostAllocMapped) != cudaSuccess ||
            cudaHostAlloc(&v, d->bytes, cudaHostAllocMapped) != cudaSuccess) {
            cudaGetLastError();
            cudaFreeHost(k);
            return airllm_errf(err, "out of pinned host memory for a KV cache of %zu "
                                    "positions",
                               s->ctx);
        }
        d->hk = k;
        d->hv = v;
        CU(cudaHostGetDevicePointer((void **)&d->k, k, 0));
        CU(cudaHostGetDevicePointer((void **)&d->v, v, 0));
        return 0;
    }
    char what[96];
    snprintf(what, sizeof what, "a KV cache of %zu positions", s->ctx);
    if (dev_alloc(g, (void **)&d->k, d->bytes, what, err))
        return -1;
    if (dev_alloc(g, (void **)&d->v, d->bytes, what, err)) {
        dev_free(g, d->k, d->bytes);
        d->k = NULL;
        return -1;
    }
    g->kv_bytes += 2 * d->bytes;
    return 0;
}

static void cu_seq_free(rt_cuda *g, rt_seq *s)
{
    seq_dev *d = (seq_dev *)s->dev;
    if (!d)
        return;
    if (d->host) {
        cudaFreeHost(d->hk);
        cudaFreeHost(d->hv);
    } else {
        if (d->k && d->v)
            g->kv_bytes -= 2 * d->bytes;
        dev_free(g, d->k, d->bytes);
        dev_free(g, d->v, d->bytes);
    }
    free(d);
    s->dev = NULL;
}

/* ---- work buffers ---- */

static void work_free(rt_cuda *g)
{
    float **f[] = {&g->x,      &g->xb,   &g->q,      &g->k,         &g->v,     &g->att,
                   &g->hb,     &g->hb2,  &g->acc,    &g->router,    &g->xg,    &g->vec,
                   &g->vec2,   &g->xl,   &g->logits, &g->wts,       &g->deq,   &g->fused,
                   &g->rope_cs, &g->tok_scale, &g->rr_inv};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        cudaFree(*f[i]);
        *f[i] = NULL;
    }
    void **p[] = {(void **)&g->tok_pos, (void **)&g->tok_seq, (void **)&g->idx,
                  (void **)&g->seq_k, (void **)&g->seq_v, (void **)&g->seq_ctx,
                  (void **)&g->rr_n};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) {
        cudaFree(*p[i]);
        *p[i] = NULL;
    }
    g->alloc_bytes -= g->work_bytes;
    g->work_bytes = 0;
    g->cap = g->cap_seqs = 0;
}

/* Activations for n tokens of n_seqs sequences (as the CPU's
 * ensure_buffers), and the dequantization scratch for SGEMM: up to 16M
 * floats, a slice of rows of the largest matrix. */
static int work_ensure(rt_cuda *g, const rt_model *m, size_t n, size_t n_seqs, airllm_err *err)
{
    if (n <= g->cap && n_seqs <= g->cap_seqs)
        return 0;
    work_free(g);
    const rt_config *c = &m->cfg;
    size_t H = (size_t)c->hidden, Q = (size_t)c->n_heads * c->head_dim, KV = g->kvd,
           I = (size_t)c->intermediate, E = c->n_experts ? (size_t)c->n_experts : 1;
    size_t V = (size_t)c->vocab, W = H > Q ? H : Q, big = I > W ? I : W;
    /* fused q | k | v (and its bias, through vec2) and gate | up outputs */
    size_t F = Q + 2 * KV > 2 * I ? Q + 2 * KV : 2 * I;
    big = Q + 2 * KV > big ? Q + 2 * KV : big;
    n = n > g->cap ? n : g->cap;
    n_seqs = n_seqs > g->cap_seqs ? n_seqs : g->cap_seqs;
    size_t max_cols = big > H ? big : H;
    /* MoE: an entry per (token, expert picked); the final norm: one per
     * sequence (<= n) */
    size_t per_tok = c->n_experts_used > 1 ? (size_t)c->n_experts_used : 1;
    g->deq_elems = (size_t)16 << 20;
    if (g->deq_elems < max_cols * 8)
        g->deq_elems = max_cols * 8;
    struct {
        void **p;
        uint64_t bytes;
    } want[] = {
        {(void **)&g->x, 4 * n * H},          {(void **)&g->xb, 4 * n * W},
        {(void **)&g->q, 4 * n * Q},          {(void **)&g->k, 4 * n * KV},
        {(void **)&g->v, 4 * n * KV},         {(void **)&g->att, 4 * n * W},
        {(void **)&g->hb, 4 * n * I},         {(void **)&g->hb2, 4 * n * (I > H ? I : H)},
        {(void **)&g->acc, 4 * n * H},        {(void **)&g->router, 4 * n * E},
        {(void **)&g->xg, 4 * n * H},         {(void **)&g->vec, 4 * (big + 64)},
        {(void **)&g->vec2, 4 * (big + 64)},  {(void **)&g->xl, 4 * n_seqs * H},
        {(void **)&g->logits, 4 * n_seqs * V}, {(void **)&g->wts, 4 * n * per_tok},
        {(void **)&g->deq, 4 * g->deq_elems}, {(void **)&g->tok_pos, 4 * n},
        {(void **)&g->tok_seq, 4 * n},        {(void **)&g->idx, 4 * n * per_tok},
        {(void **)&g->seq_k, 8 * n_seqs},     {(void **)&g->seq_v, 8 * n_seqs},
        {(void **)&g->seq_ctx, 8 * n_seqs},   {(void **)&g->fused, 4 * n * F},
        {(void **)&g->rope_cs, 4 * n * (size_t)c->head_dim}, {(void **)&g->tok_scale, 4 * n},
        {(void **)&g->rr_inv, 4 * n_seqs * (size_t)c->head_dim}, {(void **)&g->rr_n, 4 * n_seqs},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        if (dev_alloc(g, want[i].p, want[i].bytes, "activations", err)) {
            work_free(g);
            return -1;
        }
        g->work_bytes += want[i].bytes;
    }
    g->cap = n;
    g->cap_seqs = n_seqs;
    return 0;
}

/* ---- the forward pass ---- */

typedef struct {
    rt_cuda *g;
    rt_model *m;
    size_t n;            /* tokens */
    int *h_idx;          /* host scratch: an entry per (token, expert picked) */
    float *h_wts;
    float *h_router;
    int rr_maxp;         /* InternLM v1: the most cached keys a sequence turns; 0 none */
    size_t n_seqs;
} fwd;

/* rt_slot_find / rt_slot_need over an array of device views. */
static rt_slot views_slot(const rt_tensor *v, size_t n_t)
{
    rt_slot sl;
    memset(&sl, 0, sizeof sl);
    sl.tensors = (rt_tensor *)v;
    sl.n_tensors = n_t;
    return sl;
}

static const rt_tensor *find(const rt_tensor *v, size_t n_t, const char *unit, const char *suffix,
                             uint64_t rows, uint64_t cols, airllm_err *err)
{
    rt_slot sl = views_slot(v, n_t);
    return rt_slot_need(&sl, unit, suffix, rows, cols, err);
}

static int rmsnorm(rt_cuda *g, float *out, const float *in, const rt_tensor *w, size_t rows,
                   size_t width, float eps, airllm_err *err)
{
    if (vec(g, w, g->vec, width, err))
        return -1;
    k_rmsnorm<<<(unsigned)rows, 256, 0, g->compute>>>(out, in, g->vec, (int)width, eps);
    KCHECK();
    return 0;
}

static int add_bias(rt_cuda *g, const rt_tensor *b, float *y, size_t n, size_t dim,
                    airllm_err *err)
{
    if (!b)
        return 0;
    if (vec(g, b, g->vec2, dim, err))
        return -1;
    k_add_bias<<<blocks(n * dim, 256), 256, 0, g->compute>>>(y, g->vec2, n, dim);
    KCHECK();
    return 0;
}

static int mlp(rt_cuda *g, const rt_tensor *gt, const rt_tensor *up, const rt_tensor *dn,
               const float *h, size_t n, float *out, airllm_err *err)
{
    size_t I = (size_t)gt->rows;
    if (mm(g, gt, h, n, g->hb, err) || mm(g, up, h, n, g->hb2, err))
        return -1;
    k_silu_mul<<<blocks(n * I, 256), 256, 0, g->compute>>>(g->hb, g->hb2, n * I);
    KCHECK();
    return mm(g, dn, g->hb, n, out, err);
}

/* The device views of a slot's tensors, re-derived after experts arrive. */
typedef struct {
    rt_tensor *v;
    size_t n;
    rt_slot *host;       /* streamed MoE: the host slot experts are read into */
    const rt_unit *unit;
    const rt_gpu_layout *lay;
    void *dev;           /* its device buffer */
} unit_views;

/* Mixtral's experts on the device; routing on the host (the router logits
 * are n x n_experts floats). A streamed layer's experts are read and copied
 * only when picked. Result in g->xb. */
static int moe(fwd *f, unit_views *uv, const char *unit, const rt_tensor *router,
               airllm_err *err)
{
    rt_cuda *g = f->g;
    const rt_config *c = &f->m->cfg;
    size_t n = f->n, H = (size_t)c->hidden, E = (size_t)c->n_experts,
           K = (size_t)c->n_experts_used;
    if (mm(g, router, g->xb, n, g->router, err))
        return -1;
    CU(cudaMemcpyAsync(f->h_router, g->router, sizeof(float) * n * E, cudaMemcpyDeviceToHost,
                       g->compute));
    CU(cudaStreamSynchronize(g->compute));
    int *sel = (int *)malloc(sizeof(int) * n * K);
    float *wsel = (float *)malloc(sizeof(float) * n * K);
    if (!sel || !wsel) {
        free(sel);
        free(wsel);
        return airllm_errf(err, "out of memory");
    }
    rt_moe_route(c, f->h_router, n, sel, wsel);
    /* Each expert's tokens and weights, grouped by expert, uploaded once:
     * expert e has entries [off[e], off[e + 1]). */
    size_t *off = (size_t *)malloc(sizeof(size_t) * (E + 1));
    if (!off) {
        free(sel);
        free(wsel);
        return airllm_errf(err, "out of memory");
    }
    size_t tot = 0;
    for (size_t e = 0; e < E; e++) {
        off[e] = tot;
        for (size_t t = 0; t < n; t++)
            for (size_t k = 0; k < K; k++)
                if (sel[t * K + k] == (int)e) {
                    f->h_idx[tot] = (int)t;
                    f->h_wts[tot++] = wsel[t * K + k];
                }
    }
    off[E] = tot;
    int rc = 0;
    cudaError_t ce = cudaMemsetAsync(g->acc, 0, sizeof(float) * n * H, g->compute);
    if (ce == cudaSuccess)
        ce = cudaMemcpyAsync(g->idx, f->h_idx, sizeof(int) * tot, cudaMemcpyHostToDevice,
                             g->compute);
    if (ce == cudaSuccess)
        ce = cudaMemcpyAsync(g->wts, f->h_wts, sizeof(float) * tot, cudaMemcpyHostToDevice,
                             g->compute);
    if (ce != cudaSuccess)
        rc = cuda_fail(err, ce, "cudaMemcpyAsync", __FILE__, __LINE__);
    for (size_t e = 0; !rc && e < E; e++) {
        int cnt = (int)(off[e + 1] - off[e]);
        const int *idx = g->idx + off[e];
        const float *wts = g->wts + off[e];
        if (!cnt)
            continue;
        const rt_tensor *w[3];
        rt_slot vs = views_slot(uv->v, uv->n);
        if (rt_layer_expert(&vs, unit, c, e, w, err)) {
            rc = -1;
            break;
        }
        for (int i = 0; i < 3 && !rc; i++) {
            if (uv->host && !uv->host->tensors[w[i]->index].loaded) {
                /* read from disk into the host slot, copied in order on the
                 * compute stream; the layer's end synchronizes before the
                 * slot is given back */
                if (rt_store_ensure(&f->m->store, uv->host, &uv->host->tensors[w[i]->index],
                                    err) ||
                    (uv->dev && copy_slot(g, uv->unit, uv->host, uv->lay, (long)w[i]->index,
                                          uv->dev, g->compute, err)))
                    rc = -1;
                else if (uv->dev)
                    rt_gpu_views(uv->host, uv->lay, (uintptr_t)uv->dev, uv->v);
                else
                    uv->v[w[i]->index] = uv->host->tensors[w[i]->index];
                w[i] = &uv->v[w[i]->index];
            }
        }
        if (rc)
            break;
        k_gather<<<blocks((size_t)cnt * H, 256), 256, 0, g->compute>>>(g->xg, g->xb, idx, cnt,
                                                                         (int)H);
        if ((ce = cudaGetLastError()) != cudaSuccess) {
            rc = cuda_fail(err, ce, "k_gather", __FILE__, __LINE__);
            break;
        }
        if (mlp(g, w[0], w[1], w[2], g->xg, (size_t)cnt, g->att, err)) {
            rc = -1;
            break;
        }
        k_scatter_add<<<blocks((size_t)cnt * H, 256), 256, 0, g->compute>>>(
            g->acc, g->att, idx, wts, cnt, (int)H);
        if ((ce = cudaGetLastError()) != cudaSuccess)
            rc = cuda_fail(err, ce, "k_scatter_add", __FILE__, __LINE__);
    }
    /* h_idx/h_wts are pageable: make sure the upload has read them before
     * the next layer overwrites them */
    if (!rc && (ce = cudaStreamSynchronize(g->compute)) != cudaSuccess)
        rc = cuda_fail(err, ce, "cudaStreamSynchronize", __FILE__, __LINE__);
    free(off);
    free(sel);
    free(wsel);
    if (rc)
        return -1;
    CU(cudaMemcpyAsync(g->xb, g->acc, sizeof(float) * n * H, cudaMemcpyDeviceToDevice,
                       g->compute));
    return 0;
}

/* InternLM v1 (RT_ROPE_DYNAMIC_V1): per sequence, its cached keys' and
 * the new inverse frequencies, uploaded for k_rerotate; f->rr_maxp 0 when
 * no sequence's base moved. */
static int rerotate_tables(rt_cuda *g, const rt_config *c, rt_seq **seqs, size_t n_seqs, fwd *f,
                           airllm_err *err)
{
    size_t half = (size_t)c->rope_dim / 2;
    float *inv = (float *)malloc(sizeof(float) * 2 * half * n_seqs);
    int *nk = (int *)malloc(sizeof(int) * n_seqs);
    if (!inv || !nk) {
        free(inv);
        free(nk);
        return airllm_errf(err, "out of memory");
    }
    f->rr_maxp = 0;
    f->n_seqs = n_seqs;
    for (size_t i = 0; i < n_seqs; i++) {
        float *io = inv + i * 2 * half, *in = io + half;
        rt_rope_inv(c, seqs[i]->n_cached, 0, io);
        rt_rope_inv(c, seqs[i]->n_ids, 0, in);
        bool moved = seqs[i]->n_cached && memcmp(io, in, sizeof(float) * half) != 0;
        nk[i] = moved ? (int)seqs[i]->n_cached : 0;
        f->rr_maxp = nk[i] > f->rr_maxp ? nk[i] : f->rr_maxp;
    }
    int rc = 0;
    cudaError_t e = cudaMemcpy(g->rr_inv, inv, sizeof(float) * 2 * half * n_seqs,
                               cudaMemcpyHostToDevice);
    if (e == cudaSuccess)
        e = cudaMemcpy(g->rr_n, nk, sizeof(int) * n_seqs, cudaMemcpyHostToDevice);
    if (e != cudaSuccess)
        rc = cuda_fail(err, e, "cudaMemcpy", __FILE__, __LINE__);
    free(inv);
    free(nk);
    return rc;
}

/* Families whose RoPE the host tabulates per token (rt_rope_token: the
 * scalings depend on each sequence's length) or whose queries it scales
 * (Qwen logn); plain RoPE, partial or not, is k_rope's. */
static bool rope_tables(const rt_config *c)
{
    return c->rope_kind != RT_ROPE_PLAIN || c->logn_attn;
}

static int layer(fwd *f, unit_views *uv, const char *unit, int li, airllm_err *err)
{
    rt_cuda *g = f->g;
    const rt_config *c = &f->m->cfg;
    size_t n = f->n, H = (size_t)c->hidden, hd = (size_t)c->head_dim;
    size_t Q = (size_t)c->n_heads * hd, KV = g->kvd;
    rt_slot vs = views_slot(uv->v, uv->n);
    rt_layer l;
    if (rt_layer_bind(&vs, unit, c, &l, err))
        return -1;
    if (rmsnorm(g, g->xb, g->x, l.attn_norm, n, H, c->rms_eps, err))
        return -1;
    if (l.wqkv) {
        /* ChatGLM, Baichuan, Qwen v1, InternLM2: one matmul of the fused
         * matrix, then its output rows split by the layout (never the
         * weights) */
        if (mm(g, l.wqkv, g->xb, n, g->fused, err) ||
            add_bias(g, l.bqkv, g->fused, n, Q + 2 * KV, err))
            return -1;
        k_qkv_split<<<blocks(n * (Q + 2 * KV), 256), 256, 0, g->compute>>>(
            g->fused, g->q, g->k, g->v, (int)n, c->n_heads, c->n_kv_heads, (int)hd,
            c->qkv_layout == RT_QKV_GROUPED);
        KCHECK();
    } else if (mm(g, l.wq, g->xb, n, g->q, err) || mm(g, l.wk, g->xb, n, g->k, err) ||
               mm(g, l.wv, g->xb, n, g->v, err) || add_bias(g, l.bq, g->q, n, Q, err) ||
               add_bias(g, l.bk, g->k, n, KV, err) || add_bias(g, l.bv, g->v, n, KV, err)) {
        return -1;
    }
    /* Qwen3: per head, rows of hd */
    if (l.q_norm && (rmsnorm(g, g->q, g->q, l.q_norm, n * c->n_heads, hd, c->rms_eps, err) ||
                     rmsnorm(g, g->k, g->k, l.k_norm, n * c->n_kv_heads, hd, c->rms_eps, err)))
        return -1;
    size_t half = (size_t)c->rope_dim / 2;
    if (c->alibi) {
        /* Baichuan 13B: no RoPE; k_attention adds the biases */
    } else if (rope_tables(c)) {
        k_rope_cs<<<blocks(n * c->n_heads * half, 256), 256, 0, g->compute>>>(
            g->q, (int)n, c->n_heads, (int)hd, c->rope_dim, g->rope_cs);
        KCHECK();
        k_rope_cs<<<blocks(n * c->n_kv_heads * half, 256), 256, 0, g->compute>>>(
            g->k, (int)n, c->n_kv_heads, (int)hd, c->rope_dim, g->rope_cs);
        KCHECK();
        if (c->logn_attn) {
            k_scale_rows<<<blocks(n * Q, 256), 256, 0, g->compute>>>(g->q, (int)n, (int)Q,
                                                                      g->tok_scale);
            KCHECK();
        }
    } else {
        k_rope<<<blocks(n * c->n_heads * half, 256), 256, 0, g->compute>>>(
            g->q, (int)n, c->n_heads, (int)hd, c->rope_dim, c->rope_pairs_adjacent, g->tok_pos,
            g->inv_freq);
        KCHECK();
        k_rope<<<blocks(n * c->n_kv_heads * half, 256), 256, 0, g->compute>>>(
            g->k, (int)n, c->n_kv_heads, (int)hd, c->rope_dim, c->rope_pairs_adjacent,
            g->tok_pos, g->inv_freq);
        KCHECK();
    }
    k_kv_store<<<blocks(n * KV, 256), 256, 0, g->compute>>>(
        g->k, g->v, (int)n, (int)KV, li, g->tok_seq, g->tok_pos, g->seq_k, g->seq_v,
        g->seq_ctx);
    KCHECK();
    if (f->rr_maxp) {
        int rh = c->rope_dim / 2;
        k_rerotate<<<blocks((size_t)f->n_seqs * f->rr_maxp * rh, 256), 256, 0, g->compute>>>(
            g->seq_k, g->seq_ctx, g->rr_n, g->rr_inv, (int)f->n_seqs, f->rr_maxp, li, (int)KV,
            (int)hd, c->n_kv_heads, rh);
        KCHECK();
    }
    size_t shmem = sizeof(float) * (hd + ATT_CHUNK + 32);
    k_attention<<<(unsigned)(n * c->n_heads), ATT_THREADS, shmem, g->compute>>>(
        g->q, g->att, c->n_heads, c->n_kv_heads, (int)hd, li, c->sliding_window,
        1.0f / sqrtf((float)hd), g->alibi, g->tok_seq, g->tok_pos, g->seq_k, g->seq_v,
        g->seq_ctx);
    KCHECK();
    if (mm(g, l.wo, g->att, n, g->xb, err) || add_bias(g, l.bo, g->xb, n, H, err))
        return -1;
    k_add<<<blocks(n * H, 256), 256, 0, g->compute>>>(g->x, g->xb, n * H);
    KCHECK();
    if (rmsnorm(g, g->xb, g->x, l.ffn_norm, n, H, c->rms_eps, err))
        return -1;
    if (l.gate_up) {
        /* ChatGLM: dense_h_to_4h whole, then silu(first half) * second half */
        size_t I = (size_t)c->intermediate;
        if (mm(g, l.gate_up, g->xb, n, g->fused, err))
            return -1;
        k_swiglu_halves<<<blocks(n * I, 256), 256, 0, g->compute>>>(g->fused, g->hb, (int)n,
                                                                      (int)I);
        KCHECK();
        if (mm(g, l.down, g->hb, n, g->xb, err))
            return -1;
    } else if (l.router ? moe(f, uv, unit, l.router, err)
                        : mlp(g, l.gate, l.up, l.down, g->xb, n, g->xb, err)) {
        return -1;
    }
    k_add<<<blocks(n * H, 256), 256, 0, g->compute>>>(g->x, g->xb, n * H);
    KCHECK();
    return 0;
}

static int cu_forward(rt_cuda *g, rt_model *m, rt_seq **seqs, size_t n_seqs, float *logits,
                      airllm_err *err)
{
    const rt_config *c = &m->cfg;
    rt_store *st = &m->store;
    size_t H = (size_t)c->hidden, n = 0;
    for (size_t i = 0; i < n_seqs; i++)
        n += seqs[i]->n_ids - seqs[i]->n_cached;
    CU(cudaSetDevice(g->dev));
    if (work_ensure(g, m, n, n_seqs, err))
        return -1;
    double t0 = airllm_now();
    /* the step's tokens: sequence, position, id; each sequence's last */
    int *tpos = (int *)malloc(sizeof(int) * n), *tseq = (int *)malloc(sizeof(int) * n);
    int32_t *ids = (int32_t *)malloc(sizeof(int32_t) * n);
    int *last = (int *)malloc(sizeof(int) * n_seqs);
    float **sk = (float **)malloc(sizeof(float *) * n_seqs);
    float **sv = (float **)malloc(sizeof(float *) * n_seqs);
    long long *sctx = (long long *)malloc(sizeof(long long) * n_seqs);
    size_t per_tok = c->n_experts_used > 1 ? (size_t)c->n_experts_used : 1;
    fwd f = {g, m, n, (int *)malloc(sizeof(int) * n * per_tok),
             (float *)malloc(sizeof(float) * n * per_tok),
             (float *)malloc(sizeof(float) * n * (c->n_experts ? c->n_experts : 1)), 0, 0};
    bool tab = rope_tables(c);
    float *cs = tab ? (float *)malloc(sizeof(float) * n * (size_t)c->head_dim) : NULL;
    float *tscale = tab ? (float *)malloc(sizeof(float) * n) : NULL;
    int rc = tpos && tseq && ids && last && sk && sv && sctx && f.h_idx && f.h_wts && f.h_router &&
                     (!tab || (cs && tscale))
                 ? 0
                 : airllm_errf(err, "out of memory");
    size_t k = 0;
    for (size_t i = 0; !rc && i < n_seqs; i++) {
        seq_dev *d = (seq_dev *)seqs[i]->dev;
        sk[i] = d->k;
        sv[i] = d->v;
        sctx[i] = (long long)seqs[i]->ctx;
        for (size_t p = seqs[i]->n_cached; p < seqs[i]->n_ids; p++, k++) {
            tseq[k] = (int)i;
            tpos[k] = (int)p;
            ids[k] = seqs[i]->ids[p];
            if (tab) {
                rt_rope_token(c, p, seqs[i]->n_ids, seqs[i]->n_prompt,
                              cs + k * (size_t)c->head_dim);
                tscale[k] = rt_logn_scale(c, p);
            }
        }
        last[i] = (int)k - 1;
    }
    /* embeddings on the host (rows read from the file, or the host's copy) */
    if (!rc)
        rc = rt_embed(m, ids, n, m->x, err);
    struct {
        void *dst;
        const void *src;
        size_t bytes;
    } up[] = {
        {g->x, m->x, sizeof(float) * n * H}, {g->tok_pos, tpos, sizeof(int) * n},
        {g->tok_seq, tseq, sizeof(int) * n}, {g->seq_k, sk, sizeof(float *) * n_seqs},
        {g->seq_v, sv, sizeof(float *) * n_seqs}, {g->seq_ctx, sctx, sizeof(long long) * n_seqs},
    };
    for (size_t i = 0; !rc && i < sizeof up / sizeof up[0] + (tab ? 2 : 0); i++) {
        if (i >= sizeof up / sizeof up[0]) { /* the per-token RoPE tables */
            bool first = i == sizeof up / sizeof up[0];
            cudaError_t e = cudaMemcpyAsync(
                first ? (void *)g->rope_cs : (void *)g->tok_scale, first ? (void *)cs : (void *)tscale,
                first ? sizeof(float) * n * (size_t)c->head_dim : sizeof(float) * n,
                cudaMemcpyHostToDevice, g->compute);
            if (e != cudaSuccess)
                rc = cuda_fail(err, e, "cudaMemcpyAsync", __FILE__, __LINE__);
            continue;
        }
        cudaError_t e = cudaMemcpyAsync(up[i].dst, up[i].src, up[i].bytes,
                                        cudaMemcpyHostToDevice, g->compute);
        if (e != cudaSuccess)
            rc = cuda_fail(err, e, "cudaMemcpyAsync", __FILE__, __LINE__);
    }
    /* InternLM v1: which sequences' cached keys turn this step, and how */
    if (!rc && c->rope_kind == RT_ROPE_DYNAMIC_V1)
        rc = rerotate_tables(g, c, seqs, n_seqs, &f, err);
    /* the units in execution order: held ones in place; streamed ones from
     * the host slot into stream buffer b while the previous unit computes */
    for (size_t ki = 0; !rc && ki < g->plan.n_units; ki++) {
        size_t u = g->plan.units[ki];
        rt_unit *un = &st->units[u];
        dev_unit *du = &g->units[u];
        unit_views uv;
        memset(&uv, 0, sizeof uv);
        uv.unit = un;
        uv.lay = &du->lay;
        uv.n = un->hdr.n_tensors;
        int b = -1;
        rt_slot *sl = NULL;
        double c0 = airllm_now();
        if (g->plan.held[u]) {
            uv.v = du->views;
        } else {
            if ((rc = rt_store_acquire(st, u, &sl, err)))
                break;
            if (g->unified) {
                /* the GPU reads the pinned slot in place */
                uv.v = g->sviews[0] ? g->sviews[0] : NULL;
                if (!uv.v) {
                    g->sviews[0] = (rt_tensor *)calloc(g->max_tensors + 1, sizeof(rt_tensor));
                    uv.v = g->sviews[0];
                }
                if (!uv.v) {
                    rc = airllm_errf(err, "out of memory");
                    rt_store_release(st, u);
                    break;
                }
                memcpy(uv.v, sl->tensors, sizeof(rt_tensor) * uv.n);
                uv.host = un->moe ? sl : NULL;
            } else {
                b = g->next_buf;
                g->next_buf ^= 1;
                cudaError_t e = cudaSuccess;
                if (g->done_recorded[b])
                    e = cudaStreamWaitEvent(g->copy, g->done[b], 0);
                if (e == cudaSuccess)
                    e = cudaEventRecord(g->copy_start[b], g->copy);
                if (e != cudaSuccess)
                    rc = cuda_fail(err, e, "stream ordering", __FILE__, __LINE__);
                if (!rc)
                    rc = copy_slot(g, un, sl, &du->lay, -1, g->sbuf[b], g->copy, err);
                if (!rc && (e = cudaEventRecord(g->copied[b], g->copy)) == cudaSuccess)
                    e = cudaStreamWaitEvent(g->compute, g->copied[b], 0);
                if (!rc && e != cudaSuccess)
                    rc = cuda_fail(err, e, "stream ordering", __FILE__, __LINE__);
                uv.v = g->sviews[b];
                uv.dev = g->sbuf[b];
                uv.host = un->moe ? sl : NULL;
                if (!rc)
                    rt_gpu_views(sl, &du->lay, (uintptr_t)g->sbuf[b], uv.v);
            }
        }
        if (!rc) {
            if (un->kind == AIRLLM_UNIT_LAYER) {
                rc = layer(&f, &uv, un->file, un->layer, err);
            } else if (un->kind == AIRLLM_UNIT_NORM) {
                const rt_tensor *nw = find(uv.v, uv.n, un->file, c->norm_name, 1, H, err);
                cudaError_t e = cudaMemcpyAsync(g->idx, last, sizeof(int) * n_seqs,
                                                cudaMemcpyHostToDevice, g->compute);
                if (!nw)
                    rc = -1;
                else if (e != cudaSuccess)
                    rc = cuda_fail(err, e, "cudaMemcpyAsync", __FILE__, __LINE__);
                if (!rc) {
                    k_gather<<<blocks(n_seqs * H, 256), 256, 0, g->compute>>>(
                        g->xg, g->x, g->idx, (int)n_seqs, (int)H);
                    rc = rmsnorm(g, g->xl, g->xg, nw, n_seqs, H, c->rms_eps, err);
                }
            } else {
                const char *name = un->kind == AIRLLM_UNIT_LM_HEAD ? c->head_name
                                                                   : c->embed_name;
                const rt_tensor *hw = find(uv.v, uv.n, un->file, name, (uint64_t)c->vocab, H, err);
                rc = hw ? mm(g, hw, g->xl, n_seqs, g->logits, err) : -1;
            }
        }
        if (b >= 0) {
            if (rc) /* copies may be queued without copied[b] recorded after them */
                cudaStreamSynchronize(g->copy);
            cudaError_t e = cudaEventRecord(g->done[b], g->compute);
            g->done_recorded[b] = e == cudaSuccess;
            /* the host slot is free once its bytes are on the device */
            cudaError_t e2 = cudaEventSynchronize(g->copied[b]);
            float ms = 0;
            if (e2 == cudaSuccess && cudaEventElapsedTime(&ms, g->copy_start[b], g->copied[b]) ==
                                         cudaSuccess)
                g->h2d_s += ms * 1e-3;
            if (!rc && (e != cudaSuccess || e2 != cudaSuccess))
                rc = cuda_fail(err, e != cudaSuccess ? e : e2, "event", __FILE__, __LINE__);
        }
        if (sl && (g->unified || uv.host)) {
            /* kernels read the slot (unified) or experts were copied from
             * it on the compute stream */
            cudaError_t e = cudaStreamSynchronize(g->compute);
            if (!rc && e != cudaSuccess)
                rc = cuda_fail(err, e, "cudaStreamSynchronize", __FILE__, __LINE__);
        }
        if (sl)
            rt_store_release(st, u);
        st->unit_compute_s[u] += airllm_now() - c0;
    }
    if (!rc) {
        cudaError_t e = cudaMemcpyAsync(logits, g->logits, sizeof(float) * n_seqs * c->vocab,
                                        cudaMemcpyDeviceToHost, g->compute);
        if (e == cudaSuccess)
            e = cudaStreamSynchronize(g->compute);
        if (e != cudaSuccess)
            rc = cuda_fail(err, e, "copying the logits back", __FILE__, __LINE__);
    } else {
        cudaStreamSynchronize(g->compute);
        cudaStreamSynchronize(g->copy);
    }
    if (!rc) {
        for (size_t i = 0; i < n_seqs; i++)
            seqs[i]->n_cached = seqs[i]->n_ids;
        size_t fr = 0, tot = 0;
        if (cudaMemGetInfo(&fr, &tot) == cudaSuccess && tot - fr > g->peak_used)
            g->peak_used = tot - fr;
    }
    m->compute_s += airllm_now() - t0;
    free(tpos);
    free(tseq);
    free(ids);
    free(last);
    free(sk);
    free(sv);
    free(sctx);
    free(cs);
    free(tscale);
    free(f.h_idx);
    free(f.h_wts);
    free(f.h_router);
    return rc;
}

/* ---- info, close ---- */

static void cu_get_info(const rt_cuda *g, rt_cuda_info *o)
{
    memset(o, 0, sizeof *o);
    if (!g)
        return;
    snprintf(o->device, sizeof o->device, "cuda:%d %.200s (sm_%d%d, %.1f GiB)", g->dev,
             g->prop.name, g->prop.major, g->prop.minor, (double)g->total_mem / 1073741824.0);
    o->unified = g->unified;
    o->budget = g->budget;
    o->held_bytes = g->held_bytes;
    o->stream_bytes = g->sbuf[0] ? g->plan.stream_bytes : 0;
    o->n_held = g->n_held;
    o->n_streamed = g->n_streamed;
    o->kv_bytes = g->kv_bytes;
    o->work_bytes = g->work_bytes;
    o->peak_bytes = g->peak_bytes;
    o->peak_used = g->peak_used;
    o->h2d_bytes = g->h2d_bytes;
    o->h2d_s = g->h2d_s;
}

static void cu_close(rt_cuda *g)
{
    if (!g)
        return;
    if (g->compute)
        cudaStreamSynchronize(g->compute);
    if (g->copy)
        cudaStreamSynchronize(g->copy);
    work_free(g);
    for (int b = 0; b < 2; b++) {
        cudaFree(g->sbuf[b]);
        free(g->sviews[b]);
        if (g->copy_start[b])
            cudaEventDestroy(g->copy_start[b]);
        if (g->copied[b])
            cudaEventDestroy(g->copied[b]);
        if (g->done[b])
            cudaEventDestroy(g->done[b]);
    }
    for (size_t k = 0; g->units && k < g->plan.n_units; k++) {
        dev_unit *du = &g->units[g->plan.units[k]];
        cudaFree(du->buf);
        free(du->views);
        if (du->has_lay)
            rt_gpu_layout_free(&du->lay);
    }
    free(g->units);
    cudaFree(g->inv_freq);
    cudaFree(g->alibi);
    if (g->blas)
        cublasDestroy(g->blas);
    if (g->compute)
        cudaStreamDestroy(g->compute);
    if (g->copy)
        cudaStreamDestroy(g->copy);
    rt_gpu_plan_free(&g->plan);
    free(g);
}

/* ---- the module's one exported symbol (runner/rt_cuda_loader.c) ---- */

extern "C" __attribute__((visibility("default"))) const rt_cuda_backend *airllm_cuda_backend(void)
{
    static const rt_cuda_backend b = {
        RT_CUDA_ABI, cu_open, cu_load, cu_seq_init, cu_seq_free, cu_forward, cu_get_info, cu_close,
    };
    return &b;
}
