/*
 * cli.h - what the `braid` CLI's command files share: reading text files,
 * generation flags, printing a stream (text or JSON lines) with its usage
 * line, and the command entry points.
 */
#ifndef BRAID_CLI_H
#define BRAID_CLI_H

#include <stdbool.h>
#include <stdio.h>

#include "braid.h"

#define CLI_MAX_STOP 16

/* Generation flags shared by `generate` and `chat`. */
typedef struct cli_gen_opts {
    braid_gen_request req; /* parts and ns are filled by the command */
    const char *stop[CLI_MAX_STOP];
} cli_gen_opts;

/* Sets the CLI's defaults (greedy: temperature 0). */
void cli_gen_opts_init(cli_gen_opts *o);

/* If argv[*i] is a generation flag, consumes it (and its value) and returns 1;
 * returns 0 when it is not one, -1 after printing what is wrong. */
int cli_gen_flag(const char *cmd, int argc, char **argv, int *i, cli_gen_opts *o);

/* The --help lines for the generation flags. */
void cli_gen_flags_help(FILE *f);

/* Reads a whole file ("-" is stdin) as a NUL-terminated string; prints a
 * message naming cmd and returns NULL when it cannot be read or is not UTF-8.
 * The caller frees the result with braid_free. */
char *cli_read_text(const char *cmd, const char *path);

/* Prints an error for a failed call: "braid CMD: WHAT: STATUS: message", plus
 * a hint for the statuses a user can act on. Returns 1 (the exit code). */
int cli_fail(const char *cmd, const char *what, braid_status st);

/* Registers text as a chunk of role in ns; prints problems. 0 on success. */
int cli_register_text(braid_client *c, const char *cmd, const char *ns, braid_role role,
                      const char *text, braid_chunk_info *out);

/* The result of cli_stream: the final event and, when asked, the answer. */
typedef struct cli_answer {
    braid_final final;
    char *text; /* the whole answer when collected (free with braid_free), else NULL */
} cli_answer;

/* Runs a generation, writing text deltas to stdout as they arrive (or one JSON
 * object per event with json), then a usage line on stderr. With collect, the
 * answer's text is kept in ans->text. Returns the exit code (0: finished with
 * stop or length). */
int cli_stream(braid_client *c, const char *cmd, const braid_gen_request *req, bool json,
               bool collect, cli_answer *ans);

/* Command entry points: argv holds the arguments after the command name. */
int cli_cmd_generate(braid_client *c, int argc, char **argv);
int cli_cmd_chunk(braid_client *c, int argc, char **argv);
int cli_cmd_chat(braid_client *c, int argc, char **argv);
int cli_cmd_stats(braid_client *c, int argc, char **argv);
int cli_cmd_model(braid_client *c, int argc, char **argv);
void cli_print_chunks(FILE *f, const braid_chunk_info *v, size_t n);

#endif
