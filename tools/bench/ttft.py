#!/usr/bin/env python3
"""Time to first token at each weight format: `minicpmo bench --ttft` (a 1344x1008 photo + a question,
30 s of audio + a question, 512 text tokens; each split into encode / prefill / first decode step), one
process per format, in one run. Prints a markdown table and writes the raw results.

    python tools/reference/generate.py --geometry minicpm-o-2_6-full --out models/minicpm-o-2_6-full
    swift build -c release --product minicpmo
    python tools/bench/ttft.py --model models/minicpm-o-2_6-full --out docs/ttft-results.json

Each format runs with its fastest prefill arithmetic (bf16: bf16 activations; q8/q4: int8, which also
quantizes the encoders' weights to Q8_0 at load).
"""
import argparse
import datetime
import json
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".build" / "release" / "minicpmo"
SPECS = {"bf16": ("bf16", "bf16"), "q8": ("q8", "int8"), "q4": ("q4", "int8")}


def run(model, quant, precision, threads, repeats, prompt_tokens):
    cmd = [str(BIN), "bench", "--ttft", "--model", model, "--quant", quant, "--prefill-precision", precision,
           "--threads", str(threads), "--repeats", str(repeats), "--prompt-tokens", str(prompt_tokens), "--json"]
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    p = subprocess.run(cmd, text=True, capture_output=True)
    if p.returncode != 0:
        sys.exit(f"{quant}: minicpmo bench failed ({p.returncode}):\n{p.stderr[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--formats", nargs="+", choices=sorted(SPECS), default=["bf16", "q8", "q4"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--prompt-tokens", type=int, default=512)
    ap.add_argument("--out", help="results JSON")
    a = ap.parse_args()
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], text=True,
                            capture_output=True).stdout.strip()
    results = {f: run(a.model, *SPECS[f], a.threads, a.repeats, a.prompt_tokens) for f in a.formats}
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"\n{stamp} · {platform.processor() or platform.machine()} · commit {commit} · {a.threads} threads, "
          f"medians of {a.repeats}\n")
    print("| request | format | encode (s) | prefill (s) | prompt tokens | TTFT (s) | first decode step (s) |")
    print("|---|---|---|---|---|---|---|")
    names = [c["name"] for c in next(iter(results.values()))["cases"]]
    for name in names:
        for f, r in results.items():
            c = next(c for c in r["cases"] if c["name"] == name)
            print(f"| {c['input']} | {f} ({r['weights']}, {r['prefill_precision']}) | {c['encode_seconds']:.2f} | "
                  f"{c['prefill_seconds']:.2f} | {c['prompt_tokens']} | **{c['time_to_first_token_seconds']:.2f}** | "
                  f"{c['first_decode_step_seconds']:.3f} |")
    print("\npeak RSS (GB): " + ", ".join(f"{f} {r['peak_rss_bytes'] / 1e9:.2f}" for f, r in results.items()))
    if a.out:
        Path(a.out).write_text(json.dumps({"date": stamp, "commit": commit, "threads": a.threads,
                                           "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
