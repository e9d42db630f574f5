import Foundation

/// `preprocessor_config.json` of a MiniCPM-o checkpoint. Its settings are fixed in this engine
/// (MiniCPMVImageProcessor's 0.5/0.5 normalization and 14-pixel patches, WhisperFeatureExtractor's
/// 16 kHz, 80 bins, n_fft 400, hop 160, 30 s pieces; slicing comes from config.json's slice_config),
/// so the file is checked instead of read: a value that differs is an error naming it, never a
/// silently different preprocessing. Fields that change nothing here (class names, token strings,
/// padding, return_attention_mask, version, image_feature_size = query_num) are ignored.
struct PreprocessorConfig {
    static func check(directory: String, vision: VisionConfig?) throws {
        let path = (directory as NSString).appendingPathComponent("preprocessor_config.json")
        guard let data = FileManager.default.contents(atPath: path) else { return }
        guard let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw ConfigError.unreadable(path: path, reason: "not a JSON object")
        }
        var expected: [(String, Any)] = [
            ("norm_mean", [0.5, 0.5, 0.5]), ("norm_std", [0.5, 0.5, 0.5]), ("patch_size", 14),
            ("sampling_rate", 16000), ("feature_size", 80), ("n_fft", 400), ("hop_length", 160), ("chunk_length", 30),
        ]
        if let v = vision {
            expected += [("scale_resolution", v.slice.scaleResolution), ("max_slice_nums", v.slice.maxSliceNums),
                         ("image_feature_size", v.queryNum), ("use_image_id", v.useImageID), ("slice_mode", v.sliceMode)]
        }
        for (key, want) in expected {
            guard let have = json[key] else { continue }
            if !same(have, want) {
                throw ConfigError.unreadable(path: path, reason: "\(key) is \(have), but this engine preprocesses with \(want)"
                    + (vision != nil && ["scale_resolution", "max_slice_nums", "use_image_id", "slice_mode", "image_feature_size"].contains(key)
                       ? " (from config.json)" : ""))
            }
        }
    }

    static func same(_ a: Any, _ b: Any) -> Bool {
        switch (a, b) {
        case let (x as NSNumber, y as Int): return x.doubleValue == Double(y)
        case let (x as NSNumber, y as Bool): return x.boolValue == y
        case let (x as [Any], y as [Double]): return x.count == y.count && zip(x, y).allSatisfy { ($0 as? NSNumber)?.doubleValue == $1 }
        default: return false
        }
    }
}
