// libpng 1.6 (Debian: libpng-dev; Homebrew: libpng).
#include <png.h>
