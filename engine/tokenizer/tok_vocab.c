/*
 * tok_vocab.c - building a tokenizer's tables: vocabulary, merges, hash maps,
 * decoded token bytes, special-token index, end-of-generation set. Both
 * loaders (tokenizer.json and GGUF) go through these functions, so a tokenizer
 * is the same structure whichever file it came from.
 */
#define BI_LOG_MODULE "tok"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/hash.h"
#include "common/log.h"
#include "tokenizer/tok_internal.h"

/* GPT-2 / HF ByteLevel split pattern. */
const char TOK_RE_GPT2[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
/* Llama 3 (llama.cpp "llama-bpe"). */
const char TOK_RE_LLAMA3[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}"
    "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
/* Qwen2 / Qwen3: as Llama 3 with single digits. */
const char TOK_RE_QWEN2[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}"
                            "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
/* HF Digits pre-tokenizer, individual_digits true / false. */
const char TOK_RE_DIGIT[] = "\\p{N}";
const char TOK_RE_DIGITS[] = "\\p{N}+";

bi_status tok_err(char *err, size_t err_size, bi_status s, const char *fmt, ...)
{
    if (err && err_size) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, err_size, fmt, ap);
        va_end(ap);
    }
    return s;
}

/* ---- UTF-8 ---- */

size_t tok_utf8_decode(const uint8_t *s, size_t n, uint32_t *cp)
{
    if (n == 0)
        return 0;
    uint8_t c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t len;
    uint32_t v;
    uint8_t lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2, v = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3, v = c & 0x0F;
        if (c == 0xE0)
            lo = 0xA0;
        if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4, v = c & 0x07;
        if (c == 0xF0)
            lo = 0x90;
        if (c == 0xF4)
            hi = 0x8F;
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    *cp = v;
    return len;
}

size_t tok_utf8_encode(uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* ---- hash maps ---- */

static uint64_t hash_bytes(const char *s, size_t n)
{
    return bi_fnv1a(s, n) | 1; /* never 0, so a zero key can mean nothing */
}

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

static bi_status map_init(tok_map *m, size_t n)
{
    size_t cap = 16;
    while (cap < n * 2)
        cap <<= 1;
    m->keys = bi_calloc(cap, sizeof *m->keys);
    m->vals = bi_mallocarray(cap, sizeof *m->vals);
    if (!m->keys || !m->vals)
        return BI_NOMEM;
    memset(m->vals, 0xff, cap * sizeof *m->vals);
    m->cap = cap;
    return BI_OK;
}

static void map_fini(tok_map *m)
{
    bi_free(m->keys);
    bi_free(m->vals);
    memset(m, 0, sizeof *m);
}

int32_t tok_lookup(const eng_tokenizer *t, const char *s, size_t len)
{
    const tok_map *m = &t->vocab;
    if (!m->cap)
        return -1;
    uint64_t h = hash_bytes(s, len);
    for (size_t i = h & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        int32_t v = m->vals[i];
        if (v < 0)
            return -1;
        if (m->keys[i] == h && t->piece_len[v] == len && memcmp(t->pieces[v], s, len) == 0)
            return v;
    }
}

bi_status tok_index_vocab(eng_tokenizer *t, char *err, size_t err_size)
{
    if (map_init(&t->vocab, (size_t)t->n_vocab) != BI_OK)
        return tok_err(err, err_size, BI_NOMEM, "out of memory for the vocabulary index");
    tok_map *m = &t->vocab;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        if (!t->pieces[id])
            continue; /* a hole in the id space */
        uint64_t h = hash_bytes(t->pieces[id], t->piece_len[id]);
        size_t i = h & (m->cap - 1);
        for (; m->vals[i] >= 0; i = (i + 1) & (m->cap - 1)) {
            int32_t o = m->vals[i];
            if (m->keys[i] == h && t->piece_len[o] == t->piece_len[id] &&
                memcmp(t->pieces[o], t->pieces[id], t->piece_len[id]) == 0)
                return tok_err(err, err_size, BI_BAD_FORMAT,
                               "token \"%.64s\" appears twice (ids %d and %d)", t->pieces[id], o,
                               id);
        }
        m->keys[i] = h;
        m->vals[i] = id;
    }
    return BI_OK;
}

/* Finds the merge of (l, r): its index (= rank), or -1. */
int32_t tok_merge_find(const eng_tokenizer *t, int32_t l, int32_t r)
{
    const tok_map *m = &t->merges;
    if (!m->cap || l < 0 || r < 0)
        return -1;
    uint64_t key = ((uint64_t)(uint32_t)l << 32 | (uint32_t)r) + 1;
    for (size_t i = mix64(key) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        if (m->vals[i] < 0)
            return -1;
        if (m->keys[i] == key)
            return m->vals[i];
    }
}

static bi_status merges_grow(eng_tokenizer *t)
{
    /* Rebuild at twice the size when more than half full. */
    tok_map old = t->merges, m;
    if (map_init(&m, old.cap ? old.cap : 1024) != BI_OK)
        return BI_NOMEM;
    for (size_t j = 0; j < old.cap; j++) {
        if (old.vals[j] < 0)
            continue;
        size_t i = mix64(old.keys[j]) & (m.cap - 1);
        while (m.vals[i] >= 0)
            i = (i + 1) & (m.cap - 1);
        m.keys[i] = old.keys[j];
        m.vals[i] = old.vals[j];
    }
    map_fini(&old);
    t->merges = m;
    return BI_OK;
}

bi_status tok_add_merge(eng_tokenizer *t, const char *l, size_t ll, const char *r, size_t rl,
                        char *err, size_t err_size)
{
    int32_t a = tok_lookup(t, l, ll), b = tok_lookup(t, r, rl);
    if (a < 0 || b < 0)
        return tok_err(err, err_size, BI_BAD_FORMAT, "merge %zu names unknown token \"%.*s\"",
                       t->n_merges, (int)(a < 0 ? ll : rl) > 64 ? 64 : (int)(a < 0 ? ll : rl),
                       a < 0 ? l : r);
    size_t cl;
    char buf[512];
    if (!bi_size_add(ll, rl, &cl) || cl > sizeof buf)
        return tok_err(err, err_size, BI_BAD_FORMAT, "merge %zu is too long", t->n_merges);
    memcpy(buf, l, ll);
    memcpy(buf + ll, r, rl);
    int32_t c = tok_lookup(t, buf, cl);
    if (c < 0)
        return tok_err(err, err_size, BI_BAD_FORMAT,
                       "merge %zu: result \"%.*s\" is not in the vocabulary", t->n_merges,
                       (int)(cl > 64 ? 64 : cl), buf);
    if (tok_merge_find(t, a, b) >= 0)
        return BI_OK; /* a repeated merge keeps its first (best) rank */
    if (t->n_merges >= (size_t)INT32_MAX)
        return tok_err(err, err_size, BI_BAD_FORMAT, "too many merges");
    if (bi_array_reserve((void **)&t->merge_result, &t->cap_merges, t->n_merges + 1,
                         sizeof *t->merge_result) != BI_OK ||
        ((t->n_merges + 1) * 2 > t->merges.cap && merges_grow(t) != BI_OK))
        return tok_err(err, err_size, BI_NOMEM, "out of memory for merges");
    uint64_t key = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1;
    size_t i = mix64(key) & (t->merges.cap - 1);
    while (t->merges.vals[i] >= 0)
        i = (i + 1) & (t->merges.cap - 1);
    t->merges.keys[i] = key;
    t->merges.vals[i] = (int32_t)t->n_merges;
    t->merge_result[t->n_merges++] = c;
    return BI_OK;
}

/* ---- construction ---- */

bi_status tok_new(tok_kind kind, int n_vocab, eng_tokenizer **out, char *err, size_t err_size)
{
    if (n_vocab <= 0 || n_vocab > TOK_MAX_VOCAB)
        return tok_err(err, err_size, BI_BAD_FORMAT, "vocabulary size %d out of range (1..%d)",
                       n_vocab, TOK_MAX_VOCAB);
    eng_tokenizer *t = bi_calloc(1, sizeof *t);
    if (!t)
        return tok_err(err, err_size, BI_NOMEM, "out of memory");
    t->kind = kind;
    t->n_vocab = n_vocab;
    t->bos = t->eos = t->unk = -1;
    t->pieces = bi_calloc((size_t)n_vocab, sizeof *t->pieces);
    t->piece_len = bi_calloc((size_t)n_vocab, sizeof *t->piece_len);
    t->bytes = bi_calloc((size_t)n_vocab, sizeof *t->bytes);
    t->bytes_len = bi_calloc((size_t)n_vocab, sizeof *t->bytes_len);
    t->attr = bi_calloc((size_t)n_vocab, 1);
    if (!t->pieces || !t->piece_len || !t->bytes || !t->bytes_len || !t->attr) {
        eng_tokenizer_destroy(t);
        return tok_err(err, err_size, BI_NOMEM, "out of memory for %d tokens", n_vocab);
    }
    *out = t;
    return BI_OK;
}

bi_status tok_set_piece(eng_tokenizer *t, int32_t id, const char *s, size_t len, uint8_t attr,
                        char *err, size_t err_size)
{
    if (id < 0 || id >= t->n_vocab)
        return tok_err(err, err_size, BI_BAD_FORMAT, "token id %d out of range (vocabulary %d)", id,
                       t->n_vocab);
    if (len > UINT16_MAX)
        return tok_err(err, err_size, BI_BAD_FORMAT, "token %d is %zu bytes long", id, len);
    if (t->pieces[id]) {
        /* tokenizer.json lists added tokens again in the vocabulary: same text is fine. */
        if (t->piece_len[id] == len && memcmp(t->pieces[id], s, len) == 0) {
            t->attr[id] |= attr;
            return BI_OK;
        }
        return tok_err(err, err_size, BI_BAD_FORMAT, "token id %d given twice", id);
    }
    /* not strndup: a GGUF token may hold a NUL byte, and piece_len must cover it */
    if (!(t->pieces[id] = bi_malloc(len + 1)))
        return tok_err(err, err_size, BI_NOMEM, "out of memory");
    memcpy(t->pieces[id], s, len);
    t->pieces[id][len] = 0;
    t->piece_len[id] = (uint32_t)len;
    t->attr[id] |= attr;
    return BI_OK;
}

bi_status tok_add_regex(eng_tokenizer *t, const char *pattern, char *err, size_t err_size)
{
    if (t->n_regex >= TOK_MAX_REGEX)
        return tok_err(err, err_size, BI_UNSUPPORTED, "more than %d pre-tokenizer splits",
                       TOK_MAX_REGEX);
    int ec;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                                   PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK, &ec, &off, NULL);
    if (!re) {
        char msg[128];
        pcre2_get_error_message(ec, (PCRE2_UCHAR *)msg, sizeof msg);
        return tok_err(err, err_size, BI_BAD_FORMAT,
                       "pre-tokenizer regex does not compile at offset %zu: %s", (size_t)off, msg);
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* optional: the interpreter is the fallback */
    t->regex[t->n_regex++] = re;
    return BI_OK;
}

/* The GPT-2 byte alphabet: byte b is written as code point byte_cp(b). */
static uint32_t byte_cp(int b)
{
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255))
        return (uint32_t)b;
    int n = 0; /* rank of b among the bytes that are remapped */
    for (int i = 0; i < b; i++)
        if (!((i >= 33 && i <= 126) || (i >= 161 && i <= 172) || (i >= 174 && i <= 255)))
            n++;
    return 256u + (uint32_t)n;
}

/* Decoded bytes of a byte-level piece: alphabet code points back to bytes,
 * anything else kept as its UTF-8. Writes at most len bytes. */
static size_t unmap_byte_level(const char *p, size_t len, const int16_t *cp_byte, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t n = tok_utf8_decode((const uint8_t *)p + i, len - i, &cp);
        if (n == 0) {
            out[o++] = p[i++];
            continue;
        }
        if (cp < 512 && cp_byte[cp] >= 0) {
            out[o++] = (char)cp_byte[cp];
        } else {
            memcpy(out + o, p + i, n);
            o += n;
        }
        i += n;
    }
    return o;
}

/* Decoded bytes of a SentencePiece piece: "▁" -> " ", <0xAB> byte tokens -> the byte. */
static size_t unmap_spm(const char *p, size_t len, bool is_byte, char *out)
{
    unsigned v;
    if (is_byte && len == 6 && sscanf(p, "<0x%2X>", &v) == 1) {
        out[0] = (char)v;
        return 1;
    }
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        if (i + 3 <= len && memcmp(p + i, "\xE2\x96\x81", 3) == 0) {
            out[o++] = ' ';
            i += 3;
        } else {
            out[o++] = p[i++];
        }
    }
    return o;
}

/* Sort key for the special-token index: longest piece first, then lowest id. */
typedef struct special_key {
    uint32_t len;
    int32_t id;
} special_key;

static int cmp_special(const void *a, const void *b)
{
    const special_key *x = a, *y = b;
    if (x->len != y->len)
        return x->len > y->len ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static bi_status build_bytes(eng_tokenizer *t, char *err, size_t err_size)
{
    int16_t cp_byte[512];
    memset(cp_byte, 0xff, sizeof cp_byte);
    for (int b = 0; b < 256; b++)
        cp_byte[byte_cp(b)] = (int16_t)b;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        const char *p = t->pieces[id] ? t->pieces[id] : "";
        size_t len = t->piece_len[id];
        if (!(t->bytes[id] = bi_malloc(len + 1)))
            return tok_err(err, err_size, BI_NOMEM, "out of memory");
        size_t n;
        if (t->attr[id] & TOK_ATTR_SPECIAL) {
            memcpy(t->bytes[id], p, len);
            n = len;
        } else if (t->kind == TOK_BYTE_LEVEL) {
            n = unmap_byte_level(p, len, cp_byte, t->bytes[id]);
        } else {
            n = unmap_spm(p, len, (t->attr[id] & TOK_ATTR_BYTE) != 0, t->bytes[id]);
        }
        t->bytes[id][n] = 0;
        t->bytes_len[id] = (uint32_t)n;
    }
    return BI_OK;
}

static void build_byte_ids(eng_tokenizer *t)
{
    for (int b = 0; b < 256; b++) {
        char s[8];
        int32_t id;
        if (t->kind == TOK_BYTE_LEVEL) {
            id = tok_lookup(t, s, tok_utf8_encode(byte_cp(b), s));
        } else {
            snprintf(s, sizeof s, "<0x%02X>", b);
            id = tok_lookup(t, s, 6);
            if (id >= 0)
                t->attr[id] |= TOK_ATTR_BYTE;
        }
        t->byte_id[b] = id;
    }
}

static void mark_eog(eng_tokenizer *t)
{
    static const char *const names[] = {"<|im_end|>",    "<|eot_id|>", "<|end_of_text|>",
                                        "<end_of_turn>", "</s>",       "<|endoftext|>",
                                        "<|eom_id|>",    "<|end|>"};
    if (t->eos >= 0)
        t->attr[t->eos] |= TOK_ATTR_EOG;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        int32_t id = tok_lookup(t, names[i], strlen(names[i]));
        if (id >= 0)
            t->attr[id] |= TOK_ATTR_EOG;
    }
}

bi_status tok_finish(eng_tokenizer *t, char *err, size_t err_size)
{
    bi_status s;
    if (!t->vocab.cap && (s = tok_index_vocab(t, err, err_size)) != BI_OK)
        return s;
    build_byte_ids(t);
    if ((s = build_bytes(t, err, err_size)) != BI_OK)
        return s;
    if (t->bos >= t->n_vocab || t->eos >= t->n_vocab || t->unk >= t->n_vocab)
        return tok_err(err, err_size, BI_BAD_FORMAT, "bos/eos/unk token id out of range");
    size_t n = 0;
    for (int32_t id = 0; id < t->n_vocab; id++)
        n += (t->attr[id] & TOK_ATTR_SPECIAL) && t->piece_len[id] > 0;
    special_key *keys = bi_mallocarray(n ? n : 1, sizeof *keys);
    if (!keys || !(t->special = bi_mallocarray(n ? n : 1, sizeof *t->special))) {
        bi_free(keys);
        return tok_err(err, err_size, BI_NOMEM, "out of memory");
    }
    for (int32_t id = 0; id < t->n_vocab; id++)
        if ((t->attr[id] & TOK_ATTR_SPECIAL) && t->piece_len[id] > 0)
            keys[t->n_special++] = (special_key){t->piece_len[id], id};
    qsort(keys, t->n_special, sizeof *keys, cmp_special);
    for (size_t i = 0; i < t->n_special; i++) {
        t->special[i] = keys[i].id;
        t->special_first[(uint8_t)t->pieces[keys[i].id][0]] = true;
    }
    bi_free(keys);
    mark_eog(t);
    return BI_OK;
}

void eng_tokenizer_destroy(eng_tokenizer *t)
{
    if (!t)
        return;
    for (int32_t i = 0; t->pieces && i < t->n_vocab; i++)
        bi_free(t->pieces[i]);
    for (int32_t i = 0; t->bytes && i < t->n_vocab; i++)
        bi_free(t->bytes[i]);
    bi_free(t->pieces);
    bi_free(t->piece_len);
    bi_free(t->bytes);
    bi_free(t->bytes_len);
    bi_free(t->attr);
    bi_free(t->scores);
    map_fini(&t->vocab);
    map_fini(&t->merges);
    bi_free(t->merge_result);
    bi_free(t->special);
    for (int i = 0; i < t->n_regex; i++)
        pcre2_code_free(t->regex[i]);
    bi_free(t->chat_template);
    bi_free(t);
}
