/* The SIMD implementation choice: see airllm_impl.h. */
#include "airllm_impl.h"

#include <stdlib.h>
#include <string.h>

const char *airllm_impl_name(int impl)
{
    switch (impl) {
    case AIRLLM_IMPL_AUTO: return "auto";
    case AIRLLM_IMPL_SCALAR: return "scalar";
    case AIRLLM_IMPL_AVX2: return "avx2";
    case AIRLLM_IMPL_AVX512: return "avx512";
    case AIRLLM_IMPL_NEON: return "neon";
    }
    return NULL;
}

int airllm_impl_best(airllm_impl_available_fn available)
{
    static const int order[] = {AIRLLM_IMPL_AVX512, AIRLLM_IMPL_AVX2, AIRLLM_IMPL_NEON};
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++)
        if (available(order[i]))
            return order[i];
    return AIRLLM_IMPL_SCALAR;
}

int airllm_impl_check(int impl, airllm_impl_available_fn available, const char *what,
                      airllm_err *err)
{
    if (!airllm_impl_name(impl))
        return airllm_errf(err, "unknown %s implementation %d", what, impl);
    if (!available(impl))
        return airllm_errf(err, "%s implementation '%s' is not available on this CPU", what,
                           airllm_impl_name(impl));
    return 0;
}

int airllm_impl_from_env(const char *var, airllm_impl_available_fn available, int *out,
                         airllm_err *err)
{
    const char *env = getenv(var);
    *out = AIRLLM_IMPL_AUTO;
    if (!env || !*env)
        return 0;
    for (int i = AIRLLM_IMPL_AUTO; i <= AIRLLM_IMPL_NEON; i++)
        if (!strcmp(env, airllm_impl_name(i))) {
            if (!available(i))
                return airllm_errf(err, "%s='%s' is not available on this CPU", var, env);
            *out = i;
            return 0;
        }
    return airllm_errf(err, "%s='%s' is not one of auto, scalar, avx2, avx512, neon", var, env);
}
