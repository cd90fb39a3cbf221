/* The --json envelope every tool shares (docs/json.md): one compact object
 * per line on stdout, each with tool, version, type and status, and the
 * error object a failure (exit 1) or a usage error (exit 2) prints. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli.h"

bool cli_json; /* set by cli_json_prescan; read by cli_usage_error */

void cli_json_prescan(int argc, char **argv)
{
    /* Before getopt runs: a usage error found on the way must already know
     * that the caller wants JSON. "--json" or an unambiguous prefix of it
     * (getopt_long accepts "--js"), up to a "--". */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0)
            break;
        size_t n = strlen(a);
        if (n >= 4 && n <= 6 && strncmp(a, "--json", n) == 0)
            cli_json = true;
    }
}

cJSON *cli_json_new(const char *type, const char *status)
{
    cJSON *j = cJSON_CreateObject();
    if (!j)
        return NULL;
    cJSON_AddStringToObject(j, "tool", cli_prog);
    cJSON_AddStringToObject(j, "version", AIRLLM_VERSION);
    cJSON_AddStringToObject(j, "type", type);
    cJSON_AddStringToObject(j, "status", status);
    return j;
}

void cli_json_emit(cJSON *j)
{
    char *line = j ? cJSON_PrintUnformatted(j) : NULL;
    if (line) {
        /* cJSON escapes control characters in strings: one object, one line */
        puts(line);
    } else {
        /* out of memory: still a line a script can parse */
        printf("{\"tool\":\"%s\",\"version\":\"%s\",\"type\":\"summary\",\"status\":\"error\","
               "\"exit_code\":1,\"error\":\"out of memory\"}\n",
               cli_prog, AIRLLM_VERSION);
    }
    fflush(stdout);
    free(line);
    cJSON_Delete(j);
}

void cli_json_error(int exit_code, const char *msg)
{
    cJSON *j = cli_json_new("summary", "error");
    if (j) {
        cJSON_AddNumberToObject(j, "exit_code", exit_code);
        cJSON_AddStringToObject(j, "error", msg);
    }
    cli_json_emit(j);
}
