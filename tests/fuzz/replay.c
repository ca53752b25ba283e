/* tests/fuzz/replay.c - a main() for the fuzz targets without libFuzzer: runs the target once on each
 * file named on the command line, or on every file of each directory named. Every build (gcc too)
 * makes a replay_<name> program per target and `meson test` runs it over the committed seeds and
 * regression inputs (tests/fuzz/corpus/<name>, tests/fuzz/regress/<name>), so each crash the fuzzer
 * found stays fixed, in the normal suites and under ASan/UBSan/valgrind in CI. */
#include "fuzz.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

static int run_file(const char *path) {
    FILE *fp = fopen(path, "rb");
    if (!fp) { fprintf(stderr, "replay: cannot open %s\n", path); return 1; }
    size_t cap = 1 << 16, n = 0;
    unsigned char *buf = malloc(cap);
    if (!buf) abort();
    for (size_t got; (got = fread(buf + n, 1, cap - n, fp)) > 0;) {
        n += got;
        if (n == cap) {
            unsigned char *b = realloc(buf, cap *= 2);
            if (!b) abort();
            buf = b;
        }
    }
    fclose(fp);
    /* an exact-size copy, so ASan sees a read past the input */
    unsigned char *in = malloc(n ? n : 1);
    if (!in) abort();
    memcpy(in, buf, n);
    free(buf);
    LLVMFuzzerTestOneInput(in, n);
    free(in);
    return 0;
}

int main(int argc, char **argv) {
    int files = 0, bad = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) { fprintf(stderr, "replay: no such file or directory: %s\n", argv[i]); bad++; continue; }
        if (!S_ISDIR(st.st_mode)) { bad += run_file(argv[i]); files++; continue; }
        DIR *d = opendir(argv[i]);
        if (!d) { bad++; continue; }
        for (struct dirent *e; (e = readdir(d));) {
            if (e->d_name[0] == '.') continue;
            char p[4096];
            snprintf(p, sizeof p, "%s/%s", argv[i], e->d_name);
            bad += run_file(p);
            files++;
        }
        closedir(d);
    }
    printf("replay: %d inputs, none broke the contract\n", files);
    return bad ? 1 : files ? 0 : 1;
}
