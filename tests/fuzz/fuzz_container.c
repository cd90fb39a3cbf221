/* libFuzzer target for the container header parser. The input is treated as
 * a whole file (file_size = size), so every length and offset in it is
 * hostile. Accepted headers are re-encoded and must give back the same
 * header bytes: the parser and the writer agree on the canonical layout. */
#include "airllm_container.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    airllm_ct_header h;
    airllm_err err;
    if (airllm_ct_parse(data, size, size, &h, &err) != 0)
        return 0;
    uint8_t *enc;
    size_t n;
    if (airllm_ct_encode(&h, &enc, &n, &err) != 0)
        abort(); /* parse accepted what encode refuses */
    if (n != h.data_start || n > size || memcmp(enc, data, n) != 0)
        abort(); /* header did not round-trip */
    for (uint32_t i = 0; i < h.n_tensors; i++)
        if (airllm_ct_find(&h, h.tensors[i].name) != (long)i)
            abort(); /* names are unique */
    free(enc);
    airllm_ct_free(&h);
    return 0;
}
