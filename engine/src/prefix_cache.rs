//! Reuse of KV slots across requests that share a prompt prefix (a system prompt, a tool list,
//! the earlier turns of a conversation). A finished sequence leaves its slots here; a new one
//! holds the slots of the longest common prefix too (see `kv_cache.rs`: nothing is copied) and
//! prefills only the rest. Bounded in slots, which is bytes: the least recently used entries go
//! first, and also whenever the running sequences need room in the pool.

use crate::kv_cache::KvPool;

struct Entry {
    tokens: Vec<u32>,
    slots: Vec<u32>,
    /// Local (sliding-window) slots of the last tokens, when the pool is split.
    local: Vec<u32>,
}

/// Local slots of a sequence of `len` tokens that holds `local` for its last tokens, as a
/// sequence resuming after its first `n` needs them: `None` when the window behind position `n`
/// (`window` keys, the one at `n` included) is no longer held.
pub fn local_for(local: &[u32], len: usize, n: usize, window: usize) -> Option<&[u32]> {
    let from = len - local.len();
    if from > 0 && (n + 1).saturating_sub(window) < from {
        return None;
    }
    Some(&local[..n.saturating_sub(from)])
}

/// An LRU of token sequences and the KV slots that hold them.
pub struct PrefixCache {
    /// Least recently used first.
    entries: Vec<Entry>,
    max_slots: usize,
    /// Slots referenced by entries (a slot two entries share counts twice: the bound is safe).
    held: usize,
}

impl PrefixCache {
    /// A cache holding at most `max_slots` slots (0 disables it).
    pub fn new(max_slots: usize) -> PrefixCache {
        PrefixCache { entries: Vec::new(), max_slots, held: 0 }
    }

    /// The longest prefix of `prompt` held here, at most `limit` tokens: its length, slots and
    /// local slots (the caller takes its own references). With a sliding `window`, only prefixes
    /// whose window is still held count. Marks the entry as recently used.
    pub fn lookup(&mut self, prompt: &[u32], limit: usize, window: Option<usize>) -> Option<(usize, &[u32], &[u32])> {
        let usable = |e: &Entry, n: usize| match window {
            Some(w) => local_for(&e.local, e.tokens.len(), n, w).is_some(),
            None => true,
        };
        let (best, len) = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| (i, common_prefix(&e.tokens, prompt).min(limit)))
            .filter(|&(i, n)| usable(&self.entries[i], n))
            .max_by_key(|&(i, n)| (n, i))?;
        if len == 0 {
            return None;
        }
        let entry = self.entries.remove(best);
        self.entries.push(entry);
        let e = self.entries.last().expect("just pushed");
        let local = match window {
            Some(w) => local_for(&e.local, e.tokens.len(), len, w).unwrap_or_default(),
            None => &[],
        };
        Some((len, &e.slots[..len], local))
    }

    /// Stores `tokens` and the `slots` holding them (and the `local` slots of the last tokens,
    /// for a split pool), taking over the caller's references.
    pub fn insert(&mut self, tokens: Vec<u32>, slots: Vec<u32>, local: Vec<u32>, pool: &mut KvPool) {
        debug_assert_eq!(tokens.len(), slots.len());
        if self.max_slots == 0 || tokens.is_empty() || slots.len() > self.max_slots {
            pool.release_with_local(&slots, &local);
            return;
        }
        if let Some(i) = self.entries.iter().position(|e| common_prefix(&e.tokens, &tokens) == tokens.len()) {
            // Known already, as this or as a longer entry.
            pool.release_with_local(&slots, &local);
            let e = self.entries.remove(i);
            self.entries.push(e);
            return;
        }
        // Entries that are a prefix of the new one add nothing.
        let mut i = 0;
        while i < self.entries.len() {
            if common_prefix(&self.entries[i].tokens, &tokens) == self.entries[i].tokens.len() {
                let e = self.entries.remove(i);
                self.held -= e.slots.len();
                pool.release_with_local(&e.slots, &e.local);
            } else {
                i += 1;
            }
        }
        self.held += slots.len();
        self.entries.push(Entry { tokens, slots, local });
        while self.held > self.max_slots {
            self.evict_one(pool);
        }
    }

    /// Drops the least recently used entry; false when there is none.
    pub fn evict_one(&mut self, pool: &mut KvPool) -> bool {
        if self.entries.is_empty() {
            return false;
        }
        let e = self.entries.remove(0);
        self.held -= e.slots.len();
        pool.release_with_local(&e.slots, &e.local);
        true
    }

    /// Slots held by entries.
    pub fn held_slots(&self) -> usize {
        self.held
    }

    /// Every entry's slot list, for the pool to renumber when it compacts.
    pub fn slot_lists(&mut self) -> impl Iterator<Item = &mut Vec<u32>> {
        self.entries.iter_mut().map(|e| &mut e.slots)
    }
}

/// Length of the longest common prefix.
pub fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> KvPool {
        let mut p = KvPool::new(1, 1, 2, mlx::Dtype::F32, None);
        p.grow(64).unwrap();
        p
    }

    #[test]
    fn longest_prefix_wins_and_is_shared_not_copied() {
        let mut p = pool();
        let mut c = PrefixCache::new(100);
        let a = p.alloc(4).unwrap();
        c.insert(vec![1, 2, 3, 4], a.clone(), vec![], &mut p);
        let b = p.alloc(3).unwrap();
        c.insert(vec![1, 2, 9], b, vec![], &mut p);
        let (n, slots, _) = c.lookup(&[1, 2, 3, 7, 7], 4, None).unwrap();
        assert_eq!((n, slots), (3, &a[..3]));
        assert_eq!(c.lookup(&[1, 2, 3, 4, 5], 2, None).unwrap().0, 2, "the limit leaves tokens to run");
        assert!(c.lookup(&[5], 1, None).is_none());
    }

    #[test]
    fn bounded_in_slots_least_recently_used_first() {
        let mut p = pool();
        let free = p.free_slots();
        let mut c = PrefixCache::new(6);
        for t in 0..3u32 {
            let s = p.alloc(3).unwrap();
            c.insert(vec![t, t, t], s, vec![], &mut p);
        }
        assert_eq!(c.held_slots(), 6, "the oldest entry made room");
        assert!(c.lookup(&[0, 0, 0], 3, None).is_none());
        assert!(c.lookup(&[1, 1, 1], 3, None).is_some());
        assert_eq!(p.free_slots(), free - 6, "evicted slots are free again");
        // A prefix of a new entry is replaced by it.
        let s = p.alloc(4).unwrap();
        c.insert(vec![2, 2, 2, 5], s, vec![], &mut p);
        assert_eq!(c.held_slots(), 4, "the old prefix went, then the least recently used");
        assert!(c.lookup(&[2, 2, 2, 5], 4, None).is_some());
        while c.evict_one(&mut p) {}
        assert_eq!(p.free_slots(), free);
    }

    #[test]
    fn a_sliding_window_prefix_is_reused_only_while_its_window_is_held() {
        // 10 tokens, local slots held for the last 6 (positions 4..10), window 3.
        let local: Vec<u32> = (104..110).collect();
        assert_eq!(local_for(&local, 10, 10, 3), Some(&local[..]));
        assert_eq!(local_for(&local, 10, 6, 3), Some(&local[..2]), "positions 4 and 5 precede 6");
        assert_eq!(local_for(&local, 10, 5, 3), None, "position 5 needs position 3");
        assert_eq!(local_for(&local[..0], 0, 0, 3), Some(&local[..0]));
        // A sequence that never dropped any local slot serves any prefix.
        assert_eq!(local_for(&local, 6, 2, 3), Some(&local[..2]));
    }
}
