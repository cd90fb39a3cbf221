/* airllm-run without the CUDA backend: --device cuda says how to get it. */
#include "rt_cuda.h"

#include <string.h>

int rt_cuda_built(void)
{
    return 0;
}

int rt_cuda_open(struct rt_cuda **out, rt_model *m, const rt_cuda_opts *o, rt_allocator *alloc,
                 airllm_err *err)
{
    (void)m, (void)o, (void)alloc;
    *out = NULL;
    return airllm_errf(err, "this airllm-run was built without the CUDA backend: install the "
                            "CUDA toolkit and rebuild (cmake -DAIRLLM_CUDA=ON)");
}

int rt_cuda_load(struct rt_cuda *g, rt_model *m, airllm_err *err)
{
    (void)g, (void)m;
    return airllm_errf(err, "no CUDA backend");
}

int rt_cuda_seq_init(struct rt_cuda *g, rt_seq *s, airllm_err *err)
{
    (void)g, (void)s;
    return airllm_errf(err, "no CUDA backend");
}

void rt_cuda_seq_free(struct rt_cuda *g, rt_seq *s)
{
    (void)g, (void)s;
}

int rt_cuda_forward(struct rt_cuda *g, rt_model *m, rt_seq **seqs, size_t n_seqs,
                    float *logits, airllm_err *err)
{
    (void)g, (void)m, (void)seqs, (void)n_seqs, (void)logits;
    return airllm_errf(err, "no CUDA backend");
}

void rt_cuda_get_info(const struct rt_cuda *g, rt_cuda_info *out)
{
    (void)g;
    memset(out, 0, sizeof *out);
}

void rt_cuda_close(struct rt_cuda *g)
{
    (void)g;
}
