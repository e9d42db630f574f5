import Crypto
import Foundation
import Hummingbird

/// A stand-in for the Hugging Face hub on loopback, answering as the hub does: the revision API,
/// `resolve` HEADs with X-Repo-Commit and ETag (X-Linked-Etag/Size and a redirect to a "CDN" for LFS
/// files), and the CDN's bytes with Range. Faults can be injected per file: a connection dropped
/// after some bytes, or a flipped byte.
public final class StandInHub: @unchecked Sendable {
    public struct Repo: Sendable {
        public var id: String
        public var commit: String
        public var files: [String: Data]
        public init(id: String, commit: String, files: [String: Data]) {
            self.id = id
            self.commit = commit
            self.files = files
        }

        /// A folder's files as a repo (nested folders included), with a commit id derived from them.
        public init(id: String, folder: URL) throws {
            var files: [String: Data] = [:]
            for case let rel as String in FileManager.default.enumerator(atPath: folder.path)! {
                let url = folder.appendingPathComponent(rel)
                var isDir: ObjCBool = false
                guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir), !isDir.boolValue else { continue }
                files[rel] = try Data(contentsOf: url)
            }
            var h = Insecure.SHA1()
            for k in files.keys.sorted() { h.update(data: Data(k.utf8)); h.update(data: files[k]!) }
            self.init(id: id, commit: hex(h.finalize()), files: files)
        }
    }

    public struct Faults: Sendable {
        /// path → bytes after which the next CDN response is cut off (once).
        public var cutAfter: [String: Int] = [:]
        /// Files whose CDN bytes have one byte flipped.
        public var corrupt: Set<String> = []
        public init() {}
    }

    private let lock = NSLock()
    private var repos: [String: Repo] = [:]
    private var _faults = Faults()
    private var _requests: [String] = []
    public private(set) var port = 0
    private var task: Task<Void, Error>?

    public init(repos: [Repo]) {
        for r in repos { self.repos[r.id] = r }
    }

    public var faults: Faults {
        get { lock.withLock { _faults } }
        set { lock.withLock { _faults = newValue } }
    }
    /// "METHOD path [range]" of every request so far.
    public var requests: [String] { lock.withLock { _requests } }
    public var endpoint: String { "http://127.0.0.1:\(port)" }

    /// The etag the hub gives an LFS file: its sha256.
    public static func sha256(_ data: Data) -> String { hex(SHA256.hash(data: data)) }

    static func isLFS(_ path: String) -> Bool {
        [".safetensors", ".gz", ".pt", ".bin", ".wav", ".png"].contains { path.hasSuffix($0) }
    }

    public func start(port: Int = 0) async throws {
        let router = Router()
        router.get("/api/models/{org}/{name}/revision/{rev}") { _, c in try self.revision(c) }
        router.on("/{org}/{name}/resolve/{rev}/**", method: .head) { r, c in try self.resolve(r, c, head: true) }
        router.get("/{org}/{name}/resolve/{rev}/**") { r, c in try self.resolve(r, c, head: false) }
        router.get("/cdn/{org}/{name}/{sha}") { r, c in try self.cdn(r, c) }
        let (ports, cont) = AsyncStream<Int>.makeStream()
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: port)),
                              onServerRunning: { cont.yield($0.localAddress?.port ?? 0) })
        task = Task { try await app.run() }
        for await p in ports { self.port = p; break }
    }

    public func stop() async {
        task?.cancel()
        _ = await task?.result
    }

    private func log(_ r: Request) {
        let range = r.headers[.range].map { " \($0)" } ?? ""
        lock.withLock { _requests.append("\(r.method) \(r.uri.path)\(range)") }
    }

    private func repo(_ c: BasicRequestContext) throws -> Repo {
        let id = "\(try c.parameters.require("org"))/\(try c.parameters.require("name"))"
        guard let r = lock.withLock({ repos[id] }) else {
            throw HTTPError(.notFound, headers: [.init("X-Error-Code")!: "RepositoryNotFound"], message: "Repository not found")
        }
        return r
    }

    private func checkRevision(_ rev: String, _ repo: Repo) throws {
        guard rev == "main" || rev == repo.commit else {
            throw HTTPError(.notFound, headers: [.init("X-Error-Code")!: "RevisionNotFound"], message: "Revision not found")
        }
    }

    func revision(_ c: BasicRequestContext) throws -> Response {
        let repo = try self.repo(c)
        try checkRevision(try c.parameters.require("rev"), repo)
        let body: [String: Any] = ["id": repo.id, "modelId": repo.id, "sha": repo.commit,
                                   "siblings": repo.files.keys.sorted().map { ["rfilename": $0] }]
        return Response(status: .ok, headers: [.contentType: "application/json"],
                        body: .init(byteBuffer: ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: body))))
    }

    func resolve(_ r: Request, _ c: BasicRequestContext, head: Bool) throws -> Response {
        log(r)
        let repo = try self.repo(c)
        try checkRevision(try c.parameters.require("rev"), repo)
        let path = c.parameters.getCatchAll().joined(separator: "/")
        guard let data = repo.files[path] else {
            throw HTTPError(.notFound, headers: [.init("X-Error-Code")!: "EntryNotFound"], message: "Entry not found")
        }
        var headers: HTTPFields = [.init("X-Repo-Commit")!: repo.commit]
        if Self.isLFS(path) {
            let sha = hex(SHA256.hash(data: data))
            headers[.init("X-Linked-Etag")!] = "\"\(sha)\""
            headers[.init("X-Linked-Size")!] = String(data.count)
            headers[.eTag] = "\"\(sha)\""
            // the bytes live on another host, as the hub's CDN
            headers[.location] = "http://localhost:\(port)/cdn/\(repo.id)/\(sha)"
            return Response(status: .found, headers: headers)
        }
        var blob = Insecure.SHA1()
        blob.update(data: Data("blob \(data.count)\0".utf8))
        blob.update(data: data)
        headers[.eTag] = "\"\(hex(blob.finalize()))\""
        if head {
            headers[.contentLength] = String(data.count)
            return Response(status: .ok, headers: headers)
        }
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    func cdn(_ r: Request, _ c: BasicRequestContext) throws -> Response {
        log(r)
        let repo = try self.repo(c)
        let sha = try c.parameters.require("sha")
        guard let (path, original) = repo.files.first(where: { Self.isLFS($0.key) && hex(SHA256.hash(data: $0.value)) == sha }) else {
            throw HTTPError(.notFound)
        }
        var data = original
        let (cut, corrupt): (Int?, Bool) = lock.withLock {
            defer { _faults.cutAfter[path] = nil }
            return (_faults.cutAfter[path], _faults.corrupt.contains(path))
        }
        if corrupt, !data.isEmpty { data[data.count / 2] ^= 0x5A }
        var start = 0
        var status = HTTPResponse.Status.ok
        var headers: HTTPFields = [.contentType: "application/octet-stream"]
        if let range = r.headers[.range], range.hasPrefix("bytes="), range.hasSuffix("-"), let from = Int(range.dropFirst(6).dropLast()) {
            guard from < data.count else { return Response(status: .rangeNotSatisfiable) }
            start = from
            status = .partialContent
            headers[.contentRange] = "bytes \(from)-\(data.count - 1)/\(data.count)"
        }
        let body = data[start...]
        headers[.contentLength] = String(body.count)
        guard let cut, cut < body.count else {
            return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: body)))
        }
        // the connection drops partway, as a flaky network does
        return Response(status: status, headers: headers, body: ResponseBody(contentLength: body.count) { writer in
            try await writer.write(ByteBuffer(bytes: body.prefix(cut)))
            try await Task.sleep(for: .milliseconds(50))
            throw CancellationError()
        })
    }
}

func hex<D: Sequence>(_ digest: D) -> String where D.Element == UInt8 { digest.map { String(format: "%02x", $0) }.joined() }
