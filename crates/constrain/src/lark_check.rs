//! Which Lark rules can never finish.
//!
//! llguidance compiles a grammar such as `start: a` / `a: "x" a` without complaint and its
//! first mask even allows `x`: the dead end shows only when the token budget runs out. The
//! classic productivity fixpoint (a rule is productive if one alternative has only productive
//! items) finds such rules up front. The analysis is conservative: on syntax it does not
//! model (llguidance extensions such as `%json`, `&`, lexeme attributes) it gives up and
//! reports nothing, leaving the verdict to llguidance.

use std::collections::{HashMap, HashSet};

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Name(String),
    Lit,
    Punct(char),
}

/// One alternative is a sequence of items; an item is productive given the set `p`.
#[derive(Debug, Clone)]
enum Expr {
    /// Always productive: literals, regexes, `x?`, `x*`, `[x]`, empty.
    Always,
    Name(String),
    Seq(Vec<Expr>),
    Alt(Vec<Expr>),
}

impl Expr {
    fn productive(&self, p: &HashSet<String>, defined: &HashMap<String, Expr>) -> bool {
        match self {
            Expr::Always => true,
            // Names we have no definition for (imports, builtins) are llguidance's business.
            Expr::Name(n) => p.contains(n) || !defined.contains_key(n),
            Expr::Seq(v) => v.iter().all(|e| e.productive(p, defined)),
            Expr::Alt(v) => v.iter().any(|e| e.productive(p, defined)),
        }
    }
}

fn lex(s: &str) -> Option<Vec<Tok>> {
    let b: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '"' || c == '/' {
            i += 1;
            while i < b.len() && b[i] != c {
                if b[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            if i >= b.len() {
                return None;
            }
            i += 1;
            // Flags such as `i`, `s`.
            while i < b.len() && b[i].is_ascii_alphabetic() {
                i += 1;
            }
            out.push(Tok::Lit);
        } else if c.is_alphanumeric() || c == '_' {
            let st = i;
            while i < b.len() && (b[i].is_alphanumeric() || b[i] == '_' || b[i] == '.') {
                i += 1;
            }
            let w: String = b[st..i].iter().collect();
            if w.chars().all(|c| c.is_ascii_digit()) {
                out.push(Tok::Lit);
            } else {
                out.push(Tok::Name(w));
            }
        } else if "()[]|?*+".contains(c) {
            out.push(Tok::Punct(c));
            i += 1;
        } else if c == '<' {
            // A special token such as `<end_of_turn>` or `<[106]>`.
            while i < b.len() && b[i] != '>' {
                i += 1;
            }
            if i >= b.len() {
                return None;
            }
            i += 1;
            out.push(Tok::Lit);
        } else {
            return None;
        }
    }
    Some(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn alts(&mut self) -> Option<Expr> {
        let mut alts = vec![self.seq()?];
        while self.peek() == Some(&Tok::Punct('|')) {
            self.pos += 1;
            alts.push(self.seq()?);
        }
        Some(Expr::Alt(alts))
    }

    fn seq(&mut self) -> Option<Expr> {
        let mut items = Vec::new();
        loop {
            let atom = match self.peek() {
                None | Some(Tok::Punct('|' | ')' | ']')) => break,
                Some(Tok::Lit) => {
                    self.pos += 1;
                    Expr::Always
                }
                Some(Tok::Name(n)) => {
                    let n = n.clone();
                    self.pos += 1;
                    Expr::Name(n)
                }
                Some(Tok::Punct('(')) => {
                    self.pos += 1;
                    let e = self.alts()?;
                    (self.peek() == Some(&Tok::Punct(')'))).then_some(())?;
                    self.pos += 1;
                    e
                }
                Some(Tok::Punct('[')) => {
                    self.pos += 1;
                    self.alts()?;
                    (self.peek() == Some(&Tok::Punct(']'))).then_some(())?;
                    self.pos += 1;
                    Expr::Always
                }
                Some(Tok::Punct(_)) => return None,
            };
            let item = match self.peek() {
                Some(Tok::Punct('?' | '*')) => {
                    self.pos += 1;
                    Expr::Always
                }
                Some(Tok::Punct('+')) => {
                    self.pos += 1;
                    atom
                }
                _ => atom,
            };
            items.push(item);
        }
        Some(Expr::Seq(items))
    }
}

/// Rule names (reachable or not) that can never derive a finite string, in definition order;
/// `None` when the grammar uses syntax this check does not model.
pub(crate) fn unproductive_rules(grammar: &str) -> Option<Vec<String>> {
    // Logical lines: a line starting with `|` continues the previous definition.
    let mut defs: Vec<String> = Vec::new();
    for line in grammar.lines() {
        let line = match line.find("//") {
            // `//` inside a string or regex: too clever for this check.
            Some(i) if line[..i].contains(['"', '/']) => return None,
            Some(i) => &line[..i],
            None => line,
        };
        let t = line.trim();
        if t.is_empty() {
            continue;
        }
        if t.starts_with('%') {
            // `%ignore`, `%import`, `%llguidance {..}`: no rules; `%json` inside a rule is not.
            if t.starts_with("%ignore") || t.starts_with("%import") {
                continue;
            }
            return None;
        }
        if t.starts_with('|') {
            defs.last_mut()?.push_str(&format!(" {t}"));
        } else {
            defs.push(t.to_string());
        }
    }
    let mut order = Vec::new();
    let mut rules: HashMap<String, Expr> = HashMap::new();
    for d in &defs {
        let colon = d.find(':')?;
        let head = d[..colon].trim().trim_start_matches(['?', '!']);
        // `name.2` priorities; attributes in brackets are not modelled.
        let name = head.split('.').next()?.trim();
        if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || c == '_') {
            return None;
        }
        let mut p = Parser {
            toks: lex(&d[colon + 1..])?,
            pos: 0,
        };
        let e = p.alts()?;
        if p.pos != p.toks.len() || rules.contains_key(name) {
            return None;
        }
        order.push(name.to_string());
        rules.insert(name.to_string(), e);
    }
    let mut productive: HashSet<String> = HashSet::new();
    loop {
        let before = productive.len();
        for n in &order {
            if !productive.contains(n) && rules[n].productive(&productive, &rules) {
                productive.insert(n.clone());
            }
        }
        if productive.len() == before {
            break;
        }
    }
    Some(
        order
            .into_iter()
            .filter(|n| !productive.contains(n))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::unproductive_rules;

    #[test]
    fn finds_rules_that_never_finish() {
        assert_eq!(
            unproductive_rules("start: a\na: \"x\" a\n"),
            Some(vec!["start".to_string(), "a".to_string()])
        );
        assert_eq!(
            unproductive_rules("start: b | c\nb: \"y\" b\nc: \"z\" c\n    | c \"w\"\n"),
            Some(vec!["start".into(), "b".into(), "c".into()])
        );
    }

    #[test]
    fn productive_grammars_pass() {
        for g in [
            "start: a\na: \"x\" a | \"x\"\n",
            "start: item+\nitem: /[a-z]+/ \",\"?\n",
            "start: list\nlist: \"[\" [value (\",\" value)*] \"]\"\nvalue: NUMBER | list\nNUMBER: /[0-9]+/\n",
            "// a comment\n?start: \"a\" (\"b\" | start)\n",
            "start: \"yes\" <end_of_turn>\n",
            "start: \"\"\n",
        ] {
            assert_eq!(unproductive_rules(g), Some(vec![]), "{g}");
        }
    }

    #[test]
    fn unknown_syntax_gives_up() {
        assert_eq!(
            unproductive_rules("start: %json {\"type\": \"object\"}\n"),
            None
        );
        assert_eq!(unproductive_rules("start: A & B\n"), None);
    }
}
