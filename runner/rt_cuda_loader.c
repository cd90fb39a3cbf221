/* airllm-run's side of the CUDA backend (runner/rt_cuda.h): loads the module
 * airllm-cuda.so on the first rt_cuda_open and forwards to its table. The
 * other functions are only reached with a struct rt_cuda that open made,
 * so the table is there by then. */
#include "rt_cuda.h"

#include <dlfcn.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MODULE_NAME "airllm-cuda.so"

static const rt_cuda_backend *backend;

#ifdef AIRLLM_HAVE_CUDA
/* The module next to the executable (the build tree, or an install's
 * bin/), unless AIRLLM_CUDA_MODULE names one. */
static int module_path(char *out, size_t cap, airllm_err *err)
{
    const char *env = getenv("AIRLLM_CUDA_MODULE");
    if (env && *env) {
        if (strlen(env) >= cap)
            return airllm_errf(err, "AIRLLM_CUDA_MODULE: path too long");
        strcpy(out, env);
        return 0;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return airllm_errf(err, "cannot find the CUDA backend: /proc/self/exe unreadable");
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    size_t dir = slash ? (size_t)(slash - exe) + 1 : 0;
    if (dir + sizeof MODULE_NAME > cap)
        return airllm_errf(err, "cannot find the CUDA backend: path too long");
    memcpy(out, exe, dir);
    memcpy(out + dir, MODULE_NAME, sizeof MODULE_NAME);
    return 0;
}

static int load_backend(airllm_err *err)
{
    if (backend)
        return 0;
    char path[PATH_MAX];
    if (module_path(path, sizeof path, err))
        return -1;
    /* RTLD_LOCAL: the module's copies of the runner and library code stay
     * its own (it links them statically, symbols hidden). Never closed:
     * the CUDA runtime does not support being unloaded. */
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h)
        return airllm_errf(err, "cannot load the CUDA backend %s: %s", path, dlerror());
    const rt_cuda_backend *(*get)(void) =
        (const rt_cuda_backend *(*)(void))dlsym(h, "airllm_cuda_backend");
    const rt_cuda_backend *b = get ? get() : NULL;
    if (!b)
        return airllm_errf(err, "%s: not an airllm CUDA backend (no airllm_cuda_backend)", path);
    if (b->abi != RT_CUDA_ABI)
        return airllm_errf(err, "%s: built from another airllm version (ABI %d, expected %d)",
                           path, b->abi, RT_CUDA_ABI);
    backend = b;
    return 0;
}
#else
static int load_backend(airllm_err *err)
{
    return airllm_errf(err, "this airllm-run was built without the CUDA backend: install the "
                            "CUDA toolkit and rebuild (cmake -DAIRLLM_CUDA=ON)");
}
#endif

int rt_cuda_open(struct rt_cuda **out, rt_model *m, const rt_cuda_opts *o, rt_allocator *alloc,
                 airllm_err *err)
{
    *out = NULL;
    /* airllm-run opens one model: no other thread loads at the same time. */
    if (load_backend(err))
        return -1;
    return backend->open(out, m, o, alloc, err);
}

int rt_cuda_load(struct rt_cuda *g, rt_model *m, airllm_err *err)
{
    return backend->load(g, m, err);
}

int rt_cuda_seq_init(struct rt_cuda *g, rt_seq *s, airllm_err *err)
{
    return backend->seq_init(g, s, err);
}

void rt_cuda_seq_free(struct rt_cuda *g, rt_seq *s)
{
    if (g)
        backend->seq_free(g, s);
}

int rt_cuda_forward(struct rt_cuda *g, rt_model *m, rt_seq **seqs, size_t n_seqs,
                    float *logits, airllm_err *err)
{
    return backend->forward(g, m, seqs, n_seqs, logits, err);
}

void rt_cuda_get_info(const struct rt_cuda *g, rt_cuda_info *out)
{
    if (g)
        backend->get_info(g, out);
    else
        memset(out, 0, sizeof *out);
}

void rt_cuda_close(struct rt_cuda *g)
{
    if (g)
        backend->close(g);
}
