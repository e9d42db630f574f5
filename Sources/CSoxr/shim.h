// libsoxr (Debian: libsoxr-dev), the resampler behind librosa's default res_type "soxr_hq".
#include <soxr.h>
