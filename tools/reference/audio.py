"""Audio part of the reference generator: Whisper encoder (`apm`) + projector + pooling (spec §4).

The encoder's tensors come from transformers' `WhisperEncoder` (its parameter names are those of `apm.*`). Its
forward pass is not used as is: it insists on 3000 mel frames and knows no chunk mask, so `apm_forward` runs its
convolutions, position table, `WhisperEncoderLayer`s and final layer_norm the way MiniCPM-o's
MiniCPMWhisperEncoder does, with the additive mask of `get_audio_embedding` (−inf where masked). The projector is
MiniCPM-o's MultiModalProjector (linear1 → ReLU → linear2); pooling is AvgPool1d(2, 2) over time, keeping the
first (T' − 2)//2 + 1 rows.

Features: transformers' `WhisperFeatureExtractor` with MiniCPM-o's settings, called like the processor's
`audio_feature_extract` (pieces of ≤ 30 s, padding="max_length", only the real frames kept). Placeholders:
`get_audio_placeholder` re-implemented from processing_minicpmo.py.

All weights are drawn from a dedicated generator (nothing else changes), stored in bf16, and the reference
outputs use a float32 twin holding exactly the bf16 values.
"""
import json
import math
import wave
from pathlib import Path

import numpy as np
import torch
from torch import nn
from safetensors.torch import save_file

import checkpoints as ck

# Whisper encoder sizes. The tiny one goes into Tests/Fixtures/models/tiny-minicpmo (LLM hidden 8); its
# projector input encoder_ffn_dim // 4 = 32 equals d_model, as in the real model (4096 // 4 = 1024).
AUDIO_TINY = dict(d_model=32, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=128)
# MiniCPM-o 2.6's (spec §1.1): openai/whisper-medium.
AUDIO_REAL = dict(d_model=1024, encoder_layers=24, encoder_attention_heads=16, encoder_ffn_dim=4096)
AUDIO_COMMON = dict(num_mel_bins=80, max_source_positions=1500, activation_function="gelu")
# The keys of WhisperConfig.to_dict() that describe the encoder (decoder and generic fields are left out).
AUDIO_CONFIG_KEYS = ["activation_function", "d_model", "encoder_attention_heads", "encoder_ffn_dim", "encoder_layers",
                     "max_source_positions", "model_type", "num_mel_bins"]

SAMPLING_RATE = 16000
HOP = 160
CHUNK_LENGTH = 1.0     # config.audio_chunk_length: 1 s = 50 encoder frames per attention block
POOL_STEP = 2          # config.audio_pool_step
MAX_PIECE = 30 * SAMPLING_RATE
AUDIO_TAG = "(<audio>./</audio>)"
IMAGE_TAG = "(<image>./</image>)"
TTS_GENERATION_PROMPT = "<|im_start|>assistant\n<|spk_bos|><|spk|><|spk_eos|><|tts_bos|>"


def audio_config_json(sizes):
    from transformers import WhisperConfig
    full = WhisperConfig(**sizes, **AUDIO_COMMON).to_dict()
    return {k: full[k] for k in AUDIO_CONFIG_KEYS}


# ----------------------------------------------------------------------------------------------------------
# Audio loading, features, placeholders (spec §4.1, §4.4)

def load_wav(path):
    """float32 mono waveform of a 16 kHz mono 16-bit PCM WAV, as librosa.load(path, sr=16000, mono=True) returns
    it for such a file (soundfile decodes int16 as x / 32768; no resampling at the native rate, no downmix)."""
    with wave.open(str(path), "rb") as w:
        assert w.getframerate() == SAMPLING_RATE and w.getnchannels() == 1 and w.getsampwidth() == 2, \
            f"{path}: expected 16 kHz mono 16-bit PCM"
        data = w.readframes(w.getnframes())
    return (np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0).astype(np.float32)


def feature_extractor():
    from transformers import WhisperFeatureExtractor
    return WhisperFeatureExtractor(feature_size=80, sampling_rate=SAMPLING_RATE, hop_length=HOP, chunk_length=30,
                                   n_fft=400, padding_value=0.0, return_attention_mask=False)


def split_pieces(waveform):
    """Audio over 30 s is cut into consecutive 30 s pieces (audio_feature_extract)."""
    if len(waveform) <= MAX_PIECE:
        return [waveform]
    return [waveform[i * MAX_PIECE:(i + 1) * MAX_PIECE] for i in range(math.ceil(len(waveform) / MAX_PIECE))]


def features(pieces, extractor=None):
    """Log-mel of each piece, only its real frames (ceil(n / 160)): a list of float32 [80, frames]."""
    extractor = extractor or feature_extractor()
    out = extractor(pieces, sampling_rate=SAMPLING_RATE, return_attention_mask=True, padding="max_length",
                    return_tensors="pt")
    lens = out["attention_mask"].sum(dim=1)
    return [f[:, :int(n)].float().contiguous() for f, n in zip(out["input_features"], lens)]


def pad_features(feats):
    """[B, 80, T] zero-padded to the longest (pad_sequence as in audio_feature_extract) and the real frame counts."""
    t = max(f.shape[1] for f in feats)
    x = torch.zeros((len(feats), feats[0].shape[0], t), dtype=torch.float32)
    for i, f in enumerate(feats):
        x[i, :, :f.shape[1]] = f
    return x, torch.tensor([f.shape[1] for f in feats], dtype=torch.int64)


def audio_tokens(samples):
    """Embeddings of an audio of `samples` samples: mel frames -> encoder frames -> pooled."""
    frames = math.ceil(samples / HOP)
    enc = (frames - 1) // 2 + 1
    return frames, enc, (enc - POOL_STEP) // POOL_STEP + 1


def get_audio_placeholder(audio_lens, chunk_input=True, chunk_length=1, audio_start="<|audio_start|>",
                          unk="<unk>", audio_end="<|audio_end|>"):
    """processing_minicpmo.py's get_audio_placeholder, from the whole audio's sample count."""
    pool_step = POOL_STEP
    feature_lens = math.ceil(audio_lens / HOP)
    feature_lens = (feature_lens - 1) // 2 + 1
    output_lens = (feature_lens - pool_step) // pool_step + 1
    if chunk_input:
        fbank_feat_in_chunk = int(chunk_length * 100)
        cnn_feat_in_chunk = (fbank_feat_in_chunk - 1) // 2 + 1
        audio_embeds_in_chunk = (cnn_feat_in_chunk - pool_step) // pool_step + 1
        num_audio_chunks = (output_lens + audio_embeds_in_chunk - 1) // audio_embeds_in_chunk
        place_holders = ""
        total_unk_len = 0
        for _ in range(num_audio_chunks):
            unk_len = min(audio_embeds_in_chunk, output_lens - total_unk_len)
            place_holders += audio_start + unk * unk_len + audio_end
            total_unk_len += unk_len
        return place_holders
    return audio_start + unk * output_lens + audio_end


# ----------------------------------------------------------------------------------------------------------
# Encoder, projector, pooling (spec §4.2–4.3)

class MultiModalProjector(nn.Module):
    """MiniCPM-o's audio_projection_layer: linear2(relu(linear1(x)))."""

    def __init__(self, in_dim, out_dim):
        super().__init__()
        self.linear1 = nn.Linear(in_dim, out_dim, bias=True)
        self.relu = nn.ReLU()
        self.linear2 = nn.Linear(out_dim, out_dim, bias=True)

    def forward(self, x):
        return self.linear2(self.relu(self.linear1(x)))


def make_apm(sizes):
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder
    config = WhisperConfig(**sizes, **AUDIO_COMMON)
    config._attn_implementation = "eager"
    with torch.random.fork_rng(devices=[]):  # its own init draws from the global generator: keep that untouched
        return WhisperEncoder(config).float().eval()


def make_projector(encoder_ffn_dim, llm_hidden):
    with torch.random.fork_rng(devices=[]):
        return MultiModalProjector(encoder_ffn_dim // 4, llm_hidden).float().eval()


def encoder_mask(batch, frames, lens=None, chunk_length=CHUNK_LENGTH):
    """Additive [B, 1, T', T'] mask of get_audio_embedding: key padding (frames past each row's real encoder
    length (lens − 1)//2 + 1; no padding when lens is None) or-ed with the block-causal chunk mask
    (subsequent_chunk_mask: query i sees keys j < min(T', (i//chunk + 1)·chunk)); 0 where seen, −inf elsewhere."""
    if lens is None:
        lens = torch.full((batch,), frames, dtype=torch.int64)
    else:
        lens = (lens - 1) // 2 + 1
    seq = torch.arange(frames).unsqueeze(0).expand(batch, frames)
    padding = (seq >= lens.unsqueeze(1)).view(batch, 1, 1, frames).expand(batch, 1, frames, frames)
    masked = padding
    if chunk_length > 0:
        chunk = int(chunk_length * 50)
        seen = torch.zeros((frames, frames), dtype=torch.bool)
        for i in range(frames):
            seen[i, :min((i // chunk + 1) * chunk, frames)] = True
        masked = torch.logical_or(padding, torch.logical_not(seen))
    mask = torch.zeros((batch, 1, frames, frames), dtype=torch.float32)
    mask[masked] = float("-inf")
    return mask


@torch.no_grad()
def apm_forward(apm, input_features, lens=None, chunk_length=CHUNK_LENGTH):
    """input_features [B, 80, T] -> hidden states [B, T', d] after the final layer_norm (MiniCPMWhisperEncoder,
    non-streaming: positions from 0). lens: real mel frames per row (None: every row is T real frames)."""
    x = nn.functional.gelu(apm.conv1(input_features))
    x = nn.functional.gelu(apm.conv2(x)).permute(0, 2, 1)
    frames = x.shape[1]
    table = apm.embed_positions.weight
    positions = table[torch.clamp(torch.arange(frames), max=table.shape[0] - 1)]  # past 1500 the last row repeats
    x = x + positions
    mask = encoder_mask(x.shape[0], frames, lens, chunk_length)
    for layer in apm.layers:
        x = layer(x, mask, layer_head_mask=None)[0]
    return apm.layer_norm(x)


def pool(projected):
    """AvgPool1d(kernel 2, stride 2) over time, then the first (T' − 2)//2 + 1 rows."""
    frames = projected.shape[1]
    pooled = nn.functional.avg_pool1d(projected.transpose(1, 2), kernel_size=POOL_STEP, stride=POOL_STEP)
    n = (frames - POOL_STEP) // POOL_STEP + 1
    return pooled.transpose(1, 2)[:, :n]


# ----------------------------------------------------------------------------------------------------------
# Weights

class Audio:
    """apm + projector with random weights: `bf16` holds the tensors to store, the modules themselves the same
    values in float32 (the twin the references are computed with)."""

    def __init__(self, sizes, llm_hidden, seed):
        self.apm = make_apm(sizes)
        self.projector = make_projector(sizes["encoder_ffn_dim"], llm_hidden)
        assert sizes["encoder_ffn_dim"] // 4 == sizes["d_model"], "projector input must equal d_model"
        gen = torch.Generator().manual_seed(seed)
        self.bf16 = {}
        for prefix, module in (("apm.", self.apm), ("audio_projection_layer.", self.projector)):
            params = dict(module.named_parameters())
            for name in sorted(params):
                p = params[name]
                value = _draw(prefix + name, p.shape, gen).to(torch.bfloat16)
                self.bf16[prefix + name] = value.contiguous()
                with torch.no_grad():
                    p.copy_(value.float())  # the float32 twin: exactly the stored bf16 values
        self.config = audio_config_json(sizes)

    @torch.no_grad()
    def __call__(self, input_features, lens=None):
        """-> (last_hidden_state [B, T', d], projected [B, T', H], pooled [B, n, H])."""
        hidden = apm_forward(self.apm, input_features, lens)
        projected = self.projector(hidden)
        return hidden, projected, pool(projected)

    @torch.no_grad()
    def embed(self, feats):
        """MiniCPM-o's get_audio_embedding for one message's pieces (list of [80, frames]): one padded batch with
        the real lengths, each piece cut to its (T'−2)//2+1 embeddings, concatenated in order -> [n, H]."""
        x, lens = pad_features(feats)
        pooled = self(x, lens)[2]
        counts = [audio_tokens_from_frames(int(n)) for n in lens]
        return torch.cat([pooled[i, :c] for i, c in enumerate(counts)], dim=0)


def audio_tokens_from_frames(frames):
    enc = (frames - 1) // 2 + 1
    return (enc - POOL_STEP) // POOL_STEP + 1


def _draw(name, shape, gen):
    """Scales that keep activations O(1) in both the tiny and the real geometry."""
    randn = torch.randn(tuple(shape), generator=gen)
    leaf = name.rsplit(".", 1)[-1]
    if name.endswith("embed_positions.weight"):
        return 0.5 * randn
    if "layer_norm" in name:  # LayerNorms: self_attn_layer_norm, final_layer_norm, layer_norm
        return 1.0 + 0.2 * randn if leaf == "weight" else 0.1 * randn
    if leaf == "bias":
        return 0.1 * randn
    if name.endswith(("conv1.weight", "conv2.weight")):
        return randn / math.sqrt(shape[1] * shape[2])
    assert len(shape) == 2, name
    return randn / math.sqrt(shape[1])  # nn.Linear-style [out, in]


# ----------------------------------------------------------------------------------------------------------
# Reference fixtures

# Probe geometries: (start sample, mel frames). The single row's 75 encoder frames end in a partial 50-frame block
# (and are odd: pooling drops the last); the batch's rows are two lengths of the same clip (105 and 60 encoder
# frames) zero-padded to the longer. Short rows keep the committed files small.
SINGLE = (8000, 150)
BATCH = [(0, 210), (24000, 120)]


def clip_features(waveform, segments, extractor):
    """Features of clip segments (start, frames): frames · 160 samples each, so exactly `frames` real frames."""
    pieces = [waveform[s:s + f * HOP] for s, f in segments]
    assert all(len(p) == f * HOP for p, (_, f) in zip(pieces, segments)), "clip too short"
    feats = features(pieces, extractor)
    assert [f.shape[1] for f in feats] == [f for _, f in segments]
    return feats


def write_audio_reference(path, probe_path, audio, waveform):
    """Probe semantics: no lengths, every row is T real frames (the chunk mask over all T' frames, nothing else)."""
    ext = feature_extractor()
    t = {}
    x = clip_features(waveform, [SINGLE], ext)[0].unsqueeze(0)
    hidden, projected, pooled = audio(x)
    t.update({"single.input_features": x, "single.last_hidden_state": hidden, "single.projected": projected,
              "single.pooled": pooled})
    x, _ = pad_features(clip_features(waveform, BATCH, ext))
    hidden, projected, pooled = audio(x)
    t.update({"batch.input_features": x, "batch.last_hidden_state": hidden, "batch.projected": projected,
              "batch.pooled": pooled})
    # each row of the batch alone gives the same (rows are independent; the padded row is T frames either way)
    for i in range(x.shape[0]):
        h1, p1, q1 = audio(x[i:i + 1])
        assert torch.allclose(h1, hidden[i:i + 1], atol=1e-5) and torch.allclose(q1, pooled[i:i + 1], atol=1e-5)
    # MiniCPM-o's own mask with audio_feature_lens = T for each row is exactly the probe's
    lens = torch.full((x.shape[0],), x.shape[2], dtype=torch.int64)
    assert torch.equal(audio(x, lens)[0], hidden)
    t = {k: v.contiguous() for k, v in t.items()}
    save_file(t, str(path), metadata={"format": "pt"})
    save_file({"input_features": t["batch.input_features"]}, str(probe_path), metadata={"format": "pt"})


PLACEHOLDER_SAMPLES = [1, 100, 159, 160, 161, 320, 321, 641, 16000, 32000, 39999, 480000, 480001, 720000]


def write_placeholders(path):
    """Placeholder text (chunk_input=True) per sample count, plus the 30 s pieces the features are cut into and the
    embeddings each piece gives (30 s is 750 whole embeddings, so their sum always equals `tokens`; a trailing
    piece under 321 samples gives none)."""
    cases = []
    for n in PLACEHOLDER_SAMPLES:
        frames, enc, tokens = audio_tokens(n)
        pieces = [len(p) for p in split_pieces(np.zeros(n, dtype=np.float32))]
        cases.append({"samples": n, "frames": frames, "encoder_frames": enc, "tokens": tokens,
                      "piece_samples": pieces, "piece_tokens": [audio_tokens(p)[2] for p in pieces],
                      "placeholder": get_audio_placeholder(n, chunk_input=True, chunk_length=1)})
    path.write_text(json.dumps(cases, indent=1) + "\n")


# End-to-end: [images.., text, audio] -> chat() prompt with the TTS template -> greedy continuation.
E2E_CASES = [
    {"images": [], "text": "Please listen to the audio snippet carefully and transcribe the content."},
    {"images": ["chelsea.png"], "text": "What do you see and hear?"},
]


def chat_prompt(n_images, text, image_pre, audio_samples):
    """MiniCPM-o chat(): the content list [image.., text, audio] joined with "\\n", image tags replaced by their
    placeholders (image index k, its grid), the audio tag by its placeholder; the TTS template (a message holds
    audio), no system message."""
    import minicpmv_image as mi
    content = "\n".join([IMAGE_TAG] * n_images + [text, AUDIO_TAG])
    chunks = content.split(IMAGE_TAG)
    out = chunks[0]
    for k, pre in enumerate(image_pre):
        out += mi.placeholder(k, pre["grid"]) + chunks[k + 1]
    out = out.replace(AUDIO_TAG, get_audio_placeholder(audio_samples, chunk_input=True, chunk_length=1))
    return f"<|im_start|>user\n{out}<|im_end|>\n{TTS_GENERATION_PROMPT}"


def audio_bounds(ids, tokenizer):
    start, end = tokenizer.token_to_id("<|audio_start|>"), tokenizer.token_to_id("<|audio_end|>")
    s = [i + 1 for i, x in enumerate(ids) if x == start]
    e = [i for i, x in enumerate(ids) if x == end]
    assert len(s) == len(e) and all(a <= b for a, b in zip(s, e))
    return list(zip(s, e))


@torch.no_grad()
def e2e_generate(llm, vision, audio, tokenizer, images_dir, image_names, text, waveform):
    """prompt ids and greedy continuation of one case."""
    from PIL import Image
    import minicpmv_image as mi
    import vision as vis
    unk = tokenizer.token_to_id("<unk>")
    pre = [mi.preprocess(Image.open(images_dir / n).convert("RGB"), max_slice_nums=9) for n in image_names]
    prompt = chat_prompt(len(image_names), text, pre, len(waveform))
    ids = tokenizer.encode(prompt, add_special_tokens=False).ids
    embeds = llm.model.embed_tokens(torch.tensor([ids]))
    # images: one slice at a time, in model order, into the image bounds
    bounds = vis.image_bounds(ids, tokenizer) if image_names else []
    feats = []
    for p in pre:
        for pv, ts in zip(p["pixel_values"], p["tgt_sizes"]):
            feats.append(vision(pv.unsqueeze(0), torch.tensor([ts], dtype=torch.int64))[1][0])
    assert len(feats) == len(bounds)
    for (a, b), f in zip(bounds, feats):
        assert all(x == unk for x in ids[a:b])
        embeds[0, a:b] = f
    # audio: all pieces' embeddings concatenated, poured sequentially into the audio bounds
    emb = audio.embed(features(split_pieces(waveform)))
    pos = 0
    for a, b in audio_bounds(ids, tokenizer):
        assert all(x == unk for x in ids[a:b])
        embeds[0, a:b] = emb[pos:pos + b - a]
        pos += b - a
    assert pos == emb.shape[0], (pos, emb.shape)
    out = llm.generate(inputs_embeds=embeds, attention_mask=torch.ones((1, len(ids)), dtype=torch.long),
                       do_sample=False, max_new_tokens=32, repetition_penalty=1.0,
                       eos_token_id=[151645, 151643], pad_token_id=151643)
    return prompt, ids, out[0].tolist()


def write_e2e_reference(path, llm, vision, audio, tokenizer, images_dir, audio_path):
    """llm: the float32 twin of the tiny MiniCPM-o LLM. Files are named relative to their fixture folders
    (Tests/Fixtures/audio, Tests/Fixtures/images)."""
    waveform = load_wav(audio_path)
    cases = []
    for case in E2E_CASES:
        prompt, ids, gen = e2e_generate(llm, vision, audio, tokenizer, images_dir, case["images"], case["text"],
                                        waveform)
        assert len(set(gen)) > 1, f"degenerate continuation {gen}"
        # the answer depends on the audio: the same prompt with the clip played backwards answers differently
        _, ids2, gen2 = e2e_generate(llm, vision, audio, tokenizer, images_dir, case["images"], case["text"],
                                     np.ascontiguousarray(waveform[::-1]))
        assert ids2 == ids and gen2 != gen, "the continuation does not depend on the audio"
        cases.append({"audio": Path(audio_path).name, "images": case["images"],
                      "prompt": prompt, "prompt_ids": ids, "generated_ids": gen})
    path.write_text(json.dumps(cases, indent=1, ensure_ascii=False) + "\n")
    return cases


# ----------------------------------------------------------------------------------------------------------
# Checkpoints

def load_audio(directory):
    """Float32 apm + projector from a checkpoint folder (bf16/f16/f32 tensors, `apm.*` / `audio_projection_layer.*`)."""
    directory = Path(directory)
    config = json.loads((directory / "config.json").read_text())
    a = config["audio_config"]
    sizes = {k: a[k] for k in AUDIO_TINY}
    apm = make_apm(sizes)
    projector = make_projector(sizes["encoder_ffn_dim"], config["hidden_size"])
    ws, ps = ck.load_prefixed(directory, "apm.", "audio_projection_layer.")
    apm.load_state_dict(ws)
    projector.load_state_dict(ps)
    return apm, projector
