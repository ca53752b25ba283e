/* tests/fuzz/fuzz_checkpoint.c - libFuzzer target for loading a checkpoint (train/model.c, what
 * `tapegrad train --resume`, sample, predict and summary do) and an optimizer state (optim/checkpoint.c,
 * tg_optim_load). Byte 0 picks what the rest is:
 *   even: a model file, loaded with tg_ckpt_load_model (metadata checked against the tensors before any
 *         model is built) and then its training state (step, rng) with tg_ckpt_load_train_state;
 *   odd:  an optimizer file, loaded by tg_optim_load into an optimizer of kind (byte0 >> 1) % kinds over
 *         a fixed model (lstm, input 2, hidden 3, output 1, F32: what `tapegrad train --task adding
 *         --hidden 3` builds, the model of the seeds).
 * The loaders take paths, so each input is written to a file in a private temporary directory first.
 * Seeds: tests/fuzz/corpus/checkpoint (made by scripts/fuzz.sh --seeds).
 *
 * Beyond fuzz.h: a refusal has a message, and after any load, accepted or refused, the optimizer is
 * whole: it saves its state and loads that file back. */
#include "fuzz.h"
#include <tapegrad/train.h>

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static char g_dir[64], g_path[96], g_opt_path[96];

static void write_file(const char *path, const uint8_t *data, size_t size) {
    FILE *fp = fopen(path, "wb");
    if (!fp) abort();
    if (size && fwrite(data, 1, size, fp) != size) abort();
    if (fclose(fp)) abort();
}

static void cleanup(void) {
    unlink(g_path);
    unlink(g_opt_path);
    rmdir(g_dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static tg_model *fixed;
    if (!g_dir[0]) {
        snprintf(g_dir, sizeof g_dir, "%s/tg_fuzz_ckpt_XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
        if (!mkdtemp(g_dir)) abort();
        snprintf(g_path, sizeof g_path, "%s/m.safetensors", g_dir);
        snprintf(g_opt_path, sizeof g_opt_path, "%s/m.optim.safetensors", g_dir);
        atexit(cleanup);
        char err[256];
        tg_model_config cfg = {.cell = "lstm", .input_size = 2, .hidden_size = 3, .output_size = 1, .layers = 1,
                            .dtype = TG_F32};
        fixed = tg_model_new(&cfg, 1, err, sizeof err);
        if (!fixed) abort();
    }
    if (size < 1) return 0;
    long live = fz_begin();
    char err[512] = "";
    if (!(data[0] & 1)) {
        write_file(g_path, data + 1, size - 1);
        unlink(g_opt_path);
        tg_st_file *f = NULL;
        tg_model *m = tg_ckpt_load_model(g_path, &f, err, sizeof err);
        if (m) {
            FZ_CHECK(f != NULL);
            int64_t step;
            tg_rng rng;
            if (tg_ckpt_load_train_state(g_path, f, NULL, &step, &rng, err, sizeof err)) fz_check_message(err);
            else FZ_CHECK(step >= 0);
            tg_model_free(m);
            tg_st_free(f);
        } else {
            FZ_CHECK(f == NULL);
            fz_check_message(err);
        }
    } else {
        tg_optim_kind kind = (tg_optim_kind)((data[0] >> 1) % TG_OPTIM_KIND_COUNT);
        tg_optim *opt = tg_optim_new_params(kind, fixed->params, NULL);
        FZ_CHECK(opt != NULL);
        write_file(g_opt_path, data + 1, size - 1);
        if (tg_optim_load(opt, NULL, g_opt_path)) {
            FZ_CHECK(tg_error_pending());
            fz_check_message(tg_last_error());
            tg_clear_error();
        }
        /* whatever happened, the optimizer is whole: its own state saves and loads back */
        FZ_CHECK(tg_optim_save(opt, NULL, g_opt_path) == 0);
        FZ_CHECK(tg_optim_load(opt, NULL, g_opt_path) == 0);
        tg_optim_free(opt);
    }
    fz_end(live);
    return 0;
}
