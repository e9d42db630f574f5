import Foundation
import Hub

/// `--model` as a folder or a repo id: a repo id is found in the Hugging Face cache; one that is not
/// there is downloaded with `--download`, or after a yes at the terminal. Exits with a one-line error.
func modelDirectory(_ text: String, download: Bool = false) -> String {
    switch waitFor({ try await resolveModel(text, download: download) }) {
    case let .success(dir): return dir
    case let .failure(e): fail(e, code: 1)
    }
}

/// The same for async commands.
func resolveModel(_ text: String, download: Bool) async throws -> String {
    try await ModelLocation.resolve(text, download: { r in
        guard download || askToDownload(r) else { throw HubError.notCached(r.description, cache: HubCache().root.path) }
        return try await fetchModel(r)
    })
}

/// Asks on the terminal; false when stdin is not one (scripts get the error that says what to do).
func askToDownload(_ r: RepoReference) -> Bool {
    guard isatty(0) == 1, isatty(2) == 1 else { return false }
    FileHandle.standardError.write(Data("\(r) is not in the Hugging Face cache. Download it now? [y/N] ".utf8))
    return ["y", "yes"].contains((readLine() ?? "").trimmingCharacters(in: .whitespaces).lowercased())
}

/// Runs async work to its end from synchronous code (commands run on the main thread, not in a task).
func waitFor<T: Sendable>(_ work: @escaping @Sendable () async throws -> T) -> Result<T, Error> {
    let box = ResultBox<T>()
    let done = DispatchSemaphore(value: 0)
    _Concurrency.Task.detached {
        box.value = await Result { try await work() }
        done.signal()
    }
    done.wait()
    return box.value!
}

private final class ResultBox<T>: @unchecked Sendable { var value: Result<T, Error>? }

extension Result where Failure == Error {
    init(catching body: () async throws -> Success) async {
        do { self = .success(try await body()) } catch { self = .failure(error) }
    }
}
