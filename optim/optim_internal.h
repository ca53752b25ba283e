/* optim/optim_internal.h - the optimizer object, shared by optim.c, schedule.c and checkpoint.c
 * (not installed). */
#ifndef TG_OPTIM_INTERNAL_H
#define TG_OPTIM_INTERNAL_H
#include <tapegrad/optim.h>

/* Per-parameter state, named like torch.optim's state keys (so a checkpoint reads like PyTorch's);
 * the names of buf[0..] are the .state of the optimizer's row in optim.c. Buffers have the parameter's
 * dtype and shape (or are 0-d where the row's .scalar says so) and are created on its first step. */
#define TG_OPTIM_NBUF 3

typedef struct tg_optim_slot {
    tg_tensor *param;               /* owned reference; a leaf */
    int group;
    int64_t step;                   /* updates applied to this parameter (skipped steps do not count) */
    tg_tensor *buf[TG_OPTIM_NBUF];  /* owned, [param's shape], or NULL until needed */
} tg_optim_slot;

typedef struct tg_optim_group_rec {
    tg_optim_opts opts;   /* validated hyper-parameters; opts.lr is what schedules set */
    double initial_lr;    /* base lr of schedules (torch's group['initial_lr']); NAN until a schedule sets it */
    int first, count;     /* params[first .. first+count-1] */
} tg_optim_group_rec;

struct tg_optim {
    tg_optim_kind kind;
    tg_optim_opts defaults;   /* used by groups added with opts = NULL */
    tg_optim_group_rec *groups; /* [n_groups] */
    int n_groups;
    tg_optim_slot *params;   /* [n_params], grouped contiguously in insertion order */
    int n_params;
};

/* One optimizer: everything about it but its TG_OPTIM_KINDS line (optim.h). Defined as `<name>_row`
 * beside its update function in optim.c; see the recipe there. */
typedef void tg_optim_update_fn(tg_optim_slot *ps, const tg_optim_opts *o, const tg_tensor *grad);
typedef bool tg_optim_check_fn(const tg_optim_opts *o, char *msg, size_t size);
/* The state buffers a step with these options reads back (bit k: buf[k]). */
typedef unsigned tg_optim_needs_fn(const tg_optim_opts *o);
typedef struct tg_optim_row {
    const char *torch;                  /* torch's class, "torch.optim.Adam" */
    uint64_t uses;                      /* bit i: reads TG_OPTIM_FIELDS field i (validated, documented) */
    tg_optim_opts defaults;             /* torch's defaults of the fields it uses (the others are ignored) */
    const char *state[TG_OPTIM_NBUF];   /* torch's state key of buf[k]; NULL past the last */
    unsigned scalar;                    /* bit k: buf[k] is a 0-d tensor (NAdam's mu_product), not [param's shape] */
    tg_optim_update_fn *update;         /* one step of one parameter (ps->step already counts it) */
    tg_optim_check_fn *check;           /* rules across fields (false + message); NULL if none */
    tg_optim_needs_fn *needs;           /* which buffers the options use (SGD without momentum: none);
                                           NULL: every buffer of .state */
    uint64_t from_constructor;          /* bits of fields read from the optimizer's construction options
                                           (tg_optim_new), not the group's: torch 1.13's Adagrad fills its
                                           state with initial_accumulator_value in __init__ */
} tg_optim_row;

/* The TG_OPTIM_FIELDS lines as data (optim.c), for checkpoints and validation. */
typedef struct tg_optim_field {
    const char *name;    /* "beta1": also the checkpoint key group.<g>.<name> */
    const char *meaning;
    size_t offset;       /* in tg_optim_opts */
    bool is_bool;        /* else double */
    int rule;
} tg_optim_field;
extern const tg_optim_field tg__optim_fields[];
extern const int tg__optim_n_fields;

/* Name of state buffer k for this optimizer kind, or NULL when the kind has no such buffer. */
const char *tg__optim_buf_name(tg_optim_kind kind, int k);
/* true when state buffer k of this kind is a 0-d tensor rather than one of the parameter's shape. */
bool tg__optim_buf_is_scalar(tg_optim_kind kind, int k);
/* The state buffers (bit k: buf[k]) that a parameter of this kind holds once it has taken a step
 * with these options; a checkpoint of a parameter with step > 0 must carry each of them. */
unsigned tg__optim_bufs_needed(tg_optim_kind kind, const tg_optim_opts *o);
/* Validates hyper-parameters: false with the reason written to msg. */
bool tg__optim_validate(tg_optim_kind kind, const tg_optim_opts *o, char *msg, size_t size);

/* A schedule's own counters beyond last_epoch (torch's extra state_dict entries, e.g.
 * CosineAnnealingWarmRestarts' T_cur and T_i), declared in its row in schedule.c and saved by
 * checkpoint.c as "sched.<name>" and "sched.<k>.<name>" (member k): a schedule with extra state is
 * declared once, in its row. */
#define TG_SCHED_MAX_EXTRA 4
typedef struct tg_sched_extra {
    const char *name; /* the metadata key's last part: "T_cur" */
    bool positive;    /* a loaded value must be > 0 (refused naming the key otherwise) */
    size_t offset;    /* of its int64_t in schedule.c's struct tg_sched */
} tg_sched_extra;
/* The extra counters of kind (its row's .extra, in order); returns how many (0..TG_SCHED_MAX_EXTRA). */
int tg__sched_extra(tg_sched_kind kind, const tg_sched_extra **fields);

/* Schedule state carried by an optimizer checkpoint (checkpoint.c <-> schedule.c). */
typedef struct tg_sched_member_state {
    tg_sched_kind kind;
    int64_t last_epoch;
    int64_t extra[TG_SCHED_MAX_EXTRA]; /* the kind's extra counters (tg__sched_extra's order) */
} tg_sched_member_state;
typedef struct tg_sched_state {
    tg_sched_kind kind;
    int64_t last_epoch;
    double best;             /* plateau */
    int64_t num_bad_epochs;  /* plateau */
    int64_t cooldown_counter;/* plateau */
    int64_t extra[TG_SCHED_MAX_EXTRA]; /* the kind's extra counters (tg__sched_extra's order) */
    int n_members;           /* sequential, chained */
    tg_sched_member_state members[TG_SCHED_MAX_MEMBERS];
} tg_sched_state;
void tg__sched_get_state(const tg_sched *s, tg_sched_state *st);
void tg__sched_set_state(tg_sched *s, const tg_sched_state *st);
/* Has the kind a row with a step rule in optim/schedule.c's sched_rows[]? (test_sched checks every kind) */
bool tg__sched_has_row(tg_sched_kind kind);
#endif
