/*
 * cmd_generate.c - `braid generate`: registers the system prompt and context
 * files as chunks, composes them (with existing chunks and the prompt) in
 * command-line order, and streams the answer.
 */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "common/alloc.h"

#define MAX_PARTS 256

static void generate_usage(FILE *f)
{
    fprintf(f, "Usage: braid generate [options] --prompt TEXT\n\n"
               "Streams an answer from braidd. The composition is, in order: the system prompt,\n"
               "then every --context file and --chunk id in the order given, then the prompt.\n"
               "System prompt and context files are registered as chunks first (deduplicated by\n"
               "content), so asking again reuses their KV: see 'cached' in the usage line.\n\n"
               "Composition:\n"
               "  --system TEXT           system prompt (registered as a SYSTEM chunk)\n"
               "  --context FILE          a document, '-' for stdin (a CONTEXT chunk); repeatable\n"
               "  --chunk ID              a registered chunk (braid chunk list); repeatable\n"
               "  --prompt TEXT           the user turn; '-' reads it from stdin\n"
               "  --namespace NS          the tenant whose chunks to use (default \"\")\n\n");
    cli_gen_flags_help(f);
    fprintf(f, "\nOutput:\n"
               "  --json                  one JSON object per event on stdout (for scripts)\n\n"
               "Text goes to stdout as tokens arrive; a usage line (tokens, cached prompt\n"
               "tokens, time to first token, tokens/s) goes to stderr at the end.\n\n"
               "Example:\n"
               "  braid generate --system 'Answer briefly.' --context notes.txt \\\n"
               "      --prompt 'What do the notes say about pages?' --max-tokens 60\n");
}

/* What the command line asked for, before anything is registered. */
typedef struct gen_cmd {
    cli_gen_opts g;
    const char *ns, *system, *prompt;
    const char *items[MAX_PARTS]; /* "c:FILE" or "k:ID", in order */
    int n_items;
    bool json;
} gen_cmd;

static int parse(int argc, char **argv, gen_cmd *o)
{
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int r = cli_gen_flag("generate", argc, argv, &i, &o->g);
        if (r < 0)
            return 2;
        if (r > 0)
            continue;
        if (strcmp(a, "--help") == 0) {
            generate_usage(stdout);
            return -1;
        }
        if (strcmp(a, "--json") == 0) {
            o->json = true;
            continue;
        }
        const char **dst = strcmp(a, "--system") == 0      ? &o->system
                           : strcmp(a, "--prompt") == 0    ? &o->prompt
                           : strcmp(a, "--namespace") == 0 ? &o->ns
                                                           : NULL;
        bool item = strcmp(a, "--context") == 0 || strcmp(a, "--chunk") == 0;
        if ((dst || item) && !v) {
            fprintf(stderr, "braid generate: %s needs a value\n", a);
            return 2;
        }
        if (dst) {
            *dst = argv[++i];
        } else if (item && o->n_items < MAX_PARTS - 2) {
            o->items[o->n_items++] = a;
            o->items[o->n_items++] = argv[++i];
        } else {
            fprintf(stderr, "braid generate: unknown option '%s' (see braid generate --help)\n", a);
            return 2;
        }
    }
    if (!o->prompt && !o->system && !o->n_items) {
        fprintf(stderr, "braid generate: nothing to generate from: give --prompt TEXT (and "
                        "optionally --system, --context FILE, --chunk ID)\n");
        return 2;
    }
    return 0;
}

/* Registers the system prompt and files; fills parts (chunk ids in ids). */
static int compose(braid_client *c, gen_cmd *o, braid_part *parts, size_t *n,
                   char (*ids)[BRAID_CHUNK_ID_LEN + 1], char **prompt_buf)
{
    braid_chunk_info info;
    *n = 0;
    if (o->system) {
        if (cli_register_text(c, "generate", o->ns, BRAID_ROLE_SYSTEM, o->system, &info))
            return 1;
        memcpy(ids[*n], info.id, sizeof info.id);
        parts[*n].chunk_id = ids[*n];
        (*n)++;
    }
    for (int k = 0; k < o->n_items; k += 2) {
        const char *v = o->items[k + 1];
        if (strcmp(o->items[k], "--context") == 0) {
            char *text = cli_read_text("generate", v);
            int rc =
                !text || cli_register_text(c, "generate", o->ns, BRAID_ROLE_CONTEXT, text, &info);
            bi_free(text);
            if (rc)
                return 1;
            memcpy(ids[*n], info.id, sizeof info.id);
            v = ids[*n];
        }
        parts[(*n)++].chunk_id = v;
    }
    if (o->prompt) {
        const char *p = o->prompt;
        if (strcmp(p, "-") == 0 && !(p = *prompt_buf = cli_read_text("generate", "-")))
            return 1;
        parts[*n].role = BRAID_ROLE_USER;
        parts[(*n)++].text = p;
    }
    return 0;
}

int cli_cmd_generate(braid_client *c, int argc, char **argv)
{
    gen_cmd *o = bi_calloc(1, sizeof *o);
    braid_part *parts = bi_calloc(MAX_PARTS, sizeof *parts);
    char(*ids)[BRAID_CHUNK_ID_LEN + 1] = bi_calloc(MAX_PARTS, sizeof *ids);
    char *prompt_buf = NULL;
    int rc = 1;
    if (!o || !parts || !ids)
        goto out;
    cli_gen_opts_init(&o->g);
    if ((rc = parse(argc, argv, o)) != 0) {
        rc = rc < 0 ? 0 : rc;
        goto out;
    }
    size_t n;
    if ((rc = compose(c, o, parts, &n, ids, &prompt_buf)) != 0)
        goto out;
    o->g.req.ns = o->ns;
    o->g.req.parts = parts;
    o->g.req.n_parts = n;
    cli_answer ans;
    rc = cli_stream(c, "generate", &o->g.req, o->json, false, &ans);
out:
    bi_free(prompt_buf);
    bi_free(ids);
    bi_free(parts);
    bi_free(o);
    return rc;
}
