//! The daemon's configuration: a TOML file (or YAML with the same schema, as the original design
//! used `config.yaml`), with every key optional. With no file at all the daemon serves the
//! embedded SmolLM2 as `smollm2-135m`. Unknown keys and bad values stop start-up with a message
//! that names the key and the line.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The alias of the embedded default model.
pub const EMBEDDED_ALIAS: &str = "smollm2-135m";

/// The whole configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Socket path (the `--socket` flag and `ZETA_MLX_SOCKET` take precedence).
    pub socket: Option<PathBuf>,
    /// The alias an empty `model` selects; it is loaded at start-up and never evicted.
    pub default_model: String,
    /// Load the default model at start-up.
    pub preload_default: bool,
    /// How many models may be loaded at once.
    pub max_loaded: usize,
    /// Unload a model unused for this many seconds (0: never). The default model stays.
    pub idle_unload_seconds: u64,
    /// Budget for weights plus KV caches, e.g. `"8GiB"` or a byte count; none when unset.
    pub memory_budget: Option<ByteSize>,
    /// KV cache tokens reserved per model in the memory budget.
    pub kv_reserve_tokens: usize,
    /// Bytes of KV cache each model keeps of finished requests for prefix reuse (0 disables it);
    /// counted in the memory budget.
    pub prefix_cache: ByteSize,
    /// Seconds in-flight requests get to finish after SIGTERM/SIGINT.
    pub drain_timeout_seconds: u64,
    /// `text` or `json`.
    pub log_format: LogFormat,
    /// Sequences decoded together per model.
    pub max_batch: usize,
    /// Requests waiting per model before new ones are refused as busy.
    pub max_queue: usize,
    /// Whether a request may name a Hugging Face repo id that is not configured.
    pub allow_hub_models: bool,
    /// Whether a request may name a local path that is not configured.
    pub allow_path_models: bool,
    /// Whether an HTTP client (through the gateway) may name a hub repo id that is not
    /// configured; needs `allow_hub_models` too. Off: any local process and any web page can
    /// reach the gateway, and a hub id makes the daemon download.
    pub http_allow_hub_models: bool,
    /// Whether an HTTP client may name a local path; needs `allow_path_models` too. Off: a path
    /// makes the daemon open a file.
    pub http_allow_path_models: bool,
    /// Models by alias.
    pub models: BTreeMap<String, ModelConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            socket: None,
            default_model: EMBEDDED_ALIAS.into(),
            preload_default: true,
            max_loaded: 2,
            idle_unload_seconds: 0,
            memory_budget: None,
            kv_reserve_tokens: 4096,
            prefix_cache: ByteSize(zeta_engine::DEFAULT_PREFIX_CACHE_BYTES as u64),
            drain_timeout_seconds: 30,
            log_format: LogFormat::Text,
            max_batch: 16,
            max_queue: 64,
            allow_hub_models: true,
            allow_path_models: true,
            http_allow_hub_models: false,
            http_allow_path_models: false,
            models: BTreeMap::new(),
        }
    }
}

/// Log output format.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// One configured model.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// A Hugging Face repo id (`org/name`).
    pub hub: Option<String>,
    /// Revision of the hub repo (branch, tag or commit; default `main`).
    pub revision: Option<String>,
    /// For a hub repo holding GGUF files: which one.
    pub file: Option<String>,
    /// A local model folder or GGUF file.
    pub path: Option<PathBuf>,
    /// Context length to serve (default: the model's own).
    pub context_length: Option<usize>,
    /// Sampling defaults for requests that leave them unset.
    #[serde(default)]
    pub defaults: SamplingDefaults,
}

/// Per-model request defaults.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SamplingDefaults {
    /// Temperature.
    pub temperature: Option<f32>,
    /// Nucleus mass.
    pub top_p: Option<f32>,
    /// Top-k.
    pub top_k: Option<u32>,
    /// Min-p.
    pub min_p: Option<f32>,
    /// Repetition penalty.
    pub repetition_penalty: Option<f32>,
    /// Default `max_tokens`.
    pub max_tokens: Option<usize>,
}

/// A size in bytes, written as a number or a string with a unit (`512MiB`, `8GiB`, `2GB`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A visitor, not an untagged enum: a value of the wrong type is then reported as what a
        // size is, not as serde's "did not match any variant of untagged enum".
        struct Size;
        impl serde::de::Visitor<'_> for Size {
            type Value = ByteSize;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a size such as \"8GiB\" or a number of bytes")
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<ByteSize, E> {
                if n > MAX_BYTES {
                    return Err(E::custom(format!("{n} is larger than any machine's memory")));
                }
                Ok(ByteSize(n))
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<ByteSize, E> {
                match u64::try_from(n) {
                    Ok(n) => self.visit_u64(n),
                    Err(_) => Err(E::custom(format!("{n} is negative; a size is 0 or more bytes"))),
                }
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<ByteSize, E> {
                parse_size(s).map(ByteSize).map_err(E::custom)
            }
        }
        d.deserialize_any(Size)
    }
}

/// The largest size accepted: 2^53 bytes (8 PiB) is past any machine and still exact in an f64.
const MAX_BYTES: u64 = 1 << 53;

fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("'{s}' is not a size like 8GiB"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        "t" | "tb" => 1_000_000_000_000,
        "tib" => 1 << 40,
        other => {
            return Err(format!(
                "unknown size unit '{other}' in '{s}' (use B, K or KB, KiB, M or MB, MiB, G or GB, GiB, T or TB, TiB)"
            ));
        }
    };
    let bytes = n * mult as f64;
    if bytes > MAX_BYTES as f64 {
        return Err(format!("'{s}' is larger than any machine's memory"));
    }
    Ok(bytes as u64)
}

/// A configuration problem, with the file and (for syntax and type errors) the line.
#[derive(Debug, thiserror::Error)]
#[error("config {path}: {message}")]
pub struct ConfigError {
    /// The file.
    pub path: String,
    /// What is wrong, naming the key.
    pub message: String,
}

/// What [`Config::validate`] refuses: the key, part by part (an alias may hold dots, as
/// `qwen2.5-0.5b` does), and what is wrong with its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Issue {
    /// The key's parts, from the top of the file.
    pub key: Vec<String>,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for Issue {
    /// The key as TOML spells it: a part that is not a bare key is quoted.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, part) in self.key.iter().enumerate() {
            let bare = !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            let dot = if i == 0 { "" } else { "." };
            if bare { write!(f, "{dot}{part}")? } else { write!(f, "{dot}{part:?}")? }
        }
        write!(f, ": {}", self.message)
    }
}

/// The issue with the line its key is written on, as the parsers' own errors have it, so a long
/// config need not be searched by hand.
fn with_line(text: &str, yaml: bool, issue: &Issue) -> String {
    match if yaml { yaml_line(text, &issue.key) } else { toml_line(text, &issue.key) } {
        Some(line) => format!("line {line}: {issue}"),
        None => issue.to_string(),
    }
}

/// [`toml_line`] for YAML's block style (the style a config is written in): each part of the
/// key is looked for below the previous one, more indented.
fn yaml_line(text: &str, key: &[String]) -> Option<usize> {
    let mut parts = key.iter().peekable();
    let mut indent: Option<usize> = None;
    let mut found = None;
    for (n, line) in text.lines().enumerate() {
        let Some(part) = parts.peek() else { break };
        let body = line.trim_start();
        let depth = line.len() - body.len();
        if body.is_empty() || body.starts_with('#') {
            continue;
        }
        if indent.is_some_and(|i| depth <= i) {
            break; // left the block of the part found last
        }
        let name = body.split_once(':').map(|(k, _)| unquote_yaml(k.trim()));
        if name.as_deref() == Some(part.as_str()) {
            found = Some(n + 1);
            indent = Some(depth);
            parts.next();
        }
    }
    found
}

/// serde_yaml's error for a key written twice names the mapping's line at best (none at the top
/// level); this names the line of the second one and of the first.
fn yaml_duplicate(text: &str, e: serde_yaml::Error) -> String {
    let message = e.to_string();
    let Some((path, key)) = message
        .split_once("duplicate entry with key \"")
        .and_then(|(path, rest)| rest.split_once('"').map(|(k, _)| (path, k.to_string())))
    else {
        return message;
    };
    // One frame per open block mapping: its indentation and the keys seen in it, with their lines.
    let mut frames: Vec<(usize, HashMap<String, usize>)> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let body = line.trim_start();
        if body.is_empty() || body.starts_with('#') || body.starts_with('-') {
            continue;
        }
        let Some((k, _)) = body.split_once(':') else { continue };
        let depth = line.len() - body.len();
        while frames.last().is_some_and(|(d, _)| *d > depth) {
            frames.pop();
        }
        if frames.last().is_none_or(|(d, _)| *d < depth) {
            frames.push((depth, HashMap::new()));
        }
        let seen = &mut frames.last_mut().expect("a frame was pushed").1;
        let k = unquote_yaml(k.trim());
        if k == key
            && let Some(first) = seen.get(&k)
        {
            return format!("{path}duplicate key {key:?} at line {} (first at line {first})", n + 1);
        }
        seen.entry(k).or_insert(n + 1);
    }
    message
}

/// serde_yaml's error, with the line it leaves out for a problem in a top-level key (an unknown
/// key, a size it cannot read): each top-level key is read on its own until one fails.
fn yaml_error(text: &str, e: serde_yaml::Error) -> String {
    let message = e.to_string();
    // (Its `location()` can be set while its message still has none.)
    if message.contains(" at line ") {
        return message;
    }
    let Ok(serde_yaml::Value::Mapping(map)) = serde_yaml::from_str(text) else { return message };
    for (k, v) in map {
        let Some(name) = k.as_str().map(String::from) else { continue };
        let one = serde_yaml::Mapping::from_iter([(k, v)]);
        if let Err(e) = serde_yaml::from_value::<Config>(serde_yaml::Value::Mapping(one)) {
            let e = e.to_string();
            let named = if e.contains(&format!("`{name}`")) { e } else { format!("{name}: {e}") };
            return match yaml_line(text, &[name]) {
                Some(line) => format!("{named} at line {line}"),
                None => named,
            };
        }
    }
    message
}

/// A YAML key as written: plain, or in single or double quotes (the escapes a key needs).
fn unquote_yaml(k: &str) -> String {
    if k.len() >= 2 && k.starts_with('"') && k.ends_with('"') {
        serde_yaml::from_str::<String>(k).unwrap_or_else(|_| k[1..k.len() - 1].to_string())
    } else if k.len() >= 2 && k.starts_with('\'') && k.ends_with('\'') {
        k[1..k.len() - 1].replace("''", "'")
    } else {
        k.to_string()
    }
}

/// The line (from 1) on which the `key` is written, when it is.
fn toml_line(text: &str, key: &[String]) -> Option<usize> {
    let doc = toml::de::DeTable::parse(text).ok()?;
    let mut table = doc.get_ref();
    let mut at = None;
    for part in key {
        let (k, v) = table.iter().find(|(k, _)| k.get_ref().as_ref() == part.as_str())?;
        at = Some(k.span().start);
        match v.get_ref() {
            toml::de::DeValue::Table(t) => table = t,
            _ => break,
        }
    }
    Some(text[..at?].matches('\n').count() + 1)
}

impl Config {
    /// Reads a config file; YAML when it ends in `.yaml`/`.yml`, TOML otherwise.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let err = |message: String| ConfigError { path: path.display().to_string(), message };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        // An editor's byte-order mark is no part of the document.
        let text = text.strip_prefix('\u{feff}').map(String::from).unwrap_or(text);
        let yaml = zeta_proto::socket::is_yaml(path);
        let cfg: Config = if yaml {
            // Read into a map, two equal aliases would quietly be one (the last); YAML's own
            // document refuses them.
            serde_yaml::from_str::<serde_yaml::Value>(&text).map_err(|e| err(yaml_duplicate(&text, e)))?;
            serde_yaml::from_str(&text).map_err(|e| err(yaml_error(&text, e)))?
        } else {
            toml::from_str(&text).map_err(|e| err(e.to_string().trim_end().to_string()))?
        };
        let mut cfg = cfg;
        cfg.resolve_relative_paths(path.parent().unwrap_or(Path::new(".")));
        cfg.validate().map_err(|issue| err(with_line(&text, yaml, &issue)))?;
        Ok(cfg)
    }

    /// Relative model paths in a config file are relative to the file, not to wherever the
    /// daemon happens to start (launchd starts it in `/`). The socket is not resolved here: the
    /// daemon, the gateway and the CLI all take it from `zeta_proto::socket::resolve`, which
    /// applies the same rule.
    fn resolve_relative_paths(&mut self, dir: &Path) {
        for m in self.models.values_mut() {
            if let Some(p) = m.path.as_mut() {
                *p = zeta_proto::socket::config_relative(p, dir);
            }
        }
    }

    /// Loads the file if it exists; no file means the defaults.
    pub fn load_or_default(path: Option<&Path>, must_exist: bool) -> Result<Config, ConfigError> {
        match path {
            Some(p) if p.exists() || must_exist => Config::load(p),
            _ => {
                let c = Config::default();
                c.validate().map_err(|issue| ConfigError { path: "(defaults)".into(), message: issue.to_string() })?;
                Ok(c)
            }
        }
    }

    /// Checks what serde cannot: each model names exactly one source, limits are positive.
    pub fn validate(&self) -> Result<(), Issue> {
        for (alias, m) in &self.models {
            let issue = |rest: &[&str], message: String| {
                let mut key = vec!["models".to_string(), alias.clone()];
                key.extend(rest.iter().map(|k| k.to_string()));
                Err(Issue { key, message })
            };
            // A request names the model by this string: one no client could type, or one that
            // differs from another only in spaces, is a mistake in the file.
            if alias.is_empty() || alias.trim() != alias || alias.chars().any(char::is_control) {
                return issue(
                    &[],
                    "an alias must be a non-empty name without surrounding spaces or control characters".into(),
                );
            }
            match (&m.hub, &m.path) {
                (Some(_), Some(_)) | (None, None) => {
                    return issue(&[], "set exactly one of `hub` (a repo id) or `path`".into());
                }
                (Some(h), None) if !zeta_hub::looks_like_repo_id(h) => {
                    return issue(&["hub"], format!("'{h}' is not a repo id like org/name"));
                }
                _ => {}
            }
            if m.revision.is_some() && m.hub.is_none() {
                return issue(&["revision"], "only applies to `hub` models".into());
            }
            if m.context_length == Some(0) {
                return issue(&["context_length"], "must be at least 1".into());
            }
            if m.defaults.max_tokens == Some(0) {
                return issue(&["defaults", "max_tokens"], "must be at least 1".into());
            }
            // The engine's own checks, so a bad default fails here and not in every request.
            if let Err(zeta_engine::EngineError::InvalidArgument { field, message }) =
                crate::convert::sampling(None, &m.defaults, None).validate(usize::MAX)
            {
                return issue(&["defaults", &field], message);
            }
        }
        let top = |key: &str, message: &str| Err(Issue { key: vec![key.into()], message: message.into() });
        if self.max_loaded == 0 {
            return top("max_loaded", "must be at least 1");
        }
        if self.max_batch == 0 {
            return top("max_batch", "must be at least 1");
        }
        if self.memory_budget == Some(ByteSize(0)) {
            return top("memory_budget", "must be more than 0 (leave it out for no budget)");
        }
        if self.socket.as_ref().is_some_and(|s| s.as_os_str().is_empty()) {
            return top("socket", "is empty (leave it out for the default path)");
        }
        if self.max_queue == 0 {
            return top("max_queue", "must be at least 1 (with 0 every request would be refused as busy)");
        }
        if self.default_model != EMBEDDED_ALIAS && !self.models.contains_key(&self.default_model) {
            let message =
                format!("'{}' is not one of the configured models ({})", self.default_model, self.aliases().join(", "));
            return top("default_model", &message);
        }
        Ok(())
    }

    /// Every alias, the embedded one included.
    pub fn aliases(&self) -> Vec<String> {
        let mut v: Vec<String> = self.models.keys().cloned().collect();
        if !self.models.contains_key(EMBEDDED_ALIAS) {
            v.push(EMBEDDED_ALIAS.into());
        }
        v
    }

    /// Idle unload delay, if enabled.
    pub fn idle_unload(&self) -> Option<Duration> {
        (self.idle_unload_seconds > 0).then(|| Duration::from_secs(self.idle_unload_seconds))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(name: &str, text: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        Config::load(&p)
    }

    #[test]
    fn toml_and_yaml_read_the_same_schema() {
        let t = parse(
            "c.toml",
            "max_loaded = 3\nmemory_budget = \"8GiB\"\nprefix_cache = \"64MiB\"\n[models.tiny]\npath = \"/m\"\n[models.tiny.defaults]\ntemperature = 0.2\n",
        )
        .unwrap();
        let y = parse(
            "c.yaml",
            "max_loaded: 3\nmemory_budget: 8GiB\nprefix_cache: 64MiB\nmodels:\n  tiny:\n    path: /m\n    defaults:\n      temperature: 0.2\n",
        )
        .unwrap();
        assert_eq!(t.max_loaded, 3);
        assert_eq!(t.memory_budget, Some(ByteSize(8 << 30)));
        assert_eq!(y.memory_budget, t.memory_budget);
        assert_eq!((t.prefix_cache, y.prefix_cache), (ByteSize(64 << 20), ByteSize(64 << 20)));
        assert_eq!(y.models["tiny"].defaults, t.models["tiny"].defaults);
    }

    #[test]
    fn bad_values_are_refused_at_start_naming_the_key() {
        for (text, want) in [
            ("max_queue = 0\n", "max_queue"),
            ("[models.m]\npath = \"/m\"\n[models.m.defaults]\ntemperature = -3.0\n", "models.m.defaults.temperature"),
            ("[models.m]\npath = \"/m\"\n[models.m.defaults]\ntop_p = 2.0\n", "models.m.defaults.top_p"),
            ("[models.m]\npath = \"/m\"\n[models.m.defaults]\nmax_tokens = 0\n", "models.m.defaults.max_tokens"),
            ("memory_budget = \"99999999999TiB\"\n", "larger than any machine"),
            ("memory_budget = 1000000000000000000\n", "larger than any machine"),
            ("memory_budget = 0\n", "memory_budget"),
            ("socket = \"\"\n", "socket"),
            ("[models.\"\"]\npath = \"/m\"\n", "an alias must be a non-empty name"),
            ("[models.\" m\"]\npath = \"/m\"\n", "an alias must be a non-empty name"),
        ] {
            let e = parse("c.toml", text).unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn relative_paths_are_relative_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("zeta.toml");
        std::fs::write(
            &file,
            "socket = \"run/z.sock\"\n[models.m]\npath = \"models/m.gguf\"\n[models.a]\npath = \"/abs\"\n",
        )
        .unwrap();
        let c = Config::load(&file).unwrap();
        let (socket, _) = zeta_proto::socket::resolve(None, Some(&file)).unwrap();
        assert_eq!(socket, dir.path().join("run/z.sock"));
        assert_eq!(c.models["m"].path.as_deref().unwrap(), dir.path().join("models/m.gguf"));
        assert_eq!(c.models["a"].path.as_deref().unwrap(), Path::new("/abs"));
        // `~/` is the home folder, as in a shell, not a folder named `~` beside the file.
        std::fs::write(&file, "socket = \"~/z.sock\"\n[models.m]\npath = \"~/m.gguf\"\n").unwrap();
        let home = PathBuf::from(std::env::var_os("HOME").unwrap());
        assert_eq!(Config::load(&file).unwrap().models["m"].path.as_deref().unwrap(), home.join("m.gguf"));
        assert_eq!(zeta_proto::socket::resolve(None, Some(&file)).unwrap().0, home.join("z.sock"));
    }

    #[test]
    fn errors_name_the_key_and_the_line() {
        let e = parse("c.toml", "max_loaded = 2\nmax_loded = 3\n").unwrap_err().to_string();
        assert!(e.contains("max_loded") && e.contains("line 2"), "{e}");
        let e = parse("c.yaml", "max_loaded: 2\nmax_batch: lots\n").unwrap_err().to_string();
        assert!(e.contains("max_batch") && e.contains("line 2"), "{e}");
        let e = parse("c.toml", "[models.x]\nhub = \"a/b\"\npath = \"/m\"\n").unwrap_err().to_string();
        assert!(e.contains("models.x"), "{e}");
        let e = parse("c.toml", "memory_budget = \"8 parsecs\"\n").unwrap_err().to_string();
        assert!(e.contains("memory_budget") || e.contains("parsecs"), "{e}");
        let e = parse("c.toml", "default_model = \"nope\"\n").unwrap_err().to_string();
        assert!(e.contains("default_model") && e.contains("nope"), "{e}");
        // Values serde takes but the daemon refuses carry their line too.
        let text = "max_batch = 8\n\n[models.m]\npath = \"/m\"\n[models.m.defaults]\ntop_k = 4\ntop_p = 2.0\n";
        let e = parse("c.toml", text).unwrap_err().to_string();
        assert!(e.contains("line 7: models.m.defaults.top_p"), "{e}");
        let e = parse("c.yaml", "models:\n  x:\n    path: /a\n  x:\n    path: /b\n").unwrap_err().to_string();
        assert!(e.contains("duplicate"), "{e}");
        // Any case of the extension, and a byte-order mark, are fine.
        parse("C.YML", "\u{feff}max_loaded: 2\n").unwrap();
        let e = parse("c.toml", "max_batch = 8\nmax_loaded = 0\n").unwrap_err().to_string();
        assert!(e.contains("line 2: max_loaded"), "{e}");
        let e = parse("c.toml", "# models\n[models.x]\nhub = \"a/b\"\npath = \"/m\"\n").unwrap_err().to_string();
        assert!(e.contains("line 2: models.x"), "{e}");
        let text = "max_batch: 8\nmodels:\n  n:\n    path: /n\n  m:\n    path: /m\n    defaults:\n      top_p: 2.0\n";
        let e = parse("c.yaml", text).unwrap_err().to_string();
        assert!(e.contains("line 8: models.m.defaults.top_p"), "{e}");
        // Aliases hold dots (`qwen2.5-0.5b`) and, when refused, spaces: the key is quoted as TOML
        // writes it and the line still found.
        let e = parse("c.toml", "[models.\"qwen2.5\"]\npath = \"/m\"\ncontext_length = 0\n").unwrap_err().to_string();
        assert!(e.contains("line 3: models.\"qwen2.5\".context_length: must be"), "{e}");
        let e = parse("c.yaml", "models:\n  qwen2.5:\n    path: /m\n    context_length: 0\n").unwrap_err().to_string();
        assert!(e.contains("line 4: models.\"qwen2.5\".context_length"), "{e}");
        let e = parse("c.yaml", "max_batch: 8\nmodels:\n  \" m\":\n    path: /m\n").unwrap_err().to_string();
        assert!(e.contains("line 3: models.\" m\": an alias"), "{e}");
        let e = parse("c.yaml", "models:\n  'it''s':\n    hub: nope\n").unwrap_err().to_string();
        assert!(e.contains("line 3: models.\"it's\".hub"), "{e}");
        // serde's own errors: an unknown key (top level or inside a model), a size it cannot read
        // and a wrong type carry the line too.
        let e = parse("c.yaml", "max_loaded: 2\nmax_loded: 3\n").unwrap_err().to_string();
        assert!(e.contains("`max_loded`") && e.contains("at line 2"), "{e}");
        let e = parse("c.yaml", "max_loaded: 2\nmemory_budget: 8 parsecs\n").unwrap_err().to_string();
        assert!(e.contains("memory_budget: unknown size unit") && e.contains("at line 2"), "{e}");
        let e = parse("c.yaml", "models:\n  m:\n    path: /m\n    contxt: 3\n").unwrap_err().to_string();
        assert!(e.contains("contxt") && e.contains("line 4"), "{e}");
        let e = parse("c.toml", "[models.m]\npath = \"/m\"\ncontxt = 3\n").unwrap_err().to_string();
        assert!(e.contains("contxt") && e.contains("line 3"), "{e}");
    }
}
