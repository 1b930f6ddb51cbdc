/*
 * tokenizer.h - text <-> token ids for the models Braidinfer serves.
 *
 * Two algorithms behind one handle:
 *  - byte-level BPE (GPT-2 family: SmolLM2, Llama 3, Qwen2/3): the text is split
 *    by the model's pre-tokenizer regex (PCRE2, UTF+UCP), every byte of a piece
 *    is mapped to a printable code point (GPT-2's byte alphabet) and the
 *    piece's symbols are merged by merge rank;
 *  - SentencePiece-style BPE (Llama 2, Mistral, TinyLlama, Gemma): spaces become
 *    U+2581 "▁", a "▁" is prepended, symbols are merged by merge rank (from
 *    tokenizer.json) or by score (from GGUF, as llama.cpp's SPM tokenizer), and a
 *    symbol that is not in the vocabulary falls back to its <0xAB> byte tokens.
 *
 * Added / special tokens (tokenizer.json added_tokens, GGUF token_type CONTROL
 * or USER_DEFINED) are matched longest-first in the text when encoding with
 * parse_special; without it they are ordinary text.
 *
 * Invalid UTF-8 input never fails and never crashes: byte-level BPE encodes the
 * raw bytes (each byte has its own symbol); SentencePiece-style encodes each
 * invalid byte through its <0xAB> byte token (or the unknown token when the
 * vocabulary has no byte tokens). A byte whose byte-level symbol is missing from
 * the vocabulary (SmolLM2 has none for bytes that never occur in UTF-8, such as
 * 0xFF) is dropped, as Hugging Face tokenizers does. The regex pre-tokenizer is only run on valid
 * UTF-8 stretches; an invalid byte is a piece of its own.
 *
 * Ownership: a loaded tokenizer is immutable and may be shared by threads
 * (encode/decode take it const and keep their state in the caller's memory);
 * freed with eng_tokenizer_destroy. Strings it returns stay valid until then.
 */
#ifndef ENG_TOKENIZER_H
#define ENG_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

typedef struct eng_tokenizer eng_tokenizer;
typedef struct eng_gguf eng_gguf; /* model/gguf.h */

/* Loads the tokenizer of a model. model_path is either a GGUF file (its
 * tokenizer.ggml.* metadata and tokenizer.chat_template) or a Hugging Face
 * directory holding tokenizer.json and optionally tokenizer_config.json (chat
 * template, bos/eos tokens, add_bos_token). On failure returns BI_NOT_FOUND /
 * BI_IO / BI_BAD_FORMAT / BI_UNSUPPORTED / BI_NOMEM with a message in err (err
 * may be NULL). On success *out is owned by the caller. */
bi_status eng_tokenizer_load(const char *model_path, eng_tokenizer **out, char *err,
                             size_t err_size);

/* Loads from a tokenizer.json and, when tokenizer_config_path is not NULL, its
 * tokenizer_config.json. Errors as eng_tokenizer_load. */
bi_status eng_tokenizer_from_json(const char *tokenizer_json_path,
                                  const char *tokenizer_config_path, eng_tokenizer **out, char *err,
                                  size_t err_size);

/* Loads from the tokenizer.json text in memory (len bytes, need not be
 * NUL-terminated) and optional tokenizer_config.json text (config may be NULL).
 * Used by the fuzzer and tests; errors as above. */
bi_status eng_tokenizer_from_json_text(const char *json, size_t len, const char *config,
                                       size_t config_len, eng_tokenizer **out, char *err,
                                       size_t err_size);

/* Loads from an open GGUF file's metadata. The tokenizer copies what it needs:
 * g may be closed afterwards. */
bi_status eng_tokenizer_from_gguf(const eng_gguf *g, eng_tokenizer **out, char *err,
                                  size_t err_size);

/* Frees t; NULL is fine. */
void eng_tokenizer_destroy(eng_tokenizer *t);

/* Encodes len bytes of text into *ids (a new array the caller frees with
 * bi_free; *n_ids elements; for empty text *ids is a valid 1-element
 * allocation and *n_ids is 0). Never adds BOS: the caller decides with
 * eng_tokenizer_add_bos. parse_special: recognise added/special tokens written
 * in the text ("<|im_start|>"); when false they are encoded as plain text.
 * Returns BI_OK or BI_NOMEM (ids untouched). */
bi_status eng_tokenizer_encode(const eng_tokenizer *t, const char *text, size_t len,
                               bool parse_special, int32_t **ids, size_t *n_ids);

int eng_tokenizer_vocab_size(const eng_tokenizer *t);
/* The BOS / EOS token ids, or -1 when the tokenizer has none. */
int32_t eng_tokenizer_bos(const eng_tokenizer *t);
int32_t eng_tokenizer_eos(const eng_tokenizer *t);
/* Whether the model expects BOS at the start of a sequence (tokenizer_config's
 * add_bos_token, GGUF tokenizer.ggml.add_bos_token, else the algorithm's
 * default: true for SentencePiece-style, false for byte-level). */
bool eng_tokenizer_add_bos(const eng_tokenizer *t);

/* True when id ends generation: eos, and whichever of <|im_end|>, <|eot_id|>,
 * <|end_of_text|>, <end_of_turn>, </s>, <|endoftext|>, <|eom_id|> the
 * vocabulary holds. */
bool eng_tokenizer_is_eog(const eng_tokenizer *t, int32_t id);

/* The id of the token whose vocabulary string is piece (as written in the
 * vocabulary: "<|im_end|>", "▁the", "Ġthe"), or -1. */
int32_t eng_tokenizer_token_id(const eng_tokenizer *t, const char *piece);

/* The raw bytes token id decodes to: byte-level mapping undone, "▁" -> " ",
 * <0xAB> -> that byte, special tokens -> their text. *bytes points into t (not
 * NUL-terminated in general) and stays valid until t is destroyed. Returns
 * BI_OUT_OF_RANGE for an id outside the vocabulary. */
bi_status eng_tokenizer_token_bytes(const eng_tokenizer *t, int32_t id, const char **bytes,
                                    size_t *len);

/* The model's Jinja chat template text, or NULL if it has none. Valid until t
 * is destroyed. */
const char *eng_tokenizer_chat_template(const eng_tokenizer *t);

/* Streaming decode state: embed it anywhere, no allocation, no fini. */
typedef struct eng_detok {
    uint8_t pending[4]; /* the incomplete UTF-8 tail held back */
    uint8_t n_pending;
    bool started; /* a token has been pushed (SentencePiece drops the first leading space) */
} eng_detok;

/* Resets d for a new sequence. */
void eng_detok_init(eng_detok *d);

/* Appends token id to the stream and writes into out (out_cap bytes, not
 * NUL-terminated) only complete UTF-8 characters: an incomplete tail is held
 * back in d until the next push or flush. A byte that can never start or
 * continue a valid character is written as U+FFFD. For SentencePiece-style
 * tokenizers the leading space of the first token of the stream is dropped
 * (the "▁" that encoding prepended). *out_len gets the bytes written. Control
 * tokens (BOS, EOS) decode to their text like any other token; callers that
 * do not want them skip them. Returns BI_OUT_OF_RANGE for a bad id,
 * BI_RESOURCE_EXHAUSTED when out_cap is too small (3 * the token's byte length
 * + 3 is always enough, as each byte may become a U+FFFD; d is then unchanged). */
bi_status eng_detok_push(const eng_tokenizer *t, eng_detok *d, int32_t id, char *out,
                         size_t out_cap, size_t *out_len);

/* Emits what d still holds (an incomplete character as U+FFFD) and resets the
 * pending bytes. out_cap >= 4 (one U+FFFD is 3 bytes) is always enough. */
bi_status eng_detok_flush(eng_detok *d, char *out, size_t out_cap, size_t *out_len);

/* Decodes n ids into a new NUL-terminated string (*text, freed with bi_free;
 * *len excludes the NUL), with the streaming rules above and a final flush.
 * Returns BI_OUT_OF_RANGE for a bad id, BI_NOMEM. */
bi_status eng_tokenizer_decode(const eng_tokenizer *t, const int32_t *ids, size_t n, char **text,
                               size_t *len);

#endif
