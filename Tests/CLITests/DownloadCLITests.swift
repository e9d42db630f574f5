import Foundation
import StandInHub
import Testing

/// `minicpmo download` and `--model ORG/NAME` as users run them, against a stand-in hub.
@Suite struct DownloadCLITests {
    @Test func downloadThenRunOfflineByRepoID() async throws {
        let folder = fixtures.appendingPathComponent("models/tiny-minicpmo")
        let repo = try StandInHub.Repo(id: "openbmb/tiny-minicpmo", folder: folder)
        let hub = StandInHub(repos: [repo])
        try await hub.start()
        defer { Task { await hub.stop() } }
        let home = temp("hf-home-\(UInt32.random(in: 0...UInt32.max))")
        let env = ["HF_HOME": home, "HF_ENDPOINT": hub.endpoint]
        let generate = ["generate", "--prompt", "Hello!", "--max-tokens", "8", "--temperature", "0", "--json"]

        let missing = try await runAsync(["generate", "--model", "openbmb/tiny-minicpmo"] + generate.dropFirst(), environment: env)
        #expect(missing.status == 1)
        #expect(missing.stderr.contains("minicpmo download openbmb/tiny-minicpmo"), "\(missing.stderr)")
        #expect(hub.requests.isEmpty, "nothing is fetched without asking")

        let d = try await runAsync(["download", "openbmb/tiny-minicpmo"], environment: env)
        #expect(d.status == 0, "\(d.stderr)")
        #expect(d.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == home + "/hub/models--openbmb--tiny-minicpmo/snapshots/\(repo.commit)")
        #expect(d.stderr.contains("model-00001-of-00003.safetensors"), "one line per file when piped: \(d.stderr)")

        let seen = hub.requests.count
        let offline = env.merging(["HF_HUB_OFFLINE": "1"]) { $1 }
        let byRepo = try await runAsync(["generate", "--model", "openbmb/tiny-minicpmo"] + generate.dropFirst(), environment: offline)
        let byFolder = try await runAsync(["generate", "--model", folder.path] + generate.dropFirst())
        #expect(byRepo.status == 0, "\(byRepo.stderr)")
        let a = try tokens(byRepo.stdout), b = try tokens(byFolder.stdout)
        #expect(!a.isEmpty && a == b)
        #expect(hub.requests.count == seen, "offline runs touch no network")

        let withFlag = try await runAsync(["generate", "--model", "openbmb/tiny-minicpmo", "--download"] + generate.dropFirst(),
                               environment: ["HF_HOME": home + "-2", "HF_ENDPOINT": hub.endpoint])
        #expect(withFlag.status == 0, "--download fetches on first use: \(withFlag.stderr)")
    }

    func tokens(_ json: String) throws -> [Int] {
        (try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])?["token_ids"] as? [Int] ?? []
    }
}
