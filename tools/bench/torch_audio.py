#!/usr/bin/env python3
"""PyTorch time of MiniCPM-o's audio input on 30 s of audio: WhisperFeatureExtractor (log-mel, 3000 frames) and
the Whisper encoder with the 1-second chunk mask + projector + pooling (1500 encoder frames -> 750 embeddings),
float32. The weights (`apm.*`, `audio_projection_layer.*`, any of bf16/f16/f32) are loaded into the reference
modules of tools/reference/audio.py. The waveform is deterministic: a gliding tone with seeded noise.

    python tools/reference/generate.py --geometry minicpmo-audio --out models/minicpmo-audio-random
    python tools/bench/torch_audio.py --model models/minicpmo-audio-random --threads 2 --repeats 3
"""
import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reference"))
import audio as aud  # noqa: E402

SECONDS = 30


def waveform(seconds=SECONDS, sr=aud.SAMPLING_RATE):
    t = np.arange(seconds * sr, dtype=np.float64) / sr
    tone = 0.3 * np.sin(2 * np.pi * (200 * t + 10 * t * t))  # 200 Hz gliding up to 800 Hz
    noise = 0.02 * np.random.default_rng(3).standard_normal(t.shape)
    return (tone + noise).astype(np.float32)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    apm, projector = aud.load_audio(a.model)
    wave = waveform()
    extractor = aud.feature_extractor()

    def feats():
        return aud.features(aud.split_pieces(wave), extractor)

    def model(x):
        with torch.inference_mode():
            return aud.pool(projector(aud.apm_forward(apm, x)))

    x, _ = aud.pad_features(feats())
    out = model(x)  # warm-up
    f_samples, m_samples = [], []
    for _ in range(a.repeats):
        t = time.perf_counter()
        x, _ = aud.pad_features(feats())
        f_samples.append(time.perf_counter() - t)
        t = time.perf_counter()
        model(x)
        m_samples.append(time.perf_counter() - t)
    tot_samples = [f + m for f, m in zip(f_samples, m_samples)]
    fms, mms, tms = (1000 * statistics.median(s) for s in (f_samples, m_samples, tot_samples))
    what = f"{SECONDS} s audio ({x.shape[2]} mel frames) -> {out.shape[1]} embeddings"
    if a.json:
        print(json.dumps({"component": "audio", "input": what, "features_median_ms": fms, "model_median_ms": mms,
                          "median_ms": tms, "features_samples_ms": [1000 * s for s in f_samples],
                          "model_samples_ms": [1000 * s for s in m_samples], "threads": a.threads,
                          "dtype": "float32", "torch": torch.__version__}))
    else:
        print(f"audio {what}: features {fms:.1f} ms, model {mms:.1f} ms, total {tms:.1f} ms "
              f"(median of {a.repeats}, {a.threads} threads, float32)")


if __name__ == "__main__":
    main()
