import Foundation
import Hub
import StandInHub
import Testing
import TestSupport

/// The hub client against a stand-in hub on loopback, and the cache as huggingface_hub lays it out.
@Suite struct HubTests {
    static let model = URL(fileURLWithPath: fixtureModel("tiny-minicpmo"))

    func tempDir(_ tag: String) throws -> URL {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("hub-\(getpid())-\(tag)-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
        return d
    }

    func started() async throws -> (StandInHub, StandInHub.Repo) {
        let repo = try StandInHub.Repo(id: "openbmb/tiny-minicpmo", folder: Self.model)
        let hub = StandInHub(repos: [repo])
        try await hub.start()
        return (hub, repo)
    }

    func client(_ cache: URL, _ hub: StandInHub, offline: Bool = false) -> HubClient {
        var env = ["HF_ENDPOINT": hub.endpoint, "HF_HUB_CACHE": cache.path]
        if offline { env["HF_HUB_OFFLINE"] = "1" }
        return HubClient(cache: HubCache(environment: env), environment: env)
    }

    @Test func references() {
        #expect(RepoReference("openbmb/MiniCPM-o-2_6") == RepoReference("openbmb/MiniCPM-o-2_6@main"))
        #expect(RepoReference("openbmb/MiniCPM-o-2_6@v1.0")?.revision == "v1.0")
        #expect(RepoReference("openbmb/MiniCPM-o-2_6")?.folderName == "models--openbmb--MiniCPM-o-2_6")
        for bad in ["", "a", "/abs/path", "./x/y", "a/b/c", "a/../b", "a/b@", "a/ b", "../x"] { #expect(RepoReference(bad) == nil, "\(bad)") }
    }

    @Test func cacheRootFollowsTheEnvironment() {
        #expect(HubCache(environment: ["HF_HUB_CACHE": "/c", "HF_HOME": "/h"]).root.path == "/c")
        #expect(HubCache(environment: ["HF_HOME": "/h"]).root.path == "/h/hub")
        #expect(HubCache(environment: ["XDG_CACHE_HOME": "/x"]).root.path == "/x/huggingface/hub")
    }

    @Test func downloadWritesHuggingFaceHubsLayout() async throws {
        let (hub, repo) = try await started()
        defer { Task { await hub.stop() } }
        let cache = try tempDir("layout")
        let c = client(cache, hub)
        let r = RepoReference("openbmb/tiny-minicpmo")!
        let dir = try await c.download(r)
        await c.shutdown()
        let folder = cache.appendingPathComponent("models--openbmb--tiny-minicpmo")
        #expect(try String(contentsOf: folder.appendingPathComponent("refs/main"), encoding: .utf8) == repo.commit)
        #expect(dir.path == folder.appendingPathComponent("snapshots/\(repo.commit)").path)
        for (path, data) in repo.files {
            let link = dir.appendingPathComponent(path)
            let target = try FileManager.default.destinationOfSymbolicLink(atPath: link.path)
            #expect(target.hasPrefix(String(repeating: "../", count: path.split(separator: "/").count + 1) + "blobs/"), "\(path) → \(target)")
            #expect(try Data(contentsOf: link) == data, "\(path)")
        }
        let blobs = try FileManager.default.contentsOfDirectory(atPath: folder.appendingPathComponent("blobs").path)
        #expect(blobs.count == Set(repo.files.values).count && !blobs.contains { $0.hasSuffix(".incomplete") })
        #expect(HubCache(root: cache).resolve(r)?.path == dir.path)
        #expect(HubCache(root: cache).resolve(RepoReference("openbmb/tiny-minicpmo@\(repo.commit)")!)?.path == dir.path)
    }

    /// Files with the same bytes share one blob; fetched at the same time, neither spoils the other.
    @Test func identicalFilesShareABlob() async throws {
        let same = Data((0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 31) })
        let repo = StandInHub.Repo(id: "org/dupes", commit: String(repeating: "ab", count: 20), files: [
            "config.json": Data("{}".utf8), "a.safetensors": same, "copy/a.safetensors": same, "b.safetensors": same,
            "empty.json": Data(), "also-empty.json": Data(),
        ])
        let hub = StandInHub(repos: [repo])
        try await hub.start()
        defer { Task { await hub.stop() } }
        let cache = try tempDir("dupes")
        let c = client(cache, hub)
        let dir = try await c.download(RepoReference("org/dupes")!)
        await c.shutdown()
        for (path, data) in repo.files { #expect(try Data(contentsOf: dir.appendingPathComponent(path)) == data, "\(path)") }
        #expect(hub.requests.filter { $0.hasPrefix("GET /cdn/") }.count == 1, "one download for the shared bytes")
    }

    @Test func includeGlobs() async throws {
        let (hub, _) = try await started()
        defer { Task { await hub.stop() } }
        let cache = try tempDir("include")
        let c = client(cache, hub)
        let dir = try await c.download(RepoReference("openbmb/tiny-minicpmo")!, include: ["*.json", "assets/*"])
        await c.shutdown()
        let files = try FileManager.default.subpathsOfDirectory(atPath: dir.path).filter { !$0.hasSuffix("/") }
        #expect(files.contains("config.json") && files.contains { $0.hasPrefix("assets/") })
        #expect(!files.contains { $0.hasSuffix(".safetensors") })
    }

    /// A dropped connection leaves only `.incomplete` (no file that looks complete); the next run
    /// resumes it with a Range request.
    @Test func interruptedDownloadResumes() async throws {
        let (hub, repo) = try await started()
        defer { Task { await hub.stop() } }
        let cache = try tempDir("resume")
        let big = "model-00001-of-00003.safetensors"
        hub.faults.cutAfter[big] = 1_000_000
        let c = client(cache, hub)
        let r = RepoReference("openbmb/tiny-minicpmo")!
        do {
            _ = try await c.download(r)
            Issue.record("a cut-off download succeeded")
        } catch {}
        let folder = cache.appendingPathComponent("models--openbmb--tiny-minicpmo")
        let blobs = try FileManager.default.contentsOfDirectory(atPath: folder.appendingPathComponent("blobs").path)
        let partial = StandInHub.sha256(repo.files[big]!) + ".incomplete"
        #expect(blobs.contains(partial))
        let size = try FileManager.default.attributesOfItem(atPath: folder.appendingPathComponent("blobs/\(partial)").path)[.size] as! Int
        #expect(size > 0 && size <= 1_000_000)
        #expect(!blobs.contains(String(partial.dropLast(".incomplete".count))), "no complete-looking blob")
        #expect(HubCache(root: cache).resolve(r) == nil || !FileManager.default.fileExists(
            atPath: HubCache(root: cache).snapshot(r, commit: repo.commit).appendingPathComponent(big).path))
        let dir = try await c.download(r)
        await c.shutdown()
        #expect(hub.requests.contains { $0.hasPrefix("GET /cdn/") && $0.hasSuffix("bytes=\(size)-") }, "resumed with Range: \(hub.requests)")
        #expect(try Data(contentsOf: dir.appendingPathComponent(big)) == repo.files[big])
    }

    @Test func corruptedByteIsRefused() async throws {
        let (hub, repo) = try await started()
        defer { Task { await hub.stop() } }
        let cache = try tempDir("corrupt")
        let big = "model-00002-of-00003.safetensors"
        hub.faults.corrupt = [big]
        let c = client(cache, hub)
        do {
            _ = try await c.download(RepoReference("openbmb/tiny-minicpmo")!)
            Issue.record("a corrupted file was accepted")
        } catch let e as HubError {
            #expect(e.description.contains("checksum"), "\(e)")
        }
        await c.shutdown()
        let blobs = try FileManager.default.contentsOfDirectory(atPath: cache.appendingPathComponent("models--openbmb--tiny-minicpmo/blobs").path)
        let etag = StandInHub.sha256(repo.files[big]!)
        #expect(!blobs.contains { $0.hasPrefix(etag) }, "the bad bytes are neither kept for a resume nor taken as the file")
    }

    @Test func offlineNeverTouchesTheNetwork() async throws {
        let (hub, _) = try await started()
        defer { Task { await hub.stop() } }
        let cache = try tempDir("offline")
        let r = RepoReference("openbmb/tiny-minicpmo")!
        let offline = client(cache, hub, offline: true)
        await #expect(throws: HubError.self) { _ = try await offline.download(r) }
        let env = ["HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": cache.path]
        await #expect(throws: HubError.self) {
            _ = try await ModelLocation.resolve(r.id, cache: HubCache(root: cache), download: { _ in URL(fileURLWithPath: "/") }, environment: env)
        }
        #expect(hub.requests.isEmpty)
        let online = client(cache, hub)
        let dir = try await online.download(r)
        await online.shutdown()
        let seen = hub.requests.count
        let found = try await ModelLocation.resolve(r.id, cache: HubCache(root: cache), environment: env)
        #expect(found == dir.path)
        #expect(hub.requests.count == seen)
        await offline.shutdown()
    }

    @Test func folderAndErrors() async throws {
        #expect(try await ModelLocation.resolve(Self.model.path) == Self.model.path)
        let cache = try tempDir("missing")
        do {
            _ = try await ModelLocation.resolve("nobody/nothing", cache: HubCache(root: cache), environment: [:])
            Issue.record("resolved a repo that is not cached")
        } catch let e as HubError {
            #expect(e.description.contains("minicpmo download nobody/nothing"))
        }
        await #expect(throws: HubError.self) { _ = try await ModelLocation.resolve("/no/such/folder", environment: [:]) }
    }
}
