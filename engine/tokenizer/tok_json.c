/*
 * tok_json.c - loading a tokenizer from Hugging Face tokenizer.json (+
 * tokenizer_config.json), and eng_tokenizer_load, which picks the loader for a
 * model path.
 *
 * Supported: model type BPE; byte-level (ByteLevel pre-tokenizer or decoder,
 * optionally after Split regexes and Digits) and SentencePiece-style (Prepend
 * + Replace(" ", "▁") normalizers or the Metaspace pre-tokenizer, byte
 * fallback). Anything else is BI_UNSUPPORTED with the name of what is missing.
 * Unicode normalizers (NFC, NFKC) are accepted but not applied, with a warning:
 * text that is already normalised, as nearly all text is, encodes the same.
 */
#define BI_LOG_MODULE "tok"
#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "common/alloc.h"
#include "common/log.h"
#include "tokenizer/tok_internal.h"

#define SPM_SPACE "\xE2\x96\x81"

typedef struct jctx {
    eng_tokenizer *t;
    char *err;
    size_t err_size;
    bool byte_level, spm;
} jctx;

static bool jtype_is(const cJSON *o, const char *type)
{
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(o, "type");
    return cJSON_IsString(ty) && strcmp(ty->valuestring, type) == 0;
}

static bool jbool(const cJSON *o, const char *key, bool dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}

static const char *jstr(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Walks a normalizer, pre-tokenizer or decoder (Sequence or single) and calls
 * fn on each element. */
static bi_status walk(jctx *c, const cJSON *o, const char *list_key,
                      bi_status (*fn)(jctx *, const cJSON *))
{
    if (!o || cJSON_IsNull(o))
        return BI_OK;
    if (!cJSON_IsObject(o))
        return tok_err(c->err, c->err_size, BI_BAD_FORMAT, "%s is not an object", list_key);
    if (!jtype_is(o, "Sequence"))
        return fn(c, o);
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(o, list_key), *e;
    if (!cJSON_IsArray(arr))
        return tok_err(c->err, c->err_size, BI_BAD_FORMAT, "Sequence without a %s array", list_key);
    bi_status s;
    cJSON_ArrayForEach(e, arr)
    {
        if ((s = walk(c, e, list_key, fn)) != BI_OK)
            return s;
    }
    return BI_OK;
}

static bi_status on_pre(jctx *c, const cJSON *o)
{
    eng_tokenizer *t = c->t;
    const char *type = jstr(o, "type");
    if (!type)
        return tok_err(c->err, c->err_size, BI_BAD_FORMAT, "pre_tokenizer without a type");
    if (strcmp(type, "ByteLevel") == 0) {
        c->byte_level = true;
        t->byte_prefix_space = jbool(o, "add_prefix_space", false);
        return jbool(o, "use_regex", true) ? tok_add_regex(t, TOK_RE_GPT2, c->err, c->err_size)
                                           : BI_OK;
    }
    if (strcmp(type, "Digits") == 0)
        return tok_add_regex(t, jbool(o, "individual_digits", false) ? TOK_RE_DIGIT : TOK_RE_DIGITS,
                             c->err, c->err_size);
    if (strcmp(type, "Split") == 0) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(o, "pattern");
        const char *re = jstr(pat, "Regex"), *behavior = jstr(o, "behavior");
        if (!re || !behavior || strcmp(behavior, "Isolated") != 0 || jbool(o, "invert", false))
            return tok_err(c->err, c->err_size, BI_UNSUPPORTED,
                           "only Split pre-tokenizers with a Regex pattern, Isolated behaviour "
                           "and no invert are supported");
        return tok_add_regex(t, re, c->err, c->err_size);
    }
    if (strcmp(type, "Metaspace") == 0) {
        const char *scheme = jstr(o, "prepend_scheme");
        c->spm = true;
        t->spm_prefix = scheme ? strcmp(scheme, "never") != 0 : jbool(o, "add_prefix_space", true);
        t->spm_prefix_first_only = scheme && strcmp(scheme, "first") == 0;
        t->spm_split = jbool(o, "split", true);
        t->spm_prefix_if_no_space = true;
        return BI_OK;
    }
    return tok_err(c->err, c->err_size, BI_UNSUPPORTED, "pre-tokenizer %s is not supported", type);
}

static bi_status on_norm(jctx *c, const cJSON *o)
{
    const char *type = jstr(o, "type");
    if (!type)
        return tok_err(c->err, c->err_size, BI_BAD_FORMAT, "normalizer without a type");
    if (strcmp(type, "Prepend") == 0) {
        const char *p = jstr(o, "prepend");
        if (!p || strcmp(p, SPM_SPACE) != 0)
            return tok_err(c->err, c->err_size, BI_UNSUPPORTED, "Prepend of other than \"▁\"");
        c->spm = c->t->spm_prefix = true;
        return BI_OK;
    }
    if (strcmp(type, "Replace") == 0) {
        const char *from = jstr(cJSON_GetObjectItemCaseSensitive(o, "pattern"), "String");
        const char *to = jstr(o, "content");
        if (!from || !to || strcmp(from, " ") != 0 || strcmp(to, SPM_SPACE) != 0)
            return tok_err(c->err, c->err_size, BI_UNSUPPORTED,
                           "only the Replace(\" \", \"▁\") normalizer is supported");
        c->spm = true;
        return BI_OK;
    }
    if (strcmp(type, "NFC") == 0 || strcmp(type, "NFKC") == 0) {
        BI_LOGW(NULL, "tokenizer normalizer %s is not applied (input is assumed normalised)", type);
        return BI_OK;
    }
    return tok_err(c->err, c->err_size, BI_UNSUPPORTED, "normalizer %s is not supported", type);
}

static bi_status on_decoder(jctx *c, const cJSON *o)
{
    if (jtype_is(o, "ByteLevel"))
        c->byte_level = true;
    return BI_OK;
}

/* Largest id named by the vocabulary and the added tokens, checked in range. */
static bi_status max_id(jctx *c, const cJSON *vocab, const cJSON *added, int *n)
{
    const cJSON *e;
    double m = -1;
    cJSON_ArrayForEach(e, vocab)
    {
        if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble >= TOK_MAX_VOCAB ||
            e->valuedouble != (double)(int)e->valuedouble)
            return tok_err(c->err, c->err_size, BI_BAD_FORMAT,
                           "vocabulary entry \"%.64s\" has a bad id (integers 0..%d)", e->string,
                           TOK_MAX_VOCAB - 1);
        m = e->valuedouble > m ? e->valuedouble : m;
    }
    cJSON_ArrayForEach(e, added)
    {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "id");
        if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble >= TOK_MAX_VOCAB ||
            !jstr(e, "content"))
            return tok_err(c->err, c->err_size, BI_BAD_FORMAT,
                           "added token without a valid id and content");
        m = id->valuedouble > m ? id->valuedouble : m;
    }
    if (m < 0)
        return tok_err(c->err, c->err_size, BI_BAD_FORMAT, "empty vocabulary");
    *n = (int)m + 1;
    return BI_OK;
}

static bi_status load_pieces(jctx *c, const cJSON *vocab, const cJSON *added)
{
    const cJSON *e;
    bi_status s;
    cJSON_ArrayForEach(e, vocab)
    {
        if ((s = tok_set_piece(c->t, (int32_t)e->valuedouble, e->string, strlen(e->string), 0,
                               c->err, c->err_size)) != BI_OK)
            return s;
    }
    cJSON_ArrayForEach(e, added)
    {
        const char *content = jstr(e, "content");
        uint8_t attr = TOK_ATTR_SPECIAL | (jbool(e, "special", false) ? TOK_ATTR_CONTROL : 0);
        int32_t id = (int32_t)cJSON_GetObjectItemCaseSensitive(e, "id")->valuedouble;
        if ((s = tok_set_piece(c->t, id, content, strlen(content), attr, c->err, c->err_size)) !=
            BI_OK)
            return s;
    }
    return tok_index_vocab(c->t, c->err, c->err_size);
}

static bi_status load_merges(jctx *c, const cJSON *merges)
{
    const cJSON *e;
    bi_status s;
    cJSON_ArrayForEach(e, merges)
    {
        const char *l, *r;
        size_t ll, rl;
        if (cJSON_IsString(e)) {
            const char *sp = strchr(e->valuestring, ' ');
            if (!sp || sp == e->valuestring)
                return tok_err(c->err, c->err_size, BI_BAD_FORMAT,
                               "merge \"%.64s\" is not \"left right\"", e->valuestring);
            l = e->valuestring, ll = (size_t)(sp - l), r = sp + 1, rl = strlen(r);
        } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 &&
                   cJSON_IsString(cJSON_GetArrayItem(e, 0)) &&
                   cJSON_IsString(cJSON_GetArrayItem(e, 1))) {
            l = cJSON_GetArrayItem(e, 0)->valuestring, ll = strlen(l);
            r = cJSON_GetArrayItem(e, 1)->valuestring, rl = strlen(r);
        } else {
            return tok_err(c->err, c->err_size, BI_BAD_FORMAT,
                           "a merge is neither \"a b\" nor [\"a\", \"b\"]");
        }
        if ((s = tok_add_merge(c->t, l, ll, r, rl, c->err, c->err_size)) != BI_OK)
            return s;
    }
    return BI_OK;
}

/* A special token named in tokenizer_config.json: a string or {"content": ...}. */
static int32_t config_token(const eng_tokenizer *t, const cJSON *cfg, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    const char *s = cJSON_IsString(v) ? v->valuestring : jstr(v, "content");
    return s ? tok_lookup(t, s, strlen(s)) : -1;
}

static bi_status apply_config(jctx *c, const cJSON *cfg)
{
    eng_tokenizer *t = c->t;
    /* Defaults when there is no config: the usual names. */
    const char *bos = c->spm ? "<s>" : "<|begin_of_text|>";
    t->bos = tok_lookup(t, bos, strlen(bos));
    t->eos = tok_lookup(t, "</s>", 4);
    if (t->eos < 0)
        t->eos = tok_lookup(t, "<|endoftext|>", 13);
    t->add_bos = c->spm;
    if (!cfg)
        return BI_OK;
    if (!cJSON_IsObject(cfg))
        return tok_err(c->err, c->err_size, BI_BAD_FORMAT, "tokenizer_config is not an object");
    if (cJSON_HasObjectItem(cfg, "bos_token"))
        t->bos = config_token(t, cfg, "bos_token");
    if (cJSON_HasObjectItem(cfg, "eos_token"))
        t->eos = config_token(t, cfg, "eos_token");
    t->add_bos = jbool(cfg, "add_bos_token", t->add_bos);
    const cJSON *tpl = cJSON_GetObjectItemCaseSensitive(cfg, "chat_template"), *e;
    const char *text = cJSON_IsString(tpl) ? tpl->valuestring : NULL;
    const cJSON *tpls = cJSON_IsArray(tpl) ? tpl : NULL;
    cJSON_ArrayForEach(e, tpls)
    {
        const char *name = jstr(e, "name");
        if (!text || (name && strcmp(name, "default") == 0))
            text = jstr(e, "template");
    }
    if (text && !(t->chat_template = bi_strdup(text)))
        return tok_err(c->err, c->err_size, BI_NOMEM, "out of memory");
    return BI_OK;
}

static bi_status from_json(const cJSON *root, const cJSON *cfg, eng_tokenizer **out, char *err,
                           size_t err_size)
{
    jctx c = {.err = err, .err_size = err_size};
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!cJSON_IsObject(model))
        return tok_err(err, err_size, BI_BAD_FORMAT, "tokenizer.json has no \"model\" object");
    const char *type = jstr(model, "type");
    if (type && strcmp(type, "BPE") != 0)
        return tok_err(err, err_size, BI_UNSUPPORTED,
                       "tokenizer model %s is not supported (BPE only)", type);
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if (!cJSON_IsObject(vocab) || !cJSON_IsArray(merges))
        return tok_err(err, err_size, BI_BAD_FORMAT,
                       "model needs a \"vocab\" object and a \"merges\" array");
    if (added && !cJSON_IsArray(added) && !cJSON_IsNull(added))
        return tok_err(err, err_size, BI_BAD_FORMAT, "\"added_tokens\" is not an array");
    added = cJSON_IsArray(added) ? added : NULL;
    int n = 0;
    bi_status s = max_id(&c, vocab, added, &n);
    if (s != BI_OK || (s = tok_new(TOK_BYTE_LEVEL, n, &c.t, err, err_size)) != BI_OK)
        return s;
    eng_tokenizer *t = c.t;
    c.spm = jbool(model, "byte_fallback", false);
    t->ignore_merges = jbool(model, "ignore_merges", false);
    if ((s = walk(&c, cJSON_GetObjectItemCaseSensitive(root, "normalizer"), "normalizers",
                  on_norm)) != BI_OK ||
        (s = walk(&c, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), "pretokenizers",
                  on_pre)) != BI_OK ||
        (s = walk(&c, cJSON_GetObjectItemCaseSensitive(root, "decoder"), "decoders", on_decoder)) !=
            BI_OK)
        goto fail;
    if (c.byte_level == c.spm) {
        s = tok_err(err, err_size, BI_UNSUPPORTED,
                    c.spm ? "tokenizer is both byte-level and SentencePiece-style"
                          : "tokenizer is neither byte-level (ByteLevel) nor SentencePiece-style "
                            "(byte_fallback, Metaspace or \"▁\" normalizer)");
        goto fail;
    }
    t->kind = c.spm ? TOK_SPM : TOK_BYTE_LEVEL;
    if ((s = load_pieces(&c, vocab, added)) != BI_OK || (s = load_merges(&c, merges)) != BI_OK)
        goto fail;
    const char *unk = jstr(model, "unk_token");
    t->unk = unk ? tok_lookup(t, unk, strlen(unk)) : -1;
    if ((s = apply_config(&c, cfg)) != BI_OK || (s = tok_finish(t, err, err_size)) != BI_OK)
        goto fail;
    *out = t;
    return BI_OK;
fail:
    eng_tokenizer_destroy(t);
    return s;
}

bi_status eng_tokenizer_from_json_text(const char *json, size_t len, const char *config,
                                       size_t config_len, eng_tokenizer **out, char *err,
                                       size_t err_size)
{
    if (!json || !out)
        return tok_err(err, err_size, BI_INVALID_ARGUMENT, "no tokenizer.json text");
    cJSON *root = cJSON_ParseWithLength(json, len), *cfg = NULL;
    if (!root)
        return tok_err(err, err_size, BI_BAD_FORMAT, "tokenizer.json is not valid JSON");
    if (config && !(cfg = cJSON_ParseWithLength(config, config_len))) {
        cJSON_Delete(root);
        return tok_err(err, err_size, BI_BAD_FORMAT, "tokenizer_config.json is not valid JSON");
    }
    bi_status s = from_json(root, cfg, out, err, err_size);
    cJSON_Delete(root);
    cJSON_Delete(cfg);
    return s;
}

/* Reads a whole file (at most 256 MiB) into a new buffer. */
static bi_status read_file(const char *path, char **buf, size_t *len, char *err, size_t err_size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return tok_err(err, err_size, BI_NOT_FOUND, "cannot open %s", path);
    struct stat st;
    bi_status s = BI_OK;
    if (fstat(fileno(f), &st) != 0 || st.st_size < 0 || st.st_size > (256 << 20)) {
        s = tok_err(err, err_size, BI_IO, "cannot size %s (or it is over 256 MiB)", path);
    } else if (!(*buf = bi_malloc((size_t)st.st_size + 1))) {
        s = tok_err(err, err_size, BI_NOMEM, "out of memory reading %s", path);
    } else if (fread(*buf, 1, (size_t)st.st_size, f) != (size_t)st.st_size) {
        bi_free(*buf);
        s = tok_err(err, err_size, BI_IO, "cannot read %s", path);
    } else {
        (*buf)[st.st_size] = 0;
        *len = (size_t)st.st_size;
    }
    fclose(f);
    return s;
}

bi_status eng_tokenizer_from_json(const char *tokenizer_json_path,
                                  const char *tokenizer_config_path, eng_tokenizer **out, char *err,
                                  size_t err_size)
{
    char *json = NULL, *cfg = NULL;
    size_t jl = 0, cl = 0;
    bi_status s;
    if (!tokenizer_json_path || !out)
        return tok_err(err, err_size, BI_INVALID_ARGUMENT, "no tokenizer.json path");
    if ((s = read_file(tokenizer_json_path, &json, &jl, err, err_size)) != BI_OK)
        return s;
    if (tokenizer_config_path &&
        (s = read_file(tokenizer_config_path, &cfg, &cl, err, err_size)) != BI_OK) {
        bi_free(json);
        return s;
    }
    s = eng_tokenizer_from_json_text(json, jl, cfg, cl, out, err, err_size);
    bi_free(json);
    bi_free(cfg);
    return s;
}
