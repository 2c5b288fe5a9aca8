//! `zeta status`: the daemon's version, device, readiness, memory, and each engine's figures.

use crate::client::Daemon;
use crate::error::CliError;
use crate::format;

/// Prints the daemon's status.
pub async fn status(d: &Daemon) -> Result<(), CliError> {
    let s = d.status().await?;
    outln!("zeta-mlxd {} (MLX {}, {}) on {}", s.version, s.mlx_version, s.device, d.socket.display())?;
    outln!("up {}", format::duration(s.uptime_seconds))?;
    let ready = if s.draining {
        "shutting down".to_owned()
    } else if s.ready {
        "ready".to_owned()
    } else {
        format!("not ready: {}", s.not_ready_reason)
    };
    outln!("state: {ready}")?;
    let budget = match s.memory_budget_bytes {
        0 => "no budget set".to_owned(),
        b => format!("budget {}", format::bytes(b)),
    };
    outln!(
        "memory: {} in use, peak {}, cache {}; {budget}",
        format::bytes(s.memory_active_bytes),
        format::bytes(s.memory_peak_bytes),
        format::bytes(s.memory_cache_bytes)
    )?;
    if s.engines.is_empty() {
        outln!("no models loaded")?;
        return Ok(());
    }
    let rows: Vec<Vec<String>> = s
        .engines
        .iter()
        .map(|e| {
            // An engine several names share shows them all (figures are theirs together).
            let mut names = if e.names.is_empty() { e.model.clone() } else { e.names.join(", ") };
            if e.unloading {
                names.push_str(" (unloading)");
            }
            vec![
                names,
                e.active.to_string(),
                e.queued.to_string(),
                e.requests.to_string(),
                e.prompt_tokens.to_string(),
                e.cached_tokens.to_string(),
                e.generated_tokens.to_string(),
                format::bytes(e.weight_bytes + e.kv_cache_bytes),
            ]
        })
        .collect();
    out!(
        "{}",
        format::table(
            &["MODEL", "ACTIVE", "QUEUED", "REQUESTS", "PROMPT TOK", "CACHED TOK", "GENERATED", "MEMORY"],
            &rows
        )
    )?;
    Ok(())
}
