/*
 * test_safetensors.c - the safetensors reader and sharded sets on images
 * built here: a valid file read back, then hostile headers (lengths past the
 * file, offsets outside the data, sizes that disagree with the shape,
 * unknown dtypes, too many dims, duplicates, bad JSON) and bad index files.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "images.h"
#include "model/safetensors.h"

static const float DATA[6] = {1, 2, 3, 4, 5, 6};

static void test_safetensors_reads_valid(void **state)
{
    (void)state;
    img m = {0};
    st_image(&m,
             "{\"__metadata__\":{\"format\":\"pt\"},"
             "\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
             "\"b\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[16,24]},"
             "\"s\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[16,24]}}",
             DATA, sizeof DATA);
    eng_st *st = NULL;
    char err[256] = "";
    assert_int_equal(eng_st_open_memory(m.p, m.n, &st, err, sizeof err), BI_OK);
    assert_int_equal(eng_st_n_tensors(st), 3);
    const eng_st_tensor *a = eng_st_tensor_find(st, "a");
    assert_non_null(a);
    assert_int_equal(a->dtype, ENG_DTYPE_F32);
    assert_int_equal(a->n_dims, 2);
    assert_int_equal(a->shape[1], 2);
    assert_int_equal(a->nbytes, 16);
    assert_memory_equal(a->data, DATA, 16);
    const eng_st_tensor *s = eng_st_tensor_find(st, "s");
    assert_int_equal(s->dtype, ENG_DTYPE_INVALID);
    assert_string_equal(s->dtype_name, "I64");
    assert_int_equal(s->n_dims, 0);
    assert_null(eng_st_tensor_find(st, "__metadata__"));
    eng_st_close(st);
    free(m.p);
}

static void expect(const char *json, size_t data_size, bi_status want, const char *msg)
{
    img m = {0};
    st_image(&m, json, DATA, data_size);
    eng_st *st = NULL;
    char err[256] = "";
    bi_status s = eng_st_open_memory(m.p, m.n, &st, err, sizeof err);
    if (s != want || !strstr(err, msg))
        fail_msg("%s: status %d (want %d), message '%s' (want '%s')", json, s, want, err, msg);
    assert_null(st);
    free(m.p);
}

#define T(body) "{\"t\":" body "}"

static void test_safetensors_hostile_headers(void **state)
{
    (void)state;
    expect(T("{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,20]}"), 16, BI_BAD_FORMAT,
           "not inside the data area");
    expect(T("{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,4]}"), 16, BI_BAD_FORMAT,
           "not inside");
    expect(T("{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,16]}"), 16, BI_BAD_FORMAT,
           "need 12");
    expect(T("{\"dtype\":\"F32\",\"shape\":[1099511627776,1099511627776],\"data_offsets\":[0,"
             "16]}"),
           16, BI_BAD_FORMAT, "overflows");
    expect(T("{\"dtype\":\"F32\",\"shape\":[1099511627776],\"data_offsets\":[0,16]}"), 16,
           BI_BAD_FORMAT, "need 4398046511104");
    expect(T("{\"dtype\":\"F32\",\"shape\":[-4],\"data_offsets\":[0,16]}"), 16, BI_BAD_FORMAT,
           "non-negative integer");
    expect(T("{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,16]}"), 16, BI_BAD_FORMAT,
           "non-negative integer");
    expect(T("{\"dtype\":\"F32\",\"shape\":[1,1,1,1,4],\"data_offsets\":[0,16]}"), 16,
           BI_BAD_FORMAT, "5 dimensions");
    expect(T("{\"dtype\":\"Q4\",\"shape\":[4],\"data_offsets\":[0,16]}"), 16, BI_BAD_FORMAT,
           "unknown dtype 'Q4'");
    expect(T("{\"dtype\":\"F32\",\"shape\":[4]}"), 16, BI_BAD_FORMAT, "lacks");
    expect(T("{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0]}"), 16, BI_BAD_FORMAT, "lacks");
    expect(T("[1,2]"), 16, BI_BAD_FORMAT, "lacks");
    expect("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
           "\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
           16, BI_BAD_FORMAT, "duplicate tensor 't'");
    expect("{\"t\xff\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 16,
           BI_BAD_FORMAT, "UTF-8");
    expect("{\"t\":", 16, BI_BAD_FORMAT, "not a JSON object");
    expect("[]", 16, BI_BAD_FORMAT, "not a JSON object");
    expect("{} xx", 16, BI_BAD_FORMAT, "trailing");

    char err[256];
    eng_st *st = NULL;
    uint8_t small[12] = {200, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' '};
    assert_int_equal(eng_st_open_memory(small, sizeof small, &st, err, sizeof err), BI_BAD_FORMAT);
    assert_non_null(strstr(err, "header length 200"));
    uint8_t lie[12] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, '{', '}', ' ', ' '};
    assert_int_equal(eng_st_open_memory(lie, sizeof lie, &st, err, sizeof err), BI_BAD_FORMAT);
    assert_int_equal(eng_st_open_memory(lie, 5, &st, err, sizeof err), BI_BAD_FORMAT);
    assert_non_null(strstr(err, "too short"));
}

static void write_file(const char *dir, const char *name, const void *p, size_t n)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    fclose(f);
}

static void write_st(const char *dir, const char *name, const char *json)
{
    img m = {0};
    st_image(&m, json, DATA, sizeof DATA);
    write_file(dir, name, m.p, m.n);
    free(m.p);
}

static void test_safetensors_sharded_set(void **state)
{
    (void)state;
    char dir[] = "/tmp/braid_st_set_XXXXXX";
    assert_non_null(mkdtemp(dir));
    write_st(dir, "s-1.safetensors",
             "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}");
    write_st(dir, "s-2.safetensors",
             "{\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}");
    const char *idx = "{\"metadata\":{},\"weight_map\":{\"a\":\"s-1.safetensors\","
                      "\"b\":\"s-2.safetensors\"}}";
    write_file(dir, "model.safetensors.index.json", idx, strlen(idx));
    eng_st_set *set = NULL;
    char err[256] = "";
    assert_int_equal(eng_st_set_open(dir, &set, err, sizeof err), BI_OK);
    assert_int_equal(eng_st_set_n_files(set), 2);
    const eng_st_tensor *b = eng_st_set_find(set, "b");
    assert_non_null(b);
    assert_true(*(const float *)b->data == 3.0f);
    assert_null(eng_st_set_find(set, "c"));
    eng_st_set_close(set);

    /* the index points a tensor at the wrong shard */
    idx = "{\"weight_map\":{\"a\":\"s-2.safetensors\",\"b\":\"s-2.safetensors\"}}";
    write_file(dir, "model.safetensors.index.json", idx, strlen(idx));
    assert_int_equal(eng_st_set_open(dir, &set, err, sizeof err), BI_BAD_FORMAT);
    assert_non_null(strstr(err, "'a' is not in s-2.safetensors"));
    /* a shard outside the directory */
    idx = "{\"weight_map\":{\"a\":\"../etc/passwd\"}}";
    write_file(dir, "model.safetensors.index.json", idx, strlen(idx));
    assert_int_equal(eng_st_set_open(dir, &set, err, sizeof err), BI_BAD_FORMAT);
    assert_non_null(strstr(err, "plain file"));
    /* a missing shard */
    idx = "{\"weight_map\":{\"a\":\"s-3.safetensors\"}}";
    write_file(dir, "model.safetensors.index.json", idx, strlen(idx));
    assert_int_equal(eng_st_set_open(dir, &set, err, sizeof err), BI_IO);
    assert_non_null(strstr(err, "s-3.safetensors"));
    /* the same tensor in two shards */
    write_st(dir, "s-3.safetensors",
             "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}");
    idx = "{\"weight_map\":{\"a\":\"s-1.safetensors\",\"x\":\"s-3.safetensors\"}}";
    write_file(dir, "model.safetensors.index.json", idx, strlen(idx));
    assert_int_equal(eng_st_set_open(dir, &set, err, sizeof err), BI_BAD_FORMAT);
    assert_non_null(strstr(err, "two shards"));
    idx = "{\"weight_map\":[]}";
    write_file(dir, "model.safetensors.index.json", idx, strlen(idx));
    assert_int_equal(eng_st_set_open(dir, &set, err, sizeof err), BI_BAD_FORMAT);
    idx = "not json";
    write_file(dir, "model.safetensors.index.json", idx, strlen(idx));
    assert_int_equal(eng_st_set_open(dir, &set, err, sizeof err), BI_BAD_FORMAT);
    assert_non_null(strstr(err, "not a JSON object"));

    const char *names[] = {"s-1.safetensors", "s-2.safetensors", "s-3.safetensors",
                           "model.safetensors.index.json"};
    for (int i = 0; i < 4; i++) {
        char p[512];
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        unlink(p);
    }
    /* no index and no model.safetensors */
    assert_int_equal(eng_st_set_open(dir, &set, err, sizeof err), BI_IO);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_safetensors_reads_valid),
        cmocka_unit_test(test_safetensors_hostile_headers),
        cmocka_unit_test(test_safetensors_sharded_set),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
