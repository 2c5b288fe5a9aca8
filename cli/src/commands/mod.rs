//! One module per verb; each prints its own output and returns a [`crate::error::CliError`].

pub mod load;
pub mod models;
pub mod run;
pub mod service;
pub mod status;
pub mod tokens;

/// The model as the daemon takes it: `default` (or nothing) is the daemon's default model, in
/// every command alike.
pub fn model_name(arg: &str) -> &str {
    if arg == "default" { "" } else { arg }
}
