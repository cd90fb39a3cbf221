/* airllm-quant: quantizes a model block-wise (nf4, fp4, int8) into the
 * container directory of formats/, from a Hugging Face checkpoint (split
 * and quantized in one pass) or from a directory airllm-split wrote. The
 * command line only: the conversion is convert_run, the quantizing encoder
 * convert_quant.c. */
#include <stdio.h>

#include "cli.h"
#include "convert.h"

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: airllm-quant [options] IN_DIR OUT_DIR\n"
            "Quantize a model block-wise to 4 or 8 bits. IN_DIR is a Hugging Face\n"
            "safetensors checkpoint (split and quantized in one pass, no unquantized copy\n"
            "is written), ORG/NAME (its snapshot in the local Hugging Face cache,\n"
            "$HF_HOME/hub or ~/.cache/huggingface/hub; nothing is downloaded) or a\n"
            "directory written by airllm-split.\n\n"
            "      --preset NAME      quality: int8, blocks of 64 (near lossless, 8.5 bits\n"
            "                         per weight); small: nf4, blocks of 32 (5 bits, small\n"
            "                         models stay fluent); -t and -b override it\n"
            "  -t, --type TYPE        nf4 (default), fp4 or int8\n"
            "  -b, --block-size N     elements per block: a power of two, 32-4096 (default 64)\n"
            "      --double-quant     quantize the per-block scales to 8 bits as well\n"
            "                         (bitsandbytes' compress_statistics)\n"
            "      --include LIST     also quantize: lm_head, embed (comma-separated),\n"
            "                         each in -t's type or as PART=TYPE in its own\n"
            "                         (lm_head=int8: a 4-bit model with an 8-bit head);\n"
            "                         by default only the linear layers of attention, MLP\n"
            "                         and experts are\n"
            "      --report           print each quantized tensor's error (RMSE, max abs,\n"
            "                         relative Frobenius) as a table\n"
            "  -j, --jobs N           quantization threads (default 1; --threads too)\n"
            USAGE_COMMON);
}

int main(int argc, char **argv)
{
    cli_prog = "airllm-quant";
    cli_json_prescan(argc, argv); /* usage errors print JSON too */
    split_opts o;
    int rc = convert_parse_args(argc, argv, true, usage, &o);
    if (rc)
        return rc;
    cli_progress bar;
    convert_progress progress = convert_progress_bar(&bar);
    return convert_run(&o, &progress);
}
