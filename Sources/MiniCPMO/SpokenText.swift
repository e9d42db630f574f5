/// The text a live answer's speech reads (spec §5.1; MiniCPM-o's `_generate_mel_spec_audio_streaming`):
/// the language model's first 3-token call goes in as it is; every later call's text has its digits
/// spelled one by one and its `*` removed (markdown emphasis), in the language detected over the raw text
/// at the 2nd and 3rd call of each speech segment and kept after that. The chat path's speech reads the
/// text as written, as the reference's non-streaming `chat()` does.
public struct SpokenText: Sendable {
    public enum Language: Sendable { case chinese, english }

    /// What the speech reads so far.
    public private(set) var text = ""
    /// This segment's raw text (its opening text, then every call's text as written).
    var raw = ""
    /// Calls of this segment after the one that opened it.
    var calls = 0
    var opened = false
    var language = Language.chinese

    public init() {}

    /// One call's text, as written.
    public mutating func append(_ chunk: String) {
        raw += chunk
        guard opened else {
            opened = true
            text += chunk
            return
        }
        calls += 1
        if calls <= 2 { language = Self.detectLanguage(raw) }
        text += Self.spellDigits(chunk, language).replacingOccurrences(of: "*", with: "")
    }

    /// A new speech segment opens with `opening` (the previous one's last ChatTTS tokens, decoded, and the
    /// text after its cut): the language is detected again over it and the next calls.
    public mutating func startSegment(opening: String) {
        raw = opening
        calls = 0
    }

    /// Chinese unless there are more ASCII letters than CJK ideographs (U+4E00–U+9FFF).
    public static func detectLanguage(_ text: String) -> Language {
        var zh = 0, en = 0
        for s in text.unicodeScalars {
            if (0x4E00...0x9FFF).contains(s.value) { zh += 1 } else if s.isASCII && s.properties.isAlphabetic { en += 1 }
        }
        return zh >= en ? .chinese : .english
    }

    static let chineseDigits: [String] = ["零", "一", "二", "三", "四", "五", "六", "七", "八", "九"]
    static let englishDigits = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]

    /// Every run of decimal digits (any script's, as Python's `\d`) spelled digit by digit: ASCII digits
    /// become words (run together in Chinese, spaced in English) and other digits vanish, as the
    /// reference's map does.
    public static func spellDigits(_ text: String, _ language: Language) -> String {
        var out = String.UnicodeScalarView(), run: [Int] = [], inRun = false
        func flush() {
            guard inRun else { return }
            let words = run.map { language == .chinese ? chineseDigits[$0] : englishDigits[$0] }
            out.append(contentsOf: words.joined(separator: language == .chinese ? "" : " ").unicodeScalars)
            run = []
            inRun = false
        }
        for s in text.unicodeScalars {
            if s.properties.numericType == .decimal {
                inRun = true
                if s.isASCII { run.append(Int(s.value) - 48) }
            } else {
                flush()
                out.append(s)
            }
        }
        flush()
        return String(out)
    }
}
