import Foundation

/// Problems with a `torch.save` file; each message names the file and the offending global, opcode,
/// entry or tensor.
public enum TorchCheckpointError: Error, CustomStringConvertible, Equatable {
    case cannotOpen(file: String, reason: String)
    case badZip(file: String, reason: String)
    case unsupported(file: String, reason: String)
    /// A malformed or hostile pickle; `offset` is the opcode's position in data.pkl.
    case badPickle(file: String, offset: Int, reason: String)
    /// A global outside the allowlist (e.g. `os.system`); it was never resolved or called.
    case forbiddenGlobal(file: String, name: String, offset: Int)
    /// An opcode that constructs arbitrary classes (INST, OBJ, EXT1/2/4).
    case forbiddenOpcode(file: String, opcode: String, offset: Int)
    case badCheckpoint(file: String, reason: String)
    case limitExceeded(file: String, reason: String)

    public var description: String {
        switch self {
        case let .cannotOpen(f, r): return "\(f): cannot open: \(r)"
        case let .badZip(f, r): return "\(f): malformed torch zip archive: \(r)"
        case let .unsupported(f, r): return "\(f): unsupported torch checkpoint: \(r)"
        case let .badPickle(f, o, r): return "\(f): data.pkl offset \(o): \(r)"
        case let .forbiddenGlobal(f, n, o):
            return "\(f): data.pkl offset \(o): refusing global '\(n)': not on the allowlist of tensor-rebuilding globals (nothing was executed)"
        case let .forbiddenOpcode(f, op, o):
            return "\(f): data.pkl offset \(o): refusing opcode \(op): it constructs arbitrary objects (nothing was executed)"
        case let .badCheckpoint(f, r): return "\(f): \(r)"
        case let .limitExceeded(f, r): return "\(f): limit exceeded: \(r)"
        }
    }
}

/// A non-tensor leaf of a checkpoint (e.g. `"step": 3`).
public enum TorchScalar: Equatable, Sendable {
    case none, bool(Bool), int(Int64), float(Double), string(String)
}

/// A PyTorch `torch.save` checkpoint (the zip format of torch ≥ 1.6) read without Python: the
/// archive is memory-mapped and `data.pkl` is interpreted by a restricted unpickler that builds only
/// dicts, OrderedDicts and tensors (see `TorchGlobal.allowlist`); any other global, and the opcodes
/// that construct arbitrary objects, are refused with an error naming them.
///
/// Names: nested dicts are flattened with "." (`{"model": {"embed.weight": t}}` gives
/// `model.embed.weight`; integer keys are written in decimal). Non-tensor scalars land in `scalars`;
/// lists, tuples and other leaves are skipped. The top-level object must be a dict.
///
/// Tensors whose strides are row-major point into the mapping (no copy); others (e.g. a saved
/// transpose) are copied into contiguous memory. Tensors sharing a storage share its bytes.
/// `Checkpoint(tensors: file.tensors, source: file.path)` binds them like safetensors weights.
public final class TorchCheckpointFile: @unchecked Sendable {
    public struct Limits: Sendable {
        /// Largest data.pkl accepted.
        public var maxPickleBytes = 256 << 20
        public var maxStack = 1 << 20
        public var maxMemo = 1 << 22
        /// Nesting of dicts, lists and tuples.
        public var maxDepth = 64
        /// Flattened names and their total bytes (one dict may be referenced many times).
        public var maxTensors = 1 << 22
        public var maxNameBytes = 4096
        /// Bytes copied for non-contiguous tensors; nil means twice the file size plus 64 MiB.
        public var maxCopiedBytes: Int? = nil
        /// Check data.pkl against its CRC-32 (off only to let fuzzing reach the unpickler).
        public var verifyPickleChecksum = true
        public init() {}
    }

    public let path: String
    /// The archive's top-level folder (`archive` for current torch, the file stem for older ones).
    public let archiveName: String
    public private(set) var tensors: [String: TensorView] = [:]
    /// Tensor names in pickle order.
    public private(set) var names: [String] = []
    public private(set) var scalars: [String: TorchScalar] = [:]

    private let region: MappedRegion

    public init(path: String, limits: Limits = Limits()) throws {
        self.path = path
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw TorchCheckpointError.cannotOpen(file: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw TorchCheckpointError.cannotOpen(file: path, reason: String(cString: strerror(errno))) }
        if (st.st_mode & S_IFMT) == S_IFDIR { throw TorchCheckpointError.cannotOpen(file: path, reason: "is a directory") }
        let size = Int(st.st_size)
        guard size >= 4 else { throw TorchCheckpointError.badZip(file: path, reason: "\(size) bytes, too short for a zip archive (truncated?)") }
        guard let m = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), m != MAP_FAILED else {
            throw TorchCheckpointError.cannotOpen(file: path, reason: "mmap failed: \(String(cString: strerror(errno)))")
        }
        region = MappedRegion(base: m, length: size)
        let magic = m.loadUnaligned(as: UInt32.self)
        guard magic == UInt32(0x0403_4B50).littleEndian else {
            // Before 1.6 torch.save wrote consecutive pickles (starting with PROTO 2) or a tar file.
            let reason = m.load(as: UInt8.self) == 0x80
                ? "legacy (pre-1.6, non-zip) torch serialization; re-save it with a current torch"
                : "not a zip archive"
            throw TorchCheckpointError.unsupported(file: path, reason: reason)
        }
        let zip = try StoredZip(region: region, file: path)

        // torch names the folder after the file (older versions) or "archive"; there is one data.pkl.
        let pickles = zip.names.filter { $0.hasSuffix("/data.pkl") && $0.split(separator: "/", omittingEmptySubsequences: false).count == 2 }
        guard pickles.count == 1, let pkl = pickles.first, let entry = zip.entries[pkl] else {
            throw TorchCheckpointError.badCheckpoint(file: path, reason: pickles.isEmpty
                ? "no <name>/data.pkl entry: not a torch.save archive"
                : "several data.pkl entries: \(pickles.joined(separator: ", "))")
        }
        archiveName = String(pkl.dropLast("/data.pkl".count))
        if let bo = zip.entries[archiveName + "/byteorder"] {
            let text = String(decoding: zip.bytes(bo), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            guard text == "little" else { throw TorchCheckpointError.unsupported(file: path, reason: "byte order '\(text)'; only little-endian checkpoints are read") }
        }
        guard entry.size <= limits.maxPickleBytes else {
            throw TorchCheckpointError.limitExceeded(file: path, reason: "data.pkl has \(entry.size) bytes, more than \(limits.maxPickleBytes)")
        }
        guard !limits.verifyPickleChecksum || zip.checksumMatches(entry) else { throw TorchCheckpointError.badZip(file: path, reason: "CRC-32 mismatch in \(pkl)") }

        let dataPrefix = archiveName + "/data/"
        let entries = zip.entries
        var vm = RestrictedUnpickler(
            bytes: zip.bytes(entry), file: path,
            limits: .init(maxStack: limits.maxStack, maxMemo: limits.maxMemo, maxDepth: limits.maxDepth),
            storageBytes: { key in entries[dataPrefix + key]?.size })
        let root = try vm.run()

        guard case let .dict(top) = root else {
            throw TorchCheckpointError.badCheckpoint(file: path, reason: "top-level object is a \(root.typeName), not a dict of tensors")
        }
        var found: [(String, TorchTensor)] = []
        var budget = (names: limits.maxTensors, bytes: 64 << 20 + 4 * entry.size)
        try flatten(top, prefix: "", into: &found, budget: &budget, limits: limits)

        var copyBudget = limits.maxCopiedBytes ?? (2 * size + 64 << 20)
        let fileName = (path as NSString).lastPathComponent
        for (name, t) in found {
            guard let e = entries[dataPrefix + t.storage.key] else {
                throw TorchCheckpointError.badCheckpoint(file: path, reason: "tensor '\(name)': storage '\(t.storage.key)' vanished")
            }
            let size = t.storage.dtype.size
            let base = UnsafeRawPointer(region.base) + e.dataOffset
            let byteCount = t.elementCount * size
            var data = base, owner: AnyObject = region
            if t.elementCount > 0 {
                if Self.isRowMajor(t) {
                    data = base + t.offset * size
                } else {
                    guard byteCount <= copyBudget else {
                        throw TorchCheckpointError.limitExceeded(file: path, reason: "tensor '\(name)': copying non-contiguous tensors exceeds the budget of \(limits.maxCopiedBytes ?? (2 * self.region.length + 64 << 20)) bytes")
                    }
                    copyBudget -= byteCount
                    let copy = OwnedBytes(count: byteCount)
                    Self.gather(t, from: base, into: copy.pointer)
                    data = UnsafeRawPointer(copy.pointer)
                    owner = copy
                }
            }
            tensors[name] = TensorView(name: name, dtype: t.storage.dtype, shape: t.shape, data: data,
                                       byteCount: byteCount, file: fileName, owner: owner)
            names.append(name)
        }
    }

    public func tensor(_ name: String) throws -> TensorView {
        guard let t = tensors[name] else { throw WeightsError.missingTensor(name: name, file: path) }
        return t
    }

    /// Walks nested dicts; depth is bounded by the unpickler, so the recursion is too.
    private func flatten(_ d: PickleDict, prefix: String, into out: inout [(String, TorchTensor)],
                         budget: inout (names: Int, bytes: Int), limits: Limits) throws {
        for (key, value) in zip(d.keys, d.values) {
            let name = prefix.isEmpty ? key.text : prefix + "." + key.text
            budget.names -= 1
            budget.bytes -= name.utf8.count
            guard budget.names >= 0, budget.bytes >= 0, name.utf8.count <= limits.maxNameBytes else {
                throw TorchCheckpointError.limitExceeded(file: path, reason: name.utf8.count > limits.maxNameBytes
                    ? "a flattened name is longer than \(limits.maxNameBytes) bytes"
                    : "flattening produces too many names (shared dicts?)")
            }
            let scalar: TorchScalar?
            switch value {
            case let .dict(inner):
                try flatten(inner, prefix: name, into: &out, budget: &budget, limits: limits)
                continue
            case let .tensor(t):
                guard tensorNamesSeen.insert(name).inserted, scalars[name] == nil else { throw duplicate(name) }
                out.append((name, t))
                continue
            case .none: scalar = TorchScalar.none
            case let .bool(b): scalar = .bool(b)
            case let .int(i): scalar = .int(i)
            case let .float(x): scalar = .float(x)
            case let .string(s): scalar = .string(s)
            default: scalar = nil
            }
            if let scalar {
                guard !tensorNamesSeen.contains(name), scalars.updateValue(scalar, forKey: name) == nil else { throw duplicate(name) }
            }
        }
    }
    private var tensorNamesSeen: Set<String> = []

    private func duplicate(_ name: String) -> TorchCheckpointError {
        .badCheckpoint(file: path, reason: "two entries flatten to the name '\(name)'")
    }

    /// Row-major strides, ignoring dimensions of size 1 (their stride is never used).
    static func isRowMajor(_ t: TorchTensor) -> Bool {
        var expected = 1
        for (d, st) in zip(t.shape, t.strides).reversed() where d != 1 {
            if st != expected { return false }
            expected *= d
        }
        return true
    }

    /// Copies a strided view into contiguous row-major order (offsets were checked by the unpickler).
    static func gather(_ t: TorchTensor, from base: UnsafeRawPointer, into dst: UnsafeMutableRawPointer) {
        let size = t.storage.dtype.size, rank = t.shape.count
        var index = [Int](repeating: 0, count: rank)
        var src = t.offset
        for i in 0..<t.elementCount {
            (dst + i * size).copyMemory(from: base + src * size, byteCount: size)
            var d = rank - 1
            while d >= 0 {
                index[d] += 1
                src += t.strides[d]
                if index[d] < t.shape[d] { break }
                src -= t.strides[d] * t.shape[d]
                index[d] = 0
                d -= 1
            }
        }
    }
}

/// Heap memory for a copied tensor; tensor views keep it alive.
final class OwnedBytes: @unchecked Sendable {
    let pointer: UnsafeMutableRawPointer
    init(count: Int) { pointer = .allocate(byteCount: max(count, 1), alignment: 64) }
    deinit { pointer.deallocate() }
}
