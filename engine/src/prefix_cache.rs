//! Reuse of KV caches across requests that share a prompt prefix (a system prompt, the earlier
//! turns of a conversation). Finished sequences leave their cache here; a new sequence starts
//! from the entry with the longest common prefix and prefills only the rest.

use crate::kv_cache::KvCache;

struct Entry {
    tokens: Vec<u32>,
    cache: KvCache,
}

/// A small LRU of KV caches keyed by the tokens they hold.
pub struct PrefixCache {
    entries: Vec<Entry>,
    max_entries: usize,
}

impl PrefixCache {
    /// A cache of at most `max_entries` sequences (0 disables it).
    pub fn new(max_entries: usize) -> PrefixCache {
        PrefixCache { entries: Vec::new(), max_entries }
    }

    /// A cache holding the longest prefix of `prompt` known here, leaving at least one prompt
    /// token to run (its logits start the generation). `None` when nothing useful is cached.
    pub fn lookup(&mut self, prompt: &[u32]) -> Option<KvCache> {
        let limit = prompt.len().saturating_sub(1);
        let (best, len) = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| (i, common_prefix(&e.tokens, prompt).min(limit)))
            .max_by_key(|&(i, n)| (n, i))?;
        if len == 0 {
            return None;
        }
        let entry = self.entries.remove(best);
        let cache = entry.cache.prefix(len).ok();
        self.entries.push(entry); // most recently used last
        cache
    }

    /// Stores a sequence's cache; `tokens` are the tokens whose keys and values it holds.
    pub fn insert(&mut self, tokens: Vec<u32>, cache: KvCache) {
        if self.max_entries == 0 || tokens.is_empty() || cache.len() != tokens.len() {
            return;
        }
        // An entry that is a prefix of the new one adds nothing.
        self.entries.retain(|e| common_prefix(&e.tokens, &tokens) < e.tokens.len());
        self.entries.push(Entry { tokens, cache });
        while self.entries.len() > self.max_entries {
            self.entries.remove(0);
        }
    }

    /// Bytes reserved by cached entries.
    pub fn reserved_bytes(&self) -> usize {
        self.entries.iter().map(|e| e.cache.reserved_bytes()).sum()
    }

    /// Drops everything.
    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}
