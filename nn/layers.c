/* nn/layers.c - Linear (y = x·Wᵀ + b with W [O, I], one tg_linear) and Embedding (row lookup with
 * tg_embedding). Dimension letters: I inputs, O outputs, V vocabulary rows, E embedding width. */
#include <tapegrad/autograd.h>
#include <tapegrad/nn.h>
#include <tapegrad/ops.h>
#include "tensor/alloc.h"

#include <math.h>
#include <stdlib.h>

/* Adds a new tensor to params under name; returns it borrowed (params holds the reference). */
static tg_tensor *add_new(tg_params *params, const char *name, tg_tensor *t) {
    if (!t) return NULL;
    int s = tg_params_add(params, name, t);
    tg_release(t);
    if (s) return NULL;
    tg_set_requires_grad(t, true);
    return t;
}

tg_linear_layer *tg_linear_layer_new(int64_t in_features, int64_t out_features, bool bias, tg_dtype dtype,
                                     tg_rng *rng) {
    const char *fn = "tg_linear_layer_new";
    if (in_features <= 0 || out_features <= 0) {
        tg_error(fn, "in_features %lld, out_features %lld: both must be positive", (long long)in_features,
                 (long long)out_features);
        return NULL;
    }
    tg_linear_layer *l = tg_calloc(1, sizeof *l);
    if (!l) { tg_error(fn, "out of memory"); return NULL; }
    l->in_features = in_features;
    l->out_features = out_features;
    l->params = tg_params_new();
    if (!rng) rng = tg_default_rng();
    /* PyTorch: kaiming_uniform_(a=√5) on W, which is U(±1/√I), and U(±1/√I) on b */
    double bound = 1.0 / sqrt((double)in_features);
    if (l->params) l->weight = add_new(l->params, "weight", tg_rand_uniform(rng, dtype, TG_SHAPE(out_features, in_features), -bound, bound));
    if (l->weight && bias) l->bias = add_new(l->params, "bias", tg_rand_uniform(rng, dtype, TG_SHAPE(out_features), -bound, bound));
    if (!l->weight || (bias && !l->bias)) {
        tg_linear_layer_free(l);
        return NULL;
    }
    return l;
}

void tg_linear_layer_free(tg_linear_layer *l) {
    if (!l) return;
    tg_params_free(l->params);
    free(l);
}

tg_tensor *tg_linear_layer_forward(const tg_linear_layer *l, const tg_tensor *x) {
    if (!l) {
        if (!tg_error_pending()) tg_error("tg_linear_layer_forward", "layer is NULL");
        return NULL;
    }
    return tg_linear(x, l->weight, l->bias);
}

tg_embedding_layer *tg_embedding_layer_new(int64_t num_embeddings, int64_t embedding_dim, tg_dtype dtype,
                                           tg_rng *rng) {
    const char *fn = "tg_embedding_layer_new";
    if (num_embeddings <= 0 || embedding_dim <= 0) {
        tg_error(fn, "num_embeddings %lld, embedding_dim %lld: both must be positive", (long long)num_embeddings,
                 (long long)embedding_dim);
        return NULL;
    }
    tg_embedding_layer *e = tg_calloc(1, sizeof *e);
    if (!e) { tg_error(fn, "out of memory"); return NULL; }
    e->num_embeddings = num_embeddings;
    e->embedding_dim = embedding_dim;
    e->params = tg_params_new();
    if (e->params)
        e->weight = add_new(e->params, "weight", tg_rand_normal(rng, dtype, TG_SHAPE(num_embeddings, embedding_dim), 0, 1));
    if (!e->weight) {
        tg_embedding_layer_free(e);
        return NULL;
    }
    return e;
}

void tg_embedding_layer_free(tg_embedding_layer *e) {
    if (!e) return;
    tg_params_free(e->params);
    free(e);
}

tg_tensor *tg_embedding_layer_forward(const tg_embedding_layer *e, int ndim, const int64_t *shape,
                                      const int64_t *index) {
    if (!e) {
        if (!tg_error_pending()) tg_error("tg_embedding_layer_forward", "layer is NULL");
        return NULL;
    }
    return tg_embedding(e->weight, ndim, shape, index);
}
