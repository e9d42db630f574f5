#!/usr/bin/env python3
"""What `transformers`' BertTokenizerFast makes of a WordPiece tokenizer.json under a
tokenizer_config.json: its `do_lower_case`, `strip_accents` and `tokenize_chinese_chars` (defaults
True, None, True) replace the tokenizer.json's BertNormalizer settings whenever any differs, as
ChatTTS's tokenizer is loaded by MiniCPM-o. Reads the fixtures wordpiece.py wrote.

    python tools/reference/wordpiece_config.py   # writes Tests/Fixtures/tokenizer/wordpiece/config-overrides.json.gz
"""
import gzip
import io
import json
import pathlib
import tempfile

from transformers import BertTokenizerFast

ROOT = pathlib.Path(__file__).resolve().parents[2]
DIR = ROOT / "Tests" / "Fixtures" / "tokenizer" / "wordpiece"
LINES = 400

CASES = [
    ("lower", {}),
    ("lower", {"do_lower_case": False}),
    ("lower", {"do_lower_case": False, "strip_accents": True, "tokenize_chinese_chars": False}),
    ("lower", {"do_lower_case": True, "strip_accents": False}),
    ("cased", {}),  # the defaults turn the cased normalizer into a lowercasing one
    ("cased", {"do_lower_case": False, "strip_accents": True}),
    ("cased", {"do_lower_case": False, "strip_accents": None}),
    ("cased", {"do_lower_case": False, "strip_accents": False, "tokenize_chinese_chars": False}),
]


def main():
    expected = json.load(gzip.open(DIR / "expected.json.gz"))
    lines = expected["lines"][:LINES]
    out = {"lines": LINES, "cases": []}
    for variant, config in CASES:
        with tempfile.TemporaryDirectory() as d:
            d = pathlib.Path(d)
            (d / "tokenizer.json").write_bytes(gzip.open(DIR / variant / "tokenizer.json.gz").read())
            (d / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "BertTokenizerFast", **config}))
            tok = BertTokenizerFast.from_pretrained(str(d))
            state = json.loads(tok.backend_tokenizer.normalizer.__getstate__())
            ids = [tok.encode(line, add_special_tokens=False) for line in lines]
        out["cases"].append({"variant": variant, "config": config, "normalizer": state, "ids": ids})
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as f:
        f.write(json.dumps(out, ensure_ascii=False, sort_keys=True).encode())
    (DIR / "config-overrides.json.gz").write_bytes(buf.getvalue())


if __name__ == "__main__":
    main()
