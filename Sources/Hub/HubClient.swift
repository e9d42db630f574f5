import AsyncHTTPClient
import Crypto
import Foundation
import NIOCore
import NIOHTTP1

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Downloads model repos from the Hugging Face hub (or `HF_ENDPOINT`) into the cache, the way
/// `huggingface_hub` does: the revision endpoint for the commit and file list, a HEAD on
/// `resolve/REVISION/PATH` for each file's etag (`X-Linked-Etag` for LFS files: their sha256) and
/// location, then the bytes into `blobs/ETAG.incomplete` (resumed with Range), checked, and renamed.
public final class HubClient: Sendable {
    public let endpoint: String
    public let cache: HubCache
    let token: String?
    let client: HTTPClient
    /// Files fetched at the same time.
    public let concurrency: Int
    /// HF_HUB_OFFLINE: never touch the network.
    public let offline: Bool
    let blobLocks = KeyedLocks()

    public struct FileInfo: Sendable {
        public var path: String
        public var commit: String
        /// sha256 for LFS files, the git blob's sha1 for others.
        public var etag: String
        public var size: Int?
        public var location: String
        public var isLFS: Bool { etag.count == 64 }
    }

    /// What a download reports, per file: bytes so far (resumed bytes included) and the size.
    public enum Progress: Sendable {
        case started(path: String, size: Int?)
        case bytes(path: String, done: Int, size: Int?)
        case finished(path: String, size: Int, cached: Bool)
    }

    public static func isOffline(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> Bool {
        ["1", "on", "yes", "true"].contains((environment["HF_HUB_OFFLINE"] ?? "").lowercased())
    }

    public init(cache: HubCache = HubCache(), environment: [String: String] = ProcessInfo.processInfo.environment, concurrency: Int = 4) {
        self.cache = cache
        var e = environment["HF_ENDPOINT"].flatMap { $0.isEmpty ? nil : $0 } ?? "https://huggingface.co"
        while e.hasSuffix("/") { e.removeLast() }
        endpoint = e
        token = (environment["HF_TOKEN"] ?? environment["HUGGING_FACE_HUB_TOKEN"]).flatMap { $0.isEmpty ? nil : $0 }
        self.concurrency = max(1, concurrency)
        offline = Self.isOffline(environment)
        var config = HTTPClient.Configuration(redirectConfiguration: .disallow)
        config.timeout = .init(connect: .seconds(10), read: .seconds(60))
        client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: config)
    }

    public func shutdown() async { try? await client.shutdown() }

    func request(_ url: String, method: HTTPMethod = .GET, range: Int? = nil) -> HTTPClientRequest {
        var r = HTTPClientRequest(url: url)
        r.method = method
        r.headers.add(name: "User-Agent", value: "minicpmo-swift")
        r.headers.add(name: "Accept-Encoding", value: "identity")
        // the token goes to the hub only, never to the CDN it redirects to
        if let token, URL(string: url)?.host == URL(string: endpoint)?.host { r.headers.add(name: "Authorization", value: "Bearer \(token)") }
        if let range { r.headers.add(name: "Range", value: "bytes=\(range)-") }
        return r
    }

    static func escape(_ s: String) -> String {
        s.split(separator: "/", omittingEmptySubsequences: false)
            .map { $0.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "/?#"))) ?? String($0) }
            .joined(separator: "/")
    }

    func check(_ response: HTTPClientResponse, _ what: String, redirectsAllowed: Bool = false) throws {
        switch response.status.code {
        case 200..<300: return
        case 300..<400 where redirectsAllowed: return
        case 300..<400: throw HubError.http("\(what): an unexpected redirect (HTTP \(response.status.code))")
        case 401, 403: throw HubError.http("\(what): HTTP \(response.status.code) — a gated or private repo needs HF_TOKEN")
        case 404: throw HubError.http("\(what): not found (HTTP 404)")
        default: throw HubError.http("\(what): HTTP \(response.status.code)")
        }
    }

    /// The commit a revision points at, and the repo's files.
    public func revision(_ r: RepoReference) async throws -> (commit: String, files: [String]) {
        var url = "\(endpoint)/api/models/\(r.id)/revision/\(Self.escape(r.revision))"
        var response = try await client.execute(request(url), timeout: .seconds(60))
        for _ in 0..<5 where (300..<400).contains(response.status.code) {  // a renamed repo
            guard let next = response.headers.first(name: "Location").flatMap({ URL(string: $0, relativeTo: URL(string: url)) })?.absoluteString,
                  URL(string: next)?.host == URL(string: endpoint)?.host else { break }
            url = next
            response = try await client.execute(request(url), timeout: .seconds(60))
        }
        try check(response, "\(r)")
        let body = try await response.body.collect(upTo: 16 << 20)
        struct Info: Decodable {
            var sha: String
            var siblings: [Sibling]?
            struct Sibling: Decodable { var rfilename: String }
        }
        guard let info = try? JSONDecoder().decode(Info.self, from: Data(body.readableBytesView)) else {
            throw HubError.http("\(r): the hub's revision answer is not understood")
        }
        return (info.sha, (info.siblings ?? []).map(\.rfilename))
    }

    /// HEAD of one file: its commit, etag, size and where its bytes are (relative redirects, from
    /// renamed repos, are followed; an absolute one is the CDN holding the bytes).
    public func metadata(_ r: RepoReference, path: String) async throws -> FileInfo {
        var url = "\(endpoint)/\(r.id)/resolve/\(Self.escape(r.revision))/\(Self.escape(path))"
        for _ in 0..<5 {
            let response = try await client.execute(request(url, method: .HEAD), timeout: .seconds(30))
            try check(response, "\(r) \(path)", redirectsAllowed: true)
            let h = response.headers
            let location = h.first(name: "Location").flatMap { URL(string: $0, relativeTo: URL(string: url)) }?.absoluteString
            // redirects that stay on the hub (renamed repos) are followed; one to another host (the
            // CDN) carries the file's metadata itself
            if (300..<400).contains(response.status.code), let location, URL(string: location)?.host == URL(string: url)?.host {
                url = location
                continue
            }
            guard let commit = h.first(name: "X-Repo-Commit"),
                  let etag = Self.normalize(h.first(name: "X-Linked-Etag") ?? h.first(name: "ETag")) else {
                throw HubError.http("\(r) \(path): the hub's answer lacks X-Repo-Commit or an ETag")
            }
            let redirect = (300..<400).contains(response.status.code)
            let size = (h.first(name: "X-Linked-Size") ?? (redirect ? nil : h.first(name: "Content-Length"))).flatMap(Int.init)
            return FileInfo(path: path, commit: commit, etag: etag, size: size, location: location ?? url)
        }
        throw HubError.http("\(r) \(path): too many redirects")
    }

    static func normalize(_ etag: String?) -> String? {
        guard var e = etag else { return nil }
        if e.hasPrefix("W/") { e.removeFirst(2) }
        e = e.trimmingCharacters(in: CharacterSet(charactersIn: "\""))
        guard !e.isEmpty, e.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" }) else { return nil }
        return e
    }

    /// Fetches the repo's files (those matching any `include` glob, all without one) into the cache
    /// and returns the snapshot folder.
    public func download(_ r: RepoReference, include: [String] = [], progress: @escaping @Sendable (Progress) -> Void = { _ in }) async throws -> URL {
        if offline { throw HubError.offline("not downloading \(r)") }
        let (commit, all) = try await revision(r)
        let files = all.filter { f in include.isEmpty || include.contains { fnmatch($0, f, 0) == 0 } }
        guard !files.isEmpty else { throw HubError.invalid("\(r) has no files matching \(include.joined(separator: ", "))") }
        let pinned = RepoReference("\(r.id)@\(commit)")!
        try await withThrowingTaskGroup(of: Void.self) { group in
            var pending = files.makeIterator()
            func next() -> Bool {
                guard let f = pending.next() else { return false }
                group.addTask { try await self.fetch(pinned, path: f, progress: progress) }
                return true
            }
            for _ in 0..<concurrency where next() {}
            while try await group.next() != nil { _ = next() }
        }
        try cache.writeRef(r, commit: commit)
        return cache.snapshot(r, commit: commit)
    }

    /// One file: skipped when its blob is there, else resumed from `.incomplete`, verified, renamed,
    /// linked into the snapshot.
    func fetch(_ r: RepoReference, path: String, progress: @escaping @Sendable (Progress) -> Void) async throws {
        let info = try await metadata(r, path: path)
        // files with the same content share a blob: one fetches it, the others then link to it
        await blobLocks.acquire(info.etag)
        do {
            try await fetchBlob(r, info, progress: progress)
            await blobLocks.release(info.etag)
        } catch {
            await blobLocks.release(info.etag)
            throw error
        }
    }

    func fetchBlob(_ r: RepoReference, _ info: FileInfo, progress: @escaping @Sendable (Progress) -> Void) async throws {
        let path = info.path
        let fm = FileManager.default
        let blobs = cache.blobs(r)
        try fm.createDirectory(at: blobs, withIntermediateDirectories: true)
        let blob = blobs.appendingPathComponent(info.etag)
        if fm.fileExists(atPath: blob.path) {
            try cache.link(r, commit: info.commit, path: path, etag: info.etag)
            let size = (try? fm.attributesOfItem(atPath: blob.path)[.size] as? Int) ?? 0
            progress(.finished(path: path, size: size ?? 0, cached: true))
            return
        }
        let partial = blobs.appendingPathComponent(info.etag + ".incomplete")
        if !fm.fileExists(atPath: partial.path) { fm.createFile(atPath: partial.path, contents: nil) }
        let handle = try FileHandle(forUpdating: partial)
        defer { try? handle.close() }
        var hasher = Hasher(info)
        // the bytes already here count towards the hash
        var have = 0
        while let chunk = try handle.read(upToCount: 8 << 20), !chunk.isEmpty {
            hasher.update(chunk)
            have += chunk.count
        }
        progress(.started(path: path, size: info.size))
        if info.size == nil || have < info.size! {
            var url = info.location
            var response = try await client.execute(request(url, range: have > 0 ? have : nil), timeout: .hours(12))
            for _ in 0..<5 where (300..<400).contains(response.status.code) {  // the CDN may redirect again
                guard let next = response.headers.first(name: "Location") else { break }
                url = next.hasPrefix("/") ? endpoint + next : next
                response = try await client.execute(request(url, range: have > 0 ? have : nil), timeout: .hours(12))
            }
            try check(response, "\(r) \(path)")
            if have > 0 && response.status.code != 206 {  // the server ignored the Range: start over
                try handle.truncate(atOffset: 0)
                try handle.seek(toOffset: 0)
                hasher = Hasher(info)
                have = 0
            }
            for try await buffer in response.body {
                let data = Data(buffer.readableBytesView)
                try handle.write(contentsOf: data)
                hasher.update(data)
                have += data.count
                progress(.bytes(path: path, done: have, size: info.size))
            }
        }
        try handle.synchronize()
        if let size = info.size, have != size {
            throw HubError.http("\(r) \(path): got \(have) of \(size) bytes (run the download again to resume)")
        }
        guard hasher.matches(info.etag) else {
            try? fm.removeItem(at: partial)
            throw HubError.integrity("\(r) \(path): the downloaded bytes do not match the hub's checksum \(info.etag); the partial file was removed")
        }
        try fm.moveItem(at: partial, to: blob)
        try cache.link(r, commit: info.commit, path: path, etag: info.etag)
        progress(.finished(path: path, size: have, cached: false))
    }

    /// sha256 for LFS files; for others the git blob id, sha1("blob SIZE\0" + bytes), once the size is known.
    struct Hasher {
        var sha256 = SHA256()
        var bytes = Data()  // small files only: their blob id needs the size up front
        let lfs: Bool
        init(_ info: FileInfo) { lfs = info.isLFS }
        mutating func update(_ d: Data) { if lfs { sha256.update(data: d) } else { bytes.append(d) } }
        func matches(_ etag: String) -> Bool {
            if lfs { return sha256.finalize().map { String(format: "%02x", $0) }.joined() == etag.lowercased() }
            guard etag.count == 40 else { return true }  // not a blob id: nothing to check against
            var sha1 = Insecure.SHA1()
            sha1.update(data: Data("blob \(bytes.count)\0".utf8))
            sha1.update(data: bytes)
            return sha1.finalize().map { String(format: "%02x", $0) }.joined() == etag.lowercased()
        }
    }
}

/// One holder per key at a time (the blobs of a download by etag).
actor KeyedLocks {
    private var held: Set<String> = []
    private var waiting: [String: [CheckedContinuation<Void, Never>]] = [:]

    func acquire(_ key: String) async {
        guard held.contains(key) else { held.insert(key); return }
        await withCheckedContinuation { waiting[key, default: []].append($0) }
    }

    func release(_ key: String) {
        if var w = waiting[key], !w.isEmpty {
            let next = w.removeFirst()
            waiting[key] = w.isEmpty ? nil : w
            next.resume()  // the lock passes to it
        } else {
            held.remove(key)
        }
    }
}
