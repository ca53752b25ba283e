/* tapegrad/tapegrad.h - umbrella header: everything public.
 *
 *     #include <tapegrad/tapegrad.h>
 *     tg_tensor *h = tg_tanh(tg_add(tg_matmul(x, W), b));   // tape-owned; backward with tg_backward
 */
#ifndef TAPEGRAD_H
#define TAPEGRAD_H
#include <tapegrad/version.h>
#include <tapegrad/tensor.h>
#include <tapegrad/autograd.h>
#include <tapegrad/ops.h>
#include <tapegrad/safetensors.h>
#include <tapegrad/data.h>
#include <tapegrad/loss.h>
#include <tapegrad/optim.h>
#include <tapegrad/nn.h>
#include <tapegrad/pack.h>
#include <tapegrad/cellmod.h>
#include <tapegrad/manual.h>
#include <tapegrad/compare.h>
#include <tapegrad/memory.h>
#include <tapegrad/cell_lang.h>
#include <tapegrad/train.h>
#include <tapegrad/trainer.h>
#include <tapegrad/stream.h>
#endif
