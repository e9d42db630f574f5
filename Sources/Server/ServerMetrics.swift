import Foundation
import Metrics
import Prometheus
import Runtime

/// The server's metrics, recorded through swift-metrics into a Prometheus registry of this server's
/// own (several servers in one process, as in tests, keep separate counts). `GET /metrics` renders it.
final class ServerMetrics: @unchecked Sendable {
    let registry = PrometheusCollectorRegistry()
    let factory: PrometheusMetricsFactory
    private let lock = NSLock()
    private var requestCounters: [String: Metrics.Counter] = [:]
    let promptTokens: Metrics.Counter
    let cachedTokens: Metrics.Counter
    let generatedTokens: Metrics.Counter
    let prefixHits: Metrics.Counter
    let timeToFirstToken: Metrics.Timer
    let duration: Metrics.Timer
    let queueDepth: Metrics.Gauge
    let running: Metrics.Gauge
    let kvPages: Metrics.Gauge
    let kvBytes: Metrics.Gauge
    let cachedSessions: Metrics.Gauge

    init() {
        var f = PrometheusMetricsFactory(registry: registry)
        let seconds: [Double] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120]
        f.durationHistogramBuckets = [
            "minicpmo_time_to_first_token_seconds": seconds.map { Duration.milliseconds(Int64($0 * 1000)) },
            "minicpmo_request_duration_seconds": seconds.map { Duration.milliseconds(Int64($0 * 1000)) },
        ]
        factory = f
        promptTokens = Metrics.Counter(label: "minicpmo_prompt_tokens_total", factory: f)
        cachedTokens = Metrics.Counter(label: "minicpmo_cached_prompt_tokens_total", factory: f)
        generatedTokens = Metrics.Counter(label: "minicpmo_generated_tokens_total", factory: f)
        prefixHits = Metrics.Counter(label: "minicpmo_prefix_cache_hits_total", factory: f)
        timeToFirstToken = Metrics.Timer(label: "minicpmo_time_to_first_token_seconds", factory: f)
        duration = Metrics.Timer(label: "minicpmo_request_duration_seconds", factory: f)
        queueDepth = Metrics.Gauge(label: "minicpmo_queue_depth", factory: f)
        running = Metrics.Gauge(label: "minicpmo_requests_running", factory: f)
        kvPages = Metrics.Gauge(label: "minicpmo_kv_pages_in_use", factory: f)
        kvBytes = Metrics.Gauge(label: "minicpmo_kv_bytes_in_use", factory: f)
        cachedSessions = Metrics.Gauge(label: "minicpmo_prefix_cache_sessions", factory: f)
    }

    func request(endpoint: String, status: Int) {
        let key = "\(endpoint) \(status)"
        let counter = lock.withLock {
            if let c = requestCounters[key] { return c }
            let c = Metrics.Counter(label: "minicpmo_requests_total", dimensions: [("endpoint", endpoint), ("status", String(status))], factory: factory)
            requestCounters[key] = c
            return c
        }
        counter.increment()
    }

    /// The Prometheus text, with the gauges read now.
    func render(scheduler: (any RequestScheduler)?) -> [UInt8] {
        if let scheduler {
            let s = scheduler.status
            queueDepth.record(s.queued)
            running.record(s.running)
            let c = scheduler.engine.cacheStats
            kvPages.record(c.kvPagesInUse)
            kvBytes.record(c.kvBytesInUse)
            cachedSessions.record(c.cachedSessions)
        }
        var out: [UInt8] = []
        registry.emit(into: &out)
        return out
    }
}
