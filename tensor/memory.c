/* tensor/memory.c - what is available to allocate, size formatting and the refusal message of
 * <tapegrad/memory.h> (the estimate itself is in nn/memory.c). */
#include <tapegrad/memory.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

double tg_mem_available(char *source, size_t n) {
    double avail = 1e18;
    const char *src = "unknown";
    FILE *f = fopen("/proc/meminfo", "r");
    if (f) {
        char line[128];
        unsigned long long kb;
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) { avail = (double)kb * 1024.0; src = "MemAvailable"; break; }
        fclose(f);
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        double used = 0;
        FILE *s = fopen("/proc/self/statm", "r");
        unsigned long long pages;
        if (s) {
            if (fscanf(s, "%llu", &pages) == 1) used = (double)pages * (double)sysconf(_SC_PAGESIZE);
            fclose(s);
        }
        double left = (double)rl.rlim_cur - used;
        if (left < 0) left = 0;
        if (left < avail) { avail = left; src = "RLIMIT_AS"; }
    }
    if (source && n) snprintf(source, n, "%s", src);
    return avail;
}

char *tg_mem_format(double bytes, char *buf, size_t n) {
    static const char *const units[] = {"B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"};
    int u = 0;
    double v = bytes > 0 ? bytes : 0;
    while (v >= 1000 && u < (int)(sizeof units / sizeof units[0]) - 1) { v /= 1000; u++; }
    if (u == 0) snprintf(buf, n, "%.0f B", v);
    else snprintf(buf, n, v < 10 ? "%.1f %s" : "%.0f %s", v, units[u]);
    return buf;
}

void tg_mem_sum(tg_mem_estimate *e) { e->total = e->params + e->grads + e->optim + e->tape + e->data; }

int tg_mem_check(const tg_mem_estimate *e, double limit, char *err, size_t errlen) {
    char src[32] = "--max-memory";
    double avail = limit > 0 ? limit : tg_mem_available(src, sizeof src);
    if (limit > 0) {
        char s2[32];
        double machine = tg_mem_available(s2, sizeof s2);
        if (machine < avail) { avail = machine; snprintf(src, sizeof src, "%s", s2); }
    }
    if (!(e->total > avail)) return 0;
    /* the terms that are not zero, largest first as they come: tape, parameters, state, data */
    struct { const char *name; double v; } terms[] = {
        {"tape", e->tape}, {"parameters", e->params}, {"gradients", e->grads}, {"optimizer state", e->optim},
        {"data", e->data}};
    char parts[256] = "", t[24], a[24];
    size_t k = 0;
    for (size_t i = 0; i < sizeof terms / sizeof terms[0]; i++) {
        if (!(terms[i].v > 0) || k >= sizeof parts) continue;
        k += (size_t)snprintf(parts + k, sizeof parts - k, "%s%s %s", k ? ", " : "", terms[i].name,
                              tg_mem_format(terms[i].v, t, sizeof t));
    }
    snprintf(err, errlen, "needs ~%s: %s (%s), more than the %s available (%s)", tg_mem_format(e->total, t, sizeof t),
             e->why[0] ? e->why : "the requested sizes", parts, tg_mem_format(avail, a, sizeof a), src);
    return -1;
}

int tg_mem_parse(const char *s, double *bytes) {
    if (!s || !*s) return -1;
    char *end;
    double v = strtod(s, &end);
    if (end == s || !isfinite(v) || v <= 0) return -1;
    double mult = 1;
    switch (*end) {
    case 'k': case 'K': mult = 1e3; end++; break;
    case 'M': mult = 1e6; end++; break;
    case 'G': mult = 1e9; end++; break;
    case 'T': mult = 1e12; end++; break;
    case 'P': mult = 1e15; end++; break;
    default: break;
    }
    if (*end == 'B') end++;
    if (*end) return -1;
    if (!isfinite(v * mult) || v * mult < 1) return -1; /* "1e308T" overflows; under a byte is no size */
    *bytes = v * mult;
    return 0;
}
