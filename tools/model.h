/* tools/model.h - the network the tapegrad command trains, and its checkpoints.
 *
 * A model is a recurrent stack (any registered cell, via the generic runner tg_rnn) followed by a
 * linear head from the last layer's hidden state to the task's outputs:
 *
 *     pred = head(rnn(x))       x [T,B,I] -> hidden [T,B,H] -> pred [T·B,O] (every step) or [B,O] (last)
 *
 * Parameters carry PyTorch names, "rnn.weight_ih_l0", ..., "head.weight", "head.bias", so a checkpoint
 * loads into torch.nn.LSTM / nn.Linear state_dicts.
 *
 * Checkpoint = two safetensors files:
 *   FILE                      the parameters (readable with tg_params_load or safetensors.torch) and, as
 *                             metadata, the model config, the training options, the step reached, the
 *                             data generator's state and (charlm) the vocabulary;
 *   FILE minus ".safetensors" + ".optim.safetensors"
 *                             the optimizer state, written by tg_optim_save (optim.h).
 * Restoring both gives training that continues bit for bit as if it had never stopped.
 *
 * Dimension letters: T time steps, B batch, I input size, H hidden size, O output size.
 */
#ifndef TG_TOOLS_MODEL_H
#define TG_TOOLS_MODEL_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <tapegrad/nn.h>
#include <tapegrad/optim.h>
#include <tapegrad/safetensors.h>

typedef struct model_config {
    char cell[48];                 /* registry name, e.g. "lstm" */
    int64_t input_size;            /* I */
    int64_t hidden_size;           /* H */
    int64_t output_size;           /* O */
    int layers;                    /* L */
    tg_dtype dtype;
    bool set_forget_bias;          /* Jozefowicz et al.: the forget gate's bias_ih block = forget_bias */
    double forget_bias;
    double dropout;                /* between stacked layers, in training (0: off) */
    double zoneout;                /* Krueger et al., every state of every layer (0: off) */
} model_config;

typedef struct model {
    model_config cfg;
    const tg_cell *cell;           /* borrowed (static registry entry) */
    tg_rnn *rnn;                   /* owned */
    tg_linear_layer *head;         /* owned: [O, H] weight, [O] bias */
    tg_params *params;             /* owned: every parameter under its checkpoint name (shared tensors) */
} model;

/* Builds and initialises a model from `seed` (PyTorch's default init, then the forget bias if set).
 * Returns NULL with a message in err (unknown cell, cell without a forget gate, bad sizes). */
model *model_new(const model_config *cfg, uint64_t seed, char *err, size_t errlen);
void model_free(model *m);                       /* NULL-safe */
int64_t model_param_count(const model *m);

/* pred = head(rnn(x)): [T·B,O] (every_step, time-major rows) or [B,O] (the last step).
 * carry (may be NULL): the initial state if it holds one, and replaced by the final state
 * (truncated BPTT / evaluation of long streams). train_rng: NULL = evaluation (no dropout, zoneout
 * by its expectation); else training, dropout and zoneout masks drawn from it (a seeded, saved
 * generator keeps resumed runs exact). returns: tape-owned, NULL after an error. */
tg_tensor *model_forward(const model *m, const tg_tensor *x, bool every_step, tg_rnn_carry *carry, tg_rng *train_rng);
/* The same over padded sequences: lengths [B] (each 1..T) or NULL (all T). Outputs past a sequence's
 * end are the head of a zero state (ignore them); the last-step prediction is taken at each sequence's
 * own last step. returns: tape-owned, NULL after an error. */
tg_tensor *model_forward_len(const model *m, const tg_tensor *x, const int64_t *lengths, bool every_step,
                             tg_rnn_carry *carry, tg_rng *train_rng);

/* "<stem>.optim.safetensors" for "<stem>.safetensors" (else path + ".optim.safetensors"). */
const char *ckpt_optim_path(const char *path, char *buf, size_t size);

/* Writes the checkpoint (both files). meta: nmeta extra key/value pairs stored in FILE's metadata
 * (training options, vocabulary). opt may be NULL (then no optimizer file is written). Returns 0, or
 * -1 with a message in err. */
int ckpt_save(const char *path, const model *m, const tg_optim *opt, int64_t step, const tg_rng *rng,
              int nmeta, const char *const *meta, char *err, size_t errlen);

/* Opens FILE's metadata (tg_st_free it) and builds the model it describes with its parameters
 * loaded. Returns NULL with a message in err (unreadable, not a tapegrad checkpoint, mismatch). */
model *ckpt_load_model(const char *path, tg_st_file **file, char *err, size_t errlen);
/* Restores the optimizer (from the .optim file), the step and the generator state. 0 or -1 + err. */
int ckpt_load_train_state(const char *path, const tg_st_file *file, tg_optim *opt, int64_t *step, tg_rng *rng,
                          char *err, size_t errlen);
#endif
