import Foundation
import Media

/// A spoken answer: the TTS codes, the DVAE mel and the 24 kHz waveform.
public struct SpeechOutput: Sendable {
    public var codes: [[Int]]
    /// [100, 2·frames] (bins × mel frames).
    public var mel: [Float]
    public var wave: [Float]
    public static let sampleRate = 24000
    public var seconds: Double { Double(wave.count) / Double(Self.sampleRate) }
}

/// Speech output (spec §5): ChatTTS's conditional transformer, the DVAE decoder, Vocos and the
/// ChatTTS text tokenizer, loaded from a MiniCPM-o checkpoint (`tts.*`, `assets/Vocos.pt`,
/// `assets/chattts_tokenizer/`).
public final class SpeechModel: @unchecked Sendable {
    public let tts: ConditionalChatTTS
    public let dvae: DVAEDecoder
    public let vocos: Vocos
    public let tokenizer: WordPieceTokenizer
    let specials: (stts: Int, etts: Int, pad: Int, ptts: Int)

    init(tts: ConditionalChatTTS, dvae: DVAEDecoder, vocos: Vocos, tokenizer: WordPieceTokenizer) throws {
        self.tts = tts
        self.dvae = dvae
        self.vocos = vocos
        self.tokenizer = tokenizer
        func id(_ t: String) throws -> Int {
            guard let i = tokenizer.id(of: t) else { throw SpeechError.missingToken(t) }
            return i
        }
        specials = (try id("[Stts]"), try id("[Etts]"), try id("[PAD]"), try id("[Ptts]"))
        if let spk = tokenizer.id(of: "[spk_emb]"), spk != tts.config.spkEmbTokenID {
            throw SpeechError.inconsistent("[spk_emb] is \(spk) in the ChatTTS tokenizer but tts_config.spk_emb_token_id is \(tts.config.spkEmbTokenID)")
        }
        if specials.ptts != tts.config.audioBosTokenID {
            throw SpeechError.inconsistent("[Ptts] is \(specials.ptts) in the ChatTTS tokenizer but tts_config.audio_bos_token_id is \(tts.config.audioBosTokenID)")
        }
    }

    /// Vocos from `assets/Vocos.pt` (a torch.save file, read by the restricted unpickler) or a
    /// `assets/vocos.safetensors` conversion of it.
    static func loadVocos(directory: String) throws -> Vocos {
        let assets = (directory as NSString).appendingPathComponent("assets")
        let pt = (assets as NSString).appendingPathComponent("Vocos.pt")
        let st = (assets as NSString).appendingPathComponent("vocos.safetensors")
        let checkpoint: Checkpoint
        if FileManager.default.fileExists(atPath: pt) {
            let file = try TorchCheckpointFile(path: pt)
            checkpoint = Checkpoint(tensors: file.tensors, source: pt)
        } else if FileManager.default.fileExists(atPath: st) {
            checkpoint = Checkpoint(tensors: try SafetensorsFile(path: st).tensors, source: st)
        } else {
            throw SpeechError.missingFile(pt)
        }
        let reader = checkpoint.reader()
        let vocos = Vocos(reader: reader)
        try reader.validate()
        return vocos
    }

    /// The part of a finished answer that is spoken, as the reference's chat() takes it: the tokens
    /// before `<|tts_eos|>` and after the last `<|tts_bos|>`, without token 0 ("!", which it strips as
    /// padding), decoded.
    public static func spokenText(_ tokenIds: [Int], tokenizer: Qwen2Tokenizer) -> String {
        var spoken = tokenIds
        if let eos = tokenizer.id(of: "<|tts_eos|>"), let cut = spoken.firstIndex(of: eos) { spoken = Array(spoken[..<cut]) }
        if let bos = tokenizer.id(of: "<|tts_bos|>"), let at = spoken.lastIndex(of: bos) { spoken = Array(spoken[(at + 1)...]) }
        spoken.removeAll { $0 == 0 }
        return tokenizer.decode(spoken)
    }

    /// Codes for `text` spoken with the speaker vector taken from the LLM (its final-norm hidden state
    /// at `<|spk|>`), by the non-streaming schedule.
    /// `stepper` takes the TTS steps (to batch them with other answers').
    public func codes(text: String, speakerHidden: [Float], sampler: inout CodeSampler, maxFrames: Int = 2048,
                      stepper: ConditionalChatTTS.Stepper? = nil, shouldStop: () -> Bool = { false }) -> [[Int]] {
        let ids = tokenizer.encode(text)
        let ctx = tts.makeContext(text: ids, specials: specials, speaker: tts.projectSpeaker(speakerHidden), maxFrames: maxFrames)
        return tts.synthesize(ctx, sampler: &sampler, maxFrames: maxFrames, stepper: stepper, shouldStop: shouldStop)
    }

    /// codes [T][4] → mel → waveform.
    public func render(_ codes: [[Int]]) -> SpeechOutput {
        guard !codes.isEmpty else { return SpeechOutput(codes: [], mel: [], wave: []) }
        let mel = dvae.forward(codes: codes.flatMap { $0 }, frames: codes.count)
        return SpeechOutput(codes: codes, mel: mel, wave: vocos.forward(mel: mel, frames: 2 * codes.count))
    }

    public func speak(text: String, speakerHidden: [Float], sampler: inout CodeSampler, maxFrames: Int = 2048,
                      stepper: ConditionalChatTTS.Stepper? = nil, shouldStop: () -> Bool = { false }) -> SpeechOutput {
        render(codes(text: text, speakerHidden: speakerHidden, sampler: &sampler, maxFrames: maxFrames, stepper: stepper,
                     shouldStop: shouldStop))
    }
}

public enum SpeechError: Error, CustomStringConvertible {
    case missingToken(String)
    case missingFile(String)
    case inconsistent(String)
    case noSpeech(String)
    case noSpeakerPosition

    public var description: String {
        switch self {
        case let .missingToken(t): return "the ChatTTS tokenizer has no '\(t)' token"
        case let .missingFile(f): return "missing \(f) (MiniCPM-o's vocoder weights)"
        case let .inconsistent(s): return s
        case let .noSpeech(d): return "\(d) has no speech output (no tts_config, or init_tts is false)"
        case .noSpeakerPosition: return "the prompt has no <|spk|> token to take the speaker vector from"
        }
    }
}

extension MiniCPMOModel {
    /// Loads the speech stack of a checkpoint directory (also without language-model weights). A
    /// checkpoint without it fails with one line naming what is missing.
    static func loadSpeech(directory: String, config: ModelConfig, checkpoint: Checkpoint,
                           quantize: WeightFormat? = nil) throws -> SpeechModel {
        guard let tc = try TTSConfig.decode(config, source: directory + "/config.json") else { throw SpeechError.noSpeech(directory) }
        try checkpoint.requirePart("tts.", "speech weights (tts.*)", for: "speak")
        let tts = try ConditionalChatTTS.load(checkpoint, config: tc, quantize: quantize)
        let dvae = try loadDVAE(checkpoint)
        let vocos = try SpeechModel.loadVocos(directory: directory)
        let folder = URL(fileURLWithPath: directory).appendingPathComponent("assets/chattts_tokenizer")
        guard FileManager.default.fileExists(atPath: folder.path) else { throw SpeechError.missingFile(folder.path + " (the ChatTTS tokenizer)") }
        let tokenizer = try WordPieceTokenizer(directory: folder)
        return try SpeechModel(tts: tts, dvae: dvae, vocos: vocos, tokenizer: tokenizer)
    }

    static func loadDVAE(_ checkpoint: Checkpoint) throws -> DVAEDecoder {
        try checkpoint.requirePart("tts.dvae.", "DVAE weights (tts.dvae.*)", for: "speak")
        let reader = checkpoint.reader(prefix: "tts.dvae.")
        let dvae = DVAEDecoder(reader: reader)
        try reader.validate()
        return dvae
    }

    /// The TTS, DVAE, Vocos and ChatTTS tokenizer, loaded on first use.
    public func speech() throws -> SpeechModel {
        try lazily(\.speechResult) {
            try Self.loadSpeech(directory: directory, config: config, checkpoint: checkpoint, quantize: speechQuantization)
        }
    }

    /// The speech stack's configuration (`tts_config`), without its weights.
    public func ttsConfig() throws -> TTSConfig {
        guard let tc = try TTSConfig.decode(config, source: directory + "/config.json") else { throw SpeechError.noSpeech(directory) }
        return tc
    }

    /// The DVAE decoder alone (the probe needs nothing else of the speech stack).
    public func dvae() throws -> DVAEDecoder {
        if case let .success(s)? = lock.withLock({ speechResult }) { return s.dvae }
        return try lazily(\.dvaeResult) { try Self.loadDVAE(checkpoint) }
    }

    /// Vocos alone, from `assets/Vocos.pt`.
    public func vocos() throws -> Vocos {
        if case let .success(s)? = lock.withLock({ speechResult }) { return s.vocos }
        return try lazily(\.vocosResult) { try SpeechModel.loadVocos(directory: directory) }
    }
}

/// A part of the checkpoint that is absent as a whole.
public struct MissingPartError: Error, CustomStringConvertible {
    public var source: String
    public var part: String
    public var task: String
    public var description: String { "this checkpoint has no \(part), so it cannot \(task) (\(source))" }
}

extension Checkpoint {
    /// One line for a part missing as a whole, instead of one per tensor.
    func requirePart(_ prefix: String, _ part: String, for task: String) throws {
        guard tensorNames.contains(where: { $0.hasPrefix(prefix) }) else { throw MissingPartError(source: directory, part: part, task: task) }
    }
}
