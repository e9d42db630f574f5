// PNG / JPEG decoding into RGB8 for the Swift `Media` module.
//
// libpng and libjpeg report fatal errors by longjmp; jumping across Swift frames is undefined
// behaviour, so every setjmp/longjmp stays inside these C functions, which only return a status.
#ifndef CIMAGECODECS_H
#define CIMAGECODECS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    CIC_OK = 0,
    CIC_CORRUPT = 1,      // the library rejected the data; message says why
    CIC_TRUNCATED = 2,    // the data ended before the image did
    CIC_TOO_LARGE = 3,    // width * height above max_pixels (checked from the header, nothing allocated)
    CIC_ZERO_SIZE = 4,    // width or height is 0
    CIC_NO_MEMORY = 5,
    CIC_UNSUPPORTED = 6,  // valid file in a layout we do not decode (e.g. 2-component JPEG)
} cic_status;

typedef struct {
    uint8_t *pixels;       // malloc'd RGB8, width * height * 3 bytes, row-major; free with cic_free
    uint32_t width;
    uint32_t height;       // also filled for CIC_TOO_LARGE / CIC_ZERO_SIZE
    char message[200];     // NUL-terminated reason when status != CIC_OK
} cic_image;

// Pillow-equivalent of Image.open(...).convert("RGB") for PNG: palette expanded, alpha and tRNS
// dropped (Pillow drops, it does not composite), gray replicated, 16-bit reduced to the high byte,
// no gamma or ICC handling (Pillow applies none either).
cic_status cic_png_decode(const uint8_t *data, size_t size, uint64_t max_pixels, cic_image *out);

// JPEG through libjpeg with Pillow's decoder settings (ISLOW DCT, fancy upsampling). Grayscale is
// replicated; 4-component (CMYK/YCCK) files are read with Adobe polarity and converted like
// Pillow's cmyk2rgb. EXIF orientation is not applied here.
cic_status cic_jpeg_decode(const uint8_t *data, size_t size, uint64_t max_pixels, cic_image *out);

void cic_free(void *pixels);

#ifdef __cplusplus
}
#endif

#endif
