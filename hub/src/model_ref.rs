//! [`ModelRef`], a parsed `org/name[@revision][:file.gguf]` hub reference, and the syntax checks
//! that tell hub ids from local paths and keep names that come from the network (file names,
//! ETags, commits) from escaping the cache folder.

use std::fmt;
use std::str::FromStr;

use crate::error::{HubError, Result};

/// The revision used when a reference names none.
pub const DEFAULT_REVISION: &str = "main";

/// A model on the hub: a repository, an optional revision and, for GGUF repositories, an optional
/// file.
///
/// Written as `org/name`, `org/name@revision`, `org/name:file.gguf` or
/// `org/name@revision:file.gguf`. The revision is a branch, tag or 40-hex commit (default
/// `main`); the file is a repository-relative path ending in `.gguf`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModelRef {
    /// `org/name`.
    pub repo_id: String,
    /// Branch, tag or commit; `None` means [`DEFAULT_REVISION`].
    pub revision: Option<String>,
    /// The one GGUF file wanted from a GGUF repository; `None` lets the crate choose (see
    /// [`crate::choose_gguf`]) or fetch a safetensors model.
    pub file: Option<String>,
}

impl ModelRef {
    /// Parses `org/name[@revision][:file.gguf]`.
    pub fn parse(input: &str) -> Result<Self> {
        let invalid = |reason: String| HubError::InvalidRef { input: input.to_string(), reason };
        let text = input.trim();
        // Git refs cannot contain ':', so the first ':' always starts the file part.
        let (left, file) = match text.split_once(':') {
            Some((left, file)) => (left, Some(file)),
            None => (text, None),
        };
        let (repo, revision) = match left.split_once('@') {
            Some((repo, rev)) => (repo, Some(rev)),
            None => (left, None),
        };
        check_repo_id(repo).map_err(invalid)?;
        if let Some(rev) = revision {
            check_revision(rev).map_err(invalid)?;
        }
        if let Some(file) = file {
            check_gguf_file(file).map_err(invalid)?;
        }
        Ok(ModelRef {
            repo_id: repo.to_string(),
            revision: revision.map(str::to_string),
            file: file.map(str::to_string),
        })
    }

    /// A reference to `repo_id` at the default revision, with no file.
    pub fn new(repo_id: &str) -> Result<Self> {
        check_repo_id(repo_id).map_err(|reason| HubError::InvalidRef { input: repo_id.to_string(), reason })?;
        Ok(ModelRef { repo_id: repo_id.to_string(), revision: None, file: None })
    }

    /// The same reference at `revision` (for a config's separate `revision` field).
    pub fn with_revision(mut self, revision: &str) -> Result<Self> {
        check_revision(revision).map_err(|reason| HubError::InvalidRef { input: revision.to_string(), reason })?;
        self.revision = Some(revision.to_string());
        Ok(self)
    }

    /// The same reference naming one GGUF file (for a config's separate `file` field).
    pub fn with_file(mut self, file: &str) -> Result<Self> {
        check_gguf_file(file).map_err(|reason| HubError::InvalidRef { input: file.to_string(), reason })?;
        self.file = Some(file.to_string());
        Ok(self)
    }

    /// The revision to resolve: the one given, else [`DEFAULT_REVISION`].
    pub fn revision(&self) -> &str {
        self.revision.as_deref().unwrap_or(DEFAULT_REVISION)
    }

    /// The cache folder name `huggingface_hub` uses for this repository: `models--{org}--{name}`.
    pub fn cache_folder_name(&self) -> String {
        format!("models--{}", self.repo_id.replace('/', "--"))
    }
}

impl fmt::Display for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.repo_id)?;
        if let Some(rev) = &self.revision {
            write!(f, "@{rev}")?;
        }
        if let Some(file) = &self.file {
            write!(f, ":{file}")?;
        }
        Ok(())
    }
}

impl FromStr for ModelRef {
    type Err = HubError;
    fn from_str(s: &str) -> Result<Self> {
        ModelRef::parse(s)
    }
}

/// Whether `s` is hub-reference syntax (`org/name[@revision][:file.gguf]`) rather than something
/// else such as a local path (`./m`, `/models/x`, `a/b/c`, `m.gguf`).
///
/// Syntax only: a relative path `models/qwen` also looks like a repo id, so callers that accept
/// both should check whether such a path exists locally first.
pub fn looks_like_repo_id(s: &str) -> bool {
    ModelRef::parse(s).is_ok()
}

/// The rules `huggingface_hub.utils.validate_repo_id` applies, restricted to the `org/name` form
/// (a bare `name` is legacy and would be indistinguishable from a local folder name).
fn check_repo_id(repo: &str) -> std::result::Result<(), String> {
    let Some((org, name)) = repo.split_once('/') else {
        return Err("expected a hub repository id of the form org/name".into());
    };
    for (what, part) in [("organisation", org), ("name", name)] {
        if part.is_empty() || part.len() > 96 {
            return Err(format!("the {what} part must be 1 to 96 characters, got {:?}", part));
        }
        if let Some(c) = part.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))) {
            return Err(format!(
                "the {what} part {part:?} contains {c:?}; allowed are letters, digits, '-', '_' and '.'"
            ));
        }
        if part.starts_with(['-', '.']) || part.ends_with(['-', '.']) {
            return Err(format!("the {what} part {part:?} must not start or end with '-' or '.'"));
        }
        if part.contains("--") || part.contains("..") {
            return Err(format!("the {what} part {part:?} must not contain '--' or '..'"));
        }
    }
    if name.ends_with(".git") {
        return Err("the name must not end with .git".into());
    }
    Ok(())
}

/// Revisions become paths under `refs/` in the cache, so anything that could climb out of it is
/// refused along with what git itself forbids in ref names.
fn check_revision(rev: &str) -> std::result::Result<(), String> {
    if rev.is_empty() {
        return Err("the revision after '@' is empty".into());
    }
    if rev.chars().any(|c| c.is_whitespace() || c.is_control() || matches!(c, '\\' | '~' | '^' | '?' | '*' | '[')) {
        return Err(format!("the revision {rev:?} contains a character git does not allow in refs"));
    }
    if !is_safe_relative_path(rev) {
        return Err(format!("the revision {rev:?} is not a valid ref name"));
    }
    Ok(())
}

fn check_gguf_file(file: &str) -> std::result::Result<(), String> {
    if !is_safe_relative_path(file) {
        return Err(format!("the file {file:?} must be a relative path inside the repository"));
    }
    if !file.to_ascii_lowercase().ends_with(".gguf") {
        return Err(format!("the file after ':' must be a .gguf file, got {file:?}"));
    }
    Ok(())
}

/// A `/`-separated relative path with no empty, `.` or `..` component and no backslash: safe to
/// join under a cache folder.
pub(crate) fn is_safe_relative_path(path: &str) -> bool {
    !path.is_empty()
        && !path.contains('\\')
        && !path.contains('\0')
        && path.split('/').all(|part| !part.is_empty() && part != "." && part != "..")
}

/// A single path component made of characters that are safe in file names (ETags, commits).
pub(crate) fn is_safe_component(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.len() <= 255
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// A full 40-hex git commit id, which names a snapshot folder directly.
pub(crate) fn is_commit_hash(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_forms() {
        let r = ModelRef::parse("mlx-community/Qwen2.5-0.5B-Instruct-4bit").unwrap();
        assert_eq!(
            (r.repo_id.as_str(), r.revision(), r.file.as_deref()),
            ("mlx-community/Qwen2.5-0.5B-Instruct-4bit", "main", None)
        );
        let r = ModelRef::parse("org/name@v1.0:sub/model-Q4_K_M.gguf").unwrap();
        assert_eq!(r.revision.as_deref(), Some("v1.0"));
        assert_eq!(r.file.as_deref(), Some("sub/model-Q4_K_M.gguf"));
        assert_eq!(r.to_string(), "org/name@v1.0:sub/model-Q4_K_M.gguf");
        let r = ModelRef::parse("org/name@refs/pr/1").unwrap();
        assert_eq!(r.revision(), "refs/pr/1");
        assert_eq!(r.cache_folder_name(), "models--org--name");
    }

    #[test]
    fn rejects_bad_refs_with_reasons() {
        for bad in [
            "",
            "name",
            "a/b/c",
            "/abs/path",
            "./m",
            "org/",
            "org/na me",
            "org/-x",
            "org/a--b",
            "org/x.git",
            "org/x@",
            "org/x@../../etc",
            "org/x:model.bin",
            "org/x:../x.gguf",
            "org/x@a b",
        ] {
            let err = ModelRef::parse(bad).expect_err(bad);
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
            assert!(!looks_like_repo_id(bad), "{bad}");
        }
        assert!(looks_like_repo_id("HuggingFaceTB/SmolLM2-135M-Instruct"));
        assert!(looks_like_repo_id("org/x@main:m.Q4_0.GGUF"));
    }

    #[test]
    fn unsafe_names_from_the_network_are_refused() {
        assert!(is_safe_component("a1b2-c3_d.e"));
        assert!(!is_safe_component("../x") && !is_safe_component("..") && !is_safe_component("a/b"));
        assert!(is_safe_relative_path("a/b.json") && !is_safe_relative_path("a//b") && !is_safe_relative_path("/a"));
        assert!(is_commit_hash(&"a".repeat(40)) && !is_commit_hash("main"));
    }
}
