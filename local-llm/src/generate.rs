//! The generation loop: prompt in one forward pass, then one token at a time with greedy or
//! temperature/top-p sampling, stop tokens, stop sequences and a token budget.

use std::time::{Duration, Instant};

use crate::llama::MAX_SEQ_LEN;
use candle_core::{DType, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};

use crate::chat::{self, ChatTurn};
use crate::{LocalModel, LocalModelError};

/// How to sample.
#[derive(Debug, Clone)]
pub struct GenerationParams {
    /// Most tokens in the answer.
    pub max_tokens: usize,
    /// 0 is greedy.
    pub temperature: f64,
    /// Nucleus sampling; `None` samples from the whole distribution.
    pub top_p: Option<f64>,
    /// Seed for sampling, so a request can be repeated.
    pub seed: u64,
    /// The answer ends before the first of these.
    pub stop: Vec<String>,
}

impl Default for GenerationParams {
    fn default() -> Self {
        Self {
            max_tokens: 256,
            temperature: 0.0,
            top_p: None,
            seed: 299_792_458,
            stop: Vec::new(),
        }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-turn token or a stop sequence.
    Stop,
    /// `max_tokens` was reached.
    Length,
}

/// One finished answer.
#[derive(Debug, Clone)]
pub struct Generation {
    /// The answer text, without stop tokens or sequences.
    pub text: String,
    /// Tokens in the rendered prompt.
    pub prompt_tokens: usize,
    /// Tokens generated.
    pub completion_tokens: usize,
    /// Why it ended.
    pub finish: FinishReason,
    /// From the start of the call to the first generated token.
    pub time_to_first_token: Duration,
    /// The whole call.
    pub duration: Duration,
}

impl LocalModel {
    /// Answer a conversation. `on_text` receives each new piece of text as it is decoded and may
    /// return `false` to stop early (the client went away).
    pub fn generate(
        &mut self,
        turns: &[ChatTurn<'_>],
        params: &GenerationParams,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation, LocalModelError> {
        let started = Instant::now();
        let prompt = self.encode(&chat::render(turns))?;
        if prompt.len() + params.max_tokens > MAX_SEQ_LEN {
            return Err(LocalModelError::ContextTooLong {
                prompt_tokens: prompt.len(),
                max_tokens: params.max_tokens,
                limit: MAX_SEQ_LEN,
            });
        }
        let sampling = match (params.temperature, params.top_p) {
            (t, _) if t <= 0.0 => Sampling::ArgMax,
            (temperature, Some(p)) if p < 1.0 => Sampling::TopP { p, temperature },
            (temperature, _) => Sampling::All { temperature },
        };
        let mut sampler = LogitsProcessor::from_sampling(params.seed, sampling);

        let mut generated: Vec<u32> = Vec::new();
        let mut emitted = 0usize; // bytes of the decoded answer already handed to on_text
        let mut text = String::new();
        let mut finish = FinishReason::Length;
        let mut first_token_at = None;
        // index_pos 0 resets the KV cache: every request starts from a clean state.
        let mut input = Tensor::new(prompt.as_slice(), &self.device)?.unsqueeze(0)?;
        let mut position = 0usize;
        while generated.len() < params.max_tokens {
            let logits = self.weights.forward(&input, position)?;
            position += input.dim(1)?;
            let logits = logits.squeeze(0)?.to_dtype(DType::F32)?;
            let next = sampler.sample(&logits)?;
            first_token_at.get_or_insert_with(|| started.elapsed());
            if self.stop_ids.contains(&next) {
                finish = FinishReason::Stop;
                break;
            }
            generated.push(next);
            text = self
                .tokenizer
                .decode(&generated, true)
                .map_err(|e| LocalModelError::Tokenizer(e.to_string()))?;
            if let Some(cut) = params
                .stop
                .iter()
                .filter_map(|s| text.find(s.as_str()))
                .min()
            {
                text.truncate(cut);
                finish = FinishReason::Stop;
            }
            // Hold back a trailing replacement character (the next token may complete the
            // character) and any tail that could still grow into a stop sequence.
            let mut ready = if text.ends_with('\u{fffd}') {
                text.len() - '\u{fffd}'.len_utf8()
            } else {
                text.len()
            };
            if finish != FinishReason::Stop {
                ready = ready.min(text.len() - partial_stop_len(&text, &params.stop));
            }
            if ready > emitted && text.is_char_boundary(emitted) {
                if !on_text(&text[emitted..ready]) {
                    break;
                }
                emitted = ready;
            }
            if finish == FinishReason::Stop {
                break;
            }
            input = Tensor::new(&[next], &self.device)?.unsqueeze(0)?;
        }
        Ok(Generation {
            text,
            prompt_tokens: prompt.len(),
            completion_tokens: generated.len(),
            finish,
            time_to_first_token: first_token_at.unwrap_or_else(|| started.elapsed()),
            duration: started.elapsed(),
        })
    }
}

/// Length of the longest proper prefix of a stop sequence that `text` ends with.
fn partial_stop_len(text: &str, stops: &[String]) -> usize {
    stops
        .iter()
        .flat_map(|stop| {
            (1..stop.len()).filter(move |&k| stop.is_char_boundary(k) && text.ends_with(&stop[..k]))
        })
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tail_that_may_become_a_stop_sequence_is_held_back() {
        let stops = vec!["\nUser:".to_owned()];
        assert_eq!(partial_stop_len("Paris.\nUs", &stops), 3);
        assert_eq!(partial_stop_len("Paris.", &stops), 0);
        assert_eq!(partial_stop_len("Paris.\n", &stops), 1);
    }
}
