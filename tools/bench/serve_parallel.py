#!/usr/bin/env python3
"""Concurrent clients against `minicpmo serve`, measured in one run (loopback only).

    python3 tools/bench/serve_parallel.py --model models/qwen2.5-7b-4l-random --quant q8 [--clients 8] [--tokens 64]

1. The same N requests one after another, then all at once: total wall time of each and their ratio; the
   answers (greedy) must be the same both ways.
2. A streamed answer running while a ~2000-token prompt arrives: the longest gap between its tokens
   (the prompt goes in --prefill-chunk tokens per step, between the running answer's tokens).
"""
import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def post_chat(port, body):
    """A chat completion's whole JSON reply."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    c.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    assert r.status == 200, data
    return json.loads(data)


def request(port, body):
    return post_chat(port, body)["choices"][0]["message"]["content"]


def stream_gaps(port, body, out):
    """Streams `body`; appends each content delta's arrival time to out."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    c.request("POST", "/v1/chat/completions", json.dumps({**body, "stream": True}), {"Content-Type": "application/json"})
    r = c.getresponse()
    for line in r:
        line = line.strip()
        if line.startswith(b"data: ") and line != b"data: [DONE]":
            e = json.loads(line[6:])
            if e.get("choices") and e["choices"][0].get("delta", {}).get("content"):
                out.append(time.monotonic())


def proc_status_bytes(pid, field):
    """VmHWM / VmRSS of a process, in bytes."""
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def kv_bytes_in_use(port):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("GET", "/metrics")
    for line in c.getresponse().read().decode().splitlines():
        if line.startswith("minicpmo_kv_bytes_in_use"):
            return float(line.split()[-1])
    return 0.0


def concurrently(port, run, n):
    """run(0) … run(n − 1) in threads at once: their wall time and the most KV bytes in use meanwhile."""
    kv_max, sampling = [0.0], [True]

    def sample():
        while sampling[0]:
            kv_max[0] = max(kv_max[0], kv_bytes_in_use(port))
            time.sleep(0.05)
    sampler = threading.Thread(target=sample)
    sampler.start()
    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.monotonic() - t0
    sampling[0] = False
    sampler.join()
    return seconds, kv_max[0]


def add_server_args(ap, quant, tokens):
    """The options both server benchmarks take (--bin is each one's own)."""
    ap.add_argument("--model", required=True)
    ap.add_argument("--quant", default=quant)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=tokens)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--prefill-chunk", type=int, default=256)
    ap.add_argument("--json")


def start_server(binary, model, quant, threads, batch, prefill_chunk):
    """`minicpmo serve` on an ephemeral loopback port, once /health answers: (process, port)."""
    server = subprocess.Popen([binary, "serve", "--model", model, "--quant", quant, "--port", "0",
                               "--threads", str(threads), "--batch", str(batch), "--prefill-chunk", str(prefill_chunk),
                               "--prefill-precision", "int8", "--log-level", "warning"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    port = int(server.stdout.readline().rsplit(":", 1)[1])
    ready_by = time.monotonic() + 300
    while True:
        if server.poll() is not None or time.monotonic() > ready_by:
            server.kill()
            sys.exit("the server did not become ready (see `minicpmo serve` with the same flags)")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", "/health")
            if c.getresponse().status == 200:
                return server, port
        except OSError:
            pass
        time.sleep(0.2)


def main():
    ap = argparse.ArgumentParser()
    add_server_args(ap, quant="q8", tokens=64)
    ap.add_argument("--bin", default=os.path.join(ROOT, ".build", "release", "minicpmo"))
    args = ap.parse_args()
    server, port = start_server(args.bin, args.model, args.quant, args.threads, args.batch, args.prefill_chunk)
    try:
        bodies = [{"messages": [{"role": "user", "content": f"Request {i}: tell me about number {i}."}], "max_tokens": args.tokens,
                   "temperature": 0, "repetition_penalty": 1} for i in range(args.clients)]
        request(port, bodies[0])  # warm up
        t0 = time.monotonic()
        alone = [request(port, b) for b in bodies]
        serial = time.monotonic() - t0
        results = [None] * len(bodies)

        def run(i):
            results[i] = request(port, bodies[i])
        # KV bytes in use while the clients run (the server's own gauge), for the peak-RSS comparison
        together, kv_max = concurrently(port, run, len(bodies))
        same = sum(a == b for a, b in zip(alone, results))
        # a long prompt arriving mid-stream
        times = []
        streamer = threading.Thread(target=stream_gaps, args=(port, {**bodies[0], "max_tokens": 200}, times))
        streamer.start()
        while len(times) < 10:
            time.sleep(0.01)
        arrival = time.monotonic()
        long_prompt = " ".join(f"word{i % 97}" for i in range(2000))
        request(port, {"messages": [{"role": "user", "content": long_prompt}], "max_tokens": 1, "temperature": 0})
        streamer.join()
        gaps = [b - a for a, b in zip(times, times[1:])]
        during = [b - a for a, b in zip(times, times[1:]) if b >= arrival]
        summary = {"clients": args.clients, "tokens": args.tokens, "quant": args.quant, "batch": args.batch,
                   "serial_seconds": round(serial, 2), "concurrent_seconds": round(together, 2),
                   "concurrent_over_serial": round(together / serial, 3), "identical_answers": same,
                   "stream_median_gap_seconds": round(statistics.median(gaps), 3),
                   "stream_max_gap_while_long_prompt_seconds": round(max(during) if during else 0, 3)}
        # peak RSS so far (the long prompt included) against the weights as stored plus the KV the clients used;
        # meaningful for a copy written by `minicpmo quantize` (--quant bf16), which loads without re-quantizing
        weights = sum(os.path.getsize(os.path.join(args.model, f)) for f in os.listdir(args.model) if f.endswith(".safetensors"))
        peak = proc_status_bytes(server.pid, "VmHWM")
        summary.update({"peak_rss_bytes": peak, "weights_file_bytes": weights, "kv_bytes_in_use_max_concurrent": int(kv_max),
                        "peak_rss_over_weights_plus_kv": round(peak / (weights + kv_max), 3)})
        print(json.dumps(summary, indent=1))
        if args.json:
            json.dump(summary, open(args.json, "w"), indent=1)
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
