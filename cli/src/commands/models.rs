//! `zeta models` (everything the daemon knows, with state) and `zeta ps` (what is loaded, with
//! its memory and requests).

use zeta_proto::v1;

use crate::client::Daemon;
use crate::error::CliError;
use crate::format;

/// Prints every configured or loaded model with its state and source.
pub async fn models(d: &Daemon) -> Result<(), CliError> {
    let list = d.list().await?;
    let rows: Vec<Vec<String>> = list
        .models
        .iter()
        .map(|m| {
            let loaded = [v1::ModelState::Loaded, v1::ModelState::Unloading].iter().any(|s| *s as i32 == m.state);
            vec![
                m.id.clone(),
                format::state(m.state).to_owned(),
                if m.architecture.is_empty() { "-".into() } else { m.architecture.clone() },
                if loaded && m.context_length > 0 { m.context_length.to_string() } else { "-".into() },
                if loaded { format::bytes(m.weight_bytes) } else { "-".into() },
                m.source.clone(),
            ]
        })
        .collect();
    out!("{}", format::table(&["MODEL", "STATE", "ARCH", "CONTEXT", "WEIGHTS", "SOURCE"], &rows))?;
    for m in list.models.iter().filter(|m| !m.error.is_empty()) {
        outln!("{} failed: {}", zeta_proto::logging::escape_controls(&m.id), m.error)?;
    }
    outln!("default: {} · at most {} loaded at once", or_dash(&list.default_model), list.max_loaded)?;
    Ok(())
}

/// Prints the loaded models with weights, KV cache and request counts, then MLX's memory.
pub async fn ps(d: &Daemon) -> Result<(), CliError> {
    let list = d.list().await?;
    let status = d.status().await?;
    let live: Vec<&v1::ModelInfo> = list
        .models
        .iter()
        .filter(|m| {
            [v1::ModelState::Loaded, v1::ModelState::Loading, v1::ModelState::Downloading, v1::ModelState::Unloading]
                .iter()
                .any(|s| *s as i32 == m.state)
        })
        .collect();
    if live.is_empty() {
        outln!("no models loaded (`zeta load MODEL` loads one; `zeta models` lists them)")?;
    } else {
        // Names that share an engine (aliases of one file) share one row: a row each would
        // show its memory once per name.
        let engine_names = |id: &str| {
            status.engines.iter().find(|e| e.names.iter().any(|n| n == id)).map(|e| e.names.clone()).unwrap_or_default()
        };
        let mut shown = std::collections::HashSet::new();
        let rows: Vec<Vec<String>> = live
            .iter()
            .filter_map(|m| {
                if !shown.insert(m.id.clone()) {
                    return None;
                }
                let state = format::state(m.state);
                let mut names = vec![m.id.clone()];
                for n in engine_names(&m.id) {
                    if n != m.id && live.iter().any(|l| l.id == n && l.state == m.state) && shown.insert(n.clone()) {
                        names.push(n);
                    }
                }
                let names = names.join(", ");
                let id = if state == "loaded" { names } else { format!("{names} ({state})") };
                Some(vec![
                    id,
                    format::bytes(m.weight_bytes),
                    format::bytes(m.kv_cache_bytes),
                    format::bytes(m.weight_bytes + m.kv_cache_bytes),
                    m.active_requests.to_string(),
                    m.queued_requests.to_string(),
                    format::ago(m.loaded_at_unix),
                    format::ago(m.last_used_unix),
                ])
            })
            .collect();
        out!(
            "{}",
            format::table(&["MODEL", "WEIGHTS", "KV CACHE", "TOTAL", "ACTIVE", "QUEUED", "LOADED", "LAST USED"], &rows)
        )?;
    }
    let budget = match status.memory_budget_bytes {
        0 => "no budget set".to_owned(),
        b => format!("budget {}", format::bytes(b)),
    };
    outln!(
        "MLX memory ({}): {} in use, peak {}, cache {}; {budget}",
        status.device,
        format::bytes(status.memory_active_bytes),
        format::bytes(status.memory_peak_bytes),
        format::bytes(status.memory_cache_bytes),
    )?;
    Ok(())
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}
