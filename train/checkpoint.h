/* train/checkpoint.h - the one writer and the one reader of a checkpoint's two files (internal:
 * train/model.c's tg_ckpt_* and train/trainer.c's tg_trainer_save/load; see train/checkpoint.c).
 *
 * A checkpoint is the model file PATH and the optimizer file tg_ckpt_optim_path(PATH). Both carry the
 * same metadata "pair_id": a 64-bit hash (16 hex digits) of what the model file holds (every tensor's
 * name, dtype, shape and bytes, and every metadata pair), so a checkpoint saved twice from the same
 * state is the same bytes. The optimizer file is written first, then the model file; while they are
 * replaced the previous optimizer file is kept (hard link) as PATH's optimizer file + ".prev", so a save
 * that fails or is killed between the two renames leaves the previous pair loadable. */
#ifndef TG_TRAIN_CHECKPOINT_H
#define TG_TRAIN_CHECKPOINT_H
#include <tapegrad/optim.h>
#include <tapegrad/safetensors.h>

#define TG_CKPT_PAIR_KEY "pair_id"

/* Writes the optimizer file (and sched's state; skipped when opt is NULL) and the model file at path:
 * the parameters under their names with the nkv metadata pairs kv[2i], kv[2i+1], both files with the
 * pairing id. fn names the caller in messages. Returns 0, or -1 with a message (tg_last_error); the
 * previous checkpoint is then what loads. */
int tg__ckpt_write(const char *fn, const char *path, tg_params *params, const tg_optim *opt, const tg_sched *sched,
                   int nkv, const char *const *kv);

/* Loads into opt (and sched) the optimizer file paired with the model file f, opened from path: the
 * optimizer file if its pairing id is f's, else the ".prev" one an interrupted save kept, if it is.
 * Anything else is refused: -1 with a message naming both files (tg_last_error), opt untouched. */
int tg__ckpt_read_optim(const char *fn, const char *path, const tg_st_file *f, tg_optim *opt, tg_sched *sched);
#endif
