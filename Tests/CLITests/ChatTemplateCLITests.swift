import Foundation
import Testing

/// Prompts follow the checkpoint's own tokenizer_config.json chat_template.
@Suite struct ChatTemplateCLITests {
    func withTemplate(_ template: String, tag: String) throws -> String {
        let dir = try copyModel("tiny-minicpmo", tag: tag)
        let url = URL(fileURLWithPath: dir + "/tokenizer_config.json")
        var config = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        config["chat_template"] = template
        try JSONSerialization.data(withJSONObject: config).write(to: url)
        return dir
    }

    func promptTokens(_ dir: String) throws -> (Int32, Int, String) {
        let r = try run(["generate", "--model", dir, "--prompt", "Hello!", "--max-tokens", "2", "--temperature", "0", "--json"])
        let o = (try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]) ?? [:]
        return (r.status, o["prompt_tokens"] as? Int ?? -1, r.stderr)
    }

    @Test func theCheckpointsTemplateIsUsed() throws {
        let plain = try promptTokens(fixtures.appendingPathComponent("models/tiny-minicpmo").path)
        #expect(plain.0 == 0)
        let withSystem = try withTemplate(
            "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
            + "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
            tag: "template-system")
        let r = try promptTokens(withSystem)
        #expect(r.0 == 0, "\(r.2)")
        #expect(r.1 > plain.1 + 5, "the template's default system message is in the prompt (\(r.1) vs \(plain.1))")
    }

    @Test func anUnsupportedTemplateIsAClearError() throws {
        let dir = try withTemplate("{% macro x() %}{% endmacro %}", tag: "template-bad")
        let r = try promptTokens(dir)
        #expect(r.0 == 1)
        #expect(r.2.contains("chat template") && r.2.contains("macro"), "\(r.2)")
    }
}
