//! What listings and health checks see of the registry: each model's state, facts and live
//! figures (`ListModels`, `/v1/models/loaded`), and whether the default model is ready.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use zeta_engine::Engine;

use super::{Entry, LoadStatus, Phase, Registry};

/// Where a model is in its life, as listings show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelState {
    /// Known, not loaded.
    Unloaded,
    /// Its files are being fetched from the hub.
    Downloading,
    /// Being built.
    Loading,
    /// Serving.
    Loaded,
    /// Not loaded; the last load failed.
    Failed,
    /// Unloaded, still finishing the requests that were running on it (its memory still
    /// counts against the budget and `max_loaded`).
    Unloading,
}

/// What `ListModels` shows for one model.
#[derive(Clone, Debug)]
pub struct ModelView {
    /// Alias, hub id or path.
    pub id: String,
    /// Where it comes from.
    pub source: String,
    /// Where it is in its life.
    pub state: ModelState,
    /// Whether an empty model name selects it.
    pub is_default: bool,
    /// Never evicted.
    pub pinned: bool,
    /// Facts, when loaded.
    pub info: Option<zeta_engine::ModelInfo>,
    /// Live figures, when loaded.
    pub stats: Option<zeta_engine::metrics::StatsSnapshot>,
    /// When it was loaded.
    pub loaded_at: Option<SystemTime>,
    /// When it was last used.
    pub last_used: Option<SystemTime>,
    /// The last load error.
    pub error: Option<String>,
    /// Loads since the daemon started.
    pub loads: u32,
}

/// One engine as status listings show it.
pub struct EngineView {
    /// The names it serves (or served, when unloading).
    pub names: Vec<String>,
    /// The engine.
    pub engine: Arc<Engine>,
    /// Unloaded, still finishing the requests it was running.
    pub unloading: bool,
}

impl Registry {
    /// Every known model with its state.
    pub fn list(&self) -> Vec<ModelView> {
        let entries = self.lock();
        let mut out: Vec<ModelView> = entries
            .iter()
            .map(|(id, e)| {
                let (state, engine) = match &e.phase {
                    Phase::Unloaded if e.error.is_some() => (ModelState::Failed, None),
                    Phase::Unloaded => (ModelState::Unloaded, None),
                    Phase::Loading(tx) => (
                        if matches!(*tx.borrow(), LoadStatus::Downloading(_)) {
                            ModelState::Downloading
                        } else {
                            ModelState::Loading
                        },
                        None,
                    ),
                    Phase::Loaded(engine) => (ModelState::Loaded, Some(engine)),
                };
                let used = e.usage.last_used_ms.load(Ordering::Relaxed);
                ModelView {
                    id: id.clone(),
                    source: e.source.to_string(),
                    state,
                    is_default: *id == self.cfg.default_model,
                    pinned: e.pinned,
                    info: engine.map(|en| en.info().clone()),
                    stats: engine.map(|en| en.stats()),
                    loaded_at: e.loaded_at,
                    last_used: (used > 0).then(|| self.started + Duration::from_millis(used)),
                    error: e.error.clone(),
                    loads: e.loads,
                }
            })
            .collect();
        // Names whose engine was let go of while requests ran on it: unloading until they end.
        let unloading = self.unloading(&entries);
        for (names, engine) in &unloading.0 {
            for (id, source) in names {
                let view = match out.iter_mut().find(|v| v.id == *id) {
                    Some(v) if v.state == ModelState::Unloaded || v.state == ModelState::Failed => v,
                    // Loaded or loading again: the listing shows the new copy.
                    Some(_) => continue,
                    None => {
                        out.push(ModelView {
                            id: id.clone(),
                            source: source.clone(),
                            state: ModelState::Unloading,
                            is_default: *id == self.cfg.default_model,
                            pinned: false,
                            info: None,
                            stats: None,
                            loaded_at: None,
                            last_used: None,
                            error: None,
                            loads: 0,
                        });
                        out.last_mut().expect("pushed")
                    }
                };
                view.state = ModelState::Unloading;
                view.info = Some(engine.info().clone());
                view.stats = Some(engine.stats());
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// The engines holding memory, each once, with the names it serves (sorted, the first
    /// naming it): the loaded ones, then those unloaded but still finishing requests.
    pub fn engines(&self) -> Vec<EngineView> {
        let entries = self.lock();
        let mut out: Vec<EngineView> = super::room::groups(&entries)
            .into_iter()
            .map(|g| {
                let mut names: Vec<String> = g.ids.iter().map(|k| k.to_string()).collect();
                names.sort();
                EngineView { names, engine: g.engine.clone(), unloading: false }
            })
            .collect();
        out.sort_by(|a, b| a.names.cmp(&b.names));
        let unloading = self.unloading(&entries);
        for (names, engine) in &unloading.0 {
            let names = names.iter().map(|(n, _)| n.clone()).collect();
            out.push(EngineView { names, engine: engine.clone(), unloading: true });
        }
        out
    }

    /// Whether the default model is loaded, and if not, why.
    pub fn default_ready(&self) -> (bool, String) {
        let entries = self.lock();
        match entries.get(&self.cfg.default_model) {
            Some(Entry { phase: Phase::Loaded(_), .. }) => (true, String::new()),
            Some(Entry { phase: Phase::Loading(_), .. }) => {
                (false, format!("the default model '{}' is loading", self.cfg.default_model))
            }
            Some(Entry { error: Some(e), .. }) => (false, e.clone()),
            _ => (false, format!("the default model '{}' is not loaded", self.cfg.default_model)),
        }
    }
}
