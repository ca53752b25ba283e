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
 *     which names count as ours is in tests/test_safetensors.c);
 *   - a directory the saving process may not write: a checkpoint pair (model + optimizer file) saved
 *     over an older pair in it fails with a message naming the path and the reason, and the older pair
 *     stays byte for byte and loads; nothing else appears in the directory. Two ways of making it
 *     unwritable, each in a forked child: permissions (EACCES; as root, which writes anywhere, the child
 *     first drops to uid/gid 65534, otherwise the directory is chmod 0555) and a read-only bind mount in
 *     a private mount namespace (EROFS; skipped, saying so, where unshare or mount is refused). The
 *     checkpoint files themselves stay writable, so a save that wrote in place would go through;
 *   - /dev/full: the save reports the device and "No space left on device".
 * Each test works in its own temporary directory. */
#define _GNU_SOURCE /* unshare, setgroups */
#include <criterion/criterion.h>
#include <tapegrad/tapegrad.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
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

/* Microseconds of wall time one save takes now (on a loaded machine it is many times the idle time). */
static long save_micros(void) {
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    cr_assert_eq(save_generation(0), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (t1.tv_sec - t0.tv_sec) * 1000000L + (t1.tv_nsec - t0.tv_nsec) / 1000;
}

Test(crashsafe, sigkill_during_saves_leaves_one_whole_generation) {
    /* the kills spread over 0 .. 40 ms, or over 4 saves when a save takes longer than 10 ms (the load of
     * a shared machine): with a fixed 40 ms window a slow machine completed too few saves to test */
    long save_us = save_micros(), window_us = save_us > 10000 ? 4 * save_us : 40000;
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
        long us = rand() % window_us;
        struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
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
    printf("crashsafe: %d SIGKILLs during saves (one save %ld us, kills over 0..%ld us), file always one whole "
           "generation (%ld changes, reached %ld)\n", kills, save_us, window_us, distinct, last);
    cr_expect(distinct >= 5, "the saves rarely progressed (%ld of %d): the kills did not test saving", distinct,
              kills);
}

/* Forks a child that reports through a pipe: returns 0 in the child, *fd the pipe's write end; in the
 * parent the child's pid, *fd the read end. */
static pid_t fork_reporting(int *fd) {
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    close(fds[pid == 0 ? 0 : 1]);
    *fd = fds[pid == 0 ? 1 : 0];
    return pid;
}

Test(crashsafe, write_failure_keeps_the_previous_file) {
    cr_assert_eq(save_generation(7), 0);
    int fd;
    pid_t pid = fork_reporting(&fd);
    if (pid == 0) {
        signal(SIGXFSZ, SIG_IGN); /* write() then fails with EFBIG instead of killing */
        struct rlimit rl = {64 << 10, 64 << 10};
        if (setrlimit(RLIMIT_FSIZE, &rl)) _exit(4);
        int rc = save_generation(8);
        const char *m = tg_last_error();
        if (write(fd, m, strlen(m)) < 0) _exit(5);
        _exit(rc == -1 ? 0 : 6);
    }
    char msg[512] = "";
    ssize_t n = read(fd, msg, sizeof msg - 1);
    close(fd);
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

/* ---- a directory the saving process may not write ------------------------------------------------ */

/* Pair files of the checkpoint at path: FILE and FILE's optimizer file. */
static void optim_path(char *out, size_t size, const char *path) {
    snprintf(out, size, "%.*s.optim.safetensors", (int)(strlen(path) - strlen(".safetensors")), path);
}

/* The bytes of a file (malloc'd, *len), or NULL when it cannot be read. */
static unsigned char *file_bytes(const char *path, long *len) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    unsigned char *p = NULL;
    if (fseek(fp, 0, SEEK_END) == 0 && (*len = ftell(fp)) >= 0 && fseek(fp, 0, SEEK_SET) == 0 &&
        (p = malloc((size_t)*len + 1)) && fread(p, 1, (size_t)*len, fp) != (size_t)*len) {
        free(p);
        p = NULL;
    }
    fclose(fp);
    return p;
}

static bool same_bytes(const char *path, const unsigned char *want, long want_len) {
    long len = -1;
    unsigned char *got = file_bytes(path, &len);
    bool same = got && len == want_len && memcmp(got, want, (size_t)len) == 0;
    free(got);
    return same;
}

/* An LSTM model + Adam after one training step (so the optimizer file holds moments and a step count). */
static tg_model *trained_model(uint64_t seed, tg_optim **opt) {
    tg_model_config cfg = {.cell = "lstm", .input_size = 3, .hidden_size = 4, .output_size = 2, .layers = 1,
                           .dtype = TG_F64};
    char err[256];
    tg_model *m = tg_model_new(&cfg, seed, err, sizeof err);
    cr_assert_not_null(m, "%s", err);
    *opt = tg_optim_new_params(TG_OPTIM_ADAM, m->params, NULL);
    cr_assert_not_null(*opt);
    double xv[2 * 2 * 3], yv[2 * 2] = {0.5, -0.25, 0.125, 1};
    for (int i = 0; i < 12; i++) xv[i] = 0.1 * (double)(i % 5) - 0.2 + 0.01 * (double)seed;
    tg_tensor *x = tg_from_f64(TG_F64, 3, (int64_t[]){2, 2, 3}, xv), *y = tg_from_f64(TG_F64, 2, (int64_t[]){2, 2}, yv);
    tg_tensor *loss = tg_mse_loss(tg_model_forward(m, x, false, NULL, NULL), y, TG_REDUCE_MEAN);
    cr_assert(loss && tg_backward(loss) == 0 && tg_optim_step(*opt) == 0, "%s", tg_last_error());
    tg_tape_reset();
    tg_release(x);
    tg_release(y);
    return m;
}

typedef enum ro_kind { RO_PERMISSION, RO_MOUNT } ro_kind;

/* What the child reports through the pipe. */
typedef struct ro_report {
    int status;           /* 0: both saves attempted; 77: this kind cannot be set up here (why); 2: setup wrong */
    int rc_over, rc_first; /* tg_ckpt_save over the older pair, and a first save of a new name */
    char why[256];
    char msg_over[600], msg_first[600];
} ro_report;

static int write_id_map(const char *file, const char *line) {
    int fd = open(file, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = write(fd, line, strlen(line));
    close(fd);
    return n == (ssize_t)strlen(line) ? 0 : -1;
}

/* In the child: makes th_dir() unwritable for this process. 0, 77 (cannot be done here) or 2, with why. */
static int make_unwritable(ro_kind kind, char *why, size_t size) {
    const char *dir = th_dir();
    if (kind == RO_PERMISSION) {
        if (geteuid() == 0 && (setgroups(0, NULL) || setgid(65534) || setuid(65534))) {
            snprintf(why, size, "cannot drop root to uid 65534: %s", strerror(errno));
            return 77;
        }
    } else {
        uid_t uid = geteuid();
        gid_t gid = getegid();
        if (uid != 0) { /* a user namespace first: root in there may mount */
            char map[64];
            if (unshare(CLONE_NEWUSER | CLONE_NEWNS)) {
                snprintf(why, size, "unshare(CLONE_NEWUSER | CLONE_NEWNS) refused: %s", strerror(errno));
                return 77;
            }
            snprintf(map, sizeof map, "0 %u 1", (unsigned)uid);
            if (write_id_map("/proc/self/uid_map", map)) { snprintf(why, size, "uid_map: %s", strerror(errno)); return 77; }
            if (write_id_map("/proc/self/setgroups", "deny")) { snprintf(why, size, "setgroups: %s", strerror(errno)); return 77; }
            snprintf(map, sizeof map, "0 %u 1", (unsigned)gid);
            if (write_id_map("/proc/self/gid_map", map)) { snprintf(why, size, "gid_map: %s", strerror(errno)); return 77; }
        } else if (unshare(CLONE_NEWNS)) {
            snprintf(why, size, "unshare(CLONE_NEWNS) refused: %s", strerror(errno));
            return 77;
        }
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) || mount(dir, dir, NULL, MS_BIND, NULL) ||
            mount(NULL, dir, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL)) {
            snprintf(why, size, "read-only bind mount of %s refused: %s", dir, strerror(errno));
            return 77;
        }
    }
    /* the setup must really forbid writing the directory, and only the directory */
    if (access(dir, W_OK) == 0) { snprintf(why, size, "%s is still writable", dir); return 2; }
    if (access(g_path, kind == RO_PERMISSION ? R_OK | W_OK : R_OK) != 0) {
        snprintf(why, size, "%s should stay readable%s (%s)", g_path, kind == RO_PERMISSION ? " and writable" : "",
                 strerror(errno));
        return 2;
    }
    return 0;
}

/* Pair A saved in the test directory; pair B saved over it, and a first pair into "new.safetensors", by
 * a child for which the directory is unwritable (kind). Returns false when the kind was skipped here. */
static bool read_only_directory_case(ro_kind kind, int want_errno) {
    const char *kind_name = kind == RO_PERMISSION ? "permissions" : "read-only mount";
    tg_optim *opt_a, *opt_b;
    tg_model *a = trained_model(1, &opt_a), *b = trained_model(2, &opt_b);
    char err[600], op[160], fresh[160], fresh_op[160];
    optim_path(op, sizeof op, g_path);
    snprintf(fresh, sizeof fresh, "%s/new.safetensors", th_dir());
    optim_path(fresh_op, sizeof fresh_op, fresh);
    cr_assert_eq(tg_ckpt_save(g_path, a, opt_a, 1, NULL, 0, NULL, err, sizeof err), 0, "%s", err);
    long len_m = 0, len_o = 0;
    unsigned char *bytes_m = file_bytes(g_path, &len_m), *bytes_o = file_bytes(op, &len_o);
    cr_assert(bytes_m && bytes_o);
    /* the files writable by the child (a save that wrote into them in place would succeed), the
     * directory readable and searchable by it */
    cr_assert_eq(chmod(g_path, 0666), 0);
    cr_assert_eq(chmod(op, 0666), 0);
    bool as_root = geteuid() == 0;
    cr_assert_eq(chmod(th_dir(), kind == RO_PERMISSION && !as_root ? 0555 : 0755), 0);

    int fd;
    pid_t pid = fork_reporting(&fd);
    if (pid == 0) {
        static ro_report r;
        memset(&r, 0, sizeof r);
        r.status = make_unwritable(kind, r.why, sizeof r.why);
        if (r.status == 0) {
            r.rc_over = tg_ckpt_save(g_path, b, opt_b, 2, NULL, 0, NULL, r.msg_over, sizeof r.msg_over);
            r.rc_first = tg_ckpt_save(fresh, b, opt_b, 2, NULL, 0, NULL, r.msg_first, sizeof r.msg_first);
        }
        _exit(write(fd, &r, sizeof r) == (ssize_t)sizeof r ? 0 : 5);
    }
    ro_report r;
    ssize_t got = read(fd, &r, sizeof r);
    close(fd);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    chmod(th_dir(), 0755);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0 && got == (ssize_t)sizeof r,
              "%s: the saving child failed (status %d)", kind_name, status);
    bool ran = r.status != 77;
    if (!ran) {
        printf("crashsafe: read-only directory by %s skipped: %s\n", kind_name, r.why);
    } else {
        cr_assert_eq(r.status, 0, "%s: %s", kind_name, r.why);
        const char *reason = strerror(want_errno);
        cr_expect_eq(r.rc_over, -1, "%s: the save into an unwritable directory reported success", kind_name);
        cr_expect(strstr(r.msg_over, th_dir()) && strstr(r.msg_over, reason), "%s: message '%s' does not name the "
                  "path and '%s'", kind_name, r.msg_over, reason);
        cr_expect_eq(r.rc_first, -1, "%s: a first save into an unwritable directory reported success", kind_name);
        /* the optimizer file is written first: its name is the one in the message */
        cr_expect(strstr(r.msg_first, fresh_op) && strstr(r.msg_first, reason), "%s: message '%s' does not "
                  "name the path and '%s'", kind_name, r.msg_first, reason);
        /* the older pair: the same bytes, and it loads (model, optimizer state, step) */
        cr_expect(same_bytes(g_path, bytes_m, len_m), "%s: the model file changed", kind_name);
        cr_expect(same_bytes(op, bytes_o, len_o), "%s: the optimizer file changed", kind_name);
        tg_st_file *f = NULL;
        tg_model *back = tg_ckpt_load_model(g_path, &f, err, sizeof err);
        cr_assert_not_null(back, "%s: the older checkpoint no longer loads: %s", kind_name, err);
        tg_optim *opt = tg_optim_new_params(TG_OPTIM_ADAM, back->params, NULL);
        int64_t step = 0;
        tg_rng rng;
        cr_expect_eq(tg_ckpt_load_train_state(g_path, f, opt, &step, &rng, err, sizeof err), 0,
                     "%s: the older optimizer file no longer loads with it: %s", kind_name, err);
        cr_expect_eq(step, 1);
        for (int i = 0; i < tg_params_count(a->params); i++)
            cr_expect(th_max_diff(tg_params_at(back->params, i), tg_params_at(a->params, i)) == 0,
                      "%s: parameter %s is not the older checkpoint's", kind_name, tg_params_name_at(a->params, i));
        tg_optim_free(opt);
        tg_model_free(back);
        tg_st_free(f);
        /* nothing else in the directory: no temporary, no .prev, no half of the new pair */
        cr_expect_eq(count_files(".safetensors", false), 2, "%s: files were left in the directory", kind_name);
        cr_expect_eq(count_files(".tmp.", false), 0, "%s: a temporary was left", kind_name);
        cr_expect_eq(access(fresh, F_OK), -1, "%s: %s exists", kind_name, fresh);
        cr_expect_eq(access(fresh_op, F_OK), -1, "%s: %s exists", kind_name, fresh_op);
        printf("crashsafe: read-only directory by %s: the save refused with '%s'\n",
               kind_name, r.msg_over);
    }
    free(bytes_m);
    free(bytes_o);
    tg_optim_free(opt_a);
    tg_optim_free(opt_b);
    tg_model_free(a);
    tg_model_free(b);
    tg_tape_reset();
    return ran;
}

Test(crashsafe, unwritable_directory_by_permissions_keeps_the_previous_pair) {
    bool ran = read_only_directory_case(RO_PERMISSION, EACCES);
    /* as root the only way is the uid drop; a non-root run always has chmod */
    cr_expect(ran || geteuid() == 0, "the permission case was skipped without being root");
}

Test(crashsafe, read_only_mount_keeps_the_previous_pair) {
    read_only_directory_case(RO_MOUNT, EROFS);
}

Test(crashsafe, dev_full_reports_the_device_and_the_reason) {
    struct stat st;
    if (lstat("/dev/full", &st) != 0 || !S_ISCHR(st.st_mode)) {
        printf("crashsafe: no /dev/full here, skipped\n");
        return;
    }
    tg_tensor *t = tg_full(TG_F32, 1, (int64_t[]){NUMEL}, 1.0);
    const char *names[] = {"w"};
    cr_expect_eq(tg_st_save("/dev/full", 1, names, &t, 0, NULL), -1);
    const char *m = tg_last_error();
    cr_expect(strstr(m, "/dev/full") && strstr(m, "write failed") && strstr(m, strerror(ENOSPC)), "%s", m);
    tg_clear_error();
    tg_release(t);
    cr_assert_eq(lstat("/dev/full", &st), 0);
    cr_expect(S_ISCHR(st.st_mode), "/dev/full is no longer a device");
}
