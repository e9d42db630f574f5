import Foundation
import TestSupport
import Testing
@testable import Weights

/// Writes a file with a hand-made header (so malformed ones can be built) and `data` bytes.
func makeFile(header: String, data: [UInt8], headerLength: UInt64? = nil, name: String = #function) throws -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("minicpmo-weights-tests-\(getpid())")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    let path = dir.appendingPathComponent(name.filter { $0.isLetter || $0.isNumber } + ".safetensors").path
    var bytes = [UInt8]()
    var n = (headerLength ?? UInt64(header.utf8.count)).littleEndian
    withUnsafeBytes(of: &n) { bytes += $0 }
    bytes += Array(header.utf8) + data
    try Data(bytes).write(to: URL(fileURLWithPath: path))
    return path
}

func expectError(_ path: String, _ check: (WeightsError) -> Bool, _ comment: Comment) {
    do {
        _ = try SafetensorsFile(path: path)
        Issue.record("expected an error: \(comment)")
    } catch let e as WeightsError {
        #expect(check(e), "\(comment): got \(e)")
        #expect(e.description.contains(path) || e.description.contains((path as NSString).lastPathComponent), "message names the file")
    } catch {
        Issue.record("unexpected error type \(error)")
    }
}

@Suite struct SafetensorsTests {
    @Test func readsEveryDtype() throws {
        let entries: [SafetensorsWriter.Entry] = [
            .f32("f", shape: [2, 2], [1, -2, 3.5, 4]),
            .i64("l", shape: [3], [-1, 0, 1 << 40]),
            SafetensorsWriter.Entry(name: "h", dtype: .f16, shape: [2], bytes: [Float16(1.5), Float16(-2)].withUnsafeBytes { Data($0) }),
            SafetensorsWriter.Entry(name: "b", dtype: .bf16, shape: [2], bytes: [UInt16(0x3FC0), UInt16(0xC000)].withUnsafeBytes { Data($0) }),
            SafetensorsWriter.Entry(name: "i8", dtype: .i8, shape: [2], bytes: Data([0xFF, 0x05])),
            SafetensorsWriter.Entry(name: "u8", dtype: .u8, shape: [2], bytes: Data([0xFF, 0x05])),
            SafetensorsWriter.Entry(name: "i32", dtype: .i32, shape: [1], bytes: [Int32(-7)].withUnsafeBytes { Data($0) }),
            .f32("empty", shape: [0, 3], []),
        ]
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("rt-\(getpid()).safetensors").path
        try SafetensorsWriter.write(entries, to: path, metadata: ["format": "pt"])
        let f = try SafetensorsFile(path: path)
        #expect(f.metadata["format"] == "pt")
        #expect(try f.tensor("f").floats() == [1, -2, 3.5, 4])
        #expect(try f.tensor("f").shape == [2, 2])
        #expect(try f.tensor("l").integers() == [-1, 0, 1 << 40])
        #expect(try f.tensor("h").floats() == [1.5, -2])
        #expect(try f.tensor("b").floats() == [1.5, -2])
        #expect(try f.tensor("i8").integers() == [-1, 5])
        #expect(try f.tensor("u8").integers() == [255, 5])
        #expect(try f.tensor("i32").integers() == [-7])
        #expect(try f.tensor("empty").elementCount == 0)
        #expect(throws: WeightsError.self) { try f.tensor("nope") }
    }

    @Test func fileShorterThanLengthField() throws {
        let dir = FileManager.default.temporaryDirectory
        let path = dir.appendingPathComponent("short-\(getpid()).safetensors").path
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: path))
        expectError(path, { if case .truncated = $0 { return true } else { return false } }, "3-byte file")
    }

    @Test func headerLengthPastEnd() throws {
        let path = try makeFile(header: "{}", data: [], headerLength: 1000)
        expectError(path, { if case .truncated = $0 { return true } else { return false } }, "header past end")
        let huge = try makeFile(header: "{}", data: [], headerLength: UInt64.max, name: "huge")
        expectError(huge, { if case .truncated = $0 { return true } else { return false } }, "header length 2^64-1")
    }

    @Test func badJSON() throws {
        for (i, h) in ["{", "[1,2]", "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}", "nonsense", "{\"a\":}"].enumerated() {
            let path = try makeFile(header: h, data: [0, 0, 0, 0], name: "badjson\(i)")
            expectError(path, { if case .badHeader = $0 { return true } else { return false } }, "header \(h)")
        }
    }

    @Test func overlappingOffsets() throws {
        let h = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#
        let path = try makeFile(header: h, data: Array(repeating: 0, count: 12))
        expectError(path, { e in
            if case let .overlap(_, a, b) = e { return [a, b].sorted() == ["a", "b"] } else { return false }
        }, "overlap")
    }

    @Test func offsetsOutOfRange() throws {
        let h = #"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#
        let path = try makeFile(header: h, data: Array(repeating: 0, count: 8))
        expectError(path, { $0.description.contains("'w'") }, "data past the end")
        let rev = try makeFile(header: #"{"w":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}"#, data: Array(repeating: 0, count: 8), name: "rev")
        expectError(rev, { if case .badTensor(_, "w", _) = $0 { return true } else { return false } }, "reversed offsets")
        let neg = try makeFile(header: #"{"w":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}}"#, data: [0, 0, 0, 0], name: "neg")
        expectError(neg, { if case .badTensor(_, "w", _) = $0 { return true } else { return false } }, "negative offset")
    }

    @Test func unknownDtype() throws {
        let path = try makeFile(header: #"{"w":{"dtype":"F8_E9M9","shape":[4],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0])
        expectError(path, { if case let .badTensor(_, "w", r) = $0 { return r.contains("F8_E9M9") } else { return false } }, "dtype")
    }

    @Test func shapeByteSizeMismatch() throws {
        let path = try makeFile(header: #"{"w":{"dtype":"BF16","shape":[3,3],"data_offsets":[0,16]}}"#, data: Array(repeating: 0, count: 16))
        expectError(path, { if case .badTensor(_, "w", _) = $0 { return true } else { return false } }, "size mismatch")
        let bad = try makeFile(header: #"{"w":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0], name: "frac")
        expectError(bad, { if case .badTensor(_, "w", _) = $0 { return true } else { return false } }, "fractional shape")
        let ovf = try makeFile(header: #"{"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0], name: "ovf")
        expectError(ovf, { if case .badTensor(_, "w", _) = $0 { return true } else { return false } }, "overflowing shape")
    }

    @Test func duplicateNames() throws {
        let h = #"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#
        let path = try makeFile(header: h, data: Array(repeating: 0, count: 8))
        expectError(path, { $0.description.contains("duplicate") && $0.description.contains("\"w\"") }, "duplicate")
    }

    @Test func truncatedRealFixture() throws {
        let src = fixtures.appendingPathComponent("models/tiny-qwen2-gqa/model.safetensors")
        let data = try Data(contentsOf: src)
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("cut-\(getpid()).safetensors").path
        try data.prefix(data.count - 1000).write(to: URL(fileURLWithPath: path))
        expectError(path, { if case let .truncated(_, r) = $0 { return r.contains("tensor '") } else { return false } }, "cut fixture")
    }

    /// Random byte corruption of a valid file: every outcome is a clean error or a valid file.
    @Test func corruptedHeadersNeverCrash() throws {
        let entries: [SafetensorsWriter.Entry] = [.f32("a", shape: [2, 3], [1, 2, 3, 4, 5, 6]), .i64("b", shape: [2], [7, 8])]
        let good = SafetensorsWriter.encode(entries)
        var rng = SystemRandomNumberGenerator()
        _ = rng
        var state: UInt64 = 42
        func next() -> Int { state = state &* 6364136223846793005 &+ 1442695040888963407; return Int(state >> 33) }
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("fuzz-\(getpid()).safetensors").path
        for _ in 0..<300 {
            var bytes = [UInt8](good)
            for _ in 0..<(1 + next() % 3) { bytes[next() % bytes.count] = UInt8(next() % 256) }
            if next() % 4 == 0 { bytes.removeLast(next() % bytes.count) }
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            if let f = try? SafetensorsFile(path: path) {
                for name in f.names { _ = try f.tensor(name).floats() }  // views in bounds by construction
            }
        }
    }
}

let fixtures = fixturesDirectory
