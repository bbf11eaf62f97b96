//! The ChatML template SmolLM2 was trained with.

use candle_core::quantized::gguf_file::Content;

/// Who said a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Instructions.
    System,
    /// The user.
    User,
    /// The model.
    Assistant,
}

/// One turn of the conversation.
#[derive(Debug, Clone, Copy)]
pub struct ChatTurn<'a> {
    /// Who said it.
    pub role: Role,
    /// What was said.
    pub content: &'a str,
}

/// `<|im_start|>role\ncontent<|im_end|>\n` per turn, then the open assistant turn.
///
/// No default system prompt is inserted: SmolLM2's own template adds one ("You are a helpful AI
/// assistant named SmolLM...") with which the model answers factual questions worse.
pub fn render(turns: &[ChatTurn<'_>]) -> String {
    let mut out = String::new();
    for turn in turns {
        let role = match turn.role {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        };
        out.push_str("<|im_start|>");
        out.push_str(role);
        out.push('\n');
        out.push_str(turn.content);
        out.push_str("<|im_end|>\n");
    }
    out.push_str("<|im_start|>assistant\n");
    out
}

/// Refuse models whose chat template is not ChatML, rather than prompting them wrongly.
pub fn check_template(content: &Content) -> Result<(), String> {
    match content
        .metadata
        .get("tokenizer.chat_template")
        .and_then(|v| v.to_string().ok())
    {
        Some(t) if t.contains("<|im_start|>") => Ok(()),
        Some(_) => Err(
            "its chat template is not ChatML (<|im_start|>), which is the only one supported"
                .into(),
        ),
        // Without a template, trust the vocabulary: ChatML models carry the markers as tokens.
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_chatml_with_an_open_assistant_turn() {
        let text = render(&[
            ChatTurn {
                role: Role::System,
                content: "Be brief.",
            },
            ChatTurn {
                role: Role::User,
                content: "Hi",
            },
        ]);
        assert_eq!(
            text,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }
}
