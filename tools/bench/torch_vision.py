#!/usr/bin/env python3
"""PyTorch time of MiniCPM-o's vision encoder on one 448x448 slice (32x32 = 1024 patches): SigLIP-NaViT
+ resampler, float32, like `minicpmo bench --encoders`. The weights (`vpm.*`, `resampler.*`, any of
bf16/f16/f32) are loaded into the reference modules of tools/reference/vision.py.

    python tools/reference/generate.py --geometry minicpmo-vision --out models/minicpmo-vision-random
    python tools/bench/torch_vision.py --model models/minicpmo-vision-random --threads 2 --repeats 3
"""
import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reference"))
import vision as vis  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    vpm, resampler = vis.load_vision(a.model)
    p = vpm.config.patch_size
    side = 448 // p
    g = torch.Generator().manual_seed(3)
    pixels = torch.rand((1, 3, p, side * side * p), generator=g) * 2 - 1
    tgt = torch.tensor([[side, side]], dtype=torch.int64)

    def run():
        with torch.inference_mode():
            hidden = vis.vpm_forward(vpm, pixels, tgt)
            return resampler(hidden, tgt)

    out = run()  # warm-up
    samples = []
    for _ in range(a.repeats):
        t = time.perf_counter()
        run()
        samples.append(time.perf_counter() - t)
    ms = 1000 * statistics.median(samples)
    if a.json:
        print(json.dumps({"component": "vision", "input": f"{side * p}x{side * p} slice ({side * side} patches) -> "
                          f"{out.shape[1]} embeddings", "median_ms": ms, "samples_ms": [1000 * s for s in samples],
                          "threads": a.threads, "dtype": "float32", "torch": torch.__version__}))
    else:
        print(f"vision {side * p}x{side * p} slice ({side * side} patches): {ms:.1f} ms "
              f"(median of {a.repeats}, {a.threads} threads, float32)")


if __name__ == "__main__":
    main()
