/*
 * fuzz_tokenizer.c - libFuzzer target for the tokenizer. The first input byte
 * picks what the rest is:
 *   even: text, encoded (with and without special tokens) by a SentencePiece
 *         tokenizer loaded once from tests/fixtures/tokenizer/spm.json and by a
 *         small byte-level tokenizer (digit + GPT-2 regex splits), then decoded
 *         whole and token by token;
 *   1 mod 4: a tokenizer.json, parsed; when it loads, it encodes and decodes
 *         its own text;
 *   3 mod 4: a GGUF image whose tokenizer metadata is loaded, likewise.
 * Any status is fine; a crash, leak or sanitizer report is not.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "model/gguf.h"
#include "tokenizer/tokenizer.h"

static const char BYTE_LEVEL_JSON[] =
    "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2, \"\\u0120\": 3,"
    "\"\\u0120ab\": 4, \"1\": 5, \"<|x|>\": 6, \"\\u00c3\": 7, \"\\u00a9\": 8, \"\\u00c3\\u00a9\": "
    "9},"
    "\"merges\": [\"a b\", \"\\u0120 ab\", \"\\u00c3 \\u00a9\"]},"
    "\"added_tokens\": [{\"id\": 6, \"content\": \"<|x|>\", \"special\": true}],"
    "\"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": ["
    "{\"type\": \"Digits\", \"individual_digits\": true},"
    "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": true}]},"
    "\"decoder\": {\"type\": \"ByteLevel\"}}";

static eng_tokenizer *spm, *byte_level;

static void load_once(void)
{
    static bool done;
    if (done)
        return;
    done = true;
    eng_tokenizer_from_json(TOK_FIXTURES_DIR "/spm.json", TOK_FIXTURES_DIR "/spm_config.json", &spm,
                            NULL, 0);
    eng_tokenizer_from_json_text(BYTE_LEVEL_JSON, sizeof BYTE_LEVEL_JSON - 1, NULL, 0, &byte_level,
                                 NULL, 0);
    if (!spm || !byte_level)
        abort(); /* the harness is broken, not the input */
}

static void roundtrip(const eng_tokenizer *t, const char *text, size_t len, bool special)
{
    int32_t *ids;
    size_t n;
    if (eng_tokenizer_encode(t, text, len, special, &ids, &n) != BI_OK)
        return;
    char *dec;
    size_t dl;
    if (eng_tokenizer_decode(t, ids, n, &dec, &dl) == BI_OK)
        bi_free(dec);
    eng_detok d;
    eng_detok_init(&d);
    char buf[64];
    for (size_t i = 0; i < n; i++) {
        size_t k;
        eng_detok_push(t, &d, ids[i], buf, sizeof buf, &k);
    }
    size_t k;
    eng_detok_flush(&d, buf, sizeof buf, &k);
    bi_free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    load_once();
    if (size == 0)
        return 0;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    if ((data[0] & 1) == 0) {
        roundtrip(spm, text, len, data[0] & 2);
        roundtrip(byte_level, text, len, data[0] & 2);
        return 0;
    }
    eng_tokenizer *t = NULL;
    char err[128];
    if ((data[0] & 3) == 3) {
        eng_gguf *g;
        if (eng_gguf_open_memory(text, len, &g, NULL, 0) != BI_OK)
            return 0;
        bi_status s = eng_tokenizer_from_gguf(g, &t, err, sizeof err);
        eng_gguf_close(g);
        if (s == BI_OK) {
            static const char probe[] = "Hello <s> w\xc3\xb6rld \xff 123";
            roundtrip(t, probe, sizeof probe - 1, true);
            eng_tokenizer_destroy(t);
        }
        return 0;
    }
    if (eng_tokenizer_from_json_text(text, len, NULL, 0, &t, err, sizeof err) == BI_OK) {
        roundtrip(t, text, len, true);
        eng_tokenizer_destroy(t);
    }
    return 0;
}
