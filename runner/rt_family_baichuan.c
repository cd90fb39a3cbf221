/* Baichuan's own pieces of the forward pass (both backends use them):
 * the ALiBi slopes of the 13B models and Baichuan2's NormHead. The rest of
 * the family (fused W_pack, RoPE for 7B) is shared code in rt_model.c and
 * rt_layer.c; which variant a config is: parse_baichuan in rt_config.c. */
#include "rt.h"

#include <math.h>
#include <stdlib.h>

/* modeling_baichuan.py's _get_interleave: for n a power of two, slope i is
 * start * start^i with start = 2^(-2^(3 - log2 n)) = 2^(-8 / n); otherwise
 * the p = 2^floor(log2 n) slopes of p heads, then every other slope of 2p
 * heads, n - p of them (40 heads: 32 + 8). Computed in double with the same
 * operations as the Python, then rounded to float as its torch.Tensor is
 * (tests/check_alibi.py compares them bit for bit). */
static double slope_pow2(int n, int i)
{
    double start = pow(2.0, -pow(2.0, -(log2((double)n) - 3)));
    return start * pow(start, i);
}

void rt_alibi_slopes(int n, float *out)
{
    int p = 1;
    while (p * 2 <= n)
        p *= 2;
    for (int i = 0; i < p; i++)
        out[i] = (float)slope_pow2(p, i);
    for (int i = 0; i < n - p; i++)
        out[p + i] = (float)slope_pow2(2 * p, 2 * i);
}

/* NormHead (Baichuan2): logits = h . w_v / max(||w_v||, 1e-12), as
 * F.normalize does to the head rows before the first forward. The stored
 * rows stay as they are (airllm-verify --against still holds); the norms
 * come from the rows the kernels use (dequantized when quantized), read
 * once here through a slot of their own, whether the head is resident,
 * streamed or held by a device backend. */
int rt_norm_head_init(rt_model *m, airllm_err *err)
{
    const rt_config *c = &m->cfg;
    rt_store *s = &m->store;
    size_t hu = s->head_unit >= 0 ? (size_t)s->head_unit : (size_t)s->embed_unit;
    const char *name = s->head_unit >= 0 ? c->head_name : c->embed_name;
    size_t H = (size_t)c->hidden, V = (size_t)c->vocab;
    m->head_scale = malloc(sizeof(float) * V);
    float *row = malloc(sizeof(float) * H);
    rt_slot sl = {0};
    int rc = m->head_scale && row ? 0 : airllm_errf(err, "out of memory");
    if (!rc)
        rc = rt_store_slot_new(s, &hu, 1, &sl, err);
    if (!rc)
        rc = rt_store_load(s, hu, &sl, err);
    const rt_tensor *w = NULL;
    if (!rc && !(w = rt_slot_need(&sl, s->units[hu].file, name, V, H, err)))
        rc = -1;
    for (size_t v = 0; !rc && v < V; v++) {
        if ((rc = rt_tensor_row(w, v, row, err)))
            break;
        double ss = 0;
        for (size_t i = 0; i < H; i++)
            ss += (double)row[i] * row[i];
        double nrm = sqrt(ss);
        m->head_scale[v] = (float)(1.0 / (nrm > 1e-12 ? nrm : 1e-12));
    }
    if (sl.buf || sl.tensors)
        rt_store_slot_free(s, &sl);
    free(row);
    return rc;
}

void rt_norm_head_apply(const rt_model *m, float *logits, size_t n)
{
    if (!m->head_scale)
        return;
    size_t V = (size_t)m->cfg.vocab;
    for (size_t i = 0; i < n; i++)
        for (size_t v = 0; v < V; v++)
            logits[i * V + v] *= m->head_scale[v];
}
