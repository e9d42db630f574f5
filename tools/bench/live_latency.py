#!/usr/bin/env python3
"""Latency of a live call, as `minicpmo live` measures it, over several runs (medians: this machine is noisy).

    python3 tools/bench/live_latency.py --model models/full-q4 --input question.wav --runs 5 [--json OUT] [-- EXTRA FLAGS]

Each run replays the recording in real time (2 threads, int8 prefill) and reads its live.json: the end of speech
to the first text and to the first audio of the first answer, and each unit's prefill time per second of audio
(the listening real-time factor).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--input", required=True)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--bin", default=os.path.join(ROOT, ".build", "release", "minicpmo"))
    ap.add_argument("--json")
    ap.add_argument("extra", nargs="*", help="more flags for minicpmo live (after --)")
    args = ap.parse_args()
    runs = []
    for i in range(args.runs):
        out = tempfile.mkdtemp(prefix="live-latency-")
        cmd = [args.bin, "live", "--model", args.model, "--input", args.input, "--output", out, "--threads", "2",
               "--prefill-precision", "int8", "--temperature", "0", "--max-tokens", "40"] + args.extra
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        d = json.load(open(os.path.join(out, "live.json")))
        t = d["turns"][0]
        factors = [u["prefill_seconds"] / u["seconds"] for u in d["units"]]
        run = {"first_text": t.get("first_text_after_speech_end_seconds"),
               "first_audio": t.get("first_audio_after_speech_end_seconds"),
               "unit_rtf_median": statistics.median(factors), "unit_rtf_max": max(factors),
               "unit_encode_seconds_median": statistics.median(u["encode_seconds"] for u in d["units"]),
               "answer_phases": t.get("phases")}
        runs.append(run)
        print(f"run {i + 1}: first text {run['first_text']:.2f} s, first audio {run['first_audio']:.2f} s, "
              f"unit rtf median {run['unit_rtf_median']:.2f} max {run['unit_rtf_max']:.2f}", file=sys.stderr)
    med = {k: statistics.median(r[k] for r in runs) for k in ("first_text", "first_audio", "unit_rtf_median", "unit_rtf_max")}
    summary = {"command": " ".join(["minicpmo live", "--model", args.model, "--input", args.input] + args.extra),
               "runs": runs, "median": med}
    print(json.dumps(med, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=1)


if __name__ == "__main__":
    main()
