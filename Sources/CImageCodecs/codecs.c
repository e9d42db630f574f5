// See include/CImageCodecs.h. All longjmps land in the function that called setjmp, in this file.
#include "CImageCodecs.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <png.h>
#include <jpeglib.h>
#include <jerror.h>

static void set_message(cic_image *out, const char *prefix, const char *text) {
    snprintf(out->message, sizeof out->message, "%s%s", prefix, text ? text : "");
}

void cic_free(void *pixels) { free(pixels); }

// Converts `count` pixels of 1..4 interleaved 8-bit channels to RGB (gray replicated, alpha dropped).
static void to_rgb(uint8_t *dst, const uint8_t *src, size_t count, int channels) {
    for (size_t i = 0; i < count; i++) {
        const uint8_t *s = src + i * (size_t)channels;
        uint8_t *d = dst + i * 3;
        if (channels <= 2) {
            d[0] = d[1] = d[2] = s[0];
        } else {
            d[0] = s[0]; d[1] = s[1]; d[2] = s[2];
        }
    }
}

// MARK: - PNG

typedef struct {
    jmp_buf jump;
    const uint8_t *data;
    size_t size, pos;
    int truncated;
    char message[160];
} png_ctx;

static void png_on_error(png_structp png, png_const_charp msg) {
    png_ctx *ctx = (png_ctx *)png_get_error_ptr(png);
    snprintf(ctx->message, sizeof ctx->message, "%s", msg ? msg : "libpng error");
    longjmp(ctx->jump, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg) { (void)png; (void)msg; }

static void png_on_read(png_structp png, png_bytep dst, size_t length) {
    png_ctx *ctx = (png_ctx *)png_get_io_ptr(png);
    if (length > ctx->size - ctx->pos) {
        ctx->truncated = 1;
        png_error(png, "unexpected end of PNG data");
    }
    memcpy(dst, ctx->data + ctx->pos, length);
    ctx->pos += length;
}

cic_status cic_png_decode(const uint8_t *data, size_t size, uint64_t max_pixels, cic_image *out) {
    memset(out, 0, sizeof *out);
    png_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.data = data;
    ctx.size = size;

    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &ctx, png_on_error, png_on_warning);
    if (!png) { set_message(out, "", "out of memory"); return CIC_NO_MEMORY; }
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        set_message(out, "", "out of memory");
        return CIC_NO_MEMORY;
    }

    // Written after setjmp and read after a longjmp, hence volatile.
    uint8_t *volatile pixels = NULL;
    uint8_t *volatile temp = NULL;
    png_bytep *volatile rows = NULL;
    volatile cic_status status = CIC_OK;

    if (setjmp(ctx.jump)) {
        free(pixels); free(temp); free(rows);
        png_destroy_read_struct(&png, &info, NULL);
        if (status == CIC_OK) status = ctx.truncated ? CIC_TRUNCATED : CIC_CORRUPT;
        set_message(out, "", ctx.message);
        return status;
    }

    png_set_read_fn(png, &ctx, png_on_read);
    png_read_info(png, info);

    png_uint_32 width = 0, height = 0;
    int bit_depth = 0, color_type = 0, interlace = 0;
    png_get_IHDR(png, info, &width, &height, &bit_depth, &color_type, &interlace, NULL, NULL);
    out->width = width;
    out->height = height;
    if (width == 0 || height == 0) {
        status = CIC_ZERO_SIZE;
        png_error(png, "zero width or height");
    }
    if ((uint64_t)width * height > max_pixels) {
        status = CIC_TOO_LARGE;
        png_error(png, "image exceeds the pixel limit");
    }

    if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (bit_depth == 16) png_set_strip_16(png);  // keeps the high byte, like Pillow's "RGB;16B" unpacker
    png_set_interlace_handling(png);
    png_read_update_info(png, info);

    // Whatever libpng hands back (palette + tRNS may come out RGBA), reduce it to RGB ourselves.
    int channels = png_get_channels(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);
    if (png_get_bit_depth(png, info) != 8 || channels < 1 || channels > 4 || rowbytes != (size_t)width * channels) {
        status = CIC_UNSUPPORTED;
        png_error(png, "unexpected PNG row layout after transforms");
    }

    size_t count = (size_t)width * height;
    pixels = malloc(count * 3);
    rows = malloc(sizeof(png_bytep) * height);
    if (channels != 3) temp = malloc(count * (size_t)channels);
    if (!pixels || !rows || (channels != 3 && !temp)) {
        status = CIC_NO_MEMORY;
        png_error(png, "out of memory");
    }
    uint8_t *base = channels == 3 ? pixels : temp;
    for (png_uint_32 y = 0; y < height; y++) rows[y] = base + (size_t)y * rowbytes;
    png_read_image(png, rows);
    // png_read_end is skipped on purpose: trailing chunks do not affect pixels (Pillow ignores them too).

    if (channels != 3) to_rgb(pixels, temp, count, channels);
    free(temp);
    free(rows);
    png_destroy_read_struct(&png, &info, NULL);
    out->pixels = pixels;
    return CIC_OK;
}

// MARK: - JPEG

typedef struct {
    struct jpeg_error_mgr base;
    jmp_buf jump;
    int truncated;
} jpeg_err;

static void jpeg_on_error(j_common_ptr cinfo) {
    jpeg_err *err = (jpeg_err *)cinfo->err;
    longjmp(err->jump, 1);
}

// Warnings (e.g. "corrupt data: extraneous bytes") are ignored, as Pillow does.
static void jpeg_on_message(j_common_ptr cinfo, int level) { (void)cinfo; (void)level; }

static void src_init(j_decompress_ptr cinfo) { (void)cinfo; }
static void src_term(j_decompress_ptr cinfo) { (void)cinfo; }

// The whole file is in the buffer from the start, so a refill means the data ended early.
// jpeg_mem_src would instead insert a fake EOI and return a gray-padded image; Pillow reports
// "image file is truncated", so we fail too.
static boolean src_fill(j_decompress_ptr cinfo) {
    ((jpeg_err *)cinfo->err)->truncated = 1;
    ERREXIT(cinfo, JERR_INPUT_EOF);
    return FALSE;
}

static void src_skip(j_decompress_ptr cinfo, long count) {
    struct jpeg_source_mgr *src = cinfo->src;
    if (count <= 0) return;
    if ((size_t)count > src->bytes_in_buffer) src_fill(cinfo);
    src->next_input_byte += count;
    src->bytes_in_buffer -= (size_t)count;
}

static inline uint8_t muldiv255(int a, int b) {  // Pillow's MULDIV255
    int t = a * b + 128;
    return (uint8_t)(((t >> 8) + t) >> 8);
}

static inline uint8_t clip8(int v) { return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v); }

cic_status cic_jpeg_decode(const uint8_t *data, size_t size, uint64_t max_pixels, cic_image *out) {
    memset(out, 0, sizeof *out);
    struct jpeg_decompress_struct cinfo;
    jpeg_err err;
    memset(&cinfo, 0, sizeof cinfo);
    memset(&err, 0, sizeof err);
    cinfo.err = jpeg_std_error(&err.base);
    err.base.error_exit = jpeg_on_error;
    err.base.emit_message = jpeg_on_message;

    struct jpeg_source_mgr src;
    memset(&src, 0, sizeof src);
    src.init_source = src_init;
    src.fill_input_buffer = src_fill;
    src.skip_input_data = src_skip;
    src.resync_to_restart = jpeg_resync_to_restart;
    src.term_source = src_term;
    src.next_input_byte = data;
    src.bytes_in_buffer = size;

    uint8_t *volatile pixels = NULL;
    uint8_t *volatile row4 = NULL;
    volatile cic_status status = CIC_OK;
    volatile int created = 0;

    if (setjmp(err.jump)) {
        if (status == CIC_OK) {
            char text[JMSG_LENGTH_MAX];
            err.base.format_message((j_common_ptr)&cinfo, text);
            status = err.truncated ? CIC_TRUNCATED : CIC_CORRUPT;
            set_message(out, "", err.truncated ? "unexpected end of JPEG data" : text);
        }
        free(pixels); free(row4);
        if (created) jpeg_destroy_decompress(&cinfo);
        return status;
    }

    jpeg_create_decompress(&cinfo);
    created = 1;
    cinfo.src = &src;
    jpeg_read_header(&cinfo, TRUE);

    uint32_t width = cinfo.image_width, height = cinfo.image_height;
    out->width = width;
    out->height = height;
    int comps = cinfo.num_components;
    if (width == 0 || height == 0) {
        status = CIC_ZERO_SIZE;
        set_message(out, "", "zero width or height");
        longjmp(err.jump, 1);
    }
    if ((uint64_t)width * height > max_pixels) {
        status = CIC_TOO_LARGE;
        set_message(out, "", "image exceeds the pixel limit");
        longjmp(err.jump, 1);
    }
    if (comps != 1 && comps != 3 && comps != 4) {
        status = CIC_UNSUPPORTED;
        snprintf(out->message, sizeof out->message, "JPEG with %d components", comps);
        longjmp(err.jump, 1);
    }
    // Pillow: 1 component -> L, 3 -> RGB, 4 -> CMYK; the file's colour space is left to libjpeg's guess.
    cinfo.out_color_space = comps == 1 ? JCS_GRAYSCALE : comps == 3 ? JCS_RGB : JCS_CMYK;
    cinfo.dct_method = JDCT_ISLOW;
    cinfo.do_fancy_upsampling = TRUE;
    jpeg_start_decompress(&cinfo);

    if (cinfo.output_width != width || cinfo.output_height != height || cinfo.output_components != comps) {
        status = CIC_UNSUPPORTED;
        set_message(out, "", "unexpected JPEG output layout");
        longjmp(err.jump, 1);
    }
    size_t stride = (size_t)width * 3;
    pixels = malloc(stride * height);
    if (comps == 4) row4 = malloc((size_t)width * 4);
    if (!pixels || (comps == 4 && !row4)) {
        status = CIC_NO_MEMORY;
        set_message(out, "", "out of memory");
        longjmp(err.jump, 1);
    }

    while (cinfo.output_scanline < height) {
        uint8_t *row = pixels + (size_t)cinfo.output_scanline * stride;
        JSAMPROW target = comps == 4 ? row4 : row;
        if (jpeg_read_scanlines(&cinfo, &target, 1) != 1) {
            err.truncated = 1;
            ERREXIT(&cinfo, JERR_INPUT_EOF);
        }
        if (comps == 1) {
            for (size_t x = width; x-- > 0;) row[3 * x] = row[3 * x + 1] = row[3 * x + 2] = row[x];
        } else if (comps == 4) {
            // Pillow reads CMYK as "CMYK;I" (Adobe polarity: stored values inverted), then cmyk2rgb.
            for (size_t x = 0; x < width; x++) {
                const uint8_t *s = row4 + 4 * x;
                int nk = s[3];  // 255 - k with k = 255 - s[3]
                for (int c = 0; c < 3; c++) row[3 * x + c] = clip8(nk - muldiv255(255 - s[c], nk));
            }
        }
    }
    // No jpeg_finish_decompress: every scanline is in, and a missing EOI must not fail the decode.
    free(row4);
    jpeg_destroy_decompress(&cinfo);
    out->pixels = pixels;
    return CIC_OK;
}
