/* The options airllm-run and airllm-serve share (see rt_opts.h). */
#include "rt_opts.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "airllm_matmul.h"
#include "cli.h"

enum {
    O_TEMP = 1000, O_TOPK, O_TOPP, O_SEED, O_BUDGET, O_NOPREFETCH, O_DIRECT, O_VERIFY,
    O_DEVICE, O_GPUBUDGET, O_KVHOST, O_IOTHREADS, O_REPEAT_PENALTY, O_REPEAT_LAST_N,
    O_INT8ACT,
};

const struct option rt_opts_long[RT_OPTS_N] = {
    {"max-new-tokens", required_argument, 0, 'n'},
    {"jobs", required_argument, 0, 'j'},
    {"threads", required_argument, 0, 'j'},
    {"temperature", required_argument, 0, O_TEMP},
    {"top-k", required_argument, 0, O_TOPK},
    {"top-p", required_argument, 0, O_TOPP},
    {"seed", required_argument, 0, O_SEED},
    {"repeat-penalty", required_argument, 0, O_REPEAT_PENALTY},
    {"repeat-last-n", required_argument, 0, O_REPEAT_LAST_N},
    {"mem-budget", required_argument, 0, O_BUDGET},
    {"no-prefetch", no_argument, 0, O_NOPREFETCH},
    {"direct", no_argument, 0, O_DIRECT},
    {"verify-load", optional_argument, 0, O_VERIFY},
    {"device", required_argument, 0, O_DEVICE},
    {"gpu-mem-budget", required_argument, 0, O_GPUBUDGET},
    {"kv-host", no_argument, 0, O_KVHOST},
    {"io-threads", required_argument, 0, O_IOTHREADS},
    {"int8-activations", no_argument, 0, O_INT8ACT},
};

const char rt_opts_usage_gen[] =
    "      --temperature T      0 = greedy (default 0)\n"
    "      --top-k K            sample from the K most likely (default 0: all)\n"
    "      --top-p P            nucleus sampling (default 1)\n"
    "      --seed S             random seed (default 0)\n"
    "      --repeat-penalty P   divide the positive logits of tokens already in the\n"
    "                           last --repeat-last-n of the context by P, multiply\n"
    "                           the negative ones (llama.cpp's; default 1: off;\n"
    "                           1.1-1.3 stops a small model looping)\n"
    "      --repeat-last-n N    tokens the penalty looks back over (default 64;\n"
    "                           prompt included)\n";

const char rt_opts_usage_mem[] =
    "Memory and I/O:\n"
    "      --mem-budget SIZE    bytes of weights kept resident (suffix K, M, G; 0 streams\n"
    "                           every layer; default: half the available memory)\n"
    "      --no-prefetch        read each streamed layer when it is needed\n"
    "      --direct             read layers with O_DIRECT (bypass the page cache)\n"
    "      --verify-load[=fast|full|off]  what each load checks: fast (default) each\n"
    "                           tensor's XXH3 (format 1.2 files); full (plain\n"
    "                           --verify-load) the file's SHA-256; off nothing (for\n"
    "                           measurement)\n"
    "  -j, --jobs N             compute threads (default: all cores; one fewer in\n"
    "                           decode steps while the prefetch thread copies or\n"
    "                           checks streamed layers); --threads too\n"
    "      --io-threads N       threads reading each streamed layer (default 1; with\n"
    "                           cuda, half the cores up to 8)\n"
    "      --int8-activations   nf4, fp4 or int8 weights in int8 dot products\n"
    "                           (AVX512-VNNI, and AMX tiles for 2+ tokens where\n"
    "                           the CPU has them; as llama.cpp's Q8_0): about 2x\n"
    "                           batch and prefill tokens/s, up to 1.1x decode;\n"
    "                           logits move by about 1e-2, so off by\n"
    "                           default\n"
    "Device:\n"
    "      --device DEV         cpu (default) or cuda[:N]\n"
    "      --gpu-mem-budget SIZE  bytes of weights kept in GPU memory (the rest stream\n"
    "                           through two buffers of the largest layer; default:\n"
    "                           the free GPU memory less a reserve)\n"
    "      --kv-host            keep the KV cache in pinned host memory (cuda)\n";

static uint64_t default_budget(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    unsigned long long kb = 0;
    char line[256];
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb ? kb * 1024 / 2 : (1ull << 30);
}

void rt_opts_table(const struct option *own, size_t n_own, struct option *out)
{
    memcpy(out, own, n_own * sizeof *own);
    memcpy(out + n_own, rt_opts_long, sizeof rt_opts_long);
    memset(&out[n_own + RT_OPTS_N], 0, sizeof *out);
}

void rt_opts_init(rt_opts *o)
{
    memset(o, 0, sizeof *o);
    o->max_new = 64;
    o->top_p = 1.0;
    o->repeat_penalty = 1.0;
    o->repeat_last_n = 64;
    o->prefetch = true;
    o->verify_load = RT_VERIFY_FAST;
    o->budget = default_budget();
    o->threads = 0; /* all cores, one fewer when layers stream (rt_model_open) */
    o->cuda_opts.budget = UINT64_MAX;
}

int rt_opts_parse(rt_opts *o, int ch, const char *arg)
{
    uint64_t v;
    char *end;
    switch (ch) {
    case 'n':
        if (cli_parse_uint(arg, 0, 1 << 24, &v))
            return cli_usage_error("bad --max-new-tokens '%s'", arg);
        o->max_new = (long)v;
        o->max_new_set = true;
        return 0;
    case 't':
        /* -t is airllm-quant's --type; threads are -j in every tool
         * (docs/options.md). The old spelling works, for scripts. */
        cli_info("note: -t is deprecated: use -j (--jobs), the threads option of every "
                 "airllm tool");
        /* fall through */
    case 'j':
        if (cli_parse_uint(arg, 1, 1024, &v))
            return cli_usage_error("bad --jobs '%s' (1-1024)", arg);
        o->threads = (int)v;
        return 0;
    case O_TEMP:
        o->temperature = strtod(arg, &end);
        if (*end || end == arg || !(o->temperature >= 0) || o->temperature > 100)
            return cli_usage_error("bad --temperature '%s' (0-100)", arg);
        return 0;
    case O_TOPK:
        if (cli_parse_uint(arg, 0, 1 << 24, &v))
            return cli_usage_error("bad --top-k '%s'", arg);
        o->top_k = (long)v;
        return 0;
    case O_TOPP:
        o->top_p = strtod(arg, &end);
        if (*end || end == arg || !(o->top_p > 0) || o->top_p > 1)
            return cli_usage_error("bad --top-p '%s' (0 < p <= 1)", arg);
        return 0;
    case O_REPEAT_PENALTY:
        o->repeat_penalty = strtod(arg, &end);
        if (*end || !(o->repeat_penalty > 0) || o->repeat_penalty > 10)
            return cli_usage_error("bad --repeat-penalty '%s' (0 < P <= 10; 1 is off)", arg);
        return 0;
    case O_REPEAT_LAST_N:
        if (cli_parse_uint(arg, 0, 1u << 30, &o->repeat_last_n))
            return cli_usage_error("bad --repeat-last-n '%s'", arg);
        return 0;
    case O_SEED:
        if (cli_parse_uint(arg, 0, UINT64_MAX, &v))
            return cli_usage_error("bad --seed '%s'", arg);
        o->seed = v;
        return 0;
    case O_BUDGET:
        if (cli_parse_size(arg, &o->budget))
            return cli_usage_error("bad --mem-budget '%s' (e.g. 0, 512M, 4G)", arg);
        return 0;
    case O_NOPREFETCH: o->prefetch = false; return 0;
    case O_DIRECT: o->direct = true; return 0;
    case O_INT8ACT: o->int8_act = true; return 0;
    case O_VERIFY:
        if (!arg || strcmp(arg, "full") == 0)
            o->verify_load = RT_VERIFY_FULL;
        else if (strcmp(arg, "fast") == 0)
            o->verify_load = RT_VERIFY_FAST;
        else if (strcmp(arg, "off") == 0)
            o->verify_load = RT_VERIFY_OFF;
        else
            return cli_usage_error("bad --verify-load '%s' (fast, full or off)", arg);
        return 0;
    case O_DEVICE:
        if (strcmp(arg, "cpu") == 0) {
            o->cuda = false;
        } else if (strcmp(arg, "cuda") == 0) {
            o->cuda = true;
            o->cuda_opts.device = 0;
        } else if (strncmp(arg, "cuda:", 5) == 0 && cli_parse_uint(arg + 5, 0, 255, &v) == 0) {
            o->cuda = true;
            o->cuda_opts.device = (int)v;
        } else {
            return cli_usage_error("bad --device '%s' (cpu, cuda or cuda:N)", arg);
        }
        return 0;
    case O_GPUBUDGET:
        if (cli_parse_size(arg, &o->cuda_opts.budget))
            return cli_usage_error("bad --gpu-mem-budget '%s' (e.g. 2G, 900M)", arg);
        o->gpu_opt = true;
        return 0;
    case O_KVHOST: o->cuda_opts.kv_host = true; o->gpu_opt = true; return 0;
    case O_IOTHREADS:
        if (cli_parse_uint(arg, 1, 16, &v))
            return cli_usage_error("bad --io-threads '%s' (1-16)", arg);
        o->io_threads = (int)v;
        return 0;
    default: return 1;
    }
}

int rt_opts_check(const rt_opts *o)
{
    if (o->gpu_opt && !o->cuda)
        return cli_usage_error("--gpu-mem-budget and --kv-host need --device cuda");
    if (o->int8_act && o->cuda)
        return cli_usage_error("--int8-activations is for the CPU kernels, not --device cuda");
    return 0;
}

int rt_opts_model_open(const rt_opts *o, rt_model *m, const char *dir, airllm_err *err)
{
    if (o->int8_act)
        airllm_mm_set_q8(1);
    return rt_model_open(m, dir, o->budget, o->prefetch, o->direct, o->verify_load, o->threads,
                         o->io_threads, o->cuda ? &o->cuda_opts : NULL, err);
}
