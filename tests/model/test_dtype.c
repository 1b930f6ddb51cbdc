/*
 * test_dtype.c - dtype sizes, fp16/bf16 conversions and dequantization,
 * compared bit for bit with the gguf Python package's output recorded in
 * tests/fixtures/quant_fixtures.bin (tests/fixtures/gen_quant_fixtures.py).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "../common/test_files.h"
#include "model/dtype.h"

static uint32_t u32_at(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static void test_dtype_sizes(void **state)
{
    (void)state;
    assert_int_equal(eng_dtype_type_size(ENG_DTYPE_Q8_0), 34);
    assert_int_equal(eng_dtype_block_size(ENG_DTYPE_Q4_K), 256);
    assert_int_equal(eng_dtype_type_size(ENG_DTYPE_Q4_K), 144);
    assert_int_equal(eng_dtype_type_size(ENG_DTYPE_Q6_K), 210);
    assert_int_equal(eng_dtype_type_size(ENG_DTYPE_Q5_0), 22);
    assert_int_equal(eng_dtype_type_size(ENG_DTYPE_BF16), 2);
    assert_string_equal(eng_dtype_name(ENG_DTYPE_Q4_1), "q4_1");
    /* Q5_K (13) is known (sized) but not supported */
    assert_false(eng_dtype_supported((eng_dtype)13));
    assert_true(eng_dtype_known((eng_dtype)13));
    assert_int_equal(eng_dtype_block_size((eng_dtype)13), 0);
    assert_false(eng_dtype_known((eng_dtype)4));
    assert_false(eng_dtype_known((eng_dtype)1000));
    assert_false(eng_dtype_known(ENG_DTYPE_INVALID));
    size_t n = 0;
    assert_int_equal(eng_dtype_nbytes(ENG_DTYPE_Q4_0, 64, &n), BI_OK);
    assert_int_equal(n, 36);
    assert_int_equal(eng_dtype_nbytes(ENG_DTYPE_Q4_0, 33, &n), BI_BAD_FORMAT);
    assert_int_equal(eng_dtype_nbytes(ENG_DTYPE_F32, UINT64_MAX / 2, &n), BI_OUT_OF_RANGE);
    assert_int_equal(eng_dtype_nbytes((eng_dtype)5, 32, &n), BI_UNSUPPORTED);
    float y[32];
    uint8_t blk[34] = {0};
    assert_int_equal(eng_dequant_f32(ENG_DTYPE_Q8_0, blk, 31, y), BI_BAD_FORMAT);
    assert_int_equal(eng_dequant_f32((eng_dtype)13, blk, 256, y), BI_UNSUPPORTED);
}

static void check_case(uint32_t type, uint32_t n, const uint8_t *raw, const float *want,
                       const float *src)
{
    float *got = calloc(n, sizeof *got);
    assert_int_equal(eng_dequant_f32((eng_dtype)type, raw, n, got), BI_OK);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t a, b;
        memcpy(&a, &got[i], 4);
        memcpy(&b, &want[i], 4);
        if (a != b)
            fail_msg("%s element %u: got %.9g (0x%08x), gguf says %.9g (0x%08x)",
                     eng_dtype_name((eng_dtype)type), i, got[i], a, want[i], b);
    }
    for (uint32_t i = 0; src && i < n; i++) {
        uint16_t h = type == ENG_DTYPE_F16 ? eng_f32_to_f16(src[i]) : eng_f32_to_bf16(src[i]);
        uint16_t ref;
        memcpy(&ref, raw + 2 * i, 2);
        if (h != ref)
            fail_msg("%s rounding of %.9g: got 0x%04x, reference 0x%04x",
                     eng_dtype_name((eng_dtype)type), src[i], h, ref);
    }
    free(got);
}

static void test_dtype_dequant_matches_gguf(void **state)
{
    (void)state;
    size_t size;
    uint8_t *f = (uint8_t *)test_slurp(BRAID_QUANT_FIXTURE, &size);
    assert_non_null(f);
    assert_true(size >= 12 && memcmp(f, "BQFX", 4) == 0);
    uint32_t n_cases = u32_at(f + 8), seen = 0;
    size_t pos = 12;
    for (uint32_t c = 0; c < n_cases; c++) {
        assert_true(pos + 16 <= size);
        uint32_t type = u32_at(f + pos), n = u32_at(f + pos + 4), nb = u32_at(f + pos + 8);
        uint32_t has_src = u32_at(f + pos + 12);
        pos += 16;
        size_t need = nb + (size_t)n * 4 * (has_src ? 2 : 1);
        assert_true(pos + need <= size);
        size_t expect_nb = 0;
        assert_int_equal(eng_dtype_nbytes((eng_dtype)type, n, &expect_nb), BI_OK);
        assert_int_equal(expect_nb, nb);
        float *want = malloc((size_t)n * 4), *src = has_src ? malloc((size_t)n * 4) : NULL;
        memcpy(want, f + pos + nb, (size_t)n * 4);
        if (src)
            memcpy(src, f + pos + nb + (size_t)n * 4, (size_t)n * 4);
        /* unaligned source: blocks inside files are byte-packed */
        uint8_t *raw = malloc(nb + 1);
        memcpy(raw + 1, f + pos, nb);
        check_case(type, n, raw + 1, want, src);
        free(raw);
        free(want);
        free(src);
        pos += need;
        seen |= 1u << (type < 31 ? type : 31);
    }
    assert_int_equal(pos, size);
    /* every supported type was covered */
    uint32_t all = (1u << 0) | (1u << 1) | (1u << 2) | (1u << 3) | (1u << 6) | (1u << 8) |
                   (1u << 12) | (1u << 14) | (1u << 30);
    assert_int_equal(seen & all, all);
    free(f);
}

static void test_dtype_half_roundtrip(void **state)
{
    (void)state;
    /* every fp16 value survives f16 -> f32 -> f16 (NaNs stay NaNs) */
    for (uint32_t h = 0; h < 65536; h++) {
        float f = eng_f16_to_f32((uint16_t)h);
        uint16_t back = eng_f32_to_f16(f);
        bool nan = (h & 0x7C00) == 0x7C00 && (h & 0x3FF);
        if (nan)
            assert_true(f != f);
        else
            assert_int_equal(back, h);
    }
    assert_int_equal(eng_f32_to_bf16(1.0f), 0x3F80);
    assert_true(eng_bf16_to_f32(0x3F80) == 1.0f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dtype_sizes),
        cmocka_unit_test(test_dtype_dequant_matches_gguf),
        cmocka_unit_test(test_dtype_half_roundtrip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
