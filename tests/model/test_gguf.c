/*
 * test_gguf.c - the GGUF reader on images built here: a valid file read back
 * exactly, then every kind of hostile file (truncated anywhere, lying
 * lengths and counts, bad offsets, absurd dimensions, unknown types, too many
 * dims, duplicates, bad names), each a status with a message.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "images.h"
#include "model/gguf.h"

/* A valid file: 4 keys (one string array), 2 tensors. */
static img valid_image(void)
{
    img m = {0};
    gguf_head(&m, 3, 2, 4);
    gguf_kv_str(&m, "general.architecture", "llama");
    gguf_kv_u32(&m, "llama.block_count", 7);
    gguf_kv_f32(&m, "llama.rope.freq_base", 10000.0f);
    img_str(&m, "tokenizer.ggml.tokens");
    img_u32(&m, 9);
    img_u32(&m, 8);
    img_u64(&m, 3);
    img_str(&m, "a");
    img_str(&m, "");
    img_str(&m, "\xc3\xa9t\xc3\xa9");
    uint64_t ne1[2] = {4, 3}, ne2[1] = {32};
    gguf_tinfo(&m, "w", 2, ne1, 0, 0);
    gguf_tinfo(&m, "q", 1, ne2, 8, 64);
    img_pad(&m, 32);
    float w[12];
    for (int i = 0; i < 12; i++)
        w[i] = (float)i;
    img_put(&m, w, sizeof w);
    img_pad(&m, 32);
    uint8_t q[34] = {0x00, 0x3c}; /* d = 1.0 */
    for (int i = 0; i < 32; i++)
        q[2 + i] = (uint8_t)(i - 16);
    img_put(&m, q, sizeof q);
    return m;
}

static void test_gguf_reads_valid(void **state)
{
    (void)state;
    img m = valid_image();
    eng_gguf *g = NULL;
    char err[256] = "";
    assert_int_equal(eng_gguf_open_memory(m.p, m.n, &g, err, sizeof err), BI_OK);
    const char *s;
    size_t len;
    uint32_t u;
    float f;
    int64_t i64;
    assert_int_equal(eng_gguf_get_str(g, "general.architecture", &s, &len), BI_OK);
    assert_int_equal(len, 5);
    assert_memory_equal(s, "llama", 5);
    assert_int_equal(eng_gguf_get_u32(g, "llama.block_count", &u), BI_OK);
    assert_int_equal(u, 7);
    assert_int_equal(eng_gguf_get_i64(g, "llama.block_count", &i64), BI_OK);
    assert_int_equal(i64, 7);
    assert_int_equal(eng_gguf_get_f32(g, "llama.rope.freq_base", &f), BI_OK);
    assert_true(f == 10000.0f);
    assert_int_equal(eng_gguf_get_u32(g, "llama.rope.freq_base", &u), BI_BAD_FORMAT);
    assert_int_equal(eng_gguf_get_u32(g, "nope", &u), BI_NOT_FOUND);
    assert_int_equal(eng_gguf_get_str(g, "llama.block_count", &s, &len), BI_BAD_FORMAT);
    eng_gguf_arr a;
    assert_int_equal(eng_gguf_get_arr(g, "tokenizer.ggml.tokens", &a), BI_OK);
    assert_int_equal(a.count, 3);
    assert_int_equal(eng_gguf_arr_str(&a, 2, &s, &len), BI_OK);
    assert_int_equal(len, 5);
    assert_memory_equal(s, "\xc3\xa9t\xc3\xa9", 5);
    assert_int_equal(eng_gguf_arr_str(&a, 1, &s, &len), BI_OK);
    assert_int_equal(len, 0);
    assert_int_equal(eng_gguf_arr_str(&a, 3, &s, &len), BI_OUT_OF_RANGE);
    assert_int_equal(eng_gguf_arr_f32(&a, 0, &f), BI_BAD_FORMAT);
    assert_int_equal(eng_gguf_n_kv(g), 4);
    assert_string_equal(eng_gguf_kv_key(g, 3, NULL), "tokenizer.ggml.tokens");
    assert_int_equal(eng_gguf_n_tensors(g), 2);
    const eng_gguf_tensor *t = eng_gguf_tensor_find(g, "w");
    assert_non_null(t);
    assert_int_equal(t->n_dims, 2);
    assert_int_equal(t->shape[0], 3); /* outermost first */
    assert_int_equal(t->shape[1], 4);
    assert_int_equal(t->nbytes, 48);
    assert_true(((const float *)t->data)[11] == 11.0f);
    t = eng_gguf_tensor_find(g, "q");
    assert_int_equal(t->dtype, ENG_DTYPE_Q8_0);
    float y[32];
    assert_int_equal(eng_dequant_f32(t->dtype, t->data, 32, y), BI_OK);
    assert_true(y[0] == -16.0f && y[31] == 15.0f);
    assert_null(eng_gguf_tensor_find(g, "x"));
    assert_null(eng_gguf_tensor_at(g, 2));
    eng_gguf_close(g);
    free(m.p);
}

static void test_gguf_truncated_anywhere(void **state)
{
    (void)state;
    img m = valid_image();
    char err[256];
    for (size_t n = 0; n < m.n; n++) {
        eng_gguf *g = (eng_gguf *)1;
        uint8_t *copy = malloc(n ? n : 1); /* exact size, so ASan sees any overread */
        memcpy(copy, m.p, n);
        bi_status s = eng_gguf_open_memory(copy, n, &g, err, sizeof err);
        if (s != BI_BAD_FORMAT)
            fail_msg("prefix of %zu bytes: status %d (%s)", n, s, err);
        assert_null(g);
        free(copy);
    }
    free(m.p);
}

/* Opens a hostile image and checks the status and that err contains want. */
static void expect(img *m, bi_status want, const char *msg)
{
    eng_gguf *g = NULL;
    char err[256] = "";
    bi_status s = eng_gguf_open_memory(m->p, m->n, &g, err, sizeof err);
    if (s != want || !strstr(err, msg))
        fail_msg("status %d (want %d), message '%s' (want '%s')", s, want, err, msg);
    assert_null(g);
    free(m->p);
    memset(m, 0, sizeof *m);
}

static void test_gguf_bad_header(void **state)
{
    (void)state;
    img m = {0};
    img_put(&m, "GGML", 4);
    img_u32(&m, 3);
    expect(&m, BI_BAD_FORMAT, "magic");
    gguf_head(&m, 1, 0, 0);
    expect(&m, BI_UNSUPPORTED, "version 1");
    gguf_head(&m, 3, 0, UINT64_MAX);
    expect(&m, BI_BAD_FORMAT, "more than the file holds");
    gguf_head(&m, 3, 1ull << 40, 0);
    expect(&m, BI_BAD_FORMAT, "more than the file holds");
    gguf_head(&m, 2, 0, 0); /* v2 with nothing in it is fine */
    eng_gguf *g = NULL;
    assert_int_equal(eng_gguf_open_memory(m.p, m.n, &g, NULL, 0), BI_OK);
    eng_gguf_close(g);
    free(m.p);
}

static void test_gguf_bad_metadata(void **state)
{
    (void)state;
    img m = {0};
    gguf_head(&m, 3, 0, 1); /* key length past the end */
    img_u64(&m, 1ull << 60);
    img_put(&m, "abcdefghijklmnopqrstuvwxyz", 26);
    expect(&m, BI_BAD_FORMAT, "past the end");

    gguf_head(&m, 3, 0, 1); /* unknown value type */
    img_str(&m, "k");
    img_u32(&m, 77);
    img_put(&m, "abcdefghijklmnopqrstuvwxyz", 26);
    expect(&m, BI_BAD_FORMAT, "unknown type 77");

    gguf_head(&m, 3, 0, 1); /* nested array */
    img_str(&m, "k");
    img_u32(&m, 9);
    img_u32(&m, 9);
    img_u64(&m, 1);
    img_put(&m, "abcdefghijklmnopqrstuvwxyz", 26);
    expect(&m, BI_BAD_FORMAT, "nested");

    gguf_head(&m, 3, 0, 1); /* array count that lies */
    img_str(&m, "k");
    img_u32(&m, 9);
    img_u32(&m, 4);
    img_u64(&m, 1ull << 62);
    img_put(&m, "abcdefghijklmnopqrstuvwxyz", 26);
    expect(&m, BI_BAD_FORMAT, "past the end");

    gguf_head(&m, 3, 0, 1); /* string array count that lies */
    img_str(&m, "k");
    img_u32(&m, 9);
    img_u32(&m, 8);
    img_u64(&m, 1000);
    img_put(&m, "abcdefghijklmnopqrstuvwxyz", 26);
    expect(&m, BI_BAD_FORMAT, "does not fit");

    gguf_head(&m, 3, 0, 2); /* duplicate key */
    gguf_kv_u32(&m, "a.b", 1);
    gguf_kv_u32(&m, "a.b", 2);
    expect(&m, BI_BAD_FORMAT, "duplicate key 'a.b'");

    gguf_head(&m, 3, 0, 1); /* key that is not UTF-8 */
    gguf_kv_u32(&m, "bad\xff", 1);
    expect(&m, BI_BAD_FORMAT, "UTF-8");

    gguf_head(&m, 3, 0, 1); /* key with a NUL inside */
    img_u64(&m, 3);
    img_put(&m, "a\0b", 3);
    img_u32(&m, 4);
    img_u32(&m, 1);
    img_put(&m, "abcdefghijklmnopqrstuvwxyz", 26);
    expect(&m, BI_BAD_FORMAT, "UTF-8");

    gguf_head(&m, 3, 0, 1); /* alignment not a power of two */
    gguf_kv_u32(&m, "general.alignment", 24);
    expect(&m, BI_BAD_FORMAT, "alignment");
}

/* A one-tensor file: ne[] and type as given, offset 0, data_bytes of data. */
static void one_tensor(img *m, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type,
                       uint64_t offset, size_t data_bytes)
{
    gguf_head(m, 3, 1, 0);
    gguf_tinfo(m, name, n_dims, ne, type, offset);
    img_pad(m, 32);
    uint8_t *z = calloc(1, data_bytes + 1);
    img_put(m, z, data_bytes);
    free(z);
}

static void test_gguf_bad_tensors(void **state)
{
    (void)state;
    img m = {0};
    uint64_t ne[5] = {4, 4, 1, 1, 1};
    one_tensor(&m, "t", 2, ne, 0, 0, 63); /* one byte short */
    expect(&m, BI_BAD_FORMAT, "outside the data area");
    one_tensor(&m, "t", 2, ne, 0, 32, 64); /* offset past the data */
    expect(&m, BI_BAD_FORMAT, "outside the data area");
    one_tensor(&m, "t", 2, ne, 0, UINT64_MAX - 8, 64);
    expect(&m, BI_BAD_FORMAT, "outside the data area");
    one_tensor(&m, "t", 2, ne, 0, 4, 128); /* misaligned */
    expect(&m, BI_BAD_FORMAT, "misaligned");
    one_tensor(&m, "t", 5, ne, 0, 0, 64);
    expect(&m, BI_BAD_FORMAT, "5 dimensions");
    one_tensor(&m, "t", 0, ne, 0, 0, 64);
    expect(&m, BI_BAD_FORMAT, "0 dimensions");
    one_tensor(&m, "t", 2, ne, 99, 0, 64);
    expect(&m, BI_BAD_FORMAT, "unknown type 99");
    one_tensor(&m, "t", 2, ne, 4, 0, 64); /* retired ggml type */
    expect(&m, BI_BAD_FORMAT, "unknown type 4");
    one_tensor(&m, "t", 2, ne, 8, 0, 64); /* q8_0 row of 4 */
    expect(&m, BI_BAD_FORMAT, "blocks");
    uint64_t huge[2] = {1ull << 40, 1}; /* 2^40 elements: 4 TiB */
    one_tensor(&m, "t", 2, huge, 0, 0, 64);
    expect(&m, BI_BAD_FORMAT, "outside the data area");
    uint64_t over[2] = {1ull << 40, 1ull << 40};
    one_tensor(&m, "t", 2, over, 0, 0, 64);
    expect(&m, BI_BAD_FORMAT, "overflow");
    uint64_t big[1] = {(1ull << 62) + 4}; /* fits int64 elements, not size_t bytes */
    one_tensor(&m, "t", 1, big, 0, 0, 64);
    expect(&m, BI_BAD_FORMAT, "too large");
    uint64_t neg[1] = {1ull << 63};
    one_tensor(&m, "t", 1, neg, 0, 0, 64);
    expect(&m, BI_BAD_FORMAT, "overflow");
    one_tensor(&m, "\xe2\x82", 2, ne, 0, 0, 64); /* cut UTF-8 sequence */
    expect(&m, BI_BAD_FORMAT, "UTF-8");
    one_tensor(&m, "", 2, ne, 0, 0, 64);
    expect(&m, BI_BAD_FORMAT, "length 0");

    gguf_head(&m, 3, 2, 0);
    gguf_tinfo(&m, "dup", 2, ne, 0, 0);
    gguf_tinfo(&m, "dup", 2, ne, 0, 64);
    img_pad(&m, 32);
    uint8_t z[128] = {0};
    img_put(&m, z, sizeof z);
    expect(&m, BI_BAD_FORMAT, "duplicate tensor 'dup'");

    /* an unsupported but known type parses (the loader refuses it later) */
    uint64_t k[1] = {256};
    one_tensor(&m, "t", 1, k, 13, 0, 176);
    eng_gguf *g = NULL;
    assert_int_equal(eng_gguf_open_memory(m.p, m.n, &g, NULL, 0), BI_OK);
    assert_int_equal(eng_gguf_tensor_at(g, 0)->nbytes, 176);
    assert_false(eng_dtype_supported(eng_gguf_tensor_at(g, 0)->dtype));
    eng_gguf_close(g);
    free(m.p);
}

static void test_gguf_file_errors(void **state)
{
    (void)state;
    eng_gguf *g = NULL;
    char err[256];
    assert_int_equal(eng_gguf_open("/nonexistent.gguf", &g, err, sizeof err), BI_IO);
    assert_non_null(strstr(err, "/nonexistent.gguf"));
    assert_int_equal(eng_gguf_open("/tmp", &g, err, sizeof err), BI_IO);
    img m = {0};
    const char *path = img_to_file(&m, ".gguf"); /* empty file */
    assert_non_null(path);
    assert_int_equal(eng_gguf_open(path, &g, err, sizeof err), BI_BAD_FORMAT);
    unlink(path);
    m = valid_image();
    path = img_to_file(&m, ".gguf");
    assert_int_equal(eng_gguf_open(path, &g, err, sizeof err), BI_OK);
    assert_int_equal(eng_gguf_n_tensors(g), 2);
    eng_gguf_close(g);
    unlink(path);
    free(m.p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gguf_reads_valid), cmocka_unit_test(test_gguf_truncated_anywhere),
        cmocka_unit_test(test_gguf_bad_header),  cmocka_unit_test(test_gguf_bad_metadata),
        cmocka_unit_test(test_gguf_bad_tensors), cmocka_unit_test(test_gguf_file_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
