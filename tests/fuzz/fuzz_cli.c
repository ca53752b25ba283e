/* tests/fuzz/fuzz_cli.c - libFuzzer target for the tapegrad command's argument parsing (tools/cli.c):
 * the input, split at NUL bytes, is argv[1..] for cli_parse over a table with an option of every kind
 * (flag, integer with a range, real with a range, string), which also parses --max-memory
 * (tg_mem_parse); and every argument goes through cli_split_list and tg_mem_parse on its own.
 * Seeds: tests/fuzz/corpus/cli; dictionary tests/fuzz/cli.dict.
 *
 * Beyond fuzz.h: cli_parse returns 0, 1 (--help) or 2 (a usage error), and on 0 every parsed value is
 * within its option's range; cli_split_list returns at most max entries, none empty; a parsed size is
 * finite and >= 0. The usage messages are many: scripts/fuzz.sh runs this target with -close_fd_mask=3. */
#include "fuzz.h"
#include "tools/cli.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 4096) return 0;
    long live = fz_begin();
    char *buf = malloc(size + 1);
    char **argv = malloc((size + 3) * sizeof *argv); /* "fuzz", size + 1 pieces at most, NULL */
    if (!buf || !argv) abort();
    memcpy(buf, data, size);
    buf[size] = 0;
    int argc = 0;
    argv[argc++] = "fuzz";
    for (size_t k = 0; k <= size;) {
        argv[argc++] = buf + k;
        k += strlen(buf + k) + 1;
    }
    argv[argc] = NULL;

    bool flag = false;
    long steps = 10, seed = -1;
    double lr = 0.01, clip = 0;
    const char *cell = "lstm";
    const cli_opt opts[] = {
        {"--flag", CLI_FLAG, &flag, 0, 0, "a flag"},
        {"--steps", CLI_INT, &steps, 1, 1e9, "an integer"},
        {"--seed", CLI_INT, &seed, -1, 9.2e18, "an integer, wide range"},
        {"--lr", CLI_REAL, &lr, 0, 10, "a real"},
        {"--clip", CLI_REAL, &clip, -1e300, 1e300, "a real, wide range"},
        {"--cell", CLI_STR, &cell, 0, 0, "a string"},
    };
    const cli_cmd cmd = {"fuzz", "[options]", "fuzzing cli_parse", opts, (int)(sizeof opts / sizeof *opts),
                         size & 1};
    cli_max_memory = 0;
    int rc = cli_parse(&cmd, argc, argv);
    FZ_CHECK(rc == 0 || rc == 1 || rc == TG_EXIT_USAGE);
    if (rc == 0) {
        FZ_CHECK(steps >= 1 && steps <= 1000000000L);
        FZ_CHECK(seed >= -1);
        FZ_CHECK(lr >= 0 && lr <= 10 && isfinite(clip));
        FZ_CHECK(cell && cell[0]);
        FZ_CHECK(cli_max_memory >= 0 && isfinite(cli_max_memory));
    }
    for (int i = 1; i < argc; i++) {
        const char *list[8];
        int n = cli_split_list(argv[i], list, 8);
        FZ_CHECK(n >= 0 && n <= 8);
        for (int k = 0; k < n; k++) FZ_CHECK(list[k][0] != 0);
        double bytes = -1;
        if (tg_mem_parse(argv[i], &bytes) == 0) FZ_CHECK(bytes >= 0 && isfinite(bytes));
    }
    free(argv);
    free(buf);
    fz_end(live);
    return 0;
}
