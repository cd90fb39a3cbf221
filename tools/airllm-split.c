/* airllm-split: converts a Hugging Face safetensors checkpoint into the
 * per-unit container directory described in formats/, losslessly (raw or
 * zstd). The command line only: the conversion is convert_run (see
 * convert.h for how it streams and stays crash-safe). */
#include <stdio.h>

#include "cli.h"
#include "convert.h"

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: airllm-split [options] HF_DIR OUT_DIR\n"
            "Convert a Hugging Face safetensors checkpoint into per-layer containers.\n"
            "HF_DIR may be ORG/NAME: its snapshot in the local Hugging Face cache\n"
            "($HF_HOME/hub or ~/.cache/huggingface/hub; nothing is downloaded).\n\n"
            "  -c, --compress MODE    none (default) or zstd[:LEVEL] (lossless, level 1-19,\n"
            "                         default 3; 16/32-bit floats are byte-grouped)\n"
            "  -j, --jobs N           threads for compression (default 1; --threads too)\n"
            "      --delete-original  delete each source shard once every layer holding its\n"
            "                         tensors is written, synced and re-read; index and\n"
            "                         config files go last, after the manifest\n"
            USAGE_COMMON);
}

int main(int argc, char **argv)
{
    cli_prog = "airllm-split";
    cli_json_prescan(argc, argv); /* usage errors print JSON too */
    split_opts o;
    int rc = convert_parse_args(argc, argv, false, usage, &o);
    if (rc)
        return rc;
    cli_progress bar;
    convert_progress progress = convert_progress_bar(&bar);
    return convert_run(&o, &progress);
}
