import Foundation
import MiniCPMO
import Runtime
import Synchronization
import Testing
import TestSupport

/// Spoken answers in the batching scheduler: their text is written in the batch, their TTS steps are
/// taken together, and each answer (text, streamed audio, waveform) is the one served alone.
@Suite struct BatchedSpeechTests {
    struct Heard: Equatable {
        var text = ""
        var streamed: [Float] = []
        var chunks = 0
        var wave: [Float]?
        var frames = 0
    }

    static func hear(_ s: Submission) async throws -> Heard {
        var h = Heard()
        for try await event in s.events {
            switch event {
            case let .text(t): h.text += t
            case let .audio(c):
                h.streamed += c.samples
                h.chunks += 1
            case let .finished(o):
                h.wave = o.wave
                h.frames = o.speechFrames
            }
        }
        return h
    }

    /// streaming nil: a text answer.
    static func job(_ text: String, streaming: Bool?, seed: UInt64, maxTokens: Int = 32) -> ChatJob {
        ChatJob(messages: [ChatInput(role: .user, parts: [.text(text)])], options: GenerationOptions(sampling: .greedy, maxTokens: maxTokens),
                speech: streaming.map { SpeechRequest(streaming: $0, sampler: CodeSampler(seed: seed), maxFrames: 300) })
    }

    @Test func spokenAnswersAreSpokenTogetherAndEqualTheServedAlone() async throws {
        let engine = try Engine(model: TestServer.model, contextLength: 2048, cacheBytes: 0)
        let jobs = [Self.job("Say something.", streaming: true, seed: 1), Self.job("Tell me more about it, please.", streaming: false, seed: 2),
                    Self.job("A text answer.", streaming: nil, seed: 0), Self.job("And another spoken one, streamed.", streaming: true, seed: 3),
                    Self.job("The last one is spoken when it is written.", streaming: false, seed: 4)]
        let serial = SerialScheduler(engine: engine)
        defer { serial.shutdown() }
        var alone: [Heard] = []
        for j in jobs { alone.append(try await Self.hear(try serial.submit(j))) }
        #expect(alone[0].chunks > 0 && alone[0].wave == alone[0].streamed && alone[0].frames > 0)
        #expect(alone[1].chunks == 0 && alone[1].wave?.isEmpty == false)
        #expect(alone[2].wave == nil && alone[2].frames == 0)

        let batch = BatchScheduler(engine: engine, maxBatch: 8)
        defer { batch.shutdown() }
        let subs = try jobs.map { try batch.submit($0) }
        var together: [Heard] = []
        for s in subs { together.append(try await Self.hear(s)) }
        #expect(together.map(\.text) == alone.map(\.text))
        if try TestServer.model.speech().tts.stepsExactlyInBatches {
            #expect(together == alone)
        } else {
            #expect(together.map { $0.wave != nil } == alone.map { $0.wave != nil })
        }
        #expect(batch.largestSpeechBatch >= 2, "largest speech batch \(batch.largestSpeechBatch)")
        #expect(batch.largestBatch >= 4, "largest text batch \(batch.largestBatch)")
        #expect(batch.status.completed == 5 && batch.status.running == 0)
        #expect(engine.cacheStats.kvPagesInUse == 0)
    }

    /// A spoken answer called off while it speaks ends as cancelled within a frame; the one beside it goes on.
    @Test func aCancelledSpokenAnswerStopsSpeaking() async throws {
        let engine = try Engine(model: TestServer.model, contextLength: 8192, cacheBytes: 0)
        // the short answer's text is done first and it speaks alone while the long one is written; the
        // call comes after its first TTS step, before EOS can end it (EOS is barred for 10 frames)
        let short = Self.job("Speak briefly.", streaming: false, seed: 5, maxTokens: 4)
        let long = Self.job("Then speak a little longer about it.", streaming: false, seed: 6, maxTokens: 32)
        let toCancel = Mutex<Submission?>(nil), firstStep = Mutex(0)
        let batch = BatchScheduler(engine: engine, maxBatch: 4) { n in
            firstStep.withLock { if $0 == 0 { $0 = n } }
            toCancel.withLock { $0?.cancel() }
        }
        defer { batch.shutdown() }
        let a = try batch.submit(short)
        toCancel.withLock { $0 = a }
        let b = try batch.submit(long)
        let aTask = Task { try await Self.hear(a) }
        let bHeard = try await Self.hear(b)
        let aResult: Result<Heard, Error>
        do { aResult = .success(try await aTask.value) } catch { aResult = .failure(error) }
        #expect(bHeard.wave?.isEmpty == false && bHeard.frames > 0)
        #expect(firstStep.withLock { $0 } == 1, "the short answer speaks alone first")
        guard case let .failure(e) = aResult else { Issue.record("the cancelled answer finished"); return }
        #expect(e as? RuntimeError == .cancelled)
        // one step for the short answer's call, then the long answer's own
        #expect(batch.speechSteps <= 2 + bHeard.frames + 1, "\(batch.speechSteps) TTS steps for \(bHeard.frames) frames")
        for _ in 0..<400 where batch.status.running > 0 { try await Task.sleep(for: .milliseconds(5)) }
        #expect(batch.status.running == 0 && batch.status.cancelled == 1 && batch.status.completed == 1)
        #expect(engine.cacheStats.kvPagesInUse == 0)
    }
}
