/* Device kernels of Qwen v1, InternLM and InternLM2 (their host-side
 * references are in runner/rt_family_a.c), included by rt_cuda.cu only
 * (after rope_pair): RoPE from per-token cos/sin tables with Qwen's logn
 * query scale, and InternLM v1's re-rotation of cached keys.
 * Shapes: n tokens, Q = heads * hd, KV = kv_heads * hd. */
#ifndef RT_FAMILY_A_KERNELS_CUH
#define RT_FAMILY_A_KERNELS_CUH

/* RoPE from per-token tables (Qwen v1, InternLM, InternLM2 scalings): the
 * first rd dims of each head of v [n, heads, hd] rotate by cs [n, hd] (cos
 * at i, sin at rd / 2 + i, as rt_rope_token writes them). */
__global__ void k_rope_cs(float *v, int n, int heads, int hd, int rd, const float *cs)
{
    int half = rd / 2;
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)n * heads * half)
        return;
    int f = (int)(i % half);
    size_t th = i / half; /* token * heads + head */
    int t = (int)(th / heads);
    float c = cs[(size_t)t * hd + f], s = cs[(size_t)t * hd + half + f];
    rope_pair(v + th * hd, f, half, 0, c, s);
}

/* Qwen logn: row t of v [n, width] times scale[t]. */
__global__ void k_scale_rows(float *v, int n, int width, const float *scale)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < (size_t)n * width)
        v[i] *= scale[i / width];
}

/* InternLM v1: layer's cached keys of each sequence s, positions p <
 * nk[s], turned from the rotation by inv[s][0][i] to that by inv[s][1][i]
 * (rt_rerotate_keys is the reference). */
__global__ void k_rerotate(float *const *seq_k, const long long *seq_ctx, const int *nk,
                           const float *inv, int n_seqs, int maxp, int layer, int kvd, int hd,
                           int kv_heads, int half)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)n_seqs * maxp * half)
        return;
    int f = (int)(i % half);
    int p = (int)((i / half) % maxp);
    int s = (int)(i / ((size_t)half * maxp));
    if (p >= nk[s])
        return;
    const float *io = inv + (size_t)s * 2 * half, *in = io + half;
    float d = (float)p * in[f] - (float)p * io[f];
    float c = cosf(d), sn = sinf(d);
    float *row = seq_k[s] + ((size_t)layer * (size_t)seq_ctx[s] + (size_t)p) * kvd;
    for (int h = 0; h < kv_heads; h++)
        rope_pair(row + (size_t)h * hd, f, half, 0, c, sn);
}

#endif
