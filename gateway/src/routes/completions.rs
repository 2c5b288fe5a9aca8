//! `POST /v1/completions`: the legacy text completion API, JSON or SSE.

use std::collections::BTreeMap;

use zeta_proto::v1;
use zeta_proto::v1::generate_event::Event as Ev;

use super::generation::{Endpoint, Gathered};
use super::output;
use super::stream::{Chunk, Chunker};
use crate::convert::{self, CompletionOptions};
use crate::dto::request::CompletionRequest;
use crate::dto::response::*;
use crate::error::ApiError;

/// The legacy shape of log-probabilities. `text_offset` is where each token's text starts in the
/// answer, in characters: a token that goes on with a character another began starts at that
/// character. `offset` counts the characters begun by the tokens before.
fn legacy_logprobs(l: &[v1::TokenLogprob], offset: &mut u32) -> CompletionLogprobs {
    let mut out = CompletionLogprobs::default();
    for t in l {
        out.tokens.push(t.token.clone());
        out.token_logprobs.push(t.logprob);
        out.top_logprobs.push(t.top.iter().map(|a| (a.token.clone(), a.logprob)).collect::<BTreeMap<_, _>>());
        let mid_character = t.bytes.first().is_some_and(|b| b & 0xC0 == 0x80);
        out.text_offset.push(offset.saturating_sub(u32::from(mid_character)));
        // Every byte that is not a UTF-8 continuation byte begins a character.
        *offset += t.bytes.iter().filter(|&&b| b & 0xC0 != 0x80).count() as u32;
    }
    out
}

/// `POST /v1/completions` through the shared generation route.
pub struct Completions;

impl Endpoint for Completions {
    type Body = CompletionRequest;
    type Options = CompletionOptions;
    type Chunker = CompletionChunker;
    type Answer = Completion;

    fn field(body: &CompletionRequest, daemon_param: &str) -> Option<&'static str> {
        if daemon_param.starts_with("constraint") {
            Some(convert::constraint_field(&body.grammar))
        } else if daemon_param.starts_with("messages") || daemon_param == "prompt_tokens" {
            // `prompt_tokens` (the size of token ids) too: they came in `prompt`.
            Some("prompt")
        } else {
            None
        }
    }

    fn convert(
        body: &CompletionRequest,
        request_id: &str,
    ) -> Result<(v1::GenerateRequest, CompletionOptions), ApiError> {
        convert::completion(body, request_id)
    }

    fn streams(options: &CompletionOptions) -> bool {
        options.stream
    }

    fn chunker(request_id: &str, opts: CompletionOptions) -> CompletionChunker {
        CompletionChunker {
            id: format!("cmpl-{request_id}"),
            created: super::now(),
            model: opts.model.clone(),
            opts,
            offset: 0,
        }
    }

    fn answer(request_id: &str, opts: CompletionOptions, g: Gathered) -> Completion {
        Completion {
            id: format!("cmpl-{request_id}"),
            object: "text_completion",
            created: super::now(),
            model: output::reported_model(&opts.model, g.model),
            choices: vec![CompletionChoice {
                index: 0,
                text: g.text,
                logprobs: opts.logprobs.then(|| legacy_logprobs(&g.logprobs, &mut 0)),
                finish_reason: Some(output::finish_reason(&g.finished)),
            }],
            usage: Some(Some(output::usage(&g.finished))),
            system_fingerprint: None,
        }
    }
}

/// The chunks of a streamed completion.
pub struct CompletionChunker {
    id: String,
    created: u64,
    model: String,
    opts: CompletionOptions,
    offset: u32,
}

impl CompletionChunker {
    /// A chunk; with include_usage every chunk carries `usage`, null until the last (as chat's).
    fn chunk(&self, choices: Vec<CompletionChoice>, usage: Option<Usage>) -> String {
        let c = Completion {
            id: self.id.clone(),
            object: "text_completion",
            created: self.created,
            model: self.model.clone(),
            choices,
            usage: if usage.is_some() { Some(usage) } else { self.opts.include_usage.then_some(None) },
            system_fingerprint: None,
        };
        serde_json::to_string(&c).expect("chunks serialize")
    }
}

impl Chunker for CompletionChunker {
    fn on_event(&mut self, event: Ev) -> Vec<Chunk> {
        self.payloads(event).into_iter().map(Chunk::data).collect()
    }
}

impl CompletionChunker {
    fn payloads(&mut self, event: Ev) -> Vec<String> {
        match event {
            Ev::Started(s) => {
                self.model = output::reported_model(&self.model, s.model);
                vec![]
            }
            Ev::Delta(d) => {
                let logprobs = self.opts.logprobs.then(|| legacy_logprobs(&d.logprobs, &mut self.offset));
                if d.text.is_empty() && logprobs.is_none() {
                    return vec![];
                }
                vec![self.chunk(vec![CompletionChoice { index: 0, text: d.text, logprobs, finish_reason: None }], None)]
            }
            Ev::Finished(f) => {
                let mut out = vec![self.chunk(
                    vec![CompletionChoice {
                        index: 0,
                        text: String::new(),
                        logprobs: None,
                        finish_reason: Some(output::finish_reason(&f)),
                    }],
                    None,
                )];
                if self.opts.include_usage {
                    out.push(self.chunk(vec![], Some(output::usage(&f))));
                }
                out
            }
        }
    }
}
