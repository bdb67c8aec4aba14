//! The D-Bus wire format, as much of it as talking to systemd needs: method calls with string
//! and object-path arguments out; replies, errors and signals in, with bodies of any type.
//!
//! What comes in is untrusted (a bus is another process): every length is checked against the
//! bytes there are, nesting is bounded, and a message is bounded as a whole.

use thiserror::Error;

/// systemd's replies are small; a message larger than this is refused.
pub const MAX_MESSAGE: usize = 1 << 20;
/// The spec allows 32 levels of arrays and 32 of structs; more is refused.
const MAX_DEPTH: usize = 64;

pub const METHOD_CALL: u8 = 1;
pub const METHOD_RETURN: u8 = 2;
pub const ERROR: u8 = 3;
pub const SIGNAL: u8 = 4;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum WireError {
    #[error("D-Bus message truncated (needed {need} bytes at offset {at})")]
    Short { at: usize, need: usize },
    #[error("D-Bus message of {0} bytes is larger than allowed")]
    TooLarge(usize),
    #[error("D-Bus message is malformed: {0}")]
    Malformed(&'static str),
    #[error("D-Bus signature {0:?} is invalid or unsupported")]
    Signature(String),
}

/// A value of any D-Bus type skiff reads.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Byte(u8),
    Bool(bool),
    I16(i16),
    U16(u16),
    I32(i32),
    U32(u32),
    I64(i64),
    U64(u64),
    F64(f64),
    Str(String),
    Path(String),
    Sig(String),
    Fd(u32),
    /// Elements, and the element signature (needed to write an empty array).
    Array(String, Vec<Value>),
    Struct(Vec<Value>),
    Dict(Box<Value>, Box<Value>),
    Variant(Box<Value>),
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) | Value::Path(s) | Value::Sig(s) => Some(s),
            Value::Variant(v) => v.as_str(),
            _ => None,
        }
    }

    pub fn as_u32(&self) -> Option<u32> {
        match self {
            Value::U32(n) => Some(*n),
            Value::Variant(v) => v.as_u32(),
            _ => None,
        }
    }

    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::U64(n) => Some(*n),
            Value::U32(n) => Some(u64::from(*n)),
            Value::Variant(v) => v.as_u64(),
            _ => None,
        }
    }

    /// The signature of this value.
    pub fn signature(&self) -> String {
        match self {
            Value::Byte(_) => "y".into(),
            Value::Bool(_) => "b".into(),
            Value::I16(_) => "n".into(),
            Value::U16(_) => "q".into(),
            Value::I32(_) => "i".into(),
            Value::U32(_) => "u".into(),
            Value::I64(_) => "x".into(),
            Value::U64(_) => "t".into(),
            Value::F64(_) => "d".into(),
            Value::Str(_) => "s".into(),
            Value::Path(_) => "o".into(),
            Value::Sig(_) => "g".into(),
            Value::Fd(_) => "h".into(),
            Value::Array(e, _) => format!("a{e}"),
            Value::Struct(f) => format!("({})", f.iter().map(Value::signature).collect::<String>()),
            Value::Dict(k, v) => format!("{{{}{}}}", k.signature(), v.signature()),
            Value::Variant(_) => "v".into(),
        }
    }
}

/// A message: its header fields and body.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub kind: u8,
    pub serial: u32,
    pub path: Option<String>,
    pub interface: Option<String>,
    pub member: Option<String>,
    pub error_name: Option<String>,
    pub reply_serial: Option<u32>,
    pub destination: Option<String>,
    pub sender: Option<String>,
    pub body: Vec<Value>,
}

impl Message {
    /// A method call to `destination` (None on a direct connection to systemd).
    pub fn call(
        destination: Option<&str>,
        path: &str,
        interface: &str,
        member: &str,
        body: Vec<Value>,
    ) -> Message {
        Message {
            kind: METHOD_CALL,
            serial: 0,
            path: Some(path.into()),
            interface: Some(interface.into()),
            member: Some(member.into()),
            error_name: None,
            reply_serial: None,
            destination: destination.map(str::to_string),
            sender: None,
            body,
        }
    }

    /// The message as bytes (little-endian), with `serial`.
    pub fn encode(&self, serial: u32) -> Vec<u8> {
        let mut body = Writer::default();
        for v in &self.body {
            body.value(v);
        }
        let sig: String = self.body.iter().map(Value::signature).collect();
        let mut fields = Vec::new();
        let mut field = |code: u8, v: Value| {
            fields.push(Value::Struct(vec![
                Value::Byte(code),
                Value::Variant(Box::new(v)),
            ]))
        };
        let s = |o: &Option<String>| o.clone();
        if let Some(p) = s(&self.path) {
            field(1, Value::Path(p));
        }
        if let Some(i) = s(&self.interface) {
            field(2, Value::Str(i));
        }
        if let Some(m) = s(&self.member) {
            field(3, Value::Str(m));
        }
        if let Some(d) = s(&self.destination) {
            field(6, Value::Str(d));
        }
        if !sig.is_empty() {
            field(8, Value::Sig(sig));
        }
        let mut w = Writer::default();
        w.buf.extend_from_slice(&[b'l', self.kind, 0, 1]);
        w.u32(body.buf.len() as u32);
        w.u32(serial);
        w.value(&Value::Array("(yv)".into(), fields));
        w.pad(8);
        w.buf.extend_from_slice(&body.buf);
        w.buf
    }

    /// How many bytes the message starting `head` (at least 16 bytes) takes in all.
    pub fn total_len(head: &[u8]) -> Result<usize, WireError> {
        let r = Reader::new(head)?;
        let body = r.u32_at(4)? as usize;
        let fields = r.u32_at(12)? as usize;
        let total = 16usize
            .checked_add(fields)
            .map(|n| n.next_multiple_of(8))
            .and_then(|n| n.checked_add(body))
            .ok_or(WireError::TooLarge(usize::MAX))?;
        if total > MAX_MESSAGE {
            return Err(WireError::TooLarge(total));
        }
        Ok(total)
    }

    /// Parses one whole message (untrusted bytes).
    pub fn parse(bytes: &[u8]) -> Result<Message, WireError> {
        if bytes.len() > MAX_MESSAGE {
            return Err(WireError::TooLarge(bytes.len()));
        }
        let total = Message::total_len(bytes)?;
        if total != bytes.len() {
            return Err(WireError::Malformed("length does not match the header"));
        }
        let mut r = Reader::new(bytes)?;
        let kind = bytes[1];
        if !(METHOD_CALL..=SIGNAL).contains(&kind) || bytes[3] != 1 {
            return Err(WireError::Malformed("unknown message type or version"));
        }
        r.pos = 8;
        let serial = r.u32()?;
        let mut m = Message {
            kind,
            serial,
            path: None,
            interface: None,
            member: None,
            error_name: None,
            reply_serial: None,
            destination: None,
            sender: None,
            body: Vec::new(),
        };
        let mut sig = String::new();
        let Value::Array(_, fields) = r.value(&mut Sig::new("a(yv)")?, 0)? else {
            return Err(WireError::Malformed("header fields"));
        };
        for f in fields {
            let Value::Struct(mut f) = f else {
                return Err(WireError::Malformed("header field"));
            };
            let (Some(v), Some(Value::Byte(code))) = (f.pop(), f.pop()) else {
                return Err(WireError::Malformed("header field"));
            };
            let Value::Variant(v) = v else {
                return Err(WireError::Malformed("header field"));
            };
            let text = v.as_str().map(str::to_string);
            match code {
                1 => m.path = text,
                2 => m.interface = text,
                3 => m.member = text,
                4 => m.error_name = text,
                5 => m.reply_serial = v.as_u32(),
                6 => m.destination = text,
                7 => m.sender = text,
                8 => sig = text.unwrap_or_default(),
                _ => {}
            }
        }
        r.align(8)?;
        let mut s = Sig::new(&sig)?;
        while !s.done() {
            m.body.push(r.value(&mut s, 0)?);
        }
        if r.pos != bytes.len() {
            return Err(WireError::Malformed("bytes after the body"));
        }
        Ok(m)
    }
}

/// A signature being read, one complete type at a time.
struct Sig<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> Sig<'a> {
    fn new(s: &'a str) -> Result<Sig<'a>, WireError> {
        if s.len() > 255 {
            return Err(WireError::Signature(s.into()));
        }
        Ok(Sig {
            s: s.as_bytes(),
            pos: 0,
        })
    }

    fn done(&self) -> bool {
        self.pos >= self.s.len()
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn bad(&self) -> WireError {
        WireError::Signature(String::from_utf8_lossy(self.s).into_owned())
    }

    /// The extent of the next complete type, from `pos`, without consuming it.
    fn next_type_end(&self, from: usize, depth: usize) -> Result<usize, WireError> {
        if depth > MAX_DEPTH {
            return Err(self.bad());
        }
        match self.s.get(from).copied().ok_or_else(|| self.bad())? {
            b'y' | b'b' | b'n' | b'q' | b'i' | b'u' | b'x' | b't' | b'd' | b's' | b'o' | b'g'
            | b'h' | b'v' => Ok(from + 1),
            b'a' => self.next_type_end(from + 1, depth + 1),
            b'(' => {
                let mut p = from + 1;
                while self.s.get(p) != Some(&b')') {
                    p = self.next_type_end(p, depth + 1)?;
                }
                if p == from + 1 {
                    return Err(self.bad());
                }
                Ok(p + 1)
            }
            b'{' => {
                let k = self.next_type_end(from + 1, depth + 1)?;
                let v = self.next_type_end(k, depth + 1)?;
                if self.s.get(v) != Some(&b'}') {
                    return Err(self.bad());
                }
                Ok(v + 1)
            }
            _ => Err(self.bad()),
        }
    }
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
    big: bool,
}

impl<'a> Reader<'a> {
    fn new(b: &'a [u8]) -> Result<Reader<'a>, WireError> {
        if b.len() < 16 {
            return Err(WireError::Short { at: 0, need: 16 });
        }
        let big = match b[0] {
            b'l' => false,
            b'B' => true,
            _ => return Err(WireError::Malformed("endianness byte")),
        };
        Ok(Reader { b, pos: 0, big })
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.b.len())
            .ok_or(WireError::Short {
                at: self.pos,
                need: n,
            })?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn align(&mut self, a: usize) -> Result<(), WireError> {
        let to = self.pos.next_multiple_of(a);
        let pad = self.take(to - self.pos)?;
        if pad.iter().any(|b| *b != 0) {
            return Err(WireError::Malformed("non-zero padding"));
        }
        Ok(())
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        self.align(N)?;
        let mut a: [u8; N] = self.take(N)?.try_into().expect("took N bytes");
        if self.big {
            a.reverse();
        }
        Ok(a)
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(self.fixed()?))
    }

    fn u32_at(&self, at: usize) -> Result<u32, WireError> {
        let mut r = Reader {
            b: self.b,
            pos: at,
            big: self.big,
        };
        r.u32()
    }

    fn string(&mut self, len: usize) -> Result<String, WireError> {
        let s = self.take(len)?;
        if self.take(1)? != [0] {
            return Err(WireError::Malformed("string not NUL-terminated"));
        }
        let s = std::str::from_utf8(s).map_err(|_| WireError::Malformed("string not UTF-8"))?;
        if s.contains('\0') {
            return Err(WireError::Malformed("NUL inside a string"));
        }
        Ok(s.to_string())
    }

    /// Reads the next complete type of `sig` and the value it describes.
    fn value(&mut self, sig: &mut Sig, depth: usize) -> Result<Value, WireError> {
        if depth > MAX_DEPTH {
            return Err(WireError::Malformed("nested too deeply"));
        }
        let c = sig.peek().ok_or_else(|| sig.bad())?;
        sig.pos += 1;
        Ok(match c {
            b'y' => Value::Byte(self.take(1)?[0]),
            b'b' => match self.u32()? {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                _ => return Err(WireError::Malformed("boolean is not 0 or 1")),
            },
            b'n' => Value::I16(i16::from_le_bytes(self.fixed()?)),
            b'q' => Value::U16(u16::from_le_bytes(self.fixed()?)),
            b'i' => Value::I32(i32::from_le_bytes(self.fixed()?)),
            b'u' => Value::U32(self.u32()?),
            b'h' => Value::Fd(self.u32()?),
            b'x' => Value::I64(i64::from_le_bytes(self.fixed()?)),
            b't' => Value::U64(u64::from_le_bytes(self.fixed()?)),
            b'd' => Value::F64(f64::from_le_bytes(self.fixed()?)),
            b's' | b'o' => {
                let len = self.u32()? as usize;
                let s = self.string(len)?;
                if c == b's' {
                    Value::Str(s)
                } else {
                    Value::Path(s)
                }
            }
            b'g' => {
                let len = usize::from(self.take(1)?[0]);
                Value::Sig(self.string(len)?)
            }
            b'v' => {
                let len = usize::from(self.take(1)?[0]);
                let inner = self.string(len)?;
                let mut s = Sig::new(&inner)?;
                let v = self.value(&mut s, depth + 1)?;
                if !s.done() {
                    return Err(WireError::Signature(inner));
                }
                Value::Variant(Box::new(v))
            }
            b'a' => {
                let len = self.u32()? as usize;
                if len > 1 << 26 {
                    return Err(WireError::Malformed("array longer than 64 MiB"));
                }
                let start = sig.pos;
                let end = sig.next_type_end(start, depth)?;
                let elem = String::from_utf8_lossy(&sig.s[start..end]).into_owned();
                self.align(element_alignment(sig.s[start]))?;
                let stop = self.pos.checked_add(len).filter(|e| *e <= self.b.len());
                let stop = stop.ok_or(WireError::Short {
                    at: self.pos,
                    need: len,
                })?;
                let mut items = Vec::new();
                while self.pos < stop {
                    let mut s = Sig {
                        s: sig.s,
                        pos: start,
                    };
                    items.push(self.value(&mut s, depth + 1)?);
                }
                if self.pos != stop {
                    return Err(WireError::Malformed("array element overruns its length"));
                }
                sig.pos = end;
                Value::Array(elem, items)
            }
            b'(' => {
                self.align(8)?;
                let mut fields = Vec::new();
                while sig.peek() != Some(b')') {
                    fields.push(self.value(sig, depth + 1)?);
                }
                sig.pos += 1;
                if fields.is_empty() {
                    return Err(sig.bad());
                }
                Value::Struct(fields)
            }
            b'{' => {
                self.align(8)?;
                let k = self.value(sig, depth + 1)?;
                let v = self.value(sig, depth + 1)?;
                if sig.peek() != Some(b'}') {
                    return Err(sig.bad());
                }
                sig.pos += 1;
                Value::Dict(Box::new(k), Box::new(v))
            }
            _ => return Err(sig.bad()),
        })
    }
}

fn element_alignment(c: u8) -> usize {
    match c {
        b'y' | b'g' | b'v' => 1,
        b'n' | b'q' => 2,
        b'x' | b't' | b'd' | b'(' | b'{' => 8,
        _ => 4,
    }
}

#[derive(Default)]
struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    fn pad(&mut self, a: usize) {
        let to = self.buf.len().next_multiple_of(a);
        self.buf.resize(to, 0);
    }

    fn u32(&mut self, n: u32) {
        self.pad(4);
        self.buf.extend_from_slice(&n.to_le_bytes());
    }

    fn string(&mut self, s: &str) {
        self.u32(s.len() as u32);
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
    }

    fn sig(&mut self, s: &str) {
        self.buf.push(s.len() as u8);
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
    }

    fn value(&mut self, v: &Value) {
        match v {
            Value::Byte(b) => self.buf.push(*b),
            Value::Bool(b) => self.u32(u32::from(*b)),
            Value::I16(n) => {
                self.pad(2);
                self.buf.extend_from_slice(&n.to_le_bytes())
            }
            Value::U16(n) => {
                self.pad(2);
                self.buf.extend_from_slice(&n.to_le_bytes())
            }
            Value::I32(n) => self.u32(*n as u32),
            Value::U32(n) | Value::Fd(n) => self.u32(*n),
            Value::I64(n) => {
                self.pad(8);
                self.buf.extend_from_slice(&n.to_le_bytes())
            }
            Value::U64(n) => {
                self.pad(8);
                self.buf.extend_from_slice(&n.to_le_bytes())
            }
            Value::F64(n) => {
                self.pad(8);
                self.buf.extend_from_slice(&n.to_le_bytes())
            }
            Value::Str(s) | Value::Path(s) => self.string(s),
            Value::Sig(s) => self.sig(s),
            Value::Variant(inner) => {
                self.sig(&inner.signature());
                self.value(inner);
            }
            Value::Array(elem, items) => {
                self.u32(0);
                let len_at = self.buf.len() - 4;
                self.pad(elem.bytes().next().map_or(1, element_alignment));
                let start = self.buf.len();
                for i in items {
                    self.value(i);
                }
                let len = (self.buf.len() - start) as u32;
                self.buf[len_at..len_at + 4].copy_from_slice(&len.to_le_bytes());
            }
            Value::Struct(fields) => {
                self.pad(8);
                for f in fields {
                    self.value(f);
                }
            }
            Value::Dict(k, v) => {
                self.pad(8);
                self.value(k);
                self.value(v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(body: Vec<Value>) -> Message {
        let mut m = Message::call(None, "/org/x", "org.x", "M", body);
        m.kind = METHOD_RETURN;
        m
    }

    #[test]
    fn messages_round_trip_through_the_wire() {
        let units = Value::Array(
            "(ssssssouso)".into(),
            vec![Value::Struct(vec![
                Value::Str("a.service".into()),
                Value::Str("desc".into()),
                Value::Str("loaded".into()),
                Value::Str("active".into()),
                Value::Str("running".into()),
                Value::Str("".into()),
                Value::Path("/org/freedesktop/systemd1/unit/a_2eservice".into()),
                Value::U32(0),
                Value::Str("".into()),
                Value::Path("/".into()),
            ])],
        );
        let props = Value::Array(
            "{sv}".into(),
            vec![
                Value::Dict(
                    Box::new(Value::Str("NRestarts".into())),
                    Box::new(Value::Variant(Box::new(Value::U32(3)))),
                ),
                Value::Dict(
                    Box::new(Value::Str("T".into())),
                    Box::new(Value::Variant(Box::new(Value::U64(90_000_000)))),
                ),
            ],
        );
        let files = Value::Array(
            "(sb)".into(),
            vec![Value::Struct(vec![
                Value::Str("/etc/skiff/a.env".into()),
                Value::Bool(true),
            ])],
        );
        let empty = Value::Array("s".into(), vec![]);
        let m = reply(vec![
            units,
            props,
            files,
            empty,
            Value::Byte(7),
            Value::I64(-2),
        ]);
        let bytes = m.encode(9);
        assert_eq!(bytes.len(), Message::total_len(&bytes[..16]).unwrap());
        let back = Message::parse(&bytes).unwrap();
        assert_eq!(back.serial, 9);
        assert_eq!(back.body, m.body);
        assert_eq!(back.member.as_deref(), Some("M"));
    }

    #[test]
    fn a_big_endian_message_from_another_implementation_parses() {
        // A method return, serial 2, reply to 1, body "s" = "ok", as written big-endian.
        let mut b = vec![b'B', METHOD_RETURN, 0, 1];
        b.extend_from_slice(&7u32.to_be_bytes()); // body: u32 len + "ok\0"
        b.extend_from_slice(&2u32.to_be_bytes());
        let mut fields = Vec::new();
        fields.extend_from_slice(&[5, 1, b'u', 0]);
        fields.extend_from_slice(&1u32.to_be_bytes());
        fields.extend_from_slice(&[8, 1, b'g', 0, 1, b's', 0]);
        b.extend_from_slice(&(fields.len() as u32).to_be_bytes());
        b.extend_from_slice(&fields);
        b.push(0); // the body starts 8-aligned
        b.extend_from_slice(&2u32.to_be_bytes());
        b.extend_from_slice(b"ok\0");
        let m = Message::parse(&b).unwrap();
        assert_eq!(m.reply_serial, Some(1));
        assert_eq!(m.body, vec![Value::Str("ok".into())]);
    }

    #[test]
    fn hostile_messages_are_refused_not_trusted() {
        let good = reply(vec![Value::Str("x".into()), Value::U32(1)]).encode(1);
        // Every truncation is an error, never a panic.
        for n in 0..good.len() {
            assert!(Message::parse(&good[..n]).is_err(), "truncated at {n}");
        }
        // Every single-byte corruption parses or errs, never panics.
        for i in 0..good.len() {
            for v in [0u8, 0xff, b'a', b'(', 0x7f] {
                let mut b = good.clone();
                b[i] = v;
                let _ = Message::parse(&b);
            }
        }
        // Lengths that point past the end or near u32::MAX.
        let mut b = good.clone();
        b[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            Message::total_len(&b),
            Err(WireError::TooLarge(_))
        ));
        // A signature nested beyond the limit.
        let deep = format!("{}y", "a".repeat(200));
        let mut s = Sig::new(&deep).unwrap();
        let mut r = Reader::new(&good).unwrap();
        r.pos = 16;
        assert!(r.value(&mut s, 0).is_err());
        // A variant that claims more than one type.
        let mut w = Writer::default();
        w.buf.extend_from_slice(&[0u8; 16]);
        w.buf[0] = b'l';
        w.sig("uu");
        w.u32(1);
        w.u32(2);
        let mut r = Reader::new(&w.buf).unwrap();
        r.pos = 16;
        assert!(r.value(&mut Sig::new("v").unwrap(), 0).is_err());
        // Bad strings.
        for body in [
            &b"\x02\0\0\0a\0\0"[..],
            b"\x01\0\0\0\xff\0",
            b"\x01\0\0\0aX",
        ] {
            let mut buf = vec![b'l', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
            buf.extend_from_slice(body);
            let mut r = Reader::new(&buf).unwrap();
            r.pos = 16;
            assert!(r.value(&mut Sig::new("s").unwrap(), 0).is_err(), "{body:?}");
        }
    }
}
