import ArgumentParser
import Foundation
import Hub

struct DownloadCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "download",
        abstract: "Fetch a model repo from the Hugging Face hub into its cache.",
        discussion: """
        The cache is huggingface_hub's (HF_HUB_CACHE, HF_HOME/hub or ~/.cache/huggingface/hub), so what either \
        fetched the other finds. HF_ENDPOINT names another hub, HF_TOKEN authorizes gated repos, HF_HUB_OFFLINE=1 \
        forbids the network. Interrupted downloads resume; every LFS file is checked against its sha256.
        """)

    @Argument(help: "The repo: ORG/NAME or ORG/NAME@REVISION.")
    var repo: String

    @Option(name: .long, help: "Branch, tag or commit (default: main, or the @REVISION of the repo).")
    var revision: String?

    @Option(name: .long, help: "Only files matching this glob (repeatable), e.g. 'tokenizer*' or '*.json'.")
    var include: [String] = []

    func run() async throws {
        guard var r = RepoReference(repo) else { fail(HubError.invalid("'\(repo)' is not a repo id (ORG/NAME)"), code: 2) }
        if let revision { r.revision = revision }
        do {
            let dir = try await fetchModel(r, include: include)
            writeOut(dir.path + "\n")
        } catch {
            fail(error, code: 1)
        }
    }
}

/// Downloads with a progress display on stderr, then shuts the client down.
func fetchModel(_ r: RepoReference, include: [String] = []) async throws -> URL {
    let client = HubClient()
    let view = DownloadView(tty: isatty(2) == 1)
    note("downloading \(r) from \(client.endpoint) into \(client.cache.root.path)")
    do {
        let dir = try await client.download(r, include: include) { view.update($0) }
        view.done()
        await client.shutdown()
        return dir
    } catch {
        view.done()
        await client.shutdown()
        throw error
    }
}

/// Per-file progress bars and a total on a terminal (redrawn in place, ten times a second at most);
/// one line per finished file otherwise.
final class DownloadView: @unchecked Sendable {
    let tty: Bool
    private let lock = NSLock()
    private var files: [(path: String, done: Int, size: Int?)] = []
    private var finished = 0, finishedBytes = 0
    private var drawn = 0
    private var last = Date.distantPast

    init(tty: Bool) { self.tty = tty }

    func update(_ p: HubClient.Progress) {
        lock.withLock {
            switch p {
            case let .started(path, size):
                files.append((path, 0, size))
            case let .bytes(path, done, size):
                if let i = files.firstIndex(where: { $0.path == path }) { files[i] = (path, done, size) }
            case let .finished(path, size, cached):
                files.removeAll { $0.path == path }
                finished += 1
                finishedBytes += size
                if !tty { note("\(path): \(Self.bytes(size))\(cached ? " (already cached)" : "")") }
            }
            if tty && (Date().timeIntervalSince(last) > 0.1 || { if case .finished = p { true } else { false } }()) { draw() }
        }
    }

    func done() { lock.withLock { if tty { draw() } } }

    private func draw() {
        last = Date()
        var out = drawn > 0 ? "\u{1B}[\(drawn)A" : ""
        for f in files {
            out += "\r\u{1B}[K" + Self.bar(f.done, f.size) + " " + f.path + "\n"
        }
        let active = files.reduce(0) { $0 + $1.done }
        out += "\r\u{1B}[K" + "\(finished) files done, \(Self.bytes(finishedBytes + active)) in all" + "\n"
        // lines left over from a longer previous frame
        let lines = files.count + 1
        if lines < drawn { out += String(repeating: "\r\u{1B}[K\n", count: drawn - lines) + "\u{1B}[\(drawn - lines)A" }
        drawn = lines
        FileHandle.standardError.write(Data(out.utf8))
    }

    static func bar(_ done: Int, _ size: Int?) -> String {
        guard let size, size > 0 else { return "[" + String(repeating: "·", count: 24) + "] " + bytes(done) }
        let f = min(1, Double(done) / Double(size)), n = Int(f * 24)
        return "[" + String(repeating: "█", count: n) + String(repeating: "·", count: 24 - n) + "] "
            + String(format: "%3.0f%% ", f * 100) + bytes(done) + " / " + bytes(size)
    }

    static func bytes(_ n: Int) -> String {
        n >= 1 << 30 ? String(format: "%.2f GB", Double(n) / 1e9) : n >= 1 << 20 ? String(format: "%.1f MB", Double(n) / 1e6)
            : String(format: "%.1f kB", Double(n) / 1e3)
    }
}
