/* The SIMD implementation choice that both kernel families make
 * (airllm_quant_impl, airllm_mm_impl): the same five names, the same
 * checks, the same "fastest available" order. Internal to lib/. Values are
 * the two public enums' shared numbering (checked where they are used):
 * AUTO 0, SCALAR 1, AVX2 2, AVX512 3, NEON 4. Each family passes its own
 * availability test, since their SIMD versions need different CPU
 * features. */
#ifndef AIRLLM_IMPL_H
#define AIRLLM_IMPL_H

#include "airllm_err.h"

enum { AIRLLM_IMPL_AUTO, AIRLLM_IMPL_SCALAR, AIRLLM_IMPL_AVX2, AIRLLM_IMPL_AVX512,
       AIRLLM_IMPL_NEON };

typedef int (*airllm_impl_available_fn)(int impl);

/* "auto", "scalar", "avx2", "avx512", "neon"; NULL for an unknown value. */
const char *airllm_impl_name(int impl);
/* The fastest available: AVX-512, AVX2, NEON, else scalar. */
int airllm_impl_best(airllm_impl_available_fn available);
/* 0 if impl is known and available, else -1 with a message naming the
 * family (what: "matmul", "quantization"). */
int airllm_impl_check(int impl, airllm_impl_available_fn available, const char *what,
                      airllm_err *err);
/* The implementation environment variable var names: *out = AUTO when it
 * is unset or empty; -1 with a message when it names an unknown or
 * unavailable one. */
int airllm_impl_from_env(const char *var, airllm_impl_available_fn available, int *out,
                         airllm_err *err);

#endif
