//! The client side: one streaming request over HTTP/SSE (OpenAI chat completions) or over gRPC
//! (the daemon's `Generate`), timed from sending it, and a level of such requests run by a fixed
//! number of concurrent clients.

use super::*;

/// Where requests go.
#[derive(Clone)]
pub(crate) enum Target {
    /// OpenAI chat completions over HTTP/SSE.
    Http { client: reqwest::Client, url: String, model: String },
    /// `zeta.mlx.v1.Generation/Generate` on the daemon's socket.
    Grpc { client: v1::generation_client::GenerationClient<Channel>, model: String },
}

/// What one request measured; times in seconds from sending it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Outcome {
    pub(crate) error: Option<String>,
    pub(crate) ttft: f64,
    pub(crate) latency: f64,
    pub(crate) tokens: u64,
    pub(crate) prompt_tokens: u64,
    pub(crate) cached_tokens: u64,
    pub(crate) finish: String,
}

impl Outcome {
    pub(crate) fn failed(e: impl std::fmt::Display) -> Outcome {
        Outcome { error: Some(e.to_string()), ..Default::default() }
    }

    pub(crate) fn ok(&self) -> bool {
        self.error.is_none()
    }

    /// Tokens after the first over the time after the first.
    pub(crate) fn decode_tps(&self) -> Option<f64> {
        (self.tokens > 1 && self.latency > self.ttft).then(|| (self.tokens - 1) as f64 / (self.latency - self.ttft))
    }
}

pub(crate) fn prompt(label: &str, i: usize) -> String {
    format!("Request {label}.{}: {}", i + 1, PROMPTS[i % PROMPTS.len()])
}

impl Target {
    pub(crate) async fn request(&self, prompt: &str, max_tokens: u32) -> anyhow::Result<Outcome> {
        match self {
            Target::Http { client, url, model } => http_request(client, url, model, prompt, max_tokens).await,
            Target::Grpc { client, model } => grpc_request(client.clone(), model, prompt, max_tokens).await,
        }
    }
}

pub(crate) async fn http_request(
    client: &reqwest::Client,
    url: &str,
    model: &str,
    prompt: &str,
    max_tokens: u32,
) -> anyhow::Result<Outcome> {
    let body = json!({
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "temperature": 0,
        "max_tokens": max_tokens,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    let start = Instant::now();
    let mut resp = client.post(url).header("content-type", "application/json").body(body.to_string()).send().await?;
    let status = resp.status();
    if !status.is_success() {
        bail!("HTTP {status}: {}", resp.text().await.unwrap_or_default());
    }
    let mut out = Outcome::default();
    let (mut first, mut usage, mut done) = (None, false, false);
    let mut buf: Vec<u8> = Vec::new();
    while !done {
        let Some(chunk) = resp.chunk().await? else { break };
        // JSON escapes control characters, so a raw CR is only ever part of a line ending.
        buf.extend(chunk.iter().filter(|&&b| b != b'\r'));
        while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = buf.drain(..end + 2).collect();
            let event = String::from_utf8_lossy(&event);
            let data: Vec<&str> = event
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(|d| d.strip_prefix(' ').unwrap_or(d))
                .collect();
            if data.is_empty() {
                continue; // a comment (keep-alive)
            }
            let data = data.join("\n");
            if data == "[DONE]" {
                done = true;
                break;
            }
            let v: Value = serde_json::from_str(&data).with_context(|| format!("bad SSE data: {data}"))?;
            if let Some(e) = v.get("error") {
                bail!("error event: {e}");
            }
            if let Some(choice) = v["choices"].get(0) {
                let delta = &choice["delta"];
                let has_text = |k: &str| delta[k].as_str().is_some_and(|s| !s.is_empty());
                if first.is_none() && (has_text("content") || has_text("reasoning_content")) {
                    first = Some(start.elapsed());
                }
                if let Some(f) = choice["finish_reason"].as_str() {
                    out.finish = f.to_string();
                }
            }
            if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
                usage = true;
                out.tokens = u["completion_tokens"].as_u64().unwrap_or(0);
                out.prompt_tokens = u["prompt_tokens"].as_u64().unwrap_or(0);
                out.cached_tokens = u["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap_or(0);
            }
        }
    }
    out.latency = start.elapsed().as_secs_f64();
    ensure!(done, "the stream ended without data: [DONE]");
    ensure!(usage, "no usage chunk despite stream_options.include_usage");
    out.ttft = first.context("no text in the answer")?.as_secs_f64();
    Ok(out)
}

pub(crate) async fn grpc_request(
    mut client: v1::generation_client::GenerationClient<Channel>,
    model: &str,
    prompt: &str,
    max_tokens: u32,
) -> anyhow::Result<Outcome> {
    use v1::generate_event::Event;
    // What the gateway sends for the HTTP request above.
    let req = v1::GenerateRequest {
        model: model.into(),
        input: Some(v1::generate_request::Input::Chat(v1::Chat {
            messages: vec![v1::Message { role: "user".into(), content: Some(prompt.into()), ..Default::default() }],
            continue_final_message: false,
        })),
        sampling: Some(v1::SamplingParams { temperature: Some(0.0), ..Default::default() }),
        max_tokens: Some(max_tokens),
        separate_reasoning: true,
        ..Default::default()
    };
    let start = Instant::now();
    let mut stream = client.generate(req).await?.into_inner();
    let mut out = Outcome::default();
    let (mut first, mut finished) = (None, false);
    while let Some(ev) = stream.message().await? {
        match ev.event {
            Some(Event::Delta(d)) => {
                if first.is_none() && (!d.text.is_empty() || !d.reasoning_text.is_empty()) {
                    first = Some(start.elapsed());
                }
            }
            Some(Event::Finished(f)) => {
                finished = true;
                let u = f.usage.unwrap_or_default();
                out.tokens = u.completion_tokens.into();
                out.prompt_tokens = u.prompt_tokens.into();
                out.cached_tokens = u.cached_tokens.into();
                out.finish = match v1::FinishReason::try_from(f.reason) {
                    Ok(v1::FinishReason::Stop) => "stop",
                    Ok(v1::FinishReason::Length) => "length",
                    Ok(v1::FinishReason::ToolCalls) => "tool_calls",
                    _ => "?",
                }
                .into();
            }
            Some(Event::Started(_)) | None => {}
        }
    }
    // The gateway sends `[DONE]` when this stream ends, so both latencies end at the same point.
    out.latency = start.elapsed().as_secs_f64();
    ensure!(finished, "the stream ended without a finished event");
    out.ttft = first.context("no text in the answer")?.as_secs_f64();
    Ok(out)
}

/// The first request a freshly started server gets, then a second of the same shape; returns
/// both times to first token, as a line for the report.
pub(crate) async fn warm_up(target: &Target, name: &str, timeout: Duration) -> anyhow::Result<String> {
    let mut ttft = Vec::new();
    for i in 0..2 {
        let start = Instant::now();
        let o = tokio::time::timeout(timeout, target.request(&prompt("0", i), 16))
            .await
            .map_err(|_| anyhow::anyhow!("timed out"))
            .and_then(|r| r)
            .with_context(|| format!("{name} warm-up request"))?;
        eprintln!("bench-serve: {name} warm-up {i}: {} tokens in {:.1} s", o.tokens, start.elapsed().as_secs_f64());
        ttft.push(o.ttft);
    }
    Ok(format!("first request's TTFT {:.2} s, the next one's {:.2} s", ttft[0], ttft[1]))
}

/// One level: `n` requests by `concurrency` clients, each taking the next request when its last
/// one ends.
pub(crate) struct Level {
    pub(crate) wall: f64,
    pub(crate) outcomes: Vec<Outcome>,
}

pub(crate) async fn run_level(
    target: &Target,
    name: &str,
    label: &str,
    concurrency: usize,
    n: usize,
    max_tokens: u32,
    timeout: Duration,
) -> Level {
    eprintln!("bench-serve: {name} c={concurrency}: {n} requests (label {label}) ...");
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency.min(n) {
        let (target, next, done, label, name) =
            (target.clone(), next.clone(), done.clone(), label.to_string(), name.to_string());
        tasks.spawn(async move {
            let mut mine = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= n {
                    return mine;
                }
                let o = match tokio::time::timeout(timeout, target.request(&prompt(&label, i), max_tokens)).await {
                    Ok(Ok(o)) => o,
                    Ok(Err(e)) => Outcome::failed(format!("{e:#}")),
                    Err(_) => Outcome::failed(format!("no answer within {timeout:?}")),
                };
                let k = done.fetch_add(1, Ordering::SeqCst) + 1;
                match &o.error {
                    None => eprintln!(
                        "  {name} c={concurrency} [{k}/{n}] #{}: {} tokens ({}), TTFT {:.2} s, latency {:.2} s, at {:.1} s",
                        i + 1,
                        o.tokens,
                        o.finish,
                        o.ttft,
                        o.latency,
                        start.elapsed().as_secs_f64()
                    ),
                    Some(e) => eprintln!("  {name} c={concurrency} [{k}/{n}] #{}: FAILED: {e}", i + 1),
                }
                mine.push((i, o));
            }
        });
    }
    let mut all: Vec<(usize, Outcome)> = Vec::new();
    while let Some(r) = tasks.join_next().await {
        all.extend(r.expect("a request task panicked"));
    }
    let wall = start.elapsed().as_secs_f64();
    all.sort_by_key(|(i, _)| *i);
    let level = Level { wall, outcomes: all.into_iter().map(|(_, o)| o).collect() };
    let tokens: u64 = level.outcomes.iter().map(|o| o.tokens).sum();
    eprintln!(
        "bench-serve: {name} c={concurrency}: {}/{n} ok, {tokens} tokens in {wall:.1} s = {:.2} tok/s",
        level.outcomes.iter().filter(|o| o.ok()).count(),
        tokens as f64 / wall
    );
    level
}
