/*
 * test_tokenizer.c - the tokenizer against the HF reference fixtures
 * (tests/fixtures/gen_tokenizer_fixtures.py): ids on every corpus line for
 * SmolLM2 (byte-level, from its GGUF) and for a small SentencePiece-style
 * tokenizer (from tokenizer.json and from GGUF), round trips, streaming
 * decode, special tokens, hostile tokenizer.json files, speed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <cjson/cJSON.h>

#include "../common/test_files.h"

#include "common/alloc.h"
#include "model/gguf.h"
#include "tokenizer/tokenizer.h"

#define FIX TOK_FIXTURES_DIR

/* Decodes a hex string into a new buffer. */
static char *unhex(const char *hex, size_t *len)
{
    size_t n = strlen(hex) / 2;
    char *out = malloc(n + 1);
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        sscanf(hex + 2 * i, "%2x", &v);
        out[i] = (char)v;
    }
    out[n] = 0;
    *len = n;
    return out;
}

static eng_tokenizer *load_spm_json(void)
{
    eng_tokenizer *t = NULL;
    char err[256] = "";
    bi_status s =
        eng_tokenizer_from_json(FIX "/spm.json", FIX "/spm_config.json", &t, err, sizeof err);
    if (s != BI_OK)
        fail_msg("spm.json: %s: %s", bi_status_name(s), err);
    return t;
}

static eng_tokenizer *load_path(const char *path)
{
    eng_tokenizer *t = NULL;
    char err[256] = "";
    bi_status s = eng_tokenizer_load(path, &t, err, sizeof err);
    if (s != BI_OK)
        fail_msg("%s: %s: %s", path, bi_status_name(s), err);
    return t;
}

static bool have_smollm2(void)
{
    if (access(SMOL_GGUF, R_OK) == 0)
        return true;
    print_message("SKIP: %s is absent (bash deploy/fetch_model.sh)\n", SMOL_GGUF);
    return false;
}

/* Encodes every fixture line and compares with the recorded ids; returns the
 * number of lines compared. */
static int compare_ids(const eng_tokenizer *t, const char *fixture)
{
    cJSON *root = test_load_json(fixture), *line;
    int compared = 0, line_no = 0;
    cJSON_ArrayForEach(line, cJSON_GetObjectItem(root, "lines"))
    {
        cJSON *want = cJSON_GetObjectItem(line, "ids");
        line_no++;
        if (!cJSON_IsArray(want))
            continue; /* no reference for this line (invalid UTF-8 for SentencePiece) */
        size_t len, n;
        char *text = unhex(cJSON_GetObjectItem(line, "hex")->valuestring, &len);
        int32_t *ids;
        assert_int_equal(eng_tokenizer_encode(t, text, len, true, &ids, &n), BI_OK);
        bool same = n == (size_t)cJSON_GetArraySize(want);
        for (size_t i = 0; same && i < n; i++)
            same = ids[i] == cJSON_GetArrayItem(want, (int)i)->valueint;
        if (!same) {
            print_error("line %d (%s): got %zu ids, want %d\n", line_no, text, n,
                        cJSON_GetArraySize(want));
            for (size_t i = 0; i < n; i++)
                print_error(" %d", ids[i]);
            print_error("\n");
            fail();
        }
        compared++;
        bi_free(ids);
        free(text);
    }
    cJSON_Delete(root);
    return compared;
}

static void test_tokenizer_spm_json_matches_hf(void **state)
{
    (void)state;
    eng_tokenizer *t = load_spm_json();
    assert_true(compare_ids(t, FIX "/spm_ids.json") >= 30);
    assert_int_equal(eng_tokenizer_bos(t), eng_tokenizer_token_id(t, "<s>"));
    assert_int_equal(eng_tokenizer_eos(t), eng_tokenizer_token_id(t, "</s>"));
    assert_true(eng_tokenizer_add_bos(t));
    assert_non_null(eng_tokenizer_chat_template(t));
    eng_tokenizer_destroy(t);
}

static void test_tokenizer_spm_metaspace_matches_hf(void **state)
{
    (void)state;
    eng_tokenizer *t = load_path(FIX "/spm_meta.json");
    assert_true(compare_ids(t, FIX "/spm_meta_ids.json") >= 30);
    eng_tokenizer_destroy(t);
}

static void test_tokenizer_spm_gguf_matches_hf(void **state)
{
    (void)state;
    eng_tokenizer *t = load_path(FIX "/spm.gguf");
    assert_true(compare_ids(t, FIX "/spm_gguf_ids.json") >= 30);
    assert_true(eng_tokenizer_add_bos(t));
    assert_true(eng_tokenizer_is_eog(t, eng_tokenizer_token_id(t, "</s>")));
    eng_tokenizer_destroy(t);
}

/* Byte-level BPEs split by Llama 3's and Qwen2's regexes (PCRE2 here, Oniguruma in HF). */
static void test_tokenizer_split_regexes_match_hf(void **state)
{
    (void)state;
    static const char *const names[] = {"llama3_bl", "qwen2_bl"};
    for (int i = 0; i < 2; i++) {
        char json[512], ids[512];
        snprintf(json, sizeof json, FIX "/%s.json", names[i]);
        snprintf(ids, sizeof ids, FIX "/%s_ids.json", names[i]);
        eng_tokenizer *t = load_path(json);
        assert_int_equal(compare_ids(t, ids), 40);
        eng_tokenizer_destroy(t);
    }
}

static void test_tokenizer_smollm2_matches_hf(void **state)
{
    (void)state;
    if (!have_smollm2())
        skip();
    eng_tokenizer *t = load_path(SMOL_GGUF);
    assert_int_equal(compare_ids(t, FIX "/smollm2_ids.json"), 40);
    assert_int_equal(eng_tokenizer_vocab_size(t), 49152);
    assert_false(eng_tokenizer_add_bos(t));
    assert_true(eng_tokenizer_is_eog(t, eng_tokenizer_token_id(t, "<|im_end|>")));
    assert_true(eng_tokenizer_is_eog(t, eng_tokenizer_eos(t)));
    assert_false(eng_tokenizer_is_eog(t, eng_tokenizer_token_id(t, "<|im_start|>")));
    assert_non_null(strstr(eng_tokenizer_chat_template(t), "<|im_start|>"));
    /* the rendered chat encodes as HF encodes it */
    cJSON *root = test_load_json(FIX "/smollm2_ids.json");
    cJSON *chat = cJSON_GetObjectItem(root, "chat");
    const char *text = cJSON_GetObjectItem(chat, "chatml")->valuestring;
    cJSON *want = cJSON_GetObjectItem(chat, "chatml_ids");
    int32_t *ids;
    size_t n;
    assert_int_equal(eng_tokenizer_encode(t, text, strlen(text), true, &ids, &n), BI_OK);
    assert_int_equal(n, cJSON_GetArraySize(want));
    for (size_t i = 0; i < n; i++)
        assert_int_equal(ids[i], cJSON_GetArrayItem(want, (int)i)->valueint);
    bi_free(ids);
    cJSON_Delete(root);
    eng_tokenizer_destroy(t);
}

/* True when s[0..n) is valid UTF-8 with no partial character. */
static bool valid_utf8(const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        size_t k = c < 0x80                 ? 1
                   : c >= 0xC2 && c <= 0xDF ? 2
                   : c >= 0xE0 && c <= 0xEF ? 3
                   : c >= 0xF0 && c <= 0xF4 ? 4
                                            : 0;
        if (!k || i + k > n)
            return false;
        for (size_t j = 1; j < k; j++)
            if (((unsigned char)s[i + j] & 0xC0) != 0x80)
                return false;
        i += k;
    }
    return true;
}

/* decode(encode(x)) == x for every valid line, streaming one token at a time. */
static void roundtrip(const eng_tokenizer *t)
{
    cJSON *corpus = test_load_json(FIX "/corpus.json"), *e;
    int checked = 0;
    cJSON_ArrayForEach(e, corpus)
    {
        size_t len, n, dl;
        char *text = unhex(e->valuestring, &len), *dec;
        if (!valid_utf8(text, len)) {
            free(text);
            continue;
        }
        int32_t *ids;
        assert_int_equal(eng_tokenizer_encode(t, text, len, false, &ids, &n), BI_OK);
        assert_int_equal(eng_tokenizer_decode(t, ids, n, &dec, &dl), BI_OK);
        assert_int_equal(dl, len);
        assert_memory_equal(dec, text, len);
        /* streaming: every chunk is whole characters */
        eng_detok d;
        eng_detok_init(&d);
        char buf[4096];
        size_t k;
        for (size_t i = 0; i < n; i++) {
            assert_int_equal(eng_detok_push(t, &d, ids[i], buf, sizeof buf, &k), BI_OK);
            assert_true(valid_utf8(buf, k));
        }
        assert_int_equal(eng_detok_flush(&d, buf, sizeof buf, &k), BI_OK);
        assert_int_equal(k, 0);
        bi_free(dec);
        bi_free(ids);
        free(text);
        checked++;
    }
    assert_true(checked >= 30);
    cJSON_Delete(corpus);
}

static void test_tokenizer_roundtrip_spm(void **state)
{
    (void)state;
    eng_tokenizer *t = load_spm_json();
    roundtrip(t);
    eng_tokenizer_destroy(t);
}

static void test_tokenizer_roundtrip_smollm2(void **state)
{
    (void)state;
    if (!have_smollm2())
        skip();
    eng_tokenizer *t = load_path(SMOL_GGUF);
    roundtrip(t);
    eng_tokenizer_destroy(t);
}

/* Invalid UTF-8 in SentencePiece-style: the bad bytes become byte tokens and
 * the tokens' raw bytes spell the input (with the "▁" prefix as a space). */
static void test_tokenizer_invalid_utf8_spm(void **state)
{
    (void)state;
    eng_tokenizer *t = load_spm_json();
    const char text[] = "ok \xff\xc3\x28 \xe2\x82";
    int32_t *ids;
    size_t n, len = sizeof text - 1;
    assert_int_equal(eng_tokenizer_encode(t, text, len, true, &ids, &n), BI_OK);
    char joined[64];
    size_t o = 0;
    bool saw_ff = false;
    for (size_t i = 0; i < n; i++) {
        const char *b;
        size_t bl;
        assert_int_equal(eng_tokenizer_token_bytes(t, ids[i], &b, &bl), BI_OK);
        assert_true(o + bl < sizeof joined);
        memcpy(joined + o, b, bl);
        o += bl;
        saw_ff |= ids[i] == eng_tokenizer_token_id(t, "<0xFF>");
    }
    assert_true(saw_ff);
    assert_int_equal(o, len + 1);
    assert_int_equal(joined[0], ' ');
    assert_memory_equal(joined + 1, text, len);
    /* decoding replaces each invalid byte, never emits a broken sequence */
    char *dec;
    size_t dl;
    assert_int_equal(eng_tokenizer_decode(t, ids, n, &dec, &dl), BI_OK);
    assert_true(valid_utf8(dec, dl));
    assert_string_equal(dec, "ok \xEF\xBF\xBD\xEF\xBF\xBD( \xEF\xBF\xBD");
    bi_free(dec);
    bi_free(ids);
    eng_tokenizer_destroy(t);
}

/* Emoji and CJK split over byte tokens come out whole, or as U+FFFD at flush. */
static void test_tokenizer_detok_holds_partial_chars(void **state)
{
    (void)state;
    eng_tokenizer *t = load_spm_json();
    int32_t b[4];
    const unsigned char emoji[] = {0xF0, 0x9F, 0x98, 0x80};
    for (int i = 0; i < 4; i++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", emoji[i]);
        b[i] = eng_tokenizer_token_id(t, name);
        assert_true(b[i] >= 0);
    }
    eng_detok d;
    eng_detok_init(&d);
    char out[32];
    size_t k;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(eng_detok_push(t, &d, b[i], out, sizeof out, &k), BI_OK);
        assert_int_equal(k, 0);
    }
    assert_int_equal(eng_detok_push(t, &d, b[3], out, sizeof out, &k), BI_OK);
    assert_int_equal(k, 4);
    assert_memory_equal(out, emoji, 4);
    /* an incomplete character at the end is one U+FFFD */
    eng_detok_init(&d);
    assert_int_equal(eng_detok_push(t, &d, b[0], out, sizeof out, &k), BI_OK);
    assert_int_equal(eng_detok_push(t, &d, b[1], out, sizeof out, &k), BI_OK);
    assert_int_equal(k, 0);
    assert_int_equal(eng_detok_flush(&d, out, sizeof out, &k), BI_OK);
    assert_int_equal(k, 3);
    assert_memory_equal(out, "\xEF\xBF\xBD", 3);
    /* an interrupted character: U+FFFD, then the interrupting text */
    eng_detok_init(&d);
    int32_t x = eng_tokenizer_token_id(t, "x");
    assert_true(x >= 0);
    assert_int_equal(eng_detok_push(t, &d, b[0], out, sizeof out, &k), BI_OK);
    assert_int_equal(eng_detok_push(t, &d, x, out, sizeof out, &k), BI_OK);
    assert_int_equal(k, 4);
    assert_memory_equal(out, "\xEF\xBF\xBDx", 4);
    /* too small an output buffer leaves the state alone */
    eng_detok_init(&d);
    assert_int_equal(eng_detok_push(t, &d, x, out, 0, &k), BI_RESOURCE_EXHAUSTED);
    assert_false(d.started);
    assert_int_equal(eng_detok_push(t, &d, -1, out, sizeof out, &k), BI_OUT_OF_RANGE);
    eng_tokenizer_destroy(t);
}

static void test_tokenizer_first_space_dropped_spm(void **state)
{
    (void)state;
    eng_tokenizer *t = load_spm_json();
    const char *b;
    size_t bl;
    int32_t id = eng_tokenizer_token_id(t, "\xE2\x96\x81");
    assert_true(id >= 0);
    assert_int_equal(eng_tokenizer_token_bytes(t, id, &b, &bl), BI_OK);
    assert_int_equal(bl, 1);
    assert_int_equal(b[0], ' ');
    int32_t ids[2] = {id, id};
    char *dec;
    size_t dl;
    assert_int_equal(eng_tokenizer_decode(t, ids, 2, &dec, &dl), BI_OK);
    assert_string_equal(dec, " "); /* first space dropped, second kept */
    bi_free(dec);
    eng_tokenizer_destroy(t);
}

static void test_tokenizer_parse_special(void **state)
{
    (void)state;
    eng_tokenizer *t = load_spm_json();
    const char *text = "<|im_end|>";
    int32_t *ids;
    size_t n;
    int32_t im_end = eng_tokenizer_token_id(t, "<|im_end|>");
    assert_int_equal(eng_tokenizer_encode(t, text, strlen(text), true, &ids, &n), BI_OK);
    assert_int_equal(n, 1);
    assert_int_equal(ids[0], im_end);
    bi_free(ids);
    assert_int_equal(eng_tokenizer_encode(t, text, strlen(text), false, &ids, &n), BI_OK);
    for (size_t i = 0; i < n; i++)
        assert_int_not_equal(ids[i], im_end);
    bi_free(ids);
    assert_int_equal(eng_tokenizer_encode(t, "", 0, true, &ids, &n), BI_OK);
    assert_int_equal(n, 0);
    bi_free(ids);
    assert_int_equal(eng_tokenizer_token_id(t, "no such piece"), -1);
    const char *b;
    size_t bl;
    assert_int_equal(eng_tokenizer_token_bytes(t, eng_tokenizer_vocab_size(t), &b, &bl),
                     BI_OUT_OF_RANGE);
    eng_tokenizer_destroy(t);
}

/* Hostile tokenizer.json files give a status and a message, never a crash. */
static void test_tokenizer_hostile_json(void **state)
{
    (void)state;
    static const struct {
        const char *json;
        bi_status want;
    } cases[] = {
        {"", BI_BAD_FORMAT},
        {"{", BI_BAD_FORMAT},
        {"[]", BI_BAD_FORMAT},
        {"{}", BI_BAD_FORMAT},
        {"{\"model\": 3}", BI_BAD_FORMAT},
        {"{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}", BI_UNSUPPORTED},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": [], \"merges\": []}}", BI_BAD_FORMAT},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": []}}", BI_BAD_FORMAT},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": \"x\"}, \"merges\": []}}",
         BI_BAD_FORMAT},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 99999999999}, \"merges\": []},"
         "\"decoder\": {\"type\": \"ByteLevel\"}}",
         BI_BAD_FORMAT},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -1}, \"merges\": []}}", BI_BAD_FORMAT},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 0}, \"merges\": []},"
         "\"decoder\": {\"type\": \"ByteLevel\"}}",
         BI_BAD_FORMAT},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": "
         "[\"a c\"]}, \"decoder\": {\"type\": \"ByteLevel\"}}",
         BI_BAD_FORMAT},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": "
         "[\"a b\"]}, \"decoder\": {\"type\": \"ByteLevel\"}}",
         BI_BAD_FORMAT}, /* the result "ab" is not in the vocabulary */
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [7]},"
         "\"decoder\": {\"type\": \"ByteLevel\"}}",
         BI_BAD_FORMAT},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}",
         BI_UNSUPPORTED}, /* neither byte-level nor SentencePiece */
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
         "\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(\"},"
         "\"behavior\": \"Isolated\"}, \"decoder\": {\"type\": \"ByteLevel\"}}",
         BI_BAD_FORMAT}, /* a regex that does not compile */
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
         "\"pre_tokenizer\": {\"type\": \"Sequence\"}, \"decoder\": {\"type\": \"ByteLevel\"}}",
         BI_BAD_FORMAT},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
         "\"added_tokens\": [{\"id\": 5}], \"decoder\": {\"type\": \"ByteLevel\"}}",
         BI_BAD_FORMAT},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
         "\"added_tokens\": {}, \"decoder\": {\"type\": \"ByteLevel\"}}",
         BI_BAD_FORMAT},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        eng_tokenizer *t = NULL;
        char err[256] = "";
        bi_status s = eng_tokenizer_from_json_text(cases[i].json, strlen(cases[i].json), NULL, 0,
                                                   &t, err, sizeof err);
        if (s != cases[i].want)
            fail_msg("case %zu: got %s (%s), want %s", i, bi_status_name(s), err,
                     bi_status_name(cases[i].want));
        assert_null(t);
        assert_true(strlen(err) > 0);
    }
    /* a minimal valid one, with a hole in the ids, loads */
    const char *ok = "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 5},"
                     "\"merges\": [[\"a\", \"b\"]]}, \"decoder\": {\"type\": \"ByteLevel\"}}";
    eng_tokenizer *t = NULL;
    assert_int_equal(eng_tokenizer_from_json_text(ok, strlen(ok), NULL, 0, &t, NULL, 0), BI_OK);
    int32_t *ids;
    size_t n;
    assert_int_equal(eng_tokenizer_encode(t, "abab", 4, true, &ids, &n), BI_OK);
    assert_int_equal(n, 2);
    assert_int_equal(ids[0], 5);
    bi_free(ids);
    eng_tokenizer_destroy(t);
    assert_int_equal(eng_tokenizer_load("/nonexistent/model", &t, NULL, 0), BI_NOT_FOUND);
}

/* A GGUF image built in memory, for hostile-metadata cases. */
typedef struct gbuf {
    uint8_t b[4096];
    size_t n;
} gbuf;

static void gput(gbuf *g, const void *p, size_t n)
{
    assert_true(g->n + n <= sizeof g->b);
    memcpy(g->b + g->n, p, n);
    g->n += n;
}

static void gu32(gbuf *g, uint32_t v)
{
    gput(g, &v, 4);
}

static void gu64(gbuf *g, uint64_t v)
{
    gput(g, &v, 8);
}

static void gstr(gbuf *g, const char *s)
{
    gu64(g, strlen(s));
    gput(g, s, strlen(s));
}

static void gkey_str(gbuf *g, const char *k, const char *v)
{
    gstr(g, k);
    gu32(g, ENG_GGUF_STRING);
    gstr(g, v);
}

static void gkey_u32(gbuf *g, const char *k, uint32_t v)
{
    gstr(g, k);
    gu32(g, ENG_GGUF_UINT32);
    gu32(g, v);
}

/* A string array key; n strings from v. */
static void gkey_strs(gbuf *g, const char *k, const char *const *v, size_t n)
{
    gstr(g, k);
    gu32(g, ENG_GGUF_ARRAY);
    gu32(g, ENG_GGUF_STRING);
    gu64(g, n);
    for (size_t i = 0; i < n; i++)
        gstr(g, v[i]);
}

static void gheader(gbuf *g, uint64_t n_kv)
{
    g->n = 0;
    gput(g, "GGUF", 4);
    gu32(g, 3);
    gu64(g, 0);
    gu64(g, n_kv);
}

static bi_status gguf_tok(gbuf *g, char *err, size_t err_size)
{
    eng_gguf *f;
    assert_int_equal(eng_gguf_open_memory(g->b, g->n, &f, NULL, 0), BI_OK);
    eng_tokenizer *t = NULL;
    bi_status s = eng_tokenizer_from_gguf(f, &t, err, err_size);
    eng_gguf_close(f);
    eng_tokenizer_destroy(t);
    return s;
}

/* Hostile GGUF tokenizer metadata: missing keys, wrong types, unknown names,
 * merges naming unknown tokens, ids out of range. */
static void test_tokenizer_hostile_gguf(void **state)
{
    (void)state;
    static const char *const toks[] = {"a", "b", "ab"};
    static const char *const good[] = {"a b"};
    static const char *const bad[] = {"a c"};
    char err[256];
    gbuf g;
    struct {
        const char *model, *pre;
        const char *const *merges;
        uint32_t bos;
        bi_status want;
    } cases[] = {
        {"gpt2", "gpt2", good, 0, BI_OK},
        {NULL, "gpt2", good, 0, BI_BAD_FORMAT},
        {"bert", "gpt2", good, 0, BI_UNSUPPORTED},
        {"gpt2", "no-such-pre", good, 0, BI_UNSUPPORTED},
        {"gpt2", "gpt2", bad, 0, BI_BAD_FORMAT},
        {"gpt2", "gpt2", NULL, 0, BI_BAD_FORMAT},
        {"gpt2", "gpt2", good, 99, BI_BAD_FORMAT},
        {"llama", "gpt2", good, 0, BI_BAD_FORMAT}, /* no scores */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        gheader(&g, 3 + (cases[i].model != NULL) + (cases[i].merges != NULL));
        if (cases[i].model)
            gkey_str(&g, "tokenizer.ggml.model", cases[i].model);
        gkey_str(&g, "tokenizer.ggml.pre", cases[i].pre);
        gkey_strs(&g, "tokenizer.ggml.tokens", toks, 3);
        if (cases[i].merges)
            gkey_strs(&g, "tokenizer.ggml.merges", cases[i].merges, 1);
        gkey_u32(&g, "tokenizer.ggml.bos_token_id", cases[i].bos);
        err[0] = 0;
        bi_status s = gguf_tok(&g, err, sizeof err);
        if (s != cases[i].want)
            fail_msg("case %zu: got %s (%s), want %s", i, bi_status_name(s), err,
                     bi_status_name(cases[i].want));
        assert_true(s == BI_OK || strlen(err) > 0);
    }
    /* tokens of the wrong type */
    gheader(&g, 2);
    gkey_str(&g, "tokenizer.ggml.model", "gpt2");
    gkey_u32(&g, "tokenizer.ggml.tokens", 7);
    assert_int_equal(gguf_tok(&g, err, sizeof err), BI_BAD_FORMAT);
}

/* 100 KB of English must encode well under a second. */
static void test_tokenizer_speed(void **state)
{
    (void)state;
    eng_tokenizer *t = have_smollm2() ? load_path(SMOL_GGUF) : load_spm_json();
    const char *para = "The quick brown fox jumps over the lazy dog, and tokenizers split text "
                       "into pieces that are merged by rank until no pair remains. ";
    size_t pl = strlen(para), len = 0;
    char *text = malloc(100 * 1024 + pl);
    while (len < 100 * 1024) {
        memcpy(text + len, para, pl);
        len += pl;
    }
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    int32_t *ids;
    size_t n;
    assert_int_equal(eng_tokenizer_encode(t, text, len, true, &ids, &n), BI_OK);
    clock_gettime(CLOCK_MONOTONIC, &b);
    double s = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) * 1e-9;
    print_message("encoded %zu bytes into %zu tokens in %.1f ms\n", len, n, s * 1e3);
    assert_true(s < 1.0);
    bi_free(ids);
    free(text);
    eng_tokenizer_destroy(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tokenizer_spm_json_matches_hf),
        cmocka_unit_test(test_tokenizer_spm_metaspace_matches_hf),
        cmocka_unit_test(test_tokenizer_spm_gguf_matches_hf),
        cmocka_unit_test(test_tokenizer_split_regexes_match_hf),
        cmocka_unit_test(test_tokenizer_smollm2_matches_hf),
        cmocka_unit_test(test_tokenizer_roundtrip_spm),
        cmocka_unit_test(test_tokenizer_roundtrip_smollm2),
        cmocka_unit_test(test_tokenizer_invalid_utf8_spm),
        cmocka_unit_test(test_tokenizer_detok_holds_partial_chars),
        cmocka_unit_test(test_tokenizer_first_space_dropped_spm),
        cmocka_unit_test(test_tokenizer_parse_special),
        cmocka_unit_test(test_tokenizer_hostile_json),
        cmocka_unit_test(test_tokenizer_hostile_gguf),
        cmocka_unit_test(test_tokenizer_speed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
