#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include "helpers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int g_count;
static char g_first[512];

static void record(const char *msg, void *user) {
    (void)user;
    if (g_count++ == 0) snprintf(g_first, sizeof g_first, "%s", msg);
}
void th_record_errors(void) {
    tg_set_error_handler(record, NULL);
    th_reset_errors();
}
int th_error_count(void) { return g_count; }
const char *th_last_message(void) { return g_first; }
void th_reset_errors(void) {
    g_count = 0;
    g_first[0] = 0;
    tg_clear_error();
}
tg_tensor *th_rand(uint64_t seed, int ndim, const int64_t *shape, double lo, double hi) {
    tg_rng rng;
    tg_rng_seed(&rng, seed);
    return tg_rand_uniform(&rng, TG_F64, ndim, shape, lo, hi);
}

int th_child_stderr(void (*fn)(void), char *buf, size_t size) {
    int fd[2];
    buf[0] = 0;
    if (pipe(fd)) return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) { close(fd[0]); close(fd[1]); return -1; }
    if (pid == 0) {
        close(fd[0]);
        dup2(fd[1], STDERR_FILENO);
        tg_set_error_handler(NULL, NULL);
        fn();
        _exit(0);
    }
    close(fd[1]);
    size_t n = 0;
    ssize_t got;
    while (n + 1 < size && (got = read(fd[0], buf + n, size - 1 - n)) > 0) n += (size_t)got;
    buf[n] = 0;
    close(fd[0]);
    int status = 0;
    if (waitpid(pid, &status, 0) != pid) return -1;
    return WIFSIGNALED(status) ? WTERMSIG(status) : 0;
}
