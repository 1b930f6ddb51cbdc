/*
 * tokenizer.c - encoding (special-token split, pre-tokenizer, BPE merges) and
 * streaming decoding. The tables it reads are built by tok_vocab.c.
 *
 * BPE merging keeps the symbols of one piece in a doubly linked list and the
 * candidate pairs in a binary heap ordered by (rank, position), so a piece of
 * n symbols costs O(n log n), not the O(n^2) of rescanning after each merge.
 * Stale heap entries are recognised on pop by the pair's byte length.
 */
#define BI_LOG_MODULE "tok"
#include <string.h>

#include "common/alloc.h"
#include "common/log.h"
#include "tokenizer/tok_internal.h"

typedef struct sym {
    int32_t id; /* -1: not in the vocabulary (byte fallback at the end) */
    uint32_t start, len;
    int32_t prev, next;
} sym;

typedef struct cand {
    double key; /* lower merges first: the rank, or minus the result's score */
    int32_t left;
    uint32_t size;
    int32_t result;
} cand;

/* Scratch memory of one encode call, reused across pieces. */
typedef struct scratch {
    char *work; /* the piece in vocabulary spelling */
    size_t cap_work;
    sym *syms;
    size_t cap_syms;
    cand *heap;
    size_t cap_heap, n_heap;
    int32_t *ids; /* the output */
    size_t cap_ids, n_ids;
    pcre2_match_data *md;
} scratch;

static bi_status emit(scratch *s, int32_t id)
{
    if (bi_array_reserve((void **)&s->ids, &s->cap_ids, s->n_ids + 1, sizeof *s->ids) != BI_OK)
        return BI_NOMEM;
    s->ids[s->n_ids++] = id;
    return BI_OK;
}

static bool cand_less(const cand *a, const cand *b)
{
    return a->key < b->key || (a->key == b->key && a->left < b->left);
}

static bi_status heap_push(scratch *s, cand c)
{
    if (bi_array_reserve((void **)&s->heap, &s->cap_heap, s->n_heap + 1, sizeof *s->heap) != BI_OK)
        return BI_NOMEM;
    size_t i = s->n_heap++;
    while (i > 0 && cand_less(&c, &s->heap[(i - 1) / 2])) {
        s->heap[i] = s->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    s->heap[i] = c;
    return BI_OK;
}

static cand heap_pop(scratch *s)
{
    cand top = s->heap[0], last = s->heap[--s->n_heap];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= s->n_heap)
            break;
        if (c + 1 < s->n_heap && cand_less(&s->heap[c + 1], &s->heap[c]))
            c++;
        if (!cand_less(&s->heap[c], &last))
            break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    s->heap[i] = last;
    return top;
}

/* Queues the pair (l, l.next) if it can merge. */
static bi_status try_pair(const eng_tokenizer *t, scratch *s, int32_t l)
{
    if (l < 0 || s->syms[l].next < 0)
        return BI_OK;
    const sym *a = &s->syms[l], *b = &s->syms[a->next];
    cand c = {.left = l, .size = a->len + b->len};
    if (t->merge_by_score) {
        c.result = tok_lookup(t, s->work + a->start, c.size);
        if (c.result < 0)
            return BI_OK;
        c.key = -(double)t->scores[c.result];
    } else {
        int32_t m = tok_merge_find(t, a->id, b->id);
        if (m < 0)
            return BI_OK;
        c.key = m;
        c.result = t->merge_result[m];
    }
    return heap_push(s, c);
}

/* Emits a symbol that is not in the vocabulary. SentencePiece: its bytes
 * through byte tokens, else the unknown token. Byte-level: nothing (a byte
 * whose alphabet symbol the vocabulary lacks is dropped, as HF does). */
static bi_status emit_fallback(const eng_tokenizer *t, scratch *s, const sym *y)
{
    if (t->kind == TOK_BYTE_LEVEL)
        return BI_OK;
    bool bytes = true;
    for (uint32_t i = 0; i < y->len; i++)
        bytes &= t->byte_id[(uint8_t)s->work[y->start + i]] >= 0;
    if (!bytes)
        return t->unk >= 0 ? emit(s, t->unk) : BI_OK;
    for (uint32_t i = 0; i < y->len; i++) {
        if (emit(s, t->byte_id[(uint8_t)s->work[y->start + i]]) != BI_OK)
            return BI_NOMEM;
    }
    return BI_OK;
}

/* Merges the n symbols already in s->syms (spelled in s->work) and emits them. */
static bi_status merge_and_emit(const eng_tokenizer *t, scratch *s, size_t n)
{
    s->n_heap = 0;
    for (size_t i = 0; i + 1 < n; i++)
        if (try_pair(t, s, (int32_t)i) != BI_OK)
            return BI_NOMEM;
    while (s->n_heap) {
        cand c = heap_pop(s);
        sym *a = &s->syms[c.left];
        if (a->len == 0 || a->next < 0 || a->len + s->syms[a->next].len != c.size)
            continue; /* stale: one side has merged since */
        sym *b = &s->syms[a->next];
        a->len += b->len;
        a->id = c.result;
        a->next = b->next;
        if (b->next >= 0)
            s->syms[b->next].prev = c.left;
        b->len = 0;
        if (try_pair(t, s, a->prev) != BI_OK || try_pair(t, s, c.left) != BI_OK)
            return BI_NOMEM;
    }
    for (int32_t i = 0; i >= 0 && n > 0; i = s->syms[i].next) {
        const sym *y = &s->syms[i];
        bi_status st = y->id >= 0 ? emit(s, y->id) : emit_fallback(t, s, y);
        if (st != BI_OK)
            return st;
    }
    return BI_OK;
}

static bi_status reserve_piece(scratch *s, size_t work, size_t nsym)
{
    if (bi_array_reserve((void **)&s->work, &s->cap_work, work, 1) != BI_OK ||
        bi_array_reserve((void **)&s->syms, &s->cap_syms, nsym, sizeof *s->syms) != BI_OK)
        return BI_NOMEM;
    return BI_OK;
}

static void add_sym(scratch *s, size_t i, const eng_tokenizer *t, uint32_t start, uint32_t len)
{
    s->syms[i] = (sym){.id = tok_lookup(t, s->work + start, len),
                       .start = start,
                       .len = len,
                       .prev = (int32_t)i - 1,
                       .next = (int32_t)i + 1};
}

/* Byte-level BPE of one pre-token: every byte becomes its alphabet symbol. */
static bi_status bpe_byte_level(const eng_tokenizer *t, scratch *s, const char *p, size_t n)
{
    size_t wn;
    if (n == 0)
        return BI_OK;
    if (!bi_size_mul(n, 2, &wn) || n > INT32_MAX / 2 || reserve_piece(s, wn, n) != BI_OK)
        return BI_NOMEM;
    uint32_t o = 0;
    bool whole = t->ignore_merges && n > 1;
    for (size_t i = 0; i < n; i++) {
        int32_t id = t->byte_id[(uint8_t)p[i]];
        whole &= id >= 0;
        const char *piece = id >= 0 ? t->pieces[id] : "?";
        uint32_t len = id >= 0 ? t->piece_len[id] : 1;
        memcpy(s->work + o, piece, len);
        s->syms[i] = (sym){id, o, len, (int32_t)i - 1, (int32_t)i + 1};
        o += len;
    }
    s->syms[n - 1].next = -1;
    if (whole) {
        int32_t id = tok_lookup(t, s->work, o);
        if (id >= 0)
            return emit(s, id);
    }
    return merge_and_emit(t, s, n);
}

/* SentencePiece-style BPE of one piece already spelled with "▁" (in p): one
 * symbol per UTF-8 character, an invalid byte being a symbol of its own. */
static bi_status bpe_spm(const eng_tokenizer *t, scratch *s, const char *p, size_t n)
{
    if (n == 0)
        return BI_OK;
    if (n > INT32_MAX || reserve_piece(s, n, n) != BI_OK)
        return BI_NOMEM;
    memcpy(s->work, p, n);
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t len = tok_utf8_decode((const uint8_t *)p + i, n - i, &cp);
        len = len ? len : 1;
        add_sym(s, k++, t, (uint32_t)i, (uint32_t)len);
        i += len;
    }
    s->syms[k - 1].next = -1;
    return merge_and_emit(t, s, k);
}

/* Applies split patterns level.. to p[0..n) and BPE-encodes each piece. */
static bi_status split_level(const eng_tokenizer *t, scratch *s, int level, const char *p, size_t n)
{
    if (level == t->n_regex)
        return bpe_byte_level(t, s, p, n);
    bi_status st;
    size_t pos = 0;
    while (pos < n) {
        int rc =
            pcre2_match(t->regex[level], (PCRE2_SPTR)p, n, pos, PCRE2_NO_UTF_CHECK, s->md, NULL);
        if (rc < 0)
            break; /* no further match (or a match-limit error): the rest is one piece */
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(s->md);
        size_t ms = ov[0], me = ov[1];
        if (me <= ms) { /* an empty match: step over one character */
            me = ms + 1;
            while (me < n && ((uint8_t)p[me] & 0xC0) == 0x80)
                me++;
            if (me > n)
                me = n;
        }
        if (ms > pos && (st = split_level(t, s, level + 1, p + pos, ms - pos)) != BI_OK)
            return st;
        if ((st = split_level(t, s, level + 1, p + ms, me - ms)) != BI_OK)
            return st;
        pos = me;
    }
    return pos < n ? split_level(t, s, level + 1, p + pos, n - pos) : BI_OK;
}

/* Byte-level segment: valid UTF-8 stretches go through the regex splits; each
 * invalid byte is a piece of its own. */
static bi_status segment_byte_level(const eng_tokenizer *t, scratch *s, const char *p, size_t n)
{
    bi_status st;
    if (t->byte_prefix_space && n > 0 && p[0] != ' ') {
        if ((st = split_level(t, s, 0, " ", 1)) != BI_OK)
            return st;
    }
    size_t run = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t len = tok_utf8_decode((const uint8_t *)p + i, n - i, &cp);
        if (len) {
            i += len;
            continue;
        }
        if (i > run && (st = split_level(t, s, 0, p + run, i - run)) != BI_OK)
            return st;
        if ((st = bpe_byte_level(t, s, p + i, 1)) != BI_OK)
            return st;
        run = ++i;
    }
    return n > run ? split_level(t, s, 0, p + run, n - run) : BI_OK;
}

/* SentencePiece segment: spaces to "▁", the prefix "▁", optional split at each "▁". */
static bi_status segment_spm(const eng_tokenizer *t, scratch *s, const char *p, size_t n,
                             bool at_start)
{
    if (n == 0)
        return BI_OK;
    bool prefix = t->spm_prefix && (at_start || !t->spm_prefix_first_only) &&
                  !(t->spm_prefix_if_no_space && p[0] == ' ');
    size_t cap;
    if (!bi_size_mul(n, 3, &cap) || !bi_size_add(cap, 3, &cap))
        return BI_NOMEM;
    char *buf = bi_malloc(cap);
    if (!buf)
        return BI_NOMEM;
    size_t o = 0;
    if (prefix) {
        memcpy(buf, "\xE2\x96\x81", 3);
        o = 3;
    }
    for (size_t i = 0; i < n; i++) {
        if (p[i] == ' ') {
            memcpy(buf + o, "\xE2\x96\x81", 3);
            o += 3;
        } else {
            buf[o++] = p[i];
        }
    }
    bi_status st = BI_OK;
    if (!t->spm_split) {
        st = bpe_spm(t, s, buf, o);
    } else {
        size_t start = 0;
        for (size_t i = 1; i <= o && st == BI_OK; i++) {
            if (i == o || (i + 3 <= o && memcmp(buf + i, "\xE2\x96\x81", 3) == 0)) {
                st = bpe_spm(t, s, buf + start, i - start);
                start = i;
            }
        }
    }
    bi_free(buf);
    return st;
}

static bi_status encode_segment(const eng_tokenizer *t, scratch *s, const char *p, size_t n,
                                bool at_start)
{
    if (t->kind == TOK_BYTE_LEVEL)
        return segment_byte_level(t, s, p, n);
    return segment_spm(t, s, p, n, at_start);
}

/* The longest special token at p (n bytes left), or -1. */
static int32_t match_special(const eng_tokenizer *t, const char *p, size_t n)
{
    if (!t->special_first[(uint8_t)p[0]])
        return -1;
    for (size_t i = 0; i < t->n_special; i++) {
        int32_t id = t->special[i];
        uint32_t len = t->piece_len[id];
        if (len <= n && memcmp(p, t->pieces[id], len) == 0)
            return id;
    }
    return -1;
}

bi_status eng_tokenizer_encode(const eng_tokenizer *t, const char *text, size_t len,
                               bool parse_special, int32_t **ids, size_t *n_ids)
{
    if (!t || (!text && len) || !ids || !n_ids)
        return BI_INVALID_ARGUMENT;
    scratch s = {0};
    bi_status st = BI_OK;
    if (t->n_regex && !(s.md = pcre2_match_data_create(4, NULL)))
        return BI_NOMEM;
    size_t seg = 0;
    for (size_t pos = 0; pos < len && parse_special && t->n_special;) {
        int32_t id = match_special(t, text + pos, len - pos);
        if (id < 0) {
            pos++;
            continue;
        }
        if ((st = encode_segment(t, &s, text + seg, pos - seg, seg == 0)) != BI_OK ||
            (st = emit(&s, id)) != BI_OK)
            goto out;
        pos += t->piece_len[id];
        seg = pos;
    }
    if ((st = encode_segment(t, &s, text + seg, len - seg, seg == 0)) != BI_OK)
        goto out;
    if (!s.ids && (st = emit(&s, 0)) == BI_OK)
        s.n_ids = 0; /* empty text: still a valid allocation */
out:
    bi_free(s.work);
    bi_free(s.syms);
    bi_free(s.heap);
    pcre2_match_data_free(s.md);
    if (st != BI_OK) {
        bi_free(s.ids);
        return st;
    }
    *ids = s.ids;
    *n_ids = s.n_ids;
    return BI_OK;
}

/* ---- accessors ---- */

int eng_tokenizer_vocab_size(const eng_tokenizer *t)
{
    return t ? t->n_vocab : 0;
}

int32_t eng_tokenizer_bos(const eng_tokenizer *t)
{
    return t ? t->bos : -1;
}

int32_t eng_tokenizer_eos(const eng_tokenizer *t)
{
    return t ? t->eos : -1;
}

bool eng_tokenizer_add_bos(const eng_tokenizer *t)
{
    return t && t->add_bos && t->bos >= 0;
}

bool eng_tokenizer_is_eog(const eng_tokenizer *t, int32_t id)
{
    return t && id >= 0 && id < t->n_vocab && (t->attr[id] & TOK_ATTR_EOG);
}

int32_t eng_tokenizer_token_id(const eng_tokenizer *t, const char *piece)
{
    return t && piece ? tok_lookup(t, piece, strlen(piece)) : -1;
}

bi_status eng_tokenizer_token_bytes(const eng_tokenizer *t, int32_t id, const char **bytes,
                                    size_t *len)
{
    if (!t || !bytes || !len)
        return BI_INVALID_ARGUMENT;
    if (id < 0 || id >= t->n_vocab)
        return BI_OUT_OF_RANGE;
    *bytes = t->bytes[id];
    *len = t->bytes_len[id];
    return BI_OK;
}

const char *eng_tokenizer_chat_template(const eng_tokenizer *t)
{
    return t ? t->chat_template : NULL;
}

/* ---- streaming decode ---- */

void eng_detok_init(eng_detok *d)
{
    memset(d, 0, sizeof *d);
}

/* Length a UTF-8 sequence starting with lead byte c must have, 0 if c cannot start one. */
static size_t utf8_need(uint8_t c)
{
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        return 2;
    if (c >= 0xE0 && c <= 0xEF)
        return 3;
    if (c >= 0xF0 && c <= 0xF4)
        return 4;
    return 0;
}

/* Whether b[0..n) (n < the needed length) can still become a valid character. */
static bool utf8_viable_prefix(const uint8_t *b, size_t n)
{
    uint8_t tmp[4] = {0};
    memcpy(tmp, b, n);
    for (size_t i = n; i < utf8_need(b[0]); i++)
        tmp[i] = i == 1 ? (b[0] == 0xE0 ? 0xA0 : b[0] == 0xF0 ? 0x90 : 0x80) : 0x80;
    uint32_t cp;
    return tok_utf8_decode(tmp, utf8_need(b[0]), &cp) != 0;
}

typedef struct outbuf {
    char *p;
    size_t cap, n;
    bool full;
} outbuf;

static void put(outbuf *o, const void *b, size_t n)
{
    if (o->n + n > o->cap) {
        o->full = true;
        return;
    }
    memcpy(o->p + o->n, b, n);
    o->n += n;
}

static const char REPLACEMENT[] = "\xEF\xBF\xBD";

/* Feeds bytes through d's pending buffer into o. */
static void feed(eng_detok *d, const uint8_t *b, size_t n, outbuf *o)
{
    for (size_t i = 0; i < n; i++) {
        d->pending[d->n_pending++] = b[i];
        size_t need = utf8_need(d->pending[0]);
        uint32_t cp;
        if (need && d->n_pending < need && utf8_viable_prefix(d->pending, d->n_pending))
            continue; /* wait for more bytes */
        if (need && tok_utf8_decode(d->pending, d->n_pending, &cp)) {
            put(o, d->pending, d->n_pending);
            d->n_pending = 0;
            continue;
        }
        /* The held bytes cannot form a character: one U+FFFD for the first,
         * and the rest is looked at again. */
        uint8_t rest[4];
        size_t nr = (size_t)d->n_pending - 1;
        memcpy(rest, d->pending + 1, nr);
        put(o, REPLACEMENT, 3);
        d->n_pending = 0;
        feed(d, rest, nr, o);
    }
}

bi_status eng_detok_push(const eng_tokenizer *t, eng_detok *d, int32_t id, char *out,
                         size_t out_cap, size_t *out_len)
{
    const char *b;
    size_t n;
    bi_status st = eng_tokenizer_token_bytes(t, id, &b, &n);
    if (st != BI_OK)
        return st;
    if (!d || (!out && out_cap) || !out_len)
        return BI_INVALID_ARGUMENT;
    eng_detok saved = *d;
    if (t->kind == TOK_SPM && !d->started && n > 0 && b[0] == ' ')
        b++, n--;
    d->started = true;
    outbuf o = {out, out_cap, 0, false};
    feed(d, (const uint8_t *)b, n, &o);
    if (o.full) {
        *d = saved;
        return BI_RESOURCE_EXHAUSTED;
    }
    *out_len = o.n;
    return BI_OK;
}

bi_status eng_detok_flush(eng_detok *d, char *out, size_t out_cap, size_t *out_len)
{
    if (!d || (!out && out_cap) || !out_len)
        return BI_INVALID_ARGUMENT;
    /* Pending bytes are always a viable prefix of one character: one U+FFFD. */
    size_t n = d->n_pending ? 3 : 0;
    if (n > out_cap)
        return BI_RESOURCE_EXHAUSTED;
    memcpy(out, REPLACEMENT, n);
    d->n_pending = 0;
    *out_len = n;
    return BI_OK;
}

bi_status eng_tokenizer_decode(const eng_tokenizer *t, const int32_t *ids, size_t n, char **text,
                               size_t *len)
{
    if (!t || (!ids && n) || !text || !len)
        return BI_INVALID_ARGUMENT;
    eng_detok d;
    eng_detok_init(&d);
    char *buf = NULL;
    size_t cap = 0, used = 0, k;
    bi_status st = BI_OK;
    for (size_t i = 0; i <= n && st == BI_OK; i++) {
        /* worst case per token: each byte a U+FFFD, plus the pending bytes and the NUL */
        size_t tl = i < n && ids[i] >= 0 && ids[i] < t->n_vocab ? t->bytes_len[ids[i]] : 0;
        if (bi_array_reserve((void **)&buf, &cap, used + 3 * tl + 16, 1) != BI_OK) {
            st = BI_NOMEM;
            break;
        }
        st = i < n ? eng_detok_push(t, &d, ids[i], buf + used, cap - used, &k)
                   : eng_detok_flush(&d, buf + used, cap - used, &k);
        if (st == BI_OK)
            used += k;
    }
    if (st != BI_OK) {
        bi_free(buf);
        return st;
    }
    buf[used] = 0;
    *text = buf;
    *len = used;
    return BI_OK;
}
