//! OCR noise: the mistakes a real OCR engine makes on thermal paper.
//!
//! Applied to the printed text only, after the truth is fixed, so a model trained on noisy input
//! learns to correct "T0TAL 12.O3" to 12.03 rather than to copy noise.

use rand::Rng;

/// Glyph pairs OCR confuses, in both directions.
const CONFUSIONS: &[(&str, &str)] = &[
    ("0", "O"),
    ("O", "0"),
    ("1", "l"),
    ("1", "I"),
    ("l", "1"),
    ("I", "1"),
    ("5", "S"),
    ("S", "5"),
    ("8", "B"),
    ("B", "8"),
    ("2", "Z"),
    ("6", "G"),
    ("m", "rn"),
    ("rn", "m"),
    (".", ","),
    (",", "."),
    ("e", "c"),
    ("a", "o"),
    ("i", "l"),
];

const STRAY: &[char] = &['.', '\'', '`', '|', '~', ',', ':', '"', '_'];

/// Corrupts `text` at `rate` (per character; line splits and merges at 3×`rate` per line).
///
/// `rate <= 0` returns the text unchanged, so clean and noisy datasets share one code path.
pub fn add_noise<R: Rng>(text: &str, rate: f64, rng: &mut R) -> String {
    if rate <= 0.0 {
        return text.to_string();
    }
    let rate = rate.min(1.0);
    let line_rate = (rate * 3.0).min(1.0);
    let mut lines: Vec<String> = Vec::new();
    for line in text.lines() {
        let noisy = noise_line(line, rate, rng);
        if rng.gen_bool(line_rate) {
            // Split at a space (the OCR saw two text blocks) …
            let spaces: Vec<usize> = noisy
                .match_indices(' ')
                .map(|(i, _)| i)
                .filter(|&i| i > 0)
                .collect();
            if !spaces.is_empty() && rng.gen_bool(0.5) {
                let at = spaces[rng.gen_range(0..spaces.len())];
                lines.push(noisy[..at].trim_end().to_string());
                lines.push(noisy[at..].trim_start().to_string());
                continue;
            }
            // … or merge with the previous line (it saw one).
            if let Some(prev) = lines.last_mut() {
                prev.push_str(if rng.gen_bool(0.5) { " " } else { "  " });
                prev.push_str(noisy.trim_start());
                continue;
            }
        }
        lines.push(noisy);
    }
    lines.join("\n")
}

fn noise_line<R: Rng>(line: &str, rate: f64, rng: &mut R) -> String {
    let chars: Vec<char> = line.chars().collect();
    let mut out = String::with_capacity(line.len() + 4);
    let mut i = 0;
    while i < chars.len() {
        let ch = chars[i];
        if ch == ' ' || !rng.gen_bool(rate) {
            if ch == ' ' && rng.gen_bool(rate * 0.5) {
                // Merged words: a space lost.
            } else {
                out.push(ch);
            }
            i += 1;
            continue;
        }
        let roll: f64 = rng.gen();
        if roll < 0.5 {
            // A confusion starting here (two-char ones first, so "rn" → "m" can fire).
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let one = ch.to_string();
            let options: Vec<&(&str, &str)> = CONFUSIONS
                .iter()
                .filter(|(from, _)| *from == two || *from == one)
                .collect();
            if options.is_empty() {
                out.push(ch);
                i += 1;
            } else {
                let (from, to) = options[rng.gen_range(0..options.len())];
                out.push_str(to);
                i += from.chars().count();
            }
        } else if roll < 0.7 {
            i += 1; // dropped
        } else if roll < 0.85 {
            out.push(ch);
            out.push(STRAY[rng.gen_range(0..STRAY.len())]);
            i += 1;
        } else {
            out.push(ch);
            out.push(' ');
            i += 1;
        }
    }
    out
}
