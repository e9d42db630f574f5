#!/usr/bin/env python3
"""PyTorch time of MiniCPM-o's speech output, float32: the ConditionalChatTTS transformer (the first 12-slot text
prefill, then F greedy frames with the §5.4 masks and KV cache, the non-streaming schedule's 10-slot text prefills
every 25 frames, EOS suppressed so that exactly F frames are made), the DVAE decoder on those F frames
(-> 2F mel frames), and Vocos (-> 2F·256 samples at 24 kHz). The modules are tools/reference/speech.py's
(transformers' LlamaModel, chattts's DVAE, the vocos package), loaded from a checkpoint folder (`tts.*` of any of
bf16/f16/f32, assets/Vocos.pt, assets/chattts_tokenizer). The speaker vector is seeded noise; the text a fixed
sentence.

    python tools/reference/generate.py --geometry minicpmo-tts --out models/minicpmo-tts-random
    python tools/bench/torch_tts.py --model models/minicpmo-tts-random --threads 2 --frames 100 --json

Real-time factor = audio seconds (F·2·256/24000) / wall seconds of the three parts (> 1: faster than real time).
"""
import argparse
import gzip
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reference"))
import speech as sp  # noqa: E402

TEXT = ("Hello! This is a test of the speech output of MiniCPM-o, reading a sentence long enough to fill several "
        "chunks of text while the audio codes are generated one frame at a time.")


def run_once(tts, vocos, ctok, frames, spk_hidden):
    """-> (seconds: prefill, generation, dvae, vocos; the frames; the waveform)."""
    ids = ctok.encode(TEXT, add_special_tokens=False).ids
    spk = tts.project_speaker(spk_hidden)
    ctx = tts.new_context(ids, sp.chattts_specials(ctok), spk)
    ctx.keep_logits = False
    t0 = time.perf_counter()
    ctx.prefill_text(0, 2 + sp.TEXT_CHUNK)
    t1 = time.perf_counter()
    prefill_more = 0.0
    c = 0
    while len(ctx.frames) < frames:
        if c > 0:
            begin, end = c * sp.TEXT_CHUNK + 2, min((c + 1) * sp.TEXT_CHUNK + 2, sp.CONDITION_LENGTH - 1)
            if end > begin:
                s = time.perf_counter()
                ctx.prefill_text(begin, end)
                prefill_more += time.perf_counter() - s
        n = min(sp.OUTPUT_CHUNK, frames - len(ctx.frames))
        ctx.generate(n, min_new=n)  # force_no_stop: EOS never chosen
        c += 1
    t2 = time.perf_counter()
    codes = torch.tensor(ctx.frames, dtype=torch.int64).T.unsqueeze(0)
    mel = tts.dvae_decode(codes)
    t3 = time.perf_counter()
    wave = vocos.decode(mel)
    t4 = time.perf_counter()
    assert wave.shape[-1] == frames * 2 * sp.HOP
    return (t1 - t0 + prefill_more, t2 - t1 - prefill_more, t3 - t2, t4 - t3), ctx.frames, wave


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    tts, vocos = sp.load_tts(a.model)
    tok_dir = Path(a.model) / "assets" / "chattts_tokenizer"
    plain = tok_dir / "tokenizer.json"
    data = plain.read_bytes() if plain.exists() else gzip.decompress((tok_dir / "tokenizer.json.gz").read_bytes())
    ctok = sp.load_chattts_tokenizer(data)
    llm_dim = tts.config["llm_dim"]
    spk_hidden = torch.randn(llm_dim, generator=torch.Generator().manual_seed(7))
    run_once(tts, vocos, ctok, min(a.frames, 8), spk_hidden)  # warm-up
    samples = [run_once(tts, vocos, ctok, a.frames, spk_hidden)[0] for _ in range(a.repeats)]
    parts = ["prefill", "generate", "dvae", "vocos"]
    med = {p: statistics.median(s[i] for s in samples) for i, p in enumerate(parts)}
    total = sum(med.values())
    audio_s = a.frames * 2 * sp.HOP / sp.SAMPLE_RATE
    result = {"component": "tts", "frames": a.frames, "mel_frames": 2 * a.frames, "audio_seconds": audio_s,
              **{f"{p}_s": med[p] for p in parts}, "total_s": total,
              "generate_ms_per_frame": 1000 * med["generate"] / a.frames,
              "realtime_factor": audio_s / total, "tts_config": {k: tts.config[k] for k in sp.TTS_TINY},
              "dvae": tts.dvae_sizes, "threads": a.threads, "dtype": "float32", "torch": torch.__version__}
    if a.json:
        print(json.dumps(result))
    else:
        print(f"tts {a.frames} frames ({audio_s:.2f} s audio): prefill {med['prefill']:.3f} s, generate "
              f"{med['generate']:.3f} s ({result['generate_ms_per_frame']:.1f} ms/frame), dvae {med['dvae']:.3f} s, "
              f"vocos {med['vocos']:.3f} s; total {total:.3f} s, real-time factor {result['realtime_factor']:.2f} "
              f"({a.threads} threads, float32)")


if __name__ == "__main__":
    main()
