import Foundation
import StandInHub

// stand-in-hub --repo ORG/NAME=DIR [--repo …] [--port N]: serves folders as hub repos on 127.0.0.1
// (for tests that point huggingface_hub at it through HF_ENDPOINT); prints its URL, runs until killed.
var repos: [StandInHub.Repo] = []
var port = 0
var args = CommandLine.arguments.dropFirst().makeIterator()
while let a = args.next() {
    switch a {
    case "--repo":
        guard let spec = args.next(), let eq = spec.firstIndex(of: "=") else { fatalError("--repo ORG/NAME=DIR") }
        repos.append(try StandInHub.Repo(id: String(spec[..<eq]), folder: URL(fileURLWithPath: String(spec[spec.index(after: eq)...]))))
    case "--port":
        port = Int(args.next() ?? "") ?? 0
    default:
        FileHandle.standardError.write(Data("unknown argument \(a)\n".utf8))
        exit(2)
    }
}
let hub = StandInHub(repos: repos)
try await hub.start(port: port)
var banner = "listening on \(hub.endpoint)\n"
for r in repos { banner += "repo \(r.id) commit \(r.commit)\n" }
FileHandle.standardOutput.write(Data(banner.utf8))
while true { try await Task.sleep(for: .seconds(3600)) }
