//! The command line: global flags and one subcommand per verb, as clap parses them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// zeta: talk to the zeta-mlx daemon over its socket, and run it as a service.
#[derive(Debug, Parser)]
#[command(name = "zeta", version, propagate_version = true)]
pub struct Cli {
    /// The daemon's socket [env: ZETA_MLX_SOCKET; else the config file's `socket`; else the
    /// per-user default]. Given to `service install`, the services use it too.
    #[arg(long, global = true, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// The daemon's config file, read for its `socket` key [env: ZETA_MLX_CONFIG]. Given to
    /// `service install`, the services use it too.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// One verb.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the configured and loaded models with their state.
    Models,
    /// Show the loaded models with their memory (weights + KV cache) and requests.
    Ps,
    /// Load a model (downloading it first if needed), showing progress.
    Load {
        /// Alias, Hugging Face repo id or local path.
        model: String,
    },
    /// Unload a model; requests already running on it finish first.
    Unload {
        /// Alias (or the id it was loaded by).
        model: String,
        /// Unload it even if it is pinned (the default model): requests that name no model
        /// then wait for it to load again.
        #[arg(long)]
        force: bool,
    },
    /// Chat with a model: one answer when PROMPT is given, else an interactive chat.
    Run(RunArgs),
    /// Count the tokens of a text (or, with --chat, of a one-message conversation).
    Tokens(TokensArgs),
    /// The daemon's status: version, device, readiness, memory and per-model figures.
    Status,
    /// Run the daemon and the gateway as a background service (launchd on macOS, systemd on Linux).
    #[command(subcommand)]
    Service(ServiceCommand),
}

/// `zeta run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Alias, Hugging Face repo id or local path; `default` (or "") picks the daemon's default.
    pub model: String,
    /// Answer this and exit. Without it: read the prompt from standard input when that is not a
    /// terminal, else chat interactively.
    pub prompt: Option<String>,
    /// Most tokens per answer (default: up to the end of the context).
    #[arg(long, value_name = "N")]
    pub max_tokens: Option<u32>,
    /// Sampling temperature, 0 for greedy (default: the model's).
    #[arg(long, value_name = "T", allow_negative_numbers = true)]
    pub temperature: Option<f32>,
    /// Nucleus sampling probability mass (default: the model's).
    #[arg(long, value_name = "P")]
    pub top_p: Option<f32>,
    /// Seed, for reproducible sampling.
    #[arg(long)]
    pub seed: Option<u64>,
    /// System prompt that opens the conversation.
    #[arg(long, value_name = "TEXT")]
    pub system: Option<String>,
    /// Chat turn by turn even when standard input is not a terminal (one line per turn).
    #[arg(long, short = 'i', conflicts_with = "prompt")]
    pub interactive: bool,
    /// Print token counts and speed after each answer (on standard error).
    #[arg(long, short = 'v')]
    pub verbose: bool,
}

/// `zeta tokens`.
#[derive(Debug, Args)]
pub struct TokensArgs {
    /// Alias, Hugging Face repo id or local path.
    pub model: String,
    /// The text; read from standard input when omitted.
    pub text: Option<String>,
    /// Also print the token ids.
    #[arg(long)]
    pub ids: bool,
    /// Print each token id with its text, one per line.
    #[arg(long)]
    pub tokens: bool,
    /// Count the text as one user message through the model's chat template.
    #[arg(long)]
    pub chat: bool,
    /// Add the tokenizer's special tokens (BOS) to plain text.
    #[arg(long, conflicts_with = "chat")]
    pub special: bool,
}

/// `zeta service ...`.
#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// Write the launchd agents / systemd user units for this installation and start them.
    Install(InstallArgs),
    /// Stop the services and remove their agents / units (models and config stay).
    Uninstall,
    /// Whether each service is installed and running.
    Status,
    /// Where the services log, and their latest lines.
    Logs(LogsArgs),
}

/// `zeta service install`.
#[derive(Debug, Args)]
pub struct InstallArgs {
    /// Installation prefix holding bin/zeta-mlxd and bin/zeta-gateway (default: the one this
    /// `zeta` was installed into).
    #[arg(long, value_name = "DIR")]
    pub prefix: Option<PathBuf>,
    /// The gateway's listen address.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8000")]
    pub listen: String,
    /// The daemon's log format.
    #[arg(long, value_enum, default_value_t = LogFormatArg::Text)]
    pub log_format: LogFormatArg,
    /// RUST_LOG for both services.
    #[arg(long, value_name = "FILTER", default_value = "info")]
    pub rust_log: String,
    /// Write the files only; do not run launchctl / systemctl.
    #[arg(long)]
    pub no_start: bool,
}

/// `--log-format` of the daemon service.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormatArg {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `zeta service logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Only the daemon's log.
    #[arg(long, conflicts_with = "gateway")]
    pub daemon: bool,
    /// Only the gateway's log.
    #[arg(long)]
    pub gateway: bool,
    /// How many of the latest lines to show.
    #[arg(long, short = 'n', default_value_t = 50)]
    pub lines: u32,
    /// Keep printing new lines as they are written.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Only say where the logs are.
    #[arg(long)]
    pub r#where: bool,
}
