//! The JSON files: a streaming syntax checker over bytes (`tags.json` is
//! one object) and MANIFEST (newline-terminated lines, each one object).

use super::Problem;

/// Deepest nesting accepted (as serde_json's default recursion limit).
const MAX_DEPTH: usize = 128;

/// A JSON syntax checker over bytes, one value with whitespace around it.
/// String contents are opaque bytes (SydraDB's tags may hold bytes that are
/// not UTF-8); control bytes in strings and bad escapes are errors.
#[derive(Debug, Default)]
pub struct Json {
    /// Open containers: `{` or `[`.
    stack: Vec<u8>,
    st: St,
    /// The top-level value was an object.
    top_object: bool,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum St {
    /// Expecting a value (`first`: just after `[`, so `]` is allowed).
    #[default]
    Start,
    Value {
        first: bool,
    },
    /// After `{` (`first`) or `,` in an object: a key.
    Key {
        first: bool,
    },
    Colon,
    /// After a value: `,`, a closing bracket, or the end.
    After,
    Str {
        key: bool,
        esc: u8,
    },
    Num(Num),
    Lit(&'static [u8], u8),
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Num {
    Minus,
    Zero,
    Int,
    Dot,
    Frac,
    E,
    ESign,
    Exp,
}

/// A JSON syntax error (where is not needed by the callers).
#[derive(Debug)]
pub struct JsonError;

fn ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

impl Json {
    /// Feeds bytes.
    pub fn feed(&mut self, data: &[u8]) -> Result<(), JsonError> {
        for &b in data {
            self.byte(b)?;
        }
        Ok(())
    }

    /// True when the input so far is exactly one JSON object (and
    /// whitespace).
    pub fn is_object(&self) -> bool {
        // (A number at the top level would end only at the end of input;
        // an object is what is asked for.)
        self.st == St::Done && self.top_object
    }

    fn value_done(&mut self) -> St {
        if self.stack.is_empty() {
            St::Done
        } else {
            St::After
        }
    }

    fn open(&mut self, c: u8) -> Result<St, JsonError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(JsonError);
        }
        if self.stack.is_empty() && self.st == St::Start {
            self.top_object = c == b'{';
        }
        self.stack.push(c);
        Ok(if c == b'{' {
            St::Key { first: true }
        } else {
            St::Value { first: true }
        })
    }

    fn close(&mut self, c: u8) -> Result<St, JsonError> {
        let want = if c == b'}' { b'{' } else { b'[' };
        if self.stack.pop() != Some(want) {
            return Err(JsonError);
        }
        Ok(self.value_done())
    }

    fn byte(&mut self, b: u8) -> Result<(), JsonError> {
        self.st = match self.st {
            St::Start | St::Value { .. } if ws(b) => self.st,
            St::Value { first: true } if b == b']' => self.close(b)?,
            St::Start | St::Value { .. } => match b {
                b'{' | b'[' => self.open(b)?,
                b'"' => St::Str { key: false, esc: 0 },
                b'-' => St::Num(Num::Minus),
                b'0' => St::Num(Num::Zero),
                b'1'..=b'9' => St::Num(Num::Int),
                b't' => St::Lit(b"rue", 0),
                b'f' => St::Lit(b"alse", 0),
                b'n' => St::Lit(b"ull", 0),
                _ => return Err(JsonError),
            },
            St::Key { .. } if ws(b) => self.st,
            St::Key { first: true } if b == b'}' => self.close(b)?,
            St::Key { .. } if b == b'"' => St::Str { key: true, esc: 0 },
            St::Key { .. } => return Err(JsonError),
            St::Colon if ws(b) => St::Colon,
            St::Colon if b == b':' => St::Value { first: false },
            St::Colon => return Err(JsonError),
            St::After if ws(b) => St::After,
            St::After => match (b, self.stack.last()) {
                (b',', Some(b'{')) => St::Key { first: false },
                (b',', Some(b'[')) => St::Value { first: false },
                (b'}' | b']', _) => self.close(b)?,
                _ => return Err(JsonError),
            },
            St::Str { key, esc: 0 } => match b {
                b'"' if key => St::Colon,
                b'"' => self.value_done(),
                b'\\' => St::Str { key, esc: 1 },
                0..=0x1f => return Err(JsonError),
                _ => self.st,
            },
            St::Str { key, esc: 1 } => match b {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => St::Str { key, esc: 0 },
                b'u' => St::Str { key, esc: 2 },
                _ => return Err(JsonError),
            },
            St::Str { key, esc } => {
                if !b.is_ascii_hexdigit() {
                    return Err(JsonError);
                }
                St::Str {
                    key,
                    esc: if esc == 5 { 0 } else { esc + 1 },
                }
            }
            St::Lit(rest, i) => {
                if rest[i as usize] != b {
                    return Err(JsonError);
                }
                if i as usize + 1 == rest.len() {
                    self.value_done()
                } else {
                    St::Lit(rest, i + 1)
                }
            }
            St::Num(n) => {
                let next = match (n, b) {
                    (Num::Minus, b'0') => Some(Num::Zero),
                    (Num::Minus, b'1'..=b'9') => Some(Num::Int),
                    (Num::Int, b'0'..=b'9') => Some(Num::Int),
                    (Num::Zero | Num::Int, b'.') => Some(Num::Dot),
                    (Num::Zero | Num::Int | Num::Frac, b'e' | b'E') => Some(Num::E),
                    (Num::Dot | Num::Frac, b'0'..=b'9') => Some(Num::Frac),
                    (Num::E, b'+' | b'-') => Some(Num::ESign),
                    (Num::E | Num::ESign | Num::Exp, b'0'..=b'9') => Some(Num::Exp),
                    _ => None,
                };
                match next {
                    Some(n) => St::Num(n),
                    None if matches!(n, Num::Zero | Num::Int | Num::Frac | Num::Exp) => {
                        // The number ended; this byte belongs to what follows.
                        self.st = self.value_done();
                        return self.byte(b);
                    }
                    None => return Err(JsonError),
                }
            }
            St::Done if ws(b) => St::Done,
            St::Done => return Err(JsonError),
        };
        Ok(())
    }
}

/// MANIFEST: newline-terminated lines, each one JSON object.
#[derive(Debug, Default)]
pub struct ManifestStream {
    line_start: u64,
    pos: u64,
    json: Json,
    /// The current line is already known not to be a JSON object.
    bad: bool,
    /// Bytes in the current line.
    len: u64,
}

impl ManifestStream {
    pub(super) fn feed(&mut self, data: &[u8]) -> Option<Problem> {
        for &b in data {
            self.pos += 1;
            if b == b'\n' {
                if self.bad || !self.json.is_object() {
                    return Some(self.not_object());
                }
                self.line_start = self.pos;
                self.json = Json::default();
                self.len = 0;
                continue;
            }
            self.len += 1;
            if !self.bad && self.json.byte(b).is_err() {
                self.bad = true;
            }
        }
        None
    }

    fn not_object(&self) -> Problem {
        (self.line_start, "MANIFEST line is not a JSON object".into())
    }

    pub(super) fn finish(self) -> Option<Problem> {
        (self.len > 0).then(|| {
            (
                self.line_start,
                "MANIFEST line not newline-terminated".into(),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_agrees_with_serde_json() {
        let cases: &[&str] = &[
            "{}",
            " {} ",
            "{\"a=b\":[1,2,3]}",
            "{\"a\":{\"b\":[true,false,null,-0.5e+3,0,12.25E-2,\"x\\\"\\u00e9\"]}}",
            "{\"a\":[]}",
            "{\"a\":[{}]}",
            "[]",
            "1",
            "\"s\"",
            "{",
            "{\"a\"}",
            "{\"a\":}",
            "{\"a\":1,}",
            "{\"a\":[1,]}",
            "{\"a\":01}",
            "{\"a\":1.}",
            "{\"a\":-}",
            "{\"a\":1e}",
            "{\"a\":tru}",
            "{\"a\":\"\\x\"}",
            "{\"a\":\"\\u12g4\"}",
            "{\"a\":\"x\ty\"}",
            "{} {}",
            "{}x",
            "{\"a\":1}}",
            "{\"a\":[1}",
            "{1:2}",
            "",
            "   ",
        ];
        for c in cases {
            let serde = serde_json::from_str::<serde_json::Value>(c).is_ok_and(|v| v.is_object());
            let mut j = Json::default();
            let ours = j.feed(c.as_bytes()).is_ok() && j.is_object();
            assert_eq!(ours, serde, "{c:?}");
        }
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert!(Json::default().feed(deep.as_bytes()).is_err());
    }
}
