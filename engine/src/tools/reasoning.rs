//! Splitting `<think>…</think>` reasoning (Qwen3, QwQ, DeepSeek-R1 and their distills) from the
//! answer while it streams, holding back only what may be part of a tag.
//!
//! Newlines: the text between the tags loses its leading and trailing `\n`s and the answer after
//! `</think>` its leading `\n`s — exactly what Qwen3's chat template strips when it splits a
//! stored reply into `reasoning_content` and `content` (and what it adds back when it renders
//! them), so a reply sent back in the history renders as the model wrote it. Only `\n` is
//! stripped, not other whitespace, to match. Holding trailing newlines of reasoning until
//! something else follows is the one delay this adds.

const OPEN: &str = "<think>";
const CLOSE: &str = "</think>";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Only whitespace so far: a `<think>` here opens reasoning.
    Start,
    /// Inside reasoning; `fresh`: nothing of it emitted yet (leading `\n`s are dropped).
    Reasoning { fresh: bool },
    /// Just after `</think>`: leading `\n`s of the answer are dropped.
    AfterThink,
    /// The answer; nothing more to look for.
    Content,
}

/// Splits streamed output into reasoning and content.
#[derive(Debug)]
pub struct ReasoningSplitter {
    state: State,
    /// Text not yet decided on (a possible tag, held newlines).
    buf: String,
}

impl ReasoningSplitter {
    /// A splitter for one output. `started_in_reasoning`: the prompt already opened `<think>`
    /// (DeepSeek-R1 and QwQ templates end the generation prompt with it), so the output starts
    /// inside the reasoning; see [`ReasoningSplitter::prompt_opens_think`].
    pub fn new(started_in_reasoning: bool) -> ReasoningSplitter {
        let state = if started_in_reasoning { State::Reasoning { fresh: true } } else { State::Start };
        ReasoningSplitter { state, buf: String::new() }
    }

    /// Whether a chat template knows `<think>` reasoning (renders or strips it), i.e. whether
    /// its model's output is worth splitting.
    pub fn template_supports(chat_template: &str) -> bool {
        chat_template.contains(OPEN) || chat_template.contains(CLOSE)
    }

    /// Whether a rendered prompt ends inside an open `<think>` (ignoring trailing whitespace).
    /// A template that disables thinking ends with `<think>\n\n</think>\n\n` instead: false.
    pub fn prompt_opens_think(prompt: &str) -> bool {
        prompt.trim_end().ends_with(OPEN)
    }

    /// Whether the output is currently inside reasoning.
    pub fn in_reasoning(&self) -> bool {
        matches!(self.state, State::Reasoning { .. })
    }

    /// Feeds the next piece of output; returns `(reasoning, content)` it completes.
    pub fn push(&mut self, text: &str) -> (String, String) {
        self.buf.push_str(text);
        let (mut reasoning, mut content) = (String::new(), String::new());
        loop {
            match self.state {
                State::Start => {
                    let body = self.buf.trim_start();
                    if body.starts_with(OPEN) {
                        let used = self.buf.len() - body.len() + OPEN.len();
                        self.buf.drain(..used);
                        self.state = State::Reasoning { fresh: true };
                    } else if OPEN.starts_with(body) {
                        // Whitespace, or maybe the start of `<think>`: wait.
                        break;
                    } else {
                        self.state = State::Content;
                    }
                }
                State::Reasoning { fresh: true } => {
                    let body = self.buf.trim_start_matches('\n');
                    // A model whose prompt opened `<think>` sometimes opens it again.
                    if body.starts_with(OPEN) {
                        let used = self.buf.len() - body.len() + OPEN.len();
                        self.buf.drain(..used);
                        continue;
                    }
                    if body.is_empty() || OPEN.starts_with(body) {
                        break;
                    }
                    let used = self.buf.len() - body.len();
                    self.buf.drain(..used);
                    self.state = State::Reasoning { fresh: false };
                }
                State::Reasoning { fresh: false } => {
                    if let Some(i) = self.buf.find(CLOSE) {
                        reasoning.push_str(self.buf[..i].trim_end_matches('\n'));
                        self.buf.drain(..i + CLOSE.len());
                        self.state = State::AfterThink;
                        continue;
                    }
                    // Keep a possible partial `</think>` and the newlines before it.
                    let tag = partial_suffix(&self.buf, CLOSE);
                    let keep_from = self.buf[..tag].trim_end_matches('\n').len();
                    reasoning.push_str(&self.buf[..keep_from]);
                    self.buf.drain(..keep_from);
                    break;
                }
                State::AfterThink => {
                    let body = self.buf.trim_start_matches('\n');
                    if body.is_empty() {
                        self.buf.clear();
                        break;
                    }
                    let used = self.buf.len() - body.len();
                    self.buf.drain(..used);
                    self.state = State::Content;
                }
                State::Content => {
                    content.push_str(&self.buf);
                    self.buf.clear();
                    break;
                }
            }
        }
        (reasoning, content)
    }

    /// Ends the output; returns `(reasoning, content)` still held back. Reasoning cut off before
    /// `</think>` stays reasoning.
    pub fn finish(&mut self) -> (String, String) {
        let held = std::mem::take(&mut self.buf);
        match self.state {
            State::Start => (String::new(), held),
            State::Reasoning { .. } => (held.trim_end_matches('\n').to_string(), String::new()),
            State::AfterThink | State::Content => (String::new(), held),
        }
    }
}

/// Byte offset of the longest suffix of `text` that is a proper prefix of `tag` (`text.len()`
/// if none).
pub(crate) fn partial_suffix(text: &str, tag: &str) -> usize {
    let start = text.len().saturating_sub(tag.len() - 1);
    (start..text.len()).find(|&i| text.is_char_boundary(i) && tag.starts_with(&text[i..])).unwrap_or(text.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `pieces`, returns the concatenated (reasoning, content).
    fn split(started: bool, pieces: &[&str]) -> (String, String) {
        let mut s = ReasoningSplitter::new(started);
        let (mut r, mut c) = (String::new(), String::new());
        for p in pieces {
            let (a, b) = s.push(p);
            r += &a;
            c += &b;
        }
        let (a, b) = s.finish();
        (r + &a, c + &b)
    }

    /// Every way of cutting `text` in two and in three, and one char at a time.
    fn all_splits(text: &str) -> Vec<Vec<&str>> {
        let cuts: Vec<usize> = (0..=text.len()).filter(|&i| text.is_char_boundary(i)).collect();
        let mut out = vec![vec![text]];
        out.push(cuts.windows(2).map(|w| &text[w[0]..w[1]]).collect());
        for &i in &cuts {
            out.push(vec![&text[..i], &text[i..]]);
            for &j in cuts.iter().filter(|&&j| j >= i).step_by(3) {
                out.push(vec![&text[..i], &text[i..j], &text[j..]]);
            }
        }
        out
    }

    fn check(started: bool, text: &str, reasoning: &str, content: &str) {
        for pieces in all_splits(text) {
            assert_eq!(split(started, &pieces), (reasoning.into(), content.into()), "{pieces:?}");
        }
    }

    #[test]
    fn qwen3_thinking_output() {
        check(
            false,
            "<think>\nLet me think.\nStill thinking.\n</think>\n\nThe answer is 4.",
            "Let me think.\nStill thinking.",
            "The answer is 4.",
        );
        check(false, "<think>\n\n</think>\n\nNo thoughts.", "", "No thoughts.");
    }

    #[test]
    fn prompt_already_opened_think() {
        let qwen25 = include_str!("../../../tests/reference/templates/qwen2.5.jinja");
        assert!(!ReasoningSplitter::template_supports(qwen25));
        assert!(ReasoningSplitter::template_supports("{% set content = content.split('</think>')[-1] %}"));
        assert!(ReasoningSplitter::prompt_opens_think("<|im_start|>assistant\n<think>\n"));
        assert!(!ReasoningSplitter::prompt_opens_think("<|im_start|>assistant\n<think>\n\n</think>\n\n"));
        check(true, "Okay, 2+2.\n</think>\n\n**4**", "Okay, 2+2.", "**4**");
        check(true, "<think>\nagain</think>x", "again", "x");
        check(true, "cut off mid-thought <", "cut off mid-thought <", "");
        check(true, "cut off\n\n</thi", "cut off\n\n</thi", "");
    }

    #[test]
    fn no_tags_is_all_content() {
        check(
            false,
            "Hello <thinking> is not a tag, nor is </think> here.",
            "",
            "Hello <thinking> is not a tag, nor is </think> here.",
        );
        check(false, "  <thin", "", "  <thin");
        check(false, "\n\nIndented answer", "", "\n\nIndented answer");
        check(false, "", "", "");
    }

    #[test]
    fn holds_back_only_partial_tags() {
        let mut s = ReasoningSplitter::new(false);
        assert_eq!(s.push("<thi"), (String::new(), String::new()));
        assert_eq!(s.push("nk>\nstep one"), ("step one".into(), String::new()));
        assert_eq!(s.push(" and two</th"), (" and two".into(), String::new()));
        assert!(s.in_reasoning());
        assert_eq!(s.push("ink>\n\nDone"), (String::new(), "Done".into()));
        assert_eq!(s.push(" <think> later"), (String::new(), " <think> later".into()));
        assert_eq!(s.finish(), (String::new(), String::new()));
        assert_eq!(partial_suffix("ab</th", CLOSE), 2);
        assert_eq!(partial_suffix("ab", CLOSE), 2);
        assert_eq!(partial_suffix("é<", CLOSE), 2);
    }
}
