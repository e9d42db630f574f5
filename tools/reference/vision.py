"""Vision part of the reference generator: SigLIP-NaViT (`vpm`) + Resampler (spec §3.3–3.4).

The encoder's tensors come from transformers' `Idefics2VisionTransformer` (the same NaViT SigLIP; its
parameter names are those of `vpm.*`). Its forward pass is not used as is: Idefics2 takes a 2-D patch
layout and a different bucket formula, so `vpm_forward` recomputes the embeddings the way MiniCPM's
modeling_navit_siglip does (patch strip + bucketed position ids) and then runs Idefics2's encoder
layers and post_layernorm with the additive key mask. The resampler is a small module written from
§3.4 on `torch.nn.MultiheadAttention`, computing its 2-D sin-cos table in numpy float32 like the
reference.

All weights are drawn from a dedicated generator (the caller's LLM weights are untouched), stored in
bf16, and the reference outputs use a float32 twin holding exactly the bf16 values.
"""
import json
import math
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers.modeling_attn_mask_utils import _prepare_4d_attention_mask
from transformers.models.idefics2.configuration_idefics2 import Idefics2VisionConfig
from transformers.models.idefics2.modeling_idefics2 import Idefics2VisionTransformer
from safetensors.torch import save_file

import checkpoints as ck

# SigLIP-NaViT sizes. The tiny one goes into Tests/Fixtures/models/tiny-minicpmo (LLM hidden 8).
VISION_TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
# MiniCPM-o 2.6's (spec §1.1): HuggingFaceM4/siglip-so400m-14-980-flash-attn2-navit.
VISION_REAL = dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16)
VISION_COMMON = dict(patch_size=14, image_size=980, num_channels=3, layer_norm_eps=1e-6,
                     hidden_act="gelu_pytorch_tanh")
# The meaningful keys of SiglipVisionConfig.to_dict() (the generic PretrainedConfig ones are left out).
VISION_CONFIG_KEYS = ["hidden_act", "hidden_size", "image_size", "intermediate_size", "layer_norm_eps", "model_type",
                      "num_attention_heads", "num_channels", "num_hidden_layers", "patch_size"]
QUERY_NUM = 64
POS_SIDE = 70  # image_size // patch_size: the 70 x 70 learned position table and the resampler's cached grid


def vision_config_json(sizes):
    from transformers import SiglipVisionConfig
    full = SiglipVisionConfig(**sizes, **VISION_COMMON).to_dict()
    return {k: full[k] for k in VISION_CONFIG_KEYS}


# ----------------------------------------------------------------------------------------------------------
# Resampler (spec §3.4)

def get_2d_sincos_pos_embed(embed_dim, grid_size):
    """[H, W, D] float32, exactly as MiniCPM's resampler.py computes it in numpy: meshgrid(grid_w, grid_h),
    so the first D/2 values encode the column (w) and the last D/2 the row (h)."""
    grid_h_size, grid_w_size = grid_size
    grid_h = np.arange(grid_h_size, dtype=np.float32)
    grid_w = np.arange(grid_w_size, dtype=np.float32)
    grid = np.stack(np.meshgrid(grid_w, grid_h), axis=0)  # w first
    emb_first = _1d_sincos(embed_dim // 2, grid[0])
    emb_second = _1d_sincos(embed_dim // 2, grid[1])
    return np.concatenate([emb_first, emb_second], axis=-1)


def _1d_sincos(embed_dim, pos):
    omega = np.arange(embed_dim // 2, dtype=np.float32)
    omega /= embed_dim / 2.0
    omega = 1.0 / 10000 ** omega  # float32: omega_k = 10000^(-k/(D/4)) of the full D
    out = np.einsum("hw,d->hwd", pos, omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=-1)


def resampler_heads(embed_dim):
    # MiniCPM-o uses embed_dim // 128 heads (3584 -> 28 heads of 128). Tiny test models narrower than 128
    # would get 0 heads by that rule; they use a single head of embed_dim.
    return max(1, embed_dim // 128)


class Resampler(nn.Module):
    """One cross-attention of `num_queries` learned queries over the vision features (spec §3.4). State-dict
    names match MiniCPM-o's `resampler.*`; `pos_embed` is a non-persistent buffer as in the reference."""

    def __init__(self, num_queries, embed_dim, num_heads, kv_dim, max_size=(POS_SIDE, POS_SIDE)):
        super().__init__()
        self.embed_dim = embed_dim
        self.max_size = tuple(max_size)
        self.query = nn.Parameter(torch.zeros(num_queries, embed_dim))
        self.kv_proj = nn.Linear(kv_dim, embed_dim, bias=False) if kv_dim != embed_dim else nn.Identity()
        self.attn = nn.MultiheadAttention(embed_dim, num_heads)
        self.ln_q = nn.LayerNorm(embed_dim, eps=1e-6)
        self.ln_kv = nn.LayerNorm(embed_dim, eps=1e-6)
        self.ln_post = nn.LayerNorm(embed_dim, eps=1e-6)
        self.proj = nn.Parameter(torch.zeros(embed_dim, embed_dim))
        self._set_pos_cache(self.max_size)

    def _set_pos_cache(self, size):
        table = torch.from_numpy(get_2d_sincos_pos_embed(self.embed_dim, size)).float()
        self.register_buffer("pos_embed", table, persistent=False)

    def forward(self, x, tgt_sizes):
        """x [B, Lmax, kv_dim] (rows past each image's patch count are padding), tgt_sizes [B, 2] (rows, cols)."""
        bs = x.shape[0]
        patch_len = tgt_sizes[:, 0] * tgt_sizes[:, 1]
        max_h, max_w = int(tgt_sizes[:, 0].max()), int(tgt_sizes[:, 1].max())
        if max_h > self.max_size[0] or max_w > self.max_size[1]:  # the reference grows its cache likewise
            self.max_size = (max(max_h, self.max_size[0]), max(max_w, self.max_size[1]))
            self._set_pos_cache(self.max_size)
        key_padding_mask = torch.zeros((bs, x.shape[1]), dtype=torch.bool)
        pos = []
        for i in range(bs):
            h, w = int(tgt_sizes[i, 0]), int(tgt_sizes[i, 1])
            pos.append(self.pos_embed[:h, :w, :].reshape(h * w, -1).to(x.dtype))
            key_padding_mask[i, int(patch_len[i]):] = True
        pos = nn.utils.rnn.pad_sequence(pos, batch_first=True, padding_value=0.0)
        if pos.shape[1] < x.shape[1]:
            pos = nn.functional.pad(pos, (0, 0, 0, x.shape[1] - pos.shape[1]))
        pos = pos.permute(1, 0, 2)                                    # L, B, D
        kv = self.ln_kv(self.kv_proj(x)).permute(1, 0, 2)             # L, B, D
        q = self.ln_q(self.query).unsqueeze(1).repeat(1, bs, 1)       # Q, B, D
        out = self.attn(q, kv + pos, kv, key_padding_mask=key_padding_mask)[0]
        return self.ln_post(out.permute(1, 0, 2)) @ self.proj        # B, Q, D


# ----------------------------------------------------------------------------------------------------------
# SigLIP-NaViT encoder (spec §3.3)

def navit_buckets(n, num_patches_per_side=POS_SIDE):
    """Bucket index of each of n patch coordinates, as modeling_navit_siglip computes it: the patch count
    is an integer tensor (tgt_sizes), so 1 / n is a float32 tensor, and the coordinates come from arange."""
    boundaries = torch.arange(1 / num_patches_per_side, 1.0, 1 / num_patches_per_side)
    nb = torch.tensor(n, dtype=torch.int64)
    fractional = torch.arange(0, 1 - 1e-6, 1 / nb)
    return torch.bucketize(fractional, boundaries, right=True)


def navit_position_ids(tgt_sizes, patch_attention_mask, num_patches_per_side=POS_SIDE):
    """[B, Lmax] int64; padded patches keep position 0."""
    bsz, lmax = patch_attention_mask.shape[0], patch_attention_mask.shape[-1]
    position_ids = torch.full((bsz, lmax), 0, dtype=torch.int64)
    for b in range(bsz):
        bh = navit_buckets(int(tgt_sizes[b, 0]), num_patches_per_side)
        bw = navit_buckets(int(tgt_sizes[b, 1]), num_patches_per_side)
        pos_ids = (bh[:, None] * num_patches_per_side + bw).flatten()
        position_ids[b][patch_attention_mask[b].view(-1).bool()] = pos_ids
    return position_ids


def bucket_table(size=128):
    """Row n-1: the buckets of a side of n patches; -1 past n."""
    table = torch.full((size, size), -1, dtype=torch.int64)
    for n in range(1, size + 1):
        table[n - 1, :n] = navit_buckets(n)
    return table


def make_vpm(sizes):
    config = Idefics2VisionConfig(**sizes, **VISION_COMMON)
    config._attn_implementation = "eager"
    with torch.random.fork_rng(devices=[]):  # its own init draws from the global generator: keep that untouched
        return Idefics2VisionTransformer(config).float().eval()


def make_resampler(llm_hidden, kv_dim, query_num=QUERY_NUM):
    with torch.random.fork_rng(devices=[]):
        return Resampler(query_num, llm_hidden, resampler_heads(llm_hidden), kv_dim).float().eval()


@torch.no_grad()
def vpm_forward(vpm, pixel_values, tgt_sizes, patch_attention_mask=None):
    """pixel_values [B, 3, 14, Lmax*14] (patch strips), tgt_sizes [B, 2], patch_attention_mask [B, 1, Lmax]
    (1 = real patch) -> last_hidden_state [B, Lmax, C] after post_layernorm."""
    bsz = pixel_values.shape[0]
    lmax = pixel_values.shape[-1] // vpm.config.patch_size
    if patch_attention_mask is None:
        patch_attention_mask = torch.ones((bsz, 1, lmax), dtype=torch.bool)
    mask = patch_attention_mask.view(bsz, -1).bool()
    emb = vpm.embeddings.patch_embedding(pixel_values).flatten(2).transpose(1, 2)
    emb = emb + vpm.embeddings.position_embedding(navit_position_ids(tgt_sizes, mask))
    # As get_vllm_embedding / SiglipVisionTransformer: no mask when nothing is padded, else dtype-min on keys.
    attention_mask = None if bool(mask.all()) else _prepare_4d_attention_mask(mask, emb.dtype)
    hidden = vpm.encoder(inputs_embeds=emb, attention_mask=attention_mask).last_hidden_state
    return vpm.post_layernorm(hidden)


def pad_batch(pixel_values_list, tgt_sizes_list):
    """Like get_vllm_embedding: patch strips right-padded with zeros to the longest, plus the patch mask."""
    lmax = max(r * c for r, c in tgt_sizes_list)
    bsz = len(pixel_values_list)
    pixel_values = torch.zeros((bsz, 3, 14, lmax * 14), dtype=torch.float32)
    mask = torch.zeros((bsz, 1, lmax), dtype=torch.bool)
    for i, (pv, (r, c)) in enumerate(zip(pixel_values_list, tgt_sizes_list)):
        pixel_values[i, :, :, :pv.shape[-1]] = pv
        mask[i, 0, :r * c] = True
    return pixel_values, torch.tensor(tgt_sizes_list, dtype=torch.int64), mask


# ----------------------------------------------------------------------------------------------------------
# Weights

class Vision:
    """vpm + resampler with random weights: `bf16` holds the tensors to store, the modules themselves the same
    values in float32 (the twin the references are computed with)."""

    def __init__(self, sizes, llm_hidden, seed):
        self.vpm = make_vpm(sizes)
        self.resampler = make_resampler(llm_hidden, sizes["hidden_size"])
        gen = torch.Generator().manual_seed(seed)
        self.bf16 = {}
        for prefix, module in (("vpm.", self.vpm), ("resampler.", self.resampler)):
            params = dict(module.named_parameters())
            for name in sorted(params):
                p = params[name]
                value = _draw(prefix + name, p.shape, gen).to(torch.bfloat16)
                self.bf16[prefix + name] = value.contiguous()
                with torch.no_grad():
                    p.copy_(value.float())  # the float32 twin: exactly the stored bf16 values
        self.config = vision_config_json(sizes)

    @torch.no_grad()
    def __call__(self, pixel_values, tgt_sizes, patch_attention_mask=None):
        hidden = vpm_forward(self.vpm, pixel_values, tgt_sizes, patch_attention_mask)
        return hidden, self.resampler(hidden, tgt_sizes)


def _draw(name, shape, gen):
    """Scales that keep activations O(1) in both the tiny and the real geometry."""
    randn = torch.randn(tuple(shape), generator=gen)
    leaf = name.rsplit(".", 1)[-1]
    if name.endswith("position_embedding.weight"):
        return 0.5 * randn
    if name.endswith("patch_embedding.weight"):
        return randn / math.sqrt(shape[1] * shape[2] * shape[3])
    if "norm" in name or ".ln_" in name:  # LayerNorms
        return 1.0 + 0.2 * randn if leaf == "weight" else 0.1 * randn
    if leaf in ("bias", "in_proj_bias"):
        return 0.1 * randn
    if name == "resampler.query":
        return randn
    if name == "resampler.proj":
        return randn / math.sqrt(shape[0])
    if name == "resampler.attn.in_proj_weight":
        # q and k rows 4x sharper than 1/sqrt(fan_in): with unit-scale scores the 64 queries attend almost
        # uniformly over ~1000 patches, every slice resamples to nearly the same 64 vectors, and the tiny
        # model's greedy continuation hardly depends on the picture (mirrored images, swapped slices gave
        # the same first 11-25 tokens). With 4x each of those changes the tokens within the first 19.
        w = randn / math.sqrt(shape[1])
        w[:2 * shape[1]] *= 4.0
        return w
    assert len(shape) == 2, name
    return randn / math.sqrt(shape[1])  # nn.Linear-style [out, in]


# ----------------------------------------------------------------------------------------------------------
# Reference fixtures

# Fixture geometries (patch rows, cols). 25 columns hits a float32 bucket edge (floor(70*i/n) differs at
# i = 5, 10, 15, 20); the batch mixes two patch counts so the second image is padded.
# Crops rather than whole pictures keep the committed files small (a 448x448 slice is 2.4 MB of float32).
SINGLE = ("chelsea.png", (6, 25), (40, 160))       # file, tgt size, top-left crop corner (x, y)
BATCH = [("coffee.png", (5, 11), (230, 60)), ("chelsea.png", (3, 17), (120, 40))]


def crop_strip(path, tgt, corner):
    """A crop of a real image at patch multiples, normalized and laid out as a patch strip (§3.1)."""
    from PIL import Image
    import minicpmv_image as mi
    rows, cols = tgt
    x, y = corner
    img = Image.open(path).convert("RGB").crop((x, y, x + cols * 14, y + rows * 14))
    return mi.reshape_by_patch(mi.normalize(img))


def write_vision_reference(path, probe_path, vision, images_dir):
    t = {}
    pv = crop_strip(images_dir / SINGLE[0], *SINGLE[1:]).unsqueeze(0)
    tgt = torch.tensor([SINGLE[1]], dtype=torch.int64)
    hidden, out = vision(pv, tgt)
    t.update({"single.pixel_values": pv, "single.tgt_sizes": tgt, "single.last_hidden_state": hidden,
              "single.resampler_output": out})

    pv, tgt, mask = pad_batch([crop_strip(images_dir / f, s, c) for f, s, c in BATCH], [s for _, s, _ in BATCH])
    hidden, out = vision(pv, tgt, mask)
    t.update({"batch.pixel_values": pv, "batch.tgt_sizes": tgt, "batch.patch_attention_mask": mask.to(torch.int64),
              "batch.last_hidden_state": hidden, "batch.resampler_output": out})
    # the padded batch must agree with each image alone (what the key masks are for)
    for i, (_, (r, c), _) in enumerate(BATCH):
        h1, o1 = vision(pv[i:i + 1, :, :, :r * c * 14], tgt[i:i + 1])
        assert torch.allclose(h1[0], hidden[i, :r * c], atol=1e-5) and torch.allclose(o1[0], out[i], atol=1e-5)
    t["buckets"] = bucket_table()
    t = {k: v.contiguous() for k, v in t.items()}
    save_file(t, str(path), metadata={"format": "pt"})

    probe = {"pixel_values": t["batch.pixel_values"], "tgt_sizes": t["batch.tgt_sizes"],
             "patch_attention_mask": t["batch.patch_attention_mask"]}
    save_file(probe, str(probe_path), metadata={"format": "pt"})


# End-to-end: images + question -> chat() prompt -> greedy continuation from inputs_embeds.
E2E_CASES = [
    {"images": ["coffee.png"], "question": "What is in this image?"},
    {"images": ["chelsea.png", "SECOND"], "question": "Compare the two pictures."},
]
IMAGE_TAG = "(<image>./</image>)"


def chat_prompt(images, question, preprocessed):
    """MiniCPM-o chat(): content [image.., question] joined with "\\n", each image tag replaced by its
    placeholder (image index k, its grid), ChatML without a system message."""
    import minicpmv_image as mi
    content = "\n".join([IMAGE_TAG] * len(images) + [question])
    chunks = content.split(IMAGE_TAG)
    text = chunks[0]
    for k, pre in enumerate(preprocessed):
        text += mi.placeholder(k, pre["grid"]) + chunks[k + 1]
    return f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"


def image_bounds(ids, tokenizer):
    tok = tokenizer.token_to_id
    starts = {tok("<image>"), tok("<slice>")}
    ends = {tok("</image>"), tok("</slice>")}
    s = [i + 1 for i, x in enumerate(ids) if x in starts]
    e = [i for i, x in enumerate(ids) if x in ends]
    assert len(s) == len(e) and all(b - a == QUERY_NUM for a, b in zip(s, e))
    return list(zip(s, e))


@torch.no_grad()
def write_e2e_reference(path, llm, vision, tokenizer, images_dir, second_image):
    """llm: the float32 twin of the tiny MiniCPM-o LLM."""
    from PIL import Image
    import minicpmv_image as mi
    unk = tokenizer.token_to_id("<unk>")
    cases = []
    for case in E2E_CASES:
        names = [second_image if n == "SECOND" else n for n in case["images"]]
        pre = [mi.preprocess(Image.open(images_dir / n).convert("RGB"), max_slice_nums=9) for n in names]
        prompt = chat_prompt(names, case["question"], pre)
        ids = tokenizer.encode(prompt, add_special_tokens=False).ids
        bounds = image_bounds(ids, tokenizer)
        feats = []
        for p in pre:  # model order, image by image, one slice at a time
            for pv, ts in zip(p["pixel_values"], p["tgt_sizes"]):
                feats.append(vision(pv.unsqueeze(0), torch.tensor([ts], dtype=torch.int64))[1][0])
        assert len(feats) == len(bounds)
        embeds = llm.model.embed_tokens(torch.tensor([ids]))
        for (a, b), f in zip(bounds, feats):
            assert all(x == unk for x in ids[a:b])
            embeds[0, a:b] = f
        out = llm.generate(inputs_embeds=embeds, attention_mask=torch.ones((1, len(ids)), dtype=torch.long),
                           do_sample=False, max_new_tokens=32, repetition_penalty=1.0,
                           eos_token_id=[151645, 151643], pad_token_id=151643)
        gen = out[0].tolist()
        assert len(set(gen)) > 1, f"degenerate continuation {gen}"
        cases.append({"images": names, "question": case["question"], "prompt_ids": ids, "generated_ids": gen})
    path.write_text(json.dumps(cases, indent=1, ensure_ascii=False) + "\n")
    return cases


def load_vision(directory):
    """Float32 vpm + resampler from a checkpoint folder (bf16/f32 tensors, `vpm.*` / `resampler.*`)."""
    directory = Path(directory)
    config = json.loads((directory / "config.json").read_text())
    v = config["vision_config"]
    sizes = {k: v[k] for k in VISION_TINY}
    vpm = make_vpm(sizes)
    d = config["hidden_size"]
    resampler = make_resampler(d, sizes["hidden_size"], config.get("query_num", QUERY_NUM))
    vs, rs = ck.load_prefixed(directory, "vpm.", "resampler.")
    vpm.load_state_dict(vs)
    resampler.load_state_dict(rs)
    return vpm, resampler
