#!/bin/bash
# The whole model at its real size, end to end, at bf16, q8 and q4, and its quantized copies
# (docs/full-scale.md). Needs the random-weight checkpoint of tools/reference (17 GB) and ~40 GB of disk:
#   python tools/reference/generate.py --geometry minicpm-o-2_6-full --out models/minicpm-o-2_6-full
#   swift build -c release
#   tools/bench/full_scale.sh models/minicpm-o-2_6-full OUT_DIR
# "Cold" runs follow a drop of the page cache (root only; otherwise they are warm too).
set -u
M=$(realpath "$1"); OUT=$(realpath -m "$2"); mkdir -p "$OUT"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=$ROOT/.build/release/minicpmo
PY=${PYTHON:-python3}
# inputs: a 1344x1008 and a 1344x1344 photo (7 and 10 model images), 30 s of speech
$PY - "$ROOT" "$OUT" <<'PYEOF'
import sys, wave
from pathlib import Path
from PIL import Image
root, out = Path(sys.argv[1]), Path(sys.argv[2])
src = Image.open(root / "Tests/Fixtures/images/chelsea.png").convert("RGB")
for w, h in ((1344, 1008), (1344, 1344)):
    src.resize((w, h), Image.BICUBIC).save(out / f"photo-{w}x{h}.jpg", quality=90)
with wave.open(str(root / "Tests/Fixtures/audio/speech-16k-s16.wav")) as f:
    frames = f.readframes(f.getnframes())
n = 30 * 16000 * 2
with wave.open(str(out / "speech-30s.wav"), "wb") as f:
    f.setnchannels(1); f.setsampwidth(2); f.setframerate(16000)
    f.writeframes((frames * (n // len(frames) + 1))[:n])
PYEOF
drop() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || echo "(page cache not dropped: not root)"; }
g() {  # TAG NAME ARGS...: one generate run, its JSON and its stderr with /usr/bin/time -v
    local tag=$1 name=$2; shift 2; mkdir -p "$OUT/$tag"
    /usr/bin/time -v "$BIN" generate --threads 2 --temperature 0 --json "$@" > "$OUT/$tag/$name.json" 2> "$OUT/$tag/$name.err"
    echo "$tag/$name rc=$?"
}
for spec in "bf16 bf16" "q8 int8" "q4 int8"; do
    set -- $spec; q=$1; c=(--model "$M" --quant "$1" --prefill-precision "$2")
    drop
    g $q text-cold "${c[@]}" --prompt "Hello! Who are you?" --max-tokens 32
    g $q text-warm "${c[@]}" --prompt "Write a haiku about the sea." --max-tokens 32
    g $q image "${c[@]}" --image "$OUT/photo-1344x1008.jpg" --prompt "What is in this picture?" --max-tokens 16
    g $q image10 "${c[@]}" --image "$OUT/photo-1344x1344.jpg" --prompt "What is in this picture?" --max-tokens 16
    g $q audio "${c[@]}" --audio "$OUT/speech-30s.wav" --prompt "Summarize what is said." --max-tokens 16
    g $q speech "${c[@]}" --prompt "Say hello." --max-tokens 16 --speech-out "$OUT/$q/speech.wav" --speech-greedy \
        --max-speech-frames 150 --overwrite
done
for q in q8 q4; do
    rm -rf "$OUT/model-$q"
    /usr/bin/time -v "$BIN" quantize --model "$M" --quant $q --output "$OUT/model-$q" --threads 2 > "$OUT/quantize-$q.log" 2>&1
    echo "quantize $q rc=$?"
    drop
    c=(--model "$OUT/model-$q" --prefill-precision int8)
    g pre-$q text-cold "${c[@]}" --prompt "Hello! Who are you?" --max-tokens 32
    g pre-$q text-warm "${c[@]}" --prompt "Hello! Who are you?" --max-tokens 32
    g pre-$q audio-speech "${c[@]}" --audio "$OUT/speech-30s.wav" --prompt "Summarize what is said." --max-tokens 16 \
        --speech-out "$OUT/pre-$q/speech.wav" --speech-greedy --max-speech-frames 150 --overwrite
done
