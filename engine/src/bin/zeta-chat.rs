//! `zeta-chat`: chat with a model through the engine alone, in the terminal — the quickest way to
//! see it work. Tokens print as they arrive; each answer ends with its token rate.
#![allow(clippy::print_stdout)]

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use zeta_engine::{
    ChatMessage, Engine, EngineOptions, Event, GenerateRequest, ModelSource, Prompt, SamplingParams, Usage,
};

/// Chat with a local MLX model (a GGUF file or an mlx-community folder).
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Model file or folder; defaults to the embedded SmolLM2-135M-Instruct.
    #[arg(long, short)]
    model: Option<PathBuf>,
    /// Answer this one prompt and exit; without it, chat interactively.
    prompt: Option<String>,
    /// System prompt.
    #[arg(long)]
    system: Option<String>,
    /// Most tokens per answer.
    #[arg(long, default_value_t = 512)]
    max_tokens: usize,
    /// Sampling temperature (0 = greedy).
    #[arg(long, default_value_t = 0.7)]
    temperature: f32,
    /// Seed for reproducible sampling.
    #[arg(long)]
    seed: Option<u64>,
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run(Args::parse()) {
        eprintln!("zeta-chat: {e}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let path = match args.model.clone().or_else(zeta_engine::default_model_path) {
        Some(p) => p,
        None => return Err("no model given and the embedded SmolLM2 is not installed; run `make setup`".into()),
    };
    eprint!("loading {} ...", path.display());
    let engine = Engine::load(ModelSource::detect(&path)?, EngineOptions::default(), |_, _| {})?;
    let info = engine.info();
    eprintln!(" {} layers, {:.0} MB, {:.1} s", info.num_layers, info.weight_bytes as f64 / 1e6, info.load_seconds);

    let mut history: Vec<ChatMessage> = Vec::new();
    if let Some(s) = &args.system {
        history.push(ChatMessage { role: "system".into(), content: Some(s.clone()), ..Default::default() });
    }
    if let Some(p) = &args.prompt {
        history.push(ChatMessage { role: "user".into(), content: Some(p.clone()), ..Default::default() });
        answer(&engine, &args, &history)?;
        return Ok(());
    }
    eprintln!("type a message; an empty line or Ctrl-D quits");
    let stdin = std::io::stdin();
    loop {
        print!("> ");
        std::io::stdout().flush()?;
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 || line.trim().is_empty() {
            return Ok(());
        }
        history.push(ChatMessage { role: "user".into(), content: Some(line.trim().into()), ..Default::default() });
        let reply = answer(&engine, &args, &history)?;
        history.push(ChatMessage { role: "assistant".into(), content: Some(reply), ..Default::default() });
    }
}

fn answer(engine: &Engine, args: &Args, history: &[ChatMessage]) -> Result<String, Box<dyn std::error::Error>> {
    let prompt = if engine.info().has_chat_template {
        Prompt::Chat {
            messages: history.to_vec(),
            tools: None,
            add_generation_prompt: true,
            continue_final_message: false,
            extra: None,
        }
    } else {
        Prompt::Text(history.iter().filter_map(|m| m.content.clone()).collect::<Vec<_>>().join("\n"))
    };
    let mut req = GenerateRequest::new(prompt);
    req.max_tokens = Some(args.max_tokens);
    req.sampling = SamplingParams { temperature: args.temperature, seed: args.seed, ..Default::default() };
    let started = Instant::now();
    let mut first = None;
    let mut stream = engine.submit(req)?;
    let mut reply = String::new();
    let mut out = std::io::stdout();
    let usage: Usage = loop {
        match stream.blocking_next() {
            Some(Event::Delta { text, .. }) => {
                first.get_or_insert_with(Instant::now);
                print!("{text}");
                out.flush()?;
                reply.push_str(&text);
            }
            Some(Event::Finished { usage, .. }) => break usage,
            Some(Event::Started { .. } | Event::Embedding(_)) => {}
            Some(Event::Error(e)) => return Err(e.into()),
            None => return Err("the engine stopped".into()),
        }
    };
    let first = first.unwrap_or_else(Instant::now);
    let decode = first.elapsed().as_secs_f64();
    let prefill = (first - started).as_secs_f64();
    println!();
    eprintln!(
        "[{} prompt tokens ({} cached) in {:.2} s, {:.1} tok/s | {} tokens in {:.2} s, {:.1} tok/s]",
        usage.prompt_tokens,
        usage.cached_tokens,
        prefill,
        (usage.prompt_tokens - usage.cached_tokens) as f64 / prefill.max(1e-9),
        usage.completion_tokens,
        decode,
        usage.completion_tokens.saturating_sub(1) as f64 / decode.max(1e-9),
    );
    Ok(reply)
}
