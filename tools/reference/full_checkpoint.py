"""A random-weight MiniCPM-o 2.6 at its real size, laid out as the published repo (spec §1.1-1.3).

Every tensor name and shape of the real checkpoint in bf16, in 4 shards split at the published shard sizes
with model.safetensors.index.json; the complete config.json, preprocessor_config.json, the Qwen2 tokenizer
files with MiniCPM-o's added tokens, assets/Vocos.pt (a zip-format torch pickle) and assets/chattts_tokenizer.
Not a fixture: about 17 GB, written for end-to-end runs at full scale.

    python tools/reference/generate.py --geometry minicpm-o-2_6-full --out models/minicpm-o-2_6-full

The language model's 15 GB is drawn one tensor at a time and streamed into its shard, so the writer needs
about 3 GB of memory (the largest tensor, the embedding, in float32) besides the encoders' weights.
"""
import json
import shutil
import struct
import zlib
from pathlib import Path

import torch
from transformers import SiglipVisionConfig, WhisperConfig

import audio as aud
import speech as sp
import vision as vis

LLM = dict(vocab_size=151700, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
           num_attention_heads=28, num_key_value_heads=4)
# The published shard sizes in bytes (HF tree listing, §1.2); the last shard takes the rest.
SHARD_BYTES = [4.88e9, 4.93e9, 4.33e9]
LLM_SEED = 2026

# Published config.json fields that only transformers' remote code reads.
PUBLISHED_EXTRA = {"auto_map": {"AutoConfig": "configuration_minicpm.MiniCPMOConfig",
                                "AutoModel": "modeling_minicpmo.MiniCPMO",
                                "AutoModelForCausalLM": "modeling_minicpmo.MiniCPMO"},
                   "transformers_version": "4.44.2", "use_sliding_window": False, "sliding_window": 131072,
                   "max_window_layers": 28, "vision_batch_size": 16, "use_cache": True, "version": 2.6}

PREPROCESSOR = {
    "image_processor_type": "MiniCPMVImageProcessor", "processor_class": "MiniCPMOProcessor",
    "feature_extractor_type": "WhisperFeatureExtractor",
    "auto_map": {"AutoProcessor": "processing_minicpmo.MiniCPMOProcessor",
                 "AutoImageProcessor": "image_processing_minicpmv.MiniCPMVImageProcessor"},
    "max_slice_nums": 9, "scale_resolution": 448, "patch_size": 14, "image_feature_size": 64,
    "norm_mean": [0.5, 0.5, 0.5], "norm_std": [0.5, 0.5, 0.5], "slice_mode": True, "use_image_id": True,
    "version": 2.6, "im_start": "<image>", "im_end": "</image>", "slice_start": "<slice>", "slice_end": "</slice>",
    "im_id_start": "<image_id>", "im_id_end": "</image_id>", "unk": "<unk>",
    "sampling_rate": 16000, "feature_size": 80, "n_fft": 400, "hop_length": 160, "chunk_length": 30,
    "n_samples": 480000, "nb_max_frames": 3000, "padding_value": 0.0, "padding_side": "right",
    "return_attention_mask": False,
}


def llm_shapes():
    """The language model's tensors in the order its modules register them."""
    h, f, v = LLM["hidden_size"], LLM["intermediate_size"], LLM["vocab_size"]
    kv = LLM["num_key_value_heads"] * h // LLM["num_attention_heads"]
    out = [("llm.model.embed_tokens.weight", (v, h))]
    for i in range(LLM["num_hidden_layers"]):
        p = f"llm.model.layers.{i}."
        out += [(p + "self_attn.q_proj.weight", (h, h)), (p + "self_attn.q_proj.bias", (h,)),
                (p + "self_attn.k_proj.weight", (kv, h)), (p + "self_attn.k_proj.bias", (kv,)),
                (p + "self_attn.v_proj.weight", (kv, h)), (p + "self_attn.v_proj.bias", (kv,)),
                (p + "self_attn.o_proj.weight", (h, h)),
                (p + "mlp.gate_proj.weight", (f, h)), (p + "mlp.up_proj.weight", (f, h)),
                (p + "mlp.down_proj.weight", (h, f)),
                (p + "input_layernorm.weight", (h,)), (p + "post_attention_layernorm.weight", (h,))]
    return out + [("llm.model.norm.weight", (h,)), ("llm.lm_head.weight", (v, h))]


def draw_llm(name, shape):
    """Qwen2's initializer (N(0, 0.02)) for matrices; norms near 1 and small biases, so that a wrong use of
    either changes the answer. Seeded by the name, so a tensor does not depend on the order of writing."""
    gen = torch.Generator().manual_seed(LLM_SEED + zlib.crc32(name.encode()))
    x = torch.randn(shape, generator=gen)
    if name.endswith("norm.weight"):
        x = 1.0 + 0.2 * x
    elif name.endswith(".bias"):
        x = 0.1 * x
    else:
        x = 0.02 * x
    return x.to(torch.bfloat16)


def encoder_tensors():
    """vpm, resampler, apm, the audio projector and tts (with the DVAE encoder side the real file keeps)."""
    h = LLM["hidden_size"]
    vision = vis.Vision(vis.VISION_REAL, h, seed=324)
    audio = aud.Audio(aud.AUDIO_REAL, h, seed=406)
    tts = sp.TTS(sp.TTS_REAL, h, sp.DVAE_REAL, seed=sp.TTS_SEED, dead_vocab=sp.TTS_DEAD_VOCAB["real"])
    gen = torch.Generator().manual_seed(517)
    encoder_side = {}
    for name, t in sorted(tts.dvae.named_parameters()):
        if not sp.dvae_decoder_side(name):
            encoder_side["tts.dvae." + name] = (0.02 * torch.randn(t.shape, generator=gen)).to(torch.bfloat16)
    tensors = {**vision.bf16, **audio.bf16, **tts.bf16, **encoder_side}
    return tensors, tts.config


def write_safetensors(path, entries, produce):
    """Streams `entries` [(name, shape)] into a safetensors file, drawing each tensor with `produce(name)`
    only when it is written."""
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, shape in entries:
        size = 2 * int(torch.Size(shape).numel())
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for name, shape in entries:
            t = produce(name)
            assert tuple(t.shape) == tuple(shape) and t.dtype == torch.bfloat16, name
            f.write(t.contiguous().view(torch.int16).numpy().tobytes())
    return offset


def full_config(tts_config):
    from generate import MINICPMO_EXTRA
    vision = SiglipVisionConfig(**vis.VISION_REAL, **vis.VISION_COMMON).to_dict()
    audio = WhisperConfig(**aud.AUDIO_REAL, **aud.AUDIO_COMMON).to_dict()
    audio["architectures"] = ["MiniCPMWhisperEncoder"]
    cfg = {"architectures": ["MiniCPMO"], "model_type": "minicpmo", "attention_dropout": 0.0,
           "bos_token_id": 151643, "eos_token_id": 151645, "hidden_act": "silu", "initializer_range": 0.02,
           "max_position_embeddings": 32768, "rms_norm_eps": 1e-6, "rope_scaling": None, "rope_theta": 1000000.0,
           "tie_word_embeddings": False, "torch_dtype": "bfloat16", **LLM, **MINICPMO_EXTRA, **PUBLISHED_EXTRA}
    cfg.update(vision_config=vision, audio_config=audio, tts_config=tts_config)
    return cfg


def write_tokenizers(out):
    """Qwen2's BPE with MiniCPM-o's added tokens, as tokenizer.json and as vocab.json + merges.txt; the ChatTTS
    BertTokenizerFast files under assets/chattts_tokenizer."""
    import gzip
    from generate import (CHATML_TEMPLATE, FIXTURES, MINICPMO_SPECIAL, minicpmo_added_tokens,
                          qwen2_tokenizer_json)
    tj = qwen2_tokenizer_json()
    tj["added_tokens"] = minicpmo_added_tokens()
    (out / "tokenizer.json").write_text(json.dumps(tj, ensure_ascii=False))
    qwen = FIXTURES / "tokenizer" / "qwen2"
    for f in ("vocab.json", "merges.txt"):
        (out / f).write_bytes(gzip.decompress((qwen / f"{f}.gz").read_bytes()))
    added = {t["content"]: t["id"] for t in minicpmo_added_tokens()}
    (out / "added_tokens.json").write_text(json.dumps(added, indent=2, ensure_ascii=False) + "\n")
    config = {"added_tokens_decoder": {str(t["id"]): {k: v for k, v in t.items() if k != "id"}
                                       for t in minicpmo_added_tokens()},
              "additional_special_tokens": MINICPMO_SPECIAL[:-1], "auto_map": {
                  "AutoTokenizer": ["tokenization_minicpmo_fast.MiniCPMOTokenizerFast", None]},
              "bos_token": "<|im_start|>", "chat_template": CHATML_TEMPLATE, "clean_up_tokenization_spaces": False,
              "eos_token": "<|im_end|>", "errors": "replace", "model_max_length": 1000000000000000019884624838656,
              "pad_token": "<|endoftext|>", "split_special_tokens": False,
              "tokenizer_class": "MiniCPMOTokenizer", "unk_token": "<unk>"}
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    special = {"additional_special_tokens": MINICPMO_SPECIAL[:-1], "bos_token": "<|im_start|>",
               "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "unk_token": "<unk>"}
    (out / "special_tokens_map.json").write_text(json.dumps(special, indent=2, ensure_ascii=False) + "\n")
    chattts = out / "assets" / "chattts_tokenizer"
    chattts.mkdir(parents=True, exist_ok=True)
    data = gzip.decompress((FIXTURES / "models" / "tiny-minicpmo" / "assets" / "chattts_tokenizer" /
                            "tokenizer.json.gz").read_bytes())
    (chattts / "tokenizer.json").write_bytes(data)
    (chattts / "tokenizer_config.json").write_text(json.dumps(
        {"do_lower_case": True, "strip_accents": None, "tokenize_chinese_chars": True,
         "tokenizer_class": "BertTokenizerFast", "model_max_length": 1000000000000000019884624838656,
         "pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]",
         "mask_token": "[MASK]"}, indent=2) + "\n")


def write_full_checkpoint(out):
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    torch.set_num_threads(2)
    encoders, tts_config = encoder_tensors()
    entries = llm_shapes() + [(n, tuple(t.shape)) for n, t in encoders.items()]

    shapes = dict(entries)

    def produce(name):
        return encoders.pop(name) if name in encoders else draw_llm(name, shapes[name])

    shards, current, size = [], [], 0
    for name, shape in entries:
        nbytes = 2 * int(torch.Size(shape).numel())
        if len(shards) < len(SHARD_BYTES) and current and size + nbytes > SHARD_BYTES[len(shards)]:
            shards.append(current)
            current, size = [], 0
        current.append((name, shape))
        size += nbytes
    shards.append(current)
    weight_map, total = {}, 0
    for i, part in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        total += write_safetensors(out / fname, part, produce)
        weight_map.update({n: fname for n, _ in part})
        print(f"wrote {fname}: {len(part)} tensors", flush=True)
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    (out / "config.json").write_text(json.dumps(full_config(tts_config), indent=2, sort_keys=True) + "\n")
    (out / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR, indent=2) + "\n")
    write_tokenizers(out)
    sp.VocosModel(sp.VOCOS_REAL, sp.VOCOS_SEED).save(out / "assets" / "Vocos.pt")
