/*
 * cmd_chat.c - `braid chat`: an interactive session over a composition that
 * grows turn by turn. The system prompt and context files become chunks;
 * user turns are inline parts; every answer is retained by the server as an
 * ASSISTANT (output) chunk and appended, so each turn reuses the KV of the
 * turns before it. Slash commands inspect and edit the composition.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "common/alloc.h"

#define MAX_ITEMS 1024

static const char chat_help_text[] =
    "Commands:\n"
    "  TEXT              a user turn: appended to the composition, then answered\n"
    "  /system TEXT      set the system prompt (a chunk, placed first; replaces the old one)\n"
    "  /context FILE     append a document (a CONTEXT chunk)\n"
    "  /query            show the composition the next turn will be generated from\n"
    "  /infer            generate from the composition as it stands, without a new user\n"
    "                    turn (e.g. after /context or /use-output, or for another answer\n"
    "                    to the last question); the answer is appended like any other\n"
    "  /chunks           list the chunks of the namespace\n"
    "  /stats            the service's counters\n"
    "  /use-output N     append the N-th answer of this session (its output chunk)\n"
    "  /reset            empty the composition (answers stay available to /use-output)\n"
    "  /help  /quit\n";

static void chat_usage(FILE *f)
{
    fprintf(f,
            "Usage: braid chat [--system TEXT] [--context FILE]... [options]\n\n"
            "An interactive session: each line on stdin is a user turn or a command.\n"
            "Every answer is kept by braidd as an output chunk and becomes part of the\n"
            "composition, so later turns reuse its KV cache.\n\n%s\n"
            "Options:\n"
            "  --system TEXT           initial system prompt\n"
            "  --context FILE          initial document; repeatable\n"
            "  --namespace NS          the tenant whose chunks to use (default \"\")\n\n",
            chat_help_text);
    cli_gen_flags_help(f);
}

/* One element of the composition: a chunk or inline user text. */
typedef struct item {
    braid_role role;
    char chunk_id[BRAID_CHUNK_ID_LEN + 1]; /* "" for inline text */
    char *text;                            /* inline text, or a label for a chunk */
    uint32_t tokens;                       /* chunk length, 0 when unknown */
} item;

typedef struct answer {
    char chunk_id[BRAID_CHUNK_ID_LEN + 1];
    char *text;
    uint32_t tokens;
} answer;

typedef struct chat {
    braid_client *c;
    cli_gen_opts g;
    const char *ns;
    item items[MAX_ITEMS];
    int n_items;
    answer *answers;
    size_t n_answers, cap_answers;
} chat;

static void item_clear(item *it)
{
    bi_free(it->text);
    memset(it, 0, sizeof *it);
}

/* Appends an item (text is copied); returns false when full. */
static bool push(chat *s, braid_role role, const char *chunk_id, const char *text, uint32_t tokens)
{
    if (s->n_items == MAX_ITEMS) {
        fprintf(stderr, "chat: the composition is full (%d parts); /reset\n", MAX_ITEMS);
        return false;
    }
    item *it = &s->items[s->n_items];
    memset(it, 0, sizeof *it);
    it->role = role;
    snprintf(it->chunk_id, sizeof it->chunk_id, "%s", chunk_id ? chunk_id : "");
    it->text = bi_strdup(text ? text : "");
    it->tokens = tokens;
    s->n_items++;
    return it->text != NULL;
}

static void chat_query(const chat *s)
{
    if (!s->n_items)
        printf("(the composition is empty)\n");
    for (int i = 0; i < s->n_items; i++) {
        const item *it = &s->items[i];
        if (it->chunk_id[0])
            printf("%d. %-9s chunk %.16s… %u tokens  %s\n", i + 1, braid_role_name(it->role),
                   it->chunk_id, it->tokens, it->text);
        else
            printf("%d. %-9s text  %.60s%s\n", i + 1, braid_role_name(it->role), it->text,
                   strlen(it->text) > 60 ? "…" : "");
    }
}

/* Generates from the composition; appends the answer on success. */
static int chat_generate(chat *s)
{
    if (!s->n_items) {
        fprintf(stderr, "chat: nothing to generate from; type a question or /context FILE\n");
        return 1;
    }
    braid_part parts[MAX_ITEMS];
    memset(parts, 0, sizeof parts);
    for (int i = 0; i < s->n_items; i++) {
        parts[i].role = s->items[i].role;
        if (s->items[i].chunk_id[0])
            parts[i].chunk_id = s->items[i].chunk_id;
        else
            parts[i].text = s->items[i].text;
    }
    braid_gen_request req = s->g.req;
    req.ns = s->ns;
    req.parts = parts;
    req.n_parts = (size_t)s->n_items;
    req.retain_output = 1;
    cli_answer ans;
    int rc = cli_stream(s->c, "chat", &req, false, true, &ans);
    if (rc == 0 && bi_array_reserve((void **)&s->answers, &s->cap_answers, s->n_answers + 1,
                                    sizeof *s->answers) == BI_OK) {
        answer *a = &s->answers[s->n_answers++];
        snprintf(a->chunk_id, sizeof a->chunk_id, "%s", ans.final.output_chunk_id);
        a->text = ans.text ? ans.text : bi_strdup("");
        a->tokens = ans.final.usage.completion_tokens;
        ans.text = NULL;
        char label[32];
        snprintf(label, sizeof label, "answer %zu", s->n_answers);
        /* Without an output chunk (server did not retain it) the answer goes inline. */
        push(s, BRAID_ROLE_ASSISTANT, a->chunk_id, a->chunk_id[0] ? label : a->text,
             ans.final.usage.completion_tokens);
    }
    bi_free(ans.text);
    return rc;
}

static void chat_system(chat *s, const char *text)
{
    braid_chunk_info x;
    if (cli_register_text(s->c, "chat", s->ns, BRAID_ROLE_SYSTEM, text, &x))
        return;
    if (s->n_items && s->items[0].role == BRAID_ROLE_SYSTEM && s->items[0].chunk_id[0]) {
        item_clear(&s->items[0]);
        s->items[0] = (item){
            .role = BRAID_ROLE_SYSTEM, .text = bi_strdup("system prompt"), .tokens = x.num_tokens};
        memcpy(s->items[0].chunk_id, x.id, sizeof x.id);
    } else if (push(s, BRAID_ROLE_SYSTEM, x.id, "system prompt", x.num_tokens)) {
        item tmp = s->items[s->n_items - 1];
        memmove(&s->items[1], &s->items[0], (size_t)(s->n_items - 1) * sizeof tmp);
        s->items[0] = tmp;
    }
    fprintf(stderr, "system prompt set (%u tokens)\n", x.num_tokens);
}

static void chat_context(chat *s, const char *path)
{
    char *text = cli_read_text("chat", path);
    braid_chunk_info x;
    if (text && !cli_register_text(s->c, "chat", s->ns, BRAID_ROLE_CONTEXT, text, &x) &&
        push(s, BRAID_ROLE_CONTEXT, x.id, path, x.num_tokens))
        fprintf(stderr, "added %s (%u tokens, chunk %.16s…)\n", path, x.num_tokens, x.id);
    bi_free(text);
}

static void chat_use_output(chat *s, const char *arg)
{
    char *end;
    long n = strtol(arg, &end, 10);
    if (end == arg || *end || n < 1 || (size_t)n > s->n_answers) {
        fprintf(stderr, "chat: /use-output N takes an answer number, 1..%zu\n", s->n_answers);
        return;
    }
    const answer *a = &s->answers[n - 1];
    char label[32];
    snprintf(label, sizeof label, "answer %ld", n);
    if (push(s, BRAID_ROLE_ASSISTANT, a->chunk_id, a->chunk_id[0] ? label : a->text, a->tokens))
        fprintf(stderr, "appended answer %ld\n", n);
}

static void chat_reset(chat *s, bool verbose)
{
    for (int i = 0; i < s->n_items; i++)
        item_clear(&s->items[i]);
    s->n_items = 0;
    if (verbose)
        fprintf(stderr, "composition emptied\n");
}

/* Runs one input line; returns false on /quit. */
static bool chat_line(chat *s, char *line)
{
    char *arg = strchr(line, ' ');
    if (line[0] != '/') {
        if (push(s, BRAID_ROLE_USER, NULL, line, 0) && chat_generate(s) != 0)
            item_clear(&s->items[--s->n_items]); /* the turn failed: take it back */
        return true;
    }
    if (arg)
        *arg++ = '\0';
    const char *cmd = line + 1;
    bool needs_arg =
        !strcmp(cmd, "system") || !strcmp(cmd, "context") || !strcmp(cmd, "use-output");
    if (needs_arg && (!arg || !*arg)) {
        fprintf(stderr, "chat: /%s needs an argument (/help lists the commands)\n", cmd);
    } else if (!strcmp(cmd, "system")) {
        chat_system(s, arg);
    } else if (!strcmp(cmd, "context")) {
        chat_context(s, arg);
    } else if (!strcmp(cmd, "use-output")) {
        chat_use_output(s, arg);
    } else if (!strcmp(cmd, "query")) {
        chat_query(s);
    } else if (!strcmp(cmd, "infer")) {
        chat_generate(s);
    } else if (!strcmp(cmd, "chunks")) {
        char *args[] = {"list", "--namespace", (char *)(s->ns ? s->ns : "")};
        cli_cmd_chunk(s->c, 3, args);
    } else if (!strcmp(cmd, "stats")) {
        cli_cmd_stats(s->c, 0, NULL);
    } else if (!strcmp(cmd, "reset")) {
        chat_reset(s, true);
    } else if (!strcmp(cmd, "help")) {
        printf("%s", chat_help_text);
    } else if (!strcmp(cmd, "quit") || !strcmp(cmd, "exit")) {
        return false;
    } else {
        fprintf(stderr, "chat: unknown command /%s\n%s", cmd, chat_help_text);
    }
    fflush(stdout);
    return true;
}

static int chat_parse(chat *s, int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int r = cli_gen_flag("chat", argc, argv, &i, &s->g);
        if (r < 0)
            return 2;
        if (r > 0)
            continue;
        if (!strcmp(a, "--help")) {
            chat_usage(stdout);
            return -1;
        }
        bool valued =
            !strcmp(a, "--system") || !strcmp(a, "--context") || !strcmp(a, "--namespace");
        if (!valued) {
            fprintf(stderr, "braid chat: unknown option '%s' (see braid chat --help)\n", a);
            return 2;
        }
        if (!v) {
            fprintf(stderr, "braid chat: %s needs a value\n", a);
            return 2;
        }
        i++;
        if (!strcmp(a, "--namespace"))
            s->ns = v;
    }
    return 0;
}

int cli_cmd_chat(braid_client *c, int argc, char **argv)
{
    chat *s = bi_calloc(1, sizeof *s);
    if (!s)
        return 1;
    s->c = c;
    cli_gen_opts_init(&s->g);
    int rc = chat_parse(s, argc, argv);
    /* The initial --system and --context run once the namespace is known. */
    for (int i = 0; rc == 0 && i + 1 < argc; i++) {
        if (!strcmp(argv[i], "--system"))
            chat_system(s, argv[++i]);
        else if (!strcmp(argv[i], "--context"))
            chat_context(s, argv[++i]);
    }
    bool tty = isatty(0);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    if (rc == 0 && tty)
        fprintf(stderr, "braid chat: type a question, or /help\n");
    while (rc == 0 && (tty ? fprintf(stderr, "> ") : 0, (n = getline(&line, &cap, stdin)) >= 0)) {
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        if (n && !chat_line(s, line))
            break;
    }
    free(line);
    chat_reset(s, false);
    for (size_t i = 0; i < s->n_answers; i++)
        bi_free(s->answers[i].text);
    bi_free(s->answers);
    bi_free(s);
    return rc < 0 ? 0 : rc;
}
