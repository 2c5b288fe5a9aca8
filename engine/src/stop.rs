//! Stop strings over streamed text. Text that might be the start of a stop string is held back
//! until it either completes the stop string (and is dropped, ending the sequence) or cannot
//! anymore (and is released), so a client never sees half of a stop string.

/// What [`StopMatcher::push`] decided.
#[derive(Debug, PartialEq, Eq)]
pub enum StopResult {
    /// Text safe to emit now; generation goes on.
    Continue(String),
    /// A stop string completed: emit `text` (everything before it) and finish.
    Stop {
        /// The text before the stop string.
        text: String,
        /// The stop string that matched (the earliest in the text; the first listed on a tie).
        stop: String,
    },
}

/// Stop-string matcher for one sequence.
pub struct StopMatcher {
    stops: Vec<String>,
    held: String,
}

impl StopMatcher {
    /// A matcher for these (non-empty) stop strings.
    pub fn new(stops: Vec<String>) -> StopMatcher {
        StopMatcher { stops: stops.into_iter().filter(|s| !s.is_empty()).collect(), held: String::new() }
    }

    /// Feeds newly decoded text.
    pub fn push(&mut self, text: &str) -> StopResult {
        if self.stops.is_empty() {
            return StopResult::Continue(text.to_string());
        }
        self.held.push_str(text);
        let first =
            self.stops.iter().filter_map(|s| self.held.find(s.as_str()).map(|at| (at, s))).min_by_key(|(at, _)| *at);
        if let Some((at, stop)) = first {
            let result = StopResult::Stop { text: self.held[..at].to_string(), stop: stop.clone() };
            self.held.clear();
            return result;
        }
        let keep = self.partial_suffix_len();
        let cut = self.held.len() - keep;
        let out = self.held[..cut].to_string();
        self.held.drain(..cut);
        StopResult::Continue(out)
    }

    /// The held-back text, released when the sequence ends for another reason.
    pub fn flush(&mut self) -> String {
        std::mem::take(&mut self.held)
    }

    /// Length of the longest suffix of the held text that is a proper prefix of a stop string.
    fn partial_suffix_len(&self) -> usize {
        let h = &self.held;
        let mut best = 0;
        for s in &self.stops {
            let max = (s.len() - 1).min(h.len());
            for len in (best + 1..=max).rev() {
                let start = h.len() - len;
                if h.is_char_boundary(start) && s.starts_with(&h[start..]) {
                    best = len;
                    break;
                }
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_back_a_possible_prefix_and_stops_on_completion() {
        let mut m = StopMatcher::new(vec!["END".into()]);
        assert_eq!(m.push("hello E"), StopResult::Continue("hello ".into()));
        assert_eq!(m.push("N"), StopResult::Continue("".into()));
        assert_eq!(m.push("D and more"), StopResult::Stop { text: "".into(), stop: "END".into() });
    }

    #[test]
    fn releases_text_that_stops_matching() {
        let mut m = StopMatcher::new(vec!["END".into()]);
        assert_eq!(m.push("EN"), StopResult::Continue("".into()));
        assert_eq!(m.push("x"), StopResult::Continue("ENx".into()));
        assert_eq!(m.push("E"), StopResult::Continue("".into()));
        assert_eq!(m.flush(), "E");
    }

    #[test]
    fn earliest_stop_wins_and_multibyte_is_safe() {
        let mut m = StopMatcher::new(vec!["世界".into(), "b".into()]);
        assert_eq!(m.push("a世"), StopResult::Continue("a".into()));
        assert_eq!(m.push("界b"), StopResult::Stop { text: "".into(), stop: "世界".into() });
        let mut m = StopMatcher::new(vec!["cd".into(), "bc".into(), "b".into()]);
        assert_eq!(m.push("abcd"), StopResult::Stop { text: "a".into(), stop: "bc".into() });
    }
}
