/* tapegrad/data.h - the user's own data: readers (CSV, .npy, safetensors, IDX, gzip), a dataset of
 * variable-length sequences, split, subset, forecasting windows, per-feature normalisation, and
 * seeded mini-batches padded for the sequence runner.
 *
 * Worked example (a fuller one is built as examples/own_data.c):
 *
 *     char err[256];
 *     tg_dataset *all = tg_dataset_load("walks.csv", NULL, &(tg_data_options){
 *         .seq_column = "walk", .label_column = "label", .label_kind = TG_LABELS_CLASS}, err, sizeof err);
 *     if (!all) { fprintf(stderr, "%s\n", err); return 2; }   // "walks.csv: line 12: 3 fields, header has 4"
 *     tg_dataset *train, *val;
 *     tg_dataset_split(all, 0.2, 42, &train, &val, err, sizeof err);
 *     tg_norm norm = {0};
 *     tg_norm_fit(train, &norm, err, sizeof err);            // statistics of the training part only
 *     tg_norm_apply(train, &norm); tg_norm_apply(val, &norm);
 *     tg_batcher *bt = tg_batcher_new(train, 32, true, false, 7, TG_F32, err, sizeof err);
 *     tg_batch b = {0};
 *     while (tg_batcher_next(bt, &b, err, sizeof err) == 1) {
 *         // b.x [T,B,I] time-major, zero padded; b.lengths for tg_rnn_forward_opts.lengths;
 *         // b.classes [B] for the loss
 *     }
 *     tg_batch_clear(&b); tg_batcher_free(bt); tg_norm_clear(&norm);
 *     tg_dataset_free(train); tg_dataset_free(val); tg_dataset_free(all);
 *
 * Floor: data/ sits above tensor/ and below nn/ (docs/design.md §2). Readers and batching need
 * tensors (a batch is tensors, safetensors files are read by tensor/'s reader) but no tape, no
 * parameters and no cells, so nothing here records or differentiates; nn/ and above may use it.
 *
 * Dimension letters: N sequences, T time steps, I features, B batch, O regression outputs, C classes.
 *
 * Ownership vocabulary (docs/design.md §3), on every prototype:
 *   returns: new object - free with the matching _free / _clear function
 *   returns: new ref    - release with tg_release
 *   returns: borrowed   - owned by the argument; valid while it lives
 *   args: borrowed      - nothing here steals a reference or keeps a pointer, except tg_batcher_new (ds)
 *
 * Errors: every function that can meet bad data or bad arguments returns NULL / -1 with a one-line
 * message in err (NUL-terminated, truncated to errlen; err may be NULL), naming the file, the line (CSV)
 * or byte offset (binary formats) and the problem, e.g. "x.npy: byte 10: header declares shape
 * (100000000000, 28, 28) of 8-byte items = ... bytes but the file has 6272 after the header". Nothing is
 * left allocated and no output is written on failure. No allocation is larger than what the file could
 * fill: declared sizes are checked for overflow and against the real (or decompressed) size first.
 * The library never aborts on data.
 */
#ifndef TAPEGRAD_DATA_H
#define TAPEGRAD_DATA_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <tapegrad/tensor.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- what a dataset holds ---------------------------------------------------------------------- */
typedef enum tg_label_kind {
    TG_LABELS_NONE = 0,   /* inputs only (e.g. a series to forecast, or data to predict on) */
    TG_LABELS_CLASS,      /* one class index per sequence, 0..C-1 */
    TG_LABELS_TAG,        /* one class index per step of each sequence, 0..C-1 */
    TG_LABELS_VALUE       /* O real values per sequence */
} tg_label_kind;

/* Largest class index a file may hold (C <= TG_DATA_MAX_CLASSES): a stray huge integer in a label
 * column would otherwise make every consumer allocate C-sized outputs. */
#define TG_DATA_MAX_CLASSES 1000000

/* How a 2-D array (npy, IDX, safetensors "x") is read. */
typedef enum tg_layout2d {
    TG_2D_AUTO = 0,       /* [N,T] (I = 1) when labels are given (in the file or a labels file), else [T,I] */
    TG_2D_NT,             /* [N,T]: N sequences of T steps of one feature (e.g. predicting on class data) */
    TG_2D_TI              /* [T,I]: one series of T steps of I features */
} tg_layout2d;

typedef struct tg_dataset tg_dataset;  /* N variable-length sequences of I features (stored as F64) */

typedef struct tg_data_options {       /* {0} = defaults */
    /* CSV */
    const char *seq_column;            /* column naming the sequence each row belongs to (any text; the rows
                                          of one sequence must be contiguous); NULL = one long series */
    const char *label_column;          /* column holding the label (class or value, see label_kind); NULL = none */
    const char *const *feature_columns;/* NULL-terminated list; NULL = every other numeric column (a column
                                          whose first data row is not a number, e.g. a date, is skipped) */
    tg_label_kind label_kind;          /* how to read label_column / a labels file: CLASS (integers),
                                          TAG (per-row integers -> per-step labels), VALUE (reals).
                                          NONE with a labels file = CLASS for [N] integer labels, TAG for [N,T] */
    /* IDX images (MNIST format): each image [R, C] becomes a sequence of R steps of C features,
       scaled to [0,1] by dividing by 255 */
    bool idx_no_scale;                 /* keep 0..255 */
    tg_layout2d layout2d;              /* 2-D arrays: see tg_layout2d */
    size_t max_bytes;                  /* limit on a file's (decompressed) size; 0 = TG_DATA_MAX_BYTES */
    bool label_column_optional;        /* CSV: a header without label_column loads with no labels (new
                                          data to predict on) instead of failing; default false */
} tg_data_options;

#define TG_DATA_MAX_BYTES ((size_t)4 << 30) /* 4 GiB */

/* Loads inputs from `path` and labels from `labels_path` (NULL: none, or labels inside the file: CSV
 * label column, safetensors "y"). Format from the content/extension: .csv, .npy, .safetensors, IDX
 * (optionally .gz, decompressed by the project's own inflate). npy: x [N,T,I] (also [N,T] = I 1, or
 * [T,I]/[T] = one series; 2-D per opt->layout2d), float32/float64/int64 (also int32, uint8);
 * labels [N] or [N,T] (VALUE: [N] or [N,O]). safetensors: "x", "y" (optional), "lengths" [N] int64
 * (optional, each 1..T); F32/F64/I64/I32/U8. Values must be finite.
 * returns: new object (tg_dataset_free) or NULL + err. */
tg_dataset *tg_dataset_load(const char *path, const char *labels_path, const tg_data_options *opt,
                            char *err, size_t errlen);
/* From memory. x: F32 or F64 tensor [N,T,I]; lengths [N] or NULL (all T); labels per kind:
 * CLASS int64 [N], TAG int64 [N*T] (row-major, entries past a sequence's length ignored), VALUE double [N*O].
 * Copies everything. returns: new object or NULL + err. */
tg_dataset *tg_dataset_from_tensor(const tg_tensor *x, const int64_t *lengths, tg_label_kind kind,
                                   const void *labels, int64_t n_outputs, char *err, size_t errlen);
void tg_dataset_free(tg_dataset *ds);                  /* NULL-safe */

int64_t tg_dataset_size(const tg_dataset *ds);         /* N */
int64_t tg_dataset_features(const tg_dataset *ds);     /* I */
int64_t tg_dataset_max_length(const tg_dataset *ds);   /* max_n T_n */
int64_t tg_dataset_length(const tg_dataset *ds, int64_t n); /* T_n */
const double *tg_dataset_seq(const tg_dataset *ds, int64_t n); /* returns: borrowed [T_n, I] row-major */
tg_label_kind tg_dataset_label_kind(const tg_dataset *ds);
int64_t tg_dataset_classes(const tg_dataset *ds);      /* C = max label + 1 (CLASS/TAG), else 0 */
int64_t tg_dataset_outputs(const tg_dataset *ds);      /* O (VALUE), else 0 */
int64_t tg_dataset_label(const tg_dataset *ds, int64_t n);            /* CLASS */
const int64_t *tg_dataset_tags(const tg_dataset *ds, int64_t n);      /* TAG: borrowed [T_n] */
const double *tg_dataset_values(const tg_dataset *ds, int64_t n);     /* VALUE: borrowed [O] */
const char *tg_dataset_feature_name(const tg_dataset *ds, int64_t i); /* CSV header / "x0".. ; borrowed */
const char *tg_label_kind_name(tg_label_kind kind);   /* "none", "class", "tag", "value"; borrowed */

/* Forecasting: cuts every sequence into windows of `window` steps, target = the I values `horizon`
 * steps after each window's last step (VALUE labels, O = I), stride 1 (or `stride`; 0 = 1).
 * A window starting at step s holds steps s..s+window-1; its target is step s+window-1+horizon.
 * The dataset's own labels are dropped. returns: new object or NULL + err (e.g. no sequence long
 * enough, with the numbers). */
tg_dataset *tg_dataset_windows(const tg_dataset *ds, int64_t window, int64_t horizon, int64_t stride,
                               char *err, size_t errlen);
/* Subset by indices (copies; repeats allowed; n >= 1). returns: new object or NULL + err. */
tg_dataset *tg_dataset_subset(const tg_dataset *ds, const int64_t *index, int64_t n, char *err, size_t errlen);
/* Shuffled split from seed: the first round(fraction*N) of a seeded permutation go to *val (fraction 0:
 * *val = NULL), the rest to *train, each in the permutation's order. Same seed = same split. Both parts
 * must be non-empty (else -1 with the numbers). Returns 0 or -1 + err (then *train = *val = NULL).
 * Both outputs are new objects. */
int tg_dataset_split(const tg_dataset *ds, double val_fraction, uint64_t seed, tg_dataset **train,
                     tg_dataset **val, char *err, size_t errlen);

/* ---- per-feature normalisation (statistics saved with the model) ------------------------------ */
typedef struct tg_norm {
    int64_t features;        /* I */
    double *mean, *std;      /* [I] malloc'd (tg_norm_clear); std of a constant feature is 1 */
} tg_norm;
/* Mean and population standard deviation (ddof 0, like sklearn's StandardScaler) of each feature over
 * every real step (padding does not exist in a dataset). out is overwritten (clear it first if it held
 * statistics). Returns 0 or -1 + err. */
int tg_norm_fit(const tg_dataset *ds, tg_norm *out, char *err, size_t errlen);
/* In place: (x - mean) / std; VALUE labels untouched. A norm of other width than ds is a programming
 * error (tg_error, nothing changed). */
void tg_norm_apply(tg_dataset *ds, const tg_norm *norm);
/* In place on VALUE labels: (y - mean) / std per output, for a norm of width O: the inputs' norm when
 * the targets are future inputs (windows, O = I), or one fitted to the targets (a tg_norm may be filled
 * by hand). Returns 0, or -1 + err if the dataset has no VALUE labels of that width. */
int tg_norm_apply_values(tg_dataset *ds, const tg_norm *norm, char *err, size_t errlen);
void tg_norm_clear(tg_norm *norm);                        /* NULL-safe, zeroes */
/* As text for checkpoint metadata ("mean0,mean1,...;std0,std1,..." with %.17g) and back. */
char *tg_norm_to_string(const tg_norm *norm);             /* returns: malloc'd string (free), NULL if invalid */
int tg_norm_from_string(const char *s, tg_norm *out, char *err, size_t errlen); /* 0 or -1 + err */

/* ---- mini-batches ----------------------------------------------------------------------------- */
typedef struct tg_batch {
    tg_tensor *x;            /* new ref [T,B,I] time-major (T = longest in the batch), zero padded */
    int64_t *lengths;        /* [B] malloc'd */
    int64_t *index;          /* [B] dataset indices of the rows */
    int64_t B, T;
    /* labels, per the dataset's kind (NULL otherwise), new refs in the requested dtype: */
    tg_tensor *classes;      /* CLASS: F64/F32 holding the index per row [B]; TAG: [T*B] time-major,
                                padding steps hold -100 (PyTorch's ignore_index default) */
    tg_tensor *values;       /* VALUE: [B, O] */
} tg_batch;
#define TG_IGNORE_INDEX (-100)
typedef struct tg_batcher tg_batcher;
/* Epochs over ds in mini-batches of B (the last one smaller unless drop_last), shuffled from `seed`
 * when shuffle (a new permutation each epoch, drawn from a tg_rng seeded once), in dtype.
 * ds is borrowed and must outlive the batcher. returns: new object (tg_batcher_free) or NULL + err. */
tg_batcher *tg_batcher_new(const tg_dataset *ds, int64_t B, bool shuffle, bool drop_last, uint64_t seed,
                           tg_dtype dtype, char *err, size_t errlen);
void tg_batcher_free(tg_batcher *bt);             /* NULL-safe */
/* Fills *b with the next batch: returns 1, or 0 at the end of an epoch (the next call starts the next
 * epoch), or -1 + err. *b must be zeroed ({0}) or hold an earlier batch, which is released first. */
int tg_batcher_next(tg_batcher *bt, tg_batch *b, char *err, size_t errlen);
/* The batch of the given dataset rows, in that order (evaluation, prediction). Same layout as
 * tg_batcher_next; *b as there. Returns 0 or -1 + err. */
int tg_batch_make(const tg_dataset *ds, const int64_t *index, int64_t B, tg_dtype dtype, tg_batch *b,
                  char *err, size_t errlen);
void tg_batch_clear(tg_batch *b);                 /* releases / frees, zeroes; NULL-safe */
int64_t tg_batcher_epoch(const tg_batcher *bt);   /* epochs completed */
int64_t tg_batcher_batches_per_epoch(const tg_batcher *bt);
/* The position (epoch, offset, rng state) as a string for a checkpoint, and back: a resumed batcher
 * continues with exactly the same batches. Restore checks that the state was made for a batcher of the
 * same N, B, shuffle and drop_last. */
char *tg_batcher_state(const tg_batcher *bt);      /* returns: malloc'd (free) */
int tg_batcher_restore(tg_batcher *bt, const char *state, char *err, size_t errlen); /* 0 or -1 + err */

/* ---- gzip ------------------------------------------------------------------------------------- */
/* Decompresses a whole gzip file image (RFC 1952; one or more members, each checked against its
 * CRC-32 and ISIZE) with the project's own inflate (RFC 1951). `name` labels the messages (a path, or
 * NULL for "gzip data"). The output never exceeds max_out bytes (0 = TG_DATA_MAX_BYTES).
 * Returns 0 with *out = malloc'd bytes (free) and *out_len, or -1 + err (message with the byte offset
 * in the compressed data), *out = NULL. */
int tg_gunzip(const void *in, size_t in_len, const char *name, size_t max_out, unsigned char **out,
              size_t *out_len, char *err, size_t errlen);
/* CRC-32 (ISO-HDLC, as gzip and zlib) of len bytes, continuing from crc (start with 0). */
uint32_t tg_crc32(uint32_t crc, const void *data, size_t len);

#ifdef __cplusplus
}
#endif
#endif
