#!/usr/bin/env python3
"""Side-by-side encoder benchmark: `minicpmo bench --encoders` vs PyTorch (tools/bench/torch_vision.py,
torch_audio.py) on the same random-weight checkpoints with the real geometry, in one run, float32 both.
Runs alternate (ours, torch, ours, torch, …) so that drift on a shared machine hits both sides alike.

    python tools/reference/generate.py --geometry minicpmo-vision --out models/minicpmo-vision-random
    python tools/reference/generate.py --geometry minicpmo-audio  --out models/minicpmo-audio-random
    swift build -c release
    python tools/bench/encoders.py --threads 1 2 --rounds 3 --out docs/benchmark-encoders.json
"""
import argparse
import datetime
import json
import platform
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".build" / "release" / "minicpmo"
MODELS = {"vision": "minicpmo-vision-random", "audio": "minicpmo-audio-random"}


def run_json(cmd):
    print("+", " ".join(str(c) for c in cmd), file=sys.stderr, flush=True)
    out = subprocess.run([str(c) for c in cmd], check=True, text=True, capture_output=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def ours(model_dir, threads, extra=()):
    r = run_json([BIN, "bench", "--encoders", "--model", model_dir, "--threads", threads, "--repeats", 1, "--json", *extra])
    return {e["component"]: e["median_seconds"] for e in r["encoders"]}


def torch_side(kind, model_dir, threads):
    script = ROOT / "tools" / "bench" / f"torch_{kind}.py"
    r = run_json([sys.executable, script, "--model", model_dir, "--threads", threads, "--repeats", 1, "--json"])
    if kind == "vision":
        return {"vision": r["median_ms"] / 1000}
    return {"audio-mel": r["features_median_ms"] / 1000, "audio": r["model_median_ms"] / 1000}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=str(ROOT / "models"))
    ap.add_argument("--threads", type=int, nargs="+", default=[2])
    ap.add_argument("--rounds", type=int, default=3, help="alternating runs per side (medians are reported)")
    ap.add_argument("--only", choices=sorted(MODELS), nargs="*", default=sorted(MODELS))
    ap.add_argument("--out", help="results JSON")
    ap.add_argument("--prefill-precision", choices=["f32", "bf16", "int8"], default="f32",
                    help="ours: f32 (exact), bf16 activations with AVX512_BF16 products, or int8 (encoder weights quantized to q8_0 at load, VNNI products)")
    a = ap.parse_args()
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], text=True, capture_output=True).stdout.strip()
    rows = []
    for kind in a.only:
        d = Path(a.models) / MODELS[kind]
        for threads in a.threads:
            samples = {"ours": {}, "torch": {}}
            for _ in range(a.rounds):
                for side, fn in (("ours", lambda: ours(d, threads, ["--prefill-precision", a.prefill_precision])), ("torch", lambda: torch_side(kind, d, threads))):
                    for comp, sec in fn().items():
                        if comp == kind or comp.startswith(kind):
                            samples[side].setdefault(comp, []).append(sec)
            for comp in sorted(samples["torch"]):
                o, t = statistics.median(samples["ours"][comp]), statistics.median(samples["torch"][comp])
                rows.append({"component": comp, "threads": threads, "ours_s": o, "torch_s": t, "speedup": t / o,
                             "ours_samples": samples["ours"][comp], "torch_samples": samples["torch"][comp]})
    print(f"\n{datetime.date.today()} · {platform.processor() or platform.machine()} · commit {commit} · ours {a.prefill_precision}\n")
    print("| component | threads | ours (s) | PyTorch (s) | PyTorch ÷ ours |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['component']} | {r['threads']} | {r['ours_s']:.3f} | {r['torch_s']:.3f} | {r['speedup']:.2f} |")
    if a.out:
        Path(a.out).write_text(json.dumps({"date": str(datetime.date.today()), "commit": commit,
                                           "prefill_precision": a.prefill_precision, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
