#!/usr/bin/env python3
"""Chats that open with the same long system prompt, against `minicpmo serve` (loopback only).

    python3 tools/bench/serve_shared_prefix.py --model models/qwen2.5-7b-4l-random --quant q4 [--bin A --bin B]

One chat runs first (its KV cache is then kept for reuse), then N more with the same system prompt and
different questions arrive at once. Reported per binary, in turn: the wall time of the N, the prompt
tokens they reused from the cache (usage.prompt_tokens_details.cached_tokens) and the most KV bytes in
use while they ran (the server's minicpmo_kv_bytes_in_use gauge, sampled every 50 ms).
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_parallel import ROOT, add_server_args, concurrently, post_chat as chat, start_server  # noqa: E402


def measure(binary, args):
    server, port = start_server(binary, args.model, args.quant, args.threads, args.batch, args.prefill_chunk)
    try:
        system = " ".join(f"Rule {i}: answer plainly and briefly." for i in range(args.system_words // 5))
        body = lambda q: {"messages": [{"role": "system", "content": system}, {"role": "user", "content": q}],
                          "max_tokens": args.tokens, "temperature": 0}
        first = chat(port, body("Who are you?"))
        replies = [None] * args.clients

        def run(i):
            replies[i] = chat(port, body(f"Question {i}: what is {i} times {i + 1}?"))
        seconds, kv_max = concurrently(port, run, args.clients)
        cached = [r["usage"].get("prompt_tokens_details", {}).get("cached_tokens", 0) for r in replies]
        return {"bin": binary, "first_prompt_tokens": first["usage"]["prompt_tokens"], "clients": args.clients,
                "seconds": round(seconds, 2), "cached_tokens": cached, "kv_bytes_in_use_max": int(kv_max)}
    finally:
        server.terminate()
        server.wait(timeout=30)


def main():
    ap = argparse.ArgumentParser()
    add_server_args(ap, quant="q4", tokens=16)
    ap.add_argument("--system-words", type=int, default=800)
    ap.add_argument("--bin", action="append", help="binaries to compare, in turn (default: the release build)")
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    binaries = args.bin or [os.path.join(ROOT, ".build", "release", "minicpmo")]
    runs = [measure(b, args) for _ in range(args.rounds) for b in binaries]
    print(json.dumps(runs, indent=1))
    if args.json:
        json.dump(runs, open(args.json, "w"), indent=1)


if __name__ == "__main__":
    main()
