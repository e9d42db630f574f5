import Foundation

/// The only globals a torch checkpoint may name. Resolving any other global is an error, so nothing
/// outside this list is ever constructed or called: the pickle is interpreted, never executed.
enum TorchGlobal: Equatable {
    case orderedDict, rebuildTensorV2, rebuildTensor, rebuildParameter, device
    /// A legacy typed-storage class, named by torch.save in persistent ids.
    case storage(DType, name: String)

    static let allowlist: [String: TorchGlobal] = {
        var m: [String: TorchGlobal] = [
            "collections.OrderedDict": .orderedDict,
            "torch._utils._rebuild_tensor_v2": .rebuildTensorV2,
            "torch._utils._rebuild_tensor": .rebuildTensor,
            "torch._utils._rebuild_parameter": .rebuildParameter,
            "torch.device": .device,
        ]
        let storages: [(String, DType)] = [
            ("FloatStorage", .f32), ("HalfStorage", .f16), ("BFloat16Storage", .bf16), ("DoubleStorage", .f64),
            ("LongStorage", .i64), ("IntStorage", .i32), ("ShortStorage", .i16), ("CharStorage", .i8),
            ("ByteStorage", .u8), ("BoolStorage", .bool),
        ]
        for (name, dtype) in storages { m["torch." + name] = .storage(dtype, name: "torch." + name) }
        return m
    }()
}

/// A storage named by a persistent id: the zip entry `data/<key>` read as `count` elements of `dtype`.
struct TorchStorage {
    let key: String
    let dtype: DType
    let count: Int
}

/// A tensor as `_rebuild_tensor_v2` describes it: a strided window onto a storage, already checked to
/// lie inside it.
struct TorchTensor {
    let storage: TorchStorage
    let offset: Int
    let shape: [Int]
    let strides: [Int]
    let elementCount: Int
}

/// Dict keys torch checkpoints use: strings (state dicts) and integers (optimizer states).
enum DictKey: Hashable {
    case string(String), int(Int64)
    var text: String {
        switch self {
        case let .string(s): return s
        case let .int(i): return String(i)
        }
    }
}

/// A value built by the restricted unpickler. Lists and dicts are classes because pickle's memo and
/// its APPEND/SETITEM opcodes share and mutate them.
enum PickleValue {
    case none
    case bool(Bool)
    case int(Int64)
    case float(Double)
    case string(String)
    case bytes([UInt8])
    case tuple([PickleValue], depth: Int)
    case list(PickleList)
    case dict(PickleDict)
    case global(TorchGlobal)
    case storage(TorchStorage)
    case tensor(TorchTensor)

    /// Nesting depth, bounded on construction so that neither traversal nor deallocation can recurse
    /// deep enough to exhaust the stack.
    var depth: Int {
        switch self {
        case let .tuple(_, d): return d
        case let .list(l): return l.depth
        case let .dict(d): return d.depth
        default: return 0
        }
    }

    var typeName: String {
        switch self {
        case .none: return "None"
        case .bool: return "bool"
        case .int: return "int"
        case .float: return "float"
        case .string: return "str"
        case .bytes: return "bytes"
        case .tuple: return "tuple"
        case .list: return "list"
        case .dict: return "dict"
        case .global: return "global"
        case .storage: return "storage"
        case .tensor: return "tensor"
        }
    }

    /// Marks a container as embedded in another value. A sealed container may not change: with that
    /// rule no container can (indirectly) contain itself, and recorded depths stay exact.
    func seal() {
        switch self {
        case let .list(l): l.sealed = true
        case let .dict(d): d.sealed = true
        default: break
        }
    }
}

/// Lists, sets and frozensets (sets only ever hold scalars in checkpoints; order is kept).
final class PickleList {
    var items: [PickleValue] = []
    var depth = 1
    var sealed = false
}

/// Dicts and OrderedDicts, in insertion order.
final class PickleDict {
    private(set) var keys: [DictKey] = []
    private(set) var values: [PickleValue] = []
    private var index: [DictKey: Int] = [:]
    var depth = 1
    var sealed = false

    var count: Int { keys.count }

    func set(_ key: DictKey, _ value: PickleValue) {
        if let i = index[key] {
            values[i] = value
        } else {
            index[key] = keys.count
            keys.append(key)
            values.append(value)
        }
    }
}

/// A pickle virtual machine for protocols 0–5 that builds only plain data, dicts and the tensors of
/// `TorchGlobal.allowlist`. Opcodes that construct arbitrary objects (INST, OBJ, EXT*) and every
/// global outside the allowlist are refused with an error naming them. Stack, memo and nesting depth
/// are bounded, every read is bounds-checked, and each opcode consumes input, so hostile input ends
/// in an error, never a crash or a hang.
struct RestrictedUnpickler {
    struct Limits {
        var maxStack = 1 << 20
        var maxMemo = 1 << 22
        var maxDepth = 64
        var maxRank = 64
        var maxTextLine = 1024
    }

    let bytes: UnsafeRawBufferPointer
    let file: String
    let limits: Limits
    /// Byte size of the zip entry holding storage `key`, nil if there is none.
    let storageBytes: (String) -> Int?

    private var pos = 0
    private var opStart = 0
    private var stack: [PickleValue] = []
    private var marks: [Int] = []
    private var memo: [Int: PickleValue] = [:]

    init(bytes: UnsafeRawBufferPointer, file: String, limits: Limits, storageBytes: @escaping (String) -> Int?) {
        self.bytes = bytes
        self.file = file
        self.limits = limits
        self.storageBytes = storageBytes
    }

    private func fail(_ reason: String) -> TorchCheckpointError { .badPickle(file: file, offset: opStart, reason: reason) }

    // MARK: input

    private mutating func take(_ n: Int) throws -> UnsafeRawBufferPointer {
        guard n >= 0, n <= bytes.count - pos else {
            throw fail("truncated pickle: \(n) more bytes needed, \(bytes.count - pos) remain")
        }
        defer { pos += n }
        return UnsafeRawBufferPointer(rebasing: bytes[pos..<pos + n])
    }
    private mutating func u8() throws -> UInt8 { try take(1)[0] }
    private mutating func le<T: FixedWidthInteger>(_: T.Type) throws -> T {
        T(littleEndian: try take(MemoryLayout<T>.size).loadUnaligned(as: T.self))
    }
    /// A length prefix, checked against the remaining input before anything is allocated.
    private mutating func length<T: FixedWidthInteger>(_: T.Type) throws -> Int {
        let n = try le(T.self)
        guard n >= 0, UInt64(n) <= UInt64(bytes.count - pos) else {
            throw fail("declared length \(n) exceeds the \(bytes.count - pos) remaining bytes")
        }
        return Int(n)
    }
    private mutating func line() throws -> String {
        var end = pos
        while end < bytes.count, bytes[end] != 0x0A {
            end += 1
            guard end - pos <= limits.maxTextLine else { throw fail("text argument longer than \(limits.maxTextLine) bytes") }
        }
        guard end < bytes.count else { throw fail("unterminated text argument (truncated pickle)") }
        defer { pos = end + 1 }
        guard let s = String(validating: bytes[pos..<end], as: UTF8.self) else { throw fail("text argument is not UTF-8") }
        return s
    }
    private mutating func utf8(_ n: Int) throws -> String {
        guard let s = String(validating: try take(n), as: UTF8.self) else { throw fail("string is not valid UTF-8") }
        return s
    }

    // MARK: stack

    private mutating func push(_ v: PickleValue) throws {
        guard stack.count < limits.maxStack else { throw fail("stack exceeds \(limits.maxStack) items") }
        stack.append(v)
    }
    /// Pops one value; values below the innermost MARK belong to an enclosing construct.
    private mutating func pop() throws -> PickleValue {
        guard stack.count > (marks.last ?? 0) else { throw fail("stack underflow") }
        return stack.removeLast()
    }
    private func top() throws -> PickleValue {
        guard let v = stack.last, stack.count > (marks.last ?? 0) else { throw fail("stack underflow") }
        return v
    }
    private mutating func popMark() throws -> [PickleValue] {
        guard let m = marks.popLast() else { throw fail("no MARK for this opcode") }
        defer { stack.removeSubrange(m...) }
        return Array(stack[m...])
    }
    private func checkDepth(_ d: Int) throws {
        guard d <= limits.maxDepth else { throw fail("structure nested deeper than \(limits.maxDepth) levels") }
    }
    private func tuple(_ items: [PickleValue]) throws -> PickleValue {
        let d = 1 + (items.map(\.depth).max() ?? 0)
        try checkDepth(d)
        for v in items { v.seal() }
        return .tuple(items, depth: d)
    }
    private func append(_ items: [PickleValue], to target: PickleValue) throws {
        guard case let .list(l) = target else { throw fail("APPEND(S)/ADDITEMS target is a \(target.typeName), not a list or set") }
        guard !l.sealed else { throw fail("list modified after it was embedded (recursive structures are not supported)") }
        for v in items {
            if case let .list(x) = v, x === l { throw fail("list appended to itself") }
            try checkDepth(v.depth + 1)
            l.depth = max(l.depth, v.depth + 1)
            v.seal()
            l.items.append(v)
        }
    }
    private func setItems(_ items: [PickleValue], in target: PickleValue) throws {
        guard case let .dict(d) = target else { throw fail("SETITEM(S) target is a \(target.typeName), not a dict") }
        guard !d.sealed else { throw fail("dict modified after it was embedded (recursive structures are not supported)") }
        guard items.count % 2 == 0 else { throw fail("odd number of items for a dict") }
        for i in stride(from: 0, to: items.count, by: 2) {
            let key: DictKey
            switch items[i] {
            case let .string(s): key = .string(s)
            case let .int(n): key = .int(n)
            case let .bool(b): key = .int(b ? 1 : 0)
            default: throw fail("dict key of type \(items[i].typeName) is not supported")
            }
            let v = items[i + 1]
            if case let .dict(x) = v, x === d { throw fail("dict inserted into itself") }
            try checkDepth(v.depth + 1)
            d.depth = max(d.depth, v.depth + 1)
            v.seal()
            d.set(key, v)
        }
    }
    private mutating func memoize(_ index: Int) throws {
        guard memo.count < limits.maxMemo || memo[index] != nil else { throw fail("memo exceeds \(limits.maxMemo) entries") }
        memo[index] = try top()
    }
    private mutating func recall(_ index: Int) throws {
        guard let v = memo[index] else { throw fail("memo has no entry \(index)") }
        try push(v)
    }
    private func resolve(_ module: String, _ name: String) throws -> PickleValue {
        let qualified = module + "." + name
        guard let g = TorchGlobal.allowlist[qualified] else {
            throw TorchCheckpointError.forbiddenGlobal(file: file, name: qualified, offset: opStart)
        }
        return .global(g)
    }

    // MARK: interpreter

    /// Runs the pickle to its STOP and returns the object it built.
    mutating func run() throws -> PickleValue {
        while true {
            opStart = pos
            let op = try u8()
            switch op {
            case 0x80:  // PROTO
                let v = try u8()
                guard v <= 5 else { throw fail("pickle protocol \(v) is newer than 5") }
            case 0x95: _ = try length(UInt64.self)  // FRAME: only a read-ahead hint
            case 0x2E:  // STOP
                guard let v = stack.last else { throw fail("STOP with an empty stack") }
                return v
            case 0x28:  // MARK
                guard marks.count < limits.maxStack else { throw fail("more than \(limits.maxStack) MARKs") }
                marks.append(stack.count)
            case 0x30:  // POP: a value, or the innermost mark when none is above it
                if stack.count > (marks.last ?? 0) { stack.removeLast() } else { _ = try popMark() }
            case 0x31: _ = try popMark()  // POP_MARK
            case 0x32: try push(try top())  // DUP
            case 0x4E: try push(.none)
            case 0x88: try push(.bool(true))
            case 0x89: try push(.bool(false))
            case 0x4A: try push(.int(Int64(try le(Int32.self))))  // BININT
            case 0x4B: try push(.int(Int64(try u8())))  // BININT1
            case 0x4D: try push(.int(Int64(try le(UInt16.self))))  // BININT2
            case 0x8A: try push(.int(try long(try length(UInt8.self))))  // LONG1
            case 0x8B: try push(.int(try long(try length(Int32.self))))  // LONG4
            case 0x49:  // INT (text)
                let s = try line()
                if s == "00" || s == "01" { try push(.bool(s == "01")); break }
                guard let n = Int64(s) else { throw fail("bad INT argument '\(s)'") }
                try push(.int(n))
            case 0x4C:  // LONG (text)
                let s = try line()
                guard let n = Int64(s.hasSuffix("L") ? String(s.dropLast()) : s) else { throw fail("bad LONG argument '\(s)'") }
                try push(.int(n))
            case 0x46:  // FLOAT (text)
                let s = try line()
                guard let x = Double(s) else { throw fail("bad FLOAT argument '\(s)'") }
                try push(.float(x))
            case 0x47: try push(.float(Double(bitPattern: UInt64(bigEndian: try take(8).loadUnaligned(as: UInt64.self)))))
            case 0x58: try push(.string(try utf8(try length(UInt32.self))))  // BINUNICODE
            case 0x8C: try push(.string(try utf8(try length(UInt8.self))))  // SHORT_BINUNICODE
            case 0x8D: try push(.string(try utf8(try length(UInt64.self))))  // BINUNICODE8
            case 0x54, 0x55:  // BINSTRING, SHORT_BINSTRING (Python 2 str): text when UTF-8
                let raw = Array(try take(op == 0x54 ? try length(Int32.self) : try length(UInt8.self)))
                try push(String(validating: raw, as: UTF8.self).map { .string($0) } ?? .bytes(raw))
            case 0x42: try push(.bytes(Array(try take(try length(UInt32.self)))))  // BINBYTES
            case 0x43: try push(.bytes(Array(try take(try length(UInt8.self)))))  // SHORT_BINBYTES
            case 0x8E, 0x96: try push(.bytes(Array(try take(try length(UInt64.self)))))  // BINBYTES8, BYTEARRAY8
            case 0x29: try push(.tuple([], depth: 1))  // EMPTY_TUPLE
            case 0x74: try push(try tuple(try popMark()))  // TUPLE
            case 0x85, 0x86, 0x87:  // TUPLE1-3
                var items: [PickleValue] = []
                for _ in 0..<Int(op - 0x84) { items.insert(try pop(), at: 0) }
                try push(try tuple(items))
            case 0x5D, 0x8F: try push(.list(PickleList()))  // EMPTY_LIST, EMPTY_SET
            case 0x6C, 0x91:  // LIST, FROZENSET
                let l = PickleValue.list(PickleList())
                try append(try popMark(), to: l)
                try push(l)
            case 0x7D: try push(.dict(PickleDict()))  // EMPTY_DICT
            case 0x64:  // DICT
                let d = PickleValue.dict(PickleDict())
                try setItems(try popMark(), in: d)
                try push(d)
            case 0x61:  // APPEND
                let v = try pop()
                try append([v], to: try top())
            case 0x65, 0x90:  // APPENDS, ADDITEMS
                let items = try popMark()
                try append(items, to: try top())
            case 0x73:  // SETITEM
                let v = try pop(), k = try pop()
                try setItems([k, v], in: try top())
            case 0x75:  // SETITEMS
                let items = try popMark()
                try setItems(items, in: try top())
            case 0x71: try memoize(Int(try u8()))  // BINPUT
            case 0x72: try memoize(Int(try le(UInt32.self)))  // LONG_BINPUT
            case 0x94: try memoize(memo.count)  // MEMOIZE
            case 0x70:  // PUT (text)
                guard let i = Int(try line()), i >= 0 else { throw fail("bad PUT index") }
                try memoize(i)
            case 0x68: try recall(Int(try u8()))  // BINGET
            case 0x6A: try recall(Int(try le(UInt32.self)))  // LONG_BINGET
            case 0x67:  // GET (text)
                guard let i = Int(try line()) else { throw fail("bad GET index") }
                try recall(i)
            case 0x63:  // GLOBAL
                let module = try line(), name = try line()
                try push(try resolve(module, name))
            case 0x93:  // STACK_GLOBAL
                let name = try pop(), module = try pop()
                guard case let .string(n) = name, case let .string(m) = module else {
                    throw fail("STACK_GLOBAL operands are \(module.typeName) and \(name.typeName), not strings")
                }
                try push(try resolve(m, n))
            case 0x52:  // REDUCE
                let args = try pop(), callable = try pop()
                try push(try call(callable, args))
            case 0x81:  // NEWOBJ
                let args = try pop(), cls = try pop()
                try push(try construct(cls, args))
            case 0x92:  // NEWOBJ_EX
                _ = try pop()
                let args = try pop(), cls = try pop()
                try push(try construct(cls, args))
            case 0x62:  // BUILD: only the `_metadata` attribute torch sets on state-dict OrderedDicts
                let state = try pop(), target = try top()
                guard case .dict = target else {
                    throw fail("BUILD on a \(target.typeName) (only OrderedDict attributes are accepted)")
                }
                state.seal()
            case 0x51:  // BINPERSID
                try push(try persistentLoad(try pop()))
            case 0x50: throw fail("text persistent ids (PERSID) are not used by torch.save")
            case 0x69: throw TorchCheckpointError.forbiddenOpcode(file: file, opcode: "INST", offset: opStart)
            case 0x6F: throw TorchCheckpointError.forbiddenOpcode(file: file, opcode: "OBJ", offset: opStart)
            case 0x82, 0x83, 0x84:
                throw TorchCheckpointError.forbiddenOpcode(file: file, opcode: "EXT\([1, 2, 4][Int(op - 0x82)])", offset: opStart)
            case 0x97, 0x98: throw fail("out-of-band buffers (NEXT_BUFFER/READONLY_BUFFER) are not supported")
            case 0x53, 0x56: throw fail("protocol-0 quoted strings (STRING/UNICODE) are not supported")
            default: throw fail(String(format: "unknown opcode 0x%02x", op))
            }
        }
    }

    /// LONG1/LONG4 payloads: little-endian two's complement, limited to 64 bits.
    private mutating func long(_ n: Int) throws -> Int64 {
        guard n <= 8 else { throw fail("integer of \(n) bytes does not fit 64 bits") }
        let b = try take(n)
        var v: UInt64 = 0
        for (i, x) in b.enumerated() { v |= UInt64(x) << (8 * UInt64(i)) }
        if n > 0 && n < 8 && b[n - 1] & 0x80 != 0 { v |= ~0 << (8 * UInt64(n)) }
        return Int64(bitPattern: v)
    }

    // MARK: the allowlisted callables

    private func call(_ callable: PickleValue, _ argsValue: PickleValue) throws -> PickleValue {
        guard case let .global(g) = callable else { throw fail("REDUCE on a \(callable.typeName), not an allowed global") }
        guard case let .tuple(args, _) = argsValue else { throw fail("REDUCE arguments are a \(argsValue.typeName), not a tuple") }
        switch g {
        case .orderedDict:
            let d = PickleValue.dict(PickleDict())
            if args.isEmpty { return d }
            // OrderedDict([(key, value), ...])
            guard args.count == 1, case let .list(l) = args[0] else { throw fail("OrderedDict called with unsupported arguments") }
            for pair in l.items {
                guard case let .tuple(kv, _) = pair, kv.count == 2 else { throw fail("OrderedDict item is not a pair") }
                try setItems(kv, in: d)
            }
            return d
        case .rebuildTensorV2:
            // (storage, offset, size, stride, requires_grad, backward_hooks[, metadata])
            guard args.count == 6 || args.count == 7 else { throw fail("_rebuild_tensor_v2 takes 6 or 7 arguments, got \(args.count)") }
            return try tensor(args)
        case .rebuildTensor:
            guard args.count == 4 else { throw fail("_rebuild_tensor takes 4 arguments, got \(args.count)") }
            return try tensor(args)
        case .rebuildParameter:
            // (data, requires_grad, backward_hooks): the parameter is its tensor
            guard args.count == 3, case .tensor = args[0] else { throw fail("_rebuild_parameter expects (tensor, requires_grad, hooks)") }
            return args[0]
        case .device:
            switch (args.first, args.count) {
            case let (.string(s)?, 1): return .string(s)
            case let (.string(s)?, 2): if case let .int(i) = args[1] { return .string("\(s):\(i)") }
            default: break
            }
            throw fail("torch.device called with unsupported arguments")
        case let .storage(_, name):
            throw fail("storage class \(name) cannot be called (it only names a dtype in persistent ids)")
        }
    }

    private func construct(_ cls: PickleValue, _ args: PickleValue) throws -> PickleValue {
        guard case .global(.orderedDict) = cls else { throw fail("NEWOBJ on a \(cls.typeName) other than OrderedDict") }
        return .dict(PickleDict())
    }

    /// torch.save's persistent id for a storage: ('storage', <storage class>, key, location, numel).
    private func persistentLoad(_ pid: PickleValue) throws -> PickleValue {
        guard case let .tuple(t, _) = pid, t.count == 5, case .string("storage") = t[0] else {
            throw fail("persistent id is not ('storage', class, key, location, numel)")
        }
        guard case let .global(g) = t[1], case let .storage(dtype, _) = g else {
            throw fail("persistent id names a \(t[1].typeName), not a storage class")
        }
        guard case let .string(key) = t[2], case .string = t[3], case let .int(numel) = t[4], numel >= 0 else {
            throw fail("persistent id is not ('storage', class, key, location, numel)")
        }
        guard let available = storageBytes(key) else {
            throw fail("storage key '\(key)' has no data/\(key) entry in the archive")
        }
        let (need, overflow) = Int(truncatingIfNeeded: numel).multipliedReportingOverflow(by: dtype.size)
        guard !overflow, numel <= Int64(Int.max), need <= available else {
            throw fail("storage '\(key)' declares \(numel) \(dtype.rawValue) elements but data/\(key) holds \(available) bytes")
        }
        return .storage(TorchStorage(key: key, dtype: dtype, count: Int(numel)))
    }

    private func ints(_ v: PickleValue, _ what: String) throws -> [Int] {
        guard case let .tuple(items, _) = v, items.count <= limits.maxRank else {
            throw fail("tensor \(what) is a \(v.typeName), not a tuple of at most \(limits.maxRank) integers")
        }
        return try items.map {
            guard case let .int(n) = $0, n >= 0, n <= Int64(Int.max) else { throw fail("tensor \(what) \(items) has an invalid entry") }
            return Int(n)
        }
    }

    /// Checks a strided view against its storage, so that materializing it can never read out of bounds.
    private func tensor(_ args: [PickleValue]) throws -> PickleValue {
        guard case let .storage(s) = args[0] else { throw fail("tensor rebuilt from a \(args[0].typeName), not a storage") }
        guard case let .int(off) = args[1], off >= 0, off <= Int64(Int.max) else { throw fail("invalid tensor storage offset") }
        let shape = try ints(args[2], "size"), strides = try ints(args[3], "stride")
        guard shape.count == strides.count else { throw fail("tensor size \(shape) and stride \(strides) differ in rank") }
        var count = 1
        for d in shape {
            let (c, o) = count.multipliedReportingOverflow(by: d)
            guard !o, c < 1 << 48 else { throw fail("tensor size \(shape) is too large") }
            count = c
        }
        let offset = Int(off)
        if count > 0 {
            var last = offset
            for (d, st) in zip(shape, strides) {
                let (span, o1) = (d - 1).multipliedReportingOverflow(by: st)
                let (l, o2) = last.addingReportingOverflow(span)
                guard !o1, !o2 else { throw fail("tensor size \(shape) with stride \(strides) overflows") }
                last = l
            }
            guard last < s.count else {
                throw fail("tensor size \(shape), stride \(strides), offset \(offset) reaches element \(last) of storage '\(s.key)', which has \(s.count)")
            }
        }
        return .tensor(TorchTensor(storage: s, offset: offset, shape: shape, strides: strides, elementCount: count))
    }
}
