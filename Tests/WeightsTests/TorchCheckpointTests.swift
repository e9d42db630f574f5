import Foundation
import TestSupport
import Testing
@testable import Weights

/// Fixtures from tools/reference/torch_pickle.py.
private let torchDir = fixturesDirectory.appendingPathComponent("torch")
private func validPath(_ name: String) -> String { torchDir.appendingPathComponent("valid/\(name)").path }
private func hostilePath(_ name: String) -> String { torchDir.appendingPathComponent("hostile/\(name)").path }

/// hostile/expected.json: file name → a substring its error must contain.
private let hostileExpectations: [String: String] = {
    guard let data = FileManager.default.contents(atPath: hostilePath("expected.json")),
          let map = try? JSONSerialization.jsonObject(with: data) as? [String: String] else { return [:] }
    return map
}()

private func sameBytes(_ a: TensorView, _ b: TensorView) -> Bool {
    a.byteCount == b.byteCount && (a.byteCount == 0 || memcmp(a.data, b.data, a.byteCount) == 0)
}

@Suite struct TorchCheckpointTests {
    @Test(arguments: ["basic", "basic-protocol5", "nested", "vocos", "zip64-renamed", "handmade"])
    func equalsSafetensorsTwin(_ name: String) throws {
        let pt = try TorchCheckpointFile(path: validPath("\(name).pt"))
        let twin = try SafetensorsFile(path: validPath("\(name).safetensors"))
        #expect(pt.tensors.keys.sorted() == twin.tensors.keys.sorted())
        #expect(Set(pt.names) == Set(pt.tensors.keys) && pt.names.count == pt.tensors.count)
        for (key, expected) in twin.tensors {
            let t = try pt.tensor(key)
            #expect(t.dtype == expected.dtype, "\(name): \(key)")
            #expect(t.shape == expected.shape, "\(name): \(key)")
            #expect(sameBytes(t, expected), "\(name): \(key) differs")
            #expect(t.name == key && t.file == "\(name).pt")
        }
    }

    @Test func basicViewsShareOrCopy() throws {
        let pt = try TorchCheckpointFile(path: validPath("basic.pt"))
        #expect(pt.archiveName == "archive")
        #expect(pt.names.first == "f32" && pt.names.last == "param", "pickle order")
        // Row-major tensors point into the mapping; strided ones are copied.
        for name in ["f32", "f16", "bf16", "i64", "shared_a", "shared_b", "scalar", "param"] {
            #expect(try pt.tensor(name).owner is MappedRegion, "\(name) is mapped")
        }
        for name in ["transposed", "strided", "expanded", "shared_t"] {
            #expect(try pt.tensor(name).owner is OwnedBytes, "\(name) is copied")
        }
        // shared_a = base[2:8] and shared_b = base[10:20] view one storage, 8 floats apart.
        let a = try pt.tensor("shared_a"), b = try pt.tensor("shared_b")
        #expect(b.data - a.data == 32)
        #expect(a.floats() == [2, 3, 4, 5, 6, 7])
        #expect(try pt.tensor("shared_t").floats() == [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11])
        #expect(try pt.tensor("i64").integers() == [-1, 0, 1 << 40, -(1 << 62)])
        #expect(try pt.tensor("scalar").shape == [] && pt.tensor("scalar").floats() == [3.5])
        #expect(try pt.tensor("empty").shape == [0, 4] && pt.tensor("empty").byteCount == 0)
        #expect(try pt.tensor("bool").integers() == [1, 0, 1])
        #expect(try pt.tensor("expanded").shape == [2, 3])
        #expect(pt.scalars.isEmpty)
        #expect(throws: WeightsError.self) { try pt.tensor("nope") }
    }

    @Test func nestedDictsFlattenWithDots() throws {
        let pt = try TorchCheckpointFile(path: validPath("nested.pt"))
        #expect(pt.names == ["model.0.weight", "model.0.bias", "model.1.weight", "model.1.bias", "optimizer.state.0.exp_avg"])
        #expect(pt.scalars == ["step": .int(3), "lr": .float(0.5), "name": .string("tiny"), "done": .bool(true), "none": TorchScalar.none])
    }

    @Test func vocosLayout() throws {
        let pt = try TorchCheckpointFile(path: validPath("vocos.pt"))
        var expected = ["backbone.embed.weight": [16, 8, 7], "backbone.embed.bias": [16],
                        "backbone.norm.weight": [16], "backbone.norm.bias": [16],
                        "backbone.final_layer_norm.weight": [16], "backbone.final_layer_norm.bias": [16],
                        "head.out.weight": [18, 16], "head.out.bias": [18], "head.istft.window": [16],
                        "feature_extractor.mel_spec.spectrogram.window": [16],
                        "feature_extractor.mel_spec.mel_scale.fb": [9, 8]]
        for i in 0..<2 {
            let p = "backbone.convnext.\(i)."
            for (k, v) in ["dwconv.weight": [16, 1, 7], "dwconv.bias": [16], "norm.weight": [16], "norm.bias": [16],
                           "pwconv1.weight": [32, 16], "pwconv1.bias": [32], "pwconv2.weight": [16, 32],
                           "pwconv2.bias": [16], "gamma": [16]] { expected[p + k] = v }
        }
        #expect(pt.tensors.mapValues(\.shape) == expected)
        #expect(pt.tensors.values.allSatisfy { $0.dtype == .f32 && $0.owner is MappedRegion })
        // torch aligns storages to 64 bytes, so mapped views are aligned for the kernels.
        #expect(pt.tensors.values.allSatisfy { Int(bitPattern: $0.data) % 64 == 0 })
        #expect(try pt.tensor("head.out.weight").matrix().rows == 18)
        // The tensors bind through the same reader the models use.
        let r = Checkpoint(tensors: pt.tensors, source: pt.path).reader()
        #expect(r.matrix("backbone.embed.weight", shape: [16, 8, 7]).rows == 16)
        #expect(r.vector("backbone.convnext.1.gamma", count: 16) == (try pt.tensor("backbone.convnext.1.gamma").floats()))
        try r.validate()
    }

    @Test func handmadeOpcodes() throws {
        let pt = try TorchCheckpointFile(path: validPath("handmade.pt"))
        #expect(pt.names == ["v1", "param", "od.x"])
        #expect(pt.scalars == ["dev": .string("cuda:0"), "neg": .int(-5), "pi": .float(3.25)])
        #expect(try pt.tensor("v1").floats() == [1, 2, 3, 4])
        #expect(try pt.tensor("param").floats() == [0, 2, 4])
        #expect(try pt.tensor("od.x").integers() == [7, -9])
    }

    @Test func zip64AndFolderName() throws {
        let pt = try TorchCheckpointFile(path: validPath("zip64-renamed.pt"))
        #expect(pt.archiveName == "mymodel")
        #expect(pt.tensors.count == 19)
    }

    @Test func everyHostileFileHasAnExpectation() throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: torchDir.appendingPathComponent("hostile").path)
            .filter { $0.hasSuffix(".pt") }
        #expect(!files.isEmpty)
        #expect(Set(files) == Set(hostileExpectations.keys))
    }

    @Test(arguments: hostileExpectations.keys.sorted())
    func rejectsHostile(_ name: String) throws {
        let path = hostilePath(name)
        let expected = try #require(hostileExpectations[name])
        do {
            let f = try TorchCheckpointFile(path: path)
            Issue.record("\(name) loaded \(f.names) instead of failing with '\(expected)'")
        } catch let e as TorchCheckpointError {
            #expect(e.description.contains(expected), "\(name): \(e)")
            #expect(e.description.contains(path), "\(name): the message names the file")
            if expected.hasPrefix("'") {
                guard case .forbiddenGlobal = e else { Issue.record("\(name): \(e) is not forbiddenGlobal"); return }
            }
        }
    }

    @Test func limits() throws {
        var l = TorchCheckpointFile.Limits()
        l.maxCopiedBytes = 16
        #expect(throws: TorchCheckpointError.self) { try TorchCheckpointFile(path: validPath("basic.pt"), limits: l) }
        l = .init()
        l.maxDepth = 2
        #expect(throws: TorchCheckpointError.self) { try TorchCheckpointFile(path: validPath("vocos.pt"), limits: l) }
        l = .init()
        l.maxTensors = 10
        #expect(throws: TorchCheckpointError.self) { try TorchCheckpointFile(path: validPath("vocos.pt"), limits: l) }
        l = .init()
        l.maxStack = 8
        #expect(throws: TorchCheckpointError.self) { try TorchCheckpointFile(path: validPath("vocos.pt"), limits: l) }
        l = .init()
        l.maxPickleBytes = 100
        #expect(throws: TorchCheckpointError.self) { try TorchCheckpointFile(path: validPath("vocos.pt"), limits: l) }
        #expect(throws: TorchCheckpointError.self) { try TorchCheckpointFile(path: validPath("missing.pt")) }
        #expect(throws: TorchCheckpointError.self) { try TorchCheckpointFile(path: validPath("")) }
    }

    /// Random truncations and byte flips (biased towards data.pkl, with its CRC check off so they reach
    /// the unpickler) either load or throw; every loaded tensor's bytes are readable.
    /// TORCH_FUZZ_CASES=N runs N cases instead of 400.
    @Test func fuzzNeverCrashes() throws {
        var rng = SplitMix64(seed: 0x70_7263_6821)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("minicpmo-torch-fuzz-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let sources = try ["basic", "nested", "vocos"].map { try [UInt8](Data(contentsOf: URL(fileURLWithPath: validPath("\($0).pt")))) }
        var limits = TorchCheckpointFile.Limits()
        limits.verifyPickleChecksum = false
        var loaded = 0, rejected = 0
        let cases = ProcessInfo.processInfo.environment["TORCH_FUZZ_CASES"].flatMap { Int($0) } ?? 400
        for i in 0..<cases {
            var bytes = sources[i % sources.count]
            // data.pkl is the first entry: its bytes run from after its local header to the next one.
            let start = 30 + Int(bytes[26]) + Int(bytes[27]) << 8 + Int(bytes[28]) + Int(bytes[29]) << 8
            let end = (start..<bytes.count - 4).first { bytes[$0..<$0 + 4] == [0x50, 0x4B, 0x03, 0x04] } ?? bytes.count
            switch rng.next() % 4 {
            case 0:
                bytes.removeLast(Int(rng.next() % UInt64(bytes.count)))
            case 1:
                for _ in 0..<1 + Int(rng.next() % 8) {
                    bytes[Int(rng.next() % UInt64(bytes.count))] ^= UInt8(1 << (rng.next() % 8))
                }
            default:
                for _ in 0..<1 + Int(rng.next() % 4) {
                    bytes[start + Int(rng.next() % UInt64(end - start))] = UInt8(truncatingIfNeeded: rng.next())
                }
            }
            let path = dir.appendingPathComponent("case\(i % 16).pt").path
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            do {
                let f = try TorchCheckpointFile(path: path, limits: limits)
                var sum: UInt8 = 0
                for t in f.tensors.values {
                    for k in 0..<t.byteCount { sum &+= t.data.load(fromByteOffset: k, as: UInt8.self) }
                    #expect(t.byteCount == t.elementCount * t.dtype.size)
                }
                _ = sum
                loaded += 1
            } catch is TorchCheckpointError {
                rejected += 1
            }
        }
        #expect(loaded + rejected == cases)
        #expect(rejected > cases / 4, "most mutations are caught (\(rejected) of \(cases))")
    }
}

/// A small deterministic generator for the fuzz test.
private struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE5_E9B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
