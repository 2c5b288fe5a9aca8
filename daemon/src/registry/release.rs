//! Letting go of engines: unload on request (a load in progress is stopped), the idle sweep,
//! and the engines let go of while requests still run on them. Those stay counted against
//! `max_loaded` and the budget, and listed as unloading, until their last request ends: only a
//! weak handle is kept, so nothing here keeps an engine alive.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use zeta_engine::Engine;

use super::{Caller, Entry, LoadStatus, Phase, Registry, drop_engine};
use crate::error::DaemonError;

/// An engine let go of while requests still ran on it. Only a weak handle is kept: the engine
/// goes with its last request, and the entry with it.
pub(super) struct Retired {
    names: Names,
    engine: std::sync::Weak<Engine>,
}

/// Engines unloaded but still finishing requests, each with its names. Dropping this hands the
/// engines back through [`drop_engine`], as the last handle may be one of these.
pub(super) struct Unloading(pub(super) Vec<(Names, Arc<Engine>)>);

/// What an unload did.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Unloaded {
    /// The model was loaded (or loading).
    pub was_loaded: bool,
    /// Requests still running on its engine, which keep it (and its memory) until they end.
    pub still_running: u32,
}

/// Names an engine served, each with its source as listings show it.
pub(super) type Names = Vec<(String, String)>;

impl Drop for Unloading {
    fn drop(&mut self) {
        self.0.drain(..).for_each(|(_, e)| drop_engine(e));
    }
}

impl Registry {
    /// Keeps `engine` counted (and listed as unloading under `names`) while requests still hold
    /// it; an engine nobody else holds is simply gone.
    fn retire(&self, names: Names, engine: &Arc<Engine>) {
        if Arc::strong_count(engine) > 1 {
            let mut retired = self.retired.lock().unwrap_or_else(|e| e.into_inner());
            retired.retain(|r| r.engine.strong_count() > 0);
            retired.push(Retired { names, engine: Arc::downgrade(engine) });
        }
    }

    /// The engines still finishing requests after being unloaded, but those another name still
    /// serves from (already counted as loaded). `entries` is the locked table.
    pub(super) fn unloading(&self, entries: &HashMap<String, Entry>) -> Unloading {
        let mut retired = self.retired.lock().unwrap_or_else(|e| e.into_inner());
        retired.retain(|r| r.engine.strong_count() > 0);
        let serving =
            |en: &Arc<Engine>| entries.values().any(|e| matches!(&e.phase, Phase::Loaded(l) if Arc::ptr_eq(l, en)));
        let alive = retired.iter().filter_map(|r| Some((r.names.clone(), r.engine.upgrade()?)));
        Unloading(alive.filter(|(_, en)| !serving(en)).collect())
    }

    /// Unloads a model now. Requests running on it keep the engine until they finish (it is
    /// listed as unloading until then); a load in progress is stopped. A pinned model (the
    /// default) stays unless `force`: without it, requests that name no model would find
    /// nothing to serve them.
    pub fn unload(&self, model: &str, force: bool, caller: Caller) -> Result<Unloaded, DaemonError> {
        let (id, _, _) = self.resolve(model, caller)?;
        let mut entries = self.lock();
        let Some(entry) = entries.get_mut(&id) else { return Ok(Unloaded::default()) };
        if entry.pinned && !force && !matches!(entry.phase, Phase::Unloaded) {
            return Err(DaemonError::Pinned(format!(
                "'{id}' is the default model and pinned: requests that name no model use it; \
                 unload it with `zeta unload --force {id}` if you really mean to"
            )));
        }
        let source = entry.source.to_string();
        match std::mem::replace(&mut entry.phase, Phase::Unloaded) {
            Phase::Loaded(engine) => {
                if !entry.configured {
                    entries.remove(&id);
                }
                // A name sharing its engine lets go of it; the memory comes back with the last.
                let mut still: Vec<&String> = entries
                    .iter()
                    .filter(|(_, e)| matches!(&e.phase, Phase::Loaded(en) if Arc::ptr_eq(en, &engine)))
                    .map(|(k, _)| k)
                    .collect();
                let last = still.is_empty();
                if last {
                    tracing::info!(model = %id, "unloaded on request");
                } else {
                    still.sort();
                    tracing::info!(model = %id, engine_still_serves = ?still, "unloaded on request");
                }
                drop(entries);
                let mut out = Unloaded { was_loaded: true, still_running: 0 };
                if last {
                    let s = engine.stats();
                    out.still_running = (s.active + s.queued) as u32;
                    self.retire(vec![(id, source)], &engine);
                }
                drop_engine(engine);
                Ok(out)
            }
            Phase::Loading(tx) => {
                let size = match &entry.source {
                    super::Source::Local(p) => super::disk_size(p),
                    super::Source::Hub(_) => 0,
                };
                if !entry.configured {
                    entries.remove(&id);
                }
                tracing::info!(model = %id, "load stopped: unloaded on request");
                tx.send_replace(LoadStatus::Failed(DaemonError::LoadStopped { model: id }));
                // Its task stops before building; a build under way runs on and counts until then.
                self.abandoned.lock().unwrap_or_else(|e| e.into_inner()).push((tx, size));
                Ok(Unloaded { was_loaded: true, still_running: 0 })
            }
            Phase::Unloaded => Ok(Unloaded::default()),
        }
    }

    /// Unloads idle models past the configured idle time; runs until the registry drains.
    pub async fn idle_sweeper(self: Arc<Self>) {
        let Some(idle) = self.cfg.idle_unload() else { return };
        let tick = (idle / 4).clamp(Duration::from_millis(200), Duration::from_secs(30));
        while !self.draining.load(Ordering::Relaxed) {
            tokio::time::sleep(tick).await;
            let now = self.epoch.elapsed().as_millis() as u64;
            let mut out = Vec::new();
            {
                let mut entries = self.lock();
                for (id, e) in entries.iter_mut() {
                    let idle_ms = now.saturating_sub(e.usage.last_used_ms.load(Ordering::Relaxed));
                    if !e.pinned
                        && matches!(e.phase, Phase::Loaded(_))
                        && e.usage.leases.load(Ordering::Relaxed) == 0
                        && idle_ms >= idle.as_millis() as u64
                        && let Phase::Loaded(engine) = std::mem::replace(&mut e.phase, Phase::Unloaded)
                    {
                        tracing::info!(model = %id, idle_seconds = idle_ms / 1000, "unloading idle model");
                        out.push((vec![(id.clone(), e.source.to_string())], engine));
                    }
                }
                entries.retain(|_, e| e.configured || !matches!(e.phase, Phase::Unloaded));
            }
            for (names, engine) in out {
                self.retire(names, &engine);
                drop_engine(engine);
            }
        }
    }
}
