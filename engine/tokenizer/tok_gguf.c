/*
 * tok_gguf.c - loading a tokenizer from GGUF metadata (llama.cpp's keys), and
 * eng_tokenizer_load, which picks the loader for a model path.
 *
 * tokenizer.ggml.model "gpt2" is byte-level BPE with tokenizer.ggml.merges and
 * the split regexes named by tokenizer.ggml.pre; "llama" is SentencePiece-style
 * BPE merged by token score (tokenizer.ggml.scores), as llama.cpp does.
 * token_type CONTROL (3) and USER_DEFINED (4) tokens are matched as special
 * tokens; BYTE (6) tokens are the <0xAB> fallback.
 */
#define BI_LOG_MODULE "tok"
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "common/alloc.h"
#include "common/log.h"
#ifdef BRAID_TOK_GGUF
#include "model/gguf.h"
#endif
#include "tokenizer/tok_internal.h"

#ifdef BRAID_TOK_GGUF
enum { GGUF_TOKEN_CONTROL = 3, GGUF_TOKEN_USER_DEFINED = 4, GGUF_TOKEN_BYTE = 6 };

/* Split regexes for a tokenizer.ggml.pre name (llama.cpp's names). */
static bi_status add_pre(eng_tokenizer *t, const char *pre, size_t len, char *err, size_t err_size)
{
    static const struct {
        const char *name;
        const char *re1, *re2;
    } table[] = {
        {"default", TOK_RE_GPT2, NULL},        {"gpt2", TOK_RE_GPT2, NULL},
        {"llama-bpe", TOK_RE_LLAMA3, NULL},    {"llama3", TOK_RE_LLAMA3, NULL},
        {"llama-v3", TOK_RE_LLAMA3, NULL},     {"smaug-bpe", TOK_RE_LLAMA3, NULL},
        {"qwen2", TOK_RE_QWEN2, NULL},         {"deepseek-r1-qwen", TOK_RE_QWEN2, NULL},
        {"smollm", TOK_RE_DIGIT, TOK_RE_GPT2},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        if (strlen(table[i].name) != len || memcmp(table[i].name, pre, len) != 0)
            continue;
        bi_status s = tok_add_regex(t, table[i].re1, err, err_size);
        return s == BI_OK && table[i].re2 ? tok_add_regex(t, table[i].re2, err, err_size) : s;
    }
    return tok_err(err, err_size, BI_UNSUPPORTED, "pre-tokenizer \"%.*s\" is not supported",
                   (int)(len > 64 ? 64 : len), pre);
}

static bi_status load_tokens(eng_tokenizer *t, const eng_gguf *g, char *err, size_t err_size)
{
    eng_gguf_arr toks, types = {0};
    bi_status s = eng_gguf_get_arr(g, "tokenizer.ggml.tokens", &toks);
    if (s != BI_OK)
        return tok_err(err, err_size, BI_BAD_FORMAT, "tokenizer.ggml.tokens missing or malformed");
    bool have_types = eng_gguf_get_arr(g, "tokenizer.ggml.token_type", &types) == BI_OK;
    if (have_types && types.count != toks.count)
        return tok_err(err, err_size, BI_BAD_FORMAT, "token_type has %llu entries for %llu tokens",
                       (unsigned long long)types.count, (unsigned long long)toks.count);
    for (uint64_t i = 0; i < toks.count; i++) {
        const char *p;
        size_t len;
        int32_t ty = 1;
        if (eng_gguf_arr_str(&toks, i, &p, &len) != BI_OK ||
            (have_types && eng_gguf_arr_i32(&types, i, &ty) != BI_OK))
            return tok_err(err, err_size, BI_BAD_FORMAT, "token %llu is malformed",
                           (unsigned long long)i);
        uint8_t attr = ty == GGUF_TOKEN_CONTROL        ? TOK_ATTR_SPECIAL | TOK_ATTR_CONTROL
                       : ty == GGUF_TOKEN_USER_DEFINED ? TOK_ATTR_SPECIAL
                       : ty == GGUF_TOKEN_BYTE         ? TOK_ATTR_BYTE
                                                       : 0;
        if ((s = tok_set_piece(t, (int32_t)i, p, len, attr, err, err_size)) != BI_OK)
            return s;
    }
    return tok_index_vocab(t, err, err_size);
}

static bi_status load_merges(eng_tokenizer *t, const eng_gguf *g, char *err, size_t err_size)
{
    eng_gguf_arr m;
    if (eng_gguf_get_arr(g, "tokenizer.ggml.merges", &m) != BI_OK)
        return tok_err(err, err_size, BI_BAD_FORMAT, "tokenizer.ggml.merges missing or malformed");
    for (uint64_t i = 0; i < m.count; i++) {
        const char *p, *sp;
        size_t len;
        bi_status s;
        if (eng_gguf_arr_str(&m, i, &p, &len) != BI_OK || !(sp = memchr(p, ' ', len)) || sp == p)
            return tok_err(err, err_size, BI_BAD_FORMAT, "merge %llu is not \"left right\"",
                           (unsigned long long)i);
        if ((s = tok_add_merge(t, p, (size_t)(sp - p), sp + 1, len - (size_t)(sp - p) - 1, err,
                               err_size)) != BI_OK)
            return s;
    }
    return BI_OK;
}

static bi_status load_scores(eng_tokenizer *t, const eng_gguf *g, char *err, size_t err_size)
{
    eng_gguf_arr sc;
    if (eng_gguf_get_arr(g, "tokenizer.ggml.scores", &sc) != BI_OK ||
        sc.count != (uint64_t)t->n_vocab)
        return tok_err(err, err_size, BI_BAD_FORMAT,
                       "tokenizer.ggml.scores missing or not one per token");
    if (!(t->scores = bi_mallocarray((size_t)t->n_vocab, sizeof *t->scores)))
        return tok_err(err, err_size, BI_NOMEM, "out of memory");
    for (int32_t i = 0; i < t->n_vocab; i++)
        if (eng_gguf_arr_f32(&sc, (uint64_t)i, &t->scores[i]) != BI_OK)
            return tok_err(err, err_size, BI_BAD_FORMAT, "score %d is malformed", i);
    t->merge_by_score = true;
    return BI_OK;
}

/* Optional metadata: special ids, flags, the chat template. */
static bi_status load_extras(eng_tokenizer *t, const eng_gguf *g, char *err, size_t err_size)
{
    static const char *const keys[] = {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                                       "tokenizer.ggml.unknown_token_id"};
    int32_t *dst[] = {&t->bos, &t->eos, &t->unk};
    for (int i = 0; i < 3; i++) {
        uint32_t v;
        bi_status s = eng_gguf_get_u32(g, keys[i], &v);
        if (s == BI_OK && v >= (uint32_t)t->n_vocab)
            return tok_err(err, err_size, BI_BAD_FORMAT, "%s = %u is out of range", keys[i], v);
        if (s == BI_OK)
            *dst[i] = (int32_t)v;
    }
    bool b;
    t->add_bos = t->kind == TOK_SPM;
    if (eng_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b) == BI_OK)
        t->add_bos = b;
    t->spm_prefix = t->kind == TOK_SPM;
    if (t->kind == TOK_SPM && eng_gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", &b) == BI_OK)
        t->spm_prefix = b;
    const char *tpl;
    size_t len;
    if (eng_gguf_get_str(g, "tokenizer.chat_template", &tpl, &len) == BI_OK &&
        !(t->chat_template = bi_strndup(tpl, len)))
        return tok_err(err, err_size, BI_NOMEM, "out of memory");
    return BI_OK;
}

bi_status eng_tokenizer_from_gguf(const eng_gguf *g, eng_tokenizer **out, char *err,
                                  size_t err_size)
{
    const char *model, *pre = "default";
    size_t ml, pl = 7;
    eng_gguf_arr toks;
    if (!g || !out)
        return tok_err(err, err_size, BI_INVALID_ARGUMENT, "no GGUF handle");
    if (eng_gguf_get_str(g, "tokenizer.ggml.model", &model, &ml) != BI_OK)
        return tok_err(err, err_size, BI_BAD_FORMAT, "GGUF has no tokenizer.ggml.model");
    bool spm = ml == 5 && memcmp(model, "llama", 5) == 0;
    if (!spm && !(ml == 4 && memcmp(model, "gpt2", 4) == 0))
        return tok_err(err, err_size, BI_UNSUPPORTED, "tokenizer model \"%.*s\" is not supported",
                       (int)(ml > 32 ? 32 : ml), model);
    if (eng_gguf_get_arr(g, "tokenizer.ggml.tokens", &toks) != BI_OK || toks.count > TOK_MAX_VOCAB)
        return tok_err(err, err_size, BI_BAD_FORMAT, "tokenizer.ggml.tokens missing or too large");
    eng_tokenizer *t;
    bi_status s = tok_new(spm ? TOK_SPM : TOK_BYTE_LEVEL, (int)toks.count, &t, err, err_size);
    if (s != BI_OK)
        return s;
    if ((s = load_tokens(t, g, err, err_size)) != BI_OK)
        goto fail;
    if (spm) {
        s = load_scores(t, g, err, err_size);
    } else {
        eng_gguf_get_str(g, "tokenizer.ggml.pre", &pre, &pl);
        if ((s = add_pre(t, pre, pl, err, err_size)) == BI_OK)
            s = load_merges(t, g, err, err_size);
    }
    if (s != BI_OK || (s = load_extras(t, g, err, err_size)) != BI_OK ||
        (s = tok_finish(t, err, err_size)) != BI_OK)
        goto fail;
    *out = t;
    return BI_OK;
fail:
    eng_tokenizer_destroy(t);
    return s;
}

#else
/* Built without braid_model: GGUF files cannot be read. */
bi_status eng_tokenizer_from_gguf(const eng_gguf *g, eng_tokenizer **out, char *err,
                                  size_t err_size)
{
    (void)g, (void)out;
    return tok_err(err, err_size, BI_UNIMPLEMENTED, "built without GGUF support");
}
#endif

bi_status eng_tokenizer_load(const char *model_path, eng_tokenizer **out, char *err,
                             size_t err_size)
{
    struct stat st;
    if (!model_path || !out)
        return tok_err(err, err_size, BI_INVALID_ARGUMENT, "no model path");
    if (stat(model_path, &st) != 0)
        return tok_err(err, err_size, BI_NOT_FOUND, "%s does not exist", model_path);
    if (S_ISDIR(st.st_mode)) {
        char tj[4096], tc[4096];
        if (snprintf(tj, sizeof tj, "%s/tokenizer.json", model_path) >= (int)sizeof tj ||
            snprintf(tc, sizeof tc, "%s/tokenizer_config.json", model_path) >= (int)sizeof tc)
            return tok_err(err, err_size, BI_INVALID_ARGUMENT, "model path too long");
        return eng_tokenizer_from_json(tj, stat(tc, &st) == 0 ? tc : NULL, out, err, err_size);
    }
    size_t n = strlen(model_path);
    if (n >= 5 && strcmp(model_path + n - 5, ".json") == 0)
        return eng_tokenizer_from_json(model_path, NULL, out, err, err_size);
#ifdef BRAID_TOK_GGUF
    eng_gguf *g;
    bi_status s = eng_gguf_open(model_path, &g, err, err_size);
    if (s != BI_OK)
        return s;
    s = eng_tokenizer_from_gguf(g, out, err, err_size);
    eng_gguf_close(g);
    return s;
#else
    return tok_err(err, err_size, BI_UNIMPLEMENTED, "built without GGUF support: %s", model_path);
#endif
}
