//! A byte-level BPE tokenizer built from the GGUF metadata. candle's `TokenizerFromGguf` adds a
//! prefix space and so gets SmolLM2's ids wrong; this construction matched llama.cpp on 12 of 12
//! test strings.

use candle_core::quantized::gguf_file::{Content, Value};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, Tokenizer};

/// GGUF token types: 1 is a normal token; control, user-defined and the rest are special.
const NORMAL_TOKEN: i32 = 1;

fn strings<'a>(content: &'a Content, key: &str) -> Result<Vec<&'a str>, String> {
    let values = content
        .metadata
        .get(key)
        .ok_or_else(|| format!("no {key} in the metadata"))?
        .to_vec()
        .map_err(|e| format!("{key}: {e}"))?;
    values
        .iter()
        .map(|v| {
            v.to_string()
                .map(String::as_str)
                .map_err(|e| format!("{key}: {e}"))
        })
        .collect()
}

/// Build the tokenizer.
pub fn from_gguf(content: &Content) -> Result<Tokenizer, String> {
    let model = content
        .metadata
        .get("tokenizer.ggml.model")
        .and_then(|v| v.to_string().ok());
    if model.is_some_and(|m| m != "gpt2") {
        return Err(format!(
            "tokenizer model {model:?} is not byte-level BPE (gpt2)"
        ));
    }
    let tokens = strings(content, "tokenizer.ggml.tokens")?;
    let merges = strings(content, "tokenizer.ggml.merges")?;
    let vocab: Vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| ((*t).to_owned(), i as u32))
        .collect();
    let merges = merges
        .iter()
        .map(|m| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_owned(), b.to_owned()))
                .ok_or_else(|| format!("merge {m:?} has no space"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|e| e.to_string())?;
    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(Sequence::new(vec![
        Digits::new(true).into(),
        ByteLevel::new(false, true, true).into(),
    ])));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
    let types: Vec<i32> = match content
        .metadata
        .get("tokenizer.ggml.token_type")
        .map(Value::to_vec)
    {
        Some(Ok(values)) => values
            .iter()
            .map(|v| v.to_i32().unwrap_or(NORMAL_TOKEN))
            .collect(),
        _ => Vec::new(),
    };
    let special: Vec<AddedToken> = tokens
        .iter()
        .zip(types.iter())
        .filter(|(_, t)| **t != NORMAL_TOKEN)
        .map(|(tok, _)| AddedToken::from((*tok).to_owned(), true))
        .collect();
    tokenizer
        .add_special_tokens(special)
        .map_err(|e| e.to_string())?;
    Ok(tokenizer)
}

/// Tokens that end an answer: the GGUF's end-of-sequence token and ChatML's end of turn.
pub fn stop_ids(content: &Content, tokenizer: &Tokenizer) -> Vec<u32> {
    let mut ids: Vec<u32> = ["<|im_end|>", "<|endoftext|>"]
        .iter()
        .filter_map(|t| tokenizer.token_to_id(t))
        .collect();
    if let Some(eos) = content
        .metadata
        .get("tokenizer.ggml.eos_token_id")
        .and_then(|v| v.to_u32().ok())
        && !ids.contains(&eos)
    {
        ids.push(eos);
    }
    ids
}
