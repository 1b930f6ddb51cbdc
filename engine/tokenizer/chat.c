/*
 * chat.c - chat format detection and per-message framing (see chat.h for the
 * framings and where they approximate the official templates).
 */
#define BI_LOG_MODULE "chat"
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "common/alloc.h"
#include "common/log.h"
#include "tokenizer/chat.h"

static const char *const format_names[ENG_CHAT_COUNT_] = {
    [ENG_CHAT_UNKNOWN] = "unknown", [ENG_CHAT_CHATML] = "chatml", [ENG_CHAT_LLAMA2] = "llama2",
    [ENG_CHAT_LLAMA3] = "llama3",   [ENG_CHAT_ZEPHYR] = "zephyr", [ENG_CHAT_MISTRAL] = "mistral",
    [ENG_CHAT_GEMMA] = "gemma",
};

/* A message framing: prefix, content, suffix. */
typedef struct frame {
    const char *pre, *post;
} frame;

/* [format][role]; CONTEXT is framed as SYSTEM (see chat.h). */
static const frame frames[ENG_CHAT_COUNT_][ENG_ROLE_COUNT_] = {
    [ENG_CHAT_CHATML] =
        {
            [ENG_ROLE_SYSTEM] = {"<|im_start|>system\n", "<|im_end|>\n"},
            [ENG_ROLE_CONTEXT] = {"<|im_start|>system\n", "<|im_end|>\n"},
            [ENG_ROLE_USER] = {"<|im_start|>user\n", "<|im_end|>\n"},
            [ENG_ROLE_ASSISTANT] = {"<|im_start|>assistant\n", "<|im_end|>\n"},
        },
    [ENG_CHAT_LLAMA3] =
        {
            [ENG_ROLE_SYSTEM] = {"<|start_header_id|>system<|end_header_id|>\n\n", "<|eot_id|>"},
            [ENG_ROLE_CONTEXT] = {"<|start_header_id|>system<|end_header_id|>\n\n", "<|eot_id|>"},
            [ENG_ROLE_USER] = {"<|start_header_id|>user<|end_header_id|>\n\n", "<|eot_id|>"},
            [ENG_ROLE_ASSISTANT] = {"<|start_header_id|>assistant<|end_header_id|>\n\n",
                                    "<|eot_id|>"},
        },
    [ENG_CHAT_LLAMA2] =
        {
            [ENG_ROLE_SYSTEM] = {"<<SYS>>\n", "\n<</SYS>>\n\n"},
            [ENG_ROLE_CONTEXT] = {"<<SYS>>\n", "\n<</SYS>>\n\n"},
            [ENG_ROLE_USER] = {"[INST] ", " [/INST]"},
            [ENG_ROLE_ASSISTANT] = {" ", "</s>"},
        },
    [ENG_CHAT_MISTRAL] =
        {
            [ENG_ROLE_SYSTEM] = {"[INST] ", " [/INST]"},
            [ENG_ROLE_CONTEXT] = {"[INST] ", " [/INST]"},
            [ENG_ROLE_USER] = {"[INST] ", " [/INST]"},
            [ENG_ROLE_ASSISTANT] = {" ", "</s>"},
        },
    [ENG_CHAT_ZEPHYR] =
        {
            [ENG_ROLE_SYSTEM] = {"<|system|>\n", "</s>\n"},
            [ENG_ROLE_CONTEXT] = {"<|system|>\n", "</s>\n"},
            [ENG_ROLE_USER] = {"<|user|>\n", "</s>\n"},
            [ENG_ROLE_ASSISTANT] = {"<|assistant|>\n", "</s>\n"},
        },
    [ENG_CHAT_GEMMA] =
        {
            [ENG_ROLE_SYSTEM] = {"<start_of_turn>user\n", "<end_of_turn>\n"},
            [ENG_ROLE_CONTEXT] = {"<start_of_turn>user\n", "<end_of_turn>\n"},
            [ENG_ROLE_USER] = {"<start_of_turn>user\n", "<end_of_turn>\n"},
            [ENG_ROLE_ASSISTANT] = {"<start_of_turn>model\n", "<end_of_turn>\n"},
        },
};

static const char *const gen_prompts[ENG_CHAT_COUNT_] = {
    [ENG_CHAT_CHATML] = "<|im_start|>assistant\n",
    [ENG_CHAT_LLAMA3] = "<|start_header_id|>assistant<|end_header_id|>\n\n",
    [ENG_CHAT_ZEPHYR] = "<|assistant|>\n",
    [ENG_CHAT_GEMMA] = "<start_of_turn>model\n",
};

bi_status eng_chat_detect(const char *template_text, eng_chat_format *out)
{
    if (!template_text || !out)
        return BI_INVALID_ARGUMENT;
    /* Most specific markers first: a Llama 3 template never has <|im_start|>,
     * but a ChatML template may mention [INST] in a comment far less often
     * than the reverse. */
    static const struct {
        const char *marker;
        eng_chat_format f;
    } rules[] = {
        {"<|start_header_id|>", ENG_CHAT_LLAMA3},
        {"<|im_start|>", ENG_CHAT_CHATML},
        {"<start_of_turn>", ENG_CHAT_GEMMA},
        {"<<SYS>>", ENG_CHAT_LLAMA2},
        {"[INST]", ENG_CHAT_MISTRAL},
        {"<|user|>", ENG_CHAT_ZEPHYR},
    };
    for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++) {
        if (strstr(template_text, rules[i].marker)) {
            *out = rules[i].f;
            return BI_OK;
        }
    }
    return BI_NOT_FOUND;
}

bi_status eng_chat_format_parse(const char *name, eng_chat_format *out)
{
    if (!name || !out)
        return BI_INVALID_ARGUMENT;
    for (int f = ENG_CHAT_CHATML; f < ENG_CHAT_COUNT_; f++) {
        if (strcasecmp(name, format_names[f]) == 0) {
            *out = (eng_chat_format)f;
            return BI_OK;
        }
    }
    return BI_INVALID_ARGUMENT;
}

const char *eng_chat_format_name(eng_chat_format f)
{
    return f > ENG_CHAT_UNKNOWN && f < ENG_CHAT_COUNT_ ? format_names[f] : "unknown";
}

bi_status eng_chat_frame(eng_chat_format f, eng_role role, const char *content, size_t len,
                         char **out, size_t *out_len)
{
    if (f <= ENG_CHAT_UNKNOWN || f >= ENG_CHAT_COUNT_ || (unsigned)role >= ENG_ROLE_COUNT_ ||
        (!content && len) || !out || !out_len)
        return BI_INVALID_ARGUMENT;
    const frame *fr = &frames[f][role];
    size_t pl = strlen(fr->pre), sl = strlen(fr->post), n;
    if (!bi_size_add(pl + sl, len, &n) || !bi_size_add(n, 1, &n))
        return BI_NOMEM;
    char *s = bi_malloc(n);
    if (!s)
        return BI_NOMEM;
    memcpy(s, fr->pre, pl);
    if (len)
        memcpy(s + pl, content, len);
    memcpy(s + pl + len, fr->post, sl);
    s[n - 1] = 0;
    *out = s;
    *out_len = n - 1;
    return BI_OK;
}

const char *eng_chat_generation_prompt(eng_chat_format f)
{
    return f > ENG_CHAT_UNKNOWN && f < ENG_CHAT_COUNT_ && gen_prompts[f] ? gen_prompts[f] : "";
}
