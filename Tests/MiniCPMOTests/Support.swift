import Foundation
@testable import MiniCPMO

let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures")

func modelDir(_ name: String) -> String { fixtures.appendingPathComponent("models/\(name)").path }

func pcc(_ a: [Float], _ b: [Float]) -> Double {
    precondition(a.count == b.count && !a.isEmpty)
    let n = Double(a.count)
    let ma = a.reduce(0.0) { $0 + Double($1) } / n, mb = b.reduce(0.0) { $0 + Double($1) } / n
    var sab = 0.0, saa = 0.0, sbb = 0.0
    for (x, y) in zip(a, b) {
        let dx = Double(x) - ma, dy = Double(y) - mb
        sab += dx * dy; saa += dx * dx; sbb += dy * dy
    }
    return sab / (saa * sbb).squareRoot()
}

/// Loaded fixtures are shared between tests (loading the tokenizer takes a moment in debug builds).
enum Loaded {
    static let minicpmo = try! MiniCPMOModel(directory: modelDir("tiny-minicpmo"))
    static let qwen2 = try! MiniCPMOModel(directory: modelDir("tiny-qwen2"))
}
