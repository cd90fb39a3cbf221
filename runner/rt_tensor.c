/* A unit's tensors as the kernels see them, and the small reads of one row
 * or one vector that the forward pass, the embedding lookup and the store's
 * row reader share (its own file, so that rt_store.c and rt_model.c do not
 * reach into each other). */
#include "rt.h"

airllm_mm_weight rt_tensor_mm(const rt_tensor *w)
{
    return (airllm_mm_weight){w->enc, w->dtype, w->data, w->absmax, w->block, w->rows, w->cols};
}

int rt_tensor_row(const rt_tensor *w, uint64_t r, float *out, airllm_err *err)
{
    if (r >= w->rows)
        return airllm_errf(err, "%s: row %llu of %llu", w->name, (unsigned long long)r,
                           (unsigned long long)w->rows);
    airllm_mm_weight mw = rt_tensor_mm(w);
    return airllm_mm_row_f32(&mw, r, out, err);
}

int rt_tensor_vec(const rt_tensor *w, float *out, size_t n, airllm_err *err)
{
    if (w->rows * w->cols != n)
        return airllm_errf(err, "%s: %llu elements, %zu expected", w->name,
                           (unsigned long long)(w->rows * w->cols), n);
    rt_tensor flat = *w;
    flat.rows = 1;
    flat.cols = n;
    return rt_tensor_row(&flat, 0, out, err);
}
