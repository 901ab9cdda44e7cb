//! The one place a task's prompt is rendered and fitted into a token budget.
//!
//! Training, evaluation, the few-shot baseline and serving all build prompts here, so the model
//! is asked at inference exactly what it was taught with: same template, same spacing, same
//! truncation rule. Chat conversations (`{"messages"}` records) are rendered by
//! [`crate::chat`] and then fitted by the same rules here. [`crate::Task`] calls these with its
//! own template.

use crate::encoder::TextEncoder;

/// Fewest prompt tokens worth keeping when truncating; below this an example is skipped
/// because a prompt cut that short no longer says what to extract from.
pub const MIN_PROMPT_TOKENS: usize = 8;

/// The template with `{input}` filled in. The answer follows the result's last character
/// directly (no separator is added), as in training.
pub fn render(template: &str, input: &str) -> String {
    template.replace("{input}", input)
}

/// A few-shot prompt: each solved example rendered with its answer, a blank line after each,
/// then the query rendered like a training prompt.
///
/// The shots use the very template the query uses, so a fine-tuned model and a prompted base
/// model are asked in the same words and only the examples differ.
pub fn render_few_shot(template: &str, shots: &[(&str, &str)], input: &str) -> String {
    let mut s = String::new();
    for (shot_input, shot_answer) in shots {
        s += &render(template, shot_input);
        s += shot_answer;
        s += "\n\n";
    }
    s += &render(template, input);
    s
}

/// Cuts tokens out of the middle of `prompt` so that it holds `budget` tokens: a quarter from
/// the start (BOS and the instruction) and the rest from the end (the text nearest the answer
/// and the template's cue). Returns false (and leaves `prompt` alone) when it already fits.
pub fn cut_middle(prompt: &mut Vec<u32>, budget: usize) -> bool {
    if prompt.len() <= budget {
        return false;
    }
    let head = (budget / 4).max(1).min(budget);
    let tail = budget - head;
    let cut_end = prompt.len() - tail;
    prompt.drain(head..cut_end);
    true
}

/// Tokenizes a rendered prompt (BOS first) and fits it into `budget` tokens with training's
/// rule ([`cut_middle`]). The bool says whether it was cut.
pub fn encode_prompt(enc: &dyn TextEncoder, prompt: &str, budget: usize) -> (Vec<u32>, bool) {
    let mut ids = enc.encode(prompt, true);
    let cut = cut_middle(&mut ids, budget.max(MIN_PROMPT_TOKENS));
    (ids, cut)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoder::ByteEncoder;

    #[test]
    fn render_fills_every_placeholder_and_adds_nothing() {
        assert_eq!(render("Q: {input}\nA:", "x"), "Q: x\nA:");
        assert_eq!(render("{input}|{input}", "ab"), "ab|ab");
    }

    #[test]
    fn few_shot_puts_solved_examples_first_in_the_same_template() {
        let p = render_few_shot("In: {input}\nOut:", &[("a", "{\"k\":1}"), ("b", "2")], "c");
        assert_eq!(p, "In: a\nOut:{\"k\":1}\n\nIn: b\nOut:2\n\nIn: c\nOut:");
        assert_eq!(
            render_few_shot("In: {input}\nOut:", &[], "c"),
            "In: c\nOut:"
        );
    }

    #[test]
    fn cut_middle_keeps_a_quarter_of_the_head_and_the_tail() {
        let mut v: Vec<u32> = (0..100).collect();
        assert!(cut_middle(&mut v, 20));
        assert_eq!(v.len(), 20);
        assert_eq!(&v[..5], &[0, 1, 2, 3, 4]);
        assert_eq!(&v[5..], &(85..100).collect::<Vec<u32>>()[..]);
        let mut short: Vec<u32> = (0..10).collect();
        assert!(!cut_middle(&mut short, 10));
        assert_eq!(short.len(), 10);
    }

    #[test]
    fn encode_prompt_starts_with_bos_and_respects_the_budget() {
        let enc = ByteEncoder;
        let text = "x".repeat(300);
        let (ids, cut) = encode_prompt(&enc, &text, 64);
        assert!(cut);
        assert_eq!(ids.len(), 64);
        assert_eq!(ids[0], enc.encode("", true)[0]);
        let (ids, cut) = encode_prompt(&enc, "short", 64);
        assert!(!cut);
        assert_eq!(ids, enc.encode("short", true));
    }
}
