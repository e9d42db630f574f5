#!/usr/bin/env python3
"""Builds the BERT WordPiece tokenizer fixtures for the Swift `Text` tests (`WordPieceTokenizer`).

MiniCPM-o's TTS re-tokenizes the spoken text with ChatTTS's `BertTokenizerFast`
(`assets/chattts_tokenizer/tokenizer.json`: BertNormalizer, BertPreTokenizer, WordPiece, added
tokens such as `[Stts]` `[spk_emb]` `[Etts]` `[PAD]` `[Ptts]`). That file is not on PyPI, so we
build two small tokenizers of the same shape with `tokenizers` and record what `tokenizers`
produces for a test corpus. The vocabularies (3,000 entries) are learned here by WordPiece's BPE
merges on a generated corpus plus Tests/Fixtures/tokenizer/corpus.txt, because `tokenizers`'
WordPieceTrainer is not reproducible from one process to the next (see `learn_vocab`). Everything
is deterministic: the same pinned packages give byte-identical files.

    python tools/reference/wordpiece.py     # writes Tests/Fixtures/tokenizer/wordpiece

Outputs (under Tests/Fixtures/tokenizer/wordpiece, gzip with mtime 0):
    lower/tokenizer.json.gz   BertNormalizer(lowercase, strip_accents null = "as lowercase",
                              clean_text, handle_chinese_chars), [PAD] [UNK] [CLS] [SEP] [MASK] in the
                              vocabulary, ChatTTS specials as special added tokens after it, a few
                              non-special added tokens (`normalized` or not), WordPiece decoder with cleanup
    cased/tokenizer.json.gz   BertNormalizer(lowercase false, strip_accents true), max_input_chars_per_word
                              25, added tokens with lstrip / rstrip / single_word, decoder without cleanup
    expected.json.gz          the test lines (>= 1,000: English, Chinese, mixed, digits, accents, emoji,
                              control characters, whitespace runs, embedded specials, very long words,
                              fuzz) and documents, and per variant: ids (add_special_tokens=False), ids
                              with special tokens encoded as text, decodes (with and without special
                              tokens, and with `transformers`' clean_up_tokenization on top), decodes
                              of arbitrary id sequences, normalizer outputs for a
                              sample, and FNV-1a hashes of the normalizer, pre-tokenizer and encoder
                              outputs over every code point (in blocks of consecutive code points);
                              also hashes for other normalizers / pre-tokenizers the Swift loader accepts
Also writes Sources/Text/WordPieceTables.swift: the character classes and mappings that
BertNormalizer, NFD, StripAccents, Lowercase and BertPreTokenizer use inside `tokenizers`, read
back from `tokenizers` itself one code point at a time (its crates pin old Unicode versions: NFD is
Unicode 9.0, the "control" / "punctuation" / "non-spacing mark" classes come from the
`unicode_categories` crate, lowercase from Rust's std), so the Swift side does not depend on the
Unicode version of the Swift runtime.
"""
import gzip
import heapq
import io
import json
import random
import unicodedata
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerBase

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "Tests" / "Fixtures" / "tokenizer" / "wordpiece"
CORPUS = ROOT / "Tests" / "Fixtures" / "tokenizer" / "corpus.txt"
TABLES = ROOT / "Sources" / "Text" / "WordPieceTables.swift"

CODE_POINTS = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]

# In the base vocabulary (first ids, like BERT's), then ChatTTS-style added tokens after it.
BASE_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
CHATTTS_SPECIALS = ["[Stts]", "[Ptts]", "[Etts]", "[spk_emb]", "[empty_spk]", "[music]", "[pure]"]

# (content, special, lstrip, rstrip, single_word, normalized) added after training, per variant.
LOWER_ADDED = [
    ("[uv_break]", False, False, False, False, True),
    ("[laugh]", False, False, False, False, True),
    ("[Sbreak]", False, False, False, False, True),     # normalized: matches "[sbreak]", "[SBREAK]"
    ("[Pbreak]", False, False, False, False, False),    # not normalized: only "[Pbreak]" as typed
    ("hello world", False, False, False, False, True),  # holds a space
]
CASED_ADDED = [
    ("<mask>", False, True, True, True, False),         # lstrip + rstrip + single_word
    ("[caf\u00e9]", False, False, False, False, True),  # normalized to "[cafe]" by strip_accents
    ("[Ebreak]", False, False, True, False, False),     # rstrip only
    ("[Lbreak]", True, True, False, False, False),      # special with lstrip
    ("Word", False, False, False, True, True),          # single_word, normalized, in the vocab
]
VARIANTS = {
    "lower": dict(lowercase=True, strip_accents=None, max_chars=100, cleanup=True, added=LOWER_ADDED),
    "cased": dict(lowercase=False, strip_accents=True, max_chars=25, cleanup=False, added=CASED_ADDED),
}
VOCAB_SIZE = 3000
LIMIT_ALPHABET = 700


# ----------------------------------------------------------------------------- Unicode tables

def ranges(codes):
    out = []
    for c in sorted(codes):
        if out and out[-1][1] == c - 1:
            out[-1][1] = c
        else:
            out.append([c, c])
    return out


def probe_tables():
    """Every class and mapping, read back from `tokenizers` one code point at a time."""
    clean = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=False, strip_accents=False,
                                       lowercase=False)
    chinese = normalizers.BertNormalizer(clean_text=False, handle_chinese_chars=True, strip_accents=False,
                                         lowercase=False)
    bert_strip = normalizers.BertNormalizer(clean_text=False, handle_chinese_chars=False, strip_accents=True,
                                            lowercase=False)
    nfd, strip, lower = normalizers.NFD(), normalizers.StripAccents(), normalizers.Lowercase()
    bert_pre = pre_tokenizers.BertPreTokenizer()
    t = {k: set() for k in ("control", "cleanSpace", "chinese", "mark", "bertMark", "punctuation", "whitespace")}
    decomposition, lowercase = {}, {}
    for c in CODE_POINTS:
        ch = chr(c)
        o = clean.normalize_str(ch)
        if o == "":
            t["control"].add(c)
        elif o == " " and c != 0x20:
            t["cleanSpace"].add(c)
        else:
            assert o == ch, hex(c)
        o = chinese.normalize_str(ch)
        if o != ch:
            assert o == f" {ch} ", hex(c)
            t["chinese"].add(c)
        o = strip.normalize_str(ch)
        assert o in ("", ch), hex(c)
        if o == "":
            t["mark"].add(c)
        o = nfd.normalize_str(ch)
        if o != ch and not 0xAC00 <= c <= 0xD7A3:  # Hangul syllables decompose algorithmically
            decomposition[c] = o
        if o == ch:  # BertNormalizer's own test (`is_mark_nonspacing`), on characters NFD keeps
            o = bert_strip.normalize_str(ch)
            assert o in ("", ch), hex(c)
            if o == "":
                t["bertMark"].add(c)
        o = lower.normalize_str(ch)
        if o != ch:
            lowercase[c] = o
        pieces = [p for p, _ in bert_pre.pre_tokenize_str("a" + ch + "b")]
        if pieces == ["a", ch, "b"]:
            t["punctuation"].add(c)
        elif pieces == ["a", "b"]:
            t["whitespace"].add(c)
        else:
            assert pieces == ["a" + ch + "b"], hex(c)
    for c in range(0xAC00, 0xD7A4):
        s = c - 0xAC00
        expected = chr(0x1100 + s // 588) + chr(0x1161 + s % 588 // 28) + (chr(0x11A7 + s % 28) if s % 28 else "")
        assert nfd.normalize_str(chr(c)) == expected, hex(c)
    # Canonical combining classes as tokenizers' NFD (Unicode 9.0) knows them: a non-starter in
    # today's data is one for tokenizers too iff tokenizers reorders it against a known mark
    # (U+0301 has class 230, U+0334 class 1). Classes of assigned characters never change.
    combining = {}
    for c in CODE_POINTS:
        k = unicodedata.combining(chr(c))
        if not k:
            continue
        d = nfd.normalize_str(chr(c))
        if k < 230:
            known = nfd.normalize_str("a\u0301" + chr(c)) == "a" + d + "\u0301"
        elif k == 230:
            known = nfd.normalize_str("a" + chr(c) + "\u0334") == "a\u0334" + d
        else:
            known = nfd.normalize_str("a" + chr(c) + "\u0301") == "a\u0301" + d
        if known:
            combining[c] = k
    # BertNormalizer strips accents as NFD, then drops what `is_mark_nonspacing` calls a mark.
    for c, d in decomposition.items():
        assert bert_strip.normalize_str(chr(c)) == "".join(x for x in d if ord(x) not in t["bertMark"]), hex(c)
    survivors = sorted(c for c in combining if c not in t["bertMark"])
    print("non-starters that strip_accents keeps:", " ".join(f"U+{c:04X}" for c in survivors))
    return t, decomposition, lowercase, combining


def swift_ranges(name, doc, codes):
    flat = [f"0x{v:X}" for r in ranges(codes) for v in r]
    lines = [", ".join(flat[i:i + 12]) for i in range(0, len(flat), 12)]
    return f"/// {doc}\nlet {name}: [UInt32] = [\n    " + ",\n    ".join(lines) + ",\n]\n"


def swift_mapping(name, doc, mapping):
    """`"cp:m1 m2;cp:m1;..."` in hex, parsed once at run time (a string literal compiles fast)."""
    entries = [f"{c:X}:" + " ".join(f"{ord(x):X}" for x in m) for c, m in sorted(mapping.items())]
    lines = []
    line = ""
    for e in entries:
        if len(line) + len(e) + 1 > 96:
            lines.append(line)
            line = ""
        line += e + ";"
    lines.append(line)
    body = "\n".join(f"    {ln}" for ln in lines)
    return f'/// {doc}\nlet {name} = """\n{body}\n    """\n'


def write_tables():
    t, decomposition, lowercase, combining = probe_tables()
    classes = sorted(set(combining.values()))
    by_class = "\n".join(
        f"    {k}: [" + ", ".join(f"0x{a:X}, 0x{b:X}" for a, b in ranges([c for c in combining if combining[c] == k]))
        + "],"
        for k in classes)
    src = (
        "// Generated by tools/reference/wordpiece.py from `tokenizers` 0.22.2, one code point at a time.\n"
        "// Do not edit. Ranges are flattened inclusive pairs [lo0, hi0, lo1, hi1, ...]. These are the\n"
        "// classes BertNormalizer, NFD, StripAccents, Lowercase and BertPreTokenizer use inside\n"
        "// `tokenizers`, whose crates pin their own Unicode versions (NFD: Unicode 9.0; control,\n"
        "// punctuation and non-spacing marks: the `unicode_categories` crate; lowercase: Rust's std).\n\n"
        + swift_ranges("bertControlRanges", "Removed by BertNormalizer's clean_text (NUL, U+FFFD, \"other\" but \\t \\n \\r).",
                       t["control"]) + "\n"
        + swift_ranges("bertCleanSpaceRanges", "Replaced by \" \" in clean_text (whitespace that is not a control).",
                       t["cleanSpace"]) + "\n"
        + swift_ranges("bertChineseRanges", "Surrounded by spaces by handle_chinese_chars.", t["chinese"]) + "\n"
        + swift_ranges("combiningMarkRanges", "Dropped by StripAccents (`is_combining_mark`: Mn, Mc, Me of Unicode 9.0).",
                       t["mark"]) + "\n"
        + swift_ranges("bertNonspacingMarkRanges",
                       "Dropped by BertNormalizer's strip_accents after NFD (`is_mark_nonspacing`), among characters NFD keeps.",
                       t["bertMark"]) + "\n"
        + swift_ranges("bertPunctuationRanges", "Isolated by BertPreTokenizer (ASCII punctuation and `is_punctuation`).",
                       t["punctuation"]) + "\n"
        + swift_ranges("bertWhitespaceRanges", "Split on (and removed) by BertPreTokenizer: Rust's `char::is_whitespace`.",
                       t["whitespace"]) + "\n"
        + "/// Canonical combining classes that tokenizers' NFD knows (Unicode 9.0), by class.\n"
        + "let combiningClassRanges: [UInt8: [UInt32]] = [\n" + by_class + "\n]\n\n"
        + swift_mapping("canonicalDecompositionTable",
                        "Full canonical decompositions (NFD of one character), Hangul syllables excepted.",
                        decomposition) + "\n"
        + swift_mapping("lowercaseTable", "Lowercase mappings (Rust's `char::to_lowercase`).", lowercase))
    TABLES.write_text(src, encoding="utf-8")
    print(f"{TABLES.relative_to(ROOT)}: {len(decomposition)} decompositions, {len(lowercase)} lowercase "
          f"mappings, {len(combining)} non-starters")


# ----------------------------------------------------------------------------- text generators

EN_TEXT = """
It was a bright cold day in April, and the clocks were striking thirteen. The old man sat by the
window and watched the rain fall on the quiet street below. Nobody knew where the road would lead,
but everyone agreed that the journey was worth taking. She opened the letter slowly, read it twice,
and then laughed out loud. The library closes at nine o'clock on weekdays and at noon on Sundays.
A good model should understand speech, images and text, and it should answer in a natural voice.
The quick brown fox jumps over the lazy dog while the children play in the garden. We measured the
latency of every request and found that the second run was much faster than the first one. Please
remember to bring your umbrella, because the weather report says it will rain all afternoon. He
said he didn't know the answer, but he'd look it up and call us back before dinner. They've been
working on the new bridge for three years; it's almost finished now. I'm not sure whether we're
going to make it in time, so let's hurry. The museum has paintings, sculptures, old maps and a
small collection of musical instruments from the seventeenth century. Music, like language, has
grammar and rhythm; a melody is a sentence that nobody needs to translate. Thank you very much for
your help yesterday, it really made a difference. What time does the train to the airport leave?
The answer is simple: practice every day, listen carefully, and never stop asking questions.
"""
EN_WORDS = sorted(set(
    "the of and to in is you that it he was for on are as with his they at be this have from or one had by "
    "word but not what all were we when your can said there use an each which she do how their if will up "
    "other about out many then them these so some her would make like him into time has look two more write "
    "go see number no way could people my than first water been call who oil its now find long down day did "
    "get come made may part voice speech audio model speak listen sound music story weather morning evening "
    "tomorrow yesterday today friend family house city country river mountain ocean forest computer phone "
    "message question answer problem reason example result because however although therefore beautiful "
    "wonderful important interesting different possible necessary understand remember together everything "
    "something nothing anything everyone someone information experience government development environment "
    "international communication university technology application performance temperature conversation "
    "happy sad angry tired hungry quickly slowly carefully really very much little big small new old good bad "
    "hello goodbye please thanks sorry yes okay".split()))
ZH_CHARS = ("的一是不了人我在有他这为之大来以个中上们到说国和地也子时道出而要于就下得可你年生自会那后能对着"
            "事其里所去行过家十用发天如然作方成者多日都三小军二无同么经法当起与好看学进种将还分此心前面又定见只"
            "主没公从知识模型推理语音视觉多模态实时流式解码器词元今天气很真谢请问吗呢吧啊哦嗯唱歌听音乐电影朋友"
            "老师学生医院银行飞机火车汽车手机电脑北京上海广州深圳中国美国日本世界历史文化科学技术经济社会教育")
ZH_PUNCT = "，。、；：！？“”‘’（）《》【】…—"
ZH_PHRASES = ["你好", "谢谢你", "今天天气很好", "我们一起去吧", "请问现在几点了", "这个问题很有意思",
              "语音合成", "实时流式推理", "人工智能", "北京欢迎你", "我喜欢听音乐", "明天见"]
ACCENTED = ["café", "naïve", "résumé", "coöperate", "façade", "jalapeño", "Zürich", "São Paulo", "Ångström",
            "Crème Brûlée", "Ÿ", "ÉCOLE", "Señor", "Dvořák", "Łódź", "Kraków", "Ærøskøbing", "Straße", "ẞ", "İstanbul",
            "ıi", "ΣΊΣΥΦΟΣ", "Άλφα", "Tiếng Việt", "Nguyễn", "phở", "ǅungla", "ﬁﬂ", "e\u0301", "E\u0301\u0323",
            "a\u0308\u0304", "ñ", "n\u0303", "\u212B", "\u2126", "Ǆ", "\u1E9B\u0323", "ℌ", "Ａｂｃ", "½", "²"]
EMOJI = ["😀", "😂", "🤖", "🚀", "🎉", "❤️", "👍", "👍🏻", "👍🏿", "👨‍👩‍👧‍👦", "👩‍💻", "🏳️‍🌈", "🇯🇵",
         "🇨🇳", "1️⃣", "#️⃣", "☕", "✨", "🫠", "🦀", "©️", "™", "🎵", "🔊", "🗣️"]
CONTROLS = ["\x00", "\x01", "\x07", "\x08", "\x1b", "\x7f", "\x85", "\x9f", "\u200b", "\u200c", "\u200d",
            "\u200e", "\u2060", "\ufeff", "\ufffd", "\u00ad", "\u061c", "\ue000", "\U000F0000", "\U000E0041",
            "\x0b", "\x0c", "\r", "\t", "\u2028", "\u2029", "\u0890", "\U000110CD", "\u0378", "\U0010FFFF"]
SPACES = [" ", "  ", "   ", "\t", "\t\t", " \t ", "\u00a0", "\u3000", "\u2003", "\u2009", "\u202f", "\u1680",
          "\u205f", "\u0085", "\u2028", "\r", "\r\n", "\x0b", "\x0c", "\u180e"]
RARE = ["नमस्ते", "مرحبا", "שָׁלוֹם", "สวัสดี", "გამარჯობა", "Привет мир", "Ελληνικά", "안녕하세요", "こんにちは",
        "カタカナ", "𠀀𠀁", "\U0002A700", "\U0002B820\U0002B920", "\U0002CEB0", "\U00031350", "\U0002EBF0",
        "\uF900\uFA0E", "\U0002F800", "㐀", "ꓐꓑ", "𝐀𝐁𝐂", "ⅫⅣ", "①②", "١٢٣", "१२३", "𐍈", "ᚠᚢ", "\u0F73\u0F75",
        "\u302E\u302F", "\U0001D165\U0001D16E"]
PUNCT = list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~") + ["¡", "¿", "§", "¶", "«", "»", "…", "–", "—", "‘", "’",
                                                      "“", "”", "•", "·", "※", "〜", "・", "\u166D", "\U000111C9",
                                                      "\u2E5D", "\U00010EAD", "€", "£", "¥", "°", "±", "×"]


def rand_number(rng):
    k = rng.randrange(8)
    if k == 0:
        return str(rng.randrange(10 ** rng.randrange(1, 25)))
    if k == 1:
        return f"{rng.uniform(-1e5, 1e5):.{rng.randrange(1, 6)}f}"
    if k == 2:
        return f"{rng.randrange(10**9):,}"
    if k == 3:
        return f"{rng.randrange(1900, 2100)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}"
    if k == 4:
        return f"+86 {rng.randrange(100, 999)} {rng.randrange(1000, 9999)} {rng.randrange(1000, 9999)}"
    if k == 5:
        return "".join(chr(0xFF10 + rng.randrange(10)) for _ in range(rng.randrange(1, 6)))
    if k == 6:
        return rng.choice(["一", "二", "三", "四", "五", "六", "七", "八", "九", "十", "百", "千", "万", "零"]) * rng.randrange(1, 3)
    return f"{rng.randrange(100)}%"


def english(rng):
    words = []
    for _ in range(rng.randrange(3, 22)):
        r = rng.random()
        if r < 0.08:
            words.append(rng.choice(["I'm", "don't", "it's", "we've", "they'd", "can't", "won't", "isn't",
                                     "you're", "let's", "o'clock", "DON'T", "He'll"]))
        elif r < 0.14:
            words.append(rand_number(rng))
        else:
            w = rng.choice(EN_WORDS)
            words.append(w.upper() if rng.random() < 0.05 else w.capitalize() if rng.random() < 0.12 else w)
        if rng.random() < 0.07:
            words[-1] += rng.choice([",", ";", ":", "!", "?", "."])
    return " ".join(words) + rng.choice([".", "!", "?", "...", "", " ", "?!", "\"", ")", " ."])


def chinese(rng):
    out = []
    for _ in range(rng.randrange(4, 40)):
        out.append(rng.choice(ZH_PHRASES) if rng.random() < 0.15 else rng.choice(ZH_CHARS))
        if rng.random() < 0.1:
            out.append(rng.choice(ZH_PUNCT))
    return "".join(out) + rng.choice(["。", "！", "？", "", "……"])


def mixed(rng):
    parts = []
    for _ in range(rng.randrange(2, 7)):
        r = rng.random()
        parts.append(chinese(rng)[:rng.randrange(2, 12)] if r < 0.45 else
                     " ".join(rng.choice(EN_WORDS) for _ in range(rng.randrange(1, 4))) if r < 0.8 else
                     rand_number(rng) if r < 0.9 else rng.choice(["GPU", "MiniCPM-o 2.6", "TTS", "iPhone 15",
                                                                   "Swift", "API", "Qwen2.5", "OK"]))
    return rng.choice(["", " "]).join(parts)


def digits(rng):
    return rng.choice(["", "Total: ", "价格：", "No.", "x=", "第"]) + rng.choice([" ", ", ", "，", "/"]).join(
        rand_number(rng) for _ in range(rng.randrange(1, 6)))


def accents(rng):
    return " ".join(rng.choice(ACCENTED + EN_WORDS[:40]) for _ in range(rng.randrange(1, 8)))


def emoji(rng):
    return rng.choice(["", " "]).join(rng.choice(EMOJI + EN_WORDS[:30] + list(ZH_CHARS[:30]))
                                      for _ in range(rng.randrange(1, 8)))


def controls(rng):
    return "".join(rng.choice(CONTROLS) if rng.random() < 0.4 else rng.choice(EN_WORDS + list(ZH_CHARS[:20]))
                   for _ in range(rng.randrange(2, 10)))


def whitespace(rng):
    return "".join(rng.choice(SPACES) if rng.random() < 0.5 else rng.choice(EN_WORDS + ["中", "é", ".", "!"])
                   for _ in range(rng.randrange(2, 12)))


def punctuation(rng):
    return "".join(rng.choice(PUNCT) if rng.random() < 0.5 else rng.choice(EN_WORDS + ["中文", "2.6", "e.g"])
                   for _ in range(rng.randrange(2, 12)))


def specials_line(rng, added):
    tokens = BASE_SPECIALS + CHATTTS_SPECIALS + [a[0] for a in added]
    near = ["[stts]", "[STTS]", "[Stts", "Stts]", "[[Stts]]", "[ Stts ]", "[spk_emb ]", "[PAD][PAD",
            "[sbreak]", "[SBREAK]", "[pbreak]", "[cafe]", "[café]", "[CAFÉ]", "[cafe\u0301]", "<MASK>", "word",
            "WORD", "words", "aWord", "Word's", "[ebreak]", "[lbreak]", "HELLO WORLD", "hello  world"]
    parts = []
    for _ in range(rng.randrange(1, 7)):
        r = rng.random()
        parts.append(rng.choice(tokens) if r < 0.4 else rng.choice(near) if r < 0.55 else
                     rng.choice([english, chinese, emoji, whitespace])(rng)[:40])
    return rng.choice(["", " ", "  ", "\t"]).join(parts)


def chattts_input(rng):
    """The TTS condition string of spec section 5.2, with a short text and fewer pads."""
    text = rng.choice([english, chinese, mixed])(rng)[:60]
    return "[Stts][spk_emb]" + text + "[Etts]" + "[PAD]" * rng.randrange(0, 6) + "[Ptts]"


def long_word(rng):
    k = rng.randrange(6)
    n = rng.choice([24, 25, 26, 99, 100, 101, 150, 300])
    if k == 0:
        return "a" * n
    if k == 1:
        return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(n))
    if k == 2:
        return "".join(rng.choice(EN_WORDS) for _ in range(n // 4))[:n]
    if k == 3:
        return "".join(rng.choice("0123456789") for _ in range(n))
    if k == 4:
        return "é" * n + " " + "e\u0301" * n
    return "https://example.com/" + "".join(rng.choice("abcxyz0123") for _ in range(n))


FUZZ_ALPHABET = (["a", "b", "Z", "1", "23", " ", "  ", "\t", "\r", "\x00", "\u200b", "\u00a0", "\u3000", "é", "e",
                  "\u0301", "\u0323", "中", "文", "😀", "👍🏽", "\u200d", "\ufe0f", "#", "##", "#a", "-", ".", ",", "'",
                  "n't", "do not", "'s", "[", "]", "[PAD]", "[Stts]", "[stts]", "[laugh]", "<mask>", "İ", "ß",
                  "Σ", "ǅ", "한", "\u1100\u1161", "\uF900", "𠀀", "½", "Ａ", "\u0F73", "\u302E", "\U0001D165"])


def fuzz(rng):
    out = []
    for _ in range(rng.randrange(1, 20)):
        if rng.random() < 0.15:
            while True:
                c = rng.randrange(0x110000) if rng.random() < 0.3 else rng.randrange(0x3100)
                if not 0xD800 <= c <= 0xDFFF:
                    out.append(chr(c))
                    break
        else:
            out.append(rng.choice(FUZZ_ALPHABET))
    return "".join(out)


FIXED = [
    "", " ", "\t", "\u3000", "a", "A", "hello world", "Hello, World!", "HELLO", "[UNK]", "[unk]",
    "[Stts][spk_emb]hello[Etts][PAD][PAD][Ptts]",
    "[Stts][spk_emb]你好，世界！[Etts][PAD][Ptts]",
    "[Stts] [spk_emb] Hello there. [Etts] [PAD] [Ptts]",
    "[Stts][spk_emb]" + "好" * 40 + "[Etts]" + "[PAD]" * 30 + "[Ptts]",
    "[STTS][Spk_Emb][ETTS][pad][PTTS]", "[[Stts]]", "[Stts", "Stts]", "x[Stts]y", "[PAD][PAD][PAD]",
    "你好，世界！", "我今天很高兴。", "中文English混合text测试123", "MiniCPM-o 2.6 支持实时语音对话。",
    "12345", "3.14159", "1,000,000", "２０２４年", "第3名", "100%",
    "café naïve résumé", "CAFÉ NAÏVE RÉSUMÉ", "e\u0301", "\u00e9", "Ångström", "İstanbul ıi", "Straße ẞ",
    "ΣΊΣΥΦΟΣ", "ﬁnance", "Ǆemal ǅemal ǆemal", "한국어", "한", "\u1100\u1161\u11a8", "\uF900\uF901",
    "😀😂🤖", "👨‍👩‍👧‍👦", "❤️", "a\u200db", "a\u00adb", "a\x00b\x01c", "a\ufffdb", "\ufeffBOM",
    "tab\tseparated\tvalues", "line\rbreak", "a  b   c    d", " leading", "trailing ", "\u00a0nbsp\u00a0",
    "don't can't won't", "I'm you're he's we've they'd", "do not", "hello , world . ok ?", "' s",
    "a" * 99, "a" * 100, "a" * 101, "b" * 25, "b" * 26, "e\u0301" * 60, "中" * 120,
    "supercalifragilisticexpialidocious", "pneumonoultramicroscopicsilicovolcanoconiosis",
    "unbelievable", "tokenization", "##", "##ing", "#hashtag", "a##b", "[uv_break]", "[laugh]ha[laugh]",
    "[Sbreak] [sbreak] [SBREAK]", "[Pbreak] [pbreak]", "hello world Hello World HELLO WORLD",
    "<mask>", "a <mask> b", "a<mask>b", "a  <mask>  b", "[café] [cafe] [CAFÉ]", "[Ebreak]   x",
    "x   [Lbreak]", "Word word WORD Words aWord", "\u0F73\u0F75", "\u302E\u302F", "\U0001D165\U0001D16E",
    "a\u0302\u0323", "a\u0323\u0302", "\u1E9B\u0323", "x\u0345y", " \u0301 ", "\u0301",
]


def make_lines(rng, train_lines):
    gens = ([english] * 5 + [chinese] * 5 + [mixed] * 3 + [digits] * 2 + [accents] * 2 + [emoji] * 2
            + [controls] * 2 + [whitespace] * 2 + [punctuation] * 2 + [long_word] + [fuzz] * 2
            + [chattts_input] * 2 + ["special"] * 3 + ["corpus"] * 2)
    lines = list(FIXED)
    all_added = LOWER_ADDED + CASED_ADDED
    while len(lines) < 1200:
        g = rng.choice(gens)
        if g == "special":
            lines.append(specials_line(rng, all_added))
        elif g == "corpus":
            lines.append(rng.choice(train_lines))
        else:
            lines.append(g(rng))
    return lines


def make_documents(rng):
    return [
        ("story", EN_TEXT),
        ("chinese", "\n".join(chinese(rng) for _ in range(20))),
        ("mixed", "\n".join(rng.choice([english, chinese, mixed, digits, emoji])(rng) for _ in range(60))),
        ("chattts", "[Stts][spk_emb]" + "今天天气很好，我们一起去公园散步吧！" + "[Etts]" + "[PAD]" * 280 + "[Ptts]"),
    ]


def training_lines(rng):
    corpus = CORPUS.read_text(encoding="utf-8").split("\n")
    sentences = [s.strip() for s in EN_TEXT.replace("\n", " ").split(".") if s.strip()]
    lines = [ln for ln in corpus if ln]
    lines += [english(rng) for _ in range(4000)]
    lines += [chinese(rng) for _ in range(3000)]
    lines += [mixed(rng) for _ in range(1000)]
    lines += [accents(rng) for _ in range(300)]
    lines += sentences * 20
    return lines


# ----------------------------------------------------------------------------- tokenizers

def learn_vocab(tok, lines, vocab_size=None, limit_alphabet=None, specials=None):
    """WordPiece vocabulary by BPE merges, as `tokenizers`' WordPieceTrainer learns it: words from
    the tokenizer's own normalizer and pre-tokenizer, an alphabet of the `LIMIT_ALPHABET` most
    frequent characters, non-initial symbols spelled "##x", then the most frequent adjacent pair
    merged (min frequency 2) until the vocabulary has `VOCAB_SIZE` entries. WordPieceTrainer itself
    is not reproducible across processes (it breaks ties between equally frequent pairs in hash-map
    order, and Rust seeds hash maps per process: four runs gave four vocabularies), so ties are
    broken here by the pair's spelling. `vocab_size`, `limit_alphabet` and the leading `specials`
    default to this script's (speech.py learns the ChatTTS-sized vocabulary with its own)."""
    vocab_size = VOCAB_SIZE if vocab_size is None else vocab_size
    limit_alphabet = LIMIT_ALPHABET if limit_alphabet is None else limit_alphabet
    specials = BASE_SPECIALS if specials is None else specials
    counts = {}
    for line in lines:
        for word, _ in tok.pre_tokenizer.pre_tokenize_str(tok.normalizer.normalize_str(line)):
            counts[word] = counts.get(word, 0) + 1
    char_counts = {}
    for word, n in counts.items():
        for ch in word:
            char_counts[ch] = char_counts.get(ch, 0) + n
    alphabet = set(sorted(char_counts, key=lambda ch: (-char_counts[ch], ch))[:limit_alphabet])
    words, freqs = [], []
    for word, n in sorted(counts.items()):
        if all(ch in alphabet for ch in word):
            words.append([word[0]] + ["##" + ch for ch in word[1:]])
            freqs.append(n)
    vocab = list(specials)
    seen = set(vocab)
    for symbol in sorted({s for w in words for s in w}):
        if symbol not in seen:
            vocab.append(symbol)
            seen.add(symbol)
    pair_counts, where = {}, {}
    for i, w in enumerate(words):
        for a, b in zip(w, w[1:]):
            pair_counts[(a, b)] = pair_counts.get((a, b), 0) + freqs[i]
            where.setdefault((a, b), set()).add(i)
    heap = [(-n, pair) for pair, n in pair_counts.items()]
    heapq.heapify(heap)
    while len(vocab) < vocab_size and heap:
        n, pair = heapq.heappop(heap)
        if -n != pair_counts.get(pair, 0):
            continue  # stale entry
        if -n < 2:
            break
        a, b = pair
        merged = a + b[2:]
        if merged not in seen:
            vocab.append(merged)
            seen.add(merged)
        touched = {}
        for i in sorted(where.pop(pair, ())):
            w, f = words[i], freqs[i]
            for x, y in zip(w, w[1:]):
                pair_counts[(x, y)] -= f
                touched[(x, y)] = True
            out, k = [], 0
            while k < len(w):
                if k + 1 < len(w) and w[k] == a and w[k + 1] == b:
                    out.append(merged)
                    k += 2
                else:
                    out.append(w[k])
                    k += 1
            words[i] = out
            for x, y in zip(out, out[1:]):
                pair_counts[(x, y)] = pair_counts.get((x, y), 0) + f
                where.setdefault((x, y), set()).add(i)
                touched[(x, y)] = True
        for p in sorted(touched):
            if pair_counts.get(p, 0) > 0:
                heapq.heappush(heap, (-pair_counts[p], p))
            else:
                pair_counts.pop(p, None)
    return {token: i for i, token in enumerate(vocab)}


def train(name, cfg, lines):
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=cfg["max_chars"]))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                strip_accents=cfg["strip_accents"], lowercase=cfg["lowercase"])
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    vocab = learn_vocab(tok, lines)
    tok.model = models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=cfg["max_chars"],
                                 continuing_subword_prefix="##")
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=cfg["cleanup"])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in BASE_SPECIALS])
    tok.post_processor = processors.BertProcessing(("[SEP]", tok.token_to_id("[SEP]")),
                                                   ("[CLS]", tok.token_to_id("[CLS]")))
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in CHATTTS_SPECIALS])
    for content, special, lstrip, rstrip, single_word, normalized in cfg["added"]:
        token = AddedToken(content, special=special, lstrip=lstrip, rstrip=rstrip, single_word=single_word,
                           normalized=normalized)
        (tok.add_special_tokens if special else tok.add_tokens)([token])
    # Round-trip through JSON so the fixture is exactly what the Swift side reads.
    data = (json.dumps(json.loads(tok.to_str()), ensure_ascii=False, indent=1) + "\n").encode("utf-8")
    return Tokenizer.from_str(data.decode("utf-8")), data


def fnv1a(data: bytes) -> str:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def blocks():
    """Consecutive code point blocks: 1,024 in the BMP, 16,384 elsewhere (surrogates left out)."""
    out = []
    start = 0
    while start < 0x110000:
        size = 0x400 if start < 0x10000 else 0x4000
        out.append((start, start + size))
        start += size
    return out


def block_text(lo, hi):
    return "".join(chr(c) for c in range(lo, hi) if not 0xD800 <= c <= 0xDFFF)


def pieces_bytes(pieces):
    return b"".join(p.encode("utf-8") + b"\xff" for p in pieces)


def ids_bytes(ids):
    return ",".join(map(str, ids)).encode()


clean_up = PreTrainedTokenizerBase.clean_up_tokenization


def expected_for(tok, lines, documents, rng):
    vocab_size = tok.get_vocab_size(with_added_tokens=True)

    def encode(text, special=True):
        tok.encode_special_tokens = not special
        ids = tok.encode(text, add_special_tokens=False).ids
        tok.encode_special_tokens = False
        return ids

    line_ids = [encode(ln) for ln in lines]
    out = {
        "vocabSize": vocab_size,
        "ids": line_ids,
        "decoded": [tok.decode(ids, skip_special_tokens=False) for ids in line_ids],
        # Only where skipping special tokens changes the text.
        "decodedSkipSpecial": {str(i): tok.decode(ids, skip_special_tokens=True) for i, ids in enumerate(line_ids)
                               if tok.decode(ids, skip_special_tokens=True) != tok.decode(ids, skip_special_tokens=False)},
        # What `transformers`' decode returns with clean_up_tokenization_spaces (where it differs).
        "decodedCleanedUp": {str(i): clean_up(tok.decode(ids, skip_special_tokens=False))
                             for i, ids in enumerate(line_ids)
                             if clean_up(tok.decode(ids, skip_special_tokens=False)) != tok.decode(ids, skip_special_tokens=False)},
        "idsNoSpecial": {str(i): encode(ln, special=False) for i, ln in enumerate(lines) if "[" in ln},
        "documents": [{"name": n, "ids": encode(t), "decoded": tok.decode(encode(t), skip_special_tokens=False)}
                      for n, t in documents],
    }
    # Arbitrary id sequences: continuation pieces first, specials, ids past the vocabulary.
    decode_cases = []
    for _ in range(300):
        ids = [rng.randrange(vocab_size + 3) for _ in range(rng.randrange(0, 14))]
        decode_cases.append({"ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False),
                             "decodedSkipSpecial": tok.decode(ids, skip_special_tokens=True)})
    out["decode"] = decode_cases
    # Normalizer alone, for a sample of lines (debugging aid as much as a test).
    out["normalized"] = {str(i): tok.normalizer.normalize_str(lines[i]) for i in range(0, len(lines), 5)}
    # Every code point: hashes of normalizer / pre-tokenizer / full encoding per block.
    hashes = []
    for lo, hi in blocks():
        text = block_text(lo, hi)
        hashes.append({
            "start": lo, "end": hi,
            "normalized": fnv1a(tok.normalizer.normalize_str(text).encode("utf-8")),
            "preTokenized": fnv1a(pieces_bytes(p for p, _ in tok.pre_tokenizer.pre_tokenize_str(text))),
            "ids": fnv1a(ids_bytes(encode(text))),
            "spacedIds": fnv1a(ids_bytes(encode(" ".join(text)))),
        })
    out["blocks"] = hashes
    return out


# Other normalizers and pre-tokenizers the Swift loader accepts, checked on every code point and
# on the test lines (hashes only: the Swift test swaps each into the "lower" tokenizer.json).
NORMALIZER_VARIANTS = [
    {"type": "Sequence", "normalizers": [{"type": "NFD"}, {"type": "Lowercase"}, {"type": "StripAccents"}]},
    {"type": "Sequence", "normalizers": [{"type": "NFC"}, {"type": "Lowercase"}]},
    {"type": "NFD"},
    {"type": "StripAccents"},
    {"type": "BertNormalizer", "clean_text": False, "handle_chinese_chars": False, "strip_accents": False,
     "lowercase": False},
    {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": False, "strip_accents": False,
     "lowercase": True},
    {"type": "BertNormalizer", "clean_text": False, "handle_chinese_chars": True, "strip_accents": True,
     "lowercase": False},
]
PRE_TOKENIZER_VARIANTS = [
    {"type": "WhitespaceSplit"},
    {"type": "Punctuation", "behavior": "Isolated"},
    {"type": "Sequence", "pretokenizers": [{"type": "WhitespaceSplit"}, {"type": "Punctuation", "behavior": "Isolated"}]},
]


WP_STUB = {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
           "max_input_chars_per_word": 100, "vocab": {"[UNK]": 0}}


def component_variants(lines):
    lines_text = lambda f: fnv1a(b"".join(f(ln) + b"\xff" for ln in lines))
    out = {"normalizers": [], "preTokenizers": []}
    for spec in NORMALIZER_VARIANTS:
        n = Tokenizer.from_str(json.dumps({
            "version": "1.0", "normalizer": spec, "model": WP_STUB})).normalizer
        out["normalizers"].append({
            "normalizer": spec,
            "lines": lines_text(lambda ln: n.normalize_str(ln).encode("utf-8")),
            "blocks": [fnv1a(n.normalize_str(block_text(lo, hi)).encode("utf-8")) for lo, hi in blocks()]})
    for spec in PRE_TOKENIZER_VARIANTS:
        p = Tokenizer.from_str(json.dumps({
            "version": "1.0", "pre_tokenizer": spec, "model": WP_STUB})).pre_tokenizer
        out["preTokenizers"].append({
            "preTokenizer": spec,
            "lines": lines_text(lambda ln: pieces_bytes(x for x, _ in p.pre_tokenize_str(ln))),
            "blocks": [fnv1a(pieces_bytes(x for x, _ in p.pre_tokenize_str(block_text(lo, hi)))) for lo, hi in blocks()]})
    return out


def gzip_bytes(data: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as f:
        f.write(data)
    return buf.getvalue()


def main():
    write_tables()
    rng = random.Random(20240526)
    train_lines = training_lines(rng)
    lines = make_lines(rng, [ln for ln in train_lines[:2400] if ln])
    documents = make_documents(rng)
    assert len(lines) >= 1000
    # BertPreTokenizer alone (both variants have it), for a sample of raw lines.
    bert_pre = pre_tokenizers.BertPreTokenizer()
    expected = {"lines": lines, "documents": [{"name": n, "text": t} for n, t in documents],
                "preTokenized": {str(i): [p for p, _ in bert_pre.pre_tokenize_str(lines[i])]
                                 for i in range(0, len(lines), 5)}}
    for name, cfg in VARIANTS.items():
        tok, data = train(name, cfg, train_lines)
        (OUT / name).mkdir(parents=True, exist_ok=True)
        (OUT / name / "tokenizer.json.gz").write_bytes(gzip_bytes(data))
        expected[name] = expected_for(tok, lines, documents, random.Random(name))
        unk = tok.token_to_id("[UNK]")
        n_unk = sum(ids.count(unk) for ids in expected[name]["ids"])
        print(f"{name}: vocab {tok.get_vocab_size(with_added_tokens=True)}, {len(lines)} lines, "
              f"{sum(map(len, expected[name]['ids']))} ids ({n_unk} [UNK])")
    expected["variants"] = component_variants(lines)
    (OUT / "expected.json.gz").write_bytes(gzip_bytes(json.dumps(expected, ensure_ascii=False).encode("utf-8")))
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"{OUT.relative_to(ROOT)}: {total} bytes")


if __name__ == "__main__":
    main()
