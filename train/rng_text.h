/* train/rng_text.h - a generator's state as checkpoint metadata text (internal: train/model.c, train/trainer.c).
 * "s0 s1 s2 s3 has_spare spare" in hex, so a resumed run draws the same numbers bit for bit. */
#ifndef TG_TRAIN_RNG_TEXT_H
#define TG_TRAIN_RNG_TEXT_H
#include <stdbool.h>
#include <stddef.h>

#include <tapegrad/tensor.h>

void tg__rng_to_str(const tg_rng *r, char *buf, size_t n);
bool tg__rng_from_str(const char *s, tg_rng *r); /* false (r untouched) if s is NULL or malformed */
#endif
