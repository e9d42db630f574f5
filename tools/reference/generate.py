#!/usr/bin/env python3
"""Builds tiny random-weight checkpoints and float32 reference outputs for the Swift tests.

Checkpoints are made with `transformers`' own classes, stored in bf16 with the real tensor names
and config format; reference outputs are computed in float32 from those bf16 weights. The run is
deterministic: the same pinned packages give byte-identical files.

    python tools/reference/generate.py                      # writes Tests/Fixtures
    python tools/reference/generate.py --geometry qwen2.5-0.5b --out models/qwen2.5-0.5b-random
    python tools/reference/generate.py --geometry minicpmo-vision --out models/minicpmo-vision-random
    python tools/reference/generate.py --geometry minicpmo-audio --out models/minicpmo-audio-random
    python tools/reference/generate.py --geometry minicpmo-tts --out models/minicpmo-tts-random
    python tools/reference/generate.py --geometry minicpm-o-2_6-full --out models/minicpm-o-2_6-full  # 17 GB

tiny-minicpmo also carries random vision weights (`vpm.*`, `resampler.*`, see vision.py), the MiniCPM-o
special tokens, and the vision references (reference/vision-tiny-minicpmo.safetensors,
reference/generate-vision-tiny-minicpmo.json, probe/vision-input.safetensors); and random audio weights
(`apm.*`, `audio_projection_layer.*`, see audio.py) with the audio references
(reference/audio-tiny-minicpmo.safetensors, reference/audio-placeholders.json,
reference/generate-audio-tiny-minicpmo.json, probe/audio-input.safetensors); and random speech-output weights
(`tts.*`: ConditionalChatTTS + DVAE decoder, see speech.py) with `tts_config`, the assets a real checkpoint carries
(assets/Vocos.pt, assets/chattts_tokenizer/tokenizer.json.gz) and the speech references
(reference/speech-tiny-minicpmo.safetensors, reference/speech-e2e-tiny-minicpmo.{json,safetensors},
probe/{tts,dvae,vocos}-input.safetensors); and the live-mode reference (reference/live-tiny-minicpmo.{json,safetensors},
see live.py).
"""
import argparse
import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from transformers import Qwen2Config, Qwen2ForCausalLM

import audio as aud
import speech as sp
import checkpoints as ck
import vision as vis

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "Tests" / "Fixtures"

# Tiny models. Vocabularies that must hold the real Qwen2 token ids (chat templates) are full size,
# so hidden sizes stay small to keep the committed files small.
TINY = {
    # plain Qwen2 layout, tied embeddings, GQA ratio 3
    # (init 0.4: this narrow a tied model otherwise keeps predicting the token it just read)
    "tiny-qwen2": dict(kind="qwen2", vocab_size=151665, hidden_size=12, intermediate_size=28,
                       num_hidden_layers=2, num_attention_heads=3, num_key_value_heads=1,
                       tie_word_embeddings=True, shards=1, initializer_range=0.4),
    # MiniCPM-o layout: LLM fields at the top level, tensors under `llm.`, untied, 3 shards
    "tiny-minicpmo": dict(kind="minicpmo", vocab_size=151700, hidden_size=8, intermediate_size=20,
                          num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                          tie_word_embeddings=False, shards=3),
    # explicit head_dim (40 != hidden/heads, != 64), GQA ratio 3, newer rope_parameters spelling
    "tiny-qwen2-gqa": dict(kind="qwen2", vocab_size=512, hidden_size=96, intermediate_size=200,
                           num_hidden_layers=3, num_attention_heads=6, num_key_value_heads=2,
                           head_dim=40, tie_word_embeddings=False, shards=1, rope_parameters=True),
    # every matrix dimension a multiple of 32, so all linear weights can be block-quantized; weights
    # drawn with Qwen2's own initializer_range (0.02) — the 0.1 of the others makes a deliberately
    # chaotic model that magnifies any arithmetic difference, which suits exactness tests but not a
    # measure of quantization accuracy (there even a perfect 4-bit rounding moves the logits a lot)
    "tiny-qwen2-quant": dict(kind="qwen2", vocab_size=640, hidden_size=128, intermediate_size=352,
                             num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                             tie_word_embeddings=False, shards=1, initializer_range=0.02),
}

GEOMETRIES = {
    "qwen2.5-0.5b": dict(vocab_size=151936, hidden_size=896, intermediate_size=4864,
                         num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                         tie_word_embeddings=True),
    "qwen2.5-7b-4l": dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944,
                          num_hidden_layers=4, num_attention_heads=28, num_key_value_heads=4,
                          tie_word_embeddings=False),
}

# MiniCPM-o 2.6's top-level fields besides the LLM's (§1.1 of the spec); sub-configs join as
# their components are implemented.
MINICPMO_EXTRA = {
    "architectures": ["MiniCPMO"],
    "model_type": "minicpmo",
    "batch_vision_input": True,
    "drop_vision_last_layer": False,
    "image_size": 448,
    "audio_chunk_length": 1.0,
    "audio_pool_step": 2,
    "query_num": 64,
    "use_image_id": True,
    "slice_mode": True,
    "slice_config": {"max_slice_nums": 9, "patch_size": 14, "scale_resolution": 448,
                     "model_type": "minicpmv"},
    "stream_input": False,
    "init_vision": True,
    "init_audio": True,
    "init_tts": True,
    "chunk_input": True,
}


# MiniCPM-o 2.6 with only its vision tower for benchmarks: the real LLM fields (one layer; no LLM tensors
# are stored) and the real vision_config.
MINICPMO_VISION_GEOMETRY = dict(vocab_size=151700, hidden_size=3584, intermediate_size=18944,
                                num_hidden_layers=1, num_attention_heads=28, num_key_value_heads=4,
                                tie_word_embeddings=False, kind="minicpmo")

VISION_SEED = 324  # the tiny vision weights' own generator: drawn after the LLM, which stays as it was
# (324 since tiny-minicpmo's hidden size went 16 -> 8: with 300 the one-image answer fell into a single repeated token)
AUDIO_SEED = 406   # the audio weights' own generator: drawn after the LLM and vision, which stay as they were
IMAGES = FIXTURES / "images"
SPEECH = FIXTURES / "audio" / "speech-16k-s16.wav"  # real 16 kHz mono speech, 4.1 s (written by audio_io.py)

# MiniCPM-o's added tokens after Qwen2's three (spec §6.3), numbered from 151646 in this order, except `<unk>`
# (see minicpmo_added_tokens). They take the place of Qwen2.5's 151646-151664 added tokens.
MINICPMO_SPECIAL = ["<image>", "</image>", "<ref>", "</ref>", "<box>", "</box>", "<quad>", "</quad>", "<point>",
                    "</point>", "<slice>", "</slice>", "<image_id>", "</image_id>", "<unit>", "</unit>", "<asr>",
                    "</asr>", "<query>", "</query>", "<|audio_start|>", "<|audio|>", "<|audio_end|>", "<|spk_bos|>",
                    "<|spk|>", "<|spk_eos|>", "<|tts_bos|>", "<|tts_eos|>", "<|listen|>", "<|speak|>",
                    "<|interrupt|>", "<|vad_start|>", "<|vad_end|>", "<reserved_43>", "<reserved_53>", "<unk>"]
CHATML_TEMPLATE = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
                   "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
                   "{% endif %}")


# The fields a published Qwen2/Qwen2.5 config.json carries (the generic PretrainedConfig ones are left out).
QWEN2_CONFIG_KEYS = ["attention_dropout", "bos_token_id", "eos_token_id", "hidden_act", "hidden_size",
                     "initializer_range", "intermediate_size", "max_position_embeddings", "max_window_layers",
                     "model_type", "num_attention_heads", "num_hidden_layers", "num_key_value_heads",
                     "rms_norm_eps", "rope_scaling", "rope_theta", "sliding_window", "tie_word_embeddings",
                     "use_cache", "use_sliding_window", "vocab_size"]


def build_qwen2(spec, seed):
    torch.manual_seed(seed)
    fields = {k: v for k, v in spec.items() if k not in ("kind", "shards", "rope_parameters", "initializer_range")}
    config = Qwen2Config(max_position_embeddings=32768, rope_theta=1000000.0, rms_norm_eps=1e-6,
                         hidden_act="silu", bos_token_id=151643, eos_token_id=151645,
                         initializer_range=spec.get("initializer_range", 0.1), torch_dtype="bfloat16", **fields)
    config._attn_implementation = "eager"
    model = Qwen2ForCausalLM(config).eval()
    # Random norm weights and biases too, so a wrong use of either shows.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn_like(p))
    model = model.to(torch.bfloat16)
    return config, model


def config_json(config, spec):
    full = config.to_dict()
    d = {k: full[k] for k in QWEN2_CONFIG_KEYS if k in full}
    d["torch_dtype"] = "bfloat16"
    d["architectures"] = ["Qwen2ForCausalLM"]
    if spec.get("head_dim"):
        d["head_dim"] = spec["head_dim"]
    if spec.get("rope_parameters"):
        d["rope_parameters"] = {"rope_type": "default", "rope_theta": d.pop("rope_theta")}
        d.pop("rope_scaling", None)
    if spec.get("kind") == "minicpmo":
        d.update(MINICPMO_EXTRA)
    return d


def state_dict_for(model, spec):
    sd = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    if spec.get("tie_word_embeddings"):
        sd.pop("lm_head.weight", None)  # tied checkpoints store the embedding once
    if spec.get("kind") == "minicpmo":
        sd = {"llm." + k: v for k, v in sd.items()}
    return dict(sorted(sd.items()))


def save_checkpoint(directory, sd, config_dict, shards):
    directory = Path(directory)
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    (directory / "config.json").write_text(json.dumps(config_dict, indent=2, sort_keys=True) + "\n")
    meta = {"format": "pt"}
    if shards == 1:
        save_file(sd, str(directory / "model.safetensors"), metadata=meta)
        return
    names = list(sd)
    per = (len(names) + shards - 1) // shards
    weight_map, total = {}, 0
    for i in range(shards):
        part = names[i * per:(i + 1) * per]
        fname = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        save_file({n: sd[n] for n in part}, str(directory / fname), metadata=meta)
        for n in part:
            weight_map[n] = fname
            total += sd[n].numel() * sd[n].element_size()
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (directory / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")


def float32_twin(model, config):
    """A float32 model holding the bf16 weights exactly. Casting the bf16 model itself would also
    round its rotary inv_freq buffer to bf16, which real inference never does."""
    twin = Qwen2ForCausalLM(config).float().eval()
    twin.load_state_dict({k: v.float() for k, v in model.state_dict().items()})
    return twin


@torch.no_grad()
def llm_reference(model, input_ids):
    out = model(input_ids=input_ids)
    hidden = model.model(input_ids=input_ids).last_hidden_state
    return out.logits, hidden


def write_reference(path, model, config, seed):
    model = float32_twin(model, config)
    gen = torch.Generator().manual_seed(seed)
    v = config.vocab_size
    long_ids = torch.randint(0, v, (2, 70), generator=gen)
    short_ids = torch.randint(0, v, (1, 1), generator=gen)
    tensors = {}
    for tag, ids in (("long", long_ids), ("short", short_ids)):
        logits, hidden = llm_reference(model, ids)
        tensors[f"{tag}.input_ids"] = ids.to(torch.int64)
        tensors[f"{tag}.last_hidden_state"] = hidden.float().contiguous()
        tensors[f"{tag}.argmax"] = logits.argmax(-1).to(torch.int64)
        if v <= 4096:
            tensors[f"{tag}.logits"] = logits.float().contiguous()
        else:
            # Full-vocabulary logits are large: keep a fixed random subset of columns.
            cols = torch.randperm(v, generator=gen)[:1024].sort().values
            tensors[f"{tag}.logits_cols"] = cols.to(torch.int64)
            tensors[f"{tag}.logits_sub"] = logits[..., cols].float().contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={"format": "pt"})


CHAT_PROMPTS = [
    {"system": None, "prompt": "Hello! Who are you?"},
    {"system": "You are a helpful assistant.", "prompt": "Write a haiku about the sea."},
    {"system": None, "prompt": "用一句话介绍你自己。"},
    {"system": None, "prompt": "def fib(n):\n    # complete this function"},
]


def chatml(system, prompt):
    text = ""
    if system is not None:
        text += f"<|im_start|>system\n{system}<|im_end|>\n"
    return text + f"<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n"


@torch.no_grad()
def write_generation_reference(path, model, config, tokenizer):
    """Greedy continuations of chat prompts by transformers' generate()."""
    model = float32_twin(model, config)
    cases = []
    for case in CHAT_PROMPTS:
        ids = tokenizer.encode(chatml(case["system"], case["prompt"]), add_special_tokens=False).ids
        out = model.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=32, repetition_penalty=1.0,
                             eos_token_id=[151645, 151643], pad_token_id=151643)
        cases.append(dict(case, prompt_ids=ids, generated_ids=out[0, len(ids):].tolist()))
    path.write_text(json.dumps(cases, indent=1, ensure_ascii=False) + "\n")


def qwen2_tokenizer_json():
    import gzip
    blob = (FIXTURES / "tokenizer" / "qwen2" / "tokenizer.json.gz").read_bytes()
    return json.loads(gzip.decompress(blob).decode("utf-8"))


def load_qwen2_tokenizer():
    from tokenizers import Tokenizer
    return Tokenizer.from_str(json.dumps(qwen2_tokenizer_json()))


def minicpmo_added_tokens():
    """Sorted by id. `<unk>` is already in Qwen2's BPE vocabulary (128244, like `<s>` 128245): an added token
    whose text the vocabulary holds keeps that id (`tokenizers` and transformers both resolve it so), so
    it takes no new slot and the others run 151646..151680."""
    vocab_unk = 128244
    names = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] + [t for t in MINICPMO_SPECIAL if t != "<unk>"]
    ids = [vocab_unk] + [151643 + i for i in range(len(names))]
    names = ["<unk>"] + names
    tokens = [dict(id=i, content=n, single_word=False, lstrip=False, rstrip=False, normalized=False, special=True)
              for i, n in zip(ids, names)]
    assert max(ids) < 151700
    return tokens


def load_minicpmo_tokenizer():
    """Qwen2's BPE with MiniCPM-o's added tokens in place of Qwen2.5's."""
    from tokenizers import Tokenizer
    tj = qwen2_tokenizer_json()
    tj["added_tokens"] = minicpmo_added_tokens()
    return Tokenizer.from_str(json.dumps(tj))


def write_minicpmo_tokenizer(directory):
    """vocab.json + merges.txt linked from the Qwen2 fixture, added tokens in tokenizer_config.json."""
    for f in ("vocab.json.gz", "merges.txt.gz"):
        os.symlink(f"../../tokenizer/qwen2/{f}", directory / f)
    config = {"added_tokens_decoder": {str(t["id"]): {k: v for k, v in t.items() if k != "id"}
                                       for t in minicpmo_added_tokens()},
              "additional_special_tokens": MINICPMO_SPECIAL[:-1],
              "bos_token": None, "chat_template": CHATML_TEMPLATE, "eos_token": "<|im_end|>",
              "model_max_length": 32768, "pad_token": "<|endoftext|>", "tokenizer_class": "Qwen2Tokenizer",
              "unk_token": "<unk>"}
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")


def second_image():
    """The second picture of the two-image case: moon.png (512x512 grayscale, from tools/reference/images.py)
    is sliced into a 1 x 2 grid (a tie in the grid search; rows joined by "\\n" in the placeholder)."""
    return "moon.png" if (IMAGES / "moon.png").exists() else "coffee.png"


def write_minicpmo_vision_geometry(out):
    spec = MINICPMO_VISION_GEOMETRY
    fields = {k: v for k, v in spec.items() if k != "kind"}
    config = Qwen2Config(max_position_embeddings=32768, rope_theta=1000000.0, rms_norm_eps=1e-6, hidden_act="silu",
                         bos_token_id=151643, eos_token_id=151645, initializer_range=0.02, **fields)
    vision = vis.Vision(vis.VISION_REAL, spec["hidden_size"], seed=VISION_SEED)
    d = config_json(config, spec)
    d["vision_config"] = vision.config
    ck.save_partial_checkpoint(out, d, vision.bf16)


def write_minicpmo_audio_geometry(out):
    """MiniCPM-o 2.6 with only its audio encoder: the real LLM fields (one layer; no LLM tensors), whisper-medium's
    audio_config, `apm.*` + `audio_projection_layer.*` in bf16. init_vision is false: no vision tensors."""
    spec = MINICPMO_VISION_GEOMETRY
    fields = {k: v for k, v in spec.items() if k != "kind"}
    config = Qwen2Config(max_position_embeddings=32768, rope_theta=1000000.0, rms_norm_eps=1e-6, hidden_act="silu",
                         bos_token_id=151643, eos_token_id=151645, initializer_range=0.02, **fields)
    audio = aud.Audio(aud.AUDIO_REAL, spec["hidden_size"], seed=AUDIO_SEED)
    d = config_json(config, spec)
    d["audio_config"] = audio.config
    d["init_vision"] = False
    ck.save_partial_checkpoint(out, d, audio.bf16)


def write_minicpmo_tts_geometry(out):
    """MiniCPM-o 2.6 with only its speech output: the real LLM fields (one layer; no LLM tensors), the real
    tts_config, `tts.*` (ConditionalChatTTS 768 x 20 layers, DVAE decoder) in bf16, assets/Vocos.pt at the real
    sizes (float32), and the fixture's ChatTTS tokenizer. init_vision and init_audio are false."""
    spec = MINICPMO_VISION_GEOMETRY
    fields = {k: v for k, v in spec.items() if k != "kind"}
    config = Qwen2Config(max_position_embeddings=32768, rope_theta=1000000.0, rms_norm_eps=1e-6, hidden_act="silu",
                         bos_token_id=151643, eos_token_id=151645, initializer_range=0.02, **fields)
    tts = sp.TTS(sp.TTS_REAL, spec["hidden_size"], sp.DVAE_REAL, seed=sp.TTS_SEED,
                 dead_vocab=sp.TTS_DEAD_VOCAB["real"])
    d = config_json(config, spec)
    d["tts_config"] = tts.config
    d["init_vision"] = False
    d["init_audio"] = False
    out = Path(out)
    ck.save_partial_checkpoint(out, d, tts.bf16)
    sp.VocosModel(sp.VOCOS_REAL, sp.VOCOS_SEED).save(out / "assets" / "Vocos.pt")
    tok_dir = out / "assets" / "chattts_tokenizer"
    tok_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(FIXTURES / "models" / "tiny-minicpmo" / "assets" / "chattts_tokenizer" / "tokenizer.json.gz",
                    tok_dir / "tokenizer.json.gz")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--geometry", choices=sorted(GEOMETRIES) + ["minicpmo-audio", "minicpmo-tts", "minicpmo-vision",
                                                           "minicpm-o-2_6-full"],
                    help="make one large random checkpoint")
    ap.add_argument("--out", help="output folder for --geometry")
    args = ap.parse_args()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)

    if args.geometry == "minicpm-o-2_6-full":
        import full_checkpoint
        full_checkpoint.write_full_checkpoint(args.out)
        print(f"wrote {args.out}")
        return
    if args.geometry == "minicpmo-vision":
        write_minicpmo_vision_geometry(args.out)
        print(f"wrote {args.out}")
        return
    if args.geometry == "minicpmo-audio":
        write_minicpmo_audio_geometry(args.out)
        print(f"wrote {args.out}")
        return
    if args.geometry == "minicpmo-tts":
        write_minicpmo_tts_geometry(args.out)
        print(f"wrote {args.out}")
        return
    if args.geometry:
        spec = dict(GEOMETRIES[args.geometry], kind="qwen2", shards=1)
        torch.set_default_dtype(torch.bfloat16)  # a 7B-wide model in float32 would need 2x the memory
        config, model = build_qwen2(spec, seed=1234)
        save_checkpoint(args.out, state_dict_for(model, spec), config_json(config, spec), 1)
        print(f"wrote {args.out}")
        return

    tokenizer = load_qwen2_tokenizer()
    for i, (name, spec) in enumerate(TINY.items()):
        config, model = build_qwen2(spec, seed=100 + i)
        directory = FIXTURES / "models" / name
        sd, cfg, vision, audio, tts = state_dict_for(model, spec), config_json(config, spec), None, None, None
        if spec["kind"] == "minicpmo":
            vision = vis.Vision(vis.VISION_TINY, spec["hidden_size"], seed=VISION_SEED)
            audio = aud.Audio(aud.AUDIO_TINY, spec["hidden_size"], seed=AUDIO_SEED)
            tts = sp.TTS(sp.TTS_TINY, spec["hidden_size"], sp.DVAE_TINY, seed=sp.TTS_SEED,
                         dead_vocab=sp.TTS_DEAD_VOCAB["tiny"])
            sd = dict(sorted({**sd, **vision.bf16, **audio.bf16, **tts.bf16}.items()))
            cfg["vision_config"] = vision.config
            cfg["audio_config"] = audio.config
            cfg["tts_config"] = tts.config
        save_checkpoint(directory, sd, cfg, spec["shards"])
        write_reference(FIXTURES / "reference" / f"llm-{name}.safetensors", model, config, seed=200 + i)
        if config.vocab_size >= 151665:
            # the real Qwen2 vocabulary, stored once and linked from each model folder
            if spec["kind"] == "minicpmo":
                write_minicpmo_tokenizer(directory)
                tok = load_minicpmo_tokenizer()
            else:
                os.symlink("../../tokenizer/qwen2/tokenizer.json.gz", directory / "tokenizer.json.gz")
                tok = tokenizer
            write_generation_reference(FIXTURES / "reference" / f"generate-{name}.json", model, config, tok)
        if vision is not None:
            (FIXTURES / "probe").mkdir(parents=True, exist_ok=True)
            vis.write_vision_reference(FIXTURES / "reference" / f"vision-{name}.safetensors",
                                       FIXTURES / "probe" / "vision-input.safetensors", vision, IMAGES)
            vis.write_e2e_reference(FIXTURES / "reference" / f"generate-vision-{name}.json",
                                    float32_twin(model, config), vision, tok, IMAGES, second_image())
        if audio is not None:
            waveform = aud.load_wav(SPEECH)
            aud.write_audio_reference(FIXTURES / "reference" / f"audio-{name}.safetensors",
                                      FIXTURES / "probe" / "audio-input.safetensors", audio, waveform)
            aud.write_placeholders(FIXTURES / "reference" / "audio-placeholders.json")
            aud.write_e2e_reference(FIXTURES / "reference" / f"generate-audio-{name}.json",
                                    float32_twin(model, config), vision, audio, tok, IMAGES, SPEECH)
        if tts is not None:
            # the assets a real MiniCPM-o checkpoint carries beside its shards
            vocos = sp.VocosModel(sp.VOCOS_TINY, sp.VOCOS_SEED)
            vocos.save(directory / "assets" / "Vocos.pt")
            ctok = sp.write_chattts_tokenizer(directory / "assets" / "chattts_tokenizer")
            sp.write_speech_reference(FIXTURES / "reference" / f"speech-{name}.safetensors", FIXTURES / "probe",
                                      tts, vocos, ctok, spec["hidden_size"])
            sp.write_e2e_reference(FIXTURES / "reference" / f"speech-e2e-{name}.json",
                                   FIXTURES / "reference" / f"speech-e2e-{name}.safetensors",
                                   float32_twin(model, config), tts, vocos, tok, ctok)
        print(f"wrote {name}")

    # live mode (streaming prefill and generation) from the checkpoint just written
    import live
    live.main()

    # A ready-made probe input for the README's quick start: a short ChatML prompt's token ids.
    (FIXTURES / "probe").mkdir(parents=True, exist_ok=True)
    save_file({"input_ids": torch.tensor([[151644, 872, 198, 9707, 0, 151645]], dtype=torch.int64)},
              str(FIXTURES / "probe" / "llm-input.safetensors"), metadata={"format": "pt"})


if __name__ == "__main__":
    main()
