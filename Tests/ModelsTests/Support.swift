import Foundation
@_exported import TestSupport
@testable import MiniCPMO

let fixtures = fixturesDirectory

func modelDir(_ name: String) -> String { fixtureModel(name) }

func reference(_ name: String) throws -> SafetensorsFile {
    try SafetensorsFile(path: fixtures.appendingPathComponent("reference/\(name).safetensors").path)
}
