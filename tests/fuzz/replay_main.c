/*
 * replay_main.c - runs a libFuzzer target without libFuzzer: every file of
 * the given corpus directories (or files), then N deterministic mutations of
 * them (bit flips, random bytes, boundary integers, cut, duplicated and
 * deleted ranges). Used as a ctest test so that compilers without libFuzzer
 * and the sanitizer tree exercise each target; a crash or sanitizer report
 * fails the test. Each input is passed in a buffer of exactly its size, so
 * ASan catches any read past the end.
 *
 *   replay_<target> [-n MUTATIONS] [-s SEED] PATH...
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct input {
    uint8_t *p;
    size_t n;
} input;

static input *inputs;
static size_t n_inputs, cap_inputs;

static void add_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return;
    input in = {NULL, 0};
    size_t cap = 0;
    int c;
    while ((c = fgetc(f)) != EOF) {
        if (in.n == cap) {
            cap = cap ? cap * 2 : 4096;
            in.p = realloc(in.p, cap);
        }
        in.p[in.n++] = (uint8_t)c;
    }
    fclose(f);
    if (n_inputs == cap_inputs) {
        cap_inputs = cap_inputs ? cap_inputs * 2 : 64;
        inputs = realloc(inputs, cap_inputs * sizeof *inputs);
    }
    inputs[n_inputs++] = in;
}

static void add_path(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "replay: %s: not found\n", path);
        exit(2);
    }
    if (!S_ISDIR(st.st_mode)) {
        add_file(path);
        return;
    }
    DIR *d = opendir(path);
    struct dirent *e;
    char **names = NULL;
    size_t n = 0;
    while (d && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        names = realloc(names, (n + 1) * sizeof *names);
        names[n++] = strdup(e->d_name);
    }
    if (d)
        closedir(d);
    /* sorted, so that the mutations are the same on every machine */
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            if (strcmp(names[j], names[i]) < 0) {
                char *t = names[i];
                names[i] = names[j];
                names[j] = t;
            }
    for (size_t i = 0; i < n; i++) {
        char full[4096];
        snprintf(full, sizeof full, "%s/%s", path, names[i]);
        add_file(full);
        free(names[i]);
    }
    free(names);
}

static uint64_t rng_state;

static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* One mutation of buf[0..*n) (capacity cap). */
static void mutate(uint8_t *buf, size_t *n, size_t cap)
{
    static const uint64_t interesting[] = {
        0,          1,          0x7F,       0x80,      0xFF,       0x7FFF, 0xFFFF, 0x7FFFFFFF,
        0xFFFFFFFF, 1ull << 32, 1ull << 40, INT64_MAX, UINT64_MAX, 32,     4,      5};
    size_t len = *n;
    switch (rnd() % 7) {
    case 0: /* flip a bit */
        if (len)
            buf[rnd() % len] ^= (uint8_t)(1u << (rnd() % 8));
        break;
    case 1: /* random byte */
        if (len)
            buf[rnd() % len] = (uint8_t)rnd();
        break;
    case 2: /* boundary integer, 1/2/4/8 bytes */
    {
        uint64_t v = interesting[rnd() % (sizeof interesting / sizeof interesting[0])];
        size_t w = (size_t)1 << (rnd() % 4);
        if (len >= w) {
            size_t at = rnd() % (len - w + 1);
            memcpy(buf + at, &v, w);
        }
        break;
    }
    case 3: /* truncate */
        if (len)
            *n = rnd() % len;
        break;
    case 4: /* delete a range */
        if (len > 1) {
            size_t at = rnd() % len, k = 1 + rnd() % (len - at);
            memmove(buf + at, buf + at + k, len - at - k);
            *n = len - k;
        }
        break;
    case 5: /* duplicate a range */
        if (len) {
            size_t at = rnd() % len, k = 1 + rnd() % (len - at < 64 ? len - at : 64);
            if (len + k <= cap) {
                memmove(buf + at + k, buf + at, len - at);
                *n = len + k;
            }
        }
        break;
    default: /* small decimal digit edit (JSON numbers) */
        if (len)
            buf[rnd() % len] = (uint8_t)('0' + rnd() % 10);
        break;
    }
}

int main(int argc, char **argv)
{
    long mutations = 0;
    rng_state = 0x9E3779B97F4A7C15ull;
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i += 2) {
        if (i + 1 >= argc)
            break;
        if (!strcmp(argv[i], "-n"))
            mutations = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "-s"))
            rng_state = strtoull(argv[i + 1], NULL, 0) | 1;
    }
    for (; i < argc; i++)
        add_path(argv[i]);
    if (n_inputs == 0) {
        fprintf(stderr, "replay: no inputs (usage: %s [-n N] [-s SEED] PATH...)\n", argv[0]);
        return 2;
    }
    for (size_t k = 0; k < n_inputs; k++) {
        uint8_t *copy = malloc(inputs[k].n ? inputs[k].n : 1);
        memcpy(copy, inputs[k].p, inputs[k].n);
        LLVMFuzzerTestOneInput(copy, inputs[k].n);
        free(copy);
    }
    for (long m = 0; m < mutations; m++) {
        const input *src = &inputs[(size_t)m % n_inputs];
        size_t cap = src->n * 2 + 64, n = src->n;
        uint8_t *buf = malloc(cap);
        memcpy(buf, src->p, n);
        int k = 1 + (int)(rnd() % 4);
        while (k--)
            mutate(buf, &n, cap);
        uint8_t *exact = malloc(n ? n : 1);
        memcpy(exact, buf, n);
        LLVMFuzzerTestOneInput(exact, n);
        free(exact);
        free(buf);
    }
    printf("replay: %zu corpus inputs and %ld mutations ran without a crash\n", n_inputs,
           mutations);
    for (size_t k = 0; k < n_inputs; k++)
        free(inputs[k].p);
    free(inputs);
    return 0;
}
