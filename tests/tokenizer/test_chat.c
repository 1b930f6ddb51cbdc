/*
 * test_chat.c - chat format detection and framing. The concatenation of
 * framed messages must equal what transformers' apply_chat_template renders
 * (recorded in tests/fixtures/tokenizer/smollm2_ids.json) for ChatML (SmolLM2's
 * real template) and Llama 3.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <cjson/cJSON.h>

#include "common/alloc.h"
#include "tokenizer/chat.h"

static cJSON *load_fixture(void)
{
    FILE *f = fopen(TOK_FIXTURES_DIR "/smollm2_ids.json", "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = 0;
    fclose(f);
    cJSON *j = cJSON_Parse(buf);
    free(buf);
    assert_non_null(j);
    return j;
}

static const char *jstr(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItem(o, key);
    assert_true(cJSON_IsString(v));
    return v->valuestring;
}

/* Frames the fixture's messages in format f, prefixed by bos, plus the generation prompt. */
static char *render(eng_chat_format f, const cJSON *messages, const char *bos)
{
    size_t cap = 4096, n = strlen(bos);
    char *out = malloc(cap);
    memcpy(out, bos, n + 1);
    const cJSON *m;
    cJSON_ArrayForEach(m, messages)
    {
        const char *role = jstr(m, "role"), *content = jstr(m, "content");
        eng_role r = strcmp(role, "system") == 0 ? ENG_ROLE_SYSTEM
                     : strcmp(role, "user") == 0 ? ENG_ROLE_USER
                                                 : ENG_ROLE_ASSISTANT;
        char *framed;
        size_t fl;
        assert_int_equal(eng_chat_frame(f, r, content, strlen(content), &framed, &fl), BI_OK);
        assert_int_equal(strlen(framed), fl);
        assert_true(n + fl < cap);
        memcpy(out + n, framed, fl + 1);
        n += fl;
        bi_free(framed);
    }
    const char *gp = eng_chat_generation_prompt(f);
    assert_true(n + strlen(gp) < cap);
    strcat(out, gp);
    return out;
}

static void test_chat_matches_hf_chatml(void **state)
{
    (void)state;
    cJSON *j = load_fixture(), *chat = cJSON_GetObjectItem(j, "chat");
    eng_chat_format f;
    assert_int_equal(eng_chat_detect(jstr(j, "template"), &f), BI_OK);
    assert_int_equal(f, ENG_CHAT_CHATML);
    char *text = render(f, cJSON_GetObjectItem(chat, "messages"), "");
    assert_string_equal(text, jstr(chat, "chatml"));
    free(text);
    cJSON_Delete(j);
}

static void test_chat_matches_hf_llama3(void **state)
{
    (void)state;
    cJSON *j = load_fixture(), *chat = cJSON_GetObjectItem(j, "chat");
    eng_chat_format f;
    assert_int_equal(eng_chat_detect(jstr(chat, "llama3_template"), &f), BI_OK);
    assert_int_equal(f, ENG_CHAT_LLAMA3);
    /* the template writes BOS itself; framing leaves it to the engine */
    char *text = render(f, cJSON_GetObjectItem(chat, "messages"), jstr(chat, "llama3_bos"));
    assert_string_equal(text, jstr(chat, "llama3"));
    free(text);
    cJSON_Delete(j);
}

static void test_chat_detect_families(void **state)
{
    (void)state;
    static const struct {
        const char *tpl;
        eng_chat_format want;
    } cases[] = {
        {"{{'<|im_start|>' + message['role'] + '\\n'}}", ENG_CHAT_CHATML},
        {"{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}",
         ENG_CHAT_LLAMA3},
        {"{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + "
         "system_message + '\\n<</SYS>>\\n\\n' %}{{ bos_token + '[INST] ' + content + ' [/INST]' "
         "}}",
         ENG_CHAT_LLAMA2},
        {"{{ bos_token }}{% for message in messages %}{{ '[INST] ' + message['content'] + ' "
         "[/INST]' }}{% endfor %}",
         ENG_CHAT_MISTRAL},
        {"{% if message['role'] == 'user' %}{{ '<|user|>\\n' + message['content'] + eos_token }}",
         ENG_CHAT_ZEPHYR},
        {"{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}",
         ENG_CHAT_GEMMA},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        eng_chat_format f = ENG_CHAT_UNKNOWN;
        assert_int_equal(eng_chat_detect(cases[i].tpl, &f), BI_OK);
        assert_int_equal(f, cases[i].want);
    }
    eng_chat_format f = ENG_CHAT_CHATML;
    assert_int_equal(eng_chat_detect("{{ messages[0]['content'] }}", &f), BI_NOT_FOUND);
    assert_int_equal(eng_chat_detect("", &f), BI_NOT_FOUND);
    assert_int_equal(eng_chat_detect(NULL, &f), BI_INVALID_ARGUMENT);
}

static void test_chat_names_roundtrip(void **state)
{
    (void)state;
    for (int f = ENG_CHAT_CHATML; f < ENG_CHAT_COUNT_; f++) {
        eng_chat_format g;
        assert_int_equal(eng_chat_format_parse(eng_chat_format_name((eng_chat_format)f), &g),
                         BI_OK);
        assert_int_equal(g, f);
    }
    eng_chat_format g;
    assert_int_equal(eng_chat_format_parse("ChatML", &g), BI_OK);
    assert_int_equal(g, ENG_CHAT_CHATML);
    assert_int_equal(eng_chat_format_parse("vicuna", &g), BI_INVALID_ARGUMENT);
    assert_int_equal(eng_chat_format_parse("unknown", &g), BI_INVALID_ARGUMENT);
    assert_string_equal(eng_chat_format_name((eng_chat_format)99), "unknown");
}

static void test_chat_frame_roles_and_errors(void **state)
{
    (void)state;
    char *s;
    size_t n;
    assert_int_equal(eng_chat_frame(ENG_CHAT_CHATML, ENG_ROLE_CONTEXT, "doc", 3, &s, &n), BI_OK);
    assert_string_equal(s, "<|im_start|>system\ndoc<|im_end|>\n");
    bi_free(s);
    assert_int_equal(eng_chat_frame(ENG_CHAT_LLAMA2, ENG_ROLE_USER, "hi", 2, &s, &n), BI_OK);
    assert_string_equal(s, "[INST] hi [/INST]");
    bi_free(s);
    assert_int_equal(eng_chat_frame(ENG_CHAT_GEMMA, ENG_ROLE_ASSISTANT, "", 0, &s, &n), BI_OK);
    assert_string_equal(s, "<start_of_turn>model\n<end_of_turn>\n");
    bi_free(s);
    assert_int_equal(eng_chat_frame(ENG_CHAT_UNKNOWN, ENG_ROLE_USER, "x", 1, &s, &n),
                     BI_INVALID_ARGUMENT);
    assert_int_equal(eng_chat_frame(ENG_CHAT_CHATML, (eng_role)9, "x", 1, &s, &n),
                     BI_INVALID_ARGUMENT);
    assert_string_equal(eng_chat_generation_prompt(ENG_CHAT_LLAMA2), "");
    assert_string_equal(eng_chat_generation_prompt(ENG_CHAT_ZEPHYR), "<|assistant|>\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chat_matches_hf_chatml),
        cmocka_unit_test(test_chat_matches_hf_llama3),
        cmocka_unit_test(test_chat_detect_families),
        cmocka_unit_test(test_chat_names_roundtrip),
        cmocka_unit_test(test_chat_frame_roles_and_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
