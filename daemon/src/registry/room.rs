//! Room for one more model: what the loaded engines take against `max_loaded` and the memory
//! budget, and eviction of the least recently used idle engine until a newcomer fits. An engine
//! is counted once however many names share it, and evicting it unloads all those names: a name
//! dropped alone would free nothing. An engine unloaded while requests still run on it counts
//! until they end: its memory is still taken.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use zeta_engine::Engine;

use super::{Entry, Phase, Registry, drop_engine};
use crate::error::DaemonError;

/// One loaded engine and the names it serves.
pub(super) struct Group<'a> {
    pub(super) engine: &'a Arc<Engine>,
    pub(super) ids: Vec<&'a str>,
}

/// The loaded engines, each once (listings and room-making read the same grouping).
pub(super) fn groups(entries: &HashMap<String, Entry>) -> Vec<Group<'_>> {
    let mut out: Vec<Group> = Vec::new();
    for (id, e) in entries {
        if let Phase::Loaded(engine) = &e.phase {
            match out.iter_mut().find(|g| Arc::ptr_eq(g.engine, engine)) {
                Some(g) => g.ids.push(id),
                None => out.push(Group { engine, ids: vec![id] }),
            }
        }
    }
    out
}

impl Registry {
    /// Bytes a loaded engine accounts for in the memory budget.
    pub(super) fn footprint(&self, engine: &Engine) -> u64 {
        let info = engine.info();
        let kv = info.kv_bytes_per_token * self.cfg.kv_reserve_tokens.min(info.context_length);
        (info.weight_bytes + kv) as u64 + self.cfg.prefix_cache.0
    }

    /// Evicts idle, unpinned engines (least recently used first) until `id` (needing `extra`
    /// more bytes) fits under `max_loaded` and the memory budget.
    pub(super) fn make_room(&self, id: &str, extra: u64) -> Result<(), DaemonError> {
        let mut evicted = Vec::new();
        let result = {
            let mut entries = self.lock();
            loop {
                let key = entries.get(id).map(|e| e.key.clone());
                let unloading = self.unloading(&entries);
                let twin_of_id = |e: &Entry| key.as_ref() == Some(&e.key);
                let loaded = groups(&entries);
                let own = |g: &Group| g.ids.contains(&id);
                // Loads in progress count once per engine they will build (followers of a
                // twin's load build nothing), and not at all when it is `id`'s own.
                let mut loading = Vec::new();
                for e in entries.values() {
                    if matches!(e.phase, Phase::Loading(_)) && !twin_of_id(e) && !loading.contains(&&e.key) {
                        loading.push(&e.key);
                    }
                }
                let (abandoned, abandoned_bytes) = self.abandoned_builds();
                let occupying =
                    loaded.iter().filter(|g| !own(g)).count() + loading.len() + unloading.0.len() + abandoned;
                let self_loaded = loaded.iter().any(own);
                let used: u64 = loaded.iter().map(|g| self.footprint(g.engine)).sum::<u64>()
                    + unloading.0.iter().map(|(_, en)| self.footprint(en)).sum::<u64>()
                    + abandoned_bytes;
                let over_count = occupying + 1 > self.cfg.max_loaded;
                let budget = self.cfg.memory_budget.map(|b| b.0);
                let over_budget = budget.is_some_and(|b| used + extra > b);
                if !over_count && !over_budget {
                    break Ok(());
                }
                let idle = |k: &str| {
                    let e = &entries[k];
                    !e.pinned && e.usage.leases.load(Ordering::Relaxed) == 0
                };
                let last_used = |g: &Group| {
                    g.ids.iter().map(|k| entries[*k].usage.last_used_ms.load(Ordering::Relaxed)).max().unwrap_or(0)
                };
                let victim: Option<Vec<String>> = loaded
                    .iter()
                    .filter(|g| !own(g) && g.ids.iter().all(|k| idle(k)))
                    .min_by_key(|g| last_used(g))
                    .map(|g| g.ids.iter().map(|k| k.to_string()).collect());
                match victim {
                    Some(mut ids) => {
                        ids.sort();
                        tracing::info!(model = %ids.join(", "), for_model = %id, "evicting (least recently used)");
                        for v in &ids {
                            let e = entries.get_mut(v).expect("listed above");
                            if let Phase::Loaded(engine) = std::mem::replace(&mut e.phase, Phase::Unloaded) {
                                evicted.push(engine);
                            }
                        }
                    }
                    None if self_loaded && !over_count => break Ok(()),
                    None => {
                        // What stands in the way, and whether only pinned models do (then no
                        // wait helps: the answer is a lasting one, not "busy, retry").
                        let mut blockers: Vec<(String, bool)> = Vec::new();
                        for g in loaded.iter().filter(|g| !own(g)) {
                            // An engine is as unmovable as its most pinned name.
                            let pinned = g.ids.iter().any(|k| entries[*k].pinned);
                            for k in &g.ids {
                                let why = match (entries[*k].pinned, pinned) {
                                    (true, _) => "pinned",
                                    (_, true) => "served by a pinned model's engine",
                                    _ => "busy",
                                };
                                blockers.push((format!("{k} ({why})"), pinned));
                            }
                        }
                        for (k, e) in entries.iter() {
                            if *k != id && !twin_of_id(e) && matches!(e.phase, Phase::Loading(_)) {
                                let why = if e.pinned { "pinned" } else { "loading" };
                                blockers.push((format!("{k} ({why})"), e.pinned));
                            }
                        }
                        for (names, engine) in &unloading.0 {
                            let stats = engine.stats();
                            let names: Vec<&str> = names.iter().map(|(n, _)| n.as_str()).collect();
                            let running = stats.active + stats.queued;
                            blockers.push((
                                format!("{} (unloading, {running} requests to finish)", names.join(", ")),
                                false,
                            ));
                        }
                        if abandoned > 0 {
                            let what = if abandoned == 1 {
                                "a stopped load".to_string()
                            } else {
                                format!("{abandoned} stopped loads")
                            };
                            blockers.push((format!("{what} (building still; dropped when done)"), false));
                        }
                        blockers.sort();
                        if blockers.is_empty() && !over_count {
                            // Nothing else is loaded: this model alone is over the budget, and
                            // no wait will change that.
                            break Err(DaemonError::LoadFailed {
                                model: id.to_string(),
                                reason: format!(
                                    "it needs {extra} bytes, more than the memory_budget of {} bytes \
                                     (which also holds each model's KV reserve and prefix cache); raise \
                                     memory_budget",
                                    budget.unwrap_or(0)
                                ),
                                transient: false,
                            });
                        }
                        let limit = if over_count {
                            format!("max_loaded is {}", self.cfg.max_loaded)
                        } else {
                            format!("the memory budget is {} bytes, {used} in use", budget.unwrap_or(0))
                        };
                        let lasting = blockers.iter().all(|(_, pinned)| *pinned);
                        let listed: Vec<String> = blockers.into_iter().map(|(b, _)| b).collect();
                        let message = if lasting {
                            let setting = if over_count { "max_loaded" } else { "memory_budget" };
                            format!(
                                "cannot load '{id}': {limit}, taken by pinned models that are never evicted: {}; \
                                 raise {setting}, or unload them with `zeta unload --force`",
                                listed.join(", ")
                            )
                        } else {
                            format!(
                                "cannot load '{id}': {limit} and no loaded model can be evicted now: {}",
                                listed.join(", ")
                            )
                        };
                        break Err(DaemonError::NoRoom { message, lasting });
                    }
                }
            }
        };
        evicted.into_iter().for_each(drop_engine);
        result
    }
}
