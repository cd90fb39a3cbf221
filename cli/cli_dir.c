/* What kind of directory a user handed a tool, so that a wrong one gets an
 * error that says what to do instead of "manifest.json: cannot open"; and
 * getopt's errors, said once in the tools' own words. */
#include <dirent.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
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

/* ORG/NAME: one slash, and the characters the Hub allows in names. */
static bool looks_like_repo_id(const char *s)
{
    const char *slash = strchr(s, '/');
    if (!slash || slash == s || !slash[1] || strchr(slash + 1, '/') || s[0] == '.')
        return false;
    for (const char *p = s; *p; p++)
        if (!(*p == '/' || *p == '-' || *p == '_' || *p == '.' || (*p >= '0' && *p <= '9') ||
              (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')))
            return false;
    return strstr(s, "..") == NULL;
}

int cli_resolve_hf_name(const char *arg, char *out, size_t cap)
{
    struct stat st;
    if (stat(arg, &st) == 0 || !looks_like_repo_id(arg))
        return 0; /* a path: used as it is */
    char hub[2048];
    const char *hf_home = getenv("HF_HOME"), *home = getenv("HOME");
    if (hf_home && *hf_home)
        snprintf(hub, sizeof hub, "%s/hub", hf_home);
    else
        snprintf(hub, sizeof hub, "%s/.cache/huggingface/hub", home ? home : "");
    /* The cache's folder for ORG/NAME is models--ORG--NAME. */
    char repo[3072], name[512];
    snprintf(name, sizeof name, "%s", arg);
    *strchr(name, '/') = '\0';
    snprintf(repo, sizeof repo, "%s/models--%s--%s", hub, name, strchr(arg, '/') + 1);
    char rev[256] = "", path[4096];
    /* refs/main names the snapshot the Hub's own tools use; without it (or
     * when it names one that is gone) the newest snapshot folder. */
    snprintf(path, sizeof path, "%s/refs/main", repo);
    FILE *f = fopen(path, "r");
    if (f) {
        if (!fgets(rev, sizeof rev, f))
            rev[0] = '\0';
        fclose(f);
        rev[strcspn(rev, "\r\n")] = '\0';
        snprintf(path, sizeof path, "%s/snapshots/%s", repo, rev);
        if (!*rev || strchr(rev, '/') || stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
            rev[0] = '\0';
    }
    if (!*rev) {
        snprintf(path, sizeof path, "%s/snapshots", repo);
        DIR *d = opendir(path);
        const struct dirent *e;
        double newest = -1;
        while (d && (e = readdir(d)) != NULL) {
            char p[4096 + 256];
            snprintf(p, sizeof p, "%s/%s", path, e->d_name);
            if (e->d_name[0] == '.' || stat(p, &st) != 0 || !S_ISDIR(st.st_mode) ||
                strlen(e->d_name) >= sizeof rev)
                continue;
            double t = (double)st.st_mtim.tv_sec + st.st_mtim.tv_nsec * 1e-9;
            if (t > newest) {
                newest = t;
                snprintf(rev, sizeof rev, "%s", e->d_name);
            }
        }
        if (d)
            closedir(d);
    }
    if (!*rev) {
        cli_error("%s: no such directory, and no snapshot of it in the Hugging Face cache "
                  "(%s): nothing is downloaded; fetch it first (huggingface-cli download %s) "
                  "or give the checkpoint's directory",
                  arg, hub, arg);
        return -1;
    }
    if ((size_t)snprintf(out, cap, "%s/snapshots/%s", repo, rev) >= cap) {
        cli_error("%s: the cache path is too long", arg);
        return -1;
    }
    cli_info("%s: using the Hugging Face cache's snapshot %s (%s)", arg, rev, out);
    return 1;
}
