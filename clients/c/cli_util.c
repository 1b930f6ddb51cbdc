/* cli_util.c - the `braid` CLI's shared pieces: generation flags, text files, errors, streaming
 * output. */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "client_internal.h"
#include "common/alloc.h"

void cli_gen_opts_init(cli_gen_opts *o)
{
    memset(o, 0, sizeof *o);
    o->req.sampling.has_temperature = 1; /* the CLI is greedy unless told otherwise */
    o->req.sampling.temperature = 0;
    o->req.stop = o->stop;
}

void cli_gen_flags_help(FILE *f)
{
    fprintf(f, "Generation:\n"
               "  --max-tokens N          tokens to generate at most (default 256)\n"
               "  --temperature T         0..100, 0 is greedy (default 0)\n"
               "  --top-k N  --top-p P  --min-p P  --seed N\n"
               "  --repetition-penalty R  --presence-penalty P  --frequency-penalty F\n"
               "  --logprobs N            report N alternatives per token (shown with --json)\n"
               "  --stop TEXT             stop string (repeatable, at most 16)\n"
               "  --ignore-eos            keep generating past end-of-generation tokens\n"
               "  --reuse MODE            exact (default), independent or repair\n"
               "  --retain-output         register the answer as an ASSISTANT chunk\n"
               "  --deadline MS           cancel the generation after MS milliseconds\n"
               "  --request-id ID         your id for the request, echoed in the final event\n");
}

static bool parse_num(const char *s, double lo, double hi, double *out)
{
    char *end;
    double v = s ? strtod(s, &end) : 0;
    if (!s || end == s || *end || !(v >= lo && v <= hi))
        return false;
    *out = v;
    return true;
}

/* A numeric flag: name, range, and where the value goes. */
typedef struct num_flag {
    const char *name;
    double lo, hi;
    int kind; /* 0 float, 1 int32, 2 uint32, 3 uint64 */
    size_t off;
    size_t has_off; /* offset of a has_ flag, or 0 */
} num_flag;

#define S(f) offsetof(braid_gen_request, sampling.f)
static const num_flag num_flags[] = {
    {"--max-tokens", 1, 1e6, 2, offsetof(braid_gen_request, max_tokens), 0},
    {"--temperature", 0, 100, 0, S(temperature), S(has_temperature)},
    {"--top-k", 0, 1e7, 1, S(top_k), 0},
    {"--top-p", 1e-9, 1, 0, S(top_p), S(has_top_p)},
    {"--min-p", 0, 0.999999, 0, S(min_p), 0},
    {"--seed", 0, 9e15, 3, S(seed), S(has_seed)},
    {"--repetition-penalty", 1e-6, 10, 0, S(repetition_penalty), S(has_repetition_penalty)},
    {"--presence-penalty", -2, 2, 0, S(presence_penalty), 0},
    {"--frequency-penalty", -2, 2, 0, S(frequency_penalty), 0},
    {"--logprobs", 0, 20, 1, S(logprobs), S(has_logprobs)},
    {"--deadline", 1, 1e12, 3, offsetof(braid_gen_request, timeout_ms), 0},
};
#undef S

static int set_num(const char *cmd, const num_flag *f, const char *v, braid_gen_request *r)
{
    double d;
    if (!parse_num(v, f->lo, f->hi, &d)) {
        fprintf(stderr, "braid %s: %s needs a number in [%g, %g]\n", cmd, f->name, f->lo, f->hi);
        return -1;
    }
    char *base = (char *)r;
    if (f->kind == 0)
        *(float *)(base + f->off) = (float)d;
    else if (f->kind == 1)
        *(int32_t *)(base + f->off) = (int32_t)d;
    else if (f->kind == 2)
        *(uint32_t *)(base + f->off) = (uint32_t)d;
    else
        *(uint64_t *)(base + f->off) = (uint64_t)d;
    if (f->has_off)
        *(int *)(base + f->has_off) = 1;
    return 1;
}

int cli_gen_flag(const char *cmd, int argc, char **argv, int *i, cli_gen_opts *o)
{
    const char *a = argv[*i], *v = *i + 1 < argc ? argv[*i + 1] : NULL;
    braid_gen_request *r = &o->req;
    for (size_t k = 0; k < sizeof num_flags / sizeof num_flags[0]; k++) {
        if (strcmp(a, num_flags[k].name) == 0) {
            (*i)++;
            return set_num(cmd, &num_flags[k], v, r);
        }
    }
    if (strcmp(a, "--ignore-eos") == 0)
        return r->ignore_eos = 1;
    if (strcmp(a, "--retain-output") == 0)
        return r->retain_output = 1;
    if (strcmp(a, "--stop") == 0 || strcmp(a, "--reuse") == 0 || strcmp(a, "--request-id") == 0) {
        if (!v) {
            fprintf(stderr, "braid %s: %s needs a value\n", cmd, a);
            return -1;
        }
        (*i)++;
        if (strcmp(a, "--request-id") == 0) {
            r->client_request_id = v;
        } else if (strcmp(a, "--stop") == 0) {
            if (r->n_stop == CLI_MAX_STOP) {
                fprintf(stderr, "braid %s: at most %d --stop strings\n", cmd, CLI_MAX_STOP);
                return -1;
            }
            o->stop[r->n_stop++] = v;
        } else {
            const char *modes[] = {"exact", "independent", "repair"};
            for (int m = 0; m < 3; m++)
                if (strcmp(v, modes[m]) == 0)
                    return r->reuse = (braid_reuse_mode)m, 1;
            fprintf(stderr, "braid %s: --reuse is exact, independent or repair\n", cmd);
            return -1;
        }
        return 1;
    }
    return 0;
}

char *cli_read_text(const char *cmd, const char *path)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "braid %s: cannot open %s: %s\n", cmd, path, strerror(errno));
        return NULL;
    }
    char *buf = NULL;
    size_t cap = 0, n = 0, k;
    char tmp[65536];
    bool ok = true;
    while (ok && (k = fread(tmp, 1, sizeof tmp, f)) > 0) {
        if ((ok = bi_array_reserve((void **)&buf, &cap, n + k + 1, 1) == BI_OK)) {
            memcpy(buf + n, tmp, k);
            n += k;
        }
    }
    ok = ok && !ferror(f);
    if (f != stdin)
        fclose(f);
    if (ok && !buf)
        ok = (buf = bi_strdup("")) != NULL;
    if (!ok) {
        fprintf(stderr, "braid %s: cannot read %s\n", cmd, path);
    } else if (memchr(buf, 0, n) || !braid__utf8_valid(buf, n)) {
        fprintf(stderr, "braid %s: %s is not UTF-8 text (convert it, e.g. with iconv)\n", cmd,
                path);
        ok = false;
    } else {
        buf[n] = '\0';
    }
    if (!ok) {
        bi_free(buf);
        return NULL;
    }
    return buf;
}

int cli_fail(const char *cmd, const char *what, braid_status st)
{
    const char *hint = "";
    if (st == BRAID_UNAVAILABLE && !strstr(braid_last_error(), "handshake"))
        hint = "\n  is braidd running? start it with `braidd --listen URL --model PATH` and pass "
               "--address URL (or set BRAID_ADDRESS)";
    else if (st == BRAID_NOT_FOUND)
        hint = "\n  `braid chunk list` shows the chunk ids of this namespace";
    else if (st == BRAID_UNIMPLEMENTED)
        hint = "\n  this braidd does not implement that method yet";
    fprintf(stderr, "braid %s: %s: %s: %s%s\n", cmd, what, braid_status_name(st),
            braid_last_error()[0] ? braid_last_error() : braid_strerror(st), hint);
    return 1;
}

int cli_register_text(braid_client *c, const char *cmd, const char *ns, braid_role role,
                      const char *text, braid_chunk_info *out)
{
    braid_chunk_desc d = {.ns = ns, .role = role, .text = text};
    braid_status st = braid_chunk_register(c, &d, out, NULL);
    return st == BRAID_OK ? 0 : cli_fail(cmd, "cannot register a chunk", st);
}

/* Writes s as a JSON string literal. */
static void json_str(FILE *f, const char *s, size_t n)
{
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch == '\n')
            fputs("\\n", f);
        else if (ch == '\t')
            fputs("\\t", f);
        else if (ch == '\r')
            fputs("\\r", f);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

static void json_logprob(FILE *f, const braid_logprob *lp)
{
    fprintf(f, "{\"token_id\":%d,\"logprob\":%.6g,\"text\":", lp->token_id, lp->logprob);
    json_str(f, lp->text, strlen(lp->text));
    fputc('}', f);
}

static void json_event(FILE *f, const braid_event *ev)
{
    fprintf(f, "{\"seq\":%llu,\"type\":\"%s\",", (unsigned long long)ev->seq,
            ev->kind == BRAID_EVENT_TOKEN ? "token" : "final");
    if (ev->kind == BRAID_EVENT_TOKEN) {
        fprintf(f, "\"token_id\":%d,", ev->token_id);
        if (ev->has_logprob) {
            fputs("\"logprob\":", f);
            json_logprob(f, &ev->logprob);
            fputs(",\"top_logprobs\":[", f);
            for (size_t i = 0; i < ev->n_top_logprobs; i++) {
                if (i)
                    fputc(',', f);
                json_logprob(f, &ev->top_logprobs[i]);
            }
            fputs("],", f);
        }
    } else {
        const braid_final *x = &ev->final;
        const braid_usage *u = &x->usage;
        fprintf(f,
                "\"finish_reason\":\"%s\",\"status\":\"%s\",\"prompt_tokens\":%u,"
                "\"cached_prompt_tokens\":%u,\"completion_tokens\":%u,\"ttft_ms\":%.3f,"
                "\"total_ms\":%.3f,\"output_chunk_id\":\"%s\",\"message\":",
                braid_finish_reason_name(x->finish_reason), braid_status_name(x->status),
                u->prompt_tokens, u->cached_prompt_tokens, u->completion_tokens, u->ttft_ms,
                u->total_ms, x->output_chunk_id);
        json_str(f, x->message, strlen(x->message));
        fputs(",\"client_request_id\":", f);
        json_str(f, x->client_request_id, strlen(x->client_request_id));
        fputc(',', f);
    }
    fputs("\"text\":", f);
    json_str(f, ev->text, ev->text_len);
    fputs("}\n", f);
}

static void usage_line(const braid_final *x)
{
    const braid_usage *u = &x->usage;
    double decode_ms = u->total_ms - u->ttft_ms;
    double tps = u->completion_tokens > 1 && decode_ms > 0
                     ? (u->completion_tokens - 1) / (decode_ms / 1000.0)
                     : 0;
    fprintf(stderr,
            "[%u tokens, prompt %u (%u cached), TTFT %.1f ms, %.1f tokens/s, finish %s%s%s%s%s]\n",
            u->completion_tokens, u->prompt_tokens, u->cached_prompt_tokens, u->ttft_ms, tps,
            braid_finish_reason_name(x->finish_reason), x->status ? ": " : "",
            x->status ? x->message : "", x->output_chunk_id[0] ? ", output chunk " : "",
            x->output_chunk_id);
}

/* Appends text to the collected answer. */
static bool collect_text(cli_answer *ans, size_t *len, size_t *cap, const char *t, size_t n)
{
    if (bi_array_reserve((void **)&ans->text, cap, *len + n + 1, 1) != BI_OK)
        return false;
    memcpy(ans->text + *len, t, n);
    *len += n;
    ans->text[*len] = '\0';
    return true;
}

int cli_stream(braid_client *c, const char *cmd, const braid_gen_request *req, bool json,
               bool collect, cli_answer *ans)
{
    memset(ans, 0, sizeof *ans);
    braid_stream *s;
    braid_status st = braid_generate_start(c, req, &s);
    if (st != BRAID_OK)
        return cli_fail(cmd, "cannot start the generation", st);
    braid_event ev;
    size_t len = 0, cap = 0;
    while ((st = braid_stream_next(s, &ev)) == BRAID_OK) {
        if (json)
            json_event(stdout, &ev);
        else
            fwrite(ev.text, 1, ev.text_len, stdout);
        fflush(stdout);
        if (collect && !collect_text(ans, &len, &cap, ev.text, ev.text_len)) {
            st = BRAID_RESOURCE_EXHAUSTED;
            break;
        }
        if (ev.kind == BRAID_EVENT_FINAL)
            break;
    }
    if (st != BRAID_OK) {
        cli_fail(cmd, "the stream failed", st);
        fprintf(stderr, "  (stream %llu, last seq %llu)\n", (unsigned long long)braid_stream_id(s),
                (unsigned long long)braid_stream_last_seq(s));
        braid_stream_close(s);
        return 1;
    }
    ans->final = ev.final;
    braid_stream_close(s);
    if (!json)
        fputc('\n', stdout);
    fflush(stdout);
    usage_line(&ans->final);
    return ans->final.status == BRAID_OK && ans->final.finish_reason != BRAID_FINISH_ERROR ? 0 : 1;
}

void cli_print_chunks(FILE *f, const braid_chunk_info *v, size_t n)
{
    fprintf(f, "%-64s  %-9s %7s %6s %8s %6s %9s %s\n", "ID", "ROLE", "TOKENS", "PINNED", "RESIDENT",
            "HITS", "SAVED", "NAMESPACE");
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%-64s  %-9s %7u %6s %8s %6llu %9llu %s\n", v[i].id, braid_role_name(v[i].role),
                v[i].num_tokens, v[i].pinned ? "yes" : "no", v[i].kv_resident ? "yes" : "no",
                (unsigned long long)v[i].hits, (unsigned long long)v[i].tokens_saved,
                v[i].ns[0] ? v[i].ns : "-");
}
