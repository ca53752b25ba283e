/* tools/initweights.h - `tapegrad train --init FILE`: a model's starting weights from any safetensors
 * file whose names and shapes fit it, tapegrad's checkpoint or PyTorch's state_dict.
 *
 *     int converted;
 *     if (init_weights_load(model->params, "torch.safetensors", &converted, err, sizeof err)) ...
 *
 * Names: a file tensor fits the parameter of the same name ("rnn.weight_ih_l0", "head.bias"), or the
 * one whose name without its first "prefix." is the tensor's name: torch.nn.LSTM's own state_dict
 * ("weight_ih_l0", ...) and a Linear's ("weight", "bias") fit "rnn.*" and "head.*". */
#ifndef TG_TOOLS_INITWEIGHTS_H
#define TG_TOOLS_INITWEIGHTS_H
#include <stddef.h>

#include <tapegrad/nn.h>

/* Copies the file's tensors into params once everything is checked: every parameter found exactly
 * once with its shape, every file tensor fitting a parameter, dtype F32 or F64 (converted to the
 * parameter's; other dtypes are refused by the reader, naming them), every value finite and, for an
 * F32 parameter, within F32's range. Nothing is changed on a failure. Returns 0 with *converted (may
 * be NULL) = the tensors whose dtype was converted, or -1 with the problems in err ("FILE: ..."; the
 * first 4 named, then how many more). args: borrowed */
int init_weights_load(tg_params *params, const char *path, int *converted, char *err, size_t errlen);
#endif
