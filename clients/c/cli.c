/* cli.c - the `braid` command-line client. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "braid.h"
#include "cmd_run.h"

#define DEFAULT_ADDRESS "tcp://127.0.0.1:7543"

static void usage(FILE *f)
{
    fprintf(f, "Usage: braid [--address URL] [--timeout MS] COMMAND\n\n"
               "Talks to a running braidd.\n\n"
               "Commands:\n"
               "  health      print whether braidd is serving, its version and model\n"
               "  run         run a model in this process, no braidd (braid run --help)\n\n"
               "Options:\n"
               "  --address URL   braidd address (default " DEFAULT_ADDRESS ", env BRAID_ADDRESS)\n"
               "  --timeout MS    per-call timeout in milliseconds (default 30000)\n"
               "  --help          print this help\n");
}

static int cmd_health(braid_client *c)
{
    braid_health h;
    braid_status st = braid_health_check(c, &h);
    if (st != BRAID_OK) {
        fprintf(stderr, "braid: health: %s: %s\n", braid_strerror(st), braid_last_error());
        return 1;
    }
    printf("status: %s\nversion: %s\nbackend: %s\nmodel: %s\nuptime_ms: %llu\n",
           h.serving ? "SERVING" : "NOT_SERVING", h.version, h.backend,
           h.model[0] ? h.model : "(none)", (unsigned long long)h.uptime_ms);
    return h.serving ? 0 : 1;
}

int main(int argc, char **argv)
{
    const char *addr = getenv("BRAID_ADDRESS");
    int timeout_ms = 30000;
    int i = 1;
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
        if (strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--address") == 0 && i + 1 < argc) {
            addr = argv[++i];
        } else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) {
            timeout_ms = atoi(argv[++i]);
        } else {
            fprintf(stderr, "braid: unknown option '%s'\n\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (i >= argc) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[i], "run") == 0)
        return braid_cmd_run(argc - i - 1, argv + i + 1);
    braid_client *c;
    braid_status st = braid_client_create(addr ? addr : DEFAULT_ADDRESS, timeout_ms, &c);
    if (st != BRAID_OK) {
        fprintf(stderr, "braid: %s: %s\n", braid_strerror(st), braid_last_error());
        return 1;
    }
    int rc;
    if (strcmp(argv[i], "health") == 0) {
        rc = cmd_health(c);
    } else {
        fprintf(stderr, "braid: unknown command '%s'\n\n", argv[i]);
        usage(stderr);
        rc = 2;
    }
    braid_client_destroy(c);
    return rc;
}
