#!/usr/bin/env python3
"""Live mode reference (MiniCPM-o's streaming_prefill / streaming_generate, spec §4.5, §6.2, §5.5) on the tiny
MiniCPM-o fixture, in float32 from its bf16 weights.

A call is a sequence of prefills into one LLM KV cache:
- the first (system) message through the TTS chat template without a generation prompt; its audio (the voice
  reference) is encoded in one streaming-encoder call, after which the Whisper cache is dropped;
- each 1-second unit of a user turn as `<unit>` + (frame: `<image><unk>×64</image>`, max_slice_nums 1, no image
  id) + its audio placeholder; the first unit of a turn is prefixed `<|im_start|>user\\n`, and after an answer with
  `<|im_end|>\\n` (answer complete) or `<|tts_eos|><|im_end|>\\n` (answer interrupted) before that;
- each unit's audio encoded alone with a Whisper KV cache over the earlier units of the same turn: positions
  continue from the cache length, no mask (every cached frame is visible), the cache dropped when it plus the new
  frames would reach 1500, and whenever an answer starts;
- an answer starts with `<|im_end|>\\n<|im_start|>assistant\\n<|spk_bos|><|spk|><|spk_eos|><|tts_bos|>`; the speaker
  vector is the final-norm hidden state at `<|spk|>`; the LLM writes greedily, 3 tokens per call; every token it
  wrote stays in the cache (an interrupted answer keeps what it said);
- the spoken text is normalized as streaming_generate does (the first call's text as it is; each later call's with
  its digits spelled one by one, in the language detected at the 2nd and 3rd call, and '*' removed) and
  re-tokenized after every 3-token call; each time it holds 10·(c+1) ChatTTS tokens, condition
  chunk c is prefilled and 25 frames generated (greedy codes); at the end the rest and [Etts] go in and frames run
  to EOS.

    python tools/reference/live.py      # writes Tests/Fixtures/reference/live-tiny-minicpmo.{json,safetensors}
"""
import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
import audio as aud  # noqa: E402
import checkpoints as ck  # noqa: E402
import speech as sp  # noqa: E402
import vision as vis  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "Tests" / "Fixtures"
MODEL = FIXTURES / "models" / "tiny-minicpmo"
UNIT = 16000                    # one second of 16 kHz audio
MAX_POSITIONS = 1500            # Whisper's embed_positions rows
LLM_CHUNK = 3                   # tokens per llm_generate_chunk call
ANSWER_PREFIX = "<|im_end|>\n<|im_start|>assistant\n<|spk_bos|><|spk|><|spk_eos|><|tts_bos|>"
OMNI_PROMPT = "You are a helpful assistant. You can accept video, audio and text input and output voice and text. "
CLONE_PROMPT = ("You are a helpful assistant. You can accept video, audio and text input and output voice and text. "
                "Clone the voice in the provided audio prompt.")
CLONE_SUFFIX = "As an assistant, you will speak using this voice style."
STOPS = ("<|im_end|>", "<|endoftext|>")


def load_llm(directory):
    from transformers import Qwen2Config, Qwen2ForCausalLM
    cfg = json.loads((directory / "config.json").read_text())
    keys = ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
            "num_key_value_heads", "max_position_embeddings", "rope_theta", "rms_norm_eps", "tie_word_embeddings"]
    config = Qwen2Config(**{k: cfg[k] for k in keys if k in cfg})
    config._attn_implementation = "eager"
    with torch.random.fork_rng(devices=[]):
        llm = Qwen2ForCausalLM(config).float().eval()
    (ws,) = ck.load_prefixed(directory, "llm.")
    llm.load_state_dict(ws, strict=False)
    return llm


class StreamingAudio:
    """get_audio_embedding_streaming: one piece at a time through the Whisper encoder with a KV cache."""

    def __init__(self, apm, projector):
        self.apm, self.projector = apm, projector
        self.cache = None  # per layer (k, v), [heads, frames, head_dim]

    def reset(self):
        self.cache = None

    @property
    def length(self):
        return 0 if self.cache is None else self.cache[0][0].shape[1]

    @torch.no_grad()
    def conv(self, feats):
        x = nn.functional.gelu(self.apm.conv1(feats.unsqueeze(0)))
        return nn.functional.gelu(self.apm.conv2(x)).permute(0, 2, 1)[0]

    @torch.no_grad()
    def encode(self, feats):
        """feats [80, T] -> the piece's LLM embeddings [(T' − 2)//2 + 1, H]; also returns the position offset used."""
        x = self.conv(feats)
        frames = x.shape[0]
        if self.cache is not None and self.length + frames >= MAX_POSITIONS:
            self.cache = None
        past = self.length
        table = self.apm.embed_positions.weight
        x = x + table[torch.clamp(torch.arange(past, past + frames), max=table.shape[0] - 1)]
        new = []
        for i, layer in enumerate(self.apm.layers):
            attn = layer.self_attn
            heads = attn.num_heads
            hd = x.shape[1] // heads
            y = layer.self_attn_layer_norm(x)
            q = (attn.q_proj(y) * hd ** -0.5).view(frames, heads, hd).transpose(0, 1)
            k = attn.k_proj(y).view(frames, heads, hd).transpose(0, 1)
            v = attn.v_proj(y).view(frames, heads, hd).transpose(0, 1)
            if self.cache is not None:
                k = torch.cat([self.cache[i][0], k], dim=1)
                v = torch.cat([self.cache[i][1], v], dim=1)
            new.append((k, v))
            w = torch.softmax(q @ k.transpose(1, 2), dim=-1)
            o = (w @ v).transpose(0, 1).reshape(frames, -1)
            x = x + attn.out_proj(o)
            y = layer.final_layer_norm(x)
            x = x + layer.fc2(nn.functional.gelu(layer.fc1(y)))
        self.cache = new
        hidden = self.apm.layer_norm(x)
        pooled = aud.pool(self.projector(hidden).unsqueeze(0))[0]
        return pooled[:aud.audio_tokens_from_frames(feats.shape[1])], past


@torch.no_grad()
def check_cache_against_mask(streaming, unit_feats):
    """The cached path over whole 1 s units equals HF's WhisperEncoderLayer under the 50-frame block-causal mask
    over the same conv outputs (the cache reproduces the chunk mask; only conv edges differ from whole-clip)."""
    streaming.reset()
    outs = [streaming.encode(f)[0] for f in unit_feats]
    streaming.reset()
    apm = streaming.apm
    x = torch.cat([streaming.conv(f) for f in unit_feats])
    x = (x + apm.embed_positions.weight[:x.shape[0]]).unsqueeze(0)
    mask = aud.encoder_mask(1, x.shape[1])
    for layer in apm.layers:
        x = layer(x, mask, layer_head_mask=None)[0]
    proj = streaming.projector(apm.layer_norm(x))
    for u, out in enumerate(outs):
        part = aud.pool(proj[:, 50 * u:50 * (u + 1)])[0]
        assert torch.allclose(part, out, atol=1e-5), float((part - out).abs().max())


class Call:
    """One live session: the LLM KV cache and the flags streaming_prefill keeps."""

    def __init__(self, llm, streaming, vision, tokenizer, tts, ctok):
        self.llm, self.streaming, self.vision, self.tok, self.tts, self.ctok = llm, streaming, vision, tokenizer, tts, ctok
        self.past = None
        self.ids = []                 # every token in the cache, in order
        self.first = True
        self.new_user_msg = True
        self.llm_generated = False
        self.llm_generate_completed = False
        self.prefills = []            # what each prefill fed: ids, and the audio embeddings of each unit
        self.unk = tokenizer.token_to_id("<unk>")

    def encode_ids(self, text):
        return self.tok.encode(text, add_special_tokens=False).ids

    @torch.no_grad()
    def forward(self, ids, embeds=None):
        if embeds is None:
            embeds = self.llm.model.embed_tokens(torch.tensor([ids]))
        n = len(self.ids)
        out = self.llm.model(inputs_embeds=embeds, past_key_values=self.past, use_cache=True,
                             position_ids=torch.arange(n, n + len(ids)).unsqueeze(0))
        self.past = out.past_key_values
        self.ids += ids
        return out.last_hidden_state[0]

    @torch.no_grad()
    def prefill(self, text, audio=None, image=None):
        """One streaming_prefill: text with `(<audio>./</audio>)` / `(<image>./</image>)` tags."""
        import minicpmv_image as mi
        audio_rows = None
        if audio is not None:
            audio_rows, offset = self.streaming.encode(aud.features([audio])[0])
            text = text.replace(aud.AUDIO_TAG, aud.get_audio_placeholder(len(audio), chunk_input=True, chunk_length=1))
        image_rows = None
        if image is not None:
            pre = mi.preprocess(image, max_slice_nums=1)
            assert pre["grid"] is None
            pv, ts = pre["pixel_values"][0], pre["tgt_sizes"][0]
            image_rows = self.vision(pv.unsqueeze(0), torch.tensor([ts], dtype=torch.int64))[1][0]
            text = text.replace(aud.IMAGE_TAG, mi.placeholder(0, None, use_image_id=False))
        ids = self.encode_ids(text)
        embeds = self.llm.model.embed_tokens(torch.tensor([ids]))
        if image_rows is not None:
            (a, b), = vis.image_bounds(ids, self.tok)
            embeds[0, a:b] = image_rows
        if audio_rows is not None:
            pos = 0
            for a, b in aud.audio_bounds(ids, self.tok):
                assert all(x == self.unk for x in ids[a:b])
                embeds[0, a:b] = audio_rows[pos:pos + b - a]
                pos += b - a
            assert pos == audio_rows.shape[0]
        self.forward(ids, embeds)
        record = {"ids": ids}
        if audio_rows is not None:
            record["audio_rows"] = audio_rows
            record["audio_offset"] = offset
        self.prefills.append(record)

    def system(self, content, ref_audio=None):
        self.prefill(f"<|im_start|>user\n{content}<|im_end|>\n", audio=ref_audio)
        self.first = False
        self.streaming.reset()  # after the first prefill

    def unit(self, audio, image=None):
        content = "<unit>" + (aud.IMAGE_TAG if image is not None else "") + aud.AUDIO_TAG
        if self.new_user_msg:
            if self.llm_generated:
                head = "<|im_end|>\n" if self.llm_generate_completed else "<|tts_eos|><|im_end|>\n"
            else:
                head = ""
            content = head + "<|im_start|>user\n" + content
            self.new_user_msg = False
        self.prefill(content, audio=audio, image=image)

    @torch.no_grad()
    def answer(self, max_new, interrupt_after=None, speak=True):
        """streaming_generate, greedy: returns (generated ids, spoken codes or None, speaker hidden)."""
        self.new_user_msg = True
        self.llm_generated = True
        self.llm_generate_completed = False
        self.streaming.reset()
        prefix = self.encode_ids(ANSWER_PREFIX)
        start = len(self.ids)
        hidden = self.forward(prefix)
        spk = max(i for i, x in enumerate(prefix) if x == self.tok.token_to_id("<|spk|>"))
        speaker_hidden = hidden[spk]
        logits = self.llm.lm_head(hidden[-1:])[0]
        stops = {self.tok.token_to_id(s) for s in STOPS}
        limit = max_new if interrupt_after is None else interrupt_after
        gen, texts, stopped = [], [], False
        while len(gen) < limit:
            for _ in range(LLM_CHUNK):
                t = int(logits.argmax())
                if t in stops:
                    stopped = True
                    break
                gen.append(t)
                h = self.forward([t])
                logits = self.llm.lm_head(h[-1:])[0]
                if len(gen) == limit:
                    break
            texts.append(spoken_text(self.tok, gen))
            if stopped:
                break
        if interrupt_after is None:
            self.llm_generate_completed = True
        codes = stream_speech(self.tts, self.ctok, speaker_hidden, normalized_texts(chunks_of(texts))) if speak else None
        return {"prompt_start": start, "generated_ids": gen, "stopped": stopped, "texts": texts,
                "codes": codes, "speaker_hidden": speaker_hidden}


def spoken_text(tok, gen):
    """The text written so far, up to <|tts_eos|>, specials kept, an incomplete UTF-8 tail held back."""
    eos = tok.token_to_id("<|tts_eos|>")
    ids = gen[:gen.index(eos)] if eos in gen else gen
    return tok.decode(ids, skip_special_tokens=False).rstrip("\ufffd")


DIGITS_ZH = "零一二三四五六七八九"
DIGITS_EN = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def detect_language(text):
    """NumberToTextConverter.detect_language: Chinese unless there are more ASCII letters than CJK ideographs."""
    zh = len(re.findall(r"[\u4e00-\u9fff]", text))
    en = len(re.findall(r"[a-zA-Z]", text))
    return "chinese" if zh >= en else "english"


def spell_digits(text, language):
    """NumberToTextConverter.replace_numbers_with_text: every run of \\d+ spelled digit by digit (ASCII digits only;
    other decimal digits vanish), Chinese run together, English joined by spaces; each run's first occurrence."""
    for num in re.findall(r"\d+", text):
        ascii_digits = [int(c) for c in num if c in "0123456789"]
        if language == "chinese":
            rep = "".join(DIGITS_ZH[d] for d in ascii_digits)
        else:
            rep = " ".join(DIGITS_EN[d] for d in ascii_digits)
        text = text.replace(num, rep, 1)
    return text


def normalized_texts(chunks):
    """_generate_mel_spec_audio_streaming's text (one segment): the first LLM call's text as it is; each later call's
    text with its digits spelled and '*' removed, in the language detected over the raw text at the 2nd and 3rd call.
    Returns the TTS text after each call."""
    if not chunks:
        return []
    text = raw = chunks[0]
    out, lang = [text], None
    for t, txt in enumerate(chunks[1:], start=1):
        raw += txt
        if t <= 2:
            lang = detect_language(raw)
        text += spell_digits(txt, lang).replace("*", "")
        out.append(text)
    return out


def chunks_of(texts):
    """The text each LLM call added, from the cumulative texts."""
    return [t[len(texts[i - 1]):] if i else t for i, t in enumerate(texts)]


NORMALIZATION_CASES = [
    ["Hello", " there, call 555", "-0123 at 9", "*pm* or 10", " am."],
    ["你好", "，我有2", "个苹果和13个**梨**", "，共15个。"],
    ["Room", " 4", "2", "b, ", "floor ３2"],
    ["12", "34", " and 5"],
    ["价格", "是 3", " dollars and 5 cents 6", "7"],
]


def set_text(ctx, ids, complete, specials):
    for i in range(sp.RESERVED):
        known = i < len(ids)
        ctx.ids[2 + i] = ids[i] if known else (specials["[Etts]"] if i == len(ids) and complete else specials["[PAD]"])
        ctx.text_mask[2 + i] = 1 if known or (i == len(ids) and complete) else 0
    ctx.n = len(ids)


def stream_speech(tts, ctok, speaker_hidden, texts):
    """_generate_mel_spec_audio_streaming with greedy codes: text re-tokenized after each LLM call; chunk c prefilled
    once 10·(c+1) tokens are known, then 25 frames; at the end the rest (with [Etts]) and frames to EOS."""
    specials = sp.chattts_specials(ctok)
    ctx = tts.new_context([], specials, tts.project_speaker(speaker_hidden))
    set_text(ctx, [], False, specials)
    chunk = 0

    def advance():
        nonlocal chunk
        begin = 0 if chunk == 0 else chunk * sp.TEXT_CHUNK + 2
        end = min((chunk + 1) * sp.TEXT_CHUNK + 2, sp.CONDITION_LENGTH - 1)
        if end > begin:
            ctx.prefill_text(begin, end)
        ctx.generate(sp.OUTPUT_CHUNK)
        chunk += 1

    for text in texts:
        ids = ctok.encode(text, add_special_tokens=False).ids[:sp.RESERVED]
        set_text(ctx, ids, False, specials)
        while not ctx.finished and len(ids) >= sp.TEXT_CHUNK * (chunk + 1):
            advance()
    ids = ctok.encode(texts[-1] if texts else "", add_special_tokens=False).ids[:sp.RESERVED]
    set_text(ctx, ids, True, specials)
    while not ctx.finished and chunk < math.ceil(sp.CONDITION_LENGTH / sp.TEXT_CHUNK):
        advance()
    while not ctx.finished and len(ctx.frames) <= sp.MAX_FRAMES:
        ctx.generate(sp.OUTPUT_CHUNK)
    return ctx.frames


def units(waveform):
    return [waveform[i:i + UNIT] for i in range(0, len(waveform), UNIT)]


def load_image(name):
    from PIL import Image
    return Image.open(FIXTURES / "images" / name).convert("RGB")


def run_call(call, tensors, name, system, ref_audio, turns):
    """turns: list of dict(units=[(audio, image name or None)], max_new, interrupt_after)."""
    out = {"system": system, "ref_audio_samples": None if ref_audio is None else len(ref_audio), "turns": []}
    content = system
    if ref_audio is not None:
        content = system + aud.AUDIO_TAG + CLONE_SUFFIX
    call.system(content, ref_audio)
    if ref_audio is not None:
        tensors[f"{name}.system.audio_rows"] = call.prefills[-1]["audio_rows"].contiguous()
    out["system_ids"] = call.prefills[-1]["ids"]
    for t, turn in enumerate(turns):
        record = {"units": [], "max_new": turn["max_new"], "interrupt_after": turn.get("interrupt_after")}
        for u, (audio, image) in enumerate(turn["units"]):
            call.unit(audio, load_image(image) if image else None)
            p = call.prefills[-1]
            tensors[f"{name}.turn{t}.unit{u}.audio_rows"] = p["audio_rows"].contiguous()
            record["units"].append({"samples": len(audio), "image": image, "ids": p["ids"],
                                    "audio_offset": p["audio_offset"]})
        a = call.answer(turn["max_new"], turn.get("interrupt_after"), speak=turn.get("speak", True))
        record.update({"generated_ids": a["generated_ids"], "stopped": a["stopped"], "texts": a["texts"],
                       "codes": a["codes"]})
        tensors[f"{name}.turn{t}.speaker_hidden"] = a["speaker_hidden"].contiguous()
        out["turns"].append(record)
    out["cache_ids"] = call.ids
    return out


def write_live_reference(json_path, st_path, llm, apm, projector, vision, tokenizer, tts, ctok, speech_wave):
    streaming = StreamingAudio(apm, projector)
    clip = units(speech_wave)
    check_cache_against_mask(streaming, [aud.features([u])[0] for u in clip if len(u) == UNIT])
    tensors = {}
    calls = {}
    backwards = np.ascontiguousarray(speech_wave[::-1])
    # a voice call: a cloned voice, video frames on some units, an answer, an interrupted answer, one more
    call = Call(llm, streaming, vision, tokenizer, tts, ctok)
    calls["call"] = run_call(call, tensors, "call", CLONE_PROMPT, speech_wave[:24000], [
        dict(units=[(a, "chelsea-small.png" if u in (0, 2) else None) for u, a in enumerate(clip)], max_new=24),
        dict(units=[(a, None) for a in units(backwards)[:3]], max_new=24, interrupt_after=5, speak=False),
        dict(units=[(a, "coffee.png" if u == 0 else None) for u, a in enumerate(units(speech_wave[8000:40000]))],
             max_new=16),
    ])
    # one long turn: 31 units, so the Whisper cache (50 frames a unit) is dropped at the 30th
    long_wave = np.concatenate([speech_wave] * 8)[:31 * UNIT]
    call = Call(llm, streaming, vision, tokenizer, tts, ctok)
    calls["long"] = run_call(call, tensors, "long", OMNI_PROMPT, None, [
        dict(units=[(a, None) for a in units(long_wave)], max_new=8, speak=False)])
    offsets = [u["audio_offset"] for u in calls["long"]["turns"][0]["units"]]
    assert offsets[28] == 1400 and offsets[29] == 0 and offsets[30] == 50, offsets
    turn1 = calls["call"]["turns"][0]
    assert len(set(turn1["generated_ids"])) > 1 and turn1["codes"], "degenerate first answer"
    calls["normalization"] = [{"chunks": c, "texts": normalized_texts(c)} for c in NORMALIZATION_CASES]
    json_path.write_text(json.dumps(calls, indent=1, ensure_ascii=False) + "\n")
    save_file(tensors, str(st_path), metadata={"format": "pt"})
    return calls


def main():
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    import generate as gen
    llm = load_llm(MODEL)
    apm, projector = aud.load_audio(MODEL)
    vpm, resampler = vis.load_vision(MODEL)
    vision = vis.Vision.__new__(vis.Vision)
    vision.vpm, vision.resampler = vpm, resampler
    tts, _ = sp.load_tts(MODEL)
    import gzip
    ctok = sp.load_chattts_tokenizer(gzip.decompress(
        (MODEL / "assets" / "chattts_tokenizer" / "tokenizer.json.gz").read_bytes()))
    calls = write_live_reference(FIXTURES / "reference" / "live-tiny-minicpmo.json",
                                 FIXTURES / "reference" / "live-tiny-minicpmo.safetensors",
                                 llm, apm, projector, vision, gen.load_minicpmo_tokenizer(), tts, ctok,
                                 aud.load_wav(gen.SPEECH))
    for name, c in calls.items():
        if name == "normalization":
            continue
        print(name, [(len(t["units"]), t["generated_ids"][:6], len(t["codes"] or [])) for t in c["turns"]])


if __name__ == "__main__":
    main()
