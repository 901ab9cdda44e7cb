//! Character classes for the byte-level BPE pre-tokenizers, and GPT-2's byte ↔ character map.
//!
//! The classes come from a table generated for Unicode 15.1 (`scripts/gen_unicode_classes.py`),
//! the version llama.cpp's own table is built from: Rust's `char` methods follow whatever
//! Unicode the compiler ships (16.0 today), and a letter assigned in a newer version would
//! split differently from llama.cpp.

mod classes;

/// What the pre-tokenizer regexes ask of a code point: `\p{L}`, `\p{N}`, `\p{M}`, `\p{P}`,
/// `\s` (Unicode's White_Space), anything else assigned, or unassigned (`Cn`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CharClass {
    Other,
    Letter,
    Number,
    Mark,
    Punct,
    Space,
    Unassigned,
}

/// ASCII is nearly all real text sees; a direct table keeps the binary search off that path.
static ASCII: [CharClass; 128] = {
    let mut t = [CharClass::Other; 128];
    let mut i = 0;
    while i < 128 {
        t[i] = search(i as u32);
        i += 1;
    }
    t
};

const fn search(cp: u32) -> CharClass {
    let r = &classes::RANGES;
    // The last range whose start is <= cp; RANGES[0] starts at 0, so one always exists.
    let (mut lo, mut hi) = (0usize, r.len());
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if r[mid].0 <= cp {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    r[lo].1
}

#[inline]
pub(crate) fn class_of(c: char) -> CharClass {
    let cp = c as u32;
    if cp < 128 {
        ASCII[cp as usize]
    } else {
        search(cp)
    }
}

/// GPT-2's `bytes_to_unicode`: printable Latin-1 bytes stand for themselves, the other 68 bytes
/// (controls, space, DEL, NBSP, soft hyphen) are moved to U+0100.. in byte order, so that every
/// byte has a visible one-character spelling in the vocabulary.
pub(crate) const fn byte_to_char(b: u8) -> char {
    let b = b as u32;
    let printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
    if printable {
        return char_from(b);
    }
    // Count the non-printable bytes below b: 0x00..=0x20 (33), then 0x7F..=0xA0 (34), then 0xAD.
    let rank = if b <= 0x20 {
        b
    } else if b <= 0xA0 {
        33 + (b - 0x7F)
    } else {
        67
    };
    char_from(256 + rank)
}

const fn char_from(cp: u32) -> char {
    match char::from_u32(cp) {
        Some(c) => c,
        // Unreachable: every value above is below U+0200.
        None => '\u{FFFD}',
    }
}

/// The inverse of [`byte_to_char`]: `None` for characters that stand for no byte.
#[inline]
pub(crate) fn char_to_byte(c: char) -> Option<u8> {
    let cp = c as u32;
    match cp {
        0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF => Some(cp as u8),
        0x100..=0x120 => Some((cp - 0x100) as u8),
        0x121..=0x142 => Some((cp - 0x121 + 0x7F) as u8),
        0x143 => Some(0xAD),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GPT-2's own construction (encoder.py), written out independently of the arithmetic above.
    fn reference_bytes_to_unicode() -> Vec<char> {
        let mut bs: Vec<u32> = (b'!' as u32..=b'~' as u32)
            .chain(0xA1..=0xAC)
            .chain(0xAE..=0xFF)
            .collect();
        let mut cs = bs.clone();
        let mut n = 0;
        for b in 0..256u32 {
            if !bs.contains(&b) {
                bs.push(b);
                cs.push(256 + n);
                n += 1;
            }
        }
        let mut table = vec!['\0'; 256];
        for (b, c) in bs.into_iter().zip(cs) {
            table[b as usize] = char::from_u32(c).unwrap();
        }
        table
    }

    #[test]
    fn byte_map_is_gpt2s() {
        let want = reference_bytes_to_unicode();
        for b in 0..=255u8 {
            assert_eq!(byte_to_char(b), want[b as usize], "byte {b:#04x}");
            assert_eq!(char_to_byte(want[b as usize]), Some(b));
        }
        assert_eq!(byte_to_char(b' '), 'Ġ');
        assert_eq!(byte_to_char(b'\n'), 'Ċ');
        // Characters that spell no byte.
        for c in [' ', '\n', '\u{AD}', '\u{144}', '日', '\u{7F}'] {
            assert_eq!(char_to_byte(c), None, "{c:?}");
        }
    }

    #[test]
    fn classes_agree_with_std_where_unicode_versions_agree() {
        // std follows a newer Unicode than the table, so characters it knows and the table
        // calls unassigned are skipped; everything assigned in both must agree.
        let mut checked = 0;
        for cp in 0..0x11_0000u32 {
            let Some(c) = char::from_u32(cp) else {
                continue;
            };
            let class = class_of(c);
            if class == CharClass::Unassigned {
                continue;
            }
            checked += 1;
            assert_eq!(class == CharClass::Space, c.is_whitespace(), "{cp:#x}");
            // is_numeric is exactly general category N (Nd, Nl, No).
            assert_eq!(class == CharClass::Number, c.is_numeric(), "{cp:#x}");
            // Alphabetic = L + Nl + Other_Alphabetic (marks, some symbols such as Ⓐ).
            if class == CharClass::Letter {
                assert!(c.is_alphabetic(), "{cp:#x}");
            }
            if c.is_alphabetic() {
                assert!(
                    matches!(
                        class,
                        CharClass::Letter | CharClass::Number | CharClass::Mark | CharClass::Other
                    ),
                    "{cp:#x} {class:?}"
                );
            }
        }
        assert!(checked > 280_000, "{checked}");
    }

    #[test]
    fn spot_checks() {
        use CharClass::*;
        for (c, want) in [
            ('a', Letter),
            ('Z', Letter),
            ('7', Number),
            ('٣', Number),
            ('Ⅻ', Number),
            ('日', Letter),
            ('\u{301}', Mark),
            ('\u{94D}', Mark),
            ('!', Punct),
            ('_', Punct),
            ('$', Other),
            ('`', Other),
            ('€', Other),
            (' ', Space),
            ('\u{3000}', Space),
            ('\u{85}', Space),
            ('\u{1C}', Other),
            ('😀', Other),
            ('\u{200D}', Other),
            ('\u{378}', Unassigned),
            // Added in Unicode 16: unassigned for llama.cpp's 15.1 table, so for us too.
            ('\u{1C89}', Unassigned),
        ] {
            assert_eq!(class_of(c), want, "{c:?}");
        }
    }
}
