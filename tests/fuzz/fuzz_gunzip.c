/* tests/fuzz/fuzz_gunzip.c - libFuzzer target for the project's own inflate (data/inflate.c, RFC 1951)
 * behind tg_gunzip (RFC 1952 members, CRC-32 and ISIZE checked). Seeds: tests/fuzz/corpus/gunzip.
 *
 * Beyond fuzz.h: the output never exceeds max_out (here 256 KiB, so a small bomb is refused, not
 * expanded) and is readable in full; a failure sets *out to NULL and gives a message naming the input. */
#include "fuzz.h"

#include <tapegrad/data.h>

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    long live = fz_begin();
    unsigned char *out = (unsigned char *)&out; /* must be replaced by the call */
    size_t out_len = (size_t)-1;
    char err[512] = "";
    size_t max = 256 << 10;
    if (tg_gunzip(data, size, "fuzz.gz", max, &out, &out_len, err, sizeof err) == 0) {
        FZ_CHECK(out_len <= max);
        FZ_CHECK(out != NULL || out_len == 0);
        fz_touch(out, out_len);
        free(out);
    } else {
        FZ_CHECK(out == NULL);
        fz_check_message(err);
        FZ_CHECK(strstr(err, "fuzz.gz") != NULL);
    }
    fz_end(live);
    return 0;
}
