/* nn/cell_lang.c - the cell language: a definition of one time step, typed as text, parsed into a small
 * expression graph, lowered, and run by one generic step function with public tape ops only (like every
 * C cell: no backward code here). Uses only the public tg_cell struct and ops, so a registry change
 * elsewhere does not touch it. The notation is documented in include/tapegrad/cell_lang.h and
 * docs/cell_lang.md.
 *
 * Dimension letters: B batch, I input size of the layer, H hidden size, G gate blocks.
 *
 * Pipeline:
 *   lex + parse  -> nodes (hash-consed, so `h.i` written twice is one node), each with a static type
 *                   (scalar constant, row [B, w], vector [w], matrix [r, c]; w symbolic: n, n·H or n·I),
 *                   checked as it is built, errors carrying the line and column of the token;
 *   lower        -> recurrent projections: when every block of E is used, E·W_hhᵀ + b_hh is one GEMM
 *                   (and when every block only ever appears as x.k + E.k, that sum is one tg_linear_add
 *                   onto xproj, exactly what the C LSTM does); blocks of a [B, G·H] matrix come out of
 *                   one tg_gates pass, with sigmoid/tanh/relu fused into it when a block feeds only that;
 *   schedule     -> the nodes the states need, in dependency order; the step walks it once.
 */
#include <tapegrad/autograd.h>
#include <tapegrad/cell_lang.h>
#include <tapegrad/nn.h>
#include <tapegrad/ops.h>
#include "nn/cells_internal.h"
#include "tensor/alloc.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_NODES 320     /* after parsing; lowering adds at most 3 per node */
#define MAX_EVAL 1024     /* nodes after lowering (the step's value array lives on the stack) */
#define MAX_NAME 48
#define MAX_LOCALS 128
#define MAX_DEPTH 48      /* nesting of parentheses and calls */
#define MAX_CONSTRAINTS 16
#define LN_EPS 1e-5       /* inside the square root, as PyTorch's LayerNorm */

static void set_name(char *dst, const char *src) {
    size_t n = strnlen(src, MAX_NAME - 1);
    memcpy(dst, src, n);
    dst[n] = 0;
}

/* ---- dimensions and types ------------------------------------------------------------------------- */

enum { SYM_ONE, SYM_H, SYM_I };
typedef struct dim { int64_t n; int sym; } dim;   /* n · (1 | H | I) */

enum { K_SCALAR, K_ROW, K_VEC, K_MAT };           /* constant, [B, w], [w], [w, w2] */

static bool dim_same(dim a, dim b) { return a.n == b.n && a.sym == b.sym; }
/* differ for every size (no I involved): a definite mismatch */
static bool dim_clash(dim a, dim b) { return !dim_same(a, b) && a.sym != SYM_I && b.sym != SYM_I; }

static const char *dim_str(dim d, char *buf, size_t n) {
    const char *s = d.sym == SYM_H ? "H" : d.sym == SYM_I ? "I" : "";
    if (d.sym != SYM_ONE && d.n == 1) snprintf(buf, n, "%s", s);
    else snprintf(buf, n, "%lld%s", (long long)d.n, s);
    return buf;
}

static int64_t dim_value(dim d, int64_t I, int64_t H) { return d.n * (d.sym == SYM_H ? H : d.sym == SYM_I ? I : 1); }

/* ---- nodes ------------------------------------------------------------------------------------------- */

typedef enum op {
    N_CONST,   /* v */
    N_STATE,   /* state_in[k] */
    N_XRAW,    /* x_t [B, I] */
    N_XBLOCK,  /* block k of xproj (lowered away) */
    N_PARAM,   /* parameter k: 0 weight_ih, 1 weight_hh, 2 bias_ih, 3 bias_hh, 4 + e extra e */
    N_PBLOCK,  /* block k of parameter node a */
    N_PROJ,    /* a.k = a·W_hh,kᵀ + b_hh,k (lowered away) */
    N_LINEAR,  /* a·bᵀ + c (c < 0: none) */
    N_ADD, N_SUB, N_MUL, N_DIV, N_NEG,
    N_ADDS,    /* a + v */
    N_MULS,    /* v·a */
    N_RSUBS,   /* v - a */
    N_RDIVS,   /* v / a */
    N_FN,      /* g_funcs[k](a) */
    N_LN,      /* layernorm(a; gain b, shift c) */
    N_CAT,     /* concat(a, b[, c]) along the last axis */
    N_PART,    /* part(a, k, v): block k of v equal blocks of a's last axis (a view) */
    N_XPROJ,   /* the whole xproj [B, G·H] */
    N_HPROJ,   /* a·W_hhᵀ + b_hh [B, G·H] */
    N_PRE,     /* xproj + a·W_hhᵀ + b_hh [B, G·H], one tg_linear_add */
    N_MBLOCK,  /* block k of matrix node a (lowered into N_SEL) */
    N_GATES,   /* tg_gates(a, acts) [G, B, H] */
    N_SEL,     /* tg_select(a, k) */
    N_ALIAS,   /* the value of a */
    N_DEAD
} op;

typedef struct node {
    op op;
    int kind;
    int a, b, c, k;      /* operands (-1 none); k: block, state, parameter or function */
    double v;
    dim w, w2;           /* width (row, vector; matrix rows) and matrix columns */
    int line, col;
    bool maybe_absent;   /* a parameter that is absent when the model has no biases */
    char acts[33];       /* N_GATES: tg_gates' letters */
} node;

/* ---- functions ----------------------------------------------------------------------------------------- */

static double sigmoid_d(double x) { return 1.0 / (1.0 + exp(-x)); }
static double relu_d(double x) { return x > 0 ? x : 0; }
static double softplus_d(double x) { return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x)); }

typedef struct func {
    const char *name;
    tg_tensor *(*op)(const tg_tensor *);
    double (*fold)(double);
    char gate;           /* tg_gates letter when it can be fused there, else 0 */
} func;

static const func g_funcs[] = {
    {"sigmoid",  tg_sigmoid,  sigmoid_d,  's'},
    {"tanh",     tg_tanh,     tanh,       't'},
    {"relu",     tg_relu,     relu_d,     'r'},
    {"exp",      tg_exp,      exp,        0},
    {"log",      tg_log,      log,        0},
    {"sqrt",     tg_sqrt,     sqrt,       0},
    {"abs",      tg_abs,      fabs,       0},
    {"softplus", tg_softplus, softplus_d, 0},
};
#define N_FUNCS ((int)(sizeof g_funcs / sizeof g_funcs[0]))
/* the functions with their own rule (not elementwise) */
static const char *const g_special[] = {"linear", "layernorm", "concat", "part"};
#define N_SPECIAL ((int)(sizeof g_special / sizeof g_special[0]))

/* ---- the definition ----------------------------------------------------------------------------------- */

enum { INIT_UNIFORM_DEFAULT, INIT_UNIFORM, INIT_CONSTANT };

typedef struct param_decl {
    char name[MAX_NAME];
    int ndim;
    dim shape[2];
    int init;
    double lo, hi;       /* uniform(lo, hi); constant: lo */
    bool if_bias;
    int line, col;
} param_decl;

typedef struct constraint { dim a, b; int line, col; } constraint;

struct tg_cell_def {
    tg_cell cell;                       /* user = this */
    char name[MAX_NAME];
    char *source;
    int G;
    char gate_names[32][MAX_NAME];
    int n_states;
    char state_names_buf[TG_CELL_MAX_STATES][MAX_NAME];
    const char *state_names[TG_CELL_MAX_STATES];
    int n_extra;
    param_decl extra[TG_CELL_MAX_EXTRA];
    const char *extra_names[TG_CELL_MAX_EXTRA];
    bool no_bias;
    bool hh_override;                   /* param weight_hh given */
    param_decl hh;
    constraint cons[MAX_CONSTRAINTS];
    int n_cons;
    node *nodes;
    int n_nodes;
    int out[TG_CELL_MAX_STATES];        /* node of each new state */
    int *sched;                         /* nodes in evaluation order */
    int n_sched;
};

/* ---- lexer ------------------------------------------------------------------------------------------ */

enum { T_EOF, T_NL, T_IDENT, T_NUM, T_PUNCT };

typedef struct token {
    int type;
    char text[MAX_NAME];
    bool prime;          /* an identifier written with ' */
    double num;
    char punct;
    int line, col;
} token;

typedef struct parser {
    tg_cell_def *d;
    const char *src;
    size_t pos;
    int line, col;
    int nest;            /* open ( and [: newlines inside are spaces */
    int depth;
    token tok;
    char *err;
    size_t errlen;
    bool failed;
    int n_locals;
    char local_name[MAX_LOCALS][MAX_NAME];
    int local_node[MAX_LOCALS];
    int local_line[MAX_LOCALS];
    int assigned_line[TG_CELL_MAX_STATES], assigned_col[TG_CELL_MAX_STATES]; /* 0: s' not yet assigned */
    bool declared_states;
    int state_line[TG_CELL_MAX_STATES], state_col[TG_CELL_MAX_STATES];
} parser;

static void fail_at(parser *ps, int line, int col, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void fail_at(parser *ps, int line, int col, const char *fmt, ...) {
    if (ps->failed) return;
    ps->failed = true;
    if (!ps->err || !ps->errlen) return;
    int n = snprintf(ps->err, ps->errlen, "%d:%d: ", line, col);
    if (n < 0 || (size_t)n >= ps->errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ps->err + n, ps->errlen - (size_t)n, fmt, ap);
    va_end(ap);
}
#define FAIL(ps, t, ...) fail_at((ps), (t).line, (t).col, __VA_ARGS__)

static const char *tok_desc(const token *t, char *buf, size_t n) {
    switch (t->type) {
    case T_EOF: return "the end of the definition";
    case T_NL: return "the end of the line";
    case T_IDENT: snprintf(buf, n, "'%s%s'", t->text, t->prime ? "'" : ""); return buf;
    case T_NUM: snprintf(buf, n, "the number %g", t->num); return buf;
    default: snprintf(buf, n, "'%c'", t->punct); return buf;
    }
}

/* Reads the next token into ps->tok. */
static void next(parser *ps) {
    const char *s = ps->src;
    for (;;) {
        char ch = s[ps->pos];
        if (ch == '#') {
            while (s[ps->pos] && s[ps->pos] != '\n') { ps->pos++; ps->col++; }
            continue;
        }
        if (ch == '\n' && ps->nest > 0) { ps->pos++; ps->line++; ps->col = 1; continue; }
        if (ch == ' ' || ch == '\t' || ch == '\r') { ps->pos++; ps->col++; continue; }
        break;
    }
    token *t = &ps->tok;
    memset(t, 0, sizeof *t);
    t->line = ps->line;
    t->col = ps->col;
    char ch = s[ps->pos];
    if (!ch) { t->type = T_EOF; return; }
    if (ch == '\n' || ch == ';') {
        t->type = T_NL;
        ps->pos++;
        if (ch == '\n') { ps->line++; ps->col = 1; } else ps->col++;
        return;
    }
    if (isalpha((unsigned char)ch) || ch == '_') {
        size_t n = 0;
        while (isalnum((unsigned char)s[ps->pos]) || s[ps->pos] == '_') {
            if (n + 1 < MAX_NAME) t->text[n++] = s[ps->pos];
            else { FAIL(ps, *t, "name longer than %d characters", MAX_NAME - 1); }
            ps->pos++;
            ps->col++;
        }
        t->text[n] = 0;
        t->type = T_IDENT;
        if (s[ps->pos] == '\'') { t->prime = true; ps->pos++; ps->col++; }
        return;
    }
    if (isdigit((unsigned char)ch) || (ch == '.' && isdigit((unsigned char)s[ps->pos + 1]))) {
        char *end;
        t->num = strtod(s + ps->pos, &end);
        size_t len = (size_t)(end - (s + ps->pos));
        /* strtod also takes "inf", "nan", hex: only plain decimals are numbers here */
        for (size_t i = 0; i < len; i++) {
            char c = s[ps->pos + i];
            if (!(isdigit((unsigned char)c) || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-')) {
                len = i;
                char buf[64];
                snprintf(buf, sizeof buf, "%.*s", (int)(len < 60 ? len : 60), s + ps->pos);
                t->num = strtod(buf, NULL);
                break;
            }
        }
        if (!isfinite(t->num)) FAIL(ps, *t, "number out of range");
        ps->pos += len;
        ps->col += (int)len;
        t->type = T_NUM;
        return;
    }
    if (strchr("()[],.=+-*/", ch)) {
        t->type = T_PUNCT;
        t->punct = ch;
        if (ch == '(' || ch == '[') ps->nest++;
        if ((ch == ')' || ch == ']') && ps->nest > 0) ps->nest--;
        ps->pos++;
        ps->col++;
        return;
    }
    if ((unsigned char)ch >= 0x80) FAIL(ps, *t, "unexpected non-ASCII character (byte 0x%02x); the notation is ASCII",
                                        (unsigned char)ch);
    else FAIL(ps, *t, "unexpected character '%c'", isprint((unsigned char)ch) ? ch : '?');
    t->type = T_EOF;
}

static bool is_punct(const parser *ps, char c) { return ps->tok.type == T_PUNCT && ps->tok.punct == c; }
static bool is_word(const parser *ps, const char *w) {
    return ps->tok.type == T_IDENT && !ps->tok.prime && strcmp(ps->tok.text, w) == 0;
}

static bool expect(parser *ps, char c, const char *what) {
    if (is_punct(ps, c)) { next(ps); return true; }
    char b[80];
    FAIL(ps, ps->tok, "expected %s, found %s", what, tok_desc(&ps->tok, b, sizeof b));
    return false;
}

/* ---- node construction (with hash-consing and type checks) ------------------------------------------- */

static int add_node(parser *ps, node n) {
    tg_cell_def *d = ps->d;
    if (ps->failed) return -1;
    for (int i = 0; i < d->n_nodes; i++) {
        const node *m = &d->nodes[i];
        if (m->op == n.op && m->a == n.a && m->b == n.b && m->c == n.c && m->k == n.k &&
            memcmp(&m->v, &n.v, sizeof n.v) == 0)
            return i;
    }
    if (d->n_nodes >= MAX_NODES) {
        fail_at(ps, n.line, n.col, "definition too large: more than %d operations", MAX_NODES);
        return -1;
    }
    d->nodes[d->n_nodes] = n;
    return d->n_nodes++;
}

static node mk(op o, int kind, int line, int col) {
    node n = {.op = o, .kind = kind, .a = -1, .b = -1, .c = -1, .k = 0, .line = line, .col = col};
    return n;
}

static const char *type_str(const node *n, char *buf, size_t len) {
    char a[24], b[24];
    switch (n->kind) {
    case K_SCALAR: snprintf(buf, len, "a number"); break;
    case K_ROW: snprintf(buf, len, "[B, %s]", dim_str(n->w, a, sizeof a)); break;
    case K_VEC: snprintf(buf, len, "[%s]", dim_str(n->w, a, sizeof a)); break;
    default: snprintf(buf, len, "[%s, %s]", dim_str(n->w, a, sizeof a), dim_str(n->w2, b, sizeof b)); break;
    }
    return buf;
}

/* a and b must be equal for the sizes of the run: a clash is an error now, a possible clash with I a
 * check at make_params. Returns false after the error. */
static bool same_width(parser *ps, dim a, dim b, int line, int col, const char *fmt_ctx) {
    if (dim_same(a, b)) return true;
    if (dim_clash(a, b)) { fail_at(ps, line, col, "%s", fmt_ctx); return false; }
    tg_cell_def *d = ps->d;
    for (int i = 0; i < d->n_cons; i++)
        if ((dim_same(d->cons[i].a, a) && dim_same(d->cons[i].b, b)) ||
            (dim_same(d->cons[i].a, b) && dim_same(d->cons[i].b, a)))
            return true;
    if (d->n_cons == MAX_CONSTRAINTS) { fail_at(ps, line, col, "too many size constraints"); return false; }
    d->cons[d->n_cons++] = (constraint){a, b, line, col};
    return true;
}

static int binary(parser *ps, op o, int a, int b, const token *at) {
    if (ps->failed || a < 0 || b < 0) return -1;
    node A = ps->d->nodes[a], Bn = ps->d->nodes[b];
    static const char sym[] = {[N_ADD] = '+', [N_SUB] = '-', [N_MUL] = '*', [N_DIV] = '/'};
    char s1[64], s2[64], msg[160];
    if (A.kind == K_MAT || Bn.kind == K_MAT) {
        const node *m = A.kind == K_MAT ? &A : &Bn;
        FAIL(ps, *at, "a matrix %s cannot be used in '%c'; use it in linear(E, W) or take a gate block of it",
             type_str(m, s1, sizeof s1), sym[o]);
        return -1;
    }
    if (A.kind == K_SCALAR && Bn.kind == K_SCALAR) {
        double v = o == N_ADD ? A.v + Bn.v : o == N_SUB ? A.v - Bn.v : o == N_MUL ? A.v * Bn.v : A.v / Bn.v;
        if (!isfinite(v)) { FAIL(ps, *at, "constant expression is not finite"); return -1; }
        node n = mk(N_CONST, K_SCALAR, at->line, at->col);
        n.v = v;
        return add_node(ps, n);
    }
    if (A.kind == K_SCALAR || Bn.kind == K_SCALAR) {
        bool left = A.kind == K_SCALAR;
        double v = left ? A.v : Bn.v;
        const node *t = left ? &Bn : &A;
        node n = mk(N_ADDS, t->kind, at->line, at->col);
        n.w = t->w;
        n.maybe_absent = t->maybe_absent;
        n.a = left ? b : a;
        switch (o) {
        case N_ADD: n.op = N_ADDS; break;
        case N_SUB: if (left) n.op = N_RSUBS; else { n.op = N_ADDS; v = -v; } break;
        case N_MUL: n.op = N_MULS; break;
        default:
            if (left) n.op = N_RDIVS;
            else {
                if (v == 0) { FAIL(ps, *at, "division by the constant 0"); return -1; }
                n.op = N_MULS; v = 1.0 / v;
            }
        }
        n.v = v;
        return add_node(ps, n);
    }
    snprintf(msg, sizeof msg, "shape mismatch: %s %c %s", type_str(&A, s1, sizeof s1), sym[o], type_str(&Bn, s2, sizeof s2));
    if (!same_width(ps, A.w, Bn.w, at->line, at->col, msg)) return -1;
    node n = mk(o, A.kind == K_ROW || Bn.kind == K_ROW ? K_ROW : K_VEC, at->line, at->col);
    n.w = A.kind == K_ROW ? A.w : Bn.w;
    n.a = a;
    n.b = b;
    return add_node(ps, n);
}

/* ---- parameters ----------------------------------------------------------------------------------------- */

/* the node of parameter k (0..3 standard, 4 + e extra), typed from its declaration */
static int param_node(parser *ps, int k, int line, int col) {
    tg_cell_def *d = ps->d;
    node n = mk(N_PARAM, K_MAT, line, col);
    n.k = k;
    dim GH = {d->G, SYM_H};
    const param_decl *pd = k >= 4 ? &d->extra[k - 4] : k == 1 && d->hh_override ? &d->hh : NULL;
    if (pd) {
        n.kind = pd->ndim == 1 ? K_VEC : K_MAT;
        n.w = pd->shape[0];
        if (pd->ndim == 2) n.w2 = pd->shape[1];
        n.maybe_absent = pd->if_bias;
    } else if (k == 0) { n.w = GH; n.w2 = (dim){1, SYM_I}; }
    else if (k == 1) { n.w = GH; n.w2 = (dim){1, SYM_H}; }
    else { n.kind = K_VEC; n.w = GH; n.maybe_absent = true; }
    return add_node(ps, n);
}

static const char *const g_std_params[] = {"weight_ih", "weight_hh", "bias_ih", "bias_hh"};

static int find_param(const tg_cell_def *d, const char *name) {
    for (int k = 0; k < 4; k++)
        if (strcmp(name, g_std_params[k]) == 0) return k;
    for (int e = 0; e < d->n_extra; e++)
        if (strcmp(name, d->extra[e].name) == 0) return 4 + e;
    return -1;
}

static int find_gate(const tg_cell_def *d, const char *name) {
    for (int g = 0; g < d->G; g++)
        if (strcmp(d->gate_names[g], name) == 0) return g;
    return -1;
}

static int find_state(const tg_cell_def *d, const char *name) {
    for (int s = 0; s < d->n_states; s++)
        if (strcmp(d->state_names_buf[s], name) == 0) return s;
    return -1;
}

static const char *gate_list(const tg_cell_def *d, char *buf, size_t n) {
    size_t o = 0;
    buf[0] = 0;
    for (int g = 0; g < d->G && o < n; g++) o += (size_t)snprintf(buf + o, n - o, "%s%s", g ? ", " : "", d->gate_names[g]);
    return buf;
}

/* ---- expressions ------------------------------------------------------------------------------------------ */

static int expr(parser *ps);

/* E.k where E is node `base` and the block name is the current token */
static int block_of(parser *ps, int base, const token *dot) {
    tg_cell_def *d = ps->d;
    char b[80];
    if (ps->tok.type != T_IDENT || ps->tok.prime) {
        FAIL(ps, ps->tok, "expected a gate block name after '.', found %s", tok_desc(&ps->tok, b, sizeof b));
        return -1;
    }
    token bt = ps->tok;
    int k = find_gate(d, bt.text);
    if (k < 0) {
        char gl[400];
        FAIL(ps, bt, "unknown gate block '%s' (gates: %s)", bt.text, gate_list(d, gl, sizeof gl));
        return -1;
    }
    next(ps);
    node B = d->nodes[base];
    char s1[64];
    dim H = {1, SYM_H}, GH = {d->G, SYM_H};
    if (B.op == N_XRAW) {
        node n = mk(N_XBLOCK, K_ROW, dot->line, dot->col);
        n.k = k;
        n.w = H;
        return add_node(ps, n);
    }
    if (B.op == N_PARAM) {
        if (!dim_same(B.w, GH)) {
            char s2[24];
            FAIL(ps, *dot, "%s is %s: only a parameter with G·H = %s rows has gate blocks", B.k < 4 ? g_std_params[B.k] : d->extra[B.k - 4].name, type_str(&B, s1, sizeof s1), dim_str(GH, s2, sizeof s2));
            return -1;
        }
        node n = mk(N_PBLOCK, B.kind, dot->line, dot->col);
        n.a = base;
        n.k = k;
        n.w = H;
        n.w2 = B.w2;
        n.maybe_absent = B.maybe_absent;
        return add_node(ps, n);
    }
    if (B.kind != K_ROW) {
        FAIL(ps, *dot, "'.%s' takes a gate block of x, of a parameter, or of the recurrent projection of a [B, H] "
             "value; this is %s", bt.text, type_str(&B, s1, sizeof s1));
        return -1;
    }
    if (d->hh_override && d->hh.ndim != 2) {
        FAIL(ps, *dot, "'.%s' projects through weight_hh, which this definition declares as a vector", bt.text);
        return -1;
    }
    if (d->hh_override && !dim_same(d->hh.shape[0], GH)) {
        char s2[24];
        FAIL(ps, *dot, "'.%s' needs weight_hh with G·H = %s rows", bt.text, dim_str(GH, s2, sizeof s2));
        return -1;
    }
    dim cols = d->hh_override ? d->hh.shape[1] : H;
    char msg[160], s2[24];
    snprintf(msg, sizeof msg, "shape mismatch: the recurrent projection '.%s' needs [B, %s], this is %s", bt.text,
             dim_str(cols, s2, sizeof s2), type_str(&B, s1, sizeof s1));
    if (!same_width(ps, B.w, cols, dot->line, dot->col, msg)) return -1;
    node n = mk(N_PROJ, K_ROW, dot->line, dot->col);
    n.a = base;
    n.k = k;
    n.w = H;
    return add_node(ps, n);
}

static int call(parser *ps, const token *name) {
    int args[4], n_args = 0;
    token at[4];
    next(ps); /* ( */
    if (!is_punct(ps, ')')) {
        for (;;) {
            if (n_args == 4) { FAIL(ps, ps->tok, "too many arguments to %s", name->text); return -1; }
            at[n_args] = ps->tok;
            args[n_args] = expr(ps);
            if (ps->failed) return -1;
            n_args++;
            if (is_punct(ps, ',')) { next(ps); continue; }
            break;
        }
    }
    if (!expect(ps, ')', "',' or ')' closing the call")) return -1;
    node *nd = ps->d->nodes;
    char s1[64], s2[64], msg[200];
    for (int f = 0; f < N_FUNCS; f++) {
        if (strcmp(name->text, g_funcs[f].name)) continue;
        if (n_args != 1) { FAIL(ps, *name, "%s takes 1 argument, got %d", name->text, n_args); return -1; }
        node A = nd[args[0]];
        if (A.kind == K_MAT) {
            FAIL(ps, at[0], "%s of a matrix %s: use the matrix in linear(E, W)", name->text, type_str(&A, s1, sizeof s1));
            return -1;
        }
        if (A.kind == K_SCALAR) {
            double v = g_funcs[f].fold(A.v);
            if (!isfinite(v)) { FAIL(ps, *name, "%s(%g) is not finite", name->text, A.v); return -1; }
            node n = mk(N_CONST, K_SCALAR, name->line, name->col);
            n.v = v;
            return add_node(ps, n);
        }
        node n = mk(N_FN, A.kind, name->line, name->col);
        n.a = args[0];
        n.k = f;
        n.w = A.w;
        return add_node(ps, n);
    }
    if (strcmp(name->text, "linear") == 0) {
        if (n_args < 2 || n_args > 3) { FAIL(ps, *name, "linear takes 2 or 3 arguments (E, W[, b]), got %d", n_args); return -1; }
        node E = nd[args[0]], W = nd[args[1]];
        if (E.kind != K_ROW) { FAIL(ps, at[0], "linear: E must be [B, w], this is %s", type_str(&E, s1, sizeof s1)); return -1; }
        if (W.kind != K_MAT) { FAIL(ps, at[1], "linear: W must be a matrix parameter, this is %s", type_str(&W, s1, sizeof s1)); return -1; }
        snprintf(msg, sizeof msg, "shape mismatch: linear(%s, %s): E's width must be W's number of columns",
                 type_str(&E, s1, sizeof s1), type_str(&W, s2, sizeof s2));
        if (!same_width(ps, E.w, W.w2, name->line, name->col, msg)) return -1;
        node n = mk(N_LINEAR, K_ROW, name->line, name->col);
        n.a = args[0];
        n.b = args[1];
        n.w = W.w;
        if (n_args == 3) {
            node Bv = nd[args[2]];
            snprintf(msg, sizeof msg, "shape mismatch: linear's bias is %s, W has %s rows", type_str(&Bv, s1, sizeof s1),
                     dim_str(W.w, s2, sizeof s2));
            if (Bv.kind != K_VEC) { FAIL(ps, at[2], "linear: b must be a vector parameter, this is %s", type_str(&Bv, s1, sizeof s1)); return -1; }
            if (!same_width(ps, Bv.w, W.w, at[2].line, at[2].col, msg)) return -1;
            n.c = args[2];
        }
        return add_node(ps, n);
    }
    if (strcmp(name->text, "layernorm") == 0) {
        if (n_args < 2 || n_args > 3) {
            FAIL(ps, *name, "layernorm takes 2 or 3 arguments (E, gain[, shift]), got %d", n_args);
            return -1;
        }
        node E = nd[args[0]];
        if (E.kind != K_ROW) { FAIL(ps, at[0], "layernorm: E must be [B, w], this is %s", type_str(&E, s1, sizeof s1)); return -1; }
        for (int i = 1; i < n_args; i++) {
            node P = nd[args[i]];
            if (P.kind != K_VEC) {
                FAIL(ps, at[i], "layernorm: the %s must be a vector parameter, this is %s", i == 1 ? "gain" : "shift",
                     type_str(&P, s1, sizeof s1));
                return -1;
            }
            snprintf(msg, sizeof msg, "shape mismatch: layernorm of %s with a %s %s", type_str(&E, s1, sizeof s1),
                     i == 1 ? "gain" : "shift", type_str(&P, s2, sizeof s2));
            if (!same_width(ps, E.w, P.w, at[i].line, at[i].col, msg)) return -1;
        }
        node n = mk(N_LN, K_ROW, name->line, name->col);
        n.a = args[0];
        n.b = args[1];
        n.c = n_args == 3 ? args[2] : -1;
        n.w = E.w;
        return add_node(ps, n);
    }
    if (strcmp(name->text, "concat") == 0) {
        if (n_args < 2 || n_args > 3) { FAIL(ps, *name, "concat takes 2 or 3 arguments, got %d", n_args); return -1; }
        dim w = {0, 0};
        for (int i = 0; i < n_args; i++) {
            node A = nd[args[i]];
            if (A.kind != K_ROW) { FAIL(ps, at[i], "concat: each argument must be [B, w], this is %s", type_str(&A, s1, sizeof s1)); return -1; }
            if (i > 0 && A.w.sym != w.sym) {
                FAIL(ps, at[i], "concat: widths %s and %s cannot be added (use one size letter)", dim_str(w, s1, sizeof s1),
                     dim_str(A.w, s2, sizeof s2));
                return -1;
            }
            w.sym = A.w.sym;
            w.n += A.w.n;
        }
        node n = mk(N_CAT, K_ROW, name->line, name->col);
        n.a = args[0];
        n.b = args[1];
        n.c = n_args == 3 ? args[2] : -1;
        n.w = w;
        return add_node(ps, n);
    }
    if (strcmp(name->text, "part") == 0) {
        if (n_args != 3) { FAIL(ps, *name, "part takes 3 arguments (E, k, n), got %d", n_args); return -1; }
        node E = nd[args[0]], K = nd[args[1]], P = nd[args[2]];
        if (E.kind != K_ROW) { FAIL(ps, at[0], "part: E must be [B, w], this is %s", type_str(&E, s1, sizeof s1)); return -1; }
        for (int i = 1; i < 3; i++) {
            node A = nd[args[i]];
            if (A.kind != K_SCALAR || A.v != floor(A.v) || A.v < 0 || A.v > 1024) {
                FAIL(ps, at[i], "part: %s must be a whole number in 0..1024", i == 1 ? "k" : "n");
                return -1;
            }
        }
        if (P.v < 1 || K.v >= P.v) { FAIL(ps, at[1], "part: k = %g must be below n = %g", K.v, P.v); return -1; }
        if (E.w.n % (int64_t)P.v != 0) {
            FAIL(ps, at[2], "part: %s does not split into %g equal blocks", dim_str(E.w, s1, sizeof s1), P.v);
            return -1;
        }
        node n = mk(N_PART, K_ROW, name->line, name->col);
        n.a = args[0];
        n.k = (int)K.v;
        n.v = P.v;
        n.w = (dim){E.w.n / (int64_t)P.v, E.w.sym};
        return add_node(ps, n);
    }
    char list[300];
    size_t o = 0;
    for (int f = 0; f < N_FUNCS; f++) o += (size_t)snprintf(list + o, sizeof list - o, "%s, ", g_funcs[f].name);
    for (int f = 0; f < N_SPECIAL; f++) o += (size_t)snprintf(list + o, sizeof list - o, f ? ", %s" : "%s", g_special[f]);
    FAIL(ps, *name, "unknown function '%s' (functions: %s)", name->text, list);
    return -1;
}

static int primary(parser *ps) {
    tg_cell_def *d = ps->d;
    token t = ps->tok;
    char b[80];
    if (t.type == T_NUM) {
        next(ps);
        node n = mk(N_CONST, K_SCALAR, t.line, t.col);
        n.v = t.num;
        return add_node(ps, n);
    }
    if (is_punct(ps, '(')) {
        next(ps);
        int e = expr(ps);
        if (ps->failed) return -1;
        if (!expect(ps, ')', "')'")) return -1;
        return e;
    }
    if (t.type != T_IDENT) {
        FAIL(ps, t, "expected an expression, found %s", tok_desc(&t, b, sizeof b));
        return -1;
    }
    next(ps);
    if (is_punct(ps, '(') && !t.prime) return call(ps, &t);
    int s = find_state(d, t.text);
    if (t.prime) {
        if (s < 0) { FAIL(ps, t, "undefined state %s' (no line assigns %s')", t.text, t.text); return -1; }
        if (!ps->assigned_line[s]) { FAIL(ps, t, "%s' is used before it is assigned", t.text); return -1; }
        return d->out[s];
    }
    for (int l = 0; l < ps->n_locals; l++)
        if (strcmp(ps->local_name[l], t.text) == 0) return ps->local_node[l];
    if (s >= 0) {
        node n = mk(N_STATE, K_ROW, t.line, t.col);
        n.k = s;
        n.w = (dim){1, SYM_H};
        return add_node(ps, n);
    }
    if (strcmp(t.text, "x") == 0) {
        node n = mk(N_XRAW, K_ROW, t.line, t.col);
        n.w = (dim){1, SYM_I};
        return add_node(ps, n);
    }
    int k = find_param(d, t.text);
    if (k >= 0) {
        if (k == 0) { FAIL(ps, t, "weight_ih is used by the input projection only: write x.<gate>"); return -1; }
        if (d->no_bias && (k == 2 || k == 3)) { FAIL(ps, t, "%s does not exist: the definition says 'bias none'", t.text); return -1; }
        return param_node(ps, k, t.line, t.col);
    }
    FAIL(ps, t, "unknown name '%s'", t.text);
    return -1;
}

static int postfix(parser *ps) {
    int e = primary(ps);
    while (!ps->failed && is_punct(ps, '.')) {
        token dot = ps->tok;
        next(ps);
        e = block_of(ps, e, &dot);
    }
    return ps->failed ? -1 : e;
}

static int unary(parser *ps) {
    if (is_punct(ps, '-')) {
        token t = ps->tok;
        next(ps);
        if (++ps->depth > MAX_DEPTH) { FAIL(ps, t, "expression nested deeper than %d", MAX_DEPTH); return -1; }
        int a = unary(ps);
        ps->depth--;
        if (ps->failed) return -1;
        node A = ps->d->nodes[a];
        if (A.kind == K_SCALAR) {
            node n = mk(N_CONST, K_SCALAR, t.line, t.col);
            n.v = -A.v;
            return add_node(ps, n);
        }
        if (A.kind == K_MAT) { char s1[64]; FAIL(ps, t, "'-' of a matrix %s", type_str(&A, s1, sizeof s1)); return -1; }
        node n = mk(N_NEG, A.kind, t.line, t.col);
        n.a = a;
        n.w = A.w;
        n.maybe_absent = A.maybe_absent;
        return add_node(ps, n);
    }
    return postfix(ps);
}

static int term(parser *ps) {
    int a = unary(ps);
    while (!ps->failed && (is_punct(ps, '*') || is_punct(ps, '/'))) {
        token t = ps->tok;
        next(ps);
        int b = unary(ps);
        a = binary(ps, t.punct == '*' ? N_MUL : N_DIV, a, b, &t);
    }
    return ps->failed ? -1 : a;
}

static int expr(parser *ps) {
    if (++ps->depth > MAX_DEPTH) { FAIL(ps, ps->tok, "expression nested deeper than %d", MAX_DEPTH); return -1; }
    int a = term(ps);
    while (!ps->failed && (is_punct(ps, '+') || is_punct(ps, '-'))) {
        token t = ps->tok;
        next(ps);
        int b = term(ps);
        a = binary(ps, t.punct == '+' ? N_ADD : N_SUB, a, b, &t);
    }
    ps->depth--;
    return ps->failed ? -1 : a;
}

/* ---- statements ---------------------------------------------------------------------------------------------- */

static const char *const g_keywords[] = {"gates", "forget", "states", "bias", "param"};
#define N_KEYWORDS ((int)(sizeof g_keywords / sizeof g_keywords[0]))

static bool reserved(const char *name) {
    for (int i = 0; i < N_KEYWORDS; i++)
        if (strcmp(name, g_keywords[i]) == 0) return true;
    for (int f = 0; f < N_FUNCS; f++)
        if (strcmp(name, g_funcs[f].name) == 0) return true;
    for (int f = 0; f < N_SPECIAL; f++)
        if (strcmp(name, g_special[f]) == 0) return true;
    return strcmp(name, "x") == 0 || strcmp(name, "none") == 0 || strcmp(name, "if") == 0;
}

static bool end_of_statement(parser *ps) {
    if (ps->tok.type == T_NL || ps->tok.type == T_EOF) return true;
    char b[80];
    FAIL(ps, ps->tok, "expected the end of the line, found %s", tok_desc(&ps->tok, b, sizeof b));
    return false;
}

/* NAME (, NAME)* into names[], at most max; returns the count or -1 */
static int name_list(parser *ps, char (*names)[MAX_NAME], int max, const char *what, token *where) {
    int n = 0;
    for (;;) {
        char b[80];
        if (ps->tok.type != T_IDENT || ps->tok.prime) {
            FAIL(ps, ps->tok, "expected a %s name, found %s", what, tok_desc(&ps->tok, b, sizeof b));
            return -1;
        }
        if (reserved(ps->tok.text)) { FAIL(ps, ps->tok, "'%s' is a reserved word", ps->tok.text); return -1; }
        for (int i = 0; i < n; i++)
            if (strcmp(names[i], ps->tok.text) == 0) { FAIL(ps, ps->tok, "%s '%s' named twice", what, ps->tok.text); return -1; }
        if (n == max) { FAIL(ps, ps->tok, "at most %d %ss", max, what); return -1; }
        if (where) where[n] = ps->tok;
        set_name(names[n++], ps->tok.text);
        next(ps);
        if (!is_punct(ps, ',')) return n;
        next(ps);
    }
}

/* dims: factor ('*' factor)* with factor = number | H | I | G, and "4H" (a number then H or I) */
static bool parse_dim(parser *ps, dim *out) {
    dim d = {1, SYM_ONE};
    token start = ps->tok;
    for (;;) {
        token t = ps->tok;
        char b[80];
        if (t.type == T_NUM) {
            if (t.num != floor(t.num) || t.num < 1 || t.num > 1e6) { FAIL(ps, t, "a dimension must be a whole number 1..1000000"); return false; }
            d.n *= (int64_t)t.num;
            next(ps);
            if (ps->tok.type == T_IDENT) continue; /* "4H": the symbol follows */
        } else if (t.type == T_IDENT && !t.prime && (!strcmp(t.text, "H") || !strcmp(t.text, "I") || !strcmp(t.text, "G"))) {
            if (t.text[0] == 'G') d.n *= ps->d->G;
            else {
                if (d.sym != SYM_ONE) { FAIL(ps, t, "a dimension is a number times H or I, not a product of both"); return false; }
                d.sym = t.text[0] == 'H' ? SYM_H : SYM_I;
            }
            next(ps);
        } else {
            FAIL(ps, t, "expected a dimension (a number, H, I, G or a product like 4H), found %s", tok_desc(&t, b, sizeof b));
            return false;
        }
        if (d.n > 1000000) { FAIL(ps, start, "dimension too large"); return false; }
        if (!is_punct(ps, '*')) break;
        next(ps);
    }
    *out = d;
    return true;
}

static bool parse_number_arg(parser *ps, double *v) {
    bool neg = false;
    if (is_punct(ps, '-')) { neg = true; next(ps); }
    if (ps->tok.type != T_NUM) {
        char b[80];
        FAIL(ps, ps->tok, "expected a number, found %s", tok_desc(&ps->tok, b, sizeof b));
        return false;
    }
    *v = neg ? -ps->tok.num : ps->tok.num;
    next(ps);
    return true;
}

static void param_stmt(parser *ps, const token *kw) {
    tg_cell_def *d = ps->d;
    char b[80];
    if (ps->tok.type != T_IDENT || ps->tok.prime) {
        FAIL(ps, ps->tok, "expected a parameter name after 'param', found %s", tok_desc(&ps->tok, b, sizeof b));
        return;
    }
    token nt = ps->tok;
    param_decl pd = {.line = nt.line, .col = nt.col};
    set_name(pd.name, nt.text);
    bool hh = strcmp(nt.text, "weight_hh") == 0;
    if (!hh && (find_param(d, nt.text) >= 0 || reserved(nt.text))) {
        if (find_param(d, nt.text) >= 0 && find_param(d, nt.text) < 4)
            FAIL(ps, nt, "'%s' is a standard parameter: only weight_hh can be redeclared", nt.text);
        else if (reserved(nt.text)) FAIL(ps, nt, "'%s' is a reserved word", nt.text);
        else FAIL(ps, nt, "parameter '%s' declared twice", nt.text);
        return;
    }
    if (hh && d->hh_override) { FAIL(ps, nt, "parameter 'weight_hh' declared twice"); return; }
    for (int s = 0; s < d->n_states; s++)
        if (strcmp(d->state_names_buf[s], nt.text) == 0) { FAIL(ps, nt, "'%s' is a state name", nt.text); return; }
    next(ps);
    if (!expect(ps, '[', "'[' and the parameter's shape")) return;
    for (;;) {
        if (pd.ndim == 2) { FAIL(ps, ps->tok, "a parameter has 1 or 2 dimensions"); return; }
        if (!parse_dim(ps, &pd.shape[pd.ndim++])) return;
        if (is_punct(ps, ',')) { next(ps); continue; }
        break;
    }
    if (!expect(ps, ']', "']' closing the shape")) return;
    pd.init = INIT_UNIFORM_DEFAULT;
    if (is_punct(ps, '=')) {
        next(ps);
        token it = ps->tok;
        if (is_word(ps, "uniform")) {
            next(ps);
            if (is_punct(ps, '(')) {
                next(ps);
                if (!parse_number_arg(ps, &pd.lo) || !expect(ps, ',', "','") || !parse_number_arg(ps, &pd.hi) ||
                    !expect(ps, ')', "')'"))
                    return;
                if (!(pd.lo <= pd.hi)) { FAIL(ps, it, "uniform(lo, hi) needs lo <= hi"); return; }
                pd.init = INIT_UNIFORM;
            }
        } else if (is_word(ps, "zeros") || is_word(ps, "ones")) {
            pd.init = INIT_CONSTANT;
            pd.lo = ps->tok.text[0] == 'o' ? 1.0 : 0.0;
            next(ps);
        } else if (is_word(ps, "constant")) {
            next(ps);
            pd.init = INIT_CONSTANT;
            if (!expect(ps, '(', "'('") || !parse_number_arg(ps, &pd.lo) || !expect(ps, ')', "')'")) return;
        } else {
            FAIL(ps, it, "expected an initialiser (uniform, uniform(lo, hi), zeros, ones, constant(v)), found %s",
                 tok_desc(&it, b, sizeof b));
            return;
        }
    }
    if (is_word(ps, "if")) {
        next(ps);
        if (!is_word(ps, "bias")) { FAIL(ps, ps->tok, "expected 'bias' after 'if'"); return; }
        next(ps);
        pd.if_bias = true;
    }
    if (!end_of_statement(ps)) return;
    if (hh) {
        if (pd.if_bias) { FAIL(ps, *kw, "weight_hh cannot be 'if bias'"); return; }
        d->hh_override = true;
        d->hh = pd;
        return;
    }
    if (d->n_extra == TG_CELL_MAX_EXTRA) { FAIL(ps, nt, "at most %d extra parameters", TG_CELL_MAX_EXTRA); return; }
    d->extra[d->n_extra++] = pd;
}

static void assignment(parser *ps) {
    tg_cell_def *d = ps->d;
    token lhs = ps->tok;
    next(ps);
    if (!expect(ps, '=', "'=' (an assignment)")) return;
    int s = lhs.prime ? find_state(d, lhs.text) : -1;
    if (!lhs.prime) {
        if (reserved(lhs.text)) { FAIL(ps, lhs, "'%s' is a reserved word", lhs.text); return; }
        if (find_state(d, lhs.text) >= 0) {
            FAIL(ps, lhs, "'%s' is a state: write %s' for its new value", lhs.text, lhs.text);
            return;
        }
        if (find_param(d, lhs.text) >= 0) { FAIL(ps, lhs, "'%s' is a parameter", lhs.text); return; }
        for (int l = 0; l < ps->n_locals; l++)
            if (strcmp(ps->local_name[l], lhs.text) == 0) {
                FAIL(ps, lhs, "'%s' is assigned twice (first on line %d)", lhs.text, ps->local_line[l]);
                return;
            }
        if (ps->n_locals == MAX_LOCALS) { FAIL(ps, lhs, "more than %d names", MAX_LOCALS); return; }
    } else if (s < 0) {
        FAIL(ps, lhs, "%s' is not a state (states: see 'states')", lhs.text);
        return;
    } else if (ps->assigned_line[s]) {
        FAIL(ps, lhs, "%s' is assigned twice (first on line %d)", lhs.text, ps->assigned_line[s]);
        return;
    }
    ps->depth = 0;
    int e = expr(ps);
    if (ps->failed || !end_of_statement(ps)) return;
    node E = d->nodes[e];
    char s1[64];
    if (lhs.prime) {
        if (E.kind != K_ROW) {
            FAIL(ps, lhs, "%s' must be [B, H], this is %s", lhs.text, type_str(&E, s1, sizeof s1));
            return;
        }
        char msg[160];
        snprintf(msg, sizeof msg, "shape mismatch: %s' must be [B, H], this is %s", lhs.text, type_str(&E, s1, sizeof s1));
        if (!same_width(ps, E.w, (dim){1, SYM_H}, lhs.line, lhs.col, msg)) return;
        d->out[s] = e;
        ps->assigned_line[s] = lhs.line;
        ps->assigned_col[s] = lhs.col;
    } else {
        set_name(ps->local_name[ps->n_locals], lhs.text);
        ps->local_node[ps->n_locals] = e;
        ps->local_line[ps->n_locals++] = lhs.line;
    }
}

/* Collects the states from the primed assignments (h first), unless a `states` line gives them. */
static void prescan_states(parser *ps) {
    tg_cell_def *d = ps->d;
    parser scan = *ps;
    scan.err = NULL;
    scan.errlen = 0;
    char names[64][MAX_NAME];
    int n = 0;
    bool at_start = true;
    while (!scan.failed && scan.tok.type != T_EOF) {
        if (at_start && scan.tok.type == T_IDENT && scan.tok.prime) {
            token t = scan.tok;
            next(&scan);
            if (is_punct(&scan, '=')) {
                bool dup = false;
                for (int i = 0; i < n; i++) dup |= strcmp(names[i], t.text) == 0;
                if (!dup && n < 64) set_name(names[n++], t.text);
            }
            at_start = false;
            continue;
        }
        at_start = scan.tok.type == T_NL;
        next(&scan);
    }
    /* h first, then the order of appearance */
    d->n_states = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < n; i++) {
            bool is_h = strcmp(names[i], "h") == 0;
            if ((pass == 0) != is_h) continue;
            if (d->n_states < TG_CELL_MAX_STATES + 1) {
                if (d->n_states < TG_CELL_MAX_STATES) set_name(d->state_names_buf[d->n_states], names[i]);
                d->n_states++;
            }
        }
}

/* ---- lowering ------------------------------------------------------------------------------------------- */

typedef struct graph_info {
    bool live[MAX_EVAL];
    int uses[MAX_EVAL];
} graph_info;

static int new_node(tg_cell_def *d, node n) {
    if (d->n_nodes >= MAX_EVAL) return -1;
    d->nodes[d->n_nodes] = n;
    return d->n_nodes++;
}

static void analyse(const tg_cell_def *d, graph_info *g) {
    memset(g, 0, sizeof *g);
    int stack[MAX_EVAL], sp = 0;
    for (int s = 0; s < d->n_states; s++)
        if (!g->live[d->out[s]]) { g->live[d->out[s]] = true; stack[sp++] = d->out[s]; }
    while (sp) {
        const node *n = &d->nodes[stack[--sp]];
        int ops[3] = {n->a, n->b, n->c};
        for (int i = 0; i < 3; i++)
            if (ops[i] >= 0 && !g->live[ops[i]]) { g->live[ops[i]] = true; stack[sp++] = ops[i]; }
    }
    for (int i = 0; i < d->n_nodes; i++) {
        if (!g->live[i]) continue;
        const node *n = &d->nodes[i];
        if (n->a >= 0) g->uses[n->a]++;
        if (n->b >= 0) g->uses[n->b]++;
        if (n->c >= 0) g->uses[n->c]++;
    }
    for (int s = 0; s < d->n_states; s++) g->uses[d->out[s]]++;
}

/* true when every live user of node p is an ADD of x.k and p (in either order) */
static bool only_in_sum_with_x(const tg_cell_def *d, const graph_info *g, int p, int k) {
    for (int s = 0; s < d->n_states; s++)
        if (d->out[s] == p) return false;
    for (int i = 0; i < d->n_nodes; i++) {
        const node *n = &d->nodes[i];
        if (!g->live[i] || (n->a != p && n->b != p && n->c != p)) continue;
        if (n->op != N_ADD) return false;
        int other = n->a == p ? n->b : n->a;
        if (d->nodes[other].op != N_XBLOCK || d->nodes[other].k != k) return false;
    }
    return true;
}

static int lower(tg_cell_def *d) {
    graph_info *g = tg_malloc(sizeof *g);
    if (!g) return -1;
    int G = d->G, xproj = -1, whh = -1, bhh = -1;
    node tmpl = mk(N_XPROJ, K_ROW, 0, 0);
    tmpl.w = (dim){G, SYM_H};
    /* 1. recurrent projections, grouped by their operand E */
    analyse(d, g);
    int n0 = d->n_nodes;
    for (int i = 0; i < n0; i++) {
        if (!g->live[i] || d->nodes[i].op != N_PROJ) continue;
        int E = d->nodes[i].a;
        unsigned mask = 0;
        for (int j = 0; j < n0; j++)
            if (g->live[j] && d->nodes[j].op == N_PROJ && d->nodes[j].a == E) mask |= 1u << d->nodes[j].k;
        bool full = mask == (G == 32 ? 0xffffffffu : (1u << G) - 1);
        if (full) {
            bool fused = true;
            for (int j = 0; j < n0; j++)
                if (g->live[j] && d->nodes[j].op == N_PROJ && d->nodes[j].a == E)
                    fused &= only_in_sum_with_x(d, g, j, d->nodes[j].k);
            node m = tmpl;
            m.op = fused ? N_PRE : N_HPROJ;
            m.a = E;
            int M = new_node(d, m);
            if (M < 0) goto fail;
            for (int j = 0; j < n0; j++) {
                node *n = &d->nodes[j];
                if (!g->live[j]) continue;
                if (fused && n->op == N_ADD && d->nodes[n->a].op != d->nodes[n->b].op &&
                    ((d->nodes[n->a].op == N_PROJ && d->nodes[n->a].a == E) || (d->nodes[n->b].op == N_PROJ && d->nodes[n->b].a == E))) {
                    int p = d->nodes[n->a].op == N_PROJ ? n->a : n->b;
                    n->op = N_MBLOCK; n->k = d->nodes[p].k; n->a = M; n->b = -1;
                } else if (!fused && n->op == N_PROJ && n->a == E) {
                    n->op = N_MBLOCK; n->a = M;
                }
            }
            if (fused)
                for (int j = 0; j < n0; j++)
                    if (d->nodes[j].op == N_PROJ && d->nodes[j].a == E) d->nodes[j].op = N_DEAD;
        } else {
            if (whh < 0) {
                node w = mk(N_PARAM, K_MAT, 0, 0);
                w.k = 1; w.w = (dim){G, SYM_H}; w.w2 = (dim){1, SYM_H};
                node b = mk(N_PARAM, K_VEC, 0, 0);
                b.k = 3; b.w = w.w; b.maybe_absent = true;
                if ((whh = new_node(d, w)) < 0 || (bhh = new_node(d, b)) < 0) goto fail;
            }
            for (int j = 0; j < n0; j++) {
                node *n = &d->nodes[j];
                if (!g->live[j] || n->op != N_PROJ || n->a != E) continue;
                node wb = mk(N_PBLOCK, K_MAT, n->line, n->col), bb = wb;
                wb.a = whh; wb.k = n->k;
                bb.a = bhh; bb.k = n->k; bb.kind = K_VEC;
                int W = new_node(d, wb), B = d->no_bias ? -1 : new_node(d, bb);
                if (W < 0 || (!d->no_bias && B < 0)) goto fail;
                n->op = N_LINEAR; n->b = W; n->c = B;
            }
        }
        analyse(d, g);
    }
    /* 2. blocks of the input projection */
    for (int i = 0; i < d->n_nodes; i++) {
        node *n = &d->nodes[i];
        if (!g->live[i] || n->op != N_XBLOCK) continue;
        if (xproj < 0 && (xproj = new_node(d, tmpl)) < 0) goto fail;
        n->op = N_MBLOCK; n->a = xproj;
    }
    analyse(d, g);
    /* 3. every matrix with blocks: one tg_gates pass, activations fused where a block feeds only one */
    int n1 = d->n_nodes;
    for (int M = 0; M < n1; M++) {
        op mo = d->nodes[M].op;
        if (!g->live[M] || (mo != N_XPROJ && mo != N_HPROJ && mo != N_PRE)) continue;
        bool has_blocks = false;
        for (int j = 0; j < n1; j++) has_blocks |= g->live[j] && d->nodes[j].op == N_MBLOCK && d->nodes[j].a == M;
        if (!has_blocks) continue;
        if (G == 1) {
            for (int j = 0; j < n1; j++)
                if (d->nodes[j].op == N_MBLOCK && d->nodes[j].a == M) d->nodes[j].op = N_ALIAS;
            continue;
        }
        node gt = mk(N_GATES, K_ROW, 0, 0);
        gt.a = M;
        int GT = new_node(d, gt);
        if (GT < 0) goto fail;
        char acts[33];
        for (int k = 0; k < G; k++) {
            int fn_id = -2; /* -2: no user yet, -1: mixed */
            for (int j = 0; j < n1; j++) {
                const node *b = &d->nodes[j];
                if (!g->live[j] || b->op != N_MBLOCK || b->a != M || b->k != k) continue;
                for (int s = 0; s < d->n_states; s++)
                    if (d->out[s] == j) fn_id = -1;
                for (int u = 0; u < n1; u++) {
                    const node *un = &d->nodes[u];
                    if (!g->live[u] || (un->a != j && un->b != j && un->c != j)) continue;
                    int f = un->op == N_FN && un->a == j && g_funcs[un->k].gate ? un->k : -1;
                    fn_id = fn_id == -2 ? f : fn_id == f ? f : -1;
                }
            }
            acts[k] = fn_id >= 0 ? g_funcs[fn_id].gate : 'i';
            for (int j = 0; j < n1; j++) {
                node *b = &d->nodes[j];
                if (b->op != N_MBLOCK || b->a != M || b->k != k) continue;
                if (fn_id >= 0) {
                    for (int u = 0; u < n1; u++) {
                        node *un = &d->nodes[u];
                        if (un->op == N_FN && un->a == j) { un->op = N_SEL; un->a = GT; un->k = k; }
                    }
                    b->op = N_DEAD;
                } else {
                    b->op = N_SEL; b->a = GT;
                }
            }
        }
        acts[G] = 0;
        memcpy(d->nodes[GT].acts, acts, sizeof acts);
    }
    free(g);
    return 0;
fail:
    free(g);
    return -1;
}

/* The live nodes in dependency order (operands first): an iterative post-order walk from the states. */
static int schedule(tg_cell_def *d) {
    int n = d->n_nodes;
    char *state = tg_calloc((size_t)n, 1); /* 0 new, 1 on the stack, 2 scheduled */
    int *stack = tg_malloc(sizeof(int) * (size_t)(n + 1) * 4);
    d->sched = tg_malloc(sizeof(int) * (size_t)n);
    if (!state || !stack || !d->sched) { free(state); free(stack); return -1; }
    d->n_sched = 0;
    for (int s = 0; s < d->n_states; s++) {
        int sp = 0;
        if (state[d->out[s]]) continue;
        stack[sp++] = d->out[s];
        state[d->out[s]] = 1;
        while (sp) {
            int i = stack[sp - 1];
            const node *nd = &d->nodes[i];
            int ops[3] = {nd->a, nd->b, nd->c};
            bool pushed = false;
            for (int o = 0; o < 3 && !pushed; o++)
                if (ops[o] >= 0 && !state[ops[o]]) { state[ops[o]] = 1; stack[sp++] = ops[o]; pushed = true; }
            if (pushed) continue;
            sp--;
            state[i] = 2;
            d->sched[d->n_sched++] = i;
        }
    }
    free(state);
    free(stack);
    return 0;
}

/* ---- running a step ----------------------------------------------------------------------------------- */

/* An absent parameter (the model has no biases) is an exact zero; the ops below drop it where zero is
 * neutral and report anything else. It is never dereferenced. */
static char g_zero_mark;
#define ZERO ((tg_tensor *)(void *)&g_zero_mark)

static tg_tensor *block(const tg_tensor *w, int G, int k, int64_t H) {
    return tg_ndim(w) == 2 ? tg_select(tg_reshape(w, TG_SHAPE(G, H, tg_dim(w, 1))), k)
                           : tg_select(tg_reshape(w, TG_SHAPE(G, H)), k);
}

/* LN(a; α, β) over the last axis of a [B, N]: (a − μ) / √(σ² + ε) ⊙ α + β (β may be absent) */
static tg_tensor *layer_norm(const tg_tensor *a, const tg_tensor *gain, const tg_tensor *beta) {
    tg_tensor *centred = tg_sub(a, tg_mean_axis(a, -1, true));
    tg_tensor *var = tg_mean_axis(tg_mul(centred, centred), -1, true);
    tg_tensor *normed = tg_mul(centred, tg_pow_scalar(tg_add_scalar(var, LN_EPS), -0.5));
    tg_tensor *scaled = tg_mul(normed, gain);
    return beta ? tg_add(scaled, beta) : scaled;
}

static tg_tensor *absent_here(const tg_cell_def *d, const node *n) {
    tg_error("tg_cell_def", "cell '%s', %d:%d: a parameter that is absent when the model has no biases is used "
             "where zero is not neutral", d->name, n->line, n->col);
    return NULL;
}

static tg_tensor *param_value(const tg_cell_params *p, int k) {
    const tg_tensor *t = k == 0 ? p->weight_ih : k == 1 ? p->weight_hh : k == 2 ? p->bias_ih : k == 3 ? p->bias_hh
                                                                                                  : p->extra[k - 4];
    return t ? (tg_tensor *)t : ZERO;
}

static int typed_step(const tg_cell *cell, const tg_cell_params *p, const tg_tensor *x, const tg_tensor *xproj,
                      tg_tensor *const *state, tg_tensor **out) {
    const tg_cell_def *d = cell->user;
    tg_tensor *v[MAX_EVAL];
    int64_t H = p->hidden_size;
    for (int s = 0; s < d->n_sched; s++) {
        int i = d->sched[s];
        const node *n = &d->nodes[i];
        tg_tensor *a = n->a >= 0 ? v[n->a] : NULL, *b = n->b >= 0 ? v[n->b] : NULL, *c = n->c >= 0 ? v[n->c] : NULL;
        tg_tensor *r = NULL;
        switch (n->op) {
        case N_STATE: r = state[n->k]; break;
        case N_XRAW: r = (tg_tensor *)x; break;
        case N_XPROJ: r = (tg_tensor *)xproj; break;
        case N_PARAM: r = param_value(p, n->k); break;
        case N_PBLOCK: r = a == ZERO ? ZERO : block(a, d->G, n->k, H); break;
        case N_LINEAR:
            r = a == ZERO || b == ZERO ? absent_here(d, n) : tg_linear(a, b, c == ZERO ? NULL : c);
            break;
        case N_ADD: r = a == ZERO ? b : b == ZERO ? a : tg_add(a, b); break;
        case N_SUB: r = b == ZERO ? a : a == ZERO ? tg_neg(b) : tg_sub(a, b); break;
        case N_MUL: r = a == ZERO || b == ZERO ? ZERO : tg_mul(a, b); break;
        case N_DIV: r = b == ZERO ? absent_here(d, n) : a == ZERO ? ZERO : tg_div(a, b); break;
        case N_NEG: r = a == ZERO ? ZERO : tg_neg(a); break;
        case N_ADDS: r = a == ZERO ? absent_here(d, n) : tg_add_scalar(a, n->v); break;
        case N_MULS: r = a == ZERO ? ZERO : tg_mul_scalar(a, n->v); break;
        case N_RSUBS: r = a == ZERO ? absent_here(d, n) : tg_rsub_scalar(n->v, a); break;
        case N_RDIVS: r = a == ZERO ? absent_here(d, n) : tg_mul_scalar(tg_pow_scalar(a, -1.0), n->v); break;
        case N_FN: r = a == ZERO ? absent_here(d, n) : g_funcs[n->k].op(a); break;
        case N_LN: r = a == ZERO || b == ZERO ? absent_here(d, n) : layer_norm(a, b, c == ZERO ? NULL : c); break;
        case N_CAT: {
            tg_tensor *parts[3] = {a, b, c};
            int np = c ? 3 : 2;
            bool zero = false;
            for (int q = 0; q < np; q++) zero |= parts[q] == ZERO;
            r = zero ? absent_here(d, n) : tg_concat(np, parts, 1);
            break;
        }
        case N_PART: {
            int64_t w = a == ZERO ? 0 : tg_dim(a, 1) / (int64_t)n->v;
            r = a == ZERO ? ZERO : tg_slice(a, 1, n->k * w, (n->k + 1) * w);
            break;
        }
        case N_HPROJ: r = tg_linear(a, p->weight_hh, p->bias_hh); break;
        case N_PRE: r = tg_linear_add(a, p->weight_hh, p->bias_hh, xproj); break;
        case N_GATES: r = tg_gates(a, n->acts); break;
        case N_SEL: r = tg_select(a, n->k); break;
        case N_ALIAS: r = a; break;
        default:
            tg_error("tg_cell_def", "cell '%s': internal error: node %d (op %d) left after lowering", d->name, i, (int)n->op);
            return -1;
        }
        if (!r) return -1;
        v[i] = r;
    }
    for (int s = 0; s < d->n_states; s++) {
        if (v[d->out[s]] == ZERO) {
            tg_error("tg_cell_def", "cell '%s': %s' is zero (made of absent parameters only)", d->name, d->state_names[s]);
            return -1;
        }
        out[s] = v[d->out[s]];
    }
    return 0;
}

/* ---- parameters of a typed cell --------------------------------------------------------------------- */

static tg_tensor *make_declared(const tg_cell_def *d, const param_decl *pd, int64_t I, int64_t H, tg_dtype dtype,
                                tg_rng *rng) {
    int64_t shape[2], numel = 1;
    for (int j = 0; j < pd->ndim; j++) {
        shape[j] = dim_value(pd->shape[j], I, H);
        if (shape[j] <= 0 || shape[j] > ((int64_t)1 << 28) / numel) { /* 2^28 elements: refuse, do not try */
            tg_error(tg__params_caller("tg_rnn_new"), "cell '%s': parameter %s (line %d) would have %lld elements", d->name, pd->name,
                     pd->line, (long long)(shape[j] * numel));
            return NULL;
        }
        numel *= shape[j];
    }
    double k = 1.0 / sqrt((double)H);
    switch (pd->init) {
    case INIT_UNIFORM_DEFAULT: return tg_rand_uniform(rng, dtype, pd->ndim, shape, -k, k);
    case INIT_UNIFORM: return tg_rand_uniform(rng, dtype, pd->ndim, shape, pd->lo, pd->hi);
    default: return tg_full(dtype, pd->ndim, shape, pd->lo);
    }
}

static int typed_params(const tg_cell *cell, int64_t I, int64_t H, bool bias, tg_dtype dtype, tg_rng *rng,
                        tg_cell_params *out) {
    const tg_cell_def *d = cell->user;
    memset(out, 0, sizeof *out);
    for (int i = 0; i < d->n_cons; i++) {
        const constraint *c = &d->cons[i];
        if (dim_value(c->a, I, H) != dim_value(c->b, I, H)) {
            char s1[24], s2[24];
            tg_error(tg__params_caller("tg_rnn_new"), "cell '%s', %d:%d: needs %s = %s, but I = %lld and H = %lld in this layer", d->name,
                     c->line, c->col, dim_str(c->a, s1, sizeof s1), dim_str(c->b, s2, sizeof s2), (long long)I,
                     (long long)H);
            return -1;
        }
    }
    if (tg_cell_standard_params(cell, I, H, bias && !d->no_bias, dtype, rng, out)) return -1;
    if (!rng) rng = tg_default_rng();
    bool ok = true;
    if (d->hh_override) {
        tg_release(out->weight_hh);
        ok &= (out->weight_hh = make_declared(d, &d->hh, I, H, dtype, rng)) != NULL;
    }
    for (int e = 0; e < d->n_extra && ok; e++) {
        if (d->extra[e].if_bias && !bias) continue;
        ok &= (out->extra[e] = make_declared(d, &d->extra[e], I, H, dtype, rng)) != NULL;
    }
    if (ok) return 0;
    tg_release(out->weight_ih);
    tg_release(out->weight_hh);
    tg_release(out->bias_ih);
    tg_release(out->bias_hh);
    for (int e = 0; e < TG_CELL_MAX_EXTRA; e++) tg_release(out->extra[e]);
    memset(out, 0, sizeof *out);
    return -1;
}

/* ---- the entry points ----------------------------------------------------------------------------------- */

static void statements(parser *ps) {
    tg_cell_def *d = ps->d;
    bool any_equation = false, any_statement = false;
    token states_tok = {0};
    while (!ps->failed) {
        while (ps->tok.type == T_NL) next(ps);
        if (ps->failed || ps->tok.type == T_EOF) break;
        token kw = ps->tok;
        char b[80];
        if (is_word(ps, "gates")) {
            if (d->G) { FAIL(ps, kw, "'gates' declared twice"); return; }
            if (any_statement) { FAIL(ps, kw, "'gates' must be the first statement"); return; }
            next(ps);
            d->G = name_list(ps, d->gate_names, 32, "gate", NULL);
            if (d->G <= 0 || !end_of_statement(ps)) return;
        } else if (!d->G) {
            FAIL(ps, kw, "the first statement must be 'gates NAME, ...' (the gate blocks of the projections), found %s",
                 tok_desc(&kw, b, sizeof b));
            return;
        } else if (is_word(ps, "forget")) {
            next(ps);
            if (ps->tok.type != T_IDENT || ps->tok.prime) { FAIL(ps, ps->tok, "expected a gate name after 'forget'"); return; }
            int k = find_gate(d, ps->tok.text);
            char gl[400];
            if (k < 0) { FAIL(ps, ps->tok, "unknown gate block '%s' (gates: %s)", ps->tok.text, gate_list(d, gl, sizeof gl)); return; }
            if (d->cell.forget_gate >= 0) { FAIL(ps, kw, "'forget' declared twice"); return; }
            d->cell.forget_gate = k;
            next(ps);
            if (!end_of_statement(ps)) return;
        } else if (is_word(ps, "states")) {
            if (ps->declared_states) { FAIL(ps, kw, "'states' declared twice"); return; }
            if (any_equation) { FAIL(ps, kw, "'states' must come before the equations"); return; }
            next(ps);
            char names[TG_CELL_MAX_STATES][MAX_NAME];
            token where[TG_CELL_MAX_STATES];
            int n = name_list(ps, names, TG_CELL_MAX_STATES, "state", where);
            if (n <= 0) return;
            if (strcmp(names[0], "h")) { FAIL(ps, where[0], "the first state must be h (the layer output), found '%s'", names[0]); return; }
            if (!end_of_statement(ps)) return;
            d->n_states = n;
            for (int s = 0; s < n; s++) {
                set_name(d->state_names_buf[s], names[s]);
                ps->state_line[s] = where[s].line;
                ps->state_col[s] = where[s].col;
            }
            ps->declared_states = true;
            states_tok = kw;
        } else if (is_word(ps, "bias")) {
            if (any_equation) { FAIL(ps, kw, "'bias none' must come before the equations"); return; }
            next(ps);
            if (!is_word(ps, "none")) { FAIL(ps, ps->tok, "expected 'none' after 'bias'"); return; }
            next(ps);
            if (!end_of_statement(ps)) return;
            d->no_bias = true;
        } else if (is_word(ps, "param")) {
            if (any_equation) { FAIL(ps, kw, "parameters must be declared before the equations"); return; }
            next(ps);
            param_stmt(ps, &kw);
        } else if (kw.type == T_IDENT) {
            if (!ps->declared_states && d->n_states > TG_CELL_MAX_STATES) {
                FAIL(ps, kw, "at most %d states (h and the primed names)", TG_CELL_MAX_STATES);
                return;
            }
            assignment(ps);
            any_equation = true;
        } else {
            FAIL(ps, kw, "expected a statement (gates, forget, states, bias, param or NAME = expression), found %s",
                 tok_desc(&kw, b, sizeof b));
            return;
        }
        any_statement = true;
    }
    if (ps->failed) return;
    if (!d->G) { FAIL(ps, ps->tok, "empty definition: it needs at least 'gates NAME' and h' = ..."); return; }
    if (d->n_states == 0 || strcmp(d->state_names_buf[0], "h") || !ps->assigned_line[0]) {
        FAIL(ps, ps->tok, "the definition never assigns h' (the layer output)");
        return;
    }
    for (int s = 1; s < d->n_states; s++)
        if (!ps->assigned_line[s]) {
            fail_at(ps, ps->state_line[s], ps->state_col[s], "state %s is never produced: no line assigns %s'",
                    d->state_names_buf[s], d->state_names_buf[s]);
            return;
        }
    (void)states_tok;
}

tg_cell_def *tg_cell_def_parse(const char *name, const char *src, char *err, size_t errlen) {
    if (err && errlen) err[0] = 0;
    size_t name_len = name ? strlen(name) : 0;
    if (!name || !src || name_len == 0 || name_len >= MAX_NAME) {
        if (err && errlen)
            snprintf(err, errlen, "1:1: %s", !src ? "no definition (NULL)" : "the cell's name must be 1..47 characters");
        return NULL;
    }
    size_t len = strnlen(src, TG_CELL_DEF_MAX_SOURCE + 1);
    if (len > TG_CELL_DEF_MAX_SOURCE) {
        if (err && errlen) snprintf(err, errlen, "1:1: definition longer than %d bytes", TG_CELL_DEF_MAX_SOURCE);
        return NULL;
    }
    tg_cell_def *d = tg_calloc(1, sizeof *d);
    parser *ps = tg_calloc(1, sizeof *ps);
    if (!d || !ps || !(d->nodes = tg_calloc(MAX_EVAL, sizeof *d->nodes)) || !(d->source = tg_malloc(len + 1))) {
        if (err && errlen) snprintf(err, errlen, "1:1: out of memory");
        if (d) { free(d->nodes); free(d); }
        free(ps);
        return NULL;
    }
    memcpy(d->source, src, len);
    d->source[len] = 0;
    set_name(d->name, name);
    d->cell.forget_gate = -1;
    *ps = (parser){.d = d, .src = d->source, .line = 1, .col = 1, .err = err, .errlen = errlen};
    next(ps);
    prescan_states(ps);
    statements(ps);
    if (!ps->failed && (lower(d) || schedule(d))) fail_at(ps, 1, 1, "definition too large (out of room while lowering)");
    bool failed = ps->failed;
    free(ps);
    if (failed) { tg_cell_def_free(d); return NULL; }
    bool needs_input = false;
    for (int s = 0; s < d->n_sched; s++) needs_input |= d->nodes[d->sched[s]].op == N_XRAW;
    for (int s = 0; s < d->n_states; s++) d->state_names[s] = d->state_names_buf[s];
    for (int e = 0; e < d->n_extra; e++) d->extra_names[e] = d->extra[e].name;
    d->cell.name = d->name;
    d->cell.gates = d->G;
    d->cell.n_states = d->n_states;
    d->cell.state_names = d->state_names;
    d->cell.n_extra = d->n_extra;
    d->cell.extra_names = d->n_extra ? d->extra_names : NULL;
    d->cell.needs_input = needs_input;
    d->cell.make_params = typed_params;
    d->cell.step = typed_step;
    d->cell.user = d;
    d->cell.equations = d->source;  /* shown by tapegrad summary */
    return d;
}

void tg_cell_def_free(tg_cell_def *d) {
    if (!d) return;
    free(d->nodes);
    free(d->sched);
    free(d->source);
    free(d);
}

const tg_cell *tg_cell_def_cell(const tg_cell_def *d) { return d ? &d->cell : NULL; }
const char *tg_cell_def_source(const tg_cell_def *d) { return d ? d->source : NULL; }

void tg_cell_def_print(FILE *f, const tg_cell_def *d) {
    if (!f || !d) return;
    static const char *const names[] = {
        [N_STATE] = "state", [N_XRAW] = "x", [N_PARAM] = "param", [N_PBLOCK] = "block", [N_LINEAR] = "tg_linear",
        [N_ADD] = "tg_add", [N_SUB] = "tg_sub", [N_MUL] = "tg_mul", [N_DIV] = "tg_div", [N_NEG] = "tg_neg",
        [N_ADDS] = "tg_add_scalar", [N_MULS] = "tg_mul_scalar", [N_RSUBS] = "tg_rsub_scalar",
        [N_RDIVS] = "reciprocal·", [N_FN] = "fn", [N_LN] = "layernorm",
        [N_CAT] = "tg_concat", [N_PART] = "tg_slice", [N_XPROJ] = "xproj",
        [N_HPROJ] = "tg_linear(W_hh)", [N_PRE] = "tg_linear_add(W_hh, xproj)", [N_GATES] = "tg_gates",
        [N_SEL] = "tg_select", [N_ALIAS] = "=",
    };
    fprintf(f, "cell '%s': %d gate blocks, %d state%s, %d extra parameter%s%s, %d operations per step\n", d->name,
            d->G, d->n_states, d->n_states == 1 ? "" : "s", d->n_extra, d->n_extra == 1 ? "" : "s",
            d->cell.needs_input ? ", reads x_t" : "", d->n_sched);
    for (int s = 0; s < d->n_sched; s++) {
        int i = d->sched[s];
        const node *n = &d->nodes[i];
        const char *nm = n->op < (int)(sizeof names / sizeof names[0]) && names[n->op] ? names[n->op] : "?";
        fprintf(f, "  %%%-3d = ", i);
        switch (n->op) {
        case N_STATE: fprintf(f, "%s", d->state_names[n->k]); break;
        case N_PARAM: fprintf(f, "%s", n->k < 4 ? g_std_params[n->k] : d->extra[n->k - 4].name); break;
        case N_FN: fprintf(f, "tg_%s(%%%d)", g_funcs[n->k].name, n->a); break;
        case N_GATES: fprintf(f, "tg_gates(%%%d, \"%s\")", n->a, n->acts); break;
        case N_PBLOCK: case N_SEL: fprintf(f, "%s(%%%d, %s)", nm, n->a, d->gate_names[n->k]); break;
        case N_ADDS: case N_MULS: fprintf(f, "%s(%%%d, %g)", nm, n->a, n->v); break;
        case N_PART: fprintf(f, "%s(%%%d, block %d of %g)", nm, n->a, n->k, n->v); break;
        case N_RSUBS: fprintf(f, "%s(%g, %%%d)", nm, n->v, n->a); break;
        case N_RDIVS: fprintf(f, "%g / %%%d", n->v, n->a); break;
        case N_XPROJ: fprintf(f, "xproj (x·W_ihᵀ + b_ih, all steps at once)"); break;
        case N_XRAW: fprintf(f, "x"); break;
        case N_ALIAS: fprintf(f, "%%%d", n->a); break;
        case N_HPROJ: fprintf(f, "tg_linear(%%%d, weight_hh, bias_hh)", n->a); break;
        case N_PRE: fprintf(f, "tg_linear_add(%%%d, weight_hh, bias_hh, xproj)", n->a); break;
        default:
            fprintf(f, "%s(", nm);
            if (n->a >= 0) fprintf(f, "%%%d", n->a);
            if (n->b >= 0) fprintf(f, ", %%%d", n->b);
            if (n->c >= 0) fprintf(f, ", %%%d", n->c);
            fprintf(f, ")");
        }
        for (int st = 0; st < d->n_states; st++)
            if (d->out[st] == i) fprintf(f, "   -> %s'", d->state_names[st]);
        fprintf(f, "\n");
    }
}
