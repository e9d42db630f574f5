#!/usr/bin/env python3
"""PyTorch (transformers) prefill/decode speed on a checkpoint, measured like `minicpmo bench`:
prefill = one forward pass over N random tokens; decode = G greedy steps with the KV cache.
Prints one JSON object."""
import argparse
import json
import statistics
import time

import torch
from transformers import AutoModelForCausalLM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt-tokens", type=int, default=512)
    ap.add_argument("--gen-tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=getattr(torch, a.dtype)).eval()
    g = torch.Generator().manual_seed(7)
    ids = torch.randint(0, model.config.vocab_size, (1, a.prompt_tokens), generator=g)
    pp, tg = [], []
    with torch.inference_mode():
        model(ids[:, :16])  # warm-up
        for _ in range(a.repeats):
            t = time.perf_counter()
            out = model(ids, use_cache=True, logits_to_keep=1)
            pp.append(a.prompt_tokens / (time.perf_counter() - t))
            past, tok = out.past_key_values, out.logits[:, -1:].argmax(-1)
            t = time.perf_counter()
            for _ in range(a.gen_tokens):
                out = model(tok, past_key_values=past, use_cache=True)
                past, tok = out.past_key_values, out.logits[:, -1:].argmax(-1)
            tg.append(a.gen_tokens / (time.perf_counter() - t))
    print(json.dumps({"prefill_tokens_per_second": statistics.median(pp), "decode_tokens_per_second": statistics.median(tg),
                      "prefill_samples": pp, "decode_samples": tg, "threads": a.threads, "dtype": a.dtype,
                      "torch": torch.__version__}))


if __name__ == "__main__":
    main()
