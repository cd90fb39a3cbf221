/* Qwen v1 (model_type qwen) and InternLM2 / 2.5 (internlm2): what their
 * forward pass adds to the Llama one, read from their published modeling
 * code (modeling_qwen.py, modeling_internlm2.py):
 *
 *   - one fused q/k/v matrix per layer, multiplied whole (one matmul, every
 *     encoding) and its output rows split (rt_fused.c, layout
 *     RT_QKV_CONCAT for Qwen, RT_QKV_GROUPED for InternLM2), so a layer's
 *     weights are never copied or re-laid out;
 *   - RoPE variants: Qwen rotates only the first rope_dim dims of a head
 *     (rotary_pct) and scales the base by its NTK alpha; InternLM2's
 *     rope_scaling "linear" divides positions, "dynamic" grows the base with
 *     the length (rt_rope_token);
 *   - Qwen's logn attention (rt_logn_scale);
 *   - the tensor names of both (rt_roles_family_a).
 *
 * Shapes: H hidden, hd head_dim, Q = heads * hd, KV = kv_heads * hd,
 * I intermediate (Qwen: intermediate_size / 2). */
#include "rt.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

#define ROLE(field, suffix, rows, cols, optional) \
    (rt_role) { suffix, rows, cols, optional, offsetof(rt_layer, field) }

size_t rt_roles_family_a(const rt_config *c, rt_role *out)
{
    uint64_t H = (uint64_t)c->hidden, hd = (uint64_t)c->head_dim;
    uint64_t Q = (uint64_t)c->n_heads * hd, KV = (uint64_t)c->n_kv_heads * hd;
    uint64_t I = (uint64_t)c->intermediate, F = Q + 2 * KV;
    size_t n = 0;
    if (c->arch == RT_ARCH_QWEN) {
        /* QWenBlock: ln_1, attn.c_attn [3Q, H] + bias (always), attn.c_proj
         * [H, Q]; QWenMLP: c_proj(w1(x) * silu(w2(x))), so w2 is the gate. */
        out[n++] = ROLE(attn_norm, "ln_1.weight", 1, H, false);
        out[n++] = ROLE(ffn_norm, "ln_2.weight", 1, H, false);
        out[n++] = ROLE(wqkv, "attn.c_attn.weight", F, H, false);
        out[n++] = ROLE(bqkv, "attn.c_attn.bias", 0, F, false);
        out[n++] = ROLE(wo, "attn.c_proj.weight", H, Q, false);
        out[n++] = ROLE(gate, "mlp.w2.weight", I, H, false);
        out[n++] = ROLE(up, "mlp.w1.weight", I, H, false);
        out[n++] = ROLE(down, "mlp.c_proj.weight", H, I, false);
        return n;
    }
    /* InternLM2: attention.wqkv [(heads + 2 kv_heads) hd, H], attention.wo
     * [H, Q] (biases when config "bias" is true), feed_forward
     * w2(silu(w1 x) * w3 x). */
    out[n++] = ROLE(attn_norm, "attention_norm.weight", 1, H, false);
    out[n++] = ROLE(ffn_norm, "ffn_norm.weight", 1, H, false);
    out[n++] = ROLE(wqkv, "attention.wqkv.weight", F, H, false);
    out[n++] = ROLE(bqkv, "attention.wqkv.bias", 0, F, true);
    out[n++] = ROLE(wo, "attention.wo.weight", H, Q, false);
    out[n++] = ROLE(bo, "attention.wo.bias", 0, H, true);
    out[n++] = ROLE(gate, "feed_forward.w1.weight", I, H, false);
    out[n++] = ROLE(up, "feed_forward.w3.weight", I, H, false);
    out[n++] = ROLE(down, "feed_forward.w2.weight", H, I, false);
    return n;
}

/* Qwen's get_ntk_alpha: 2^ceil(log2(L / seq_length) + 1) - 1, at least 1,
 * with L the prompt length: QWenModel.forward computes it at the call that
 * takes the whole sequence (prefill) and reuses that list while decoding,
 * so the alpha, and the base, stay fixed for the whole generation. */
static double qwen_ntk_alpha(size_t len, int seq_length)
{
    double cv = log((double)len / seq_length) / log(2.0) + 1;
    double a = pow(2.0, ceil(cv)) - 1;
    return a > 1 ? a : 1;
}

void rt_rope_inv(const rt_config *c, size_t len, size_t n_prompt, float *inv)
{
    int rd = c->rope_dim, half = rd / 2;
    double base = c->rope_theta;
    switch (c->rope_kind) {
    case RT_ROPE_DYNAMIC:
    case RT_ROPE_DYNAMIC_V1:
        /* InternLM2DynamicNTKScalingRotaryEmbedding and InternLM's
         * _update_cached: once the length L passes max_position_embeddings,
         * the cos/sin table is rebuilt with base * (f L / max - (f - 1))^(rd
         * / (rd - 2)), L the length after the current step (kv_seq_len).
         * InternLM2 caches keys after RoPE, so a token keeps the rotation of
         * the step that computed it; InternLM v1 re-rotates them all
         * (rt_rerotate_keys). */
        if (len > (size_t)c->max_pos) {
            double f = c->rope_scale;
            base *= pow(f * (double)len / c->max_pos - (f - 1), (double)rd / (rd - 2));
        }
        break;
    case RT_ROPE_QWEN_NTK:
        base *= pow(qwen_ntk_alpha(n_prompt, c->seq_length), (double)rd / (rd - 2));
        break;
    case RT_ROPE_LINEAR:
    case RT_ROPE_PLAIN: break;
    }
    for (int i = 0; i < half; i++)
        inv[i] = (float)(1.0 / pow(base, (double)(2 * i) / rd)); /* float32, as the references */
}

void rt_rope_token(const rt_config *c, size_t pos, size_t len, size_t n_prompt, float *cs)
{
    int half = c->rope_dim / 2;
    float inv[1 << 13]; /* rope_dim <= head_dim <= 1 << 14 (rt_config.c) */
    rt_rope_inv(c, len, n_prompt, inv);
    float t = (float)pos;
    /* the reference divides its float32 position table by the factor */
    if (c->rope_kind == RT_ROPE_LINEAR)
        t = (float)pos / (float)c->rope_scale;
    for (int i = 0; i < half; i++) {
        float ang = t * inv[i];
        cs[i] = cosf(ang);
        cs[half + i] = sinf(ang);
    }
}

bool rt_rerotate_keys(const rt_config *c, float *k, size_t n_pos, size_t stride, size_t len_old,
                      size_t len_new)
{
    if (c->rope_kind != RT_ROPE_DYNAMIC_V1 || n_pos == 0)
        return false;
    int half = c->rope_dim / 2, hd = c->head_dim;
    float io[1 << 13], in[1 << 13]; /* rope_dim <= 1 << 14 (rt_config.c) */
    rt_rope_inv(c, len_old, 0, io);
    rt_rope_inv(c, len_new, 0, in);
    if (memcmp(io, in, sizeof(float) * (size_t)half) == 0)
        return false;
    /* key at p was rotated by angle f32(p * io[i]); rotating it by the
     * difference gives (to float rounding) f32(p * in[i]) */
    for (size_t p = 0; p < n_pos; p++) {
        float *row = k + p * stride;
        for (int i = 0; i < half; i++) {
            float d = (float)p * in[i] - (float)p * io[i];
            float cs = cosf(d), sn = sinf(d);
            for (int h = 0; h < c->n_kv_heads; h++) {
                float *x = row + (size_t)h * hd;
                float a = x[i], b = x[i + half];
                x[i] = a * cs - b * sn;
                x[i + half] = b * cs + a * sn;
            }
        }
    }
    return true;
}

float rt_logn_scale(const rt_config *c, size_t pos)
{
    /* QWenAttention: logn_tensor[p] = log(p + 1) / log(seq_length) for
     * p + 1 > seq_length (a float32 table), applied to the query after
     * RoPE once the key length passes seq_length, which every such p
     * implies. */
    if (!c->logn_attn || pos + 1 <= (size_t)c->seq_length)
        return 1.0f;
    return (float)(log((double)pos + 1) / log((double)c->seq_length));
}
