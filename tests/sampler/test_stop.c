/* test_stop.c - eng_stop_matcher: stops split across pieces, overlapping and
 * multiple stops, UTF-8, minimal hold-back, bad input, and random splits
 * checked against a strstr-based reference. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "sampler/sampler.h"

/* ---- helpers ------------------------------------------------------------ */

static eng_stop_matcher *make(const char *const *stops, size_t n)
{
    eng_stop_matcher *m = NULL;
    assert_int_equal(eng_stop_matcher_create(stops, n, &m), BI_OK);
    assert_non_null(m);
    return m;
}

/* Feeds one piece and returns what it emitted as a NUL-terminated string in
 * out (capacity 256). */
static bool feed(eng_stop_matcher *m, const char *piece, char *out)
{
    size_t n;
    bool stopped;
    assert_int_equal(eng_stop_matcher_feed(m, piece, strlen(piece), out, 255, &n, &stopped), BI_OK);
    out[n] = '\0';
    return stopped;
}

/* Feeds one piece and checks what it emitted and whether it stopped. */
static void expect_feed(eng_stop_matcher *m, const char *piece, bool want_stop,
                        const char *want_out)
{
    char out[256];
    assert_int_equal(feed(m, piece, out), want_stop);
    assert_string_equal(out, want_out);
}

/* Feeds pieces in order and returns everything emitted, flush included
 * unless a stop fired. */
static bool run_pieces(const char *const *stops, size_t n_stops, const char *const *pieces,
                       size_t n_pieces, char *all)
{
    eng_stop_matcher *m = make(stops, n_stops);
    char out[256];
    bool stopped = false;
    all[0] = '\0';
    for (size_t i = 0; i < n_pieces; i++) {
        stopped = feed(m, pieces[i], out);
        strcat(all, out);
        if (stopped)
            break;
    }
    if (!stopped) {
        size_t n;
        assert_int_equal(eng_stop_matcher_flush(m, out, 255, &n), BI_OK);
        out[n] = '\0';
        strcat(all, out);
    }
    eng_stop_matcher_destroy(m);
    return stopped;
}

/* Runs pieces through a fresh matcher and checks the outcome. */
static void expect_run(const char *const *stops, size_t n_stops, const char *const *pieces,
                       size_t n_pieces, bool want_stop, const char *want_text)
{
    char all[256];
    assert_int_equal(run_pieces(stops, n_stops, pieces, n_pieces, all), want_stop);
    assert_string_equal(all, want_text);
}

/* ---- fixed cases -------------------------------------------------------- */

static void test_stop_whole_and_split(void **state)
{
    (void)state;
    const char *stops[] = {"STOP"};
    const char *one[] = {"hello STOP world"};
    expect_run(stops, 1, one, 1, true, "hello ");
    const char *split[] = {"hel", "lo S", "T", "O", "P more"};
    expect_run(stops, 1, split, 5, true, "hello ");
    const char *none[] = {"no st", "op here S", "TO"};
    expect_run(stops, 1, none, 3, false, "no stop here STO");
}

static void test_stop_holds_back_minimal_tail(void **state)
{
    (void)state;
    const char *stops[] = {"abc", "xyz"};
    eng_stop_matcher *m = make(stops, 2);
    char out[256];
    expect_feed(m, "1ab", false, "1"); /* "ab" could become "abc" */
    expect_feed(m, "d", false, "abd");
    expect_feed(m, "qa", false, "q");
    expect_feed(m, "", false, "");
    expect_feed(m, "x", false, "a"); /* "ax": only "x" can still start a stop */
    expect_feed(m, "y", false, "");
    expect_feed(m, "z tail", true, "");
    /* after the stop nothing more comes out */
    expect_feed(m, "more", true, "");
    size_t n = 7;
    assert_int_equal(eng_stop_matcher_flush(m, out, 255, &n), BI_OK);
    assert_int_equal(n, 0);
    eng_stop_matcher_destroy(m);
}

static void test_stop_overlapping_candidates(void **state)
{
    (void)state;
    /* both end at the same byte: the one that starts earlier wins */
    const char *s1[] = {"b", "ab"};
    const char *t1[] = {"aab"};
    expect_run(s1, 2, t1, 1, true, "a");
    const char *t1s[] = {"a", "a", "b"};
    expect_run(s1, 2, t1s, 3, true, "a");
    /* the first to complete wins even though a longer one started earlier */
    const char *s2[] = {"abc", "b"};
    const char *t2[] = {"xa", "bc"};
    expect_run(s2, 2, t2, 2, true, "xa");
    /* a self-overlapping stop: "aab" inside "aaab" */
    const char *s3[] = {"aab"};
    const char *t3[] = {"a", "a", "a", "b!"};
    expect_run(s3, 1, t3, 4, true, "a");
}

static void test_stop_multiple_stops(void **state)
{
    (void)state;
    const char *stops[] = {"world", "lo", "</s>"};
    const char *t[] = {"hel", "lo world</s>"};
    expect_run(stops, 3, t, 2, true, "hel");
    const char *t2[] = {"say </", "s> world"};
    expect_run(stops, 3, t2, 2, true, "say ");
}

static void test_stop_utf8(void **state)
{
    (void)state;
    const char *stops[] = {"\xe3\x80\x82", "——"}; /* "。" and two em dashes */
    eng_stop_matcher *m = make(stops, 2);
    /* 你好 then the first byte of 。: the lead byte is held, whole chars pass */
    expect_feed(m, "\xe4\xbd\xa0\xe5\xa5\xbd\xe3", false, "\xe4\xbd\xa0\xe5\xa5\xbd");
    expect_feed(m, "\x80", false, "");
    expect_feed(m, "\x82\xe5\x86\x8d", true, "");
    eng_stop_matcher_destroy(m);

    const char *t[] = {"a\xe2\x80", "\x94", "b\xe2\x80\x94\xe2", "\x80\x94"};
    expect_run(stops, 2, t, 4, true,
               "a\xe2\x80\x94"
               "b");
}

static void test_stop_no_stops_pass_through(void **state)
{
    (void)state;
    const char *empty[] = {"", ""};
    const char *t[] = {"any", "thing"};
    expect_run(empty, 2, t, 2, false, "anything");
    expect_run(NULL, 0, t, 2, false, "anything");
    /* empty stops are skipped, the others still work */
    const char *mixed[] = {"", "th", ""};
    expect_run(mixed, 3, t, 2, true, "any");
}

static void test_stop_bad_input(void **state)
{
    (void)state;
    eng_stop_matcher *m = NULL;
    const char *with_null[] = {"a", NULL};
    assert_int_equal(eng_stop_matcher_create(with_null, 2, &m), BI_INVALID_ARGUMENT);
    assert_null(m);
    assert_int_equal(eng_stop_matcher_create(NULL, 1, &m), BI_INVALID_ARGUMENT);
    const char *stops[] = {"abcd"};
    assert_int_equal(eng_stop_matcher_create(stops, 1, NULL), BI_INVALID_ARGUMENT);
    m = make(stops, 1);
    char out[8];
    size_t n;
    bool stopped;
    assert_int_equal(eng_stop_matcher_feed(m, NULL, 3, out, 8, &n, &stopped), BI_INVALID_ARGUMENT);
    assert_int_equal(eng_stop_matcher_feed(m, "x", 1, out, 8, NULL, &stopped), BI_INVALID_ARGUMENT);
    assert_int_equal(eng_stop_matcher_feed(m, "x", 1, NULL, 8, &n, &stopped), BI_INVALID_ARGUMENT);
    /* too small an output buffer: refused, and nothing is lost */
    assert_int_equal(eng_stop_matcher_feed(m, "0123456ab", 9, out, 3, &n, &stopped),
                     BI_OUT_OF_RANGE);
    assert_int_equal(eng_stop_matcher_feed(m, "xyab", 4, out, 8, &n, &stopped), BI_OK);
    assert_int_equal(n, 2);
    assert_memory_equal(out, "xy", 2);
    assert_int_equal(eng_stop_matcher_flush(m, out, 1, &n), BI_OUT_OF_RANGE);
    assert_int_equal(eng_stop_matcher_flush(m, out, 2, &n), BI_OK);
    assert_int_equal(n, 2);
    assert_memory_equal(out, "ab", 2);
    eng_stop_matcher_destroy(m);
    eng_stop_matcher_destroy(NULL);

    for (long k = 0; k < 6; k++) {
        bi_alloc_fail_after(k);
        bi_status st = eng_stop_matcher_create(stops, 1, &m);
        bi_alloc_fail_after(-1);
        if (st == BI_OK) {
            eng_stop_matcher_destroy(m);
            continue;
        }
        assert_int_equal(st, BI_NOMEM);
    }
}

/* ---- random splits against a reference --------------------------------- */

/* Where the first stop to complete starts (ties: earliest start); -1 if none.
 * Each stop's first strstr hit is also its earliest end, since all its
 * occurrences have the same length. */
static long ref_stop(const char *text, const char *const *stops, size_t n)
{
    long best_start = -1, best_end = -1;
    for (size_t i = 0; i < n; i++) {
        const char *hit = strstr(text, stops[i]);
        if (!hit)
            continue;
        long start = hit - text, end = start + (long)strlen(stops[i]);
        if (best_end < 0 || end < best_end || (end == best_end && start < best_start)) {
            best_start = start;
            best_end = end;
        }
    }
    return best_start;
}

/* Longest suffix of text[0, len) that is a proper prefix of some stop. */
static size_t ref_hold(const char *text, size_t len, const char *const *stops, size_t n)
{
    size_t best = 0;
    for (size_t i = 0; i < n; i++) {
        size_t sl = strlen(stops[i]);
        for (size_t h = 1; h < sl && h <= len; h++)
            if (h > best && memcmp(text + len - h, stops[i], h) == 0)
                best = h;
    }
    return best;
}

static void random_text(char *text, size_t len)
{
    /* a small alphabet with a two-byte character makes stops frequent */
    static const char *alphabet[] = {"a", "b", "c", "\xc3\xa9"};
    text[0] = '\0';
    size_t used = 0;
    while (used + 2 < len) {
        const char *c = alphabet[rand() % 4];
        strcat(text, c);
        used += strlen(c);
    }
}

static void check_random_split(const char *text, const char *const *stops, size_t n_stops)
{
    size_t len = strlen(text);
    long want = ref_stop(text, stops, n_stops);
    eng_stop_matcher *m = make(stops, n_stops);
    char emitted[512], out[512];
    size_t n_emitted = 0, pos = 0;
    bool stopped = false;
    while (pos < len && !stopped) {
        size_t piece = (size_t)(rand() % 7); /* empty pieces too */
        if (piece > len - pos)
            piece = len - pos;
        size_t n;
        assert_int_equal(
            eng_stop_matcher_feed(m, text + pos, piece, out, sizeof(out), &n, &stopped), BI_OK);
        memcpy(emitted + n_emitted, out, n);
        n_emitted += n;
        pos += piece;
        /* never ahead of the reference, and holding back no more than needed */
        if (!stopped)
            assert_int_equal(n_emitted, pos - ref_hold(text, pos, stops, n_stops));
    }
    if (!stopped) {
        size_t n;
        assert_int_equal(eng_stop_matcher_flush(m, out, sizeof(out), &n), BI_OK);
        memcpy(emitted + n_emitted, out, n);
        n_emitted += n;
    }
    if (want >= 0) {
        assert_true(stopped);
        assert_int_equal(n_emitted, (size_t)want);
    } else {
        assert_false(stopped);
        assert_int_equal(n_emitted, len);
    }
    assert_memory_equal(emitted, text, n_emitted);
    eng_stop_matcher_destroy(m);
}

static void test_stop_random_splits_match_reference(void **state)
{
    (void)state;
    static const char *pool[] = {"abc",
                                 "ca",
                                 "bb",
                                 "cab",
                                 "b\xc3\xa9",
                                 "\xc3\xa9\xc3\xa9"
                                 "a",
                                 "aaaa",
                                 "abab",
                                 "c",
                                 "bcb"};
    srand(12345);
    char text[256];
    int stopped = 0;
    for (int trial = 0; trial < 3000; trial++) {
        const char *stops[3];
        size_t n = 1 + (size_t)(rand() % 3);
        for (size_t i = 0; i < n; i++)
            stops[i] = pool[rand() % 10];
        random_text(text, 10 + (size_t)(rand() % 60));
        check_random_split(text, stops, n);
        stopped += ref_stop(text, stops, n) >= 0;
    }
    /* the cases exercise both outcomes */
    assert_true(stopped > 300 && stopped < 2900);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stop_whole_and_split),
        cmocka_unit_test(test_stop_holds_back_minimal_tail),
        cmocka_unit_test(test_stop_overlapping_candidates),
        cmocka_unit_test(test_stop_multiple_stops),
        cmocka_unit_test(test_stop_utf8),
        cmocka_unit_test(test_stop_no_stops_pass_through),
        cmocka_unit_test(test_stop_bad_input),
        cmocka_unit_test(test_stop_random_splits_match_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
