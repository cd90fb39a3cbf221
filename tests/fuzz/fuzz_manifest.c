/* libFuzzer target: the manifest loader must never crash, leak or read out
 * of bounds, whatever the bytes. Accepted input must re-serialize. */
#include <stdint.h>
#include <stdlib.h>

#include "airllm_manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    airllm_manifest m;
    airllm_err err;
    if (airllm_manifest_parse((const char *)data, size, &m, &err) == 0) {
        char *json = NULL;
        if (airllm_manifest_to_json(&m, &json, &err) == 0)
            free(json);
        airllm_manifest_free(&m);
    }
    return 0;
}
