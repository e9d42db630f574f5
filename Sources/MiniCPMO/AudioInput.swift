import Foundation
import Media

extension MiniCPMOModel {
    /// Encodes a 16 kHz mono clip: 30-second pieces → Whisper log-mel → encoder → projector → pooling.
    public func encodeAudio(samples16k samples: [Float]) throws -> EncodedAudio {
        guard !samples.isEmpty else { throw AudioError.noAudio }
        let pieces = WhisperFeatures.pieces(of: samples).map { WhisperFeatures.logMel(samples16k: $0) }
        return try encodeAudio(melPieces: pieces, samples: samples.count)
    }

    /// Decodes a WAV file (any PCM/float layout, mixed to mono, resampled to 16 kHz) and encodes it.
    public func encodeAudio(contentsOf url: URL) throws -> EncodedAudio {
        try encodeAudio(samples16k: try WAVDecoder().load16k(contentsOf: url))
    }
}

extension Probe {
    /// waveform [S] (16 kHz mono) → input_features [1, mel, frames]: the real frames of every 30-second
    /// piece, pieces concatenated in time (each piece normalized on its own, as the reference splits
    /// long audio before feature extraction); piece_frames [P] gives the split.
    static func mel(inputs: SafetensorsFile) throws -> [SafetensorsWriter.Entry] {
        let wave = try floatInput(inputs, "waveform", rank: 1, expected: "[S] (mono, 16 kHz)")
        let samples = wave.floats()
        let pieces = WhisperFeatures.pieces(of: samples).map { WhisperFeatures.logMel(samples16k: $0) }
        let bins = WhisperFeatures.melBins
        let total = pieces.reduce(0) { $0 + $1.frames }
        var out = [Float](repeating: 0, count: bins * total)
        var offset = 0
        for piece in pieces {
            for b in 0..<bins {
                out.replaceSubrange((b * total + offset)..<(b * total + offset + piece.frames),
                                    with: piece.values[(b * piece.frames)..<((b + 1) * piece.frames)])
            }
            offset += piece.frames
        }
        return [.f32("input_features", shape: [1, bins, total], out),
                .i64("piece_frames", shape: [pieces.count], pieces.map { Int64($0.frames) })]
    }
}
