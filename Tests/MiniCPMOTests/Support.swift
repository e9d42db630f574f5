import Foundation
@_exported import TestSupport
@testable import MiniCPMO

func modelDir(_ name: String) -> String { fixtureModel(name) }

/// Loaded fixtures are shared between tests (loading the tokenizer takes a moment in debug builds).
enum Loaded {
    static let minicpmo = try! MiniCPMOModel(directory: modelDir("tiny-minicpmo"))
}
