//! Finds where an object's members are in JSON text without building anything. Every value
//! is checked against the JSON grammar as it is skipped (strings, escapes, numbers,
//! literals, nesting), so text this accepts, serde_json accepts too — a differential test
//! below holds the two together on generated and mutated inputs. It replaced a serde
//! visitor that located the members of OpenAI-format answers and chunks at ~8.6 k
//! instructions a streamed chunk (callgrind, `tests/bench/lab/instructions.sh`).

use std::ops::Range;

/// serde_json's nesting limit: deeper text is refused here as it is there.
const MAX_DEPTH: usize = 128;

/// Where one member's name (without its quotes) and value are in the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub key: Range<usize>,
    pub value: Range<usize>,
}

/// A cursor over JSON text. Methods return `None` on the first byte that breaks the
/// grammar; the scanner is then done.
pub struct Scanner<'a> {
    text: &'a [u8],
    pos: usize,
}

impl<'a> Scanner<'a> {
    pub fn new(text: &'a str) -> Self {
        Self::from_bytes(text.as_bytes())
    }

    /// Over bytes: what `new` does with a `str`'s (the scanner checks the grammar, not
    /// UTF-8; callers pass text serde_json has read, or check it themselves).
    pub fn from_bytes(text: &'a [u8]) -> Self {
        Self { text, pos: 0 }
    }

    /// The next byte after whitespace.
    #[inline]
    pub fn peek(&mut self) -> Option<u8> {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.text.get(self.pos) {
            self.pos += 1;
        }
        self.text.get(self.pos).copied()
    }

    /// Only whitespace is left.
    pub fn at_end(&mut self) -> bool {
        self.peek().is_none()
    }

    #[inline]
    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.pos += 1)
    }

    /// Skips one value; its range.
    pub fn value(&mut self, depth: usize) -> Option<Range<usize>> {
        let start = self.pos_of_next()?;
        match self.text[start] {
            b'{' => {
                self.object(depth, |s, _| s.value(depth + 1).map(drop))?;
            }
            b'[' => {
                self.array(depth, |s| s.value(depth + 1).map(drop))?;
            }
            b'"' => {
                self.string()?;
            }
            b't' => self.literal(b"true")?,
            b'f' => self.literal(b"false")?,
            b'n' => self.literal(b"null")?,
            b'-' | b'0'..=b'9' => self.number()?,
            _ => return None,
        }
        Some(start..self.pos)
    }

    /// Reads an object, calling `member(scanner, key)` before each value: it must consume
    /// exactly one value. Keys with escapes are refused (`None`): callers compare names as
    /// bytes. Returns the object's range.
    pub fn object(
        &mut self,
        depth: usize,
        mut member: impl FnMut(&mut Self, Range<usize>) -> Option<()>,
    ) -> Option<Range<usize>> {
        self.sequence(depth, b'{', b'}', |s| {
            if s.peek()? != b'"' {
                return None;
            }
            let key_start = s.pos + 1;
            if s.string()? {
                return None;
            }
            let key = key_start..s.pos - 1;
            s.expect(b':')?;
            member(s, key)
        })
    }

    /// Reads an array, calling `element(scanner)` for each element, which must consume
    /// exactly one value. Returns the array's range.
    pub fn array(
        &mut self,
        depth: usize,
        element: impl FnMut(&mut Self) -> Option<()>,
    ) -> Option<Range<usize>> {
        self.sequence(depth, b'[', b']', element)
    }

    /// `open`, items separated by commas, `close`.
    fn sequence(
        &mut self,
        depth: usize,
        open: u8,
        close: u8,
        mut item: impl FnMut(&mut Self) -> Option<()>,
    ) -> Option<Range<usize>> {
        if depth >= MAX_DEPTH {
            return None;
        }
        let start = self.pos_of_next()?;
        self.expect(open)?;
        if self.peek()? == close {
            self.pos += 1;
            return Some(start..self.pos);
        }
        loop {
            item(self)?;
            match self.peek()? {
                b',' => self.pos += 1,
                b if b == close => {
                    self.pos += 1;
                    return Some(start..self.pos);
                }
                _ => return None,
            }
        }
    }

    fn pos_of_next(&mut self) -> Option<usize> {
        self.peek().map(|_| self.pos)
    }

    /// Skips a string from its opening quote; whether it held escapes. The text is a
    /// `str`, so multi-byte characters are valid; control characters are not.
    // Inlined: most strings are short, and a call costs about as much as skipping one.
    #[inline(always)]
    fn string(&mut self) -> Option<bool> {
        self.pos += 1;
        let mut escaped = false;
        loop {
            self.skip_plain();
            match *self.text.get(self.pos)? {
                b'"' => {
                    self.pos += 1;
                    return Some(escaped);
                }
                b'\\' => {
                    escaped = true;
                    match *self.text.get(self.pos + 1)? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.pos += 2,
                        b'u' => {
                            let hex = self.text.get(self.pos + 2..self.pos + 6)?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return None;
                            }
                            self.pos += 6;
                        }
                        _ => return None,
                    }
                }
                _ => return None,
            }
        }
    }

    /// Advances to the next quote, backslash or control character (or the end). Most
    /// strings (member names, ids, short answers) end within a few words, which are checked
    /// eight bytes at a time, the stop found from the word's flags. Longer text (a prompt's)
    /// goes to `skip_long`.
    #[inline(always)]
    fn skip_plain(&mut self) {
        const ONES: u64 = u64::from_le_bytes([0x01; 8]);
        const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
        /// Past these, memchr's start-up costs less than the words it saves.
        const SHORT_WORDS: usize = 4;
        // The lowest flagged byte is exact (borrows only flag bytes above a true one).
        let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
        for _ in 0..SHORT_WORDS {
            let Some(chunk) = self.text.get(self.pos..self.pos + 8) else {
                break;
            };
            let mut word = [0; 8];
            word.copy_from_slice(chunk);
            let x = u64::from_le_bytes(word);
            let stops = has_zero(x ^ (ONES * u64::from(b'"')))
                | has_zero(x ^ (ONES * u64::from(b'\\')))
                | (x.wrapping_sub(ONES * 0x20) & !x & HIGHS);
            if stops != 0 {
                // Little-endian: the first byte in the text is the lowest.
                self.pos += (stops.trailing_zeros() / 8) as usize;
                return;
            }
            self.pos += 8;
        }
        self.skip_long();
    }

    /// `skip_plain` past its first words: memchr's vector search for the quote or backslash,
    /// then one branch-free pass over the bytes before it for control characters. Eight
    /// bytes a step cost ~3 instructions a byte, about what serde_json spends; this is a
    /// fraction of that on long text.
    #[inline(never)]
    fn skip_long(&mut self) {
        let rest = &self.text[self.pos..];
        let end = memchr::memchr2(b'"', b'\\', rest).unwrap_or(rest.len());
        let plain = &rest[..end];
        let controls = plain.iter().fold(0u8, |any, &b| any | u8::from(b < 0x20));
        self.pos += if controls == 0 {
            end
        } else {
            plain.iter().position(|&b| b < 0x20).unwrap_or(end)
        };
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        self.text[self.pos..]
            .starts_with(word)
            .then(|| self.pos += word.len())
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
    fn number(&mut self) -> Option<()> {
        if self.text[self.pos] == b'-' {
            self.pos += 1;
        }
        match *self.text.get(self.pos)? {
            b'0' => self.pos += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.text.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            self.some_digits()?;
        }
        if let Some(b'e' | b'E') = self.text.get(self.pos) {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.text.get(self.pos) {
                self.pos += 1;
            }
            self.some_digits()?;
        }
        Some(())
    }

    fn digits(&mut self) {
        while self.text.get(self.pos).is_some_and(u8::is_ascii_digit) {
            self.pos += 1;
        }
    }

    fn some_digits(&mut self) -> Option<()> {
        let start = self.pos;
        self.digits();
        (self.pos > start).then_some(())
    }
}

/// The members of an object whose names are unescaped and unique; `None` otherwise.
pub fn members(scanner: &mut Scanner<'_>, depth: usize) -> Option<Vec<Member>> {
    let mut members: Vec<Member> = Vec::with_capacity(8);
    let text = scanner.text;
    scanner.object(depth, |s, key| {
        let name = &text[key.clone()];
        if members.iter().any(|m| &text[m.key.clone()] == name) {
            return None;
        }
        let value = s.value(depth + 1)?;
        members.push(Member { key, value });
        Some(())
    })?;
    Some(members)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::Rng;

    /// The whole text as one value, as `serde_json::from_str` reads it.
    fn scans(text: &str) -> bool {
        let mut s = Scanner::new(text);
        s.value(0).is_some() && s.at_end()
    }

    fn serde_accepts(text: &str) -> bool {
        serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok()
    }

    #[test]
    fn accepts_json_and_refuses_what_is_not() {
        for good in [
            r#"{}"#,
            r#"[]"#,
            r#" {"a" : [1, -0, 0.5, -1.5e+3, 2E-2, true, false, null, "x\"\\\/\b\f\n\r\t\u00e9y"]} "#,
            r#""héllo""#,
            r#"{"a":{"b":[{}]}}"#,
            "0",
            "-12",
        ] {
            assert!(scans(good), "{good}");
            assert!(serde_accepts(good), "{good}");
        }
        for bad in [
            "",
            "{",
            r#"{"a":}"#,
            r#"{"a":1,}"#,
            r#"[1,]"#,
            r#"{"a" 1}"#,
            r#"{a:1}"#,
            "01",
            "-",
            "1.",
            "1e",
            ".5",
            "+1",
            "tru",
            "nul",
            r#""\x""#,
            r#""\u12g4""#,
            "\"tab\there\"",
            r#""open"#,
            "{} {}",
            "[1 2]",
        ] {
            assert!(!scans(bad), "{bad:?}");
            assert!(!serde_accepts(bad), "{bad:?}");
        }
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(!scans(&deep), "nesting deeper than serde_json allows");
    }

    #[test]
    fn locates_members_and_refuses_escaped_or_repeated_names() {
        let text = r#"{ "id" : "x", "n":[1,{"k":2}] ,"e":{}}"#;
        let located = members(&mut Scanner::new(text), 0).unwrap();
        let pairs: Vec<(&str, &str)> = located
            .iter()
            .map(|m| (&text[m.key.clone()], &text[m.value.clone()]))
            .collect();
        assert_eq!(
            pairs,
            [("id", r#""x""#), ("n", r#"[1,{"k":2}]"#), ("e", "{}")]
        );
        assert!(members(&mut Scanner::new(r#"{"a":1,"a":2}"#), 0).is_none());
        assert!(members(&mut Scanner::new(r#"{"\u0061":1}"#), 0).is_none());
        assert!(members(&mut Scanner::new("[1]"), 0).is_none());
    }

    /// Random JSON-ish text: mostly valid, built from the grammar's pieces.
    fn generate(rng: &mut Rng, depth: usize, out: &mut String) {
        // Strings longer than a word too: they end in `skip_long`.
        const ATOMS: [&str; 17] = [
            r#""the quick brown fox jumps over the lazy dog""#,
            r#""a longer string with an \" escape, then more text""#,
            r#""déjà vu, and a \u00e9 past the first word""#,
            "0",
            "-1",
            "12.5e-3",
            "1E+2",
            "true",
            "false",
            "null",
            r#""""#,
            r#""a\"b""#,
            r#""\u00e9\n""#,
            r#""é""#,
            "3.0",
            "-0.0",
            r#""\\""#,
        ];
        match if depth > 4 { 0 } else { rng.below(3) } {
            0 => out.push_str(ATOMS[rng.below(ATOMS.len())]),
            1 => {
                out.push('[');
                for i in 0..rng.below(4) {
                    if i > 0 {
                        out.push(',');
                    }
                    generate(rng, depth + 1, out);
                }
                out.push(']');
            }
            _ => {
                out.push('{');
                for i in 0..rng.below(4) {
                    if i > 0 {
                        out.push_str(" , ");
                    }
                    out.push_str(["\"id\"", "\"choices\"", "\"k\"", "\"x y\""][rng.below(4)]);
                    out.push(':');
                    generate(rng, depth + 1, out);
                }
                out.push('}');
            }
        }
    }

    #[test]
    fn agrees_with_serde_json_on_generated_and_mutated_text() {
        const PIECES: [&str; 12] = [
            "\"", "\\", "{", "}", "[", "]", ",", ":", "-", ".", "e", "\u{1}",
        ];
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let (mut valid, mut invalid) = (0, 0);
        for _ in 0..20_000 {
            let mut text = String::new();
            generate(&mut rng, 0, &mut text);
            // Half the cases: cut, insert or delete at a character boundary.
            if rng.below(2) == 0 {
                let at = (0..=text.len())
                    .filter(|&i| text.is_char_boundary(i))
                    .nth(rng.below(text.chars().count() + 1))
                    .unwrap_or(0);
                match rng.below(3) {
                    0 => text.truncate(at),
                    1 => text.insert_str(at, PIECES[rng.below(PIECES.len())]),
                    _ => {
                        if at < text.len() {
                            text.remove(at);
                        }
                    }
                }
            }
            let expected = serde_accepts(&text);
            assert_eq!(scans(&text), expected, "{text:?}");
            if expected {
                valid += 1;
            } else {
                invalid += 1;
            }
            // Located members are serde's, in order, with the same values.
            let mut scanner = Scanner::new(&text);
            let located = members(&mut scanner, 0).filter(|_| scanner.at_end());
            if let Some(located) = located {
                let tree: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                let object = tree.as_object().map(|o| o.len());
                assert_eq!(object, Some(located.len()), "{text:?}");
                for m in &located {
                    let value: serde_json::Value =
                        serde_json::from_str(&text[m.value.clone()]).unwrap_or_default();
                    assert_eq!(tree[&text[m.key.clone()]], value, "{text:?}");
                }
            }
        }
        assert!(
            valid > 5_000 && invalid > 2_000,
            "{valid} valid, {invalid} invalid"
        );
    }
}
