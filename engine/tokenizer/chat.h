/*
 * chat.h - chat formats: recognising a model's family from its Jinja chat
 * template and framing messages the way that template would.
 *
 * Braidinfer does not run Jinja. Each chunk (a system prompt, a document, a
 * user turn) is framed on its own, and a conversation is the plain
 * concatenation of framed messages followed by eng_chat_generation_prompt(f).
 * That is what lets a framed chunk's KV cache be reused in any composition.
 *
 * The framings, for content C (BOS is never part of framing: the engine adds
 * it once at the start when eng_tokenizer_add_bos says so):
 *
 *  CHATML   "<|im_start|>{role}\nC<|im_end|>\n"; prompt "<|im_start|>assistant\n".
 *           Exact per message (checked against transformers' apply_chat_template
 *           for SmolLM2's template, tests/fixtures/gen_tokenizer_fixtures.py).
 *  LLAMA3   "<|start_header_id|>{role}<|end_header_id|>\n\nC<|eot_id|>";
 *           prompt "<|start_header_id|>assistant<|end_header_id|>\n\n".
 *           Exact per message (the official template strips C's surrounding
 *           whitespace; we frame C as given: strip before framing if needed).
 *  LLAMA2   system "<<SYS>>\nC\n<</SYS>>\n\n"; user "[INST] C [/INST]";
 *           assistant " C</s>"; prompt "". APPROXIMATION: the official template
 *           puts the system block inside the first "[INST] " and adds "<s>"
 *           before every user turn after the first; here the system block comes
 *           before "[INST]" and later turns carry no "<s>" text.
 *  MISTRAL  system and user "[INST] C [/INST]"; assistant " C</s>"; prompt "".
 *           APPROXIMATION: Mistral's templates have no system role (some prepend
 *           it to the last user message); here it is its own [INST] block.
 *  ZEPHYR   "<|{role}|>\nC</s>\n"; prompt "<|assistant|>\n". Exact per message.
 *  GEMMA    user/system "<start_of_turn>user\nC<end_of_turn>\n", assistant
 *           "<start_of_turn>model\nC<end_of_turn>\n"; prompt
 *           "<start_of_turn>model\n". APPROXIMATION: Gemma has no system role
 *           (its template prepends the system text to the first user turn);
 *           here it is a user turn of its own.
 *
 * ENG_ROLE_CONTEXT (a document or context chunk) is framed as a system-style
 * message in every format (CHATML/LLAMA3/ZEPHYR: role "system"; LLAMA2: a
 * <<SYS>> block; MISTRAL/GEMMA: as their system framing above), because a
 * document is instructions-level material the user did not type.
 */
#ifndef ENG_CHAT_H
#define ENG_CHAT_H

#include <stddef.h>

#include "common/status.h"

typedef enum eng_chat_format {
    ENG_CHAT_UNKNOWN = 0,
    ENG_CHAT_CHATML,
    ENG_CHAT_LLAMA2,
    ENG_CHAT_LLAMA3,
    ENG_CHAT_ZEPHYR,
    ENG_CHAT_MISTRAL,
    ENG_CHAT_GEMMA,
    ENG_CHAT_COUNT_
} eng_chat_format;

typedef enum eng_role {
    ENG_ROLE_SYSTEM = 0,
    ENG_ROLE_CONTEXT, /* a document / context chunk */
    ENG_ROLE_USER,
    ENG_ROLE_ASSISTANT,
    ENG_ROLE_COUNT_
} eng_role;

/* Recognises the family of a Jinja chat template from its characteristic
 * markers ("<|im_start|>", "<|start_header_id|>", "[INST]" with or without
 * "<<SYS>>", "<|user|>", "<start_of_turn>"). Returns BI_OK with *out set,
 * BI_NOT_FOUND when no family matches (the caller may then take a format from
 * configuration), BI_INVALID_ARGUMENT for NULL. */
bi_status eng_chat_detect(const char *template_text, eng_chat_format *out);

/* Parses a format name ("chatml", "llama2", "llama3", "zephyr", "mistral",
 * "gemma"; case-insensitive). BI_INVALID_ARGUMENT for anything else. */
bi_status eng_chat_format_parse(const char *name, eng_chat_format *out);

/* The name parsed above; "unknown" for ENG_CHAT_UNKNOWN or a bad value. Static. */
const char *eng_chat_format_name(eng_chat_format f);

/* Frames one message of len bytes for its role (see the table above) into a
 * new NUL-terminated string *out (freed with bi_free; *out_len excludes the
 * NUL). Returns BI_INVALID_ARGUMENT for an unknown format or role, BI_NOMEM. */
bi_status eng_chat_frame(eng_chat_format f, eng_role role, const char *content, size_t len,
                         char **out, size_t *out_len);

/* The text that asks the model for the assistant's turn after the framed
 * messages; "" for formats that need none, and for bad values. Static. */
const char *eng_chat_generation_prompt(eng_chat_format f);

#endif
