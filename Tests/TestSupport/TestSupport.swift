import Foundation

/// Helpers shared by the test targets.

/// Tests/Fixtures, found from this file's location (no bundle resources needed).
public let fixturesDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures")

public func fixtureModel(_ name: String) -> String { fixturesDirectory.appendingPathComponent("models/\(name)").path }

/// Pearson correlation, accumulated in Double.
public func pcc(_ a: [Float], _ b: [Float]) -> Double {
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

public func maxAbs(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count)
    return zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) }
}
