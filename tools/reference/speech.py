"""Speech-output part of the reference generator: ConditionalChatTTS (`tts.*`), its DVAE decoder (`tts.dvae.*`),
the Vocos vocoder (`assets/Vocos.pt`) and the ChatTTS BERT tokenizer (`assets/chattts_tokenizer`) (spec §5).

- TTS transformer: transformers' `LlamaModel` (LlamaConfig defaults beyond tts_config's sizes, as MiniCPM-o builds
  it), run the way MiniCPM-o's ConditionalChatTTS does: a KV cache of 302 zero slots, `prefill_text(begin, end)`
  (plain causal attention over the cache prefix [0, begin) plus the new slots, the [spk_emb] slot holding the
  L2-normalised projected speaker vector), and one-frame `generate` steps at position P = cache length with the
  additive mask of `make_streaming_chunk_mask_generation` (finfo.min where hidden). Heads are weight-normalised
  Linear layers (torch.nn.utils.parametrizations.weight_norm); speech is decoded greedily (argmax after the EOS
  suppression of the first 10 steps of every generate() call; temperatures and top-p/top-k keep the argmax).
- DVAE: the `chattts` package's DVAE class (ChatTTS/model/dvae.py, GroupedResidualFSQ of vector-quantize-pytorch
  1.18.5, whose residual scale is (L−1)^−r = 0.25, as the checkpoint was trained) at small sizes; its ConvNeXt
  layer scale, `weight` there, is stored under MiniCPM-o's name `coef`. The decoder side only is stored.
- Vocos: the `vocos` package's Vocos(MelSpectrogramFeatures, VocosBackbone, ISTFTHead(padding "same")), saved
  with torch.save(state_dict) like the real asset, float32.
- ChatTTS tokenizer: a BERT WordPiece tokenizer with the real vocabulary size (21178) and the real ids of the
  specials the config names; its pieces are learned with wordpiece.py's deterministic learner.

TTS weights are drawn from their own generator after everything else (nothing existing changes), stored in bf16;
the references use float32 twins holding exactly the bf16 values. Each computation is cross-checked against an
independent restatement of the spec (full-sequence attention with the same masks, §5.6 and §5.7 by hand).
"""
import importlib.util
import json
import math
import os
import random
import sys
import types
from pathlib import Path

import torch
from torch import nn
from safetensors.torch import save_file

import audio as aud
import checkpoints as ck

# ----------------------------------------------------------------------------------------------------------
# Sizes and config

# The tiny ConditionalChatTTS goes into Tests/Fixtures/models/tiny-minicpmo (LLM hidden 8).
TTS_TINY = dict(hidden_size=16, intermediate_size=32, num_attention_heads=2, num_hidden_layers=2)
TTS_REAL = dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=20)
# LlamaModel's own vocabulary: its embed_tokens is never used (inputs are always embeddings). The real checkpoint
# keeps LlamaConfig's default 32000 rows; the tiny one a few.
TTS_DEAD_VOCAB = {"tiny": 32, "real": 32000}
# DVAE decoder: GroupedResidualFSQ dim (2 groups of `dim // 2`), decoder bottleneck / hidden / blocks, conv_out
# channels (= out_conv input). ConvNeXt inner width is 4 x hidden (the class fixes it). FSQ latent 4, levels 5.
DVAE_TINY = dict(gfsq_dim=32, bottleneck=8, hidden=16, layers=2, out_dim=24)
DVAE_REAL = dict(gfsq_dim=1024, bottleneck=128, hidden=256, layers=12, out_dim=512)
# Vocos: dim 16 keeps the tiny Vocos.pt under 400 KB (its mel filterbank buffer alone is 205 KB).
VOCOS_TINY = dict(dim=16, intermediate_dim=48, num_layers=2)
VOCOS_REAL = dict(dim=512, intermediate_dim=1536, num_layers=8)

NUM_AUDIO_TOKENS = 626          # 625 codes + EOS
EOS_CODE = 625
NUM_TEXT_TOKENS = 21178
NUM_VQ = 4
NUM_MELS = 100
SPK_EMB_TOKEN_ID = 21143
AUDIO_BOS_TOKEN_ID = 21132       # [Ptts]
TEXT_EOS_TOKEN_ID = 21133        # [Etts]
RESERVED = 300                   # streaming_text_reserved_len
TEXT_CHUNK = 10                  # streaming_text_chunk_size
AUDIO_CHUNK = 50                 # streaming_audio_chunk_size
CONDITION_LENGTH = 1 + 1 + RESERVED + 1
OUTPUT_CHUNK = 25                # _generate_mel_spec's output_chunk_size
MIN_NEW = 10                     # generate()'s min_new_token
MAX_FRAMES = 2048
TEMPERATURE = [0.1, 0.3, 0.1, 0.3]
SAMPLE_RATE = 24000
HOP = 256

TTS_SEED = 515    # the TTS weights' own generator: drawn after the LLM, vision and audio, which stay as they were
VOCOS_SEED = 513  # Vocos's
# Weight-norm magnitudes g of the heads: HEAD_GAIN · (1 + 0.2·N(0,1)), so the logits spread over a few units (the
# final-norm hidden state has norm ~ sqrt(D), each unit row direction picks ~N(0,1) of it) and greedy choices are
# not near-ties; the EOS class (625) of every head gets EOS_GAIN, so that the greedy e2e speech ends on its own
# (see write_e2e_reference).
HEAD_GAIN = 3.0
EOS_GAIN = 5.3


def tts_config_json(sizes, llm_dim):
    """tts_config of config.json (spec §1.1)."""
    return {"llm_dim": llm_dim, **sizes, "max_position_embeddings": 4096, "num_audio_tokens": NUM_AUDIO_TOKENS,
            "num_text_tokens": NUM_TEXT_TOKENS, "num_mel_bins": NUM_MELS, "num_vq": NUM_VQ,
            "use_speaker_embedding": True, "use_llm_hidden_state": False, "spk_emb_token_id": SPK_EMB_TOKEN_ID,
            "num_spk_embs": 1, "audio_bos_token_id": AUDIO_BOS_TOKEN_ID, "text_eos_token_id": TEXT_EOS_TOKEN_ID,
            "use_text": True, "streaming": True, "streaming_text_chunk_size": TEXT_CHUNK,
            "streaming_text_reserved_len": RESERVED, "streaming_audio_chunk_size": AUDIO_CHUNK, "use_mlp": True,
            "attn_implementation": "sdpa", "model_type": "conditional_chattts", "top_p": 0.7, "top_k": 20,
            "repetition_penalty": 1.0, "do_sample": True}


# ----------------------------------------------------------------------------------------------------------
# Third-party modules

def import_torchaudio():
    """torchaudio, which vocos and ChatTTS import. PyPI's torchaudio wheel is built for CUDA, and its C++ extension
    does not load next to the CPU torch (libcudart missing); vocos and ChatTTS's DVAE use only its pure-Python parts
    (MelSpectrogram, the mel scale), so it is imported with the extension marked unavailable, which torchaudio
    itself supports (`_IS_TORCHAUDIO_EXT_AVAILABLE = False`)."""
    try:
        import torchaudio
        return torchaudio
    except OSError:
        pass
    for name in [k for k in sys.modules if k == "torchaudio" or k.startswith("torchaudio.")]:
        del sys.modules[name]
    stub = types.ModuleType("torchaudio._extension")
    stub._IS_TORCHAUDIO_EXT_AVAILABLE = False
    stub._IS_ALIGN_AVAILABLE = False

    def fail_if_no_align(func):
        def fail(*args, **kwargs):
            raise RuntimeError("torchaudio's C++ extension is not loaded")
        return fail

    stub.fail_if_no_align = fail_if_no_align
    sys.modules["torchaudio._extension"] = stub
    import torchaudio
    return torchaudio


def chattts_dvae_module():
    """ChatTTS/model/dvae.py of the `chattts` package, imported without running ChatTTS/__init__.py and
    ChatTTS/model/__init__.py (they load the whole TTS stack: GPT, tokenizer, Vocos, downloads)."""
    import_torchaudio()
    if "ChatTTS.model.dvae" in sys.modules:
        return sys.modules["ChatTTS.model.dvae"]
    spec = importlib.util.find_spec("ChatTTS")
    root = spec.submodule_search_locations[0]
    for name, path in (("ChatTTS", root), ("ChatTTS.model", os.path.join(root, "model"))):
        if name not in sys.modules:
            m = types.ModuleType(name)
            m.__path__ = [path]
            sys.modules[name] = m
    import ChatTTS.model.dvae as dvae
    return dvae


def make_vocos(sizes):
    import_torchaudio()
    from vocos import Vocos
    from vocos.feature_extractors import MelSpectrogramFeatures
    from vocos.heads import ISTFTHead
    from vocos.models import VocosBackbone
    with torch.random.fork_rng(devices=[]):
        fe = MelSpectrogramFeatures(sample_rate=SAMPLE_RATE, n_fft=1024, hop_length=HOP, n_mels=NUM_MELS,
                                    padding="center")
        backbone = VocosBackbone(input_channels=NUM_MELS, dim=sizes["dim"], intermediate_dim=sizes["intermediate_dim"],
                                 num_layers=sizes["num_layers"])
        head = ISTFTHead(dim=sizes["dim"], n_fft=1024, hop_length=HOP)  # padding "same", as MiniCPM-o builds it
        return Vocos(fe, backbone, head).float().eval()


def make_dvae(sizes):
    dv = chattts_dvae_module()
    half = sizes["gfsq_dim"] // 2
    with torch.random.fork_rng(devices=[]):
        return dv.DVAE(decoder_config=dict(idim=half, odim=sizes["out_dim"], n_layer=sizes["layers"],
                                           bn_dim=sizes["bottleneck"], hidden=sizes["hidden"]),
                       vq_config=dict(dim=sizes["gfsq_dim"], levels=(5, 5, 5, 5), G=2, R=2),
                       dim=sizes["out_dim"]).float().eval()


def llama_config(sizes, dead_vocab):
    from transformers import LlamaConfig
    config = LlamaConfig(hidden_size=sizes["hidden_size"], intermediate_size=sizes["intermediate_size"],
                         num_attention_heads=sizes["num_attention_heads"],
                         num_hidden_layers=sizes["num_hidden_layers"], max_position_embeddings=4096,
                         rms_norm_eps=1e-6, rope_theta=10000.0, vocab_size=dead_vocab)
    config._attn_implementation = "eager"
    return config


class TTSModules(nn.Module):
    """ConditionalChatTTS's parameters under MiniCPM-o's names (the DVAE is kept apart)."""

    def __init__(self, sizes, llm_dim, dead_vocab):
        super().__init__()
        from torch.nn.utils.parametrizations import weight_norm
        from transformers import LlamaModel
        d = sizes["hidden_size"]
        self.projector = aud.MultiModalProjector(llm_dim, d)
        self.emb_code = nn.ModuleList([nn.Embedding(NUM_AUDIO_TOKENS, d) for _ in range(NUM_VQ)])
        self.emb_text = nn.Embedding(NUM_TEXT_TOKENS, d)
        self.head_code = nn.ModuleList([weight_norm(nn.Linear(d, NUM_AUDIO_TOKENS, bias=False), name="weight")
                                        for _ in range(NUM_VQ)])
        self.model = LlamaModel(llama_config(sizes, dead_vocab))


# ----------------------------------------------------------------------------------------------------------
# Weights

def _draw(name, shape, gen):
    """Scales that keep activations O(1) in both the tiny and the real geometry."""
    randn = torch.randn(tuple(shape), generator=gen)
    leaf = name.rsplit(".", 1)[-1]
    if name.endswith("parametrizations.weight.original0"):  # weight-norm magnitude g [626, 1]
        g = HEAD_GAIN * (1.0 + 0.2 * randn)
        g[EOS_CODE] = EOS_GAIN
        return g
    if name.endswith("parametrizations.weight.original1"):  # direction v (only its row directions matter)
        return randn
    if name.startswith(("tts.emb_text", "tts.emb_code")):
        return 0.5 * randn
    if name == "tts.model.embed_tokens.weight":
        return randn
    if "layernorm" in name or name.endswith((".norm.weight", ".norm.bias")) or "final_layer_norm" in name:
        return 1.0 + 0.2 * randn if leaf == "weight" else 0.1 * randn
    if leaf in ("coef", "gamma") and len(shape) == 1:  # ConvNeXt layer scales: not tiny
        return 0.5 + 0.1 * randn
    if name == "tts.dvae.coef":  # [1, 100, 1], positive like the real torch.rand(100) init
        return 1.0 + 0.2 * randn
    if leaf == "bias":
        return 0.1 * randn
    if len(shape) == 3:  # Conv1d [out, in/groups, k]
        return randn / math.sqrt(shape[1] * shape[2])
    assert len(shape) == 2, name
    return randn / math.sqrt(shape[1])  # nn.Linear-style [out, in]


def dvae_stored_name(name):
    """chattts's ConvNeXt layer scale `decoder.decoder_block.N.weight` is MiniCPM-o's `...N.coef`."""
    parts = name.split(".")
    if len(parts) == 4 and parts[:2] == ["decoder", "decoder_block"] and parts[3] == "weight":
        return ".".join(parts[:3] + ["coef"])
    return name


def dvae_decoder_side(name):
    """The tensors MiniCPM-o's decode path uses (the encoder side is not stored)."""
    return not (".project_in." in name or name.startswith(("encoder.", "downsample_conv.")))


class TTS:
    """ConditionalChatTTS + DVAE with random weights: `bf16` holds the `tts.*` tensors to store, the modules the
    same values in float32 (the twin the references are computed with)."""

    def __init__(self, sizes, llm_dim, dvae_sizes, seed, dead_vocab):
        self.sizes, self.dvae_sizes = dict(sizes), dict(dvae_sizes)
        with torch.random.fork_rng(devices=[]):
            self.tts = TTSModules(sizes, llm_dim, dead_vocab).float().eval()
        self.dvae = make_dvae(dvae_sizes)
        gen = torch.Generator().manual_seed(seed)
        targets = {}
        for name, p in self.tts.named_parameters():
            targets["tts." + name] = p
        for name, t in self.dvae.named_parameters():
            if dvae_decoder_side(name):
                targets["tts.dvae." + dvae_stored_name(name)] = t
        targets["tts.dvae.coef"] = self.dvae.coef  # a buffer in chattts's class, a parameter in MiniCPM-o's
        self.bf16 = {}
        for name in sorted(targets):
            t = targets[name]
            value = _draw(name, t.shape, gen).to(torch.bfloat16)
            self.bf16[name] = value.contiguous()
            with torch.no_grad():
                t.copy_(value.float())  # the float32 twin: exactly the stored bf16 values
        self.config = tts_config_json(sizes, llm_dim)

    # -- the ConditionalChatTTS protocol (spec §5.2–5.4) -----------------------------------------------------

    @torch.no_grad()
    def project_speaker(self, h):
        """h [..., llm_dim] -> L2-normalised projector output [..., hidden]."""
        return nn.functional.normalize(self.tts.projector(h.float()), p=2, dim=-1)

    def new_context(self, text_ids, specials, speaker):
        return Context(self, text_ids, specials, speaker)

    @torch.no_grad()
    def dvae_decode(self, codes):
        """codes [N, 4, T] (int) -> log-mel [N, 100, 2T] (DVAE forward, mode "decode")."""
        return self.dvae(codes.long(), "decode").clone()


class Context:
    """One utterance: the 303-slot condition, its text mask, the KV cache (302 zero slots, then fed frames) and the
    frames generated so far — the state `_generate_mel_spec` keeps (audio_input_ids, past_key_values)."""

    def __init__(self, tts, text_ids, specials, speaker):
        self.tts = tts
        t = list(text_ids)[:RESERVED]
        self.n = len(t)
        ids = [specials["[Stts]"], SPK_EMB_TOKEN_ID] + t
        if len(t) < RESERVED:
            ids += [specials["[Etts]"]] + [specials["[PAD]"]] * (RESERVED - len(t) - 1)
        ids.append(specials["[Ptts]"])
        assert len(ids) == CONDITION_LENGTH
        self.ids = ids
        mask = torch.zeros(CONDITION_LENGTH, dtype=torch.int8)  # _build_streaming_mask
        mask[0:1 + 1 + self.n + 1] = 1
        mask[-1] = 1
        self.text_mask = mask
        self.speaker = speaker  # [hidden], already projected and normalised
        cfg = tts.tts.model.config
        hd = cfg.hidden_size // cfg.num_attention_heads
        shape = (1, cfg.num_key_value_heads, CONDITION_LENGTH - 1, hd)
        from transformers import DynamicCache
        # past_key_values of 302 zero slots per layer; generation steps append to it
        self.cache = DynamicCache.from_legacy_cache(tuple((torch.zeros(shape), torch.zeros(shape))
                                                          for _ in range(cfg.num_hidden_layers)))
        self.prefilled = 0      # condition slots [0, prefilled) hold real K/V
        self.frames = []        # generated frames (no EOS)
        self.fed = []           # what each generation step fed: "bos" or a frame
        self.finished = False
        self.step_logits = []   # raw head logits [4, 626] of every step, in order
        self.keep_logits = True

    @property
    def length(self):
        return self.cache.get_seq_length()

    @torch.no_grad()
    def prefill_text(self, begin, end):
        """Slots [begin, end) at positions begin..end−1, causal over the cache prefix [0, begin) (prefill_text clones
        it); their K/V are then written into cache slots [begin, end). Returns their final-norm hidden states
        [end − begin, D]."""
        from transformers import DynamicCache
        m = self.tts.tts
        ids = torch.tensor([self.ids[begin:end]])
        embeds = m.emb_text(ids)
        spk = ids[0] == SPK_EMB_TOKEN_ID  # merge_inputs_embeds / apply_spk_emb
        if spk.any():
            embeds[0, spk] = self.speaker
        positions = torch.arange(begin, end).unsqueeze(0)
        prefix = DynamicCache() if begin == 0 else DynamicCache.from_legacy_cache(
            tuple((layer.keys[:, :, :begin].clone(), layer.values[:, :, :begin].clone())
                  for layer in self.cache.layers))
        out = m.model(inputs_embeds=embeds, position_ids=positions, past_key_values=prefix, attention_mask=None,
                      use_cache=True, cache_position=positions[0])
        for layer, new in zip(self.cache.layers, out.past_key_values.layers):
            layer.keys[:, :, begin:end] = new.keys[:, :, begin:end]
            layer.values[:, :, begin:end] = new.values[:, :, begin:end]
        self.prefilled = max(self.prefilled, end)
        return out.last_hidden_state[0]

    def step_mask(self, past):
        """make_streaming_chunk_mask_generation for one new token after `past` cached ones: [1, 1, 1, past + 1]."""
        dtype = torch.float32
        min_dtype = torch.finfo(dtype).min
        mask = torch.full((1, past + 1), fill_value=0, dtype=dtype)
        start = min(math.ceil((past - RESERVED) / AUDIO_CHUNK) * TEXT_CHUNK, RESERVED) + 1 + 1
        end = RESERVED + 1 + 1 + 1
        mask[0, start:end] = min_dtype
        mask[0, 0:CONDITION_LENGTH].masked_fill_(self.text_mask == 0, min_dtype)
        return mask.unsqueeze(0).unsqueeze(0)

    @torch.no_grad()
    def step(self):
        """Feeds the audio BOS (first step) or the last frame at position P = cache length; returns the raw head
        logits [4, 626] (fp32, before temperature)."""
        m = self.tts.tts
        p = self.length
        if not self.fed:
            embeds = m.emb_text(torch.tensor([[AUDIO_BOS_TOKEN_ID]]))
            self.fed.append("bos")
        else:
            last = self.frames[-1]
            embeds = sum(m.emb_code[q](torch.tensor([[last[q]]])) for q in range(NUM_VQ))
            self.fed.append(list(last))
        positions = torch.tensor([[p]])
        out = m.model(inputs_embeds=embeds, position_ids=positions, past_key_values=self.cache,
                      attention_mask=self.step_mask(p), use_cache=True, cache_position=positions[0])
        h = out.last_hidden_state[0, -1]
        logits = torch.stack([head(h) for head in m.head_code]).float()
        if self.keep_logits:
            self.step_logits.append(logits.clone())
        return logits

    def generate(self, max_new, min_new=MIN_NEW):
        """One generate() call, greedy: up to max_new frames; EOS forbidden for its first min_new steps; stops at a
        frame with EOS in any codebook (that frame is not kept)."""
        temperature = torch.tensor(TEMPERATURE).view(-1, 1)
        for i in range(max_new):
            logits = self.step() / temperature
            if i < min_new:
                logits[:, EOS_CODE] = -torch.inf
            codes = logits.argmax(dim=-1).tolist()
            if EOS_CODE in codes:
                self.finished = True
                return
            self.frames.append(codes)

    def synthesize(self):
        """_generate_mel_spec's schedule (non-streaming chat): text chunk c prefilled ([0, 12) for c = 0, else
        [10c + 2, min(10c + 12, 302))), then up to 25 frames; after the last chunk 25-frame calls until EOS or more
        than 2048 frames."""
        for c in range(math.ceil(CONDITION_LENGTH / TEXT_CHUNK)):
            begin = 0 if c == 0 else c * TEXT_CHUNK + 2
            end = (c + 1) * TEXT_CHUNK + 2 if c == 0 else min((c + 1) * TEXT_CHUNK + 2, CONDITION_LENGTH - 1)
            if end - begin > 0:
                self.prefill_text(begin, end)
            self.generate(OUTPUT_CHUNK)
            if self.finished:
                return self.frames
        while not self.finished and len(self.frames) <= MAX_FRAMES:
            self.generate(OUTPUT_CHUNK)
        return self.frames


# ----------------------------------------------------------------------------------------------------------
# Independent restatements for the cross-checks

@torch.no_grad()
def full_sequence_logits(tts, ctx):
    """Every generation step of `ctx` recomputed in one forward pass over the whole sequence (condition slots that
    were prefilled, then BOS and the fed frames) with one explicit [L, L] additive mask: condition queries see the
    slots before them (causal), a step query at position P sees condition keys j < t_vis(P) with text mask 1, and
    every audio position ≤ P. Returns the head logits of the step positions [steps, 4, 626]."""
    m = tts.tts
    prefilled = ctx.prefilled
    steps = len(ctx.fed)
    n_cond = CONDITION_LENGTH - 1
    embeds = m.emb_text(torch.tensor([ctx.ids[:n_cond]]))
    embeds[0, 1] = ctx.speaker
    feeds = []
    for f in ctx.fed:
        if f == "bos":
            feeds.append(m.emb_text(torch.tensor([[AUDIO_BOS_TOKEN_ID]]))[0])
        else:
            feeds.append(sum(m.emb_code[q](torch.tensor([[f[q]]])) for q in range(NUM_VQ))[0])
    x = torch.cat([embeds[0], torch.cat(feeds)]).unsqueeze(0)
    total = x.shape[1]
    visible = torch.zeros((total, total), dtype=torch.bool)
    for q in range(n_cond):
        visible[q, :q + 1] = True
    for s in range(steps):
        p = n_cond + s
        t_vis = min(math.ceil((p - RESERVED) / AUDIO_CHUNK) * TEXT_CHUNK, RESERVED) + 2
        for j in range(min(t_vis, CONDITION_LENGTH)):
            visible[p, j] = bool(ctx.text_mask[j])
        visible[p, CONDITION_LENGTH:p + 1] = True
    assert not visible[n_cond:, prefilled:n_cond].any(), "a step sees a text slot that was never prefilled"
    mask = torch.zeros((total, total))
    mask[~visible] = torch.finfo(torch.float32).min
    out = m.model(inputs_embeds=x, position_ids=torch.arange(total).unsqueeze(0),
                  attention_mask=mask.view(1, 1, total, total), use_cache=False)
    h = out.last_hidden_state[0, n_cond:]
    return torch.stack([torch.stack([head(h[s]) for head in m.head_code]) for s in range(steps)])


def dvae_by_hand(tts, codes):
    """Spec §5.6 restated on the stored tensors (float64): FSQ digits, residual scale 0.25, project_out per group,
    the ×2 interleave, conv_in, ConvNeXt blocks, conv_out, out_conv, × coef."""
    sd = {k[len("tts.dvae."):]: v.double() for k, v in tts.bf16.items() if k.startswith("tts.dvae.")}
    codes = codes.long()
    n, _, t = codes.shape
    digits = torch.stack([(codes // 5 ** k) % 5 for k in range(4)], dim=-1)      # [N, 4, T, 4]
    values = (digits.double() - 2) / 2
    groups = []
    for g in range(2):
        z = values[:, 2 * g] + values[:, 2 * g + 1] * 0.25                       # [N, T, 4]
        p = f"vq_layer.quantizer.rvqs.{g}.project_out."
        w, b = sd[p + "weight"], sd[p + "bias"]
        groups.append(z @ w.T + b)                                                # [N, T, half]
    half = groups[0].shape[-1]
    x = torch.zeros((n, half, 2 * t), dtype=torch.float64)
    for j in range(2):
        x[:, :, j::2] = groups[j].transpose(1, 2)
    f = nn.functional
    x = f.conv1d(x, sd["decoder.conv_in.0.weight"], sd["decoder.conv_in.0.bias"], padding=1)
    x = f.gelu(x)
    x = f.conv1d(x, sd["decoder.conv_in.2.weight"], sd["decoder.conv_in.2.bias"], padding=1)
    k = 0
    while f"decoder.decoder_block.{k}.dwconv.weight" in sd:
        p = f"decoder.decoder_block.{k}."
        c = x.shape[1]
        y = f.conv1d(x, sd[p + "dwconv.weight"], sd[p + "dwconv.bias"], padding=6, dilation=2, groups=c)
        y = f.layer_norm(y.transpose(1, 2), (c,), sd[p + "norm.weight"], sd[p + "norm.bias"], eps=1e-6)
        y = f.gelu(y @ sd[p + "pwconv1.weight"].T + sd[p + "pwconv1.bias"])
        y = (y @ sd[p + "pwconv2.weight"].T + sd[p + "pwconv2.bias"]) * sd[p + "coef"]
        x = x + y.transpose(1, 2)
        k += 1
    x = f.conv1d(x, sd["decoder.conv_out.weight"])
    x = f.conv1d(x, sd["out_conv.weight"], padding=1)
    return (x * sd["coef"]).float()


def vocos_by_hand(state, mel):
    """Spec §5.7 restated (float64): embed conv, LN, ConvNeXt blocks with gamma, final LN, Linear -> exp-clipped
    magnitude and phase, irfft of each frame times the periodic Hann window, overlap-add with hop 256, "same" trim of
    384 samples each side, divided by the overlap-added squared window."""
    sd = {k: v.double() for k, v in state.items()}
    f = nn.functional
    x = f.conv1d(mel.double(), sd["backbone.embed.weight"], sd["backbone.embed.bias"], padding=3)
    dim = x.shape[1]
    x = f.layer_norm(x.transpose(1, 2), (dim,), sd["backbone.norm.weight"], sd["backbone.norm.bias"], eps=1e-6)
    x = x.transpose(1, 2)
    k = 0
    while f"backbone.convnext.{k}.dwconv.weight" in sd:
        p = f"backbone.convnext.{k}."
        y = f.conv1d(x, sd[p + "dwconv.weight"], sd[p + "dwconv.bias"], padding=3, groups=dim)
        y = f.layer_norm(y.transpose(1, 2), (dim,), sd[p + "norm.weight"], sd[p + "norm.bias"], eps=1e-6)
        y = f.gelu(y @ sd[p + "pwconv1.weight"].T + sd[p + "pwconv1.bias"])
        y = (y @ sd[p + "pwconv2.weight"].T + sd[p + "pwconv2.bias"]) * sd[p + "gamma"]
        x = x + y.transpose(1, 2)
        k += 1
    x = f.layer_norm(x.transpose(1, 2), (dim,), sd["backbone.final_layer_norm.weight"],
                     sd["backbone.final_layer_norm.bias"], eps=1e-6)
    y = x @ sd["head.out.weight"].T + sd["head.out.bias"]                      # [N, T, 1026]
    n_fft, hop = 1024, HOP
    mag = torch.clamp(torch.exp(y[..., :n_fft // 2 + 1]), max=100.0)
    phase = y[..., n_fft // 2 + 1:]
    spec = mag * (torch.cos(phase) + 1j * torch.sin(phase))
    window = torch.hann_window(n_fft, periodic=True, dtype=torch.float64)
    frames = torch.fft.irfft(spec, n=n_fft, dim=-1) * window                   # [N, T, 1024]
    n, t, _ = frames.shape
    length = (t - 1) * hop + n_fft
    out = torch.zeros((n, length), dtype=torch.float64)
    env = torch.zeros(length, dtype=torch.float64)
    for i in range(t):
        out[:, i * hop:i * hop + n_fft] += frames[:, i]
        env[i * hop:i * hop + n_fft] += window ** 2
    pad = (n_fft - hop) // 2
    out, env = out[:, pad:length - pad], env[pad:length - pad]
    return (out / env).float()


# ----------------------------------------------------------------------------------------------------------
# Vocos

class VocosModel:
    """The vocos package's Vocos with random weights (float32, as the real asset), drawn from its own generator;
    its buffers (mel filterbank, windows) are the package's own."""

    def __init__(self, sizes, seed):
        self.vocos = make_vocos(sizes)
        gen = torch.Generator().manual_seed(seed)
        params = dict(self.vocos.named_parameters())
        for name in sorted(params):
            with torch.no_grad():
                params[name].copy_(_draw("vocos." + name, params[name].shape, gen))

    @torch.no_grad()
    def decode(self, mel):
        return self.vocos.decode(mel.float())

    def save(self, path):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(self.vocos.state_dict(), str(path))


# ----------------------------------------------------------------------------------------------------------
# ChatTTS tokenizer (BertTokenizerFast, spec §5.1)

CHATTTS_BASE = 21128  # bert-base-chinese's vocabulary size; ChatTTS's 50 added tokens follow
# [PAD] [unused1..99] [UNK] [CLS] [SEP] [MASK]: bert-base-chinese's first 104 entries
BERT_HEAD = ["[PAD]"] + [f"[unused{i}]" for i in range(1, 100)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# Added tokens 21128..21177 (special, not normalized). The config fixes [Ptts] 21132, [Etts] 21133 and [spk_emb]
# 21143; [Stts] 21131 and the other names are this fixture's choice; the rest are [unusedN] fillers.
CHATTTS_ADDED = {21128: "[Sbreak]", 21129: "[Pbreak]", 21130: "[Ebreak]", 21131: "[Stts]", 21132: "[Ptts]",
                 21133: "[Etts]", 21134: "[uv_break]", 21135: "[v_break]", 21136: "[lbreak]", 21137: "[laugh]",
                 21143: "[spk_emb]", 21144: "[empty_spk]", 21145: "[music]", 21146: "[pure]"}
TOKENIZER_SEED = 21178
LEARNED_PIECES = 13000  # the merges stop earlier (every remaining pair is seen once)


def gb2312_hanzi():
    """The 6,763 hanzi of GB2312 (level 1: the 3,755 most frequent, then level 2), in code order, from Python's own
    codec: real common characters for the vocabulary, as bert-base-chinese holds them."""
    out = []
    for hi in range(0xB0, 0xF8):
        for lo in range(0xA1, 0xFF):
            try:
                ch = bytes([hi, lo]).decode("gb2312")
            except UnicodeDecodeError:
                continue
            if len(ch) == 1 and 0x4E00 <= ord(ch) <= 0x9FFF:
                out.append(ch)
    return out


def chattts_tokenizer_bytes():
    """tokenizer.json of the fixture ChatTTS tokenizer: BertNormalizer(lowercase, handle_chinese_chars,
    strip_accents null, clean_text), BertPreTokenizer, WordPiece ([UNK], "##", 100 chars), WordPiece decoder,
    vocabulary = BERT's first 104 entries, pieces learned by wordpiece.py's learner on its training corpus, the
    GB2312 hanzi it did not learn, [unusedN] fillers up to 21128, then the 50 added tokens."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    import wordpiece as wp
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None,
                                                lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    lines = wp.training_lines(random.Random(TOKENIZER_SEED))
    learned = wp.learn_vocab(tok, lines, vocab_size=LEARNED_PIECES, limit_alphabet=1000, specials=BERT_HEAD)
    pieces = sorted(learned, key=learned.get)
    seen = set(pieces)
    for ch in gb2312_hanzi():
        if ch not in seen:
            pieces.append(ch)
            seen.add(ch)
    assert len(pieces) <= CHATTTS_BASE, len(pieces)
    n_learned = len(learned)
    k = 100
    while len(pieces) < CHATTTS_BASE:
        pieces.append(f"[unused{k}]")
        k += 1
    vocab = {p: i for i, p in enumerate(pieces)}
    assert len(vocab) == CHATTTS_BASE
    tok.model = models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100, continuing_subword_prefix="##")
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in BERT_SPECIALS])
    tok.post_processor = processors.BertProcessing(("[SEP]", vocab["[SEP]"]), ("[CLS]", vocab["[CLS]"]))
    for i in range(CHATTTS_BASE, NUM_TEXT_TOKENS):
        name = CHATTTS_ADDED.get(i, f"[unused{k}]")
        if i not in CHATTTS_ADDED:
            k += 1
        tok.add_special_tokens([AddedToken(name, special=True, normalized=False)])
        assert tok.token_to_id(name) == i, (name, i, tok.token_to_id(name))
    data = (json.dumps(json.loads(tok.to_str()), ensure_ascii=False, indent=1) + "\n").encode("utf-8")
    return data, n_learned


def load_chattts_tokenizer(data):
    from tokenizers import Tokenizer
    return Tokenizer.from_str(data.decode("utf-8"))


def chattts_specials(tok):
    return {name: tok.token_to_id(name) for name in ("[Stts]", "[spk_emb]", "[Etts]", "[PAD]", "[Ptts]", "[UNK]")}


def write_chattts_tokenizer(directory, data=None):
    """assets/chattts_tokenizer/tokenizer.json.gz (gzip, mtime 0). Returns the tokenizer."""
    import wordpiece as wp
    if data is None:
        data, _ = chattts_tokenizer_bytes()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "tokenizer.json.gz").write_bytes(wp.gzip_bytes(data))
    tok = load_chattts_tokenizer(data)
    ids = chattts_specials(tok)
    assert (ids["[spk_emb]"], ids["[Ptts]"], ids["[Etts]"], ids["[PAD]"], ids["[UNK]"]) == \
        (SPK_EMB_TOKEN_ID, AUDIO_BOS_TOKEN_ID, TEXT_EOS_TOKEN_ID, 0, 100)
    assert tok.get_vocab_size(with_added_tokens=True) == NUM_TEXT_TOKENS
    share, _ = unknown_share(tok, PROBE_TEXTS + [E2E_PROMPT, "The quick brown fox jumps over the lazy dog.",
                                                 "人工智能正在改变我们的生活方式。"])
    assert share == 0, f"{share:.0%} [UNK]"
    return tok


def unknown_share(tok, texts):
    unk = tok.token_to_id("[UNK]")
    ids = [i for t in texts for i in tok.encode(t, add_special_tokens=False).ids]
    return sum(i == unk for i in ids) / max(len(ids), 1), len(ids)


# ----------------------------------------------------------------------------------------------------------
# Reference fixtures

PROBE_TEXTS = ["Hello, world! How are you today?", "今天天气很好，我们一起去公园散步吧。"]
PROBE_TEXT_LEN = 8        # t: [Stts] [spk_emb] t texts [Etts] fill 11 of the first prefill's 12 slots
DVAE_PROBE_FRAMES = 12
VOCOS_PROBE_FRAMES = 20


def probe_text_ids(ctok):
    rows = []
    for text in PROBE_TEXTS:
        ids = ctok.encode(text, add_special_tokens=False).ids
        assert len(ids) >= PROBE_TEXT_LEN and ctok.token_to_id("[UNK]") not in ids[:PROBE_TEXT_LEN], (text, ids)
        rows.append(ids[:PROBE_TEXT_LEN])
    return torch.tensor(rows, dtype=torch.int64)


@torch.no_grad()
def tts_probe(tts, specials, spk_hidden, text_ids):
    """The `tts` probe: spk_emb_projected [N, 1, D]; hidden [N, t + 3, D] (final-norm hidden states of [Stts],
    [spk_emb], the t texts and [Etts] after the first text prefill, slots [0, 12)); code_logits [N, 4, 626] (raw head
    logits of the first, BOS, generation step at position 302)."""
    t = text_ids.shape[1]
    assert t + 3 <= 2 + TEXT_CHUNK, "the first prefill must hold [Etts]"
    projected, hidden, logits = [], [], []
    for i in range(spk_hidden.shape[0]):
        spk = tts.project_speaker(spk_hidden[i])
        ctx = tts.new_context(text_ids[i].tolist(), specials, spk)
        h = ctx.prefill_text(0, 2 + TEXT_CHUNK)
        logits.append(ctx.step())
        projected.append(spk.view(1, -1))
        hidden.append(h[:t + 3])
        full = full_sequence_logits(tts, ctx)
        assert torch.allclose(full[0], logits[-1], atol=1e-4), "cache and full-sequence logits differ"
    return torch.stack(projected), torch.stack(hidden), torch.stack(logits)


def smooth_mel(frames, gen):
    """A smooth random log-mel [2, 100, frames] around −2 (what a vocoder sees: low-passed in time and frequency)."""
    x = torch.randn((2, NUM_MELS, frames), generator=gen)
    kernel = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0
    for _ in range(2):
        x = nn.functional.conv1d(x.reshape(-1, 1, frames), kernel.view(1, 1, 5), padding=2).reshape(2, NUM_MELS, frames)
        x = nn.functional.conv1d(x.transpose(1, 2).reshape(-1, 1, NUM_MELS), kernel.view(1, 1, 5),
                                 padding=2).reshape(2, frames, NUM_MELS).transpose(1, 2)
    return (2.0 * x - 2.0).contiguous()


def write_speech_reference(path, probe_dir, tts, vocos, ctok, llm_dim, seed=611):
    """reference/speech-<model>.safetensors and probe/{tts,dvae,vocos}-input.safetensors."""
    gen = torch.Generator().manual_seed(seed)
    specials = chattts_specials(ctok)
    spk_hidden = torch.randn((2, llm_dim), generator=gen)
    text_ids = probe_text_ids(ctok)
    projected, hidden, logits = tts_probe(tts, specials, spk_hidden, text_ids)
    codes = torch.randint(0, EOS_CODE, (2, NUM_VQ, DVAE_PROBE_FRAMES), generator=gen, dtype=torch.int64)
    mel = tts.dvae_decode(codes)
    assert torch.allclose(mel, dvae_by_hand(tts, codes), atol=1e-4, rtol=1e-4), "DVAE differs from spec §5.6"
    vmel = smooth_mel(VOCOS_PROBE_FRAMES, gen)
    wave = vocos.decode(vmel)
    assert wave.shape == (2, VOCOS_PROBE_FRAMES * HOP)
    by_hand = vocos_by_hand(vocos.vocos.state_dict(), vmel)
    assert torch.allclose(wave, by_hand, atol=1e-4, rtol=1e-3), float((wave - by_hand).abs().max())
    t = {"tts.spk_hidden": spk_hidden, "tts.text_ids": text_ids, "tts.spk_emb_projected": projected,
         "tts.hidden": hidden, "tts.code_logits": logits, "dvae.codes": codes, "dvae.mel": mel,
         "vocos.mel": vmel, "vocos.wave": wave}
    t = {k: v.contiguous() for k, v in t.items()}
    save_file(t, str(path), metadata={"format": "pt"})
    probe_dir = Path(probe_dir)
    probe_dir.mkdir(parents=True, exist_ok=True)
    save_file({"spk_hidden": t["tts.spk_hidden"], "text_ids": t["tts.text_ids"]},
              str(probe_dir / "tts-input.safetensors"), metadata={"format": "pt"})
    save_file({"codes": t["dvae.codes"]}, str(probe_dir / "dvae-input.safetensors"), metadata={"format": "pt"})
    save_file({"mel": t["vocos.mel"]}, str(probe_dir / "vocos-input.safetensors"), metadata={"format": "pt"})
    return t


E2E_PROMPT = "Say hello to everyone."
E2E_MAX_NEW = 16
STOP_TEXT = ("<|tts_eos|>", "<|im_end|>", "<|endoftext|>")


@torch.no_grad()
def e2e_speech(llm, tts, vocos, tokenizer, ctok):
    """chat(..., generate_audio=True) greedy: ChatML user message, the TTS generation prompt, greedy LLM tokens,
    speaker = final-norm hidden state at <|spk|>, spoken text = the generated tokens before <|tts_eos|> /
    <|im_end|> / <|endoftext|> decoded with special tokens kept, ChatTTS ids (no specials, ≤ 300), the
    non-streaming schedule with greedy codes, DVAE, Vocos."""
    prompt = f"<|im_start|>user\n{E2E_PROMPT}<|im_end|>\n{aud.TTS_GENERATION_PROMPT}"
    ids = tokenizer.encode(prompt, add_special_tokens=False).ids
    out = llm.generate(torch.tensor([ids]), attention_mask=torch.ones((1, len(ids)), dtype=torch.long),
                       do_sample=False, max_new_tokens=E2E_MAX_NEW, repetition_penalty=1.0,
                       eos_token_id=[151645, 151643], pad_token_id=151643)
    gen = out[0, len(ids):].tolist()
    spk_id = tokenizer.token_to_id("<|spk|>")
    spk_pos = max(i for i, x in enumerate(ids) if x == spk_id)
    hidden = llm.model(input_ids=torch.tensor([ids])).last_hidden_state[0, spk_pos]
    stops = {tokenizer.token_to_id(s) for s in STOP_TEXT}
    spoken = gen
    for i, x in enumerate(gen):
        if x in stops:
            spoken = gen[:i]
            break
    text = tokenizer.decode(spoken, skip_special_tokens=False)
    tts_ids = ctok.encode(text, add_special_tokens=False).ids[:RESERVED]
    spk = tts.project_speaker(hidden)
    ctx = tts.new_context(tts_ids, chattts_specials(ctok), spk)
    frames = ctx.synthesize()
    codes = torch.tensor(frames, dtype=torch.int64)                       # [T, 4]
    mel = tts.dvae_decode(codes.T.unsqueeze(0))[0]                        # [100, 2T]
    wave = vocos.decode(mel.unsqueeze(0))[0]                              # [2T · 256]
    return dict(prompt=prompt, ids=ids, gen=gen, spk_pos=spk_pos, hidden=hidden, spk=spk, text=text,
                tts_ids=tts_ids, ctx=ctx, codes=codes, mel=mel, wave=wave)


def greedy_margins(ctx):
    """The smallest gap between the chosen class and the runner-up in any codebook (raw logits, after the EOS
    suppression), and its step."""
    worst = (float("inf"), -1)
    for s, logits in enumerate(ctx.step_logits):
        x = logits.clone()
        if s % OUTPUT_CHUNK < MIN_NEW:  # the step's index in its generate() call (all calls but the last are full)
            x[:, EOS_CODE] = -torch.inf
        top = x.topk(2, dim=-1).values
        worst = min(worst, (float((top[:, 0] - top[:, 1]).min()), s))
    return worst


def write_e2e_reference(json_path, st_path, llm, tts, vocos, tokenizer, ctok):
    r = e2e_speech(llm, tts, vocos, tokenizer, ctok)
    ctx, frames = r["ctx"], len(r["codes"])
    assert ctx.finished, "the greedy speech did not end"
    assert 20 <= frames <= 80, f"{frames} frames"
    full = full_sequence_logits(tts, ctx)
    steps = torch.stack(ctx.step_logits)
    assert torch.allclose(full, steps, atol=1e-4), float((full - steps).abs().max())
    gap, at = greedy_margins(ctx)
    assert gap > 5e-3, f"greedy code choice too close at step {at}: {gap}"
    case = {"prompt": r["prompt"], "prompt_ids": r["ids"], "generated_ids": r["gen"], "spk_position": r["spk_pos"],
            "spoken_text": r["text"], "tts_text_ids": r["tts_ids"], "tts_text_tokens": len(r["tts_ids"]),
            "frames": frames, "codes": r["codes"].tolist(), "min_greedy_margin": round(gap, 4),
            "mel_frames": 2 * frames, "samples": 2 * frames * HOP, "sample_rate": SAMPLE_RATE}
    json_path.write_text(json.dumps(case, indent=1, ensure_ascii=False) + "\n")
    save_file({"spk_hidden": r["hidden"].float().contiguous(), "spk_emb_projected": r["spk"].float().contiguous(),
               "mel": r["mel"].contiguous(), "wave": r["wave"].contiguous()}, str(st_path), metadata={"format": "pt"})
    return case


# ----------------------------------------------------------------------------------------------------------
# Checkpoints

def load_tts(directory):
    """Float32 ConditionalChatTTS + DVAE from a checkpoint folder (`tts.*`, any of bf16/f16/f32), sizes from
    config.json's tts_config and the DVAE tensor shapes; and Vocos from assets/Vocos.pt."""
    directory = Path(directory)
    config = json.loads((directory / "config.json").read_text())
    c = config["tts_config"]
    ws = {"tts." + k: v for k, v in ck.load_prefixed(directory, "tts.")[0].items()}
    sizes = {k: c[k] for k in TTS_TINY}
    dvae_sizes = dict(gfsq_dim=2 * ws["tts.dvae.vq_layer.quantizer.rvqs.0.project_out.weight"].shape[0],
                      bottleneck=ws["tts.dvae.decoder.conv_in.0.weight"].shape[0],
                      hidden=ws["tts.dvae.decoder.conv_in.2.weight"].shape[0],
                      layers=len({k.split(".")[4] for k in ws if k.startswith("tts.dvae.decoder.decoder_block.")}),
                      out_dim=ws["tts.dvae.decoder.conv_out.weight"].shape[0])
    dead = ws["tts.model.embed_tokens.weight"].shape[0] if "tts.model.embed_tokens.weight" in ws else 32
    tts = TTS.__new__(TTS)
    tts.sizes, tts.dvae_sizes = sizes, dvae_sizes
    with torch.random.fork_rng(devices=[]):
        tts.tts = TTSModules(sizes, c["llm_dim"], dead).float().eval()
    tts.dvae = make_dvae(dvae_sizes)
    own = {"tts." + k: v for k, v in tts.tts.state_dict().items()}
    tts.tts.load_state_dict({k[4:]: ws[k] for k in own if k in ws}, strict="tts.model.embed_tokens.weight" in ws)
    dsd = tts.dvae.state_dict()
    loaded = {}
    for k in dsd:
        stored = "tts.dvae." + dvae_stored_name(k)
        loaded[k] = ws[stored] if stored in ws else dsd[k]
    tts.dvae.load_state_dict(loaded)
    tts.config = c
    tts.bf16 = dict(ws)
    vocos_state = torch.load(str(directory / "assets" / "Vocos.pt"), weights_only=True, map_location="cpu")
    vsizes = dict(dim=vocos_state["backbone.embed.weight"].shape[0],
                  intermediate_dim=vocos_state["backbone.convnext.0.pwconv1.weight"].shape[0],
                  num_layers=len({k.split(".")[2] for k in vocos_state if k.startswith("backbone.convnext.")}))
    vocos = VocosModel.__new__(VocosModel)
    vocos.vocos = make_vocos(vsizes)
    vocos.vocos.load_state_dict(vocos_state)
    return tts, vocos
