//! The handle the daemon holds for one loaded model: load it on a dedicated engine thread, submit
//! validated requests, read events, inspect statistics. Dropping a [`Generation`] cancels it;
//! dropping the [`Engine`] stops its thread.

use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use crate::chat_template::ChatInput;
use crate::constraint::Grammars;
use crate::error::{EngineError, Result};
use crate::metrics::{Stats, StatsSnapshot};
use crate::options::{EngineOptions, ModelInfo};
use crate::request::{Event, GenerateRequest, Prompt};
use crate::sampling::SamplingParams;
use crate::scheduler::{self, Command, Pending, Shared};
use crate::source::{self, ModelSource};
use crate::tokenizer::Tokenizer;

/// A loaded model and the thread that runs it.
pub struct Engine {
    shared: Arc<Shared>,
    tx: Sender<Command>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// The event stream of one request. Dropping it cancels the request.
pub struct Generation {
    rx: UnboundedReceiver<Event>,
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
}

impl Generation {
    /// The next event; `None` after the last.
    pub async fn next(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    /// The next event, blocking the thread (not for use inside an async runtime).
    pub fn blocking_next(&mut self) -> Option<Event> {
        self.rx.blocking_recv()
    }

    /// The next event if one is ready, without waiting: `Some(None)` once the stream has ended.
    pub fn try_next(&mut self) -> Option<Option<Event>> {
        use tokio::sync::mpsc::error::TryRecvError;
        match self.rx.try_recv() {
            Ok(e) => Some(Some(e)),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => Some(None),
        }
    }
}

impl Engine {
    /// Loads a model on a new engine thread and waits until it is ready. `progress` receives
    /// (layers loaded, total layers).
    pub fn load(
        source: ModelSource,
        options: EngineOptions,
        progress: impl FnMut(usize, usize) + Send + 'static,
    ) -> Result<Engine> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (tx, rx) = std::sync::mpsc::channel();
        let name = options.name.clone();
        let thread = std::thread::Builder::new()
            .name(format!("engine-{name}"))
            .spawn(move || {
                // First, so it is dropped last: after the model and its KV pool.
                let _streams = match mlx::ThreadStreams::borrow() {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.into()));
                        return;
                    }
                };
                let started = Instant::now();
                let loaded = match source::load_local(&source, &options.load, progress) {
                    Ok(l) => l,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let model = loaded.model;
                let cfg = &model.cfg;
                let context_length = match options.context_length {
                    Some(c) => {
                        if c > cfg.max_position_embeddings {
                            tracing::warn!(model = %options.name, context_length = c, trained = cfg.max_position_embeddings,
                                "context_length is above what the model was trained for");
                        }
                        c
                    }
                    None => cfg.max_position_embeddings,
                };
                let info = ModelInfo {
                    name: options.name.clone(),
                    path: source.path().display().to_string(),
                    arch: cfg.arch.name().into(),
                    context_length,
                    vocab_size: cfg.vocab_size,
                    num_layers: cfg.num_layers,
                    hidden_size: cfg.hidden_size,
                    weight_bytes: model.weight_bytes(),
                    kv_bytes_per_token: model.kv_bytes_per_token(),
                    dense: loaded.dense,
                    eos_token_ids: loaded.eos_token_ids.clone(),
                    has_chat_template: loaded.template.is_some(),
                    embedding: loaded.embedding,
                    load_seconds: started.elapsed().as_secs_f64(),
                };
                tracing::info!(model = %info.name, arch = %info.arch, weight_bytes = info.weight_bytes,
                    dense = info.dense, seconds = info.load_seconds, "model loaded");
                let shared = Arc::new(Shared {
                    tokenizer: loaded.tokenizer,
                    template: loaded.template,
                    eos_token_ids: loaded.eos_token_ids,
                    info,
                    options,
                    stats: Stats::default(),
                    grammars: Grammars::new(),
                });
                // Ready once warmed up: the first request must not wait for the warm-up.
                let handle = shared.clone();
                scheduler::run(model, shared, rx, move || ready_tx.send(Ok(handle)).is_ok());
            })
            .map_err(|e| EngineError::io("engine thread", e))?;
        match ready_rx.recv() {
            Ok(Ok(shared)) => Ok(Engine { shared, tx, thread: Mutex::new(Some(thread)) }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(EngineError::bad_model(name, "the engine thread stopped while loading"))
            }
        }
    }

    /// Facts about the model.
    pub fn info(&self) -> &ModelInfo {
        &self.shared.info
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.shared.tokenizer
    }

    /// Current statistics.
    pub fn stats(&self) -> StatsSnapshot {
        self.shared.stats.snapshot()
    }

    /// The source of the model's chat template, if it has one (to detect tool-call formats).
    pub fn chat_template_source(&self) -> Option<&str> {
        self.shared.template.as_ref().map(|t| t.source())
    }

    /// Renders a chat prompt through the model's template.
    pub fn render_chat(&self, input: &ChatInput<'_>) -> Result<String> {
        let t = self.shared.template.as_ref().ok_or_else(|| {
            EngineError::invalid(
                "messages",
                format!("model '{}' has no chat template; send a raw prompt", self.shared.info.name),
            )
        })?;
        t.render(input)
    }

    /// The token ids a prompt becomes.
    pub fn tokenize(&self, prompt: &Prompt) -> Result<Vec<u32>> {
        let tok = &self.shared.tokenizer;
        match prompt {
            Prompt::Text(text) => tok.encode(text, true),
            Prompt::Rendered(text) => tok.encode(text, false),
            Prompt::Tokens(ids) => {
                let vocab = self.shared.info.vocab_size;
                if let Some((i, bad)) = ids.iter().enumerate().find(|(_, t)| **t as usize >= vocab) {
                    return Err(EngineError::invalid(
                        format!("prompt[{i}]"),
                        format!("token id {bad} is outside the vocabulary (size {vocab})"),
                    ));
                }
                Ok(ids.clone())
            }
            // One render path for chats: the shaper's, with no forced call.
            Prompt::Chat { .. } => match crate::tools::Shaper::render(self, prompt, &Default::default())? {
                Some(r) => tok.encode(&r.text, false),
                None => unreachable!("a chat prompt renders"),
            },
        }
    }

    /// Refuses a prompt whose text alone is too long for the context, before spending seconds
    /// tokenizing (or rendering) megabytes that cannot fit. The floor on its token count is
    /// halved twice over for safety: a normalizer may shorten text (NFKC, stripped accents).
    fn refuse_text_past_the_context(&self, prompt: &Prompt) -> Result<()> {
        let bytes = match prompt {
            Prompt::Text(t) | Prompt::Rendered(t) => t.len(),
            Prompt::Chat { messages, .. } => messages.iter().filter_map(|m| m.content.as_ref()).map(String::len).sum(),
            Prompt::Tokens(_) => return Ok(()),
        };
        let info = &self.shared.info;
        let floor = bytes / (4 * self.shared.tokenizer.max_piece_bytes());
        if floor < info.context_length {
            return Ok(());
        }
        Err(EngineError::ContextOverflow {
            prompt_tokens: floor,
            max_tokens: 0,
            context_length: info.context_length,
            field: prompt.field().into(),
            message: format!(
                "the prompt ({bytes} bytes of text) has at least {floor} tokens; the context of model '{}' holds {}",
                info.name, info.context_length
            ),
        })
    }

    /// Validates and queues a request. Errors name the field, the value and the limit.
    pub fn submit(&self, req: GenerateRequest) -> Result<Generation> {
        let info = &self.shared.info;
        if info.embedding.is_some() {
            return Err(EngineError::wrong_kind(&info.name, true));
        }
        req.check()?;
        self.refuse_text_past_the_context(&req.prompt)?;
        let prompt = self.tokenize(&req.prompt)?;
        if prompt.is_empty() {
            return Err(EngineError::invalid("prompt", "is empty"));
        }
        let ctx = info.context_length;
        let field = req.prompt.field();
        let overflow = |max_tokens: usize, message: String| EngineError::ContextOverflow {
            prompt_tokens: prompt.len(),
            max_tokens,
            context_length: ctx,
            field: field.into(),
            message,
        };
        if prompt.len() >= ctx {
            return Err(overflow(
                0,
                format!("the prompt has {} tokens; the context of model '{}' holds {ctx}", prompt.len(), info.name),
            ));
        }
        let max_tokens = match req.max_tokens {
            Some(m) if prompt.len() + m > ctx => {
                return Err(overflow(
                    m,
                    format!(
                        "the prompt ({} tokens) plus max_tokens ({m}) is {}, over the context length {ctx} of model '{}'",
                        prompt.len(),
                        prompt.len() + m,
                        info.name
                    ),
                ));
            }
            Some(m) => m,
            None => (ctx - prompt.len()).min(req.max_tokens_cap.unwrap_or(usize::MAX)),
        };
        // A KV cache limit bounds one sequence too (slot 0 of the pool is scratch): an explicit
        // max_tokens past it is refused, an unset one stops there.
        let max_tokens = match self.shared.options.kv_cache_limit {
            Some(limit) => {
                let slots = (limit / info.kv_bytes_per_token.max(1)).saturating_sub(1);
                let needed = prompt.len() + if req.max_tokens.is_some() { max_tokens } else { 1 };
                if needed > slots {
                    return Err(EngineError::KvCacheFull { needed, free: slots, capacity: slots, bytes: limit });
                }
                max_tokens.min(slots - prompt.len())
            }
            None => max_tokens,
        };
        req.sampling.validate(info.vocab_size)?;
        let guide = match &req.constraint {
            Some(c) => {
                let s = &self.shared;
                Some(s.grammars.compile(c, &s.tokenizer, &s.eos_token_ids, info.vocab_size)?)
            }
            None => None,
        };
        let pending = |tx| Pending {
            request_id: req.request_id,
            prompt,
            sampling: req.sampling,
            max_tokens,
            stop: req.stop,
            keep_special_tokens: req.keep_special_tokens,
            guide,
            tx,
            submitted: Instant::now(),
        };
        self.enqueue(pending)
    }

    /// Validates and queues an embedding request (an embedding model only): its events are
    /// `Started`, `Embedding` and `Finished`. Text is tokenized with the tokenizer's own
    /// decoration (the end token these models pool at).
    pub fn embed(&self, request_id: String, prompt: &Prompt) -> Result<Generation> {
        let info = &self.shared.info;
        if info.embedding.is_none() {
            return Err(EngineError::wrong_kind(&info.name, false));
        }
        let prompt = self.tokenize(prompt)?;
        if prompt.is_empty() {
            return Err(EngineError::invalid("input", "is empty"));
        }
        let ctx = info.context_length;
        if prompt.len() > ctx {
            return Err(EngineError::ContextOverflow {
                prompt_tokens: prompt.len(),
                max_tokens: 0,
                context_length: ctx,
                field: "input".into(),
                message: format!(
                    "the input has {} tokens; the context of model '{}' holds {ctx}",
                    prompt.len(),
                    info.name
                ),
            });
        }
        self.enqueue(|tx| Pending {
            request_id,
            prompt,
            sampling: SamplingParams::greedy(),
            max_tokens: 0,
            stop: vec![],
            keep_special_tokens: false,
            guide: None,
            tx,
            submitted: Instant::now(),
        })
    }

    /// Queues a validated request unless the queue is full.
    fn enqueue(&self, make: impl FnOnce(tokio::sync::mpsc::UnboundedSender<Event>) -> Pending) -> Result<Generation> {
        let info = &self.shared.info;
        let stats = &self.shared.stats;
        let limit = self.shared.options.max_queue;
        let mut queued = stats.queued.load(Ordering::Relaxed);
        loop {
            if queued >= limit {
                return Err(EngineError::Busy { queued, limit });
            }
            match stats.queued.compare_exchange(queued, queued + 1, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => break,
                Err(now) => queued = now,
            }
        }
        let (tx, rx) = unbounded_channel();
        let pending = make(tx);
        let prompt_tokens = pending.prompt.len();
        if self.tx.send(Command::Submit(Box::new(pending))).is_err() {
            stats.queued.fetch_sub(1, Ordering::Relaxed);
            return Err(EngineError::ShuttingDown { model: info.name.clone() });
        }
        stats.requests.fetch_add(1, Ordering::Relaxed);
        Ok(Generation { rx, prompt_tokens })
    }

    /// Stops the engine thread: queued and running requests get a shutting-down error. Waits for
    /// the thread (at most one forward pass).
    pub fn shutdown(&self) {
        let _ = self.tx.send(Command::Shutdown);
        if let Some(t) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = t.join();
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shutdown();
    }
}
