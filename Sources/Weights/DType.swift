import Kernels

/// Element types of safetensors files. Float types feed the kernels directly; integer types are
/// readable for inputs and quantized formats.
public enum DType: String, Sendable, CaseIterable {
    case f32 = "F32", f16 = "F16", bf16 = "BF16", f64 = "F64"
    case i8 = "I8", u8 = "U8", i16 = "I16", i32 = "I32", i64 = "I64", bool = "BOOL"

    public var size: Int {
        switch self {
        case .f64, .i64: return 8
        case .f32, .i32: return 4
        case .f16, .bf16, .i16: return 2
        case .i8, .u8, .bool: return 1
        }
    }

    /// The kernel format for float matrices, nil for the others.
    public var weightFormat: WeightFormat? {
        switch self {
        case .f32: return .f32
        case .f16: return .f16
        case .bf16: return .bf16
        default: return nil
        }
    }

    public var isInteger: Bool { [.i8, .u8, .i16, .i32, .i64, .bool].contains(self) }
}
