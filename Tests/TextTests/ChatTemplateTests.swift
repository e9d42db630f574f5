import Testing
import Text

@Suite struct ChatTemplateTests {
    @Test func systemAndUser() {
        let text = ChatTemplate.render([.system("You are helpful."), .user("Hi!")])
        #expect(text == "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n")
    }

    @Test func multiTurnWithoutDefaultSystemMessage() {
        let text = ChatTemplate.render([.user("1+1?"), .assistant("2"), .user("And 2+2?")])
        #expect(text == "<|im_start|>user\n1+1?<|im_end|>\n<|im_start|>assistant\n2<|im_end|>\n"
            + "<|im_start|>user\nAnd 2+2?<|im_end|>\n<|im_start|>assistant\n")
    }

    @Test func withoutGenerationPrompt() {
        let text = ChatTemplate.render([.user("a"), .assistant("b")], generationPrompt: .none)
        #expect(text == "<|im_start|>user\na<|im_end|>\n<|im_start|>assistant\nb<|im_end|>\n")
        #expect(ChatTemplate.render([], generationPrompt: .none) == "")
    }

    @Test func speechGenerationPrompt() {
        let text = ChatTemplate.render([.user("Say hi")], generationPrompt: .assistantSpeech)
        #expect(text == "<|im_start|>user\nSay hi<|im_end|>\n<|im_start|>assistant\n<|spk_bos|><|spk|><|spk_eos|><|tts_bos|>")
        #expect(ChatTemplate.speechPrompt == "<|im_start|>assistant\n<|spk_bos|><|spk|><|spk_eos|><|tts_bos|>")
    }

    @Test func renderedTemplateTokenizesMarkersAsSingleIds() {
        let tokenizer = Fixtures.qwen2
        let ids = tokenizer.encode(ChatTemplate.render([.system("S"), .user("U")]))
        #expect(ids.filter { $0 == 151644 }.count == 3)
        #expect(ids.filter { $0 == 151645 }.count == 2)
        #expect(ids.first == 151644)
        #expect(tokenizer.decode(ids) == ChatTemplate.render([.system("S"), .user("U")]))
    }
}
