#!/usr/bin/env python3
"""Image fixtures for the Swift `Media` tests (decoding, Pillow-exact resize, MiniCPM-V preprocessing).

    python tools/reference/images.py [--skimage DIR]

DIR holds scikit-image 0.26.0's data/*.png (public domain / CC0), e.g. unpacked from the wheel.
Writes Tests/Fixtures/images/* and Tests/Fixtures/reference/image-{decode,resize,preprocess}.safetensors.
Deterministic: the same Pillow (12.0.0), numpy and torch give byte-identical files.

Expected pixels are always what Pillow gives for `Image.open(f).convert("RGB")` (plus
`ImageOps.exif_transpose` for the EXIF cases), except 16-bit grayscale PNG, where Pillow clips to 255
and the Swift decoder deliberately keeps the high byte (the expectation here is the high byte).

Inputs the Swift tests preprocess are stored as PNG files; the synthetic sizes are made once here from
real photos (a Pillow downscale, then integer pixel replication with numpy so the PNGs stay small).

PNG decodes and big outputs are stored as FNV-1a 64 hashes of the uint8 bytes (as int64) plus shape and
a deterministic subsample; JPEG decodes and small outputs in full.
"""
import argparse
import io
import warnings
import shutil
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from safetensors.numpy import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
import minicpmv_image as mv  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "Tests" / "Fixtures" / "images"
REFERENCE = ROOT / "Tests" / "Fixtures" / "reference"
BICUBIC = Image.Resampling.BICUBIC


# ---------------------------------------------------------------- helpers

def fnv1a64(data: bytes) -> int:
    """FNV-1a 64 as a signed int64 (two's complement), the Swift tests compute the same."""
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h - (1 << 64) if h >= 1 << 63 else h


def rgb(im):
    return np.asarray(im.convert("RGB"), dtype=np.uint8)


def subsample_indices(n, k=1024):
    """The Swift tests use the same formula: index j -> (j * n) // k."""
    k = min(k, n)
    return np.array([(j * n) // k for j in range(k)], dtype=np.int64)


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def filter_rows(raw_rows, bpp):
    """Filters each scanline with filter type (row index mod 5), so every PNG filter is exercised."""
    out = bytearray()
    prev = bytes(len(raw_rows[0])) if raw_rows else b""
    for i, row in enumerate(raw_rows):
        ft = i % 5
        f = bytearray(len(row))
        for x in range(len(row)):
            a = row[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            pred = [0, a, b, (a + b) // 2, paeth(a, b, c)][ft]
            f[x] = (row[x] - pred) & 0xFF
        out += bytes([ft]) + f
        prev = row
    return bytes(out)


def pack_row(samples, bit_depth):
    """One scanline of integer samples -> bytes (big-endian 16-bit, MSB-first packing below 8 bits)."""
    if bit_depth == 16:
        return b"".join(struct.pack(">H", int(v)) for v in samples)
    if bit_depth == 8:
        return bytes(int(v) for v in samples)
    per = 8 // bit_depth
    out = bytearray()
    for i in range(0, len(samples), per):
        byte = 0
        for j in range(per):
            v = int(samples[i + j]) if i + j < len(samples) else 0
            byte |= v << (8 - bit_depth * (j + 1))
        out.append(byte)
    return bytes(out)


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def write_png(path, samples, color_type, bit_depth, palette=None, trns=None, interlace=False, extra=b""):
    """Hand-written PNG encoder (Pillow cannot write 16-bit RGB, sub-byte gray or interlaced PNGs).
    samples: [H, W, C] integer array with values in the bit depth's range."""
    h, w, ch = samples.shape
    bpp = max(1, ch * bit_depth // 8)
    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 1 if interlace else 0)
    if interlace:
        raw = b""
        for x0, y0, dx, dy in ADAM7:
            sub = samples[y0::dy, x0::dx]
            if sub.shape[0] and sub.shape[1]:
                raw += filter_rows([pack_row(r.reshape(-1), bit_depth) for r in sub], bpp)
    else:
        raw = filter_rows([pack_row(r.reshape(-1), bit_depth) for r in samples], bpp)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + extra
    if palette is not None:
        data += chunk(b"PLTE", bytes(np.asarray(palette, dtype=np.uint8).reshape(-1)))
    if trns is not None:
        data += chunk(b"tRNS", trns)
    data += chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    Path(path).write_bytes(data)


def save_pil(im, path, **kw):
    """Saves without the metadata a crop inherits (ICC profile, XMP): only pixels matter here."""
    if im.mode != "P":
        im = Image.fromarray(np.asarray(im), mode=im.mode) if im.mode in ("L", "RGB") else im
    im.info = {}
    buf = io.BytesIO()
    im.save(buf, format="JPEG" if path.suffix == ".jpg" else "PNG", **kw)
    path.write_bytes(buf.getvalue())


# ---------------------------------------------------------------- fixtures

def make_decode_fixtures(src):
    chelsea = Image.open(src / "chelsea.png").convert("RGB")
    camera = Image.open(src / "camera.png").convert("L")
    crop = chelsea.crop((200, 90, 264, 138))           # 64×48, the cat's face
    gray = camera.crop((220, 80, 284, 128))            # 64×48 of the cameraman
    small = crop.crop((10, 8, 42, 32))                 # 32×24, for the EXIF orientation set
    g = np.asarray(gray, dtype=np.uint16)
    c = np.asarray(crop, dtype=np.uint16)
    rng = np.random.default_rng(1234)

    files = {}

    def pil(name, im, **kw):
        save_pil(im, IMAGES / name, **kw)
        files[name] = None

    def hand(name, samples, ct, bd, expected, **kw):
        write_png(IMAGES / name, samples, ct, bd, **kw)
        files[name] = expected

    pil("png-rgb.png", crop)
    pil("png-gray.png", gray)
    pil("png-gray-alpha.png", Image.merge("LA", (gray, crop.convert("L"))))
    pil("png-rgba.png", Image.merge("RGBA", (*crop.split(), gray)))
    pil("png-palette.png", crop.quantize(256, dither=Image.Dither.NONE))
    pal = crop.quantize(200, dither=Image.Dither.NONE)
    pil("png-palette-trns.png", pal, transparency=bytes(range(0, 200, 2)))  # tRNS for 100 entries
    # 16-bit RGB with a noisy low byte: Pillow keeps the high byte; a gAMA chunk must be ignored.
    hi16 = c * 256 + rng.integers(0, 256, c.shape)
    gama = chunk(b"gAMA", struct.pack(">I", 45455))
    hand("png-rgb16.png", hi16, 2, 16, None, extra=gama)
    hand("png-rgba16.png", np.concatenate([hi16, (g * 257)[..., None]], axis=2), 6, 16, None)
    hand("png-gray16.png", (g * 256 + rng.integers(0, 256, g.shape))[..., None], 0, 16,
         np.repeat(g[..., None], 3, axis=2).astype(np.uint8))  # the high byte (see docstring)
    hand("png-gray-1bit.png", (g >= 128).astype(np.uint16)[..., None], 0, 1, None)
    hand("png-gray-2bit.png", (g >> 6)[..., None], 0, 2, None)
    hand("png-gray-4bit.png", (g >> 4)[..., None], 0, 4, None, interlace=True)
    q16 = crop.quantize(16, dither=Image.Dither.NONE)
    q16pal = np.asarray(q16.getpalette()[:48], dtype=np.uint8).reshape(16, 3)
    hand("png-palette-4bit.png", np.asarray(q16, dtype=np.uint16)[..., None], 3, 4, None, palette=q16pal)
    hand("png-interlaced.png", c, 2, 8, None, interlace=True)
    hand("png-interlaced-rgba16.png", np.concatenate([hi16, (g * 257)[..., None]], axis=2), 6, 16, None,
         interlace=True)
    hand("png-rgb-trns.png", c, 2, 8, None, trns=struct.pack(">HHH", *[int(v) for v in c[0, 0]]))
    hand("png-odd-1x1.png", c[:1, :1], 2, 8, None)
    hand("png-odd-5x7.png", c[:7, :5], 2, 8, None)

    pil("jpeg-color.jpg", crop, quality=90)                          # 4:2:0
    pil("jpeg-color-422.jpg", crop, quality=90, subsampling=1)
    pil("jpeg-color-444.jpg", crop, quality=90, subsampling=0)
    pil("jpeg-gray.jpg", gray, quality=90)
    pil("jpeg-progressive.jpg", crop, quality=85, progressive=True)
    pil("jpeg-cmyk.jpg", crop.convert("CMYK"), quality=95)
    pil("jpeg-odd-13x7.jpg", crop.crop((0, 0, 13, 7)), quality=90)
    for o in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = o
        pil(f"jpeg-exif-{o}.jpg", small, quality=90, exif=exif.tobytes())

    tensors = {}
    for name, expected in files.items():
        if expected is None:
            im = Image.open(IMAGES / name)
            if name.startswith("jpeg-exif"):
                im = ImageOps.exif_transpose(im)
            expected = rgb(im)
        if name.startswith("png-") and not name.startswith("png-odd"):
            put_hashed(tensors, name, expected)  # PNG must match exactly: a hash is enough
        else:
            tensors[name] = np.ascontiguousarray(expected)  # JPEG: full pixels, to measure the diff
    # Pillow's own 16-bit RGB reading is the high byte: check our expectation agrees with it.
    assert fnv1a64((hi16 >> 8).astype(np.uint8).tobytes()) == tensors["png-rgb16.png#fnv"][0]
    # The EXIF-off decode of every orientation is the stored (unrotated) pixels.
    tensors["jpeg-exif-6.jpg#noexif"] = rgb(Image.open(IMAGES / "jpeg-exif-6.jpg"))

    for name in ["chelsea.png", "coffee.png", "chelsea-small.png", "moon.png"]:
        put_hashed(tensors, name, rgb(Image.open(IMAGES / name)))
    return tensors


def put_hashed(tensors, key, a):
    """uint8 [H, W, 3] stored as FNV-1a hash + shape + a 1024-byte subsample (for a diff on mismatch)."""
    flat = np.ascontiguousarray(a).reshape(-1)
    tensors[key + "#fnv"] = np.array([fnv1a64(flat.tobytes())], dtype=np.int64)
    tensors[key + "#shape"] = np.array(a.shape, dtype=np.int64)
    tensors[key + "#sub"] = flat[subsample_indices(flat.size)].copy()


def make_bad_files():
    good_png = (IMAGES / "chelsea-small.png").read_bytes()
    good_jpg = (IMAGES / "jpeg-color.jpg").read_bytes()
    (IMAGES / "bad-truncated.png").write_bytes(good_png[: len(good_png) * 3 // 5])
    (IMAGES / "bad-truncated.jpg").write_bytes(good_jpg[: len(good_jpg) // 2])
    (IMAGES / "bad-garbage.bin").write_bytes(np.random.default_rng(7).integers(0, 256, 300, dtype=np.uint8).tobytes())
    (IMAGES / "bad-empty.png").write_bytes(b"")
    sig = b"\x89PNG\r\n\x1a\n"
    idat = chunk(b"IDAT", zlib.compress(b"\x00" * 64, 9))
    (IMAGES / "bad-zero-size.png").write_bytes(
        sig + chunk(b"IHDR", struct.pack(">IIBBBBB", 0, 48, 8, 2, 0, 0, 0)) + idat + chunk(b"IEND", b""))
    (IMAGES / "bad-bomb.png").write_bytes(
        sig + chunk(b"IHDR", struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)) + idat + chunk(b"IEND", b""))
    # Valid header, IDAT whose zlib stream is garbage (CRC correct, so only inflate fails).
    (IMAGES / "bad-corrupt.png").write_bytes(
        sig + chunk(b"IHDR", struct.pack(">IIBBBBB", 16, 16, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", b"\x78\x9c" + bytes(range(1, 60))) + chunk(b"IEND", b""))
    # JPEG whose SOF0 declares 65000×65000 (4.2 Gpx) and one whose SOF0 declares height 0.
    sof = good_jpg.index(b"\xff\xc0")
    bomb = bytearray(good_jpg)
    bomb[sof + 5:sof + 9] = struct.pack(">HH", 65000, 65000)
    (IMAGES / "bad-bomb.jpg").write_bytes(bytes(bomb))
    zero = bytearray(good_jpg)
    zero[sof + 5:sof + 7] = struct.pack(">H", 0)
    (IMAGES / "bad-zero-size.jpg").write_bytes(bytes(zero))
    (IMAGES / "bad-header-only.png").write_bytes(good_png[:20])


def make_resize_fixtures():
    cases = {
        "chelsea-small.png": [(97, 61), (220, 75), (111, 146), (1, 1), (3, 146), (201, 37), (219, 147)],
        "png-rgb.png": [(150, 101), (64, 200), (131, 48), (97, 13), (65, 47), (7, 240)],
        "coffee.png": [(47, 31), (599, 3), (13, 400)],
        "png-odd-1x1.png": [(5, 3)],
        "png-odd-5x7.png": [(16, 23), (2, 3)],
    }
    tensors = {}
    for name, sizes in cases.items():
        im = Image.open(IMAGES / name).convert("RGB")
        for w, h in sizes:
            out = rgb(im.resize((w, h), BICUBIC))
            if out.size <= 16384:
                tensors[f"{name}@{w}x{h}"] = out
            else:
                put_hashed(tensors, f"{name}@{w}x{h}", out)
    return tensors


def make_preprocess_inputs(src):
    chelsea = Image.open(src / "chelsea.png").convert("RGB")
    camera = Image.open(src / "camera.png").convert("L")
    moon = Image.open(src / "moon.png").convert("L")

    def replicated(im, size, k):
        """Pillow downscale to size/k, then k× pixel replication (tiny PNGs of real content)."""
        w, h = size
        base = np.asarray(im.resize((w // k, h // k), BICUBIC))
        return Image.fromarray(np.repeat(np.repeat(base, k, axis=0), k, axis=1))

    save_pil(replicated(camera, (260, 800), 2), IMAGES / "pre-1x3.png")             # grid 1×3
    save_pil(replicated(moon, (1400, 700), 7), IMAGES / "pre-3x2.png")              # grid 3×2
    save_pil(replicated(camera, (1200, 1200), 6), IMAGES / "pre-3x3.png")           # grid 3×3
    save_pil(replicated(camera.crop((0, 200, 512, 230)), (2000, 60), 4), IMAGES / "pre-wide.png")
    save_pil(replicated(moon.crop((240, 0, 262, 512)), (40, 1500), 4), IMAGES / "pre-narrow.png")
    save_pil(replicated(camera.crop((0, 250, 512, 270)), (3000, 100), 4), IMAGES / "pre-wide-sliced.png")
    save_pil(chelsea.crop((240, 110, 241, 111)), IMAGES / "pre-1x1.png")
    save_pil(chelsea.crop((240, 110, 245, 117)), IMAGES / "pre-5x7.png")


PREPROCESS_CASES = [
    # (case name, file, max_slice_nums)
    ("chelsea", "chelsea.png", 9),
    ("chelsea-small", "chelsea-small.png", 9),
    ("coffee", "coffee.png", 9),
    ("coffee-max1", "coffee.png", 1),
    ("moon-tie", "moon.png", 9),
    ("1x3", "pre-1x3.png", 9),
    ("3x2", "pre-3x2.png", 9),
    ("3x3", "pre-3x3.png", 9),
    ("3x3-max4", "pre-3x3.png", 4),
    ("wide", "pre-wide.png", 9),
    ("narrow", "pre-narrow.png", 9),
    ("wide-sliced", "pre-wide-sliced.png", 9),
    ("tiny-1x1", "pre-1x1.png", 9),
    ("tiny-5x7", "pre-5x7.png", 9),
]


def make_preprocess_fixtures():
    tensors = {}
    for case, name, max_slices in PREPROCESS_CASES:
        im = Image.open(IMAGES / name).convert("RGB")
        out = mv.preprocess(im, max_slice_nums=max_slices)
        grid = out["grid"] or (0, 0)
        tensors[f"{case}/input"] = np.frombuffer(name.encode(), dtype=np.uint8).copy()
        tensors[f"{case}/max_slice_nums"] = np.array([max_slices], dtype=np.int64)
        tensors[f"{case}/grid"] = np.array(grid, dtype=np.int64)
        tensors[f"{case}/tgt_sizes"] = np.array(out["tgt_sizes"], dtype=np.int64).reshape(-1, 2)
        tensors[f"{case}/fnv"] = np.array([fnv1a64(rgb(i).tobytes()) for i in out["images"]], dtype=np.int64)
        for k, pv in enumerate(out["pixel_values"]):
            flat = pv.numpy().reshape(-1)
            tensors[f"{case}/sub{k}"] = flat[subsample_indices(flat.size)].copy()
        text = mv.placeholder(0, out["grid"])
        tensors[f"{case}/placeholder"] = np.frombuffer(text.encode(), dtype=np.uint8).copy()
    # Size arithmetic only (no pixels): w, h, max_slices -> grid, source size, refine size.
    rows = []
    sizes = [(512, 512), (451, 300), (600, 400), (448, 448), (449, 448), (4000, 3000), (3000, 4000),
             (1920, 1080), (1080, 1920), (1, 1), (14, 14), (7, 1000), (1000, 7), (895, 224), (896, 225),
             (2000, 60), (40, 1500), (3000, 100), (1300, 1300), (1200, 1200), (260, 800), (1400, 700),
             (641, 313), (313, 641), (1023, 767), (777, 555), (100000, 3), (5, 7)]
    for w, h in sizes:
        for m in (9, 4, 1, 2):
            g = mv.get_sliced_grid((w, h), m)
            src = mv.find_best_resize((w, h), 448, 14, allow_upscale=g is None)
            ref = mv.get_refine_size((w, h), g, 448, 14, allow_upscale=True) if g else (0, 0)
            rows.append([w, h, m, *(g or (0, 0)), *src, *ref])
    tensors["sizes"] = np.array(rows, dtype=np.int64)
    # ensure_divide on exact .5 quotients (banker's rounding).
    ed = [[l, p, mv.ensure_divide(l, p)] for l, p in [(35, 14), (21, 14), (49, 14), (63, 14), (7, 14), (5, 2),
                                                      (3, 2), (250, 100), (0, 14), (1, 14), (6, 4), (10, 4)]]
    tensors["ensure_divide"] = np.array(ed, dtype=np.int64)
    return tensors


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--skimage", default="/tmp/skimage/skimage/data")
    src = Path(ap.parse_args().skimage)
    warnings.simplefilter("ignore")  # Pillow's advice about P images with byte transparency
    IMAGES.mkdir(parents=True, exist_ok=True)
    REFERENCE.mkdir(parents=True, exist_ok=True)
    for name in ["chelsea.png", "coffee.png", "moon.png"]:
        shutil.copyfile(src / name, IMAGES / name)
    chelsea = Image.open(src / "chelsea.png").convert("RGB")
    save_pil(chelsea.resize((220, 146), BICUBIC), IMAGES / "chelsea-small.png")

    save_file(make_decode_fixtures(src), str(REFERENCE / "image-decode.safetensors"))
    make_bad_files()
    save_file(make_resize_fixtures(), str(REFERENCE / "image-resize.safetensors"))
    make_preprocess_inputs(src)
    save_file(make_preprocess_fixtures(), str(REFERENCE / "image-preprocess.safetensors"))
    total = sum(p.stat().st_size for p in IMAGES.iterdir()) + sum(
        p.stat().st_size for p in REFERENCE.glob("image-*.safetensors"))
    print(f"wrote {len(list(IMAGES.iterdir()))} images; image fixtures total {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
