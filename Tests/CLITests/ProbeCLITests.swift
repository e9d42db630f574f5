import Foundation
import Testing
import TestSupport
import Weights

let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
let fixtures = fixturesDirectory

/// The built `minicpmo` next to this test binary (swift test builds every product first).
func minicpmoBinary() -> String {
    var candidates: [String] = []
    if let exe = Bundle.main.executableURL { candidates.append(exe.deletingLastPathComponent().appendingPathComponent("minicpmo").path) }
    candidates.append(URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("minicpmo").path)
    candidates.append(packageRoot.appendingPathComponent(".build/debug/minicpmo").path)
    return candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) ?? candidates[candidates.count - 1]
}

struct RunResult { var status: Int32; var stdout: String; var stderr: String }

func run(_ args: [String], stdin: String? = nil, environment: [String: String] = [:]) throws -> RunResult {
    let p = Process()
    if !environment.isEmpty { p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
    p.executableURL = URL(fileURLWithPath: minicpmoBinary())
    p.arguments = args
    let out = Pipe(), err = Pipe(), input = Pipe()
    p.standardOutput = out
    p.standardError = err
    p.standardInput = input
    try p.run()
    if let stdin { input.fileHandleForWriting.write(Data(stdin.utf8)) }
    try input.fileHandleForWriting.close()
    let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return RunResult(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self))
}

/// `run` off Swift's cooperative threads, for async tests: a subprocess waited for there would hold
/// one of the (on two cores, two) threads that every other async test needs.
func runAsync(_ args: [String], stdin: String? = nil, environment: [String: String] = [:]) async throws -> RunResult {
    try await withCheckedThrowingContinuation { c in
        DispatchQueue.global().async { c.resume(with: Result { try run(args, stdin: stdin, environment: environment) }) }
    }
}

func temp(_ name: String) -> String {
    FileManager.default.temporaryDirectory.appendingPathComponent("cli-\(getpid())-\(name)").path
}

@Suite struct ProbeCLITests {
    let model = fixtures.appendingPathComponent("models/tiny-qwen2-gqa").path

    @Test func probeLLMWritesContractOutputs() throws {
        let input = temp("in.safetensors"), output = temp("out.safetensors")
        try SafetensorsWriter.write([.init(name: "input_ids", dtype: .i32, shape: [2, 3],
                                           bytes: [Int32(1), 2, 3, 4, 5, 6].withUnsafeBytes { Data($0) })], to: input)
        let r = try run(["probe", "llm", "--model", model, "--input", input, "--output", output])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.isEmpty)
        let f = try SafetensorsFile(path: output)
        #expect(try f.tensor("logits").shape == [2, 3, 512] && f.tensor("logits").dtype == .f32)
        #expect(try f.tensor("last_hidden_state").shape == [2, 3, 96])
    }

    @Test(arguments: [
        ("missing", [SafetensorsWriter.Entry.f32("other", shape: [1], [0])], "input_ids"),
        ("rank", [SafetensorsWriter.Entry.i64("input_ids", shape: [3], [1, 2, 3])], "[N, T]"),
        ("float", [SafetensorsWriter.Entry.f32("input_ids", shape: [1, 2], [1, 2])], "I64"),
        ("range", [SafetensorsWriter.Entry.i64("input_ids", shape: [1, 2], [1, 9999])], "9999"),
        ("empty", [SafetensorsWriter.Entry.i64("input_ids", shape: [1, 0], [])], "input_ids"),
    ])
    func badInputsExitWithCode2(name: String, entries: [SafetensorsWriter.Entry], mentions: String) throws {
        let input = temp("bad-\(name).safetensors")
        try SafetensorsWriter.write(entries, to: input)
        let r = try run(["probe", "llm", "--model", model, "--input", input, "--output", temp("o.safetensors")])
        #expect(r.status == 2, "\(name): \(r.stderr)")
        #expect(r.stderr.contains(mentions), "\(name): \(r.stderr)")
        #expect(r.stderr.split(separator: "\n").count == 1, "one line: \(r.stderr)")
    }

    @Test func unreadableInputAndUnknownComponent() throws {
        let garbage = temp("garbage.safetensors")
        try Data("not a safetensors file".utf8).write(to: URL(fileURLWithPath: garbage))
        #expect(try run(["probe", "llm", "--model", model, "--input", garbage, "--output", temp("o")]).status == 2)
        #expect(try run(["probe", "nonsense", "--model", model, "--input", garbage, "--output", temp("o")]).status == 2)
    }

    @Test func missingModelDirectoryIsAClearError() throws {
        let r = try run(["probe", "llm", "--model", "/nonexistent/dir", "--input", "x", "--output", "y"])
        #expect(r.status != 0)
        #expect(r.stderr.contains("/nonexistent/dir"))
    }
}
