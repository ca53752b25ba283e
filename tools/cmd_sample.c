/* tools/cmd_sample.c - `tapegrad sample`: generate text from a character model saved by
 * `tapegrad train --task charlm --save FILE` (the vocabulary and model config are in FILE's metadata). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <tapegrad/tapegrad.h>

#include "tools/cli.h"
#include "tools/commands.h"
#include <tapegrad/train.h>
#include "tools/tasks.h"

static int hexval(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

int cmd_sample(int argc, char **argv) {
    const char *path = NULL, *prime = NULL;
    long length = 400, seed = 1;
    double temperature = 0.8;
    const cli_opt opts[] = {
        {"--model", CLI_STR, &path, 0, 0, "a character model saved by 'tapegrad train --task charlm --save FILE'"},
        {"--length", CLI_INT, &length, 1, 1000000, "characters to generate"},
        {"--temperature", CLI_REAL, &temperature, 0.01, 100, "divides the logits: < 1 safer, > 1 wilder"},
        {"--seed", CLI_INT, &seed, 0, 2147483647, "seed of the sampler"},
        {"--prime", CLI_STR, &prime, 0, 0, "text to start from (default: a newline, or the model's first character)"},
    };
    const cli_cmd cmd = {"sample", "--model FILE [--length N --temperature X --seed N --prime TEXT]",
                         "Feeds the prime text to a character-level model and then samples one character at a\n"
                         "time from softmax(logits / temperature), printing the prime and the sample.",
                         opts, (int)(sizeof opts / sizeof opts[0]), false};
    int p = cli_parse(&cmd, argc, argv);
    if (p) return p == 1 ? TG_EXIT_OK : TG_EXIT_USAGE;
    if (!path) return cli_fail(&cmd, "--model is required");
    if (access(path, R_OK) != 0) return cli_fail(&cmd, "cannot read model '%s': %s", path, strerror(errno));
    cli_record_errors();

    char err[1024];
    tg_st_file *f = NULL;
    tg_model *m = tg_ckpt_load_model(path, &f, err, sizeof err);
    if (!m) return cli_fail(&cmd, "%s", err);
    const char *hex = tg_st_meta(f, "vocab"), *task = tg_st_meta(f, "task");
    unsigned char vocab[256];
    int V = 0;
    bool ok = hex && *hex && strlen(hex) % 2 == 0 && strlen(hex) <= 512;
    for (size_t k = 0; ok && hex[k]; k += 2) {
        int hi = hexval(hex[k]), lo = hexval(hex[k + 1]);
        if (hi < 0 || lo < 0) ok = false;
        else vocab[V++] = (unsigned char)(hi * 16 + lo);
    }
    if (!ok || V != m->cfg.input_size || V != m->cfg.output_size) {
        cli_fail(&cmd, "'%s' is not a character model (it was trained on task %s)", path, task ? task : "?");
        tg_model_free(m);
        tg_st_free(f);
        return TG_EXIT_USAGE;
    }
    char first[2] = {(char)vocab[0], 0};
    if (!prime) prime = memchr(vocab, '\n', (size_t)V) ? "\n" : first;
    for (const char *c = prime; *c; c++)
        if (!memchr(vocab, (unsigned char)*c, (size_t)V)) {
            tg_model_free(m);
            tg_st_free(f);
            unsigned char ch = (unsigned char)*c;
            if (ch >= 0x20 && ch < 0x7f)
                return cli_fail(&cmd, "--prime: the character '%c' is not in the model's vocabulary of %d", ch, V);
            return cli_fail(&cmd, "--prime: the byte 0x%02x is not in the model's vocabulary of %d", ch, V);
        }
    size_t size = strlen(prime) + (size_t)length + 1;
    char why[96];
    snprintf(why, sizeof why, "and %lld characters", (long long)size);
    /* the text, and the stream's state and logits (h, c and a softmax of V per layer, F64) */
    double state = 8.0 * (double)m->cfg.layers * (4.0 * (double)m->cfg.hidden_size + 2.0 * V);
    if (cli_model_guard(&cmd, m, (double)size + state, why)) {
        tg_model_free(m);
        tg_st_free(f);
        return TG_EXIT_USAGE;
    }
    char *out = malloc(size);
    int rc = TG_EXIT_OK;
    if (!out || charlm_sample(m, vocab, V, prime, (int)length, temperature, (uint64_t)seed, out, size)) {
        fprintf(stderr, "tapegrad sample: sampling failed: %s\n", out ? tg_last_error() : "out of memory");
        rc = TG_EXIT_FAIL;
    } else {
        fputs(out, stdout);
        fputc('\n', stdout);
    }
    free(out);
    tg_model_free(m);
    tg_st_free(f);
    return rc;
}
