/* cli.c - the `braid` command-line client: global options and command dispatch. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "braid.h"
#include "cli.h"
#include "cmd_run.h"

#define DEFAULT_ADDRESS "tcp://127.0.0.1:7543"

static void usage(FILE *f)
{
    fprintf(f, "Usage: braid [--address URL] [--timeout MS] [--tls-ca FILE] COMMAND [options]\n\n"
               "The client of braidd, the Braidinfer service.\n\n"
               "Commands (each has --help):\n"
               "  generate    stream an answer composed of chunks, context files and a prompt\n"
               "  chat        an interactive session that builds a composition turn by turn\n"
               "  chunk       add, list, show, rm, pin chunks (registered, shared context)\n"
               "  stats       the service's counters (KV pool, generations, cache use)\n"
               "  model       the loaded model\n"
               "  health      whether braidd is serving, its version and model\n"
               "  run         run a model in this process, no braidd (braid run --help)\n\n"
               "Options:\n"
               "  --address URL   braidd address (default " DEFAULT_ADDRESS ", env BRAID_ADDRESS)\n"
               "  --timeout MS    per-call timeout in milliseconds (default 30000)\n"
               "  --tls-ca FILE   PEM CA certificate(s) that a tls+tcp:// braidd's certificate\n"
               "                  must chain to; required for tls+tcp:// (env BRAID_TLS_CA)\n"
               "  --tls-server-name NAME\n"
               "                  name the certificate must be issued to (default: the\n"
               "                  address's host; env BRAID_TLS_SERVER_NAME)\n"
               "  --help          print this help\n\n"
               "Example:\n"
               "  braid chunk add notes.txt\n"
               "  braid generate --context notes.txt --prompt 'Summarise the notes.'\n");
}

static int cmd_health(braid_client *c, int argc, char **argv)
{
    if (argc > 0) {
        bool help = strcmp(argv[0], "--help") == 0;
        fprintf(help ? stdout : stderr,
                "Usage: braid health\n\nPrints whether braidd is serving (exit 0) or not (1).\n");
        return help ? 0 : 2;
    }
    braid_health h;
    braid_status st = braid_health_check(c, &h);
    if (st != BRAID_OK)
        return cli_fail("health", "no answer", st);
    printf("status: %s\nversion: %s\nbackend: %s\nmodel: %s\nuptime_ms: %llu\n",
           h.serving ? "SERVING" : "NOT_SERVING", h.version, h.backend,
           h.model[0] ? h.model : "(none)", (unsigned long long)h.uptime_ms);
    return h.serving ? 0 : 1;
}

static const struct {
    const char *name;
    int (*fn)(braid_client *, int, char **);
} commands[] = {
    {"health", cmd_health},   {"generate", cli_cmd_generate}, {"chat", cli_cmd_chat},
    {"chunk", cli_cmd_chunk}, {"stats", cli_cmd_stats},       {"model", cli_cmd_model},
};

int main(int argc, char **argv)
{
    const char *addr = getenv("BRAID_ADDRESS");
    braid_client_opts opts = {.timeout_ms = 30000,
                              .tls_ca_file = getenv("BRAID_TLS_CA"),
                              .tls_server_name = getenv("BRAID_TLS_SERVER_NAME")};
    int i = 1;
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
        char *end;
        if (strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--address") == 0 && i + 1 < argc) {
            addr = argv[++i];
        } else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) {
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 1 || v > 86400000) {
                fprintf(stderr, "braid: --timeout needs milliseconds (1..86400000)\n");
                return 2;
            }
            opts.timeout_ms = (int)v;
        } else if (strcmp(argv[i], "--tls-ca") == 0 && i + 1 < argc) {
            opts.tls_ca_file = argv[++i];
        } else if (strcmp(argv[i], "--tls-server-name") == 0 && i + 1 < argc) {
            opts.tls_server_name = argv[++i];
        } else {
            fprintf(stderr, "braid: unknown or incomplete option '%s'\n\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (i >= argc) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[i];
    if (strcmp(cmd, "run") == 0)
        return braid_cmd_run(argc - i - 1, argv + i + 1);
    for (size_t k = 0; k < sizeof commands / sizeof commands[0]; k++) {
        if (strcmp(cmd, commands[k].name) != 0)
            continue;
        braid_client *c;
        braid_status st = braid_client_create_opts(addr ? addr : DEFAULT_ADDRESS, &opts, &c);
        if (st != BRAID_OK)
            return cli_fail(cmd, "cannot connect", st);
        int rc = commands[k].fn(c, argc - i - 1, argv + i + 1);
        braid_client_destroy(c);
        return rc;
    }
    fprintf(stderr, "braid: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return 2;
}
