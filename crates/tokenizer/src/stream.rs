//! Output text as tokens arrive: what may be sent now, and where a stop string ends it (the
//! server's streamed responses and the C API's token callback).
//!
//! Two things hold text back. A character may span several byte tokens, so text is released
//! only up to the last complete character (the decoder shows an unfinished one as U+FFFD).
//! And a stop string may be forming: text that could be the start of one waits until it is
//! either the whole stop string (the output ends before it, as OpenAI's `stop` says) or clearly
//! not. So a client never receives text that a later token takes back.

/// The text of one sequence, released piece by piece.
#[derive(Debug, Default)]
pub struct TextStream {
    stops: Vec<String>,
    /// Bytes of the decoded text already released.
    emitted: usize,
    /// Set once a stop string was found: nothing more is released.
    stopped: bool,
}

/// What one step releases.
#[derive(Debug, PartialEq, Eq)]
pub struct Step {
    /// New text to send (may be empty).
    pub text: String,
    /// A stop string was reached: generation should end, `text` is the last piece.
    pub stop: bool,
}

impl TextStream {
    /// Empty strings are dropped: they would match everywhere.
    pub fn new(stops: Vec<String>) -> TextStream {
        TextStream {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            emitted: 0,
            stopped: false,
        }
    }

    /// Whether a stop string ended the text.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// `decoded` is the whole output so far (each call extends the previous one); returns what
    /// can be released now.
    pub fn push(&mut self, decoded: &str) -> Step {
        if self.stopped {
            return Step {
                text: String::new(),
                stop: true,
            };
        }
        let ready = decoded.trim_end_matches('\u{FFFD}');
        if let Some(at) = self.first_stop(ready) {
            self.stopped = true;
            let text = self.release(ready, at);
            return Step { text, stop: true };
        }
        let hold = self.partial_stop_len(ready);
        let text = self.release(ready, ready.len() - hold);
        Step { text, stop: false }
    }

    /// Generation ended: releases the rest (no stop string can form any more). Returns whether a
    /// stop string ends the text.
    pub fn finish(&mut self, decoded: &str) -> Step {
        if self.stopped {
            return Step {
                text: String::new(),
                stop: true,
            };
        }
        if let Some(at) = self.first_stop(decoded) {
            self.stopped = true;
            return Step {
                text: self.release(decoded, at),
                stop: true,
            };
        }
        Step {
            text: self.release(decoded, decoded.len()),
            stop: false,
        }
    }

    /// Releases `text[emitted..end]`, `end` moved back to a character boundary.
    fn release(&mut self, text: &str, mut end: usize) -> String {
        while end > 0 && !text.is_char_boundary(end) {
            end -= 1;
        }
        if end <= self.emitted || !text.is_char_boundary(self.emitted) {
            return String::new();
        }
        let piece = text[self.emitted..end].to_string();
        self.emitted = end;
        piece
    }

    /// Where the earliest stop string starts in `text`.
    fn first_stop(&self, text: &str) -> Option<usize> {
        self.stops
            .iter()
            .filter_map(|s| text.find(s.as_str()))
            .min()
    }

    /// The length of the longest end of `text` that begins some stop string.
    fn partial_stop_len(&self, text: &str) -> usize {
        let mut best = 0;
        for s in &self.stops {
            for k in (1..s.len()).rev() {
                if k <= best {
                    break;
                }
                if s.is_char_boundary(k) && text.ends_with(&s[..k]) {
                    best = k;
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

    /// Feeds growing prefixes of `pieces` and collects what is released.
    fn run(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let mut s = TextStream::new(stops.iter().map(|s| s.to_string()).collect());
        let mut decoded = String::new();
        let mut out = String::new();
        for p in pieces {
            decoded.push_str(p);
            let step = s.push(&decoded);
            out += &step.text;
            if step.stop {
                return (out, true);
            }
        }
        let step = s.finish(&decoded);
        out += &step.text;
        (out, step.stop)
    }

    #[test]
    fn without_stops_everything_is_released() {
        assert_eq!(
            run(&[], &["Hel", "lo", " world"]),
            ("Hello world".into(), false)
        );
    }

    #[test]
    fn the_text_ends_before_the_stop_string_even_across_tokens() {
        assert_eq!(run(&["\n\n"], &["a", "\n", "\nb"]), ("a".into(), true));
        assert_eq!(
            run(&["END", "."], &["x E", "N", "D y."]),
            ("x ".into(), true)
        );
        // The earliest of several stops wins.
        assert_eq!(run(&["b", "a"], &["xab"]), ("x".into(), true));
    }

    #[test]
    fn a_partial_stop_is_held_back_then_released_when_it_turns_out_not_to_be_one() {
        let mut s = TextStream::new(vec!["STOP".into()]);
        assert_eq!(s.push("go ST").text, "go ");
        assert_eq!(s.push("go STA").text, "STA");
        assert_eq!(s.finish("go STA").text, "");
        let mut s = TextStream::new(vec!["STOP".into()]);
        assert_eq!(s.push("go ST").text, "go ");
        // Generation ends with the partial match: it is plain text.
        assert_eq!(s.finish("go ST").text, "ST");
    }

    #[test]
    fn unfinished_characters_wait_for_their_last_byte() {
        let mut s = TextStream::new(vec![]);
        assert_eq!(s.push("caf\u{FFFD}").text, "caf");
        assert_eq!(s.push("café").text, "é");
    }

    #[test]
    fn empty_stop_strings_are_ignored() {
        assert_eq!(run(&[""], &["abc"]), ("abc".into(), false));
    }
}
