/* examples/own_data.c - training on your own data: a CSV file in, an LSTM out, with the data API
 * (<tapegrad/data.h>): load, split, normalise, batch with lengths.
 *
 * Purpose: what a user's C program looks like when the sequences come from a file. The program first
 * writes a CSV like one a sensor logger would (so the example is self-contained): columns
 *     recording, time, vibration, temperature, rpm
 * one row per time step, 6..24 rows per recording, where `rpm` (the label, one value per recording)
 * is the frequency of the vibration signal; temperature is a distraction. The program then:
 *   1. loads it with tg_dataset_load (seq_column "recording", label_column "rpm" as VALUE labels;
 *      `time` is skipped because it is not listed as a feature),
 *   2. splits 20 % off for validation with a seed, fits the per-feature normalisation on the
 *      training part only and applies it to both (tg_norm_to_string is what you would store with the
 *      model), standardises the target the same way,
 *   3. trains an LSTM (H = 16) + Linear on shuffled mini-batches whose `lengths` go to the runner, so
 *      the state at each recording's own last step is what the head sees, with Adam,
 *   4. prints the validation MSE against the baseline that predicts the training mean.
 * The exit status is non-zero unless the validation MSE is below 30 % of the baseline's.
 *
 * Run: build/examples/own_data [--quick]   (--quick or TG_QUICK=1: 120 steps instead of 600)
 *      build/examples/own_data --write-csv FILE   writes the sensor log to FILE and stops (the same
 *      data for `tapegrad train --data FILE ...`: the README's walk-through "Your own CSV, end to end")
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <tapegrad/tapegrad.h>

enum { N_REC = 400, HIDDEN = 16, BATCH = 32 };

static bool quick_mode(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--quick")) return true;
    const char *e = getenv("TG_QUICK");
    return e && *e && strcmp(e, "0") != 0;
}

/* The "user's file": N_REC recordings, returns 0 or -1. */
static int write_csv(const char *path) {
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    tg_rng rng;
    tg_rng_seed(&rng, 2024);
    fprintf(f, "recording,time,vibration,temperature,rpm\n");
    for (int r = 0; r < N_REC; r++) {
        double rpm = 600 + 1800 * tg_rng_uniform(&rng);           /* 600..2400 */
        double phase = 6.283 * tg_rng_uniform(&rng), temp = 40 + 20 * tg_rng_uniform(&rng);
        int len = 6 + (int)tg_rng_below(&rng, 19);
        for (int t = 0; t < len; t++)
            fprintf(f, "rec%03d,%.2f,%.5f,%.3f,%.1f\n", r, 0.01 * t, sin(phase + rpm / 1000.0 * t) + 0.05 * tg_rng_normal(&rng),
                    temp + tg_rng_normal(&rng), rpm);
    }
    return fclose(f) == 0 ? 0 : -1;
}

/* predictions [B,1] from the state at each sequence's last real step: tape-owned */
static tg_tensor *predict(const tg_rnn *lstm, const tg_linear_layer *head, const tg_batch *b) {
    tg_rnn_output out;
    if (!tg_rnn_forward(lstm, b->x, &(tg_rnn_forward_opts){.lengths = b->lengths}, &out)) return NULL;
    tg_tensor *h_last = tg_select(out.h_n, 0); /* [L=1,B,H] -> [B,H] */
    tg_rnn_output_clear(&out);
    return tg_linear_layer_forward(head, h_last);
}

/* mean squared error over a whole dataset, in batches, without the tape */
static double eval_mse(const tg_rnn *lstm, const tg_linear_layer *head, const tg_dataset *ds, char *err, size_t errlen) {
    tg_batcher *bt = tg_batcher_new(ds, 128, false, false, 0, TG_F32, err, errlen);
    if (!bt) return NAN;
    tg_batch b = {0};
    double sum = 0;
    tg_no_grad_begin();
    while (tg_batcher_next(bt, &b, err, errlen) == 1) {
        sum += tg_item(tg_mse_loss(predict(lstm, head, &b), b.values, TG_REDUCE_SUM));
        tg_tape_reset();
    }
    tg_no_grad_end();
    tg_batch_clear(&b);
    tg_batcher_free(bt);
    return sum / (double)tg_dataset_size(ds);
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--write-csv")) {
            if (i + 1 >= argc) { fprintf(stderr, "own_data: --write-csv needs a file name\n"); return 2; }
            if (write_csv(argv[i + 1])) { fprintf(stderr, "own_data: cannot write %s\n", argv[i + 1]); return 2; }
            printf("wrote %s: %d recordings (recording,time,vibration,temperature,rpm)\n", argv[i + 1], N_REC);
            return 0;
        }
    int steps = quick_mode(argc, argv) ? 120 : 600;
    char err[512], path[] = "/tmp/tapegrad_own_data_XXXXXX.csv";
    int fd = mkstemps(path, 4);
    if (fd < 0 || close(fd) || write_csv(path)) { fprintf(stderr, "cannot write %s\n", path); return 2; }

    /* 1. load */
    tg_dataset *all = tg_dataset_load(path, NULL, &(tg_data_options){
        .seq_column = "recording", .label_column = "rpm", .label_kind = TG_LABELS_VALUE,
        .feature_columns = (const char *const[]){"vibration", "temperature", NULL}}, err, sizeof err);
    unlink(path);
    if (!all) { fprintf(stderr, "%s\n", err); return 2; }
    printf("%s: %lld recordings of %lld features (%s, %s), up to %lld steps, target: rpm\n", "sensor log",
           (long long)tg_dataset_size(all), (long long)tg_dataset_features(all), tg_dataset_feature_name(all, 0),
           tg_dataset_feature_name(all, 1), (long long)tg_dataset_max_length(all));

    /* 2. split, normalise inputs and target with the training part's statistics */
    tg_dataset *train, *val;
    if (tg_dataset_split(all, 0.2, 7, &train, &val, err, sizeof err)) { fprintf(stderr, "%s\n", err); return 2; }
    tg_norm norm = {0};
    if (tg_norm_fit(train, &norm, err, sizeof err)) { fprintf(stderr, "%s\n", err); return 2; }
    tg_norm_apply(train, &norm);
    tg_norm_apply(val, &norm);
    char *saved = tg_norm_to_string(&norm);
    printf("normalisation (kept with the model): %s\n", saved);
    free(saved);
    double mean = 0, var = 0, val_base = 0;
    int64_t ntr = tg_dataset_size(train), nva = tg_dataset_size(val);
    for (int64_t n = 0; n < ntr; n++) mean += tg_dataset_values(train, n)[0] / (double)ntr;
    for (int64_t n = 0; n < ntr; n++) var += pow(tg_dataset_values(train, n)[0] - mean, 2) / (double)ntr;
    /* the target in standard units, with a one-feature tg_norm of the training targets */
    double sd = sqrt(var);
    tg_norm target_norm = {.features = 1, .mean = &mean, .std = &sd};
    if (tg_norm_apply_values(train, &target_norm, err, sizeof err) || tg_norm_apply_values(val, &target_norm, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 2;
    }
    for (int64_t n = 0; n < nva; n++) val_base += pow(tg_dataset_values(val, n)[0], 2) / (double)nva; /* predict the mean (0) */

    /* 3. the model and the loop */
    tg_rng rng;
    tg_rng_seed(&rng, 3);
    tg_rnn *lstm = tg_rnn_new(tg_cell_by_name("lstm"), &(tg_rnn_config){.input_size = 2, .hidden_size = HIDDEN}, &rng);
    tg_linear_layer *head = tg_linear_layer_new(HIDDEN, 1, true, TG_F32, &rng);
    tg_params *params = tg_params_new();
    tg_params_extend(params, "lstm.", lstm->params);
    tg_params_extend(params, "head.", head->params);
    tg_optim_opts o = tg_optim_defaults(TG_OPTIM_ADAM);
    o.lr = 1e-2;
    tg_optim *opt = tg_optim_new_params(TG_OPTIM_ADAM, params, &o);
    tg_batcher *bt = tg_batcher_new(train, BATCH, true, false, 11, TG_F32, err, sizeof err);
    if (!bt) { fprintf(stderr, "%s\n", err); return 2; }
    printf("LSTM H=%d + Linear, %lld parameters; Adam lr %g, %d steps of %d recordings (%lld train, %lld validation)\n",
           HIDDEN, (long long)tg_params_numel(params), o.lr, steps, BATCH, (long long)ntr, (long long)nva);
    printf("  baseline (predict the training mean): validation MSE %.4f\n", val_base);
    tg_batch b = {0};
    double val_mse = NAN;
    for (int step = 1; step <= steps; step++) {
        int rc = tg_batcher_next(bt, &b, err, sizeof err);
        if (rc == 0) rc = tg_batcher_next(bt, &b, err, sizeof err); /* next epoch */
        if (rc < 0) { fprintf(stderr, "%s\n", err); return 2; }
        tg_optim_zero_grad(opt);
        tg_tensor *loss = tg_mse_loss(predict(lstm, head, &b), b.values, TG_REDUCE_MEAN);
        tg_backward(loss);
        tg_optim_step(opt);
        tg_tape_reset();
        if (step % (steps / 4) == 0) {
            val_mse = eval_mse(lstm, head, val, err, sizeof err);
            printf("  step %4d (epoch %lld)  validation MSE %.4f  (%.1f%% of the baseline)\n", step,
                   (long long)tg_batcher_epoch(bt), val_mse, 100 * val_mse / val_base);
        }
    }
    tg_batch_clear(&b);

    tg_batcher_free(bt);
    tg_optim_free(opt);
    tg_params_free(params);
    tg_linear_layer_free(head);
    tg_rnn_free(lstm);
    tg_norm_clear(&norm);
    tg_dataset_free(train);
    tg_dataset_free(val);
    tg_dataset_free(all);
    long live = tg_live_tensors();
    bool beat = val_mse < 0.3 * val_base;
    printf("validation MSE %.4f vs baseline %.4f: %s (needs < 30%% of the baseline); live tensors %ld\n", val_mse, val_base,
           beat ? "beats it" : "does NOT beat it", live);
    return beat && live == 0 ? 0 : 1;
}
