#!/usr/bin/env python3
"""Fixtures for the Swift torch.save reader (Weights/TorchCheckpointFile.swift).

Writes Tests/Fixtures/torch/:
- valid/*.pt: torch.save outputs (plus one rewritten as ZIP64 with a different folder name), each with a
  valid/*.safetensors twin holding the same tensors, contiguous, under their flattened ("."-joined) names.
  The twins are checked against torch.load(weights_only=True) of the .pt file.
- hostile/*.pt: archives in torch's layout whose data.pkl is hand-assembled from raw opcodes (or produced by
  pickle.dumps of an object with __reduce__, which only serializes it), plus damaged archives.
  hostile/expected.json maps each file to a substring the Swift error must contain.
  No hostile pickle is ever loaded here.

Deterministic: fixed seeds, torch.save's own output (its serialization id is a content hash), and a
fixed-timestamp zip writer. Usage: python tools/reference/torch_pickle.py
"""

import collections
import io
import json
import os
import pickle
import shutil
import struct
import subprocess
import warnings
import zipfile
import zlib
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "Tests/Fixtures/torch"


# ---------------------------------------------------------------------------------------------- zip


def write_zip(entries, zip64=False, align=64, deflate=()):
    """A STORED zip of (name, bytes) with torch's 64-byte data alignment ("FB" padding extra field);
    zip64=True writes ZIP64 extra fields for every size/offset and a ZIP64 end record."""
    out = bytearray()
    central = bytearray()
    for name, data in entries:
        nb = name.encode()
        offset = len(out)
        method, payload = 0, data
        if name in deflate:
            c = zlib.compressobj(9, zlib.DEFLATED, -15)
            method, payload = 8, c.compress(data) + c.flush()
        crc = zlib.crc32(data)
        extra = struct.pack("<HHQQ", 1, 16, len(data), len(payload)) if zip64 else b""
        if align:
            start = offset + 30 + len(nb) + len(extra) + 4
            pad = (-start) % align
            extra += struct.pack("<HH", 0x4246, pad) + b"Z" * pad
        big = 0xFFFFFFFF
        version = 45 if zip64 else 20
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, version, 0x0800, method, 0, 0x21, crc,
                           big if zip64 else len(payload), big if zip64 else len(data), len(nb), len(extra))
        out += nb + extra + payload
        cextra = struct.pack("<HHQQQ", 1, 24, len(data), len(payload), offset) if zip64 else b""
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, version, version, 0x0800, method, 0, 0x21, crc,
                               big if zip64 else len(payload), big if zip64 else len(data), len(nb), len(cextra),
                               0, 0, 0, 0, big if zip64 else offset)
        central += nb + cextra
    cd_offset, n = len(out), len(entries)
    out += central
    if zip64:
        z64 = len(out)
        out += struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, n, n, len(central), cd_offset)
        out += struct.pack("<IIQI", 0x07064B50, 0, z64, 1)
        out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    else:
        out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, n, n, len(central), cd_offset, 0)
    return bytes(out)


def torch_layout(pkl, storages=(), folder="archive", byteorder=b"little", **kw):
    """An archive laid out as torch.save does: data.pkl, byteorder, data/<key>, version."""
    entries = [(f"{folder}/data.pkl", pkl), (f"{folder}/byteorder", byteorder)]
    entries += [(f"{folder}/data/{k}", v) for k, v in storages]
    entries += [(f"{folder}/version", b"3\n")]
    return write_zip(entries, **kw)


# ------------------------------------------------------------------------------------------ pickles


class P:
    """Raw pickle opcodes (protocol 2 unless a method says otherwise)."""

    def __init__(self):
        self.b = bytearray(b"\x80\x02")

    def raw(self, x):
        self.b += x
        return self

    def glob(self, module, name):
        return self.raw(b"c" + module.encode() + b"\n" + name.encode() + b"\n")

    def s(self, text):
        t = text.encode()
        return self.raw(b"X" + struct.pack("<I", len(t)) + t)

    def i(self, n):
        if 0 <= n < 256:
            return self.raw(b"K" + bytes([n]))
        body = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
        return self.raw(b"\x8a" + bytes([len(body)]) + body)

    def ints(self, xs):
        self.raw(b"(")
        for x in xs:
            self.i(x)
        return self.raw(b"t")

    def storage(self, cls, key, numel):
        return self.raw(b"(").s("storage").glob("torch", cls).s(key).s("cpu").i(numel).raw(b"tQ")

    def tensor(self, cls, key, numel, offset, size, stride):
        """_rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict()) as torch.save writes it."""
        self.glob("torch._utils", "_rebuild_tensor_v2").raw(b"(")
        self.storage(cls, key, numel).i(offset).ints(size).ints(stride).raw(b"\x89")
        return self.glob("collections", "OrderedDict").raw(b")R").raw(b"tR")

    def state_dict(self, items):
        """OrderedDict of (name, emit) where emit(p) pushes the value."""
        self.glob("collections", "OrderedDict").raw(b")R(")
        for name, emit in items:
            self.s(name)
            emit(self)
        return self.raw(b"u")

    def stop(self):
        return bytes(self.b + b".")


def f32(n, start=0.0):
    return struct.pack(f"<{n}f", *[start + k for k in range(n)])


def one_tensor(offset=0, size=(4,), stride=(1,), numel=4, key="0"):
    return P().state_dict([("w", lambda p: p.tensor("FloatStorage", key, numel, offset, size, stride))]).stop()


class Reduce:
    """An object whose pickle calls `func(*args)` on load; pickle.dumps only writes that down."""

    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def hostile():
    """(file name, archive bytes, substring the Swift error must contain)."""
    good = [("0", f32(4))]
    out = []

    def add(name, data, expect):
        out.append((name, data, expect))

    def evil(pkl, expect, name):
        add(name, torch_layout(pkl, good), expect)

    # Globals that would run code: each is refused when resolved, before any REDUCE.
    evil(P().state_dict([("w", lambda p: p.glob("os", "system").s("echo pwned").raw(b"\x85R"))]).stop(),
         "'os.system'", "reduce-os-system.pt")
    evil(pickle.dumps({"w": Reduce(os.system, ("echo pwned",))}, protocol=2), f"'{os.system.__module__}.system'",
         "reduce-posix-system.pt")
    evil(P().glob("builtins", "eval").s("__import__('os').system('echo pwned')").raw(b"\x85R").stop(),
         "'builtins.eval'", "builtins-eval.pt")
    evil(pickle.dumps({"w": Reduce(subprocess.Popen, (["echo", "pwned"],))}, protocol=4),
         "'subprocess.Popen'", "subprocess-popen.pt")
    evil(P().glob("mymodule", "MyClass").raw(b")\x81").stop(), "'mymodule.MyClass'", "unknown-global.pt")
    evil(P().glob("torch.nn.modules.linear", "Linear").raw(b")\x81").stop(),
         "'torch.nn.modules.linear.Linear'", "whole-module.pt")
    evil(P().raw(b"(X\x0a\x00\x00\x00echo pwnedios\nsystem\n").stop(), "opcode INST", "inst-opcode.pt")
    evil(P().raw(b"(\x82\x01").stop(), "opcode EXT1", "ext-opcode.pt")
    evil(P().s("os.system").s("echo pwned").raw(b"\x85R").stop(), "REDUCE on a str", "reduce-on-string.pt")
    evil(P().glob("torch", "FloatStorage").i(4).raw(b"\x85R").stop(), "cannot be called", "storage-call.pt")

    # Damaged archives and structures.
    valid = (OUT / "valid/basic.pt").read_bytes()
    add("truncated.pt", valid[: len(valid) // 2], "truncated")
    add("empty.pt", b"", "too short")
    add("garbage-pkl.pt", torch_layout(b"\x80\x02\xff this is not a pickle", good), "unknown opcode 0xff")
    add("unterminated-pkl.pt", torch_layout(P().state_dict([]).b, good), "truncated pickle")
    add("missing-storage-key.pt", torch_layout(one_tensor(key="7"), good), "storage key '7'")
    add("offset-past-storage.pt", torch_layout(one_tensor(offset=3), good), "reaches element 6")
    add("stride-past-storage.pt", torch_layout(one_tensor(size=(2, 2), stride=(3, 1)), good), "reaches element 4")
    add("huge-size.pt", torch_layout(one_tensor(size=(1 << 40, 1 << 40), stride=(0, 0)), good), "too large")
    add("huge-numel.pt", torch_layout(one_tensor(numel=1 << 60), good), "declares 1152921504606846976")
    add("long-too-wide.pt", torch_layout(one_tensor(numel=1 << 70), good), "does not fit 64 bits")
    add("recursion-list.pt", torch_layout(P().raw(b"]" * 1000 + b"a" * 999).stop(), good), "nested deeper than 64")
    add("recursion-tuple.pt", torch_layout(P().raw(b")" + b"\x85" * 1000).stop(), good), "nested deeper than 64")
    add("recursion-mark.pt", torch_layout(P().raw(b"(" * 1000 + b"l" * 1000).stop(), good), "nested deeper than 64")
    # Nesting built by mutating lists after they were embedded: refused, so depth bookkeeping stays exact.
    add("mutate-after-embed.pt", torch_layout(P().raw(b"]q\x00]q\x01h\x00h\x01ah\x01]a").stop(), good),
        "modified after it was embedded")
    add("cyclic.pt", torch_layout(P().raw(b"]q\x00h\x00a").stop(), good), "appended to itself")
    add("memo-miss.pt", torch_layout(P().raw(b"h\x05").stop(), good), "memo has no entry 5")
    add("stack-underflow.pt", torch_layout(P().raw(b"a").stop(), good), "stack underflow")
    add("not-a-dict.pt", torch_layout(P().raw(b"]").stop(), good), "not a dict of tensors")
    add("bad-persistent-id.pt", torch_layout(P().raw(b"(X\x03\x00\x00\x00abct").raw(b"Q").stop(), good),
        "persistent id")
    add("big-endian.pt", torch_layout(one_tensor(), good, byteorder=b"big"), "byte order 'big'")
    add("compressed.pt", torch_layout(one_tensor(), good, deflate=("archive/data.pkl",)), "compressed")
    add("no-data-pkl.pt", write_zip([("archive/version", b"3\n")]), "no <name>/data.pkl")
    bad_crc = bytearray(torch_layout(one_tensor(), good, align=0))
    bad_crc[bad_crc.index(b"FloatStorage")] ^= 0x20  # flips 'F' to 'f' inside data.pkl
    add("bad-crc.pt", bytes(bad_crc), "CRC-32 mismatch")
    # The start of a pre-1.6 file: magic number, protocol version, system info (plain data pickles).
    legacy = b"".join(pickle.dumps(x, protocol=2) for x in (
        0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True,
                                       "type_sizes": {"short": 2, "int": 4, "long": 4}}))
    add("legacy-format.pt", legacy, "legacy")
    return out


# ---------------------------------------------------------------------------------------- valid ones


def flatten(obj, prefix=""):
    out = {}
    for k, v in obj.items():
        name = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict):
            out.update(flatten(v, name))
        elif isinstance(v, torch.Tensor):
            out[name] = v.detach().contiguous().clone()
    return out


def basic():
    g = torch.Generator().manual_seed(0)
    sd = collections.OrderedDict()
    sd["f32"] = torch.randn(3, 4, generator=g)
    sd["f16"] = torch.randn(5, generator=g).half()
    sd["bf16"] = torch.randn(2, 3, generator=g).bfloat16()
    sd["f64"] = torch.randn(2, generator=g).double()
    sd["i64"] = torch.tensor([-1, 0, 1 << 40, -(1 << 62)])
    sd["i32"] = torch.tensor([-7, 7, 1 << 30], dtype=torch.int32)
    sd["i16"] = torch.tensor([-300, 300], dtype=torch.int16)
    sd["i8"] = torch.tensor([-128, 127], dtype=torch.int8)
    sd["u8"] = torch.tensor([0, 255, 7], dtype=torch.uint8)
    sd["bool"] = torch.tensor([True, False, True])
    sd["transposed"] = torch.randn(3, 5, generator=g).t()
    sd["strided"] = torch.randn(4, 6, generator=g)[:, 1::2]
    sd["expanded"] = torch.randn(3, generator=g).expand(2, 3)
    shared = torch.arange(20, dtype=torch.float32)
    sd["shared_a"] = shared[2:8]
    sd["shared_b"] = shared[10:20].view(2, 5)
    sd["shared_t"] = shared[:12].view(3, 4).t()
    sd["scalar"] = torch.tensor(3.5)
    sd["empty"] = torch.zeros(0, 4)
    sd["param"] = torch.nn.Parameter(torch.randn(2, 2, generator=g))
    return sd


def nested():
    g = torch.Generator().manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.LayerNorm(2))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return {
        "model": model.state_dict(),  # an OrderedDict with _metadata (restored by BUILD)
        "step": 3, "lr": 0.5, "name": "tiny", "done": True, "none": None,
        "history": [1, 2, 3],
        "optimizer": {"state": {0: {"exp_avg": torch.randn(2, 3, generator=g)}}, "param_groups": [{"lr": 0.5}]},
    }


class ConvNeXtBlock(torch.nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.dwconv = torch.nn.Conv1d(dim, dim, 7, padding=3, groups=dim)
        self.norm = torch.nn.LayerNorm(dim)
        self.pwconv1 = torch.nn.Linear(dim, hidden)
        self.pwconv2 = torch.nn.Linear(hidden, dim)
        self.gamma = torch.nn.Parameter(torch.full((dim,), 1e-6))


class Vocos(torch.nn.Module):
    """Vocos's parameter layout (as in ChatTTS's Vocos.pt) at toy sizes; the forward pass is not needed."""

    def __init__(self, mels=8, dim=16, hidden=32, layers=2, n_fft=16):
        super().__init__()
        self.feature_extractor = torch.nn.Module()
        self.feature_extractor.mel_spec = torch.nn.Module()
        self.feature_extractor.mel_spec.spectrogram = torch.nn.Module()
        self.feature_extractor.mel_spec.spectrogram.register_buffer("window", torch.hann_window(n_fft))
        self.feature_extractor.mel_spec.mel_scale = torch.nn.Module()
        self.feature_extractor.mel_spec.mel_scale.register_buffer("fb", torch.rand(n_fft // 2 + 1, mels))
        self.backbone = torch.nn.Module()
        self.backbone.embed = torch.nn.Conv1d(mels, dim, 7, padding=3)
        self.backbone.norm = torch.nn.LayerNorm(dim)
        self.backbone.convnext = torch.nn.ModuleList([ConvNeXtBlock(dim, hidden) for _ in range(layers)])
        self.backbone.final_layer_norm = torch.nn.LayerNorm(dim)
        self.head = torch.nn.Module()
        self.head.out = torch.nn.Linear(dim, n_fft + 2)
        self.head.istft = torch.nn.Module()
        self.head.istft.register_buffer("window", torch.hann_window(n_fft))


def vocos():
    torch.manual_seed(2)
    m = Vocos()
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape))
    return m.state_dict()


def handmade():
    """Opcodes and globals torch.save does not write by default (protocol 4 framing, STACK_GLOBAL, MEMOIZE,
    NEWOBJ, _rebuild_tensor, torch.device, LONG1, BINFLOAT), storages at unaligned offsets."""
    p = P()
    p.b = bytearray(b"\x80\x04\x95" + struct.pack("<Q", 0))  # PROTO 4, an empty FRAME hint
    p.raw(b"}\x94(")  # EMPTY_DICT, MEMOIZE, MARK
    p.s("v1").glob("torch._utils", "_rebuild_tensor").raw(b"(").storage("FloatStorage", "0", 6).i(1)
    p.ints((2, 2)).ints((2, 1)).raw(b"tR")
    p.s("param").raw(b"\x8c\x0ctorch._utils\x94\x8c\x12_rebuild_parameter\x94\x93(")  # STACK_GLOBAL
    p.tensor("FloatStorage", "0", 6, 0, (3,), (2,)).raw(b"\x88").glob("collections", "OrderedDict").raw(b")RtR")
    p.s("dev").glob("torch", "device").raw(b"(").s("cuda").i(0).raw(b"tR")
    p.s("neg").raw(b"\x8a\x01\xfb")  # LONG1 -5
    p.s("pi").raw(b"G" + struct.pack(">d", 3.25))
    p.s("od").glob("collections", "OrderedDict").raw(b")\x81(").s("x")
    p.tensor("LongStorage", "1", 2, 0, (2,), (1,)).raw(b"u")
    data = torch_layout(p.raw(b"u").stop(), [("0", f32(6)), ("1", struct.pack("<2q", 7, -9))], align=0)
    (OUT / "valid/handmade.pt").write_bytes(data)
    save_file({"v1": torch.tensor([[1.0, 2], [3, 4]]), "param": torch.tensor([0.0, 2, 4]),
               "od.x": torch.tensor([7, -9])}, str(OUT / "valid/handmade.safetensors"))


def save_valid(name, obj, weights_only=True, **kw):
    buf = io.BytesIO()
    torch.save(obj, buf, **kw)
    data = buf.getvalue()
    (OUT / f"valid/{name}.pt").write_bytes(data)
    tensors = flatten(obj)
    save_file(tensors, str(OUT / f"valid/{name}.safetensors"))
    check(name, tensors, weights_only)
    return data


def check(name, tensors, weights_only=True):
    """The .pt file loads in torch to exactly the twin's tensors. torch's weights-only unpickler lacks
    protocol 4+ framing; the files it cannot read are this script's own, known-benign pickles."""
    loaded = flatten(torch.load(OUT / f"valid/{name}.pt", weights_only=weights_only))
    twin = load_file(str(OUT / f"valid/{name}.safetensors"))
    assert loaded.keys() == twin.keys() == tensors.keys(), name
    for k in twin:
        assert loaded[k].dtype == twin[k].dtype and loaded[k].shape == twin[k].shape, (name, k)
        assert torch.equal(loaded[k].view(-1).view(torch.uint8), twin[k].view(-1).view(torch.uint8)), (name, k)


def main():
    warnings.filterwarnings("ignore", message="Detected pickle protocol")
    shutil.rmtree(OUT, ignore_errors=True)
    (OUT / "valid").mkdir(parents=True)
    (OUT / "hostile").mkdir()
    data = save_valid("basic", basic())
    save_valid("nested", nested())
    save_valid("vocos", vocos())
    save_valid("basic-protocol5", basic(), weights_only=False, pickle_protocol=5)
    handmade()
    check("handmade", load_file(str(OUT / "valid/handmade.safetensors")), weights_only=False)

    # The basic archive rewritten by our writer: ZIP64 records and an older torch's folder naming.
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        entries = [(i.filename.replace("archive/", "mymodel/", 1), z.read(i)) for i in z.infolist()]
    (OUT / "valid/zip64-renamed.pt").write_bytes(write_zip(entries, zip64=True))
    shutil.copy(OUT / "valid/basic.safetensors", OUT / "valid/zip64-renamed.safetensors")
    check("zip64-renamed", flatten(basic()))

    expected = {}
    for name, blob, expect in hostile():
        (OUT / f"hostile/{name}").write_bytes(blob)
        expected[name] = expect
    (OUT / "hostile/expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"wrote {len(list(OUT.rglob('*.pt')))} .pt files, {total} bytes, to {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
