/* optim/checkpoint.h - the optimizer file as train/'s checkpoints write and read it (not installed):
 * with extra metadata (the pairing id of train/checkpoint.c) and from a file already opened (the
 * pairing id is checked before the state is read, without reading the file twice). */
#ifndef TG_OPTIM_CHECKPOINT_H
#define TG_OPTIM_CHECKPOINT_H
#include <tapegrad/optim.h>
#include <tapegrad/safetensors.h>

/* tg_optim_save plus nkv (key, value) metadata pairs kv[2i], kv[2i+1] (values under 160 bytes; keys
 * other than the file's own). Returns 0, or -1 with a message (tg_last_error). */
int tg__optim_save_kv(const tg_optim *opt, const tg_sched *sched, const char *path, int nkv, const char *const *kv);
/* tg_optim_load from f, opened from path (named in messages); f stays the caller's. */
int tg__optim_load_file(tg_optim *opt, tg_sched *sched, const tg_st_file *f, const char *path);
#endif
