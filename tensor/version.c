/* tensor/version.c - the library's version (from the generated <tapegrad/version.h>). */
#include <tapegrad/version.h>

const char *tg_version_string(void) { return TG_VERSION_STRING; }
