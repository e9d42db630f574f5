#!/usr/bin/env python3
"""Side-by-side benchmark: MiniCPM-o.swift vs llama.cpp vs PyTorch on the same random-weight
checkpoints, in one run, on this machine. Writes results JSON and a markdown table.

Prerequisites (see docs/benchmarks.md for the exact commands):
  - `swift build -c release` (the `minicpmo` binary),
  - a Python venv with tools/reference/requirements.txt (torch, transformers) plus gguf's needs,
  - llama.cpp's `llama-bench` and `llama-quantize`, built from the tree vendored in PyPI's
    llama-cpp-python sdist (never committed), and its `convert_hf_to_gguf.py`.
"""
import argparse
import datetime
import gzip
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".build" / "release" / "minicpmo"

MODELS = {
    "qwen2.5-0.5b": "qwen2.5-0.5b-random",
    "qwen2.5-7b-4l": "qwen2.5-7b-4l-random",
}
# ours --quant → llama.cpp type
FORMATS = [("bf16", "F16"), ("q8", "Q8_0"), ("q4", "Q4_0")]


def sh(cmd, **kw):
    print("+", " ".join(str(c) for c in cmd), file=sys.stderr, flush=True)
    return subprocess.run([str(c) for c in cmd], check=True, text=True, capture_output=True, **kw).stdout


def prepare_model(name, args):
    d = Path(args.models) / MODELS[name]
    if not (d / "config.json").exists():
        sh([sys.executable, ROOT / "tools/reference/generate.py", "--geometry", name, "--out", d])
    # convert_hf_to_gguf needs a tokenizer: the real Qwen2 vocabulary from the fixtures
    tok = d / "tokenizer.json"
    if not tok.exists():
        tok.write_bytes(gzip.decompress((ROOT / "Tests/Fixtures/tokenizer/qwen2/tokenizer.json.gz").read_bytes()))
        shutil.copy(ROOT / "Tests/Fixtures/tokenizer/qwen2/tokenizer_config.json", d / "tokenizer_config.json")
    return d


def gguf_files(d, args):
    out = {}
    f16 = d / "model-F16.gguf"
    if not f16.exists():
        sh([sys.executable, Path(args.llama_src) / "convert_hf_to_gguf.py", d, "--outtype", "f16", "--outfile", f16])
    out["F16"] = f16
    for t in ("Q8_0", "Q4_0"):
        g = d / f"model-{t}.gguf"
        if not g.exists():
            sh([Path(args.llama_build) / "bin" / "llama-quantize", f16, g, t])
        out[t] = g
    return out


def ceiling(threads):
    """A short read-ceiling measurement (`minicpmo bench --bandwidth` alone), taken before and after each llama.cpp
    run; ours is probed during its own decode (every 16 steps)."""
    return json.loads(sh([BIN, "bench", "--bandwidth", "--threads", threads, "--json"]))["read_bandwidth_bytes_per_second"]


def llama_bench(gguf, threads, args):
    before = ceiling(threads)
    res = json.loads(sh([Path(args.llama_build) / "bin" / "llama-bench", "-m", gguf, "-p", args.prompt_tokens,
                         "-n", args.gen_tokens, "-t", threads, "-r", args.repeats, "-o", "json"]))
    # the machine's state during llama.cpp's run, bracketed like ours (its runs last longer)
    around = max(before, ceiling(threads))
    pp = next(r for r in res if r["n_prompt"] > 0 and r["n_gen"] == 0)
    tg = next(r for r in res if r["n_gen"] > 0 and r["n_prompt"] == 0)
    # llama-bench reports the mean; its samples give the median
    med = lambda r: statistics.median(r.get("samples_ts") or [r["avg_ts"]])
    return {"prefill": med(pp), "decode": med(tg), "model_size": pp.get("model_size"), "read_bandwidth": around}


def ours(d, quant, threads, args):
    common = [BIN, "bench", "--model", d, "--quant", quant, "--threads", threads, "--prompt-tokens", args.prompt_tokens,
              "--repeats", args.repeats, "--json"]
    # main run: the fast prefill (int8: quantized weights times int8 activations, as llama.cpp's Q8_0/Q4_0 paths;
    # bf16 weights with bf16 activations, as llama.cpp's F16 path rounds them to f16), then decode
    r = json.loads(sh(common + ["--gen-tokens", args.gen_tokens, "--prefill-precision", args.fast_precision, "--bandwidth"]))
    # the exact float32 prefill, for reference
    exact = json.loads(sh(common + ["--gen-tokens", 0, "--prefill-precision", "f32"]))
    return {"prefill": r["prefill_tokens_per_second"], "prefill_f32": exact["prefill_tokens_per_second"],
            "decode": r["decode_tokens_per_second"],
            "weight_bytes": r["weight_bytes"], "kv_cache_bytes": r["kv_cache_bytes"], "peak_rss": r["peak_rss_bytes"],
            "ttft": r["time_to_first_token_seconds"], "streamed_bytes": r["decode_bytes_per_token"],
            "read_bandwidth": r.get("read_bandwidth_bytes_per_second"),
            "decode_bandwidth_fraction": r.get("decode_bandwidth_fraction")}


def torch_bench(d, threads, args):
    r = json.loads(sh([sys.executable, ROOT / "tools/bench/torch_bench.py", "--model", d, "--threads", threads,
                       "--prompt-tokens", args.prompt_tokens, "--gen-tokens", args.gen_tokens,
                       "--repeats", args.repeats, "--dtype", "float32"]))
    return {"prefill": r["prefill_tokens_per_second"], "decode": r["decode_tokens_per_second"], "torch": r["torch"]}


def median_of(runs):
    """Per key, the median over rounds of each round's value (numbers only; the rest from the first)."""
    out = dict(runs[0])
    for k, v in out.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[k] = statistics.median(r[k] for r in runs if r.get(k) is not None)
    return out


def bandwidth(threads):
    out = sh([BIN, "bench", "--kernels", "--threads", threads])
    return float(out.splitlines()[0].split()[3]) * 1e9


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=str(ROOT / "models"))
    ap.add_argument("--llama-src", required=True, help="vendor/llama.cpp of the llama-cpp-python sdist")
    ap.add_argument("--llama-build", required=True, help="its cmake build folder")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--prompt-tokens", type=int, default=512)
    ap.add_argument("--gen-tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", default=",".join(MODELS))
    ap.add_argument("--skip-torch", action="store_true")
    ap.add_argument("--rounds", type=int, default=1, help="alternating runs of ours and llama.cpp per row (medians)")
    ap.add_argument("--formats", default=",".join(t for _, t in FORMATS), help="llama.cpp type names to run")
    ap.add_argument("--fast-precision", default="int8", help="ours' --prefill-precision for the main column (int8 or bf16)")
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmark-results.json"))
    args = ap.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    results = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "commit": sh(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]).strip(),
               "machine": f"{platform.machine()}, {os.cpu_count()} cores, " + cpu_name(),
               "prompt_tokens": args.prompt_tokens, "gen_tokens": args.gen_tokens, "fast_precision": args.fast_precision, "repeats": args.repeats,
               "bandwidth": {t: bandwidth(t) for t in threads}, "runs": []}
    for name in args.only.split(","):
        d = prepare_model(name, args)
        ggufs = gguf_files(d, args)
        for t in threads:
            for quant, ltype in FORMATS:
                if ltype not in args.formats.split(","):
                    continue
                # the engines take turns, so that both see the machine's slow and fast spells alike
                rounds = [(ours(d, quant, t, args), llama_bench(ggufs[ltype], t, args)) for _ in range(args.rounds)]
                row = {"model": name, "threads": t, "format": ltype, "ours": median_of([o for o, _ in rounds]),
                       "llama": median_of([l for _, l in rounds]), "rounds": [{"ours": o, "llama": l} for o, l in rounds]}
                results["runs"].append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
            if not args.skip_torch:
                row = {"model": name, "threads": t, "format": "F32", "torch": torch_bench(d, t, args)}
                results["runs"].append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
            Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    print(markdown(results))


def cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def markdown(res):
    lines = [f"pp = prefill of {res['prompt_tokens']} tokens, tg = decode of {res['gen_tokens']}; ours pp with "
             f"--prefill-precision {res.get('fast_precision', 'bf16')}", "",
             "| model | format | threads | ours pp | ours pp (f32) | llama.cpp pp | ratio | ours tg | "
             "llama.cpp tg | ratio | ours tg GB/s (% of the read ceiling during decode, GB/s) | ceiling around llama.cpp (GB/s) | peak RSS / (weights + KV) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["runs"]:
        if "ours" not in r:
            continue
        o, l = r["ours"], r["llama"]
        # the fraction of the ceiling measured during decode, else of the run's ceiling
        bw = o.get("read_bandwidth") or (res["bandwidth"][r["threads"]] if r["threads"] in res["bandwidth"]
                                         else res["bandwidth"][str(r["threads"])])
        streamed = o.get("streamed_bytes")
        share = o.get("decode_bandwidth_fraction") or (o["decode"] * streamed / bw if streamed else None)
        frac = f"{o['decode'] * streamed / 1e9:.1f} ({100 * share:.0f}% of {bw / 1e9:.0f})" if streamed else "-"
        rss = o["peak_rss"] / (o["weight_bytes"] + o["kv_cache_bytes"])
        theirs = f"{l['read_bandwidth'] / 1e9:.0f}" if l.get("read_bandwidth") else "-"
        lines.append(f"| {r['model']} | {r['format']} | {r['threads']} | {o['prefill']:.1f} | {o['prefill_f32']:.1f} | {l['prefill']:.1f} | "
                     f"{o['prefill'] / l['prefill']:.2f} | {o['decode']:.2f} | {l['decode']:.2f} | "
                     f"{o['decode'] / l['decode']:.2f} | {frac} | {theirs} | {rss:.2f} |")
    lines += ["", "| model | threads | PyTorch fp32 pp | PyTorch fp32 tg |", "|---|---|---|---|"]
    for r in res["runs"]:
        if "torch" in r:
            lines.append(f"| {r['model']} | {r['threads']} | {r['torch']['prefill']:.1f} | {r['torch']['decode']:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
