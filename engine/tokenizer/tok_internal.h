/*
 * tok_internal.h - the tokenizer's representation, shared by the encoder
 * (tokenizer.c) and the loaders (tok_json.c, tok_gguf.c). Not a public header.
 *
 * A loader fills an eng_tokenizer through tok_new / tok_set_piece
 * / tok_add_merge / tok_finish; tok_finish derives everything else (hash maps,
 * decoded bytes, byte tables, special-token index, end-of-generation set) so
 * that both loaders produce identical structures.
 */
#ifndef ENG_TOK_INTERNAL_H
#define ENG_TOK_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "common/status.h"
#include "tokenizer/tokenizer.h"

/* Largest vocabulary accepted from a file: far above any real model (Gemma
 * has 256k), small enough that a hostile id cannot make us allocate gigabytes. */
#define TOK_MAX_VOCAB (1 << 21)
#define TOK_MAX_REGEX 4

typedef enum tok_kind {
    TOK_BYTE_LEVEL = 0, /* GPT-2 byte alphabet, regex pre-tokenizer, merges by rank */
    TOK_SPM,            /* "▁" for spaces, byte fallback, merges by rank or by score */
} tok_kind;

enum tok_attr {
    TOK_ATTR_SPECIAL = 1, /* matched in text when parse_special (added / control / user) */
    TOK_ATTR_CONTROL = 2, /* a control token (special, not user-defined) */
    TOK_ATTR_BYTE = 4,    /* a <0xAB> byte token */
    TOK_ATTR_EOG = 8,     /* ends generation */
};

/* Open-addressing hash table from a byte string to an id (vocabulary) or from
 * a pair of ids to a merge (rank, result). */
typedef struct tok_map {
    uint64_t *keys; /* string maps: hash; pair maps: (left << 32) | right */
    int32_t *vals;  /* id, or index into the merge arrays; -1 = empty slot */
    size_t cap;     /* power of two */
} tok_map;

struct eng_tokenizer {
    tok_kind kind;
    bool merge_by_score; /* GGUF SentencePiece: merge the pair whose result scores highest */
    bool ignore_merges;  /* tokenizer.json: a whole pre-token in the vocabulary is taken as is */
    bool spm_prefix;     /* SentencePiece: prepend "▁" to each text segment */
    bool spm_prefix_first_only; /* Metaspace prepend_scheme "first" / llama.cpp: only at offset 0 */
    bool spm_split;             /* Metaspace split: pieces start at each "▁" */
    bool spm_prefix_if_no_space; /* Metaspace: no "▁" before text that starts with a space */
    bool byte_prefix_space;      /* ByteLevel add_prefix_space */
    bool add_bos;

    int n_vocab;
    char **pieces; /* vocabulary strings, NUL-terminated (owned) */
    uint32_t *piece_len;
    char **bytes; /* decoded bytes of each token (owned) */
    uint32_t *bytes_len;
    uint8_t *attr; /* enum tok_attr flags */
    float *scores; /* merge_by_score only */
    tok_map vocab; /* piece -> id */

    int32_t *merge_result; /* merge i: (left, right) -> merge_result[i], rank i */
    size_t n_merges, cap_merges;
    tok_map merges; /* (left, right) -> merge index */

    int32_t *special; /* ids with TOK_ATTR_SPECIAL, longest piece first */
    size_t n_special;
    bool special_first[256]; /* some special piece starts with this byte */
    int32_t byte_id[256];    /* byte-level: id of the one-byte symbol; SPM: <0xAB> id; -1 if none */

    pcre2_code *regex[TOK_MAX_REGEX]; /* pre-tokenizer splits, applied in sequence */
    int n_regex;

    int32_t bos, eos, unk;
    char *chat_template;
};

/* Allocates an empty tokenizer for n_vocab ids (every piece empty). */
bi_status tok_new(tok_kind kind, int n_vocab, eng_tokenizer **out, char *err, size_t err_size);
/* Sets the vocabulary string of id (copied). BI_BAD_FORMAT when id is out of
 * range or already set, BI_NOMEM. */
bi_status tok_set_piece(eng_tokenizer *t, int32_t id, const char *s, size_t len, uint8_t attr,
                        char *err, size_t err_size);
/* Looks up a piece by bytes; -1 when absent. Only after tok_index_vocab. */
int32_t tok_lookup(const eng_tokenizer *t, const char *s, size_t len);
/* Builds the piece -> id map; BI_BAD_FORMAT on duplicate pieces. */
bi_status tok_index_vocab(eng_tokenizer *t, char *err, size_t err_size);
/* Adds the merge "left right" (pieces given by bytes) with the next rank.
 * BI_BAD_FORMAT when a side or the result is not in the vocabulary. */
bi_status tok_add_merge(eng_tokenizer *t, const char *l, size_t ll, const char *r, size_t rl,
                        char *err, size_t err_size);
/* The rank of the merge (left, right), or -1. */
int32_t tok_merge_find(const eng_tokenizer *t, int32_t left, int32_t right);
/* Compiles one pre-tokenizer split pattern (UTF + UCP). */
bi_status tok_add_regex(eng_tokenizer *t, const char *pattern, char *err, size_t err_size);
/* Derives decoded bytes, byte tables, the special index and the EOG set. */
bi_status tok_finish(eng_tokenizer *t, char *err, size_t err_size);

/* Pre-tokenizer patterns by name ("gpt2", "llama3", "qwen2", "digits"). */
extern const char TOK_RE_GPT2[];
extern const char TOK_RE_LLAMA3[];
extern const char TOK_RE_QWEN2[];
extern const char TOK_RE_DIGIT[];
extern const char TOK_RE_DIGITS[];

/* printf into err (may be NULL); returns s for `return tok_err(...)`. */
bi_status tok_err(char *err, size_t err_size, bi_status s, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Decodes one UTF-8 character at s (n bytes left): its length, or 0 if the
 * bytes there are not a complete valid character. *cp gets the code point. */
size_t tok_utf8_decode(const uint8_t *s, size_t n, uint32_t *cp);
/* Encodes cp as UTF-8 into out (4 bytes room); returns the length. */
size_t tok_utf8_encode(uint32_t cp, char *out);

#endif
