//! `zeta run`: one answer to a prompt, or an interactive chat that keeps the conversation's
//! history, with every token printed as it arrives. Ctrl-C stops the current answer (closing
//! the stream frees its slot in the daemon's batch); at the chat prompt it quits.

use std::io::{BufRead as _, IsTerminal as _, Read as _, Write as _};
use std::time::Instant;

use tokio::sync::mpsc;
use zeta_proto::v1;

use crate::args::RunArgs;
use crate::client::Daemon;
use crate::error::CliError;

/// How one answer ended.
struct Answer {
    text: String,
    finished: Option<v1::Finished>,
    interrupted: bool,
}

/// Runs `zeta run`.
pub async fn run(d: &Daemon, args: &RunArgs) -> Result<(), CliError> {
    let model = super::model_name(&args.model);
    let mut history = Vec::new();
    if let Some(system) = &args.system {
        history.push(message("system", system));
    }
    let stdin = std::io::stdin();
    let prompt = match &args.prompt {
        Some(p) if p.trim().is_empty() => {
            return Err(CliError::Usage("the prompt is empty: give some text (or none, for a chat)".into()));
        }
        Some(p) => Some(p.clone()),
        None if !args.interactive && !stdin.is_terminal() => {
            let mut text = String::new();
            stdin.lock().read_to_string(&mut text).map_err(stdin_error)?;
            if text.trim().is_empty() {
                return Err(CliError::Usage("no prompt: give one as an argument or on standard input".into()));
            }
            Some(text)
        }
        None => None,
    };
    if let Some(prompt) = prompt {
        history.push(message("user", &prompt));
        let answer = answer(d, args, model, &history).await?;
        if answer.interrupted {
            return Err(CliError::Interrupted);
        }
        return Ok(());
    }
    chat(d, args, model, history).await
}

/// The interactive loop: one line per user turn.
async fn chat(d: &Daemon, args: &RunArgs, model: &str, mut history: Vec<v1::Message>) -> Result<(), CliError> {
    let keep = history.len();
    let terminal = std::io::stdin().is_terminal();
    if terminal {
        let name = if model.is_empty() { "the default model" } else { model };
        eprintln!(
            "chatting with {name}: /bye or Ctrl-D quits, /clear forgets the conversation, Ctrl-C stops an answer"
        );
    }
    let mut lines = stdin_lines();
    loop {
        if terminal {
            out!(">>> ")?;
            std::io::stdout().flush()?;
        }
        let line = tokio::select! {
            l = lines.recv() => l,
            _ = tokio::signal::ctrl_c() => {
                if terminal {
                    outln!()?;
                }
                return Err(CliError::Interrupted);
            }
        };
        let Some(line) = line else {
            if terminal {
                outln!()?;
            }
            return Ok(());
        };
        let line = match line {
            Ok(l) => l,
            // One bad line is not the end of the conversation.
            Err(e) => {
                eprintln!("zeta: {} (line skipped)", stdin_error(e));
                continue;
            }
        };
        let text = line.trim();
        // A command is its first word: `/bye now` quits too.
        match text.split_whitespace().next().filter(|w| w.starts_with('/')).unwrap_or(text) {
            "" => continue,
            "/bye" | "/exit" | "/quit" => return Ok(()),
            "/clear" => {
                history.truncate(keep);
                eprintln!("(conversation cleared)");
                continue;
            }
            "/help" | "/?" => {
                eprintln!(
                    "/bye quits, /clear forgets the conversation; anything else is your next message \
                     (start it with // to send a line that begins with /)"
                );
                continue;
            }
            _ if is_command(text) => {
                let word = text.split_whitespace().next().unwrap_or(text);
                eprintln!("unknown command '{word}' (/help lists them; // sends a line starting with /)");
                continue;
            }
            _ => {}
        }
        let text = text.strip_prefix('/').filter(|t| t.starts_with('/')).unwrap_or(text);
        history.push(message("user", text));
        let answer = match answer(d, args, model, &history).await {
            Ok(a) => a,
            // A turn the daemon refuses (too long for the context, say) is dropped, and the
            // conversation goes on: /clear makes room, a shorter line may fit.
            Err(CliError::Rpc(status)) => {
                history.pop();
                let over = status.code() == tonic::Code::OutOfRange;
                eprintln!("{}", crate::error::Shown(&CliError::Rpc(status)));
                if over && history.len() > keep {
                    eprintln!("(if the conversation so far is what no longer fits, /clear forgets it)");
                }
                continue;
            }
            Err(e) => return Err(e),
        };
        if answer.interrupted && answer.text.is_empty() {
            // Stopped before a word was shown: the turn never happened, as far as the user saw.
            history.pop();
            eprintln!("(answer stopped; the question is dropped from the conversation)");
            continue;
        }
        if answer.interrupted {
            eprintln!("(answer stopped)");
        }
        // A stopped answer stays in the history as far as it got, so the model sees what the
        // user saw.
        history.push(message("assistant", &answer.text));
    }
}

/// A failure to read standard input, saying that is where it came from.
pub(super) fn stdin_error(e: std::io::Error) -> CliError {
    if e.kind() == std::io::ErrorKind::InvalidData {
        CliError::Usage("standard input is not UTF-8 text".into())
    } else {
        CliError::Other(format!("cannot read standard input: {e}"))
    }
}

/// Whether a chat line is meant as a command: `/word`, not a path like `/usr/bin` or `//text`.
fn is_command(line: &str) -> bool {
    line.split_whitespace()
        .next()
        .and_then(|w| w.strip_prefix('/'))
        .is_some_and(|name| !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '?'))
}

/// Standard input, one line at a time, read on its own thread so the async side can wait for
/// a line and Ctrl-C at once.
fn stdin_lines() -> mpsc::Receiver<std::io::Result<String>> {
    let (tx, rx) = mpsc::channel(1);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            if tx.blocking_send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Streams one answer to standard output.
async fn answer(d: &Daemon, args: &RunArgs, model: &str, history: &[v1::Message]) -> Result<Answer, CliError> {
    let req = v1::GenerateRequest {
        model: model.to_owned(),
        input: Some(v1::generate_request::Input::Chat(v1::Chat {
            messages: history.to_vec(),
            continue_final_message: false,
        })),
        sampling: Some(v1::SamplingParams {
            temperature: args.temperature,
            top_p: args.top_p,
            seed: args.seed,
            ..Default::default()
        }),
        max_tokens: args.max_tokens,
        ..Default::default()
    };
    let started = Instant::now();
    let mut answer = Answer { text: String::new(), finished: None, interrupted: false };
    // Ctrl-C counts before the first token too (a model loading, a long prompt): dropping the
    // call cancels it at the daemon.
    let mut client = d.generation();
    let call = tokio::select! {
        c = client.generate(req) => c,
        _ = tokio::signal::ctrl_c() => {
            answer.interrupted = true;
            return Ok(answer);
        }
    };
    let mut stream = call.map_err(|s| d.err(s))?.into_inner();
    let mut out = std::io::stdout();
    let mut first_token = None;
    loop {
        let event = tokio::select! {
            e = stream.message() => e,
            _ = tokio::signal::ctrl_c() => {
                answer.interrupted = true;
                break;
            }
        };
        match event.map_err(|s| d.err(s))? {
            None => break,
            Some(v1::GenerateEvent { event: Some(v1::generate_event::Event::Delta(delta)) }) => {
                first_token.get_or_insert_with(Instant::now);
                if !delta.reasoning_text.is_empty() {
                    eprint!("{}", delta.reasoning_text);
                }
                if !delta.text.is_empty() {
                    out.write_all(delta.text.as_bytes())?;
                    out.flush()?;
                    answer.text.push_str(&delta.text);
                }
            }
            Some(v1::GenerateEvent { event: Some(v1::generate_event::Event::Finished(f)) }) => {
                answer.finished = Some(f)
            }
            Some(_) => {}
        }
    }
    // Dropping the stream tells the daemon to stop generating.
    drop(stream);
    if !answer.text.ends_with('\n') {
        out.write_all(b"\n")?;
        out.flush()?;
    }
    if !answer.interrupted && answer.finished.is_none() {
        return Err(CliError::Lost {
            socket: d.socket.clone(),
            detail: "the answer ended without its final event".into(),
        });
    }
    if let Some(f) = &answer.finished {
        if f.reason == v1::FinishReason::Length as i32 {
            let completion = f.usage.unwrap_or_default().completion_tokens;
            match args.max_tokens {
                Some(m) if completion >= m => {
                    eprintln!("(stopped at the token limit: raise --max-tokens for longer answers)")
                }
                // Unset (or not reached): the model's configured cap or the end of its context.
                _ => eprintln!("(stopped at the model's token limit: its default cap or the end of its context)"),
            }
        }
        if args.verbose {
            eprintln!("{}", stats(f, started, first_token));
        }
    }
    Ok(answer)
}

/// Token counts and speeds of one answer, as the daemon measured them.
fn stats(f: &v1::Finished, started: Instant, first_token: Option<Instant>) -> String {
    let usage = f.usage.unwrap_or_default();
    let t = f.timings.unwrap_or_default();
    let rate = |n: u32, secs: f64| if secs > 0.0 { f64::from(n) / secs } else { 0.0 };
    let ttft = first_token.map(|t| (t - started).as_secs_f64()).unwrap_or(0.0);
    format!(
        "[prompt {} tokens ({} cached) in {:.2} s, {:.1} tok/s | answer {} tokens in {:.2} s, {:.1} tok/s | first token after {:.2} s, queued {:.2} s]",
        usage.prompt_tokens,
        usage.cached_tokens,
        t.prefill_seconds,
        rate(usage.prompt_tokens.saturating_sub(usage.cached_tokens), t.prefill_seconds),
        usage.completion_tokens,
        t.decode_seconds,
        rate(usage.completion_tokens, t.decode_seconds),
        ttft,
        t.queued_seconds,
    )
}

fn message(role: &str, content: &str) -> v1::Message {
    v1::Message { role: role.to_owned(), content: Some(content.to_owned()), ..Default::default() }
}

#[cfg(test)]
mod tests {
    #[test]
    fn commands_are_slash_words_and_paths_are_messages() {
        for line in ["/foo", "/clear now", "/?", "/set-thing x"] {
            assert!(super::is_command(line), "{line}");
        }
        for line in ["/usr/bin is what?", "//foo", "hello /foo", "/ spaced"] {
            assert!(!super::is_command(line), "{line}");
        }
    }
}
