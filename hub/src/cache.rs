//! The on-disk cache layout shared with Python's `huggingface_hub`:
//! `models--{org}--{name}/{blobs/<etag>, snapshots/<commit>/<file> -> ../../blobs/<etag>,
//! refs/<revision>}` plus `.locks/`, and the no-network check that a cached model is complete.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::model_ref::{ModelRef, is_commit_hash, is_safe_component, is_safe_relative_path};
use crate::select::{self, SAFETENSORS_INDEX};

/// One repository's folder inside the hub cache.
#[derive(Debug, Clone)]
pub(crate) struct RepoCache {
    cache_dir: PathBuf,
    folder: String,
}

impl RepoCache {
    pub(crate) fn new(cache_dir: &Path, model: &ModelRef) -> Self {
        RepoCache { cache_dir: cache_dir.to_path_buf(), folder: model.cache_folder_name() }
    }

    pub(crate) fn root(&self) -> PathBuf {
        self.cache_dir.join(&self.folder)
    }

    pub(crate) fn ref_path(&self, revision: &str) -> PathBuf {
        self.root().join("refs").join(revision)
    }

    pub(crate) fn snapshot_dir(&self, commit: &str) -> PathBuf {
        self.root().join("snapshots").join(commit)
    }

    pub(crate) fn blob_path(&self, etag: &str) -> PathBuf {
        self.root().join("blobs").join(etag)
    }

    /// Where a partial download lives, the same name `huggingface_hub` uses, so either tool can
    /// resume the other's partial file.
    pub(crate) fn incomplete_path(&self, etag: &str) -> PathBuf {
        self.root().join("blobs").join(format!("{etag}.incomplete"))
    }

    /// `huggingface_hub` locks `<cache>/.locks/<repo folder>/<etag>.lock` around a blob download.
    pub(crate) fn lock_path(&self, etag: &str) -> PathBuf {
        self.cache_dir.join(".locks").join(&self.folder).join(format!("{etag}.lock"))
    }

    /// The commit a revision points at in the cache: a commit hash names itself (if its snapshot
    /// exists), anything else is read from `refs/<revision>`.
    pub(crate) fn commit_for(&self, revision: &str) -> Option<String> {
        if is_commit_hash(revision) && self.snapshot_dir(revision).is_dir() {
            return Some(revision.to_string());
        }
        let text = std::fs::read_to_string(self.ref_path(revision)).ok()?;
        let commit = text.trim();
        is_safe_component(commit).then(|| commit.to_string())
    }

    pub(crate) fn write_ref(&self, revision: &str, commit: &str) -> std::io::Result<()> {
        let path = self.ref_path(revision);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        // Write then rename, so a reader never sees an empty or half-written ref.
        let tmp = unique_tmp(&path);
        std::fs::write(&tmp, commit)?;
        std::fs::rename(&tmp, &path).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
    }

    /// Points `snapshots/<commit>/<file>` at `blobs/<etag>` with a relative symlink, as
    /// `huggingface_hub` does, so the cache folder can be moved as a whole.
    pub(crate) fn link(&self, commit: &str, file: &str, etag: &str) -> std::io::Result<PathBuf> {
        let pointer = self.snapshot_dir(commit).join(file);
        let parent = pointer.parent().expect("snapshot file has a parent");
        std::fs::create_dir_all(parent)?;
        let depth = file.split('/').count() + 1;
        let mut target = PathBuf::new();
        for _ in 0..depth {
            target.push("..");
        }
        target.push("blobs");
        target.push(etag);
        // Created aside and renamed over the pointer: atomic, so concurrent calls linking the same
        // file (or a reader) never see it missing.
        let tmp = unique_tmp(&pointer);
        make_link(&target, &self.blob_path(etag), &tmp)?;
        std::fs::rename(&tmp, &pointer).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })?;
        Ok(pointer)
    }
}

/// A hidden sibling name no other writer (task or process) uses at the same time.
fn unique_tmp(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    path.with_file_name(format!(".{name}.{}.{n}.tmp", std::process::id()))
}

#[cfg(unix)]
fn make_link(relative: &Path, _blob: &Path, pointer: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(relative, pointer)
}

// `huggingface_hub` copies where symlinks are unavailable; so do we.
#[cfg(not(unix))]
fn make_link(_relative: &Path, blob: &Path, pointer: &Path) -> std::io::Result<()> {
    std::fs::copy(blob, pointer).map(|_| ())
}

/// A regular file, following symlinks: a snapshot pointer whose blob is missing does not count.
pub(crate) fn file_present(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file())
}

/// The local path of `model` if the cache already holds everything it needs, without any network
/// request: the snapshot `refs/<revision>` points at (or the commit named) must contain
///
/// - the named GGUF file, when the reference names one;
/// - else `config.json` and complete safetensors weights (every shard the index names, or at
///   least one top-level `.safetensors` when there is no index): the snapshot folder;
/// - else (a GGUF repository) the GGUF file [`select::choose_gguf`] picks among those present.
///
/// Tokenizer and template files are not required here: they are optional in repositories, and
/// our own downloads fetch them before the weights, so complete weights imply they were fetched.
pub(crate) fn find_complete(cache_dir: &Path, model: &ModelRef) -> Option<PathBuf> {
    let cache = RepoCache::new(cache_dir, model);
    let commit = cache.commit_for(model.revision())?;
    let snapshot = cache.snapshot_dir(&commit);
    if let Some(file) = &model.file {
        let path = snapshot.join(file);
        return file_present(&path).then_some(path);
    }
    if file_present(&snapshot.join("config.json")) && safetensors_complete(&snapshot) {
        return Some(snapshot);
    }
    let ggufs = list_files(&snapshot).into_iter().filter(|f| select::is_gguf(f)).collect::<Vec<_>>();
    let chosen = select::choose_gguf(&ggufs)?;
    Some(snapshot.join(chosen))
}

fn safetensors_complete(snapshot: &Path) -> bool {
    let index = snapshot.join(SAFETENSORS_INDEX);
    if file_present(&index) {
        let Ok(bytes) = std::fs::read(&index) else { return false };
        return select::shards_from_index(&bytes)
            .is_ok_and(|shards| shards.iter().all(|s| file_present(&snapshot.join(s))));
    }
    std::fs::read_dir(snapshot).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_str().is_some_and(|n| n.ends_with(".safetensors")) && file_present(&e.path()))
    })
}

/// Repository-relative paths of the (resolvable) files in a snapshot folder.
pub(crate) fn list_files(snapshot: &Path) -> Vec<String> {
    fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>, depth: usize) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let Some(name) = entry.file_name().to_str().map(str::to_string) else { continue };
            let rel = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
            let path = entry.path();
            if path.is_dir() {
                if depth < 8 {
                    walk(&path, &rel, out, depth + 1);
                }
            } else if file_present(&path) && is_safe_relative_path(&rel) {
                out.push(rel);
            }
        }
    }
    let mut out = Vec::new();
    walk(snapshot, "", &mut out, 0);
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_huggingface_hub() {
        let dir = tempfile::tempdir().unwrap();
        let model = ModelRef::parse("org/name").unwrap();
        let cache = RepoCache::new(dir.path(), &model);
        let etag = "e".repeat(64);
        std::fs::create_dir_all(cache.root().join("blobs")).unwrap();
        std::fs::write(cache.blob_path(&etag), b"x").unwrap();
        let commit = "c".repeat(40);
        let link = cache.link(&commit, "sub/dir/f.bin", &etag).unwrap();
        assert_eq!(std::fs::read_link(&link).unwrap(), PathBuf::from("../../../../blobs").join(&etag));
        assert_eq!(std::fs::read(&link).unwrap(), b"x");
        let top = cache.link(&commit, "config.json", &etag).unwrap();
        assert_eq!(std::fs::read_link(&top).unwrap(), PathBuf::from("../../blobs").join(&etag));
        cache.write_ref("main", &commit).unwrap();
        assert_eq!(std::fs::read_to_string(dir.path().join("models--org--name/refs/main")).unwrap(), commit);
        assert_eq!(cache.commit_for("main"), Some(commit.clone()));
        assert_eq!(cache.commit_for(&commit), Some(commit));
        assert_eq!(cache.lock_path(&etag), dir.path().join(".locks/models--org--name").join(format!("{etag}.lock")));
    }
}
