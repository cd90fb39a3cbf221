/* The command line airllm-split and airllm-quant share: one option table,
 * so that an option of the other tool is refused with the same message. */
#include "convert.h"

static int parse_include(const char *arg, split_opts *o)
{
    char buf[256];
    if (strlen(arg) >= sizeof buf)
        return cli_usage_error("--include: too long");
    strcpy(buf, arg);
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        /* PART or PART=TYPE (that part in its own type, as llama.cpp keeps
         * a 4-bit model's output matrix in 8 bits) */
        char *type = strchr(tok, '=');
        airllm_quant_type qt = 0;
        if (type) {
            *type++ = '\0';
            if (airllm_quant_type_from_name(type, &qt))
                return cli_usage_error("--include: unknown type '%s' for %s (nf4, fp4, int8)",
                                       type, tok);
        }
        if (strcmp(tok, "embed") == 0) {
            o->inc_embed = true;
            o->embed_qtype = qt;
        } else if (strcmp(tok, "lm_head") == 0) {
            o->inc_lm_head = true;
            o->lm_head_qtype = qt;
        } else {
            return cli_usage_error("--include: unknown part '%s' (lm_head, embed)", tok);
        }
    }
    return 0;
}

/* Parses the command line into o; quant selects airllm-quant's options and
 * defaults. Returns 0, or the exit status (a usage error). --help and
 * --version print and exit here. */
int convert_parse_args(int argc, char **argv, bool quant, void (*usage)(FILE *), split_opts *o)
{
    static const struct option longopts[] = {
        {"compress", required_argument, 0, 'c'},
        {"jobs", required_argument, 0, 'j'},
        {"threads", required_argument, 0, 'j'}, /* airllm-run's word for it */
        {"delete-original", no_argument, 0, 'D'},
        {"dry-run", no_argument, 0, 'n' + 256},
        {"force", no_argument, 0, 'f'},
        {"json", no_argument, 0, 'J'},
        {"quiet", no_argument, 0, 'q'},
        {"verbose", no_argument, 0, 'v'},
        {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},
        {"type", required_argument, 0, 't'},
        {"block-size", required_argument, 0, 'b'},
        {"double-quant", no_argument, 0, 'Q'},
        {"include", required_argument, 0, 'I'},
        {"report", no_argument, 0, 'R'},
        {"follow-symlinks", no_argument, 0, 'L'},
        {"preset", required_argument, 0, 'P'},
        {0, 0, 0, 0},
    };
    memset(o, 0, sizeof *o);
    o->jobs = 1;
    o->level = 3;
    const char *shortopts = ":c:j:nfqvhV";
    if (quant) {
        o->quant = true;
        o->qtype = AIRLLM_QUANT_NF4;
        o->block = AIRLLM_QUANT_BLOCK_DEFAULT;
        shortopts = ":t:b:j:nfqvhV";
    }
    int ch;
    uint64_t v;
    bool type_set = false, block_set = false;
    int preset_type = -1;
    uint32_t preset_block = 0;
    opterr = 0; /* cli_getopt_error says it once */
    while ((ch = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
        bool quant_opt = ch == 't' || ch == 'b' || ch == 'Q' || ch == 'I' || ch == 'R' ||
                         ch == 'P';
        if (quant_opt != o->quant && (quant_opt || ch == 'c' || ch == 'D')) {
            const struct option *lo = longopts;
            while (lo->name && lo->val != ch)
                lo++;
            return cli_usage_error("--%s is an option of %s", lo->name,
                                   o->quant ? "airllm-split" : "airllm-quant");
        }
        switch (ch) {
        case 'P':
            /* Named settings from the measurements in docs/quantization.md
             * ("Choosing a type and block size"); -t and -b given anywhere
             * on the line win over the preset's. */
            if (strcmp(optarg, "quality") == 0) {
                preset_type = AIRLLM_QUANT_INT8;
                preset_block = 64;
            } else if (strcmp(optarg, "small") == 0) {
                preset_type = AIRLLM_QUANT_NF4;
                preset_block = 32;
            } else {
                return cli_usage_error("unknown --preset '%s' (quality, small)", optarg);
            }
            break;
        case 't':
            if (airllm_quant_type_from_name(optarg, &o->qtype))
                return cli_usage_error("unknown --type '%s' (nf4, fp4, int8)", optarg);
            type_set = true;
            break;
        case 'b':
            if (cli_parse_uint(optarg, AIRLLM_QUANT_BLOCK_MIN, AIRLLM_QUANT_BLOCK_MAX, &v) ||
                (v & (v - 1)) != 0)
                return cli_usage_error("bad --block-size '%s' (a power of two, 32-4096)",
                                       optarg);
            o->block = (uint32_t)v;
            block_set = true;
            break;
        case 'Q': o->double_quant = true; break;
        case 'I':
            if (parse_include(optarg, o))
                return AIRLLM_EXIT_USAGE;
            break;
        case 'R': o->report = true; break;
        case 'c':
            if (strcmp(optarg, "none") == 0) {
                o->zstd = false;
            } else if (strncmp(optarg, "zstd", 4) == 0 &&
                       (optarg[4] == '\0' || optarg[4] == ':')) {
                o->zstd = true;
                if (optarg[4] == ':') {
                    if (cli_parse_uint(optarg + 5, 1, 19, &v))
                        return cli_usage_error("bad zstd level '%s' (1-19)", optarg + 5);
                    o->level = (int)v;
                }
            } else {
                return cli_usage_error("unknown --compress mode '%s' (none, zstd[:LEVEL])",
                                       optarg);
            }
            break;
        case 'j':
            if (cli_parse_uint(optarg, 1, 64, &v))
                return cli_usage_error("bad --jobs '%s' (1-64)", optarg);
            o->jobs = (unsigned)v;
            break;
        case 'D': o->delete_original = true; break;
        case 'n':
            /* -n is --max-new-tokens in airllm-run (docs/options.md): the
             * old short spelling still works, for the scripts that use it. */
            cli_info("note: -n is deprecated here: use --dry-run (-n is airllm-run's "
                     "--max-new-tokens)");
            /* fall through */
        case 'n' + 256: o->dry_run = true; break;
        case 'f': o->force = true; break;
        case 'L': o->follow_symlinks = true; break;
        case 'J': o->json = true; break;
        case 'q': cli_verbosity = 0; break;
        case 'v': cli_verbosity = 2; break;
        case 'h': usage(stdout); exit(AIRLLM_EXIT_OK);
        case 'V': cli_print_version(); exit(AIRLLM_EXIT_OK);
        default: return cli_getopt_error(ch, argv);
        }
    }
    if (preset_type >= 0) {
        if (!type_set)
            o->qtype = (airllm_quant_type)preset_type;
        if (!block_set)
            o->block = preset_block;
    }
    if (argc - optind != 2)
        return cli_usage_error(o->quant ? "expected IN_DIR and OUT_DIR"
                                        : "expected HF_DIR and OUT_DIR");
    o->hf_dir = argv[optind];
    o->out_dir = argv[optind + 1];
    static char snapshot[4096]; /* o->hf_dir's storage when resolved */
    int r = cli_resolve_hf_name(o->hf_dir, snapshot, sizeof snapshot);
    if (r < 0)
        return AIRLLM_EXIT_FAIL;
    if (r > 0)
        o->hf_dir = snapshot;
    return 0;
}
