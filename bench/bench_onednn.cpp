/* bench/bench_onednn.cpp - the CPU anchor for bench_lstm: one training step of oneDNN's fused RNN
 * primitive (LSTM, or GRU in PyTorch's reset-after form = oneDNN's "linear-before-reset" GRU) on the
 * same problem as bench/bench_lstm.c, `tapegrad bench` and bench/pytorch_lstm.py:
 *
 *   forward_training over T steps (zero initial state), MSE against a fixed random target on every
 *   output, backward (BPTT, weight and bias gradients), one Adam update (lr 1e-3, betas 0.9/0.999,
 *   eps 1e-8, PyTorch's formula) of every parameter.
 *
 * The parameters live in oneDNN's plain user layouts (ldigo weights, ldgo bias); whatever reorders the
 * primitives ask for (their preferred weight formats, chosen with format "any") are done inside the
 * timed step, since the weights change at every step. Gradients are zeroed in the step (oneDNN's RNN
 * backward accumulates into them, like a framework's zero_grad + backward).
 *
 * Built only when meson finds libdnnl (an optional dependency of this one benchmark; never of the
 * library or the tests). One thread: run under OMP_NUM_THREADS=1 (the program also sets it before
 * oneDNN starts) and taskset. Prints the same line format as bench_lstm.
 *
 * usage: bench_onednn [I H B T [steps [lstm|gru]]]     (default 128 256 32 100 20 lstm) */
#include <oneapi/dnnl/dnnl.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

using namespace dnnl;
using tag = memory::format_tag;
using dt = memory::data_type;

static double clock_s(clockid_t id) {
    timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* One parameter with its gradient and Adam moments, all in the user layout. */
struct param {
    memory value, grad;
    std::vector<float> m, v;
};

static float *ptr(const memory &mem) { return static_cast<float *>(mem.get_data_handle()); }
static size_t count(const memory &mem) { return mem.get_desc().get_size() / sizeof(float); }

/* mem in the layout `want`, reordered into `scratch` when the layouts differ */
static memory as_layout(const memory &mem, const memory::desc &want, memory &scratch, stream &s) {
    if (mem.get_desc() == want) return mem;
    if (!scratch || scratch.get_desc() != want) scratch = memory(want, mem.get_engine());
    reorder(mem, scratch).execute(s, const_cast<memory &>(mem), scratch);
    return scratch;
}

int main(int argc, char **argv) {
    setenv("OMP_NUM_THREADS", "1", 0);
    long I = argc > 1 ? atol(argv[1]) : 128, H = argc > 2 ? atol(argv[2]) : 256;
    long B = argc > 3 ? atol(argv[3]) : 32, T = argc > 4 ? atol(argv[4]) : 100;
    int steps = argc > 5 ? atoi(argv[5]) : 20, warmup = 3;
    std::string cell = argc > 6 ? argv[6] : "lstm";
    if (I < 1 || H < 1 || B < 1 || T < 1 || steps < 1 || (cell != "lstm" && cell != "gru")) {
        fprintf(stderr, "usage: bench_onednn [I H B T [steps [lstm|gru]]]\n");
        return 2;
    }
    const bool lstm = cell == "lstm";
    const long G = lstm ? 4 : 3, Gb = lstm ? 4 : 4; /* lbr GRU: a 4th bias block (b_hn) */
    engine eng(engine::kind::cpu, 0);
    stream s(eng);

    memory::desc x_md({T, B, I}, dt::f32, tag::tnc), y_md({T, B, H}, dt::f32, tag::tnc);
    memory::desc wl_user({1, 1, I, G, H}, dt::f32, tag::ldigo), wi_user({1, 1, H, G, H}, dt::f32, tag::ldigo);
    memory::desc b_user({1, 1, Gb, H}, dt::f32, tag::ldgo);
    memory::desc wl_any({1, 1, I, G, H}, dt::f32, tag::any), wi_any({1, 1, H, G, H}, dt::f32, tag::any);
    memory::desc none; /* zero initial state, final state not asked for */
    const auto dir = rnn_direction::unidirectional_left2right;

    primitive fwd, bwd;
    memory::desc fwd_wl, fwd_wi, bwd_wl, bwd_wi, dwl_md, dwi_md, db_md, ws_md;
    if (lstm) {
        lstm_forward::desc fd(prop_kind::forward_training, dir, x_md, none, none, wl_any, wi_any, b_user, y_md, none,
                              none);
        lstm_forward::primitive_desc fpd(fd, eng);
        lstm_backward::desc bd(prop_kind::backward, dir, x_md, none, none, wl_any, wi_any, b_user, y_md, none, none,
                               x_md, none, none, wl_any, wi_any, b_user, y_md, none, none);
        lstm_backward::primitive_desc bpd(bd, eng, fpd);
        fwd = lstm_forward(fpd), bwd = lstm_backward(bpd);
        fwd_wl = fpd.weights_layer_desc(), fwd_wi = fpd.weights_iter_desc(), ws_md = fpd.workspace_desc();
        bwd_wl = bpd.weights_layer_desc(), bwd_wi = bpd.weights_iter_desc();
        dwl_md = bpd.diff_weights_layer_desc(), dwi_md = bpd.diff_weights_iter_desc(), db_md = bpd.diff_bias_desc();
    } else {
        lbr_gru_forward::desc fd(prop_kind::forward_training, dir, x_md, none, wl_any, wi_any, b_user, y_md, none);
        lbr_gru_forward::primitive_desc fpd(fd, eng);
        lbr_gru_backward::desc bd(prop_kind::backward, dir, x_md, none, wl_any, wi_any, b_user, y_md, none, x_md,
                                  none, wl_any, wi_any, b_user, y_md, none);
        lbr_gru_backward::primitive_desc bpd(bd, eng, fpd);
        fwd = lbr_gru_forward(fpd), bwd = lbr_gru_backward(bpd);
        fwd_wl = fpd.weights_layer_desc(), fwd_wi = fpd.weights_iter_desc(), ws_md = fpd.workspace_desc();
        bwd_wl = bpd.weights_layer_desc(), bwd_wi = bpd.weights_iter_desc();
        dwl_md = bpd.diff_weights_layer_desc(), dwi_md = bpd.diff_weights_iter_desc(), db_md = bpd.diff_bias_desc();
    }

    /* parameters ~ U(±1/√H) as PyTorch; input ~ N(0,1), target ~ N(0, 0.5²) */
    std::mt19937 rng(1);
    std::uniform_real_distribution<float> uni(-1.0f / std::sqrt((float)H), 1.0f / std::sqrt((float)H));
    std::normal_distribution<float> nrm(0.0f, 1.0f);
    param P[3];
    const memory::desc user[3] = {wl_user, wi_user, b_user};
    for (int k = 0; k < 3; k++) {
        P[k].value = memory(user[k], eng);
        P[k].grad = memory(user[k], eng);
        size_t n = count(P[k].value);
        for (size_t i = 0; i < n; i++) ptr(P[k].value)[i] = uni(rng);
        P[k].m.assign(n, 0.0f);
        P[k].v.assign(n, 0.0f);
    }
    memory x(x_md, eng), y(y_md, eng), target(y_md, eng), dy(y_md, eng), dx(x_md, eng), ws(ws_md, eng);
    for (size_t i = 0; i < count(x); i++) ptr(x)[i] = nrm(rng);
    for (size_t i = 0; i < count(target); i++) ptr(target)[i] = 0.5f * nrm(rng);
    memory fwl, fwi, bwl, bwi, gwl, gwi, gb; /* reorder scratch in the primitives' layouts */

    const float lr = 1e-3f, b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
    std::vector<double> wall, cpu;
    double loss0 = 0, loss = 0;
    for (int it = 0; it < warmup + steps; it++) {
        double w0 = clock_s(CLOCK_MONOTONIC), c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
        /* forward */
        memory wl = as_layout(P[0].value, fwd_wl, fwl, s), wi = as_layout(P[1].value, fwd_wi, fwi, s);
        fwd.execute(s, {{DNNL_ARG_SRC_LAYER, x}, {DNNL_ARG_WEIGHTS_LAYER, wl}, {DNNL_ARG_WEIGHTS_ITER, wi},
                        {DNNL_ARG_BIAS, P[2].value}, {DNNL_ARG_DST_LAYER, y}, {DNNL_ARG_WORKSPACE, ws}});
        s.wait();
        /* MSE (mean over every element) and its gradient */
        const float *py = ptr(y), *pt = ptr(target);
        float *pdy = ptr(dy);
        const size_t n = count(y);
        double sum = 0;
        const float scale = 2.0f / (float)n;
        for (size_t i = 0; i < n; i++) {
            float d = py[i] - pt[i];
            sum += (double)d * d;
            pdy[i] = scale * d;
        }
        loss = sum / (double)n;
        /* backward: zeroed gradients (oneDNN accumulates), weights in the backward's layouts */
        for (int k = 0; k < 3; k++) memset(ptr(P[k].grad), 0, count(P[k].grad) * sizeof(float));
        memory bl = as_layout(P[0].value, bwd_wl, bwl, s), bi = as_layout(P[1].value, bwd_wi, bwi, s);
        const bool gl_user = dwl_md == wl_user, gi_user = dwi_md == wi_user, gb_user = db_md == b_user;
        if (!gl_user && !gwl) gwl = memory(dwl_md, eng);
        if (!gi_user && !gwi) gwi = memory(dwi_md, eng);
        if (!gb_user && !gb) gb = memory(db_md, eng);
        if (!gl_user) memset(gwl.get_data_handle(), 0, dwl_md.get_size());
        if (!gi_user) memset(gwi.get_data_handle(), 0, dwi_md.get_size());
        if (!gb_user) memset(gb.get_data_handle(), 0, db_md.get_size());
        memory dwl = gl_user ? P[0].grad : gwl, dwi = gi_user ? P[1].grad : gwi, db = gb_user ? P[2].grad : gb;
        bwd.execute(s, {{DNNL_ARG_SRC_LAYER, x}, {DNNL_ARG_WEIGHTS_LAYER, bl}, {DNNL_ARG_WEIGHTS_ITER, bi},
                        {DNNL_ARG_BIAS, P[2].value}, {DNNL_ARG_DST_LAYER, y}, {DNNL_ARG_DIFF_DST_LAYER, dy},
                        {DNNL_ARG_WORKSPACE, ws}, {DNNL_ARG_DIFF_SRC_LAYER, dx},
                        {DNNL_ARG_DIFF_WEIGHTS_LAYER, dwl}, {DNNL_ARG_DIFF_WEIGHTS_ITER, dwi},
                        {DNNL_ARG_DIFF_BIAS, db}});
        if (!gl_user) reorder(dwl, P[0].grad).execute(s, dwl, P[0].grad);
        if (!gi_user) reorder(dwi, P[1].grad).execute(s, dwi, P[1].grad);
        if (!gb_user) reorder(db, P[2].grad).execute(s, db, P[2].grad);
        s.wait();
        /* Adam (PyTorch's update) */
        const int step = it + 1;
        const float c1 = 1.0f - std::pow(b1, (float)step), c2 = std::sqrt(1.0f - std::pow(b2, (float)step));
        for (int k = 0; k < 3; k++) {
            float *p = ptr(P[k].value), *g = ptr(P[k].grad), *m = P[k].m.data(), *v = P[k].v.data();
            const size_t np = P[k].m.size();
            for (size_t i = 0; i < np; i++) {
                m[i] = b1 * m[i] + (1 - b1) * g[i];
                v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
                p[i] -= lr / c1 * m[i] / (std::sqrt(v[i]) / c2 + eps);
            }
        }
        double w1 = clock_s(CLOCK_MONOTONIC), c1t = clock_s(CLOCK_PROCESS_CPUTIME_ID);
        if (it == 0) loss0 = loss;
        if (it >= warmup) {
            wall.push_back(1e3 * (w1 - w0));
            cpu.push_back(1e3 * (c1t - c0));
        }
    }
    double flops = 3.0 * T * 2.0 * B * (I + H) * G * H;
    double mw = median(wall), mc = median(cpu);
    printf("bench_onednn %s F32 I=%ld H=%ld B=%ld T=%ld: wall median %.2f ms (min %.2f), cpu median %.2f ms "
           "(min %.2f), %d steps; loss %.5f -> %.5f; %.1f GFLOP/s; oneDNN %d.%d.%d\n",
           cell.c_str(), I, H, B, T, mw, *std::min_element(wall.begin(), wall.end()), mc,
           *std::min_element(cpu.begin(), cpu.end()), steps, loss0, loss, flops / (mw * 1e-3) / 1e9,
           dnnl_version()->major, dnnl_version()->minor, dnnl_version()->patch);
    return 0;
}
