import Foundation
import Hummingbird
import Testing
import TestSupport

/// `--allow-remote-media`: http(s) image URLs are fetched, within size, time and redirect limits
/// (against a small image host on loopback).
@Suite struct RemoteMediaTests {
    /// Serves /cat.png, /big (over the server's body limit), /slow (never answers in time),
    /// /loop (redirects forever), /hop (redirects once to /cat.png) and 404 elsewhere.
    static func imageHost() async throws -> (Task<Void, Error>, Int) {
        let png = try fixtureData("images/chelsea-small.png")
        let router = Router()
        router.get("/cat.png") { _, _ in Response(status: .ok, headers: [.contentType: "image/png"], body: .init(byteBuffer: ByteBuffer(bytes: png))) }
        router.get("/big") { _, _ in Response(status: .ok, body: .init(byteBuffer: ByteBuffer(repeating: 0x41, count: 200_000))) }
        router.get("/slow") { _, _ -> Response in
            try await Task.sleep(for: .seconds(60))
            return Response(status: .ok)
        }
        router.get("/loop") { _, _ in Response(status: .found, headers: [.location: "/loop"]) }
        router.get("/hop") { _, _ in Response(status: .found, headers: [.location: "/cat.png"]) }
        let (ports, c) = AsyncStream<Int>.makeStream()
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                              onServerRunning: { c.yield($0.localAddress?.port ?? 0) })
        let task = Task { try await app.run() }
        var port = 0
        for await p in ports { port = p; break }
        return (task, port)
    }

    @Test func remoteImagesWithinLimits() async throws {
        let (host, port) = try await Self.imageHost()
        defer { host.cancel() }
        let s = try await TestServer.start {
            $0.allowRemoteMedia = true
            $0.maxBodyBytes = 100_000
            // long enough for the good fetches while the other suites load both cores, short of /slow's 60 s
            $0.remoteMediaTimeout = .seconds(8)
        }
        defer { Task { await s.stop() } }
        func ask(_ path: String) async throws -> TestServer.Reply {
            try await s.post("/v1/chat/completions", json: chat([
                ["type": "image_url", "image_url": ["url": "http://127.0.0.1:\(port)\(path)"]], ["type": "text", "text": "What is it?"],
            ]))
        }
        let direct = try await ask("/cat.png")
        #expect(direct.status == 200, "\(direct.text)")
        #expect(usage(try direct.json()).prompt > 64)
        #expect(try await ask("/hop").status == 200, "one redirect is followed")
        for path in ["/big", "/loop", "/missing", "/slow"] {
            let r = try await ask(path)
            #expect(r.status == 400, "\(path): \(r.text)")
            #expect(r.error?["code"] as? String == "invalid_media", "\(path)")
        }
    }
}
