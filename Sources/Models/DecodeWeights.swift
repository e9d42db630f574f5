import Kernels
import Weights

extension WeightMatrix {
    /// The weight as decode reads it best: quantized to `format` at load (where its columns allow) or,
    /// if already quantized (a checkpoint written by `minicpmo quantize`), copied into the decode layout.
    /// A converted memory-mapped source is evicted, so that memory holds one copy.
    func forDecode(quantizing format: WeightFormat?) -> WeightMatrix {
        let converted: WeightMatrix
        if self.format.isQuantized {
            guard let i = Quant.interleaved(self) else { return self }
            converted = i
        } else {
            guard let format, format.isQuantized, cols % quantBlock == 0 else { return self }
            converted = Quant.quantize(self, to: format, interleaved: true)
        }
        WeightReader.evict(self)
        return converted
    }
}
