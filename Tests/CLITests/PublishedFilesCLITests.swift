import Foundation
import Testing

/// The published checkpoint's side files load as they are: every field of preprocessor_config.json
/// (spec §1.2) and the config.json fields the fixture leaves out; a preprocessing value this engine
/// does not follow is an error naming it.
@Suite struct PublishedFilesCLITests {
    nonisolated(unsafe) static let preprocessor: [String: Any] = [
        "image_processor_type": "MiniCPMVImageProcessor", "processor_class": "MiniCPMOProcessor",
        "feature_extractor_type": "WhisperFeatureExtractor", "auto_map": ["AutoProcessor": "processing_minicpmo.MiniCPMOProcessor"],
        "max_slice_nums": 9, "scale_resolution": 448, "patch_size": 14, "image_feature_size": 64,
        "norm_mean": [0.5, 0.5, 0.5], "norm_std": [0.5, 0.5, 0.5], "slice_mode": true, "use_image_id": true, "version": 2.6,
        "im_start": "<image>", "im_end": "</image>", "slice_start": "<slice>", "slice_end": "</slice>",
        "im_id_start": "<image_id>", "im_id_end": "</image_id>", "unk": "<unk>",
        "sampling_rate": 16000, "feature_size": 80, "n_fft": 400, "hop_length": 160, "chunk_length": 30,
        "n_samples": 480000, "nb_max_frames": 3000, "padding_value": 0.0, "padding_side": "right", "return_attention_mask": false,
    ]

    func folder(_ tag: String, preprocessor: [String: Any]) throws -> String {
        let dir = try copyModel("tiny-minicpmo", tag: tag)
        try JSONSerialization.data(withJSONObject: preprocessor).write(to: URL(fileURLWithPath: dir + "/preprocessor_config.json"))
        let configURL = URL(fileURLWithPath: dir + "/config.json")
        var config = try JSONSerialization.jsonObject(with: Data(contentsOf: configURL)) as! [String: Any]
        for (k, v) in ["auto_map": ["AutoConfig": "configuration_minicpm.MiniCPMOConfig"], "transformers_version": "4.44.2",
                       "use_sliding_window": false, "vision_batch_size": 16, "use_cache": true, "version": 2.6] as [String: Any] {
            config[k] = v
        }
        try JSONSerialization.data(withJSONObject: config).write(to: configURL)
        return dir
    }

    @Test func thePublishedFieldsLoad() throws {
        let dir = try folder("published", preprocessor: Self.preprocessor)
        let image = fixtures.appendingPathComponent("images/chelsea-small.png").path
        let audio = fixtures.appendingPathComponent("audio/speech-16k-s16.wav").path
        let r = try run(["generate", "--model", dir, "--prompt", "Hi", "--image", image, "--audio", audio, "--max-tokens", "2", "--temperature", "0"])
        #expect(r.status == 0, "\(r.stderr)")
    }

    @Test func aDifferentPreprocessingIsRefused() throws {
        var p = Self.preprocessor
        p["norm_mean"] = [0.48, 0.45, 0.41]
        let dir = try folder("other-norm", preprocessor: p)
        let r = try run(["generate", "--model", dir, "--prompt", "Hi", "--image", fixtures.appendingPathComponent("images/chelsea-small.png").path,
                         "--max-tokens", "2"])
        #expect(r.status == 1)
        #expect(r.stderr.contains("norm_mean"), "\(r.stderr)")
        #expect(try run(["generate", "--model", dir, "--prompt", "Hi", "--max-tokens", "2"]).status == 0, "text is unaffected")
    }
}
