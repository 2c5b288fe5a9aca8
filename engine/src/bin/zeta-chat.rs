//! `zeta-chat`: chat with a model through the engine alone, in the terminal — the quickest way to
//! see it work. Tokens print as they arrive; each answer ends with its token rate. Ctrl-C stops
//! an answer (the chat goes on) and at the prompt quits; a turn the engine refuses (too long for
//! the context) is reported and dropped, as in `zeta run`.
#![allow(clippy::print_stdout)]

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

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
    #[arg(value_parser = non_empty)]
    prompt: Option<String>,
    /// System prompt.
    #[arg(long)]
    system: Option<String>,
    /// Most tokens per answer.
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..))]
    max_tokens: u32,
    /// Sampling temperature (0 = greedy).
    #[arg(long, default_value_t = 0.7, allow_negative_numbers = true, value_parser = temperature)]
    temperature: f32,
    /// Seed for reproducible sampling.
    #[arg(long)]
    seed: Option<u64>,
}

/// Checked before the model loads, not after.
fn temperature(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(t) if t.is_finite() && t >= 0.0 => Ok(t),
        _ => Err(format!("'{s}' is not a temperature (a number, 0 or more)")),
    }
}

fn non_empty(s: &str) -> Result<String, String> {
    if s.trim().is_empty() { Err("the prompt is empty".into()) } else { Ok(s.to_string()) }
}

/// Set while an answer streams: Ctrl-C then stops the answer instead of the program.
static ANSWERING: AtomicBool = AtomicBool::new(false);
/// Ctrl-C came during an answer.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    if ANSWERING.load(Ordering::SeqCst) {
        STOP.store(true, Ordering::SeqCst);
    } else {
        // At the prompt: quit as an interrupted command does. Only async-signal-safe calls here.
        // SAFETY: write(2) and _exit(2) are async-signal-safe.
        unsafe {
            libc::write(2, b"\n".as_ptr().cast(), 1);
            libc::_exit(130);
        }
    }
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    // SAFETY: installs a handler that only touches atomics and calls async-signal-safe functions.
    unsafe { libc::signal(libc::SIGINT, on_interrupt as *const () as libc::sighandler_t) };
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
    // Errors name the model as the user knows it: its file or folder name.
    let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
    let options = EngineOptions { name, ..EngineOptions::default() };
    let engine = Engine::load(ModelSource::detect(&path)?, options, |_, _| {})?;
    let info = engine.info();
    eprintln!(" {} layers, {:.0} MB, {:.1} s", info.num_layers, info.weight_bytes as f64 / 1e6, info.load_seconds);

    let mut history: Vec<ChatMessage> = Vec::new();
    if let Some(s) = &args.system {
        history.push(message("system", s));
    }
    if let Some(p) = &args.prompt {
        history.push(message("user", p));
        answer(&engine, &args, &history)?;
        return Ok(());
    }
    let keep = history.len();
    eprintln!("type a message; /help lists the commands, Ctrl-D or /bye quits, Ctrl-C stops an answer");
    let stdin = std::io::stdin();
    loop {
        print!("> ");
        std::io::stdout().flush()?;
        let mut raw = Vec::new();
        if stdin.lock().read_until(b'\n', &mut raw)? == 0 {
            println!();
            return Ok(());
        }
        let Ok(line) = String::from_utf8(raw) else {
            eprintln!("(that line is not UTF-8 text; skipped)");
            continue;
        };
        let text = line.trim();
        match text.split_whitespace().next().filter(|w| w.starts_with('/')).unwrap_or(text) {
            "" => continue,
            "/bye" | "/exit" | "/quit" => return Ok(()),
            "/clear" => {
                history.truncate(keep);
                eprintln!("(conversation cleared)");
                continue;
            }
            "/help" | "/?" => {
                eprintln!("/bye quits, /clear forgets the conversation; // sends a line that begins with /");
                continue;
            }
            w if w.starts_with('/') && !w.starts_with("//") => {
                eprintln!("unknown command '{w}' (/help lists them)");
                continue;
            }
            _ => {}
        }
        let text = text.strip_prefix('/').filter(|t| t.starts_with('/')).unwrap_or(text);
        history.push(message("user", text));
        match answer(&engine, &args, &history) {
            Ok(reply) if reply.is_empty() && STOP.load(Ordering::SeqCst) => {
                history.pop();
                eprintln!("(answer stopped; the question is dropped from the conversation)");
            }
            Ok(reply) => history.push(message("assistant", &reply)),
            // A turn the engine refuses is dropped, and the chat goes on.
            Err(e) => {
                history.pop();
                eprintln!("zeta-chat: {e}");
                if history.len() > keep {
                    eprintln!("(if the conversation so far is what no longer fits, /clear forgets it)");
                }
            }
        }
    }
}

fn message(role: &str, text: &str) -> ChatMessage {
    ChatMessage { role: role.into(), content: Some(text.into()), ..Default::default() }
}

/// One answer, streamed; Ctrl-C stops it where it got to.
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
    req.max_tokens = Some(args.max_tokens as usize);
    req.sampling = SamplingParams { temperature: args.temperature, seed: args.seed, ..Default::default() };
    let started = Instant::now();
    let mut first = None;
    STOP.store(false, Ordering::SeqCst);
    ANSWERING.store(true, Ordering::SeqCst);
    let streamed = stream(engine, req, &mut first);
    ANSWERING.store(false, Ordering::SeqCst);
    let (reply, usage) = streamed?;
    println!();
    let Some(usage) = usage else {
        eprintln!("(answer stopped)");
        return Ok(reply);
    };
    let first = first.unwrap_or_else(Instant::now);
    let decode = first.elapsed().as_secs_f64();
    let prefill = (first - started).as_secs_f64();
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

/// The answer's text and, unless Ctrl-C stopped it, its usage. Dropping the stream on a stop
/// cancels the request in the engine.
fn stream(
    engine: &Engine,
    req: GenerateRequest,
    first: &mut Option<Instant>,
) -> Result<(String, Option<Usage>), Box<dyn std::error::Error>> {
    let mut stream = engine.submit(req)?;
    let mut reply = String::new();
    let mut out = std::io::stdout();
    loop {
        if STOP.load(Ordering::SeqCst) {
            return Ok((reply, None));
        }
        // Polled, not awaited, so a Ctrl-C during a long prefill is seen at once.
        let Some(event) = stream.try_next() else {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        };
        match event {
            Some(Event::Delta { text, .. }) => {
                first.get_or_insert_with(Instant::now);
                print!("{text}");
                out.flush()?;
                reply.push_str(&text);
            }
            Some(Event::Finished { usage, .. }) => return Ok((reply, Some(usage))),
            Some(Event::Started { .. } | Event::Embedding(_)) => {}
            Some(Event::Error(e)) => return Err(e.into()),
            None => return Err("the engine stopped".into()),
        }
    }
}
