/* Fused weight matrices on the CPU: each is used whole by one matmul (so
 * every encoding, raw, zstd-decoded or quantized, and every residency works
 * unchanged, and no weight is copied), and the output activations are
 * split. Layouts (rows of the matrix = columns of the output):
 *   wqkv [Q + 2 KV, H]: by c->qkv_layout: q | k | v (ChatGLM's
 *                       query_key_value, Baichuan's W_pack, Qwen's c_attn)
 *                       or grouped per KV head (InternLM2's wqkv);
 *                       bqkv [Q + 2 KV] its bias or NULL
 *   gate_up [2 I, H]:   gate | up (ChatGLM's dense_h_to_4h)
 * The output goes through m->fused [n, max(Q + 2 KV, 2 I)]. */
#include "rt.h"

#include <math.h>
#include <string.h>

void rt_qkv_split(const rt_config *c, const float *y, float *q, float *k, float *v)
{
    size_t hd = (size_t)c->head_dim, Q = (size_t)c->n_heads * hd;
    size_t KV = (size_t)c->n_kv_heads * hd;
    if (c->qkv_layout == RT_QKV_CONCAT) {
        memcpy(q, y, Q * sizeof(float));
        memcpy(k, y + Q, KV * sizeof(float));
        memcpy(v, y + Q + KV, KV * sizeof(float));
        return;
    }
    /* RT_QKV_GROUPED, InternLM2's rearrange "(h gs d)" with gs = G + 2:
     * block j holds query heads j*G .. j*G+G-1, then k_j, then v_j, hd
     * values each. */
    size_t G = (size_t)(c->n_heads / c->n_kv_heads);
    for (size_t j = 0; j < (size_t)c->n_kv_heads; j++) {
        const float *b = y + j * (G + 2) * hd;
        memcpy(q + j * G * hd, b, G * hd * sizeof(float));
        memcpy(k + j * hd, b + G * hd, hd * sizeof(float));
        memcpy(v + j * hd, b + (G + 1) * hd, hd * sizeof(float));
    }
}

int rt_qkv_fused(rt_model *m, const rt_layer *l, const float *x, size_t n, airllm_err *err)
{
    const rt_config *c = &m->cfg;
    size_t Q = (size_t)c->n_heads * c->head_dim, KV = (size_t)c->n_kv_heads * c->head_dim;
    size_t W = Q + 2 * KV;
    if (rt_matmul(m->pool, l->wqkv, x, n, m->fused, err))
        return -1;
    if (l->bqkv) { /* m->vec holds max(H, I, Q + 2 KV) floats */
        if (rt_tensor_vec(l->bqkv, m->vec, W, err))
            return -1;
        for (size_t t = 0; t < n; t++)
            for (size_t i = 0; i < W; i++)
                m->fused[t * W + i] += m->vec[i];
    }
    for (size_t t = 0; t < n; t++)
        rt_qkv_split(c, m->fused + t * W, m->q + t * Q, m->k + t * KV, m->v + t * KV);
    return 0;
}

int rt_mlp_halves(rt_model *m, const rt_tensor *gate_up, const rt_tensor *down, const float *h,
                  size_t n, float *out, airllm_err *err)
{
    size_t I = (size_t)gate_up->rows / 2;
    if (rt_matmul(m->pool, gate_up, h, n, m->fused, err))
        return -1;
    for (size_t t = 0; t < n; t++) {
        const float *g = m->fused + t * 2 * I;
        for (size_t i = 0; i < I; i++)
            m->hb[t * I + i] = g[i] / (1.0f + expf(-g[i])) * g[I + i]; /* silu(gate) * up */
    }
    return rt_matmul(m->pool, down, m->hb, n, out, err);
}
