/* libFuzzer target: the tokenizer.json loader must never crash, leak or read
 * out of bounds, whatever the bytes; a tokenizer that loads must encode and
 * decode any text without doing so either.
 *
 * Input layout: the tokenizer.json, then optionally a 0xFF byte (never part
 * of valid UTF-8, so never inside a loadable file) followed by the text to
 * encode. Without it a fixed text is used. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "airllm_tokenizer.h"

static const char default_text[] = "Hello  world!\n<s> it's 12345 caf\xc3\xa9 \xf0\x9f\x98\x80\t";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *sep = memchr(data, 0xFF, size);
    size_t json_len = sep ? (size_t)(sep - data) : size;
    const char *text = sep ? (const char *)sep + 1 : default_text;
    size_t text_len = sep ? size - json_len - 1 : sizeof default_text - 1;

    airllm_tokenizer *tok;
    airllm_err err;
    if (airllm_tok_load_buffer((const char *)data, json_len, NULL, &tok, &err))
        return 0;
    int32_t *ids;
    size_t n;
    if (airllm_tok_encode(tok, text, text_len, 1, &ids, &n, &err) == 0) {
        /* decode what came out, plus a few ids that may be out of range */
        char *out;
        size_t out_len;
        for (int skip = 0; skip < 2; skip++)
            if (airllm_tok_decode(tok, ids, n, skip, &out, &out_len, &err) == 0)
                free(out);
        free(ids);
    }
    /* raw bytes of the text read as ids: any id, valid or not, must decode */
    size_t nid = text_len / 4;
    int32_t *raw = malloc((nid ? nid : 1) * sizeof *raw);
    for (size_t i = 0; i < nid; i++) {
        uint32_t v;
        memcpy(&v, text + 4 * i, 4);
        raw[i] = (int32_t)(v % (airllm_tok_vocab_size(tok) + 8)) - 4;
    }
    char *out;
    size_t out_len;
    if (airllm_tok_decode(tok, raw, nid, 0, &out, &out_len, &err) == 0)
        free(out);
    free(raw);
    airllm_tok_free(tok);
    return 0;
}
