/* tests/test_crashsafe.c - saves that fail or are killed never cost the previous file (issue 16.4).
 *
 * What is checked, on tg_st_save (every checkpoint, optimizer state and conformance output is written
 * by it: a temporary in the same directory, fsync, rename, fsync of the directory):
 *   - SIGKILL at random moments of a process that saves over and over (60 kills, spread over the whole
 *     save: before, during and after the write, the fsync and the rename): the file then always loads
 *     and is one whole generation, its metadata and all its data from the same save, never a mix or a
 *     torn file; the kills land in different generations (the test fails if the saving never
 *     progressed, so it cannot pass by killing an idle process);
 *   - a write that fails half way (a file-size limit, RLIMIT_FSIZE: the kernel's EFBIG as on a full
 *     disk) reports "write failed", leaves the previous file loadable with its old contents and leaves
 *     no temporary behind. /dev/full itself is in tests/test_safetensors.c;
 *   - the temporary a killed save leaves is removed by the next save into the same file (issue 18.7;
 *     which names count as ours is in tests/test_safetensors.c).
 * Each test works in its own temporary directory. */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <tapegrad/tapegrad.h>

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"

static char g_path[128];

static void quiet(const char *message, void *user) { (void)message; (void)user; }

static void setup(void) {
    tg_set_error_handler(quiet, NULL);
    th_dir_make();
    snprintf(g_path, sizeof g_path, "%s/m.safetensors", th_dir());
}

/* Files in the directory whose name contains `part`, removed when `remove` is set. */
static int count_files(const char *part, bool remove) {
    DIR *d = opendir(th_dir());
    if (!d) return -1;
    int n = 0;
    char p[400];
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.' || !strstr(e->d_name, part)) continue;
        n++;
        snprintf(p, sizeof p, "%s/%s", th_dir(), e->d_name);
        if (remove) unlink(p);
    }
    closedir(d);
    return n;
}

TestSuite(crashsafe, .init = setup, .fini = th_dir_remove);

enum { NUMEL = 1 << 18 }; /* 1 MiB of F32: a save takes long enough to be killed inside it */

/* Generation g: metadata gen=g and every element of the tensor equal to g. 0 or -1. */
static int save_generation(long g) {
    tg_tensor *t = tg_full(TG_F32, 1, (int64_t[]){NUMEL}, (double)g);
    if (!t) return -1;
    char v[32];
    snprintf(v, sizeof v, "%ld", g);
    const char *names[] = {"w"}, *meta[] = {"gen", v};
    int rc = tg_st_save(g_path, 1, names, &t, 1, meta);
    tg_release(t);
    return rc;
}

/* The file's generation, or -1 if it does not load or mixes generations. */
static long load_generation(void) {
    tg_st_file *f = tg_st_load(g_path);
    if (!f) return -1;
    long g = -1;
    const char *v = tg_st_meta(f, "gen");
    tg_tensor *t = tg_st_get(f, "w");
    if (v && t && tg_numel(t) == NUMEL && tg_dtype_of(t) == TG_F32) {
        g = atol(v);
        const float *p = tg_data(t);
        for (int64_t k = 0; k < NUMEL; k++)
            if (p[k] != (float)g) { g = -1; break; }
    }
    tg_st_free(f);
    tg_clear_error();
    return g;
}

Test(crashsafe, sigkill_during_saves_leaves_one_whole_generation) {
    cr_assert_eq(save_generation(0), 0);
    srand(16);
    long last = 0, distinct = 0;
    const int kills = 60;
    for (int k = 0; k < kills; k++) {
        pid_t pid = fork();
        cr_assert(pid >= 0);
        if (pid == 0) {
            /* saves generations last+1, last+2, ... until killed */
            for (long g = last + 1;; g++)
                if (save_generation(g)) _exit(3);
        }
        struct timespec ts = {0, (long)(rand() % 40000) * 1000}; /* 0 .. 40 ms */
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        int status;
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "the saving process ended by itself (status %d)",
                  status);
        long g = load_generation();
        cr_assert(g >= last, "kill %d: the file is torn or mixed (generation %ld, last seen %ld): %s", k, g, last,
                  tg_last_error());
        if (g != last) distinct++;
        last = g;
        count_files(".tmp.", true); /* what a killed save leaves: a temporary, never the file */
    }
    cr_log_info("%d kills, the file moved to a new generation %ld times, always whole", kills, distinct);
    printf("crashsafe: %d SIGKILLs during saves, file always one whole generation (%ld changes, reached %ld)\n",
           kills, distinct, last);
    cr_expect(distinct >= 5, "the saves rarely progressed (%ld of %d): the kills did not test saving", distinct,
              kills);
}

Test(crashsafe, write_failure_keeps_the_previous_file) {
    cr_assert_eq(save_generation(7), 0);
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        signal(SIGXFSZ, SIG_IGN); /* write() then fails with EFBIG instead of killing */
        struct rlimit rl = {64 << 10, 64 << 10};
        if (setrlimit(RLIMIT_FSIZE, &rl)) _exit(4);
        int rc = save_generation(8);
        const char *m = tg_last_error();
        if (write(fds[1], m, strlen(m)) < 0) _exit(5);
        _exit(rc == -1 ? 0 : 6);
    }
    close(fds[1]);
    char msg[512] = "";
    ssize_t n = read(fds[0], msg, sizeof msg - 1);
    close(fds[0]);
    msg[n > 0 ? n : 0] = 0;
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the save under a 64 KiB file limit did not fail (status %d)",
              status);
    cr_expect(strstr(msg, "write failed") && strstr(msg, g_path), "%s", msg);
    cr_expect_eq(load_generation(), 7, "the previous file was not kept whole");
    cr_expect_eq(count_files(".tmp.", false), 0, "a temporary file was left behind");
}

Test(crashsafe, the_next_save_removes_what_a_killed_save_left) {
    cr_assert_eq(save_generation(0), 0);
    srand(18);
    int left = 0, k;
    for (k = 0; k < 300 && left < 4; k++) {
        pid_t pid = fork();
        cr_assert(pid >= 0);
        if (pid == 0) {
            for (long g = 1;; g++)
                if (save_generation(g)) _exit(3);
        }
        struct timespec ts = {0, (long)(rand() % 20000) * 1000}; /* 0 .. 20 ms */
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        int status;
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        int n = count_files(".tmp.", false);
        if (n == 0) continue; /* killed outside the write */
        left++;
        cr_assert_eq(save_generation(1000 + k), 0, "%s", tg_last_error());
        cr_expect_eq(count_files(".tmp.", false), 0, "kill %d: %d temporaries were still there after the next save", k, n);
        cr_expect_eq(load_generation(), 1000 + k);
    }
    printf("crashsafe: %d of %d kills left a temporary; the next save removed it each time\n", left, k);
    cr_expect(left >= 2, "only %d of %d kills left a temporary: the test did not test the clean-up", left, k);
}
