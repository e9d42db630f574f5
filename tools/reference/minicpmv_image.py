"""Faithful re-implementation of MiniCPM-V's `MiniCPMVImageProcessor` (spec §3.1–3.2), Pillow + torch only.

No transformers dependency. Mirrors the HF remote code (image_processing_minicpmv.py) step by step:
- sizes are (width, height); Python `round` (banker's) in ensure_divide, `int()` truncation in find_best_resize;
- Pillow BICUBIC (with Pillow's antialiasing on downscale) for every resize;
- grid search candidates n in (multiple-1, multiple, multiple+1) minus n == 1 and n > max_slice_nums,
  m ascending, strictly-smaller error wins (first minimum kept);
- normalization in float32: x/255 then (x - 0.5)/0.5 (transformers casts mean/std to the image dtype);
- patch-strip layout via torch unfold exactly like `reshape_by_patch`.

API:
    preprocess(img, max_slice_nums=9, scale_resolution=448, patch_size=14) -> dict(
        grid=(cols, rows) or None,
        images=[PIL images in model order: source, then slices row by row],
        pixel_values=[torch.float32 [3, 14, L*14] per image],
        tgt_sizes=[(rows, cols) per image in patches])
    placeholder(image_index, grid, query_num=64, use_image_id=True) -> str
"""

import math

import numpy as np
import torch
from PIL import Image

MEAN = 0.5
STD = 0.5


def ensure_divide(length, patch_size):
    # Python round() is round-half-to-even; `length` may be a float (get_refine_size passes floats).
    return max(round(length / patch_size) * patch_size, patch_size)


def find_best_resize(original_size, scale_resolution, patch_size, allow_upscale=False):
    width, height = original_size
    if (width * height > scale_resolution * scale_resolution) or allow_upscale:
        r = width / height
        height = int(scale_resolution / math.sqrt(r))
        width = int(height * r)
    return ensure_divide(width, patch_size), ensure_divide(height, patch_size)


def get_refine_size(original_size, grid, scale_resolution, patch_size, allow_upscale=False):
    width, height = original_size
    grid_x, grid_y = grid
    refine_width = ensure_divide(width, grid_x)
    refine_height = ensure_divide(height, grid_y)
    grid_width = refine_width / grid_x
    grid_height = refine_height / grid_y
    best_grid_size = find_best_resize((grid_width, grid_height), scale_resolution, patch_size,
                                      allow_upscale=allow_upscale)
    return best_grid_size[0] * grid_x, best_grid_size[1] * grid_y


def get_sliced_grid(image_size, max_slice_nums, scale_resolution=448, never_split=False):
    """Returns [cols, rows] or None."""
    original_width, original_height = image_size
    log_ratio = math.log(original_width / original_height)
    ratio = original_width * original_height / (scale_resolution * scale_resolution)
    multiple = min(math.ceil(ratio), max_slice_nums)
    if multiple <= 1 or never_split:
        return None
    candidate_split_grids_nums = []
    for i in [multiple - 1, multiple, multiple + 1]:
        if i == 1 or i > max_slice_nums:
            continue
        candidate_split_grids_nums.append(i)
    candidate_grids = []
    for split_grids_nums in candidate_split_grids_nums:
        m = 1
        while m <= split_grids_nums:
            if split_grids_nums % m == 0:
                candidate_grids.append([m, split_grids_nums // m])
            m += 1
    best_grid = [1, 1]
    min_error = float("inf")
    for grid in candidate_grids:
        error = abs(log_ratio - math.log(grid[0] / grid[1]))
        if error < min_error:  # strict: ties keep the first found
            best_grid = grid
            min_error = error
    return best_grid


def split_to_patches(image, grid):
    patches = []
    width, height = image.size
    grid_x = int(width / grid[0])
    grid_y = int(height / grid[1])
    for i in range(0, height, grid_y):
        row = []
        for j in range(0, width, grid_x):
            row.append(image.crop((j, i, j + grid_x, i + grid_y)))
        patches.append(row)
    return patches


def slice_image(image, max_slice_nums=9, scale_resolution=448, patch_size=14):
    original_size = image.size
    best_grid = get_sliced_grid(original_size, max_slice_nums, scale_resolution)
    patches = []
    if best_grid is None:
        best_size = find_best_resize(original_size, scale_resolution, patch_size, allow_upscale=True)
        source_image = image.resize(best_size, resample=Image.Resampling.BICUBIC)
    else:
        best_resize = find_best_resize(original_size, scale_resolution, patch_size)
        source_image = image.copy().resize(best_resize, resample=Image.Resampling.BICUBIC)
        refine_size = get_refine_size(original_size, best_grid, scale_resolution, patch_size, allow_upscale=True)
        refine_image = image.resize(refine_size, resample=Image.Resampling.BICUBIC)
        patches = split_to_patches(refine_image, best_grid)
    return source_image, patches, best_grid


def reshape_by_patch(image, patch_size=14):
    """[3, H, W] float32 numpy -> [3, patch_size, (H/p)(W/p)*p] torch, exactly like the reference."""
    image = torch.from_numpy(image)
    patches = torch.nn.functional.unfold(image, (patch_size, patch_size), stride=(patch_size, patch_size))
    patches = patches.reshape(image.size(0), patch_size, patch_size, -1)
    patches = patches.permute(0, 1, 3, 2).reshape(image.size(0), patch_size, -1)
    return patches


def normalize(img):
    """PIL RGB -> float32 [3, H, W], (x/255 - mean)/std computed in float32 like transformers' normalize."""
    x = np.asarray(img, dtype=np.uint8).astype(np.float32) / 255
    x = (x - np.float32(MEAN)) / np.float32(STD)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def preprocess(img, max_slice_nums=9, scale_resolution=448, patch_size=14):
    if img.mode != "RGB":
        img = img.convert("RGB")
    source, patches, grid = slice_image(img, max_slice_nums, scale_resolution, patch_size)
    images = [source]
    for row in patches:
        images.extend(row)
    pixel_values, tgt_sizes = [], []
    for im in images:
        x = normalize(im)
        pixel_values.append(reshape_by_patch(x, patch_size))
        tgt_sizes.append((x.shape[1] // patch_size, x.shape[2] // patch_size))
    return dict(grid=None if grid is None else (grid[0], grid[1]), images=images,
                pixel_values=pixel_values, tgt_sizes=tgt_sizes)


def placeholder(image_index, grid, query_num=64, use_image_id=True):
    """Text that replaces one `(<image>./</image>)` tag (spec §3.2). grid = (cols, rows) or None."""
    text = f"<image_id>{image_index}</image_id>" if use_image_id else ""
    text += "<image>" + "<unk>" * query_num + "</image>"
    if grid is not None:
        cols, rows = grid
        cell = "<slice>" + "<unk>" * query_num + "</slice>"
        text += "\n".join(cell * cols for _ in range(rows))
    return text


if __name__ == "__main__":
    import sys

    for path in sys.argv[1:]:
        out = preprocess(Image.open(path).convert("RGB"))
        print(path, "grid", out["grid"], "tgt_sizes", out["tgt_sizes"],
              "shapes", [tuple(p.shape) for p in out["pixel_values"]])
