#!/usr/bin/env python3
"""Prefill at several prompt lengths, ours against llama.cpp, in one run: per (length, format) the two
engines take turns `--rounds` times, prefill only (no decode, no float32 reference), and each engine's
figure is the median over its rounds of its own median of `--repeats`. Uses the checkpoints and GGUF files
that run.py prepares (it makes them when missing).

  .venv/bin/python tools/bench/prefill_sweep.py --llama-src ... --llama-build /tmp/llama/build \
      --lengths 16,64,256,512,1024,2048 --out docs/benchmark-results-prefill-sweep.json
"""
import argparse
import datetime
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402  (the shared helpers: model preparation, GGUF conversion, the binary's path)


def ours(d, quant, threads, tokens, args):
    r = json.loads(run.sh([run.BIN, "bench", "--model", d, "--quant", quant, "--threads", threads, "--prompt-tokens", tokens,
                           "--gen-tokens", 0, "--repeats", args.repeats, "--prefill-precision", args.fast_precision, "--json"]))
    return r["prefill_tokens_per_second"]


def llama(gguf, threads, tokens, args):
    res = json.loads(run.sh([Path(args.llama_build) / "bin" / "llama-bench", "-m", gguf, "-p", tokens, "-n", 0,
                             "-t", threads, "-r", args.repeats, "-o", "json"]))
    pp = next(r for r in res if r["n_prompt"] > 0 and r["n_gen"] == 0)
    return statistics.median(pp.get("samples_ts") or [pp["avg_ts"]])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=str(run.ROOT / "models"))
    ap.add_argument("--model", default="qwen2.5-7b-4l", choices=sorted(run.MODELS))
    ap.add_argument("--llama-src", required=True)
    ap.add_argument("--llama-build", required=True)
    ap.add_argument("--threads", default="2")
    ap.add_argument("--lengths", default="16,64,256,512,1024,2048")
    ap.add_argument("--formats", default="F16,Q8_0,Q4_0")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--fast-precision", default="int8", help="ours' --prefill-precision (bf16 weights take bf16 activations)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    d = run.prepare_model(args.model, args)
    ggufs = run.gguf_files(d, args)
    quant_of = {t: q for q, t in run.FORMATS}
    res = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "commit": run.sh(["git", "-C", run.ROOT, "rev-parse", "--short", "HEAD"]).strip(),
           "machine": run.cpu_name(), "model": args.model, "threads": args.threads, "repeats": args.repeats,
           "fast_precision": args.fast_precision, "rows": []}
    for tokens in [int(n) for n in args.lengths.split(",")]:
        for fmt in args.formats.split(","):
            rounds = [(ours(d, quant_of[fmt], args.threads, tokens, args), llama(ggufs[fmt], args.threads, tokens, args))
                      for _ in range(args.rounds)]
            row = {"prompt_tokens": tokens, "format": fmt, "ours": statistics.median(o for o, _ in rounds),
                   "llama": statistics.median(l for _, l in rounds), "rounds": rounds}
            row["ratio"] = row["ours"] / row["llama"]
            res["rows"].append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
            Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    print("| prompt | format | ours pp | llama.cpp pp | ratio |\n|---|---|---|---|---|")
    for r in res["rows"]:
        print(f"| {r['prompt_tokens']} | {r['format']} | {r['ours']:.1f} | {r['llama']:.1f} | {r['ratio']:.2f} |")


if __name__ == "__main__":
    main()
