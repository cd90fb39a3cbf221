/* Host-side planning for a device backend: see rt_gpu.h. */
#include "rt_gpu.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "airllm_bytes.h"
#include "airllm_quant.h"

#define DEV_ALIGN 256

void rt_gpu_layout_free(rt_gpu_layout *l)
{
    free(l->data_off);
    free(l->data_len);
    free(l->abs_off);
    free(l->abs_len);
    memset(l, 0, sizeof *l);
}

int rt_gpu_layout_make(const rt_unit *u, rt_gpu_layout *l, airllm_err *err)
{
    memset(l, 0, sizeof *l);
    size_t n = u->hdr.n_tensors ? u->hdr.n_tensors : 1;
    l->data_off = calloc(n, sizeof *l->data_off);
    l->data_len = calloc(n, sizeof *l->data_len);
    l->abs_off = calloc(n, sizeof *l->abs_off);
    l->abs_len = calloc(n, sizeof *l->abs_len);
    if (!l->data_off || !l->data_len || !l->abs_off || !l->abs_len) {
        rt_gpu_layout_free(l);
        return airllm_errf(err, "out of memory");
    }
    uint64_t off = 0;
    for (uint32_t i = 0; i < u->hdr.n_tensors; i++) {
        const airllm_ct_tensor *t = &u->hdr.tensors[i];
        l->data_off[i] = off;
        l->data_len[i] = t->encoding == AIRLLM_ENC_ZSTD ? t->raw_len : t->stored_len;
        off = airllm_align_up(off + l->data_len[i], DEV_ALIGN);
        l->abs_off[i] = UINT64_MAX;
        if (airllm_encoding_is_quant(t->encoding)) {
            airllm_ct_qlayout q;
            if (airllm_ct_tensor_qlayout(t, &q, err)) {
                rt_gpu_layout_free(l);
                return airllm_err_prefix(err, "%s: %s", u->file, t->name);
            }
            if (q.double_quant) {
                l->abs_off[i] = off;
                l->abs_len[i] = q.nblocks * sizeof(float);
                off = airllm_align_up(off + l->abs_len[i], DEV_ALIGN);
            }
        }
    }
    l->bytes = off ? off : DEV_ALIGN;
    return 0;
}

size_t rt_gpu_copies(const rt_unit *u, const rt_slot *sl, const rt_gpu_layout *l,
                     long only_tensor, rt_gpu_copy *out)
{
    size_t k = 0;
    for (uint32_t i = 0; i < u->hdr.n_tensors && i < sl->n_tensors; i++) {
        const rt_tensor *v = &sl->tensors[i];
        if (!v->loaded || (only_tensor >= 0 && (long)i != only_tensor))
            continue;
        if (l->data_len[i])
            out[k++] = (rt_gpu_copy){v->data, l->data_off[i], l->data_len[i]};
        if (l->abs_off[i] != UINT64_MAX && l->abs_len[i])
            out[k++] = (rt_gpu_copy){v->absmax, l->abs_off[i], l->abs_len[i]};
    }
    return k;
}

void rt_gpu_views(const rt_slot *sl, const rt_gpu_layout *l, uintptr_t dev_base, rt_tensor *out)
{
    for (size_t i = 0; i < sl->n_tensors; i++) {
        const rt_tensor *v = &sl->tensors[i];
        rt_tensor *d = &out[i];
        *d = *v;
        d->data = (const uint8_t *)(dev_base + (uintptr_t)l->data_off[i]);
        if (l->abs_off[i] != UINT64_MAX)
            d->absmax = (const float *)(dev_base + (uintptr_t)l->abs_off[i]);
        else if (v->absmax) /* plain scales sit inside the stored bytes */
            d->absmax = (const float *)(const void *)(d->data +
                                                      ((const uint8_t *)(const void *)v->absmax -
                                                       v->data));
    }
}

void rt_gpu_plan_free(rt_gpu_plan *p)
{
    free(p->units);
    free(p->held);
    free(p->dev_bytes);
    memset(p, 0, sizeof *p);
}

const char *rt_gpu_mib(char *buf, size_t n, uint64_t b)
{
    snprintf(buf, n, "%.0fM", (double)b / 1048576.0 + 0.5);
    return buf;
}

int rt_gpu_plan_make(const rt_store *s, uint64_t budget, bool unified, rt_gpu_plan *p,
                     airllm_err *err)
{
    memset(p, 0, sizeof *p);
    size_t nu = s->n_units;
    p->units = calloc(nu + 1, sizeof *p->units);
    p->held = calloc(nu + 1, sizeof *p->held);
    p->dev_bytes = calloc(nu + 1, sizeof *p->dev_bytes);
    if (!p->units || !p->held || !p->dev_bytes) {
        rt_gpu_plan_free(p);
        return airllm_errf(err, "out of memory");
    }
    for (size_t i = 0; i < nu; i++)
        if (s->units[i].kind == AIRLLM_UNIT_LAYER)
            p->units[p->n_units++] = i;
    p->units[p->n_units++] = (size_t)s->norm_unit;
    p->units[p->n_units++] = s->head_unit >= 0 ? (size_t)s->head_unit : (size_t)s->embed_unit;
    for (size_t k = 0; k < p->n_units; k++) {
        size_t u = p->units[k];
        rt_gpu_layout l;
        if (rt_gpu_layout_make(&s->units[u], &l, err)) {
            rt_gpu_plan_free(p);
            return -1;
        }
        uint64_t bytes = l.bytes;
        rt_gpu_layout_free(&l);
        p->dev_bytes[u] = bytes;
        p->all_budget += bytes;
        if (2 * bytes > p->min_budget)
            p->min_budget = 2 * bytes;
    }
    if (unified)
        return 0; /* the device reads the host's pinned slots in place */
    bool tied_ok = s->head_unit >= 0 || rt_store_rows_readable(s);
    if (budget >= p->all_budget && tied_ok) {
        for (size_t k = 0; k < p->n_units; k++)
            p->held[p->units[k]] = true;
        p->held_bytes = p->all_budget;
        return 0;
    }
    if (budget < p->min_budget) {
        char a[32], b[32], c[32], d[32];
        airllm_errf(err, "GPU memory budget %s is too small: streaming needs two buffers of "
                         "the largest unit (%s each); use --gpu-mem-budget %s or more (%s "
                         "holds every layer)",
                    rt_gpu_mib(a, sizeof a, budget), rt_gpu_mib(b, sizeof b, p->min_budget / 2),
                    rt_gpu_mib(c, sizeof c, p->min_budget),
                    rt_gpu_mib(d, sizeof d, p->all_budget));
        rt_gpu_plan_free(p);
        return -1;
    }
    /* In execution order: hold unit k if, with it held, two buffers of the
     * largest unit still to stream (those passed over, and every later one)
     * fit beside what is held. */
    uint64_t passed_max = 0;
    for (size_t k = 0; k < p->n_units; k++) {
        size_t u = p->units[k];
        uint64_t later_max = 0;
        for (size_t j = k + 1; j < p->n_units; j++)
            if (p->dev_bytes[p->units[j]] > later_max)
                later_max = p->dev_bytes[p->units[j]];
        uint64_t stream = passed_max > later_max ? passed_max : later_max;
        bool may = (long)u != s->embed_unit || tied_ok;
        if (may && p->held_bytes + p->dev_bytes[u] + 2 * stream <= budget) {
            p->held[u] = true;
            p->held_bytes += p->dev_bytes[u];
        } else if (p->dev_bytes[u] > passed_max) {
            passed_max = p->dev_bytes[u];
        }
    }
    p->stream_bytes = passed_max;
    return 0;
}
