//! Load progress on standard error: a bar (bytes and files while downloading, then layers) on a
//! terminal, and plain lines, at most one per tenth of each phase, when standard error is a
//! file or a pipe, so logs of scripted loads stay short and readable.

use std::io::IsTerminal as _;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use zeta_proto::v1;

/// Which phase the bar shows; switching phases restyles it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    None,
    Download,
    Layers,
}

/// Shows the progress of one load.
pub struct LoadProgress {
    model: String,
    phase: Phase,
    bar: Option<ProgressBar>,
    /// Plain mode: the last tenth printed, and the file it was for.
    last_tenth: Option<(u64, String)>,
}

impl LoadProgress {
    /// A bar when standard error is a terminal, plain lines otherwise.
    pub fn new(model: &str) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::with_template("{spinner} {msg}") {
                b.set_style(style);
            }
            b.set_message(format!("{model}: waiting for the daemon"));
            b.enable_steady_tick(std::time::Duration::from_millis(120));
            b
        });
        LoadProgress { model: model.to_owned(), phase: Phase::None, bar, last_tenth: None }
    }

    /// Shows one progress event.
    pub fn update(&mut self, p: &v1::load_progress::Progress) {
        match p {
            v1::load_progress::Progress::Download(d) => self.download(d),
            v1::load_progress::Progress::Loading(l) => self.layers(l),
            v1::load_progress::Progress::Loaded(_) => self.finish(),
        }
    }

    /// Removes the bar (before the final line or an error message).
    pub fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }

    fn enter(&mut self, phase: Phase, template: &str) {
        if self.phase == phase {
            return;
        }
        self.phase = phase;
        self.last_tenth = None;
        if let Some(b) = &self.bar {
            let style = ProgressStyle::with_template(template)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
            b.disable_steady_tick();
            b.set_style(style);
            b.reset();
        }
    }

    fn download(&mut self, d: &v1::Download) {
        self.enter(Phase::Download, "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}");
        let files = format!("{}/{} files", d.files_done.min(d.files_total), d.files_total);
        match &self.bar {
            Some(b) => {
                b.set_message(format!("{}: downloading {} ({files})", self.model, d.file));
                b.set_length(d.bytes_total.max(1));
                b.set_position(d.bytes_done);
            }
            None => {
                let line = format!(
                    "{}: downloading {} ({files}), {} of {}",
                    self.model,
                    d.file,
                    crate::format::bytes(d.bytes_done),
                    crate::format::bytes(d.bytes_total)
                );
                self.plain(d.bytes_done, d.bytes_total, &d.file, &line);
            }
        }
    }

    fn layers(&mut self, l: &v1::Loading) {
        self.enter(Phase::Layers, "{msg} [{bar:30}] {pos}/{len} layers");
        match &self.bar {
            Some(b) => {
                b.set_message(format!("{}: loading", self.model));
                b.set_length(u64::from(l.layers_total.max(1)));
                b.set_position(u64::from(l.layers_done));
            }
            None => {
                let line = format!("{}: loading layers {}/{}", self.model, l.layers_done, l.layers_total);
                self.plain(u64::from(l.layers_done), u64::from(l.layers_total), "", &line);
            }
        }
    }

    /// Prints `line` when the phase crosses into a new tenth, or a new file starts.
    fn plain(&mut self, done: u64, total: u64, file: &str, line: &str) {
        let tenth = done.saturating_mul(10).checked_div(total).unwrap_or(0);
        let key = (tenth, file.to_owned());
        if self.last_tenth.as_ref() != Some(&key) {
            self.last_tenth = Some(key);
            eprintln!("{line}");
        }
    }
}

impl Drop for LoadProgress {
    fn drop(&mut self) {
        self.finish();
    }
}
