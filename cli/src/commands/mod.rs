//! One module per verb; each prints its own output and returns a [`crate::error::CliError`].

pub mod load;
pub mod models;
pub mod run;
pub mod service;
pub mod status;
pub mod tokens;
