/* What kind of directory a user handed a tool, so that a wrong one gets an
 * error that says what to do instead of "manifest.json: cannot open"; and
 * getopt's errors, said once in the tools' own words. */
#include <dirent.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "airllm_io.h" /* AIRLLM_STATE_DIR, AIRLLM_LOCK_NAME */
#include "airllm_manifest.h"
#include "cli.h"

static bool exists_in(const char *dir, const char *name)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return access(p, F_OK) == 0;
}

/* Whether the state folder holds more than the writer's lock: a run wrote
 * its plan or journal there and did not finish. */
static bool state_used(const char *dir)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, AIRLLM_STATE_DIR);
    DIR *d = opendir(p);
    if (!d)
        return false;
    const struct dirent *e;
    bool used = false;
    while (!used && (e = readdir(d)) != NULL)
        used = strcmp(e->d_name, ".") && strcmp(e->d_name, "..") &&
               strcmp(e->d_name, AIRLLM_LOCK_NAME);
    closedir(d);
    return used;
}

static bool has_safetensors(const char *dir)
{
    if (exists_in(dir, "model.safetensors.index.json"))
        return true;
    DIR *d = opendir(dir);
    if (!d)
        return false;
    const struct dirent *e;
    bool found = false;
    while (!found && (e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        found = l > 12 && strcmp(e->d_name + l - 12, ".safetensors") == 0;
    }
    closedir(d);
    return found;
}

cli_dir_kind cli_dir_classify(const char *dir)
{
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return CLI_DIR_MISSING;
    if (exists_in(dir, AIRLLM_MANIFEST_NAME))
        return CLI_DIR_CONVERTED; /* complete or not: the loaders say which */
    if (state_used(dir))
        return CLI_DIR_INTERRUPTED;
    if (has_safetensors(dir))
        return CLI_DIR_HF;
    return CLI_DIR_OTHER;
}

int cli_getopt_error(int ch, char **argv)
{
    /* optind has moved past the word that held the option. */
    const char *word = optind > 0 ? argv[optind - 1] : "?";
    if (ch == ':')
        return optopt && word[0] == '-' && word[1] != '-'
                   ? cli_usage_error("option '-%c' needs a value", optopt)
                   : cli_usage_error("option '%s' needs a value", word);
    if (optopt)
        return cli_usage_error("unknown option '-%c'", optopt);
    return cli_usage_error("unknown option '%s'", word);
}
