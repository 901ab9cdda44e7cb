//! The pre-tokenizers of byte-level BPE vocabularies: cutting text into the words that BPE
//! merges within, as llama.cpp's `unicode_regex_split` does for each `tokenizer.ggml.pre`.
//!
//! The patterns come from the models' `tokenizer.json` files, e.g. Qwen2's
//! `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`.
//! The `\s+(?!\S)` lookahead is beyond the `regex` crate, and `fancy-regex` would give Hugging
//! Face's answer with Rust's Unicode tables, not llama.cpp's. So these are hand-written
//! scanners, ports of llama.cpp's own (`unicode_regex_split_custom_gpt2/llama3/qwen2`) over
//! the same Unicode 15.1 classes, quirks included: a lookahead never sees past the end of the
//! piece being split, and `[^\s\p{L}\p{N}]` takes any assigned or unassigned code point. The
//! few extra patterns some pre-tokenizers run first (`\p{N}`, `[\p{P}$+<=>^~|]+`, ...) go
//! through `std::regex` in llama.cpp; they are simple character-class runs, written out here.

use crate::unicode::{class_of, CharClass};

/// A pre-tokenizer, named after llama.cpp's `LLAMA_VOCAB_PRE_TYPE_*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pre {
    /// No `tokenizer.ggml.pre` (or `default`): four patterns in turn.
    Default,
    /// GPT-2's pattern alone.
    Gpt2,
    /// Llama 3: letters after an optional non-letter, digits in threes.
    Llama3,
    /// Qwen2: as Llama 3 but one digit per word.
    Qwen2,
    /// SmolLM, StarCoder and others: each digit alone, then GPT-2's pattern.
    Smollm,
}

/// What a `tokenizer.ggml.pre` name selects: the splitter, and the two vocabulary flags
/// llama.cpp ties to the name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PreConfig {
    pub pre: Pre,
    /// A whole word that is itself a token is emitted without merging (Llama 3).
    pub ignore_merges: bool,
    /// The BOS default when the GGUF has no `tokenizer.ggml.add_bos_token`.
    pub add_bos: bool,
}

/// The names llama.cpp gives each supported splitter (llama-vocab.cpp, `tokenizer_pre == ...`).
/// Names with further per-model rules (extra separators, special-token stripping, different
/// escaping) are left out rather than half supported.
const NAMES: &[(&str, Pre, bool, bool)] = &[
    ("default", Pre::Default, false, false),
    ("llama-bpe", Pre::Llama3, true, true),
    ("llama3", Pre::Llama3, true, true),
    ("llama-v3", Pre::Llama3, true, true),
    ("falcon3", Pre::Llama3, true, true),
    ("falcon-h1", Pre::Llama3, true, true),
    ("pixtral", Pre::Llama3, true, true),
    ("midm-2.0", Pre::Llama3, true, true),
    ("lfm2", Pre::Llama3, true, true),
    ("dbrx", Pre::Llama3, false, false),
    ("smaug-bpe", Pre::Llama3, false, false),
    ("qwen2", Pre::Qwen2, false, false),
    ("deepseek-r1-qwen", Pre::Qwen2, false, false),
    ("stablelm2", Pre::Qwen2, false, false),
    ("smollm", Pre::Smollm, false, false),
    ("starcoder", Pre::Smollm, false, false),
    ("refact", Pre::Smollm, false, false),
    ("command-r", Pre::Smollm, false, false),
    ("codeshell", Pre::Smollm, false, false),
    ("exaone", Pre::Smollm, false, false),
    ("minerva", Pre::Smollm, false, false),
    ("gpt-2", Pre::Gpt2, false, false),
    ("phi-2", Pre::Gpt2, false, false),
    ("mpt", Pre::Gpt2, false, false),
    ("olmo", Pre::Gpt2, false, false),
    ("jais", Pre::Gpt2, false, false),
    ("exaone4", Pre::Gpt2, false, false),
];

impl PreConfig {
    /// `None` for a name this crate does not implement. A missing name means `default`, as
    /// in llama.cpp (which warns that quality will suffer).
    pub(crate) fn from_name(name: Option<&str>) -> Option<PreConfig> {
        let name = name.unwrap_or("default");
        NAMES
            .iter()
            .find(|n| n.0 == name)
            .map(|&(_, pre, ignore_merges, add_bos)| PreConfig {
                pre,
                ignore_merges,
                add_bos,
            })
    }

    /// Every accepted name, for error messages.
    pub(crate) fn supported() -> String {
        NAMES.iter().map(|n| n.0).collect::<Vec<_>>().join(", ")
    }
}

/// Reusable buffers, so that encoding many short texts allocates nothing per text.
#[derive(Default)]
pub(crate) struct Scratch {
    chars: Vec<char>,
    classes: Vec<CharClass>,
    /// Byte offset of each character, plus one for the end of the text.
    offsets: Vec<usize>,
    pieces: Vec<(usize, usize)>,
    next: Vec<(usize, usize)>,
}

impl Pre {
    /// Appends the byte ranges of `text`'s words, in order; together they cover `text`.
    pub(crate) fn split(self, text: &str, s: &mut Scratch, words: &mut Vec<(usize, usize)>) {
        s.chars.clear();
        s.classes.clear();
        s.offsets.clear();
        for (i, c) in text.char_indices() {
            s.chars.push(c);
            s.classes.push(class_of(c));
            s.offsets.push(i);
        }
        s.offsets.push(text.len());
        let n = s.chars.len();
        if n == 0 {
            return;
        }
        let cx = Chars {
            c: &s.chars,
            k: &s.classes,
        };
        s.pieces.clear();
        s.pieces.push((0, n));
        let stages: &[Stage] = match self {
            Pre::Gpt2 => &[Stage::Gpt2],
            Pre::Llama3 => &[Stage::Llama3],
            Pre::Qwen2 => &[Stage::Qwen2],
            Pre::Smollm => &[Stage::EachNumber, Stage::Gpt2],
            Pre::Default => &[
                Stage::PunctRuns,
                Stage::Gpt2,
                Stage::NumberRuns,
                Stage::AsciiDigitTriples,
            ],
        };
        for &stage in stages {
            s.next.clear();
            for &(a, b) in &s.pieces {
                stage.run(&cx, a, b, &mut s.next);
            }
            std::mem::swap(&mut s.pieces, &mut s.next);
        }
        words.extend(s.pieces.iter().map(|&(a, b)| (s.offsets[a], s.offsets[b])));
    }
}

struct Chars<'a> {
    c: &'a [char],
    k: &'a [CharClass],
}

/// One pattern of a pre-tokenizer: splits the piece `[a, b)` (character indices) into
/// pieces, unmatched stretches included, as llama.cpp's offsets do.
#[derive(Clone, Copy)]
enum Stage {
    Gpt2,
    Llama3,
    Qwen2,
    /// `\p{N}`.
    EachNumber,
    /// `\p{N}+`.
    NumberRuns,
    /// `[\p{P}\$\+<=>\^~\|]+`.
    PunctRuns,
    /// `[0-9][0-9][0-9]`.
    AsciiDigitTriples,
}

impl Stage {
    fn run(self, cx: &Chars, a: usize, b: usize, out: &mut Vec<(usize, usize)>) {
        match self {
            Stage::Gpt2 => gpt2(cx, a, b, out),
            Stage::Llama3 => llama3(cx, a, b, 3, out),
            Stage::Qwen2 => llama3(cx, a, b, 1, out),
            Stage::EachNumber => class_runs(a, b, out, |i| cx.k[i] == CharClass::Number, true),
            Stage::NumberRuns => class_runs(a, b, out, |i| cx.k[i] == CharClass::Number, false),
            Stage::PunctRuns => class_runs(
                a,
                b,
                out,
                |i| cx.k[i] == CharClass::Punct || "$+<=>^~|".contains(cx.c[i]),
                false,
            ),
            Stage::AsciiDigitTriples => digit_triples(cx, a, b, out),
        }
    }
}

/// Splits `[a, b)` around runs of characters satisfying `hit` (each hit alone when `single`).
fn class_runs(
    a: usize,
    b: usize,
    out: &mut Vec<(usize, usize)>,
    hit: impl Fn(usize) -> bool,
    single: bool,
) {
    let mut start = a;
    let mut i = a;
    while i < b {
        if !hit(i) {
            i += 1;
            continue;
        }
        if i > start {
            out.push((start, i));
        }
        let m = i;
        i += 1;
        while !single && i < b && hit(i) {
            i += 1;
        }
        out.push((m, i));
        start = i;
    }
    if b > start {
        out.push((start, b));
    }
}

/// Leftmost non-overlapping runs of exactly three ASCII digits.
fn digit_triples(cx: &Chars, a: usize, b: usize, out: &mut Vec<(usize, usize)>) {
    let digit = |i: usize| cx.c[i].is_ascii_digit();
    let mut start = a;
    let mut i = a;
    while i + 3 <= b {
        if digit(i) && digit(i + 1) && digit(i + 2) {
            if i > start {
                out.push((start, i));
            }
            out.push((i, i + 3));
            i += 3;
            start = i;
        } else {
            i += 1;
        }
    }
    if b > start {
        out.push((start, b));
    }
}

/// Character access bounded to one piece: outside it there is nothing, as llama.cpp's
/// `_get_cpt`/`_get_flags` return "out of range" and empty flags.
struct Piece<'a> {
    cx: &'a Chars<'a>,
    a: usize,
    b: usize,
}

impl Piece<'_> {
    #[inline]
    fn class(&self, i: usize) -> Option<CharClass> {
        (self.a <= i && i < self.b).then(|| self.cx.k[i])
    }

    #[inline]
    fn char(&self, i: usize) -> Option<char> {
        (self.a <= i && i < self.b).then(|| self.cx.c[i])
    }

    #[inline]
    fn is(&self, i: usize, k: CharClass) -> bool {
        self.class(i) == Some(k)
    }

    /// `[^\s\p{L}\p{N}]` for a character inside the piece.
    #[inline]
    fn is_other(&self, i: usize) -> bool {
        matches!(self.class(i), Some(k) if !matches!(k, CharClass::Space | CharClass::Letter | CharClass::Number))
    }

    /// `'s|'t|'re|'ve|'m|'ll|'d` at `i`, case-insensitive when `fold`: the match length.
    fn contraction(&self, i: usize, fold: bool) -> Option<usize> {
        if self.char(i) != Some('\'') || i + 1 >= self.b {
            return None;
        }
        // Only ASCII letters lower-case to these letters, so ASCII folding is Unicode folding.
        let low = |c: Option<char>| c.map(|c| if fold { c.to_ascii_lowercase() } else { c });
        let c1 = low(self.char(i + 1));
        if matches!(c1, Some('s' | 't' | 'm' | 'd')) {
            return Some(2);
        }
        if i + 2 < self.b {
            let c2 = low(self.char(i + 2));
            if matches!(
                (c1, c2),
                (Some('r'), Some('e')) | (Some('v'), Some('e')) | (Some('l'), Some('l'))
            ) {
                return Some(3);
            }
        }
        None
    }
}

/// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
fn gpt2(cx: &Chars, a: usize, b: usize, out: &mut Vec<(usize, usize)>) {
    let p = Piece { cx, a, b };
    let mut pos = a;
    while pos < b {
        let start = pos;
        let cpt = cx.c[pos];
        if let Some(n) = p.contraction(pos, false) {
            pos += n;
        } else {
            let space = usize::from(cpt == ' ');
            let k2 = if cpt == ' ' {
                p.class(pos + 1)
            } else {
                p.class(pos)
            };
            match k2 {
                Some(CharClass::Letter) => {
                    pos += space;
                    while p.is(pos, CharClass::Letter) {
                        pos += 1;
                    }
                }
                Some(CharClass::Number) => {
                    pos += space;
                    while p.is(pos, CharClass::Number) {
                        pos += 1;
                    }
                }
                Some(k) if k != CharClass::Space => {
                    pos += space;
                    while p.is_other(pos) {
                        pos += 1;
                    }
                }
                _ => pos = whitespace(&p, pos, false),
            }
        }
        out.push((start, pos));
    }
}

/// Llama 3 (`digits` = 3) and Qwen2 (`digits` = 1):
/// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
fn llama3(cx: &Chars, a: usize, b: usize, digits: usize, out: &mut Vec<(usize, usize)>) {
    let p = Piece { cx, a, b };
    let mut pos = a;
    while pos < b {
        let cpt = cx.c[pos];
        let k = cx.k[pos];
        if let Some(n) = p.contraction(pos, true) {
            out.push((pos, pos + n));
            pos += n;
            continue;
        }
        // [^\r\n\p{L}\p{N}]?\p{L}+
        if !(cpt == '\r' || cpt == '\n' || k == CharClass::Number)
            && (k == CharClass::Letter || p.is(pos + 1, CharClass::Letter))
        {
            let start = pos;
            pos += 1;
            while p.is(pos, CharClass::Letter) {
                pos += 1;
            }
            out.push((start, pos));
            continue;
        }
        // \p{N}{1,digits}
        if k == CharClass::Number {
            let mut start = pos;
            while p.is(pos, CharClass::Number) {
                pos += 1;
                if pos - start >= digits {
                    out.push((start, pos));
                    start = pos;
                }
            }
            if pos > start {
                out.push((start, pos));
            }
            continue;
        }
        // ' ?[^\s\p{L}\p{N}]+[\r\n]*'; a lone space at the end of the piece lands here too.
        let k2 = if cpt == ' ' {
            p.class(pos + 1)
        } else {
            Some(k)
        };
        if !matches!(
            k2,
            Some(CharClass::Space | CharClass::Letter | CharClass::Number)
        ) {
            let start = pos;
            pos += usize::from(cpt == ' ');
            while p.is_other(pos) {
                pos += 1;
            }
            while matches!(p.char(pos), Some('\r' | '\n')) {
                pos += 1;
            }
            out.push((start, pos));
            continue;
        }
        let start = pos;
        pos = whitespace(&p, pos, true);
        out.push((start, pos));
    }
}

/// The whitespace alternatives at `pos`, returning where the word ends:
/// `\s*[\r\n]+` (when `newlines`), then `\s+(?!\S)`, then `\s+`; one character when none applies.
fn whitespace(p: &Piece, pos: usize, newlines: bool) -> usize {
    let mut n = 0;
    let mut last_newline_end = None;
    while p.is(pos + n, CharClass::Space) {
        if matches!(p.char(pos + n), Some('\r' | '\n')) {
            last_newline_end = Some(pos + n + 1);
        }
        n += 1;
    }
    if newlines {
        if let Some(end) = last_newline_end {
            return end;
        }
    }
    if n > 1 && pos + n < p.b {
        // Leave the last space to start the next word (" world").
        return pos + n - 1;
    }
    if n > 0 {
        return pos + n;
    }
    pos + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(pre: Pre, text: &str) -> Vec<&str> {
        let mut s = Scratch::default();
        let mut w = Vec::new();
        pre.split(text, &mut s, &mut w);
        let joined: String = w.iter().map(|&(a, b)| &text[a..b]).collect();
        assert_eq!(joined, text, "words must cover the text");
        w.into_iter().map(|(a, b)| &text[a..b]).collect()
    }

    // Expected splits worked out by hand from the patterns (and, for the whitespace cases,
    // from Hugging Face's regex semantics, which these agree with).

    #[test]
    fn qwen2_splits() {
        let q = |t| words(Pre::Qwen2, t);
        assert_eq!(q("Hello world"), ["Hello", " world"]);
        assert_eq!(q("I'm HERE'S"), ["I", "'m", " HERE", "'S"]);
        assert_eq!(q("abc 12345"), ["abc", " ", "1", "2", "3", "4", "5"]);
        assert_eq!(q("a   b"), ["a", "  ", " b"]);
        assert_eq!(q("a \n\n b"), ["a", " \n\n", " b"]);
        assert_eq!(q("x  "), ["x", "  "]);
        assert_eq!(q("f(x);\n}"), ["f", "(x", ");\n", "}"]);
        assert_eq!(q("\tfoo"), ["\tfoo"]);
        assert_eq!(q(" !!"), [" !!"]);
        assert_eq!(q("日本語 テスト"), ["日本語", " テスト"]);
        assert_eq!(q("😀👍"), ["😀👍"]);
        assert_eq!(q(""), Vec::<&str>::new());
    }

    #[test]
    fn llama3_groups_digits_in_threes() {
        let l = |t| words(Pre::Llama3, t);
        assert_eq!(l("1234567"), ["123", "456", "7"]);
        assert_eq!(l("x 12"), ["x", " ", "12"]);
        assert_eq!(l("ab'LL"), ["ab", "'LL"]);
    }

    #[test]
    fn gpt2_is_case_sensitive_and_keeps_space_with_words() {
        let g = |t| words(Pre::Gpt2, t);
        assert_eq!(g("I'm I'M"), ["I", "'m", " I", "'", "M"]);
        assert_eq!(g(" 123 abc"), [" 123", " abc"]);
        assert_eq!(g("a\n\nb"), ["a", "\n", "\n", "b"]);
        assert_eq!(g("a  b"), ["a", " ", " b"]);
        assert_eq!(g("\tx"), ["\t", "x"]);
    }

    #[test]
    fn smollm_isolates_digits_first() {
        let s = |t| words(Pre::Smollm, t);
        assert_eq!(s("x 123"), ["x", " ", "1", "2", "3"]);
        assert_eq!(s("ab12cd"), ["ab", "1", "2", "cd"]);
    }

    #[test]
    fn default_chain() {
        let d = |t| words(Pre::Default, t);
        // Punctuation runs first (with $+<=>^~|), then GPT-2, digit runs, ASCII triples.
        assert_eq!(d("a+=b"), ["a", "+=", "b"]);
        assert_eq!(d("x 12345"), ["x", " ", "123", "45"]);
        assert_eq!(d("٣٤ x"), ["٣٤", " x"]);
        assert_eq!(d("a`b"), ["a", "`", "b"]);
    }

    #[test]
    fn every_name_resolves_and_unknown_does_not() {
        assert_eq!(PreConfig::from_name(None).unwrap().pre, Pre::Default);
        let l3 = PreConfig::from_name(Some("llama-bpe")).unwrap();
        assert!(l3.ignore_merges && l3.add_bos && l3.pre == Pre::Llama3);
        let q = PreConfig::from_name(Some("qwen2")).unwrap();
        assert!(!q.ignore_merges && !q.add_bos && q.pre == Pre::Qwen2);
        assert!(
            PreConfig::from_name(Some("gpt2")).is_none(),
            "llama.cpp spells it gpt-2"
        );
        assert!(PreConfig::from_name(Some("tekken")).is_none());
        assert!(PreConfig::supported().contains("smollm"));
    }
}
