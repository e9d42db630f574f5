import Foundation

/// A model named by its Hugging Face repo id (`ORG/NAME`, optionally `@REVISION`).
public struct RepoReference: Sendable, Equatable, CustomStringConvertible {
    public var id: String
    public var revision: String

    /// `ORG/NAME` or `ORG/NAME@REVISION`; nil when `text` is not shaped like one.
    public init?(_ text: String) {
        let parts = text.split(separator: "@", maxSplits: 1, omittingEmptySubsequences: false)
        let id = String(parts[0])
        let names = id.split(separator: "/", omittingEmptySubsequences: false)
        let allowed = CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
        guard names.count == 2, names.allSatisfy({ !$0.isEmpty && $0.count <= 96 && !$0.hasPrefix(".")
                                                   && $0.unicodeScalars.allSatisfy(allowed.contains) && !$0.contains("..") }) else { return nil }
        let revision = parts.count == 2 ? String(parts[1]) : "main"
        guard !revision.isEmpty, !revision.contains(".."), !revision.hasPrefix("/") else { return nil }
        self.id = id
        self.revision = revision
    }

    public var description: String { revision == "main" ? id : "\(id)@\(revision)" }
    /// The repo's folder name in the cache.
    public var folderName: String { "models--" + id.replacingOccurrences(of: "/", with: "--") }
    public var isCommitHash: Bool { revision.count == 40 && revision.allSatisfy(\.isHexDigit) }
}

public enum HubError: Error, CustomStringConvertible, Equatable {
    case notCached(String, cache: String)
    case offline(String)
    case http(String)
    case integrity(String)
    case invalid(String)

    public var description: String {
        switch self {
        case let .notCached(r, cache):
            return "\(r) is not in the Hugging Face cache (\(cache)); download it with `minicpmo download \(r)` or pass --download"
        case let .offline(s): return "HF_HUB_OFFLINE is set: \(s)"
        case let .http(s), let .integrity(s), let .invalid(s): return s
        }
    }
}

/// The Hugging Face hub cache as `huggingface_hub` lays it out: `models--ORG--NAME/` holding
/// `blobs/ETAG` (file contents by hash), `snapshots/COMMIT/PATH` (relative symlinks to the blobs)
/// and `refs/REVISION` (the commit a branch or tag pointed at).
public struct HubCache: Sendable {
    public let root: URL

    public init(root: URL) { self.root = root }

    /// `HF_HUB_CACHE`, else `HF_HOME/hub`, else `~/.cache/huggingface/hub` (as huggingface_hub).
    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        if let c = environment["HF_HUB_CACHE"], !c.isEmpty { root = URL(fileURLWithPath: (c as NSString).expandingTildeInPath) }
        else if let h = environment["HF_HOME"], !h.isEmpty { root = URL(fileURLWithPath: (h as NSString).expandingTildeInPath).appendingPathComponent("hub") }
        else {
            let xdg = environment["XDG_CACHE_HOME"].flatMap { $0.isEmpty ? nil : $0 }
            let base = xdg.map { URL(fileURLWithPath: $0) } ?? FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache")
            root = base.appendingPathComponent("huggingface/hub")
        }
    }

    public func repoFolder(_ r: RepoReference) -> URL { root.appendingPathComponent(r.folderName) }
    public func blobs(_ r: RepoReference) -> URL { repoFolder(r).appendingPathComponent("blobs") }
    public func snapshot(_ r: RepoReference, commit: String) -> URL { repoFolder(r).appendingPathComponent("snapshots/\(commit)") }

    /// The commit a reference means here: a commit hash itself, or what `refs/REVISION` holds.
    public func commit(for r: RepoReference) -> String? {
        if r.isCommitHash { return r.revision }
        let ref = repoFolder(r).appendingPathComponent("refs/\(r.revision)")
        guard let s = try? String(contentsOf: ref, encoding: .utf8) else { return nil }
        let c = s.trimmingCharacters(in: .whitespacesAndNewlines)
        return c.isEmpty ? nil : c
    }

    /// The snapshot folder of a cached model (with its config.json), or nil.
    public func resolve(_ r: RepoReference) -> URL? {
        guard let commit = commit(for: r) else { return nil }
        let dir = snapshot(r, commit: commit)
        return FileManager.default.fileExists(atPath: dir.appendingPathComponent("config.json").path) ? dir : nil
    }

    public func writeRef(_ r: RepoReference, commit: String) throws {
        guard !r.isCommitHash else { return }
        let ref = repoFolder(r).appendingPathComponent("refs/\(r.revision)")
        try FileManager.default.createDirectory(at: ref.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(commit.utf8).write(to: ref, options: .atomic)
    }

    /// Points `snapshots/COMMIT/PATH` at `blobs/ETAG` with a relative link, as huggingface_hub does.
    public func link(_ r: RepoReference, commit: String, path: String, etag: String) throws {
        let file = snapshot(r, commit: commit).appendingPathComponent(path)
        let fm = FileManager.default
        try fm.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
        let depth = path.split(separator: "/").count - 1
        let target = String(repeating: "../", count: depth + 2) + "blobs/" + etag
        if (try? fm.destinationOfSymbolicLink(atPath: file.path)) == target { return }
        try? fm.removeItem(at: file)
        try fm.createSymbolicLink(atPath: file.path, withDestinationPath: target)
    }
}

/// What `--model` names: a folder, or a repo id found in (or fetched into) the cache.
public enum ModelLocation {
    /// The folder to load. A path that exists is a folder; otherwise a repo id is looked up in the
    /// cache, and fetched when `download` allows it (never with HF_HUB_OFFLINE=1).
    public static func resolve(_ text: String, cache: HubCache = HubCache(), download: ((RepoReference) async throws -> URL)? = nil,
                               environment: [String: String] = ProcessInfo.processInfo.environment) async throws -> String {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: text, isDirectory: &isDir) {
            guard isDir.boolValue else { throw HubError.invalid("\(text) is a file; --model wants a model folder or a repo id (ORG/NAME)") }
            return text
        }
        guard let r = RepoReference(text) else {
            throw HubError.invalid("no folder \(text), and it is not a repo id (ORG/NAME or ORG/NAME@REVISION)")
        }
        if let dir = cache.resolve(r) { return dir.path }
        if HubClient.isOffline(environment) { throw HubError.offline("\(r) is not in the cache at \(cache.root.path)") }
        guard let download else { throw HubError.notCached(r.description, cache: cache.root.path) }
        return try await download(r).path
    }
}
