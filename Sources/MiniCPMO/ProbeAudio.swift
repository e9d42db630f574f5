import Foundation

extension Probe {
    /// input_features [N, mel, T] → last_hidden_state [N, T', C], projected [N, T', H], pooled [N, n, H].
    /// The probe has no lengths: every row is T real frames under the 50-frame chunk mask.
    static func audio(_ m: AudioModel, inputs: SafetensorsFile) throws -> [SafetensorsWriter.Entry] {
        let bins = m.config.numMelBins
        let expected = "[N, \(bins), T]"
        let features = try floatInput(inputs, "input_features", rank: 3, expected: expected)
        guard features.shape[1] == bins else {
            throw ProbeError.input("input 'input_features' has shape \(features.shape), expected \(expected)")
        }
        let (n, t) = (features.shape[0], features.shape[2])
        guard t <= 2 * m.config.maxSourcePositions else {
            throw ProbeError.input("input 'input_features' has \(t) frames; at most \(2 * m.config.maxSourcePositions) (30 s) fit the encoder")
        }
        let values = features.floats()
        let frames = WhisperEncoder.outputFrames(t), keep = m.tokens(frames: t)
        let c = m.config.dModel, h = m.config.embedDim
        var hidden: [Float] = [], projected: [Float] = [], pooled: [Float] = []
        for i in 0..<n {
            let row = Array(values[(i * bins * t)..<((i + 1) * bins * t)])
            let out = row.withUnsafeBufferPointer { m.forward(mel: $0.baseAddress!, frames: t) }
            hidden += UnsafeBufferPointer(start: out.hidden.pointer, count: frames * c)
            projected += UnsafeBufferPointer(start: out.projected.pointer, count: frames * h)
            pooled += UnsafeBufferPointer(start: out.pooled.pointer, count: keep * h)
        }
        return [.f32("last_hidden_state", shape: [n, frames, c], hidden), .f32("projected", shape: [n, frames, h], projected),
                .f32("pooled", shape: [n, keep, h], pooled)]
    }
}
