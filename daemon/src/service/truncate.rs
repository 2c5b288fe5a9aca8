//! `truncate_oldest_turns`: a conversation too long for the context loses its oldest turns
//! instead of being refused, as OpenAI's `truncation: "auto"` does. Turns go whole, from the
//! start, each cut made just before a user message (so no tool result is parted from its call
//! and every template sees a conversation that opens as templates expect); system and developer
//! messages stay, and so does the last user turn. The cut is found by bisection over the turn
//! starts, each try rendered and counted exactly as the generation will be.

use zeta_engine::tools::{Shaper, Shaping};
use zeta_engine::{Engine, GenerateRequest, Prompt};

use crate::error::DaemonError;

/// Messages that instruct rather than converse: kept whatever is dropped.
fn instruction(role: &str) -> bool {
    role == "system" || role == "developer"
}

/// `req` rendered for `engine`, its oldest turns dropped when that is what it takes to fit;
/// a conversation that does not fit even with only its last turn is left whole, for the
/// engine to refuse with its full size.
pub fn fit(engine: &Engine, req: GenerateRequest, how: &Shaping) -> Result<(GenerateRequest, Shaper), DaemonError> {
    let ctx = engine.info().context_length;
    let fits = |n: usize| n < ctx && req.max_tokens.is_none_or(|m| n + m <= ctx);
    let prepare = |r: &GenerateRequest| -> Result<(GenerateRequest, Shaper, usize), DaemonError> {
        let mut r = r.clone();
        let shaper = Shaper::prepare(engine, &mut r, how)?;
        let n = engine.tokenize(&r.prompt)?.len();
        Ok((r, shaper, n))
    };
    let (whole, shaper, n) = prepare(&req)?;
    let Prompt::Chat { messages, .. } = &req.prompt else { return Ok((whole, shaper)) };
    if fits(n) {
        return Ok((whole, shaper));
    }
    let first_turn = messages.iter().position(|m| !instruction(&m.role)).unwrap_or(messages.len());
    let starts: Vec<usize> = (first_turn + 1..messages.len()).filter(|&i| messages[i].role == "user").collect();
    let cut = |at: usize| {
        let mut r = req.clone();
        if let Prompt::Chat { messages, .. } = &mut r.prompt {
            let kept = std::mem::take(messages).into_iter().enumerate();
            *messages = kept.filter(|(i, m)| *i >= at || instruction(&m.role)).map(|(_, m)| m).collect();
        }
        r
    };
    // The earliest start whose cut fits: fewer turns never take more tokens.
    let (mut lo, mut hi, mut best) = (0, starts.len(), None);
    while lo < hi {
        let mid = (lo + hi) / 2;
        let tried = prepare(&cut(starts[mid]))?;
        if fits(tried.2) {
            best = Some((starts[mid], tried));
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    match best {
        Some((at, (r, shaper, kept_tokens))) => {
            let dropped = messages[..at].iter().filter(|m| !instruction(&m.role)).count();
            tracing::info!(
                dropped_messages = dropped,
                prompt_tokens = n,
                kept_tokens,
                "dropped the oldest turns to fit the context"
            );
            Ok((r, shaper))
        }
        None => Ok((whole, shaper)),
    }
}
