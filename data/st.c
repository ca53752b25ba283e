/* data/st.c - safetensors data files: "x" (inputs, [N,T,I] or the 2-D/1-D forms of data.h), optional
 * "y" (labels: integers [N] = classes, [N,T] = tags; reals [N] or [N,O] = values) and optional
 * "lengths" [N] (integers, each 1..T). The file is parsed and validated by tensor/'s reader (docs/design.md
 * section 9), asked to convert integer tensors (I64 labels, as PyTorch writes them) to exact doubles;
 * any other tensor name is refused so that a typo ("label") is not silently ignored.
 */
#include "data/internal.h"

#include <tapegrad/safetensors.h>

#include <stdio.h>
#include <string.h>

static bool host_big_endian(void) {
    const uint16_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 0;
}

/* A borrowed typed-array view of one tensor of f. */
static void view(const tg_st_file *f, int i, char *what, size_t wsize, const char *file, tgd_array *a) {
    tg_tensor *t = tg_st_tensor_at(f, i);
    const char *dt = tg_st_dtype_at(f, i);
    memset(a, 0, sizeof *a);
    snprintf(what, wsize, "%s: tensor '%s'", file, tg_st_name_at(f, i));
    a->what = what;
    a->elem = tg_dtype_of(t) == TG_F32 ? TGD_F32 : TGD_F64;
    a->big_endian = host_big_endian();
    a->ints = strcmp(dt, "F32") != 0 && strcmp(dt, "F64") != 0;
    a->ndim = tg_ndim(t);
    for (int d = 0; d < a->ndim && d < 4; d++) a->shape[d] = tg_dim(t, d);
    a->numel = tg_numel(t);
    a->data = tg_cdata(t);
}

tg_dataset *tgd_st_parse(const unsigned char *buf, size_t len, const char *what, const tgd_array *labels,
                         const tg_data_options *opt, char *err, size_t errlen) {
    tg_st_file *f = tg_st_parse_flags(buf, len, TG_ST_INTEGERS_AS_F64);
    if (!f) {
        const char *m = tg_last_error();
        if (strncmp(m, "tg_st_parse: ", 13) == 0) m += 13;
        tgd_fail(err, errlen, "%s: %s", what, m);
        tg_clear_error();
        return NULL;
    }
    tg_dataset *ds = NULL;
    int ix = -1, iy = -1, il = -1;
    for (int i = 0; i < tg_st_count(f); i++) {
        const char *name = tg_st_name_at(f, i);
        if (strcmp(name, "x") == 0) ix = i;
        else if (strcmp(name, "y") == 0) iy = i;
        else if (strcmp(name, "lengths") == 0) il = i;
        else {
            tgd_fail(err, errlen, "%s: unexpected tensor '%.60s' (a data file holds x, and optionally y and lengths)", what, name);
            goto done;
        }
    }
    if (ix < 0) { tgd_fail(err, errlen, "%s: no tensor 'x' (the inputs)", what); goto done; }
    if (iy >= 0 && labels) { tgd_fail(err, errlen, "%s: has labels 'y' and a labels file was given too", what); goto done; }
    if (tg_ndim(tg_st_tensor_at(f, ix)) > 4 || (iy >= 0 && tg_ndim(tg_st_tensor_at(f, iy)) > 4) ||
        (il >= 0 && tg_ndim(tg_st_tensor_at(f, il)) > 4)) {
        tgd_fail(err, errlen, "%s: a tensor has more than 4 dimensions", what);
        goto done;
    }
    char wx[300], wy[300], wl[300];
    tgd_array x, y, l;
    view(f, ix, wx, sizeof wx, what, &x);
    if (x.ints && x.numel > 0) x.ints = false; /* integer inputs are just numbers */
    if (iy >= 0) view(f, iy, wy, sizeof wy, what, &y);
    if (il >= 0) view(f, il, wl, sizeof wl, what, &l);
    ds = tgd_from_arrays(&x, il >= 0 ? &l : NULL, iy >= 0 ? &y : labels, opt, 1.0, err, errlen);
done:
    tg_st_free(f);
    return ds;
}
