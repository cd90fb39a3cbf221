/* libFuzzer target for the safetensors header parser. The input is taken as
 * a whole file (buffer length == file size). Besides the sanitizers, it
 * checks the parser's own invariants: a failure leaves the output empty and
 * sets a message, the lexer/cJSON cross-check never disagrees, and a
 * success describes tensors that tile the data section exactly. */
#include "airllm_safetensors.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    airllm_st_file f;
    airllm_err err;
    err.msg[0] = '\0';
    if (airllm_st_parse(data, size, size, &f, &err) < 0) {
        if (f.tensors || f.n_tensors || err.msg[0] == '\0' || strncmp(err.msg, "internal error", 14) == 0)
            abort();
        return 0;
    }
    uint64_t pos = 0;
    for (size_t i = 0; i < f.n_tensors; i++) {
        const airllm_st_tensor *t = &f.tensors[i];
        uint64_t nbytes;
        if (t->begin != pos || t->end < t->begin || !t->name[0] ||
            airllm_shape_nbytes(t->dtype, t->shape, t->ndim, NULL, &nbytes) < 0 ||
            nbytes != t->end - t->begin || airllm_st_find(&f, t->name) < 0)
            abort();
        pos = t->end;
    }
    if (f.data_start + pos != size)
        abort();
    airllm_st_free(&f);
    return 0;
}
