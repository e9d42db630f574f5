#if canImport(Accelerate)
import Accelerate
#else
import CBLAS
#endif
import Foundation

/// Whisper's log-mel front end, as transformers' `WhisperFeatureExtractor` computes it on its numpy path
/// (`_np_extract_fbank_features`, transformers 4.57): each 30 s piece is zero-padded to 480000 samples, framed with a
/// centered, reflect-padded periodic Hann window (n_fft 400, hop 160), DFT in float64 rounded to complex64, power in
/// float64, 80 Slaney mel filters, log10(max(mel, 1e-10)) cast to float32, clamped to (max over the padded piece − 8),
/// (x + 4) / 4. Only the frames covering real samples are kept: ceil(n / 160), at least 1.
///
/// The DFT runs as float64 GEMMs (OpenBLAS) against cos/sin tables, folded by symmetry to a quarter of a plain DFT's
/// work. Float32 would not do: bins 80 dB under a frame's peak still count (the clamp is at max − 8 decades of
/// power), and a float32 transform's error, relative to the frame, is 1e-3 of such bins.
public enum WhisperFeatures {
    public static let sampleRate = 16000
    public static let nFFT = 400
    public static let hopLength = 160
    public static let melBins = 80
    public static let frequencyBins = nFFT / 2 + 1
    /// 30 s: the encoder's fixed input length.
    public static let pieceSamples = 480_000
    public static let pieceFrames = pieceSamples / hopLength

    /// Consecutive 30 s pieces (480000 samples, the last one shorter), as MiniCPM-o splits long audio before feature
    /// extraction. Empty input gives no pieces.
    public static func pieces(of samples: [Float]) -> [[Float]] {
        stride(from: 0, to: samples.count, by: pieceSamples).map {
            Array(samples[$0..<min($0 + pieceSamples, samples.count)])
        }
    }

    /// Number of real frames for `sampleCount` samples of one piece: ceil(n / 160), at least 1.
    public static func frameCount(samples sampleCount: Int) -> Int {
        max(1, (min(max(sampleCount, 0), pieceSamples) + hopLength - 1) / hopLength)
    }

    /// Log-mel features of one piece of 16 kHz mono audio: `values` is [80 × frames], row-major (bins × frames).
    /// Input longer than 30 s is truncated to its first 480000 samples, as the extractor's `truncation=True` does;
    /// split with `pieces(of:)` first to keep everything.
    public static func logMel(samples16k samples: [Float]) -> (values: [Float], frames: Int) {
        let n = min(samples.count, pieceSamples)
        let frames = frameCount(samples: n)
        // Frame t spans original samples [160t − 200, 160t + 200); frames past `computed` see only zero padding,
        // so their log-mel is the floor and they only enter the maximum.
        let computed = min(pieceFrames, max(frames, (n + nFFT / 2 + hopLength - 1) / hopLength))
        var logSpec = [Float](repeating: 0, count: computed * melBins)  // frames × bins
        samples.withUnsafeBufferPointer { x in
            logSpec.withUnsafeMutableBufferPointer { out in
                guard let xp = x.baseAddress, let op = out.baseAddress else { return }
                let chunks = computed < 256 ? 1 : min(ProcessInfo.processInfo.activeProcessorCount, 8)
                parallel(chunks) { c in
                    let range = (computed * c / chunks)..<(computed * (c + 1) / chunks)
                    logMelFrames(xp, count: n, frames: range, into: op + range.lowerBound * melBins)
                }
            }
        }
        var peak = logSpec.max() ?? floorLog
        if computed < pieceFrames { peak = max(peak, floorLog) }
        let low = peak - 8
        var values = [Float](repeating: 0, count: melBins * frames)
        for t in 0..<frames {
            for m in 0..<melBins {
                values[m * frames + t] = (max(logSpec[t * melBins + m], low) + 4) / 4
            }
        }
        return (values, frames)
    }

    /// log10 of the mel floor, as the reference casts it (float64 log10, then float32).
    static let floorLog = Float(log10(1e-10))

    /// Frames `range` of the padded piece → float32 log10 mel, `melBins` per frame, written at `out`.
    ///
    /// The real DFT is folded twice before the GEMMs. With y = x·w: Re X[k] = Σ_{j=0…200} e_j·cos(2πjk/400) with
    /// e_j = y_j + y_{400−j} (e_0 = y_0, e_200 = y_200) and Im X[k] = −Σ_{j=1…199} d_j·sin(2πjk/400) with
    /// d_j = y_j − y_{400−j}. Then, since cos/sin at 200 − k equal ±(−1)^j times their values at k, even-j and odd-j
    /// sums over k = 0…100 give both X[k] and X[200 − k]. Four GEMMs of width 101: a quarter of the plain DFT's work.
    private static func logMelFrames(_ x: UnsafePointer<Float>, count n: Int, frames range: Range<Int>,
                                     into out: UnsafeMutablePointer<Float>) {
        let rows = range.count
        if rows == 0 { return }
        let half = nFFT / 2, quarter = nFFT / 4, cols = quarter + 1  // k = 0…100
        // The zero-padded piece, reflect-padded by 200 on both sides (numpy's "reflect": the edge sample is not repeated).
        @inline(__always) func padded(_ p: Int) -> Double {
            var i = p - half
            if i < 0 { i = -i } else if i >= pieceSamples { i = 2 * (pieceSamples - 1) - i }
            return i < n ? Double(x[i]) : 0
        }
        // Inputs per row, one block per group: cos sums over even j (0…200: 101) and odd j (1…199: 100); sin
        // differences over even j (2…198: 99) and odd j (1…199: 100).
        let widths = [quarter + 1, quarter, quarter - 1, quarter]
        let offsets = [0, rows * widths[0], rows * (widths[0] + widths[1]), rows * (widths[0] + widths[1] + widths[2])]
        var inputs = [Double](repeating: 0, count: rows * nFFT)
        var products = [Double](repeating: 0, count: 4 * rows * cols)
        var y = [Double](repeating: 0, count: nFFT)
        inputs.withUnsafeMutableBufferPointer { a in
            guard let a = a.baseAddress else { return }
            hannWindow.withUnsafeBufferPointer { w in
                y.withUnsafeMutableBufferPointer { y in
                    for r in 0..<rows {
                        let start = (range.lowerBound + r) * hopLength
                        for j in 0..<nFFT { y[j] = padded(start + j) * w[j] }
                        let ce = a + offsets[0] + r * widths[0], co = a + offsets[1] + r * widths[1]
                        let se = a + offsets[2] + r * widths[2], so = a + offsets[3] + r * widths[3]
                        ce[0] = y[0]
                        ce[quarter] = y[half]
                        for j in 1..<half {
                            let e = y[j] + y[nFFT - j], d = y[j] - y[nFFT - j]
                            if j % 2 == 0 { ce[j / 2] = e; se[j / 2 - 1] = d } else { co[j / 2] = e; so[j / 2] = d }
                        }
                    }
                }
            }
            BLASSetup.singleThreaded()
            products.withUnsafeMutableBufferPointer { c in
                guard let c = c.baseAddress else { return }
                for g in 0..<4 {
                    foldedTables[g].withUnsafeBufferPointer { b in
                        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, blasInt(rows), blasInt(cols),
                                    blasInt(widths[g]), 1, a + offsets[g], blasInt(widths[g]), b.baseAddress,
                                    blasInt(cols), 0, c + g * rows * cols, blasInt(cols))
                    }
                }
            }
        }
        // The reference stores the rfft in complex64, then squares the magnitude in float64.
        @inline(__always) func squared(_ re: Double, _ im: Double) -> Double {
            let r = Double(Float(re)), i = Double(Float(im))
            return r * r + i * i
        }
        var power = [Double](repeating: 0, count: frequencyBins)
        let bank = SparseBank.shared
        products.withUnsafeBufferPointer { p in
            power.withUnsafeMutableBufferPointer { power in
                bank.weights.withUnsafeBufferPointer { weights in
                    let block = rows * cols
                    for r in 0..<rows {
                        for k in 0...quarter {
                            let i = r * cols + k
                            let cosEven = p[i], cosOdd = p[block + i], sinEven = p[2 * block + i], sinOdd = p[3 * block + i]
                            power[k] = squared(cosEven + cosOdd, -(sinEven + sinOdd))
                            power[half - k] = squared(cosEven - cosOdd, sinEven - sinOdd)
                        }
                        for m in 0..<melBins {
                            var s = 0.0
                            let first = bank.firstBin[m], offset = bank.offset[m]
                            for i in 0..<bank.count[m] { s += weights[offset + i] * power[first + i] }
                            out[r * melBins + m] = Float(log10(max(s, 1e-10)))
                        }
                    }
                }
            }
        }
    }

    /// np.hanning(401)[:-1] in numpy's own form: 0.5 + 0.5·cos(π·m/400), m = −400, −398, …, 398.
    private static let hannWindow: [Double] = (0..<nFFT).map {
        0.5 + 0.5 * cos(Double.pi * Double(2 * $0 - nFFT) / Double(nFFT))
    }

    /// cos(2πjk/400) for even j (0…200) and odd j (1…199), sin(2πjk/400) for even j (2…198) and odd j (1…199);
    /// k = 0…100, each [j rows × 101] row-major. Exact zeros where cos/sin vanish.
    private static let foldedTables: [[Double]] = {
        let cols = nFFT / 4 + 1
        let cosTable = (0..<nFFT).map { r in r % (nFFT / 2) == nFFT / 4 ? 0 : cos(2 * Double.pi * Double(r) / Double(nFFT)) }
        let sinTable = (0..<nFFT).map { r in r % (nFFT / 2) == 0 ? 0 : sin(2 * Double.pi * Double(r) / Double(nFFT)) }
        func table(_ js: StrideThrough<Int>, _ f: [Double]) -> [Double] {
            js.flatMap { j in (0..<cols).map { k in f[(j * k) % nFFT] } }
        }
        let half = nFFT / 2
        return [table(stride(from: 0, through: half, by: 2), cosTable), table(stride(from: 1, through: half - 1, by: 2), cosTable),
                table(stride(from: 2, through: half - 2, by: 2), sinTable), table(stride(from: 1, through: half - 1, by: 2), sinTable)]
    }()

    // MARK: - Mel filter bank

    /// transformers' `mel_filter_bank(num_frequency_bins=201, num_mel_filters=80, min_frequency=0,
    /// max_frequency=8000, sampling_rate=16000, norm="slaney", mel_scale="slaney")`: [201 × 80] row-major
    /// (frequency bins × filters), float64, in the same operation order.
    public static let melFilters: [Double] = {
        let filterFreqs = melFilterFrequencies()
        let fftFreqs = linspace(0, Double(sampleRate / 2), frequencyBins)
        var bank = [Double](repeating: 0, count: frequencyBins * melBins)
        for k in 0..<frequencyBins {
            for m in 0..<melBins {
                let down = -(filterFreqs[m] - fftFreqs[k]) / (filterFreqs[m + 1] - filterFreqs[m])
                let up = (filterFreqs[m + 2] - fftFreqs[k]) / (filterFreqs[m + 2] - filterFreqs[m + 1])
                let enorm = 2.0 / (filterFreqs[m + 2] - filterFreqs[m])
                bank[k * melBins + m] = max(0, min(down, up)) * enorm
            }
        }
        return bank
    }()

    /// The 82 filter edge frequencies (Hz): mel points equally spaced on the Slaney scale from 0 to 8000 Hz.
    static func melFilterFrequencies() -> [Double] {
        let minLogHertz = 1000.0, minLogMel = 15.0
        let hertzToMel = { (f: Double) -> Double in
            f >= minLogHertz ? minLogMel + log(f / minLogHertz) * (27.0 / log(6.4)) : 3.0 * f / 200.0
        }
        let melToHertz = { (m: Double) -> Double in
            m >= minLogMel ? minLogHertz * exp(log(6.4) / 27.0 * (m - minLogMel)) : 200.0 * m / 3.0
        }
        return linspace(hertzToMel(0), hertzToMel(8000), melBins + 2).map(melToHertz)
    }

    /// numpy's linspace: start + i·step, with the last point set to `stop` exactly.
    static func linspace(_ start: Double, _ stop: Double, _ count: Int) -> [Double] {
        let step = (stop - start) / Double(count - 1)
        return (0..<count).map { $0 == count - 1 ? stop : Double($0) * step + start }
    }

    /// Each triangle's nonzero span, flattened; everything outside it is exactly zero, so skipping it changes nothing.
    struct SparseBank: Sendable {
        var firstBin: [Int] = [], offset: [Int] = [], count: [Int] = []
        var weights: [Double] = []

        static let shared: SparseBank = {
            var bank = SparseBank()
            for m in 0..<melBins {
                let column = (0..<frequencyBins).map { melFilters[$0 * melBins + m] }
                let span = (column.firstIndex { $0 != 0 } ?? 0)..<((column.lastIndex { $0 != 0 } ?? -1) + 1)
                bank.firstBin.append(span.lowerBound)
                bank.offset.append(bank.weights.count)
                bank.count.append(span.count)
                bank.weights += column[span]
            }
            return bank
        }()
    }

    // MARK: - Threads

    /// Runs `body(i)` for i in 0..<count across threads; chunks write disjoint memory and the closure does not outlive
    /// the call.
    private static func parallel(_ count: Int, _ body: (Int) -> Void) {
        if count <= 1 { body(0); return }
        withoutActuallyEscaping(body) { body in
            nonisolated(unsafe) let body = body
            DispatchQueue.concurrentPerform(iterations: count) { body($0) }
        }
    }
}

#if canImport(Accelerate)
@inline(__always) private func blasInt(_ v: Int) -> Int { v }
private enum BLASSetup { static func singleThreaded() {} }
#else
@inline(__always) private func blasInt(_ v: Int) -> Int32 { Int32(v) }
private enum BLASSetup {
    /// Our threads split the frames; OpenBLAS threads inside each call would only oversubscribe (Kernels does the same).
    private static let once: Void = { openblas_set_num_threads(1) }()
    static func singleThreaded() { _ = once }
}
#endif
