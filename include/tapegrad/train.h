/* tapegrad/train.h - a model to train (a recurrent stack + a linear head) and its checkpoints, which
 * resume training bit for bit: what `tapegrad train` uses, for a program of its own.
 *
 *     char err[256];
 *     tg_model *m = tg_model_new(&(tg_model_config){.cell = "lstm", .input_size = 1, .hidden_size = 32,
 *                                                   .output_size = 1, .layers = 1, .dtype = TG_F32},
 *                                seed, err, sizeof err);                    // NULL + err on failure
 *     tg_tensor *pred = tg_model_forward(m, x, false, NULL, &rng);         // [B,O], tape-owned
 *     ...
 *     tg_ckpt_save("m.safetensors", m, opt, step, &rng, 0, NULL, err, sizeof err);
 *     tg_st_file *f;
 *     tg_model *back = tg_ckpt_load_model("m.safetensors", &f, err, sizeof err);
 *     tg_ckpt_load_train_state("m.safetensors", f, opt2, &step, &rng, err, sizeof err);
 *     tg_st_free(f);
 *
 * A model computes pred = head(rnn(x)): x [T,B,I] -> hidden [T,B,H] -> pred [T·B,O] (every step, time-
 * major rows) or [B,O] (the last step); with proj_size P the hidden output is [T,B,P] (h = W_hr m). Its parameters carry PyTorch names, "rnn.weight_ih_l0", ...,
 * "head.weight", "head.bias", so a checkpoint loads into torch.nn.LSTM / nn.Linear state_dicts.
 *
 * Checkpoint = two safetensors files:
 *   FILE                      the parameters (readable with tg_params_load or safetensors.torch) and, as
 *                             metadata, the model config, the step reached, a generator's state, the
 *                             caller's own key/value pairs and (a typed cell) the cell's definition;
 *   FILE minus ".safetensors" + ".optim.safetensors"
 *                             the optimizer state (tg_optim_save's layout, optim.h).
 * Both carry the same metadata "pair_id" (a hash of the model file), and the optimizer file is loaded
 * only with its own model file: a save interrupted between the two files resumes the previous pair
 * (kept as FILE's optimizer file + ".prev" while a save runs), any other mix is refused naming both
 * files (README, Hardening, "One pair"). Loading checks the metadata against the tensors before building anything, so a corrupt or hostile
 * file is refused with a message naming the key and the tensor. Errors go to err (never abort).
 *
 * Dimension letters: T time steps, B batch, I input size, H hidden size, O output size.
 */
#ifndef TAPEGRAD_TRAIN_H
#define TAPEGRAD_TRAIN_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <tapegrad/nn.h>
#include <tapegrad/optim.h>
#include <tapegrad/safetensors.h>
#include <tapegrad/stream.h>

typedef struct tg_model_config {
    char cell[48];                 /* registry name, e.g. "lstm" (tg_cell_by_name) */
    int64_t input_size;            /* I */
    int64_t hidden_size;           /* H */
    int64_t output_size;           /* O */
    int layers;                    /* L */
    tg_dtype dtype;
    bool set_forget_bias;          /* Jozefowicz et al.: the forget gate's bias_ih block = forget_bias */
    double forget_bias;
    double dropout;                /* between stacked layers, in training (0: off) */
    double zoneout;                /* Krueger et al., every state of every layer (0: off) */
    int64_t proj_size;             /* P: LSTM with projections (torch's proj_size, 0 < P < H, cell "lstm"):
                                      h, each layer's output and the head's input are P wide; 0: none */
} tg_model_config;

typedef struct tg_model {
    tg_model_config cfg;
    const tg_cell *cell;           /* borrowed (registry entry) */
    tg_rnn *rnn;                   /* owned */
    tg_linear_layer *head;         /* owned: [O, H] weight, [O] bias */
    tg_params *params;             /* owned: every parameter under its checkpoint name (shared tensors) */
} tg_model;

/* Builds and initialises a model from `seed` (PyTorch's default init, then the forget bias if set).
 * returns: new object (tg_model_free), or NULL with a message in err (unknown cell, cell without a
 * forget gate, bad sizes, a proj_size that is not below hidden_size or on a cell other than lstm). */
tg_model *tg_model_new(const tg_model_config *cfg, uint64_t seed, char *err, size_t errlen);
void tg_model_free(tg_model *m);                       /* NULL-safe */
int64_t tg_model_param_count(const tg_model *m);

/* pred = head(rnn(x)): [T·B,O] (every_step, time-major rows) or [B,O] (the last step).
 * carry (may be NULL): the initial state if it holds one, and replaced by the final state
 * (truncated BPTT / evaluation of long streams). train_rng: NULL = evaluation (no dropout, zoneout
 * by its expectation); else training, dropout and zoneout masks drawn from it (a seeded, saved
 * generator keeps resumed runs exact). returns: tape-owned, NULL after an error. */
tg_tensor *tg_model_forward(const tg_model *m, const tg_tensor *x, bool every_step, tg_rnn_carry *carry,
                            tg_rng *train_rng);
/* The same over padded sequences: lengths [B] (each 1..T) or NULL (all T). Outputs past a sequence's
 * end are the head of a zero state (ignore them); the last-step prediction is taken at each sequence's
 * own last step. returns: tape-owned, NULL after an error. */
tg_tensor *tg_model_forward_len(const tg_model *m, const tg_tensor *x, const int64_t *lengths, bool every_step,
                                tg_rnn_carry *carry, tg_rng *train_rng);

/* Streaming inference over the model (<tapegrad/stream.h>): B rows, one time step at a time, no tape;
 * step t's output [B,O] equals tg_model_forward(m, x, true, NULL, NULL)'s rows of step t (evaluation:
 * the head on h, zoneout by its expectation, no dropout). returns: new object (tg_rnn_stream_free; m
 * must outlive it), or NULL after tg_error. */
tg_rnn_stream *tg_model_stream_new(const tg_model *m, int64_t B);

/* "<stem>.optim.safetensors" for "<stem>.safetensors" (else path + ".optim.safetensors"). returns: buf */
const char *tg_ckpt_optim_path(const char *path, char *buf, size_t size);

/* Writes the checkpoint (both files, with their pairing id; the previous pair stays loadable until the
 * new one is complete, and is what loads after a failure).
 * meta: nmeta extra key/value pairs (meta[2i], meta[2i+1]) stored in FILE's metadata; opt may be NULL
 * (no optimizer file), rng may be NULL (an all-zero state is stored). Returns 0, or -1 with a message. */
int tg_ckpt_save(const char *path, const tg_model *m, const tg_optim *opt, int64_t step, const tg_rng *rng,
                 int nmeta, const char *const *meta, char *err, size_t errlen);

/* tg_ckpt_save with a schedule over opt (may be NULL): its kind and counters go into the optimizer
 * file (tg_optim_save's sched.* keys), so that tg_ckpt_load_train_state_sched continues it exactly. */
int tg_ckpt_save_sched(const char *path, const tg_model *m, const tg_optim *opt, const tg_sched *sched, int64_t step,
                       const tg_rng *rng, int nmeta, const char *const *meta, char *err, size_t errlen);
/* Reads FILE, checks its metadata against its tensors and builds the model it describes with its
 * parameters loaded (a typed cell's stored definition is registered first). file: if not NULL,
 * receives the opened file for the caller's metadata (tg_st_meta; tg_st_free it). returns: new object,
 * or NULL with a message in err (unreadable, not a tapegrad checkpoint, a contradiction). */
tg_model *tg_ckpt_load_model(const char *path, tg_st_file **file, char *err, size_t errlen);
/* Restores the optimizer (from the .optim file paired with `file`; opt may be NULL), the step and the
 * generator state stored by tg_ckpt_save (step and rng may each be NULL: not wanted). Returns 0, or -1 with a message (nothing is changed then;
 * "A and B are not one checkpoint: ..." for an optimizer file of another save or run). */
int tg_ckpt_load_train_state(const char *path, const tg_st_file *file, tg_optim *opt, int64_t *step, tg_rng *rng,
                             char *err, size_t errlen);

/* tg_ckpt_load_train_state that also restores a schedule (may be NULL; with opt) created beforehand
 * on opt, of the checkpoint's kind: another kind, or a checkpoint without a schedule, is refused
 * ("the checkpoint's schedule is cosine, the given one is step"). */
int tg_ckpt_load_train_state_sched(const char *path, const tg_st_file *file, tg_optim *opt, tg_sched *sched,
                                   int64_t *step, tg_rng *rng, char *err, size_t errlen);
/* Typed cells (<tapegrad/cell_lang.h>) whose definition travels with the checkpoints: parses `src`
 * and registers its cell under `name`, unless a cell of that name exists with the same source (then
 * nothing happens). where: the definition's origin for messages (a file name). Registered cells live
 * until exit. Returns 0, or -1 with a message (bad definition, name taken, more than 32 such cells). */
int tg_cell_register_source(const char *name, const char *src, const char *where, char *err, size_t errlen);
/* The definition registered under a cell's name by tg_cell_register_source, or NULL (a C cell).
 * returns: borrowed */
const char *tg_cell_source(const char *cell_name);
#endif
