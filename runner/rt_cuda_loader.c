/* airllm-run's side of the CUDA backend (runner/rt_cuda.h): loads the module
 * airllm-cuda.so on the first rt_cuda_open and forwards to its table. The
 * other functions are only reached with a struct rt_cuda that open made,
 * so the table is there by then.
 *
 * This side needs no CUDA and is built whether or not the module is: a
 * packaged airllm-run (built where there is no toolkit, or cross-built for
 * arm64) loads a module built later on the machine that has the GPU, such
 * as a Jetson board (docs/install.md). */
#include "rt_cuda.h"

#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MODULE_NAME "airllm-cuda.so"

static const rt_cuda_backend *backend;

/* Where an install puts the module, relative to the directory airllm-run is
 * in (cmake/Install.cmake: bin/ -> lib/<multiarch>/airllm/). */
#ifndef AIRLLM_CUDA_MODULE_RELDIR
#define AIRLLM_CUDA_MODULE_RELDIR "../lib/airllm"
#endif

/* The module: AIRLLM_CUDA_MODULE when set; else the one next to the
 * executable (a build tree, or a copy kept beside it) when that exists;
 * else the install's LIBDIR/airllm/. When neither exists the message names
 * both places. */
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
    int dir = slash ? (int)(slash - exe) : 0;
    char beside[PATH_MAX], installed[PATH_MAX];
    int a = snprintf(beside, sizeof beside, "%.*s/" MODULE_NAME, dir, exe);
    int b = snprintf(installed, sizeof installed, "%.*s/" AIRLLM_CUDA_MODULE_RELDIR "/" MODULE_NAME,
                     dir, exe);
    if (a < 0 || b < 0 || (size_t)a >= sizeof beside || (size_t)b >= sizeof installed)
        return airllm_errf(err, "cannot find the CUDA backend: path too long");
    const char *pick = !access(beside, F_OK) ? beside : !access(installed, F_OK) ? installed : NULL;
    if (!pick)
        return airllm_errf(err, "cannot find the CUDA backend: neither %s nor %s exists (build "
                                "it with the CUDA toolkit, docs/install.md)", beside, installed);
    if (strlen(pick) >= cap)
        return airllm_errf(err, "cannot find the CUDA backend: path too long");
    strcpy(out, pick);
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
