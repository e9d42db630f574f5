#!/usr/bin/env python3
"""Chats that open with the same long system prompt, against `minicpmo serve` (loopback only).

    python3 tools/bench/serve_shared_prefix.py --model models/qwen2.5-7b-4l-random --quant q4 [--bin A --bin B]

One chat runs first (its KV cache is then kept for reuse), then N more with the same system prompt and
different questions arrive at once. Reported per binary, in turn: the wall time of the N, the prompt
tokens they reused from the cache (usage.prompt_tokens_details.cached_tokens) and the most KV bytes in
use while they ran (the server's minicpmo_kv_bytes_in_use gauge, sampled every 50 ms).
"""
import argparse
import http.client
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_parallel import ROOT, kv_bytes_in_use, start_server  # noqa: E402


def chat(port, body):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    c.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    assert r.status == 200, data
    return json.loads(data)


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
        kv_max, sampling = [0.0], [True]

        def sample():
            while sampling[0]:
                kv_max[0] = max(kv_max[0], kv_bytes_in_use(port))
                time.sleep(0.05)
        sampler = threading.Thread(target=sample)
        sampler.start()
        threads = [threading.Thread(target=run, args=(i,)) for i in range(args.clients)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.monotonic() - t0
        sampling[0] = False
        sampler.join()
        cached = [r["usage"].get("prompt_tokens_details", {}).get("cached_tokens", 0) for r in replies]
        return {"bin": binary, "first_prompt_tokens": first["usage"]["prompt_tokens"], "clients": args.clients,
                "seconds": round(seconds, 2), "cached_tokens": cached, "kv_bytes_in_use_max": int(kv_max[0])}
    finally:
        server.terminate()
        server.wait(timeout=30)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--quant", default="q4")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=16)
    ap.add_argument("--system-words", type=int, default=800)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--prefill-chunk", type=int, default=256)
    ap.add_argument("--bin", action="append", help="binaries to compare, in turn (default: the release build)")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--json")
    args = ap.parse_args()
    binaries = args.bin or [os.path.join(ROOT, ".build", "release", "minicpmo")]
    runs = [measure(b, args) for _ in range(args.rounds) for b in binaries]
    print(json.dumps(runs, indent=1))
    if args.json:
        json.dump(runs, open(args.json, "w"), indent=1)


if __name__ == "__main__":
    main()
