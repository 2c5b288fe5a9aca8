//! The model registry: which models exist (configured aliases, hub ids and paths named by
//! requests), which are loaded, and the rules for loading and unloading them.
//!
//! - A request's model resolves to an alias, a local path or a hub repo id; anything else is
//!   `NotFound`, with no side effect on loaded models. Paths and hub ids are accepted only where
//!   the config allows them for the [`Caller`] (HTTP clients get neither by default); a path is
//!   absolute and names something loadable, else it is `InvalidModel` whether or not it exists,
//!   so answers never tell an HTTP client which files exist.
//! - Concurrent requests for an unloaded model share one load (the first starts it, the others
//!   wait on its progress channel).
//! - Names that build the same engine (aliases of one file or repo with the same context length)
//!   share it: the second is served by the first's engine, loaded once and counted once against
//!   `max_loaded` and the memory budget; each keeps its own request defaults.
//! - Room is made by evicting the least recently used loaded model that is not pinned (the
//!   default) and has no request running or waiting, under `max_loaded` and the memory budget.
//! - Idle models unload after `idle_unload_seconds`; explicit unload works at any time, and
//!   requests already running keep their engine until they finish. Until then the engine is
//!   *unloading*: listed so, and still counted against `max_loaded` and the budget, since its
//!   memory is still in use. An unload during a load stops it (its waiters get a retryable
//!   error; the engine, once built, is dropped).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use zeta_engine::{Engine, EngineOptions, ModelSource};

use crate::config::{Config, ModelConfig, SamplingDefaults};
use crate::error::DaemonError;

mod names;
mod release;
mod room;
mod view;

use names::hub_error;
pub use names::{Caller, Source};
pub use release::Unloaded;
pub use view::{EngineView, ModelState, ModelView};

/// Progress of one load, as its subscribers see it.
#[derive(Clone, Debug)]
pub enum LoadStatus {
    /// Waiting to start.
    Queued,
    /// Fetching files from the hub.
    Downloading(zeta_hub::Progress),
    /// Building the model.
    Loading {
        /// Layers done.
        done: usize,
        /// Layers in all.
        total: usize,
    },
    /// Loaded and serving.
    Ready,
    /// The load failed.
    Failed(DaemonError),
}

enum Phase {
    Unloaded,
    Loading(watch::Sender<LoadStatus>),
    Loaded(Arc<Engine>),
}

/// Counters shared between an entry and the leases on it.
#[derive(Default)]
struct Usage {
    /// Requests holding or waiting for the model.
    leases: AtomicUsize,
    /// Milliseconds since the registry started, at last use.
    last_used_ms: AtomicU64,
}

/// What a load builds: two entries with equal keys are served by one engine.
#[derive(Clone, Debug, PartialEq, Eq)]
struct BuildKey {
    /// The source, a local path canonicalized (so a symlink or a second spelling matches).
    source: Source,
    context_length: Option<usize>,
}

struct Entry {
    source: Source,
    key: BuildKey,
    configured: bool,
    pinned: bool,
    options: ModelConfig,
    phase: Phase,
    usage: Arc<Usage>,
    loaded_at: Option<SystemTime>,
    error: Option<String>,
    loads: u32,
}

impl Entry {
    /// Starts serving from `engine`, which a twin loaded.
    fn adopt(&mut self, engine: Arc<Engine>, epoch: Instant) {
        self.phase = Phase::Loaded(engine);
        self.loaded_at = Some(SystemTime::now());
        self.loads += 1;
        self.error = None;
        self.usage.last_used_ms.store(epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

/// Another entry that builds the same engine as the one asked about, and how far it is.
enum Twin {
    Loaded(String, Arc<Engine>),
    Loading(watch::Receiver<LoadStatus>),
}

/// A loaded twin of `id` if there is one, else a loading one.
fn twin(entries: &HashMap<String, Entry>, id: &str) -> Option<Twin> {
    let key = &entries.get(id)?.key;
    let mut loading = None;
    for (other, e) in entries {
        if other == id || e.key != *key {
            continue;
        }
        match &e.phase {
            Phase::Loaded(engine) => return Some(Twin::Loaded(other.clone(), engine.clone())),
            Phase::Loading(tx) => loading = Some(Twin::Loading(tx.subscribe())),
            Phase::Unloaded => {}
        }
    }
    loading
}

/// A model in use by one request. The engine stays alive while any lease holds it.
pub struct Lease {
    /// The engine.
    pub engine: Arc<Engine>,
    /// The id the model is known by (alias, hub id or path).
    pub id: String,
    /// Request defaults configured for the model.
    pub defaults: SamplingDefaults,
    usage: Arc<Usage>,
    epoch: Instant,
}

impl Lease {
    /// `e` as the client should read it: an engine several names share carries the name that
    /// loaded it, while this client asked for `self.id`.
    pub fn as_named(&self, e: DaemonError) -> DaemonError {
        use zeta_engine::EngineError as E;
        let loaded_as = &self.engine.info().name;
        if *loaded_as == self.id {
            return e;
        }
        let (from, to) = (format!("'{loaded_as}'"), format!("'{}'", self.id));
        match e {
            DaemonError::Engine(E::ContextOverflow { prompt_tokens, max_tokens, context_length, field, message }) => {
                let message = message.replace(&from, &to);
                E::ContextOverflow { prompt_tokens, max_tokens, context_length, field, message }.into()
            }
            DaemonError::Engine(E::InvalidArgument { field, message }) => {
                E::InvalidArgument { field, message: message.replace(&from, &to) }.into()
            }
            DaemonError::Invalid { field, message } => {
                DaemonError::Invalid { field, message: message.replace(&from, &to) }
            }
            other => other,
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.usage.last_used_ms.store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
        self.usage.leases.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts a request waiting for a load, so the model cannot be evicted under it.
struct Waiting(Arc<Usage>);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.leases.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The registry.
pub struct Registry {
    cfg: Arc<Config>,
    hub: Option<zeta_hub::HubClient>,
    entries: Mutex<HashMap<String, Entry>>,
    /// Locked after `entries` when both are.
    retired: Mutex<Vec<release::Retired>>,
    /// Loads stopped by an unload while their build ran (it cannot stop halfway): each counts
    /// against `max_loaded` and, by its file's size, the budget until the build ends and is
    /// dropped. A channel's other senders live as long as its load task. Locked after `entries`.
    abandoned: Mutex<Vec<(watch::Sender<LoadStatus>, u64)>>,
    draining: std::sync::atomic::AtomicBool,
    epoch: Instant,
    started: SystemTime,
}

/// Seconds since the Unix epoch of a time (0 before it), as the API carries times.
pub fn unix_seconds(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

impl Registry {
    /// A registry over the configured models. `hub` is `None` when hub access is unusable.
    pub fn new(cfg: Arc<Config>, hub: Option<zeta_hub::HubClient>) -> Arc<Registry> {
        let reg = Arc::new(Registry {
            cfg: cfg.clone(),
            hub,
            entries: Mutex::new(HashMap::new()),
            retired: Mutex::new(Vec::new()),
            abandoned: Mutex::new(Vec::new()),
            draining: false.into(),
            epoch: Instant::now(),
            started: SystemTime::now(),
        });
        for alias in cfg.aliases() {
            if let Ok((id, source, options)) = reg.resolve(&alias, Caller::Socket) {
                reg.lock().insert(id, reg.new_entry(source, true, options, alias == cfg.default_model));
            }
        }
        reg
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn new_entry(&self, source: Source, configured: bool, options: ModelConfig, pinned: bool) -> Entry {
        let canonical = match &source {
            Source::Local(p) => Source::Local(p.canonicalize().unwrap_or_else(|_| p.clone())),
            hub => hub.clone(),
        };
        Entry {
            key: BuildKey { source: canonical, context_length: options.context_length },
            source,
            configured,
            pinned,
            options,
            phase: Phase::Unloaded,
            usage: Arc::default(),
            loaded_at: None,
            error: None,
            loads: 0,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The id `model` resolves to and whether it is an embedding model, as its files say without
    /// loading it; `None` where only a load can tell (a hub model, a name that does not
    /// resolve: the load reports that) or none is needed (loaded: the engine refuses the wrong
    /// kind itself, with no file read per request). A request for the other kind is refused on
    /// this, so it loads, and evicts, nothing.
    pub fn kind_on_disk(&self, model: &str, caller: Caller) -> Option<(String, bool)> {
        let resolved = self.resolve(model, caller).ok()?;
        if matches!(self.lock().get(&resolved.0), Some(Entry { phase: Phase::Loaded(_), .. })) {
            return None;
        }
        match resolved {
            (id, Source::Local(p), _) if p.is_dir() => Some((id, zeta_engine::embedding::declares_pooling(&p))),
            (id, Source::Local(_), _) => Some((id, false)),
            (_, Source::Hub(_), _) => None,
        }
    }

    /// Takes a lease on a model, loading it first if needed (one load however many ask).
    pub async fn acquire(self: &Arc<Self>, model: &str, caller: Caller) -> Result<Lease, DaemonError> {
        let (id, source, options) = self.resolve(model, caller)?;
        loop {
            let (mut rx, _waiting) = {
                if self.draining.load(Ordering::Relaxed) {
                    return Err(DaemonError::Draining);
                }
                let mut entries = self.lock();
                let rx = match self.begin(&mut entries, &id, &source, &options) {
                    Ok(engine) => {
                        let entry = &entries[&id];
                        entry.usage.leases.fetch_add(1, Ordering::Relaxed);
                        entry.usage.last_used_ms.store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
                        return Ok(Lease {
                            engine,
                            id: id.clone(),
                            defaults: entry.options.defaults.clone(),
                            usage: entry.usage.clone(),
                            epoch: self.epoch,
                        });
                    }
                    Err(rx) => rx,
                };
                let entry = &entries[&id];
                entry.usage.leases.fetch_add(1, Ordering::Relaxed);
                (rx, Waiting(entry.usage.clone()))
            };
            wait_ready(&mut rx).await?;
        }
    }

    /// The engine of `id` if it has one (adopting a twin's: an entry that builds the same
    /// engine), else the progress channel of the load that will give it one, started here if
    /// none is running.
    fn begin(
        self: &Arc<Self>,
        entries: &mut HashMap<String, Entry>,
        id: &str,
        source: &Source,
        options: &ModelConfig,
    ) -> Result<Arc<Engine>, watch::Receiver<LoadStatus>> {
        let pinned = id == self.cfg.default_model;
        if !entries.contains_key(id) {
            let entry = self.new_entry(source.clone(), false, options.clone(), pinned);
            entries.insert(id.to_string(), entry);
        }
        let twin = twin(entries, id);
        let entry = entries.get_mut(id).expect("inserted above");
        match (&entry.phase, twin) {
            (Phase::Loaded(engine), _) => Ok(engine.clone()),
            (Phase::Loading(tx), _) => Err(tx.subscribe()),
            (Phase::Unloaded, Some(Twin::Loaded(twin_id, engine))) => {
                tracing::info!(model = %id, shares_with = %twin_id, "serving from an engine already loaded");
                entry.adopt(engine.clone(), self.epoch);
                Ok(engine)
            }
            (Phase::Unloaded, Some(Twin::Loading(rx))) => Err(self.follow(id, entry, rx)),
            (Phase::Unloaded, None) => Err(self.start_load(id, entry)),
        }
    }

    /// Starts loading `id` if it is not loaded or loading; returns its progress channel.
    pub fn load(
        self: &Arc<Self>,
        model: &str,
        caller: Caller,
    ) -> Result<(String, watch::Receiver<LoadStatus>), DaemonError> {
        let (id, source, options) = self.resolve(model, caller)?;
        if self.draining.load(Ordering::Relaxed) {
            return Err(DaemonError::Draining);
        }
        let mut entries = self.lock();
        let rx = match self.begin(&mut entries, &id, &source, &options) {
            Ok(_) => watch::channel(LoadStatus::Ready).1,
            Err(rx) => rx,
        };
        Ok((id, rx))
    }

    /// Puts `entry` in the loading state behind a twin's load: its progress is the twin's, and
    /// when that is ready the entry adopts the engine. Should the twin's engine be gone by then
    /// (unloaded at once), the entry falls back to unloaded and its waiters look again.
    fn follow(
        self: &Arc<Self>,
        id: &str,
        entry: &mut Entry,
        mut twin_rx: watch::Receiver<LoadStatus>,
    ) -> watch::Receiver<LoadStatus> {
        let (tx, rx) = watch::channel(twin_rx.borrow().clone());
        entry.phase = Phase::Loading(tx.clone());
        entry.error = None;
        let (this, id) = (self.clone(), id.to_string());
        tokio::spawn(async move {
            let outcome = loop {
                let status = twin_rx.borrow_and_update().clone();
                match status {
                    LoadStatus::Ready => break Ok(()),
                    LoadStatus::Failed(e) => break Err(e),
                    other => {
                        tx.send_replace(other);
                    }
                }
                if twin_rx.changed().await.is_err() {
                    break Ok(());
                }
            };
            let mut entries = this.lock();
            let twin = twin(&entries, &id);
            let Some(entry) = entries.get_mut(&id) else { return };
            if !matches!(&entry.phase, Phase::Loading(t) if t.same_channel(&tx)) {
                return;
            }
            match (outcome, twin) {
                // The twin was unloaded while loading, not this name: its waiters look again
                // (the channel drops) and load it themselves.
                (Err(DaemonError::LoadStopped { .. }), _) => entry.phase = Phase::Unloaded,
                (Ok(()), Some(Twin::Loaded(_, engine))) if !this.draining.load(Ordering::Relaxed) => {
                    entry.adopt(engine, this.epoch);
                    tx.send_replace(LoadStatus::Ready);
                }
                (Err(e), _) => {
                    entry.phase = Phase::Unloaded;
                    entry.error = Some(e.to_string());
                    if !entry.configured {
                        entries.remove(&id);
                    }
                    tx.send_replace(LoadStatus::Failed(e));
                }
                // Dropping the channel sends its waiters back to look at the entry.
                _ => entry.phase = Phase::Unloaded,
            }
        });
        rx
    }

    fn start_load(self: &Arc<Self>, id: &str, entry: &mut Entry) -> watch::Receiver<LoadStatus> {
        let (tx, rx) = watch::channel(LoadStatus::Queued);
        entry.phase = Phase::Loading(tx.clone());
        entry.error = None;
        let this = self.clone();
        let id = id.to_string();
        let source = entry.source.clone();
        let options = entry.options.clone();
        let named_by_request = !entry.configured;
        tokio::spawn(async move {
            let result = this.clone().load_task(&id, source.clone(), options, tx.clone()).await;
            // A path a request named that turns out not to load is the request's mistake.
            let result = result.map_err(|e| match (e, &source) {
                (DaemonError::LoadFailed { reason, transient: false, .. }, Source::Local(p)) if named_by_request => {
                    let shown = p.display().to_string();
                    DaemonError::InvalidModel(format!(
                        "'{}' is not a loadable model: {reason}",
                        zeta_proto::edge::quote(&shown)
                    ))
                }
                (e, _) => e,
            });
            let mut entries = this.lock();
            let current = |e: &Entry| matches!(&e.phase, Phase::Loading(t) if t.same_channel(&tx));
            let Some(entry) = entries.get_mut(&id).filter(|e| current(e)) else {
                // Unloaded while loading: its waiters were told; what was built is not wanted.
                drop(entries);
                if let Ok(engine) = result {
                    tracing::info!(model = %id, "dropping a load that was unloaded while it ran");
                    drop_engine(Arc::new(engine));
                }
                return;
            };
            match result {
                Ok(engine) if !this.draining.load(Ordering::Relaxed) => {
                    entry.phase = Phase::Loaded(Arc::new(engine));
                    entry.loaded_at = Some(SystemTime::now());
                    entry.loads += 1;
                    entry.usage.last_used_ms.store(this.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
                    tx.send_replace(LoadStatus::Ready);
                    drop(entries);
                    // The real size is known now; others may have to make room.
                    if let Err(e) = this.make_room(&id, 0) {
                        tracing::warn!(model = %id, error = %e, "over the memory budget after loading");
                    }
                }
                Ok(engine) => {
                    entry.phase = Phase::Unloaded;
                    tx.send_replace(LoadStatus::Failed(DaemonError::Draining));
                    drop(entries);
                    drop_engine(Arc::new(engine));
                }
                Err(e) => {
                    tracing::warn!(model = %id, error = %e, "load failed");
                    entry.phase = Phase::Unloaded;
                    // No room is the other models' state, not a fault of this one.
                    if !matches!(e, DaemonError::NoRoom { .. }) {
                        entry.error = Some(e.to_string());
                    }
                    if !entry.configured {
                        entries.remove(&id);
                    }
                    tx.send_replace(LoadStatus::Failed(e));
                }
            }
        });
        rx
    }

    async fn load_task(
        self: Arc<Self>,
        id: &str,
        source: Source,
        options: ModelConfig,
        tx: watch::Sender<LoadStatus>,
    ) -> Result<Engine, DaemonError> {
        let path = match &source {
            Source::Local(p) => p.clone(),
            Source::Hub(r) => {
                let hub = self.hub.as_ref().ok_or_else(|| DaemonError::LoadFailed {
                    model: id.into(),
                    reason: "hub access is not configured".into(),
                    transient: false,
                })?;
                let progress_tx = tx.clone();
                hub.ensure_local(r, move |p| {
                    progress_tx.send_replace(LoadStatus::Downloading(p));
                })
                .await
                .map_err(|e| hub_error(id, e))?
            }
        };
        // An unload may have stopped this load while it downloaded: then nothing is built.
        self.still_wanted(id, &tx)?;
        let model_source = ModelSource::detect(&path).map_err(|e| DaemonError::LoadFailed {
            model: id.into(),
            reason: e.to_string(),
            transient: false,
        })?;
        self.make_room(id, disk_size(&path))?;
        let engine_options = EngineOptions {
            name: id.to_string(),
            max_batch: self.cfg.max_batch,
            max_queue: self.cfg.max_queue,
            prefix_cache_bytes: self.cfg.prefix_cache.0 as usize,
            context_length: options.context_length,
            ..Default::default()
        };
        self.still_wanted(id, &tx)?;
        tracing::info!(model = %id, source = %source, "loading");
        let progress_tx = tx.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            Engine::load(model_source, engine_options, move |done, total| {
                progress_tx.send_replace(LoadStatus::Loading { done, total });
            })
        })
        .await
        .map_err(|e| DaemonError::LoadFailed { model: id.into(), reason: e.to_string(), transient: false })?;
        let engine = loaded.map_err(|e| DaemonError::LoadFailed {
            model: id.into(),
            reason: e.to_string(),
            transient: false,
        })?;
        // The file's size was only an estimate (a quantized GGUF is expanded on the CPU): a model
        // that alone needs more than the budget is refused now, with the real figures.
        let need = self.footprint(&engine);
        if let Some(budget) = self.cfg.memory_budget.map(|b| b.0).filter(|&b| need > b) {
            let info = engine.info();
            let reason = format!(
                "loaded it needs {need} bytes ({} of weights, a KV cache of {} tokens, {} of prefix cache), more \
                 than the memory_budget of {budget} bytes; raise memory_budget",
                info.weight_bytes,
                self.cfg.kv_reserve_tokens.min(info.context_length),
                self.cfg.prefix_cache.0
            );
            drop_engine(Arc::new(engine));
            return Err(DaemonError::LoadFailed { model: id.into(), reason, transient: false });
        }
        // Room was made for the file's size; now that the real size is known it is made again
        // (or refused) before the model serves, so the budget holds for GGUF models too.
        if let Err(e) = self.make_room(id, need) {
            drop_engine(Arc::new(engine));
            return Err(e);
        }
        Ok(engine)
    }

    /// Whether the load that reports on `tx` is still the one `id` waits for (an unload stops it).
    fn still_wanted(&self, id: &str, tx: &watch::Sender<LoadStatus>) -> Result<(), DaemonError> {
        let entries = self.lock();
        match entries.get(id).map(|e| &e.phase) {
            Some(Phase::Loading(t)) if t.same_channel(tx) => Ok(()),
            _ => Err(DaemonError::LoadStopped { model: id.into() }),
        }
    }

    /// Builds stopped while they ran and not yet ended: how many, and their files' size.
    pub(super) fn abandoned_builds(&self) -> (usize, u64) {
        let mut abandoned = self.abandoned.lock().unwrap_or_else(|e| e.into_inner());
        abandoned.retain(|(tx, _)| tx.sender_count() > 1);
        (abandoned.len(), abandoned.iter().map(|(_, bytes)| bytes).sum())
    }

    /// Requests running or waiting, over all models.
    pub fn in_flight(&self) -> usize {
        self.lock().values().map(|e| e.usage.leases.load(Ordering::Relaxed)).sum()
    }

    /// Stops accepting work and stops every engine (their remaining requests end with an
    /// error).
    pub async fn shutdown(&self) {
        self.draining.store(true, Ordering::Relaxed);
        let engines: Vec<Arc<Engine>> = {
            let mut entries = self.lock();
            let mut engines: Vec<Arc<Engine>> = entries
                .values_mut()
                .filter_map(|e| match std::mem::replace(&mut e.phase, Phase::Unloaded) {
                    Phase::Loaded(en) => Some(en),
                    _ => None,
                })
                .collect();
            // Engines unloaded earlier still run requests: those end now too.
            engines.extend(self.unloading(&entries).0.iter().map(|(_, en)| en.clone()));
            engines
        };
        for en in engines {
            let _ = tokio::task::spawn_blocking(move || en.shutdown()).await;
        }
    }

    /// Marks the registry as draining: new requests are refused.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Whether shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}

/// Engines stop by joining their thread (at most one forward pass); never on an async worker.
fn drop_engine(engine: Arc<Engine>) {
    match tokio::runtime::Handle::try_current() {
        Ok(h) => {
            h.spawn_blocking(move || drop(engine));
        }
        Err(_) => drop(engine),
    }
}

async fn wait_ready(rx: &mut watch::Receiver<LoadStatus>) -> Result<(), DaemonError> {
    loop {
        match &*rx.borrow_and_update() {
            LoadStatus::Ready => return Ok(()),
            LoadStatus::Failed(e) => return Err(e.clone()),
            _ => {}
        }
        if rx.changed().await.is_err() {
            // The loader finished and dropped the channel: look at the entry again.
            return Ok(());
        }
    }
}

fn disk_size(path: &std::path::Path) -> u64 {
    if path.is_file() {
        return path.metadata().map(|m| m.len()).unwrap_or(0);
    }
    std::fs::read_dir(path)
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "safetensors" || x == "gguf"))
                .filter_map(|e| e.path().metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}
