/* cmd_chunk.c - `braid chunk add|list|show|rm|pin`, `braid stats` and `braid model`. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "common/alloc.h"

static void chunk_usage(FILE *f)
{
    fprintf(
        f,
        "Usage: braid chunk COMMAND [options]\n\n"
        "Manages the chunk catalogue: content registered once whose KV cache is shared by\n"
        "every generation that composes it.\n\n"
        "  add [FILE|-] [--text TEXT] [--role R] [--pin] [--precompute]\n"
        "        registers a file, stdin or --text (role: system, context (default), user,\n"
        "        assistant); prints the chunk id alone on stdout, details on stderr\n"
        "  list [--all]            the chunks of the namespace (or of every namespace)\n"
        "  show ID [--text] [--tokens]\n"
        "                          a chunk's info, and its text or token ids\n"
        "  rm ID...                deletes chunks (KV freed once no generation uses them)\n"
        "  pin ID [--off]          keeps a chunk's KV resident (--off unpins)\n\n"
        "Every command takes --namespace NS (default \"\").\n\n"
        "Example:\n"
        "  id=$(braid chunk add notes.txt) && braid generate --chunk \"$id\" --prompt 'Sum up.'\n");
}

/* Options shared by the chunk commands; positional arguments in pos. */
typedef struct chunk_opts {
    const char *ns, *text;
    const char *pos[64];
    int n_pos;
    int role, pin, precompute, all, show_text, show_tokens, off;
} chunk_opts;

static int chunk_parse(int argc, char **argv, bool show, chunk_opts *o)
{
    memset(o, 0, sizeof *o);
    o->role = BRAID_ROLE_CONTEXT;
    struct {
        const char *name;
        int *flag;
    } flags[] = {{"--pin", &o->pin}, {"--precompute", &o->precompute},
                 {"--all", &o->all}, {"--tokens", &o->show_tokens},
                 {"--off", &o->off}, {"--text", show ? &o->show_text : NULL}};
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool done = false;
        for (size_t k = 0; k < sizeof flags / sizeof flags[0] && !done; k++)
            if (flags[k].flag && strcmp(a, flags[k].name) == 0)
                done = (*flags[k].flag = 1);
        if (done)
            continue;
        if (strcmp(a, "--help") == 0) {
            chunk_usage(stdout);
            return -1;
        }
        if (strcmp(a, "--namespace") == 0 || strcmp(a, "--role") == 0 || strcmp(a, "--text") == 0) {
            if (!v) {
                fprintf(stderr, "braid chunk: %s needs a value\n", a);
                return 2;
            }
            i++;
            if (a[2] == 'n')
                o->ns = v;
            else if (a[2] == 't')
                o->text = v;
            else if ((o->role = braid_role_parse(v)) < 0) {
                fprintf(stderr, "braid chunk: --role is system, context, user or assistant\n");
                return 2;
            }
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "braid chunk: unknown option '%s' (see braid chunk --help)\n", a);
            return 2;
        } else if (o->n_pos < 64) {
            o->pos[o->n_pos++] = a;
        }
    }
    return 0;
}

static void print_info(const braid_chunk_info *x)
{
    printf("id: %s\nnamespace: %s\nrole: %s\ntokens: %u\npinned: %s\nkv_resident: %s\n"
           "users: %u\nhits: %llu\ntokens_saved: %llu\nkv_bytes: %llu\n",
           x->id, x->ns, braid_role_name(x->role), x->num_tokens, x->pinned ? "yes" : "no",
           x->kv_resident ? "yes" : "no", x->users, (unsigned long long)x->hits,
           (unsigned long long)x->tokens_saved, (unsigned long long)x->kv_bytes);
}

static int chunk_add(braid_client *c, chunk_opts *o)
{
    if ((o->text != NULL) == (o->n_pos == 1) || o->n_pos > 1) {
        fprintf(stderr, "braid chunk add: give one FILE (or '-' for stdin) or --text TEXT\n");
        return 2;
    }
    char *buf = o->text ? NULL : cli_read_text("chunk add", o->pos[0]);
    if (!o->text && !buf)
        return 1;
    braid_chunk_desc d = {.ns = o->ns,
                          .role = (braid_role)o->role,
                          .text = o->text ? o->text : buf,
                          .pin = o->pin,
                          .precompute = o->precompute};
    braid_chunk_info x;
    int existed = 0;
    braid_status st = braid_chunk_register(c, &d, &x, &existed);
    bi_free(buf);
    if (st != BRAID_OK)
        return cli_fail("chunk add", "cannot register the chunk", st);
    printf("%s\n", x.id);
    fprintf(stderr, "%s chunk, %u tokens, %s%s\n", braid_role_name(x.role), x.num_tokens,
            existed ? "already registered" : "new", x.pinned ? ", pinned" : "");
    return 0;
}

static int chunk_show(braid_client *c, chunk_opts *o)
{
    if (o->n_pos != 1) {
        fprintf(stderr, "braid chunk show: give one chunk ID (braid chunk list shows them)\n");
        return 2;
    }
    braid_chunk_info x;
    braid_chunk_content content;
    bool want = o->show_text || o->show_tokens;
    braid_status st = braid_chunk_get(c, o->ns, o->pos[0], &x, want ? &content : NULL);
    if (st != BRAID_OK)
        return cli_fail("chunk show", o->pos[0], st);
    print_info(&x);
    if (o->show_tokens) {
        printf("token_ids:");
        for (size_t i = 0; i < content.n_tokens; i++)
            printf(" %d", content.token_ids[i]);
        printf("\n");
    }
    if (o->show_text)
        printf("text:\n%s\n", content.text);
    if (want)
        braid_chunk_content_free(&content);
    return 0;
}

static int chunk_rm_pin(braid_client *c, chunk_opts *o, bool rm)
{
    if (o->n_pos < 1 || (!rm && o->n_pos != 1)) {
        fprintf(stderr, "braid chunk %s: give %s\n", rm ? "rm" : "pin",
                rm ? "one or more chunk IDs" : "one chunk ID");
        return 2;
    }
    int rc = 0;
    for (int i = 0; i < o->n_pos; i++) {
        braid_chunk_info x;
        braid_status st = rm ? braid_chunk_delete(c, o->ns, o->pos[i])
                             : braid_chunk_pin(c, o->ns, o->pos[i], !o->off, &x);
        if (st != BRAID_OK)
            rc = cli_fail(rm ? "chunk rm" : "chunk pin", o->pos[i], st);
        else if (rm)
            fprintf(stderr, "deleted %s\n", o->pos[i]);
        else
            fprintf(stderr, "%s %s\n", x.pinned ? "pinned" : "unpinned", x.id);
    }
    return rc;
}

int cli_cmd_chunk(braid_client *c, int argc, char **argv)
{
    if (argc < 1 || strcmp(argv[0], "--help") == 0) {
        chunk_usage(argc < 1 ? stderr : stdout);
        return argc < 1 ? 2 : 0;
    }
    chunk_opts o;
    int rc = chunk_parse(argc - 1, argv + 1, strcmp(argv[0], "show") == 0, &o);
    if (rc)
        return rc < 0 ? 0 : rc;
    const char *sub = argv[0];
    if (strcmp(sub, "add") == 0)
        return chunk_add(c, &o);
    if (strcmp(sub, "show") == 0)
        return chunk_show(c, &o);
    if (strcmp(sub, "rm") == 0 || strcmp(sub, "pin") == 0)
        return chunk_rm_pin(c, &o, sub[0] == 'r');
    if (strcmp(sub, "list") == 0) {
        braid_chunk_info *v;
        size_t n;
        braid_status st = braid_chunk_list(c, o.ns, o.all, &v, &n);
        if (st != BRAID_OK)
            return cli_fail("chunk list", "cannot list chunks", st);
        cli_print_chunks(stdout, v, n);
        braid_free(v);
        return 0;
    }
    fprintf(stderr, "braid chunk: unknown command '%s' (add, list, show, rm, pin)\n", sub);
    return 2;
}

/* `stats` and `model` take no options but --help. */
static int no_args(const char *cmd, const char *what, int argc, char **argv)
{
    if (argc == 0)
        return 0;
    bool help = strcmp(argv[0], "--help") == 0;
    fprintf(help ? stdout : stderr, "Usage: braid %s\n\n%s\n", cmd, what);
    return help ? -1 : 2;
}

int cli_cmd_stats(braid_client *c, int argc, char **argv)
{
    int rc = no_args("stats",
                     "Prints braidd's counters: KV pool pages, chunks, running and queued\n"
                     "generations, token totals (cached prompt tokens included), streams.",
                     argc, argv);
    if (rc)
        return rc < 0 ? 0 : rc;
    braid_stats s;
    braid_status st = braid_stats_get(c, &s);
    if (st != BRAID_OK)
        return cli_fail("stats", "cannot get stats", st);
    printf("kv_pages_total: %u\nkv_pages_free: %u\nkv_page_tokens: %u\nkv_page_bytes: %llu\n"
           "chunks: %u\nrunning: %u\nqueued: %u\ngenerations: %llu\nprompt_tokens: %llu\n"
           "cached_prompt_tokens: %llu\ngenerated_tokens: %llu\nsteps: %llu\nevictions: %llu\n"
           "open_streams: %u\ncalls_in_flight: %u\nuptime_ms: %llu\npreemptions: %llu\n",
           s.kv_pages_total, s.kv_pages_free, s.kv_page_tokens, (unsigned long long)s.kv_page_bytes,
           s.chunks, s.running, s.queued, (unsigned long long)s.generations,
           (unsigned long long)s.prompt_tokens, (unsigned long long)s.cached_prompt_tokens,
           (unsigned long long)s.generated_tokens, (unsigned long long)s.steps,
           (unsigned long long)s.evictions, s.open_streams, s.calls_in_flight,
           (unsigned long long)s.uptime_ms, (unsigned long long)s.preemptions);
    return 0;
}

int cli_cmd_model(braid_client *c, int argc, char **argv)
{
    int rc = no_args("model",
                     "Prints the loaded model: architecture, shapes, context length,\n"
                     "chat format, weight fingerprint and backend.",
                     argc, argv);
    if (rc)
        return rc < 0 ? 0 : rc;
    braid_model_info m;
    braid_status st = braid_model_info_get(c, &m);
    if (st != BRAID_OK)
        return cli_fail("model", "cannot get the model info", st);
    printf("name: %s\narchitecture: %s\nlayers: %u\nhidden_size: %u\nheads: %u\nkv_heads: %u\n"
           "head_dim: %u\nvocab_size: %u\nmax_context: %u\nchat_format: %s\nfingerprint: %s\n"
           "backend: %s\nbos_token_id: %d\neos_token_id: %d\n",
           m.name, m.architecture, m.num_layers, m.hidden_size, m.num_heads, m.num_kv_heads,
           m.head_dim, m.vocab_size, m.max_context, m.chat_format, m.fingerprint, m.backend,
           m.bos_token_id, m.eos_token_id);
    return 0;
}
