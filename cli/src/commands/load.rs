//! `zeta load` (streams download and load progress to a bar) and `zeta unload`.

use std::time::Instant;

use zeta_proto::v1;

use crate::client::{Daemon, quick};
use crate::error::CliError;
use crate::format;
use crate::progress::LoadProgress;

/// Loads a model, showing progress, and prints what was loaded.
pub async fn load(d: &Daemon, model: &str) -> Result<(), CliError> {
    let started = Instant::now();
    let mut progress = LoadProgress::new(model);
    let req = v1::LoadModelRequest { model: super::model_name(model).to_owned() };
    let mut stream = d.models().load_model(req).await.map_err(|s| d.err(s))?.into_inner();
    let mut loaded = None;
    loop {
        let event = tokio::select! {
            m = stream.message() => m,
            _ = tokio::signal::ctrl_c() => {
                progress.finish();
                // The load goes on in the daemon: other clients may be waiting on it too.
                eprintln!("zeta: stopped watching; the daemon finishes loading {model} on its own");
                return Err(CliError::Interrupted);
            }
        };
        match event {
            Ok(Some(v1::LoadProgress { progress: Some(p) })) => {
                progress.update(&p);
                if let v1::load_progress::Progress::Loaded(info) = p {
                    loaded = Some(info);
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(s) => {
                progress.finish();
                return Err(d.err(s));
            }
        }
    }
    progress.finish();
    let Some(m) = loaded else {
        return Err(CliError::Other(format!("the daemon ended the load of {model} without saying it was loaded")));
    };
    outln!(
        "loaded {}: {}, {} weights, context {} tokens ({:.1} s)",
        m.id,
        if m.architecture.is_empty() { "?" } else { &m.architecture },
        format::bytes(m.weight_bytes),
        m.context_length,
        started.elapsed().as_secs_f64()
    )?;
    Ok(())
}

/// Unloads a model and says whether it was loaded.
pub async fn unload(d: &Daemon, model: &str, force: bool) -> Result<(), CliError> {
    let req = quick(v1::UnloadModelRequest { model: super::model_name(model).to_owned(), force });
    let r = d.models().unload_model(req).await.map_err(|s| d.err(s))?.into_inner();
    if r.was_loaded {
        // Requests still running on it keep it (and its memory) until they end: "unloaded" would
        // be news the memory figures contradict.
        match r.still_running {
            0 => outln!("unloaded {model}")?,
            n => outln!(
                "unloading {model}: {} still running on it; its memory is freed when they end",
                crate::format::plural(n.into(), "request")
            )?,
        }
    } else {
        outln!("{model} was not loaded")?;
    }
    Ok(())
}
