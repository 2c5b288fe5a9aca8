//! Which files of a repository a model needs: the MLX/safetensors set (config, tokenizer, chat
//! template, the weights its index names) or exactly one GGUF file, chosen as documented on
//! [`choose_gguf`]. READMEs, images and PyTorch/ONNX weights are never fetched.

use std::collections::BTreeSet;

use crate::error::{HubError, Result};
use crate::model_ref::is_safe_relative_path;

/// Top-level files fetched with a safetensors model when the repository has them. `config.json`
/// is what marks a repository as a safetensors (MLX / transformers) model.
pub const MODEL_METADATA_FILES: &[&str] = &[
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "generation_config.json",
    "chat_template.jinja",
    "chat_template.json",
];

/// The index of a sharded safetensors model; when present only the shards it names are fetched.
pub const SAFETENSORS_INDEX: &str = "model.safetensors.index.json";

/// Quantisation tags tried in this order when a GGUF repository holds several files and the
/// reference names none: the common "good default" `Q4_K_M` first, then the other widely
/// supported 4-bit and 8-bit formats, then larger ones.
pub const GGUF_PREFERENCE: &[&str] = &["Q4_K_M", "Q4_0", "Q8_0", "Q4_K_S", "Q5_K_M", "Q5_0", "Q6_K", "F16", "BF16"];

/// What to download for one model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Plan {
    /// A safetensors model: metadata first, then the index (if any), then the weights. When an
    /// index exists `weights` is empty: the shards are known only once the index is read.
    Safetensors { metadata: Vec<String>, index: Option<String>, weights: Vec<String> },
    /// One GGUF file.
    Gguf { file: String },
}

/// Chooses the files to fetch from a repository listing (`siblings`).
pub(crate) fn plan(repo: &str, revision: &str, siblings: &[String], requested: Option<&str>) -> Result<Plan> {
    let listed: BTreeSet<&str> = siblings.iter().map(String::as_str).filter(|f| is_safe_relative_path(f)).collect();

    if let Some(file) = requested {
        if !listed.contains(file) {
            return Err(HubError::FileNotFound { repo: repo.into(), revision: revision.into(), file: file.into() });
        }
        return Ok(Plan::Gguf { file: file.to_string() });
    }

    let top_level_weights: Vec<String> =
        listed.iter().filter(|f| !f.contains('/') && f.ends_with(".safetensors")).map(|f| f.to_string()).collect();
    let index = listed.contains(SAFETENSORS_INDEX).then(|| SAFETENSORS_INDEX.to_string());

    if listed.contains("config.json") && (index.is_some() || !top_level_weights.is_empty()) {
        let metadata = MODEL_METADATA_FILES.iter().filter(|f| listed.contains(**f)).map(|f| f.to_string()).collect();
        let weights = if index.is_some() { Vec::new() } else { top_level_weights };
        return Ok(Plan::Safetensors { metadata, index, weights });
    }

    let ggufs: Vec<String> = listed.iter().filter(|f| is_gguf(f)).map(|f| f.to_string()).collect();
    if ggufs.is_empty() {
        let mut shown: Vec<&str> = listed.iter().copied().take(20).collect();
        if listed.len() > shown.len() {
            shown.push("...");
        }
        let detail = if listed.contains("config.json") {
            format!(
                "config.json but no .safetensors weights (PyTorch/ONNX weights are not supported); files: {}",
                shown.join(", ")
            )
        } else {
            format!("no config.json with .safetensors weights and no .gguf file; files: {}", shown.join(", "))
        };
        return Err(HubError::NoModelFiles { repo: repo.into(), revision: revision.into(), detail });
    }
    match choose_gguf(&ggufs) {
        Some(file) => Ok(Plan::Gguf { file: file.to_string() }),
        None => Err(HubError::AmbiguousGguf { repo: repo.into(), revision: revision.into(), choices: ggufs }),
    }
}

pub(crate) fn is_gguf(file: &str) -> bool {
    file.to_ascii_lowercase().ends_with(".gguf")
}

/// The default GGUF file among `files` when a reference names none.
///
/// Vision projectors (`mmproj*`) and parts of split models (`*-00001-of-00003.gguf`) are never
/// chosen by default. If one candidate remains it is chosen; otherwise the first tag of
/// [`GGUF_PREFERENCE`] that appears (as a whole token, any case) in exactly one file name picks
/// it. A tag found in several names, or no tag at all, gives `None`: the caller must name a file.
pub fn choose_gguf(files: &[String]) -> Option<&str> {
    let candidates: Vec<&str> = files
        .iter()
        .map(String::as_str)
        .filter(|f| is_gguf(f))
        .filter(|f| {
            let base = basename(f).to_ascii_lowercase();
            !base.contains("mmproj") && !is_split_part(&base)
        })
        .collect();
    if let [only] = candidates.as_slice() {
        return Some(only);
    }
    for tag in GGUF_PREFERENCE {
        let matching: Vec<&str> = candidates.iter().copied().filter(|f| has_tag(basename(f), tag)).collect();
        match matching.as_slice() {
            [] => continue,
            [one] => return Some(one),
            _ => return None,
        }
    }
    None
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// `name-00001-of-00003.gguf`, the llama.cpp split naming.
fn is_split_part(base: &str) -> bool {
    let stem = base.strip_suffix(".gguf").unwrap_or(base);
    let parts: Vec<&str> = stem.rsplitn(4, '-').collect();
    matches!(parts.as_slice(), [total, "of", index, _] if total.len() == 5 && index.len() == 5
        && total.bytes().all(|b| b.is_ascii_digit()) && index.bytes().all(|b| b.is_ascii_digit()))
}

/// Whether `tag` occurs in `name` as a whole token: `Q4_0` matches `m.Q4_0.gguf` and `m-q4_0.gguf`
/// but not `m-Q4_0_4_4.gguf` (a different, ARM-specific format).
fn has_tag(name: &str, tag: &str) -> bool {
    let name = name.to_ascii_lowercase();
    let tag = tag.to_ascii_lowercase();
    name.match_indices(&tag).any(|(at, _)| {
        let before = name[..at].chars().next_back();
        let after = name[at + tag.len()..].chars().next();
        before.is_none_or(|c| !c.is_ascii_alphanumeric())
            && after.is_none_or(|c| !c.is_ascii_alphanumeric() && c != '_')
    })
}

/// The shard files a `model.safetensors.index.json` names in its `weight_map`.
pub(crate) fn shards_from_index(bytes: &[u8]) -> std::result::Result<Vec<String>, String> {
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON: {e}"))?;
    let map =
        value.get("weight_map").and_then(|m| m.as_object()).ok_or_else(|| "no \"weight_map\" object".to_string())?;
    let mut shards = BTreeSet::new();
    for (tensor, file) in map {
        let file = file.as_str().ok_or_else(|| format!("weight_map entry {tensor:?} is not a string"))?;
        if !is_safe_relative_path(file) {
            return Err(format!("weight_map entry {tensor:?} names an unsafe path {file:?}"));
        }
        shards.insert(file.to_string());
    }
    if shards.is_empty() {
        return Err("the weight_map is empty".into());
    }
    Ok(shards.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn safetensors_plan_skips_everything_else() {
        let files = names(&[
            "README.md",
            "config.json",
            "model.safetensors",
            "pytorch_model.bin",
            "onnx/model.safetensors",
            "tokenizer.json",
            "tokenizer_config.json",
            "images/a.png",
            "chat_template.jinja",
            "vocab.txt",
        ]);
        let plan = plan("o/n", "main", &files, None).unwrap();
        assert_eq!(
            plan,
            Plan::Safetensors {
                metadata: names(&["config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja"]),
                index: None,
                weights: names(&["model.safetensors"]),
            }
        );
    }

    #[test]
    fn index_defers_weights() {
        let files =
            names(&["config.json", SAFETENSORS_INDEX, "model-00001-of-00002.safetensors", "consolidated.safetensors"]);
        let Plan::Safetensors { index, weights, .. } = plan("o/n", "main", &files, None).unwrap() else { panic!() };
        assert_eq!(index.as_deref(), Some(SAFETENSORS_INDEX));
        assert!(weights.is_empty());
        let shards = shards_from_index(
            br#"{"metadata":{},"weight_map":{"a":"s2.safetensors","b":"s1.safetensors","c":"s2.safetensors"}}"#,
        );
        assert_eq!(shards.unwrap(), names(&["s1.safetensors", "s2.safetensors"]));
        assert!(shards_from_index(br#"{"weight_map":{"a":"../x"}}"#).is_err());
    }

    #[test]
    fn gguf_default_choice() {
        let files = names(&["m.Q2_K.gguf", "m.Q4_K_M.gguf", "m.Q8_0.gguf", "mmproj-m-f16.gguf"]);
        assert_eq!(choose_gguf(&files), Some("m.Q4_K_M.gguf"));
        assert_eq!(choose_gguf(&names(&["m-q8_0.gguf", "m-Q4_0_4_4.gguf"])), Some("m-q8_0.gguf"));
        assert_eq!(choose_gguf(&names(&["only.gguf", "mmproj.gguf"])), Some("only.gguf"));
        assert_eq!(choose_gguf(&names(&["a-Q4_K_M.gguf", "b-Q4_K_M.gguf"])), None);
        assert_eq!(choose_gguf(&names(&["a.gguf", "b.gguf"])), None);
        assert_eq!(
            choose_gguf(&names(&["x-00001-of-00002.gguf", "x-00002-of-00002.gguf", "y.Q8_0.gguf"])),
            Some("y.Q8_0.gguf")
        );
    }

    #[test]
    fn gguf_plans_and_errors() {
        let files = names(&["README.md", "a.Q4_K_M.gguf", "a.Q5_K_M.gguf"]);
        assert_eq!(plan("o/n", "main", &files, None).unwrap(), Plan::Gguf { file: "a.Q4_K_M.gguf".into() });
        assert_eq!(
            plan("o/n", "main", &files, Some("a.Q5_K_M.gguf")).unwrap(),
            Plan::Gguf { file: "a.Q5_K_M.gguf".into() }
        );
        let err = plan("o/n", "main", &files, Some("nope.gguf")).unwrap_err();
        assert!(matches!(err, HubError::FileNotFound { .. }), "{err}");
        let err = plan("o/n", "main", &names(&["a.gguf", "b.gguf"]), None).unwrap_err();
        assert!(err.to_string().contains("a.gguf, b.gguf"), "{err}");
        let err = plan("o/n", "main", &names(&["config.json", "pytorch_model.bin"]), None).unwrap_err();
        assert!(matches!(err, HubError::NoModelFiles { .. }) && err.to_string().contains("PyTorch"), "{err}");
    }
}
