//! The incremental RESP decoder: bytes in arbitrary pieces from a socket,
//! [`Value`]s out, one frame at a time.
//!
//! One walk does both framing and parsing: headers are read once, blob
//! payloads are copied once when their last byte has arrived (skipped by
//! length until then, so a large bulk string in many small reads costs O(1)
//! per read), and aggregates are built on an explicit stack, so nesting is a
//! bounded loop, never recursion. RESP2 nulls (`$-1`, `*-1`) are accepted
//! next to RESP3 types because some servers and proxies answer that way; a
//! `-1` length anywhere else is an error.

use std::fmt;

use super::{RespError, Value};

/// Deepest aggregate nesting accepted. Real replies nest a handful of levels
/// (XREAD: map → array → entry → fields); the cap bounds the build stack a
/// hostile server can make us keep.
pub(super) const MAX_DEPTH: usize = 64;

/// Above this capacity an emptied buffer is shrunk back, so one large frame
/// does not pin its memory for the connection's whole life.
const SHRINK_ABOVE: usize = 64 * 1024;

/// Items reserved up front for an aggregate, whatever its header promises:
/// the header is untrusted, the items that really arrive grow the vector.
const RESERVE_ITEMS: usize = 64;

/// How a byte stream fails to be RESP. Offsets count from the start of the
/// frame being decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    /// A byte that starts no RESP type (also RESP3 streamed parts, `;` and
    /// `.`, which Redis does not send).
    TypeByte {
        /// The byte found.
        byte: u8,
        /// Where it was found.
        offset: usize,
    },
    /// A length header that is not a decimal count (or `-1` where no null
    /// is allowed, or `?`, a streamed length).
    Length {
        /// Where the header starts.
        offset: usize,
    },
    /// A length so large that the frame end overflows.
    Overflow {
        /// Where the header starts.
        offset: usize,
    },
    /// A scalar line (integer, double, boolean, null, big number) that does
    /// not parse as its type.
    Scalar {
        /// The type byte of the line.
        kind: u8,
        /// Where the line starts.
        offset: usize,
    },
    /// A blob payload not followed by `\r\n`.
    BlobEnd {
        /// Where the `\r\n` should be.
        offset: usize,
    },
    /// A verbatim string (`=`) without its three-letter format and `:`.
    Verbatim {
        /// Where its payload starts.
        offset: usize,
    },
    /// Aggregates nested deeper than `MAX_DEPTH`.
    TooDeep,
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ProtocolError::TypeByte { byte, offset } => write!(
                f,
                "invalid type byte {:?} at frame offset {offset}",
                char::from(byte)
            ),
            ProtocolError::Length { offset } => {
                write!(f, "invalid length at frame offset {offset}")
            }
            ProtocolError::Overflow { offset } => {
                write!(f, "length overflow at frame offset {offset}")
            }
            ProtocolError::Scalar { kind, offset } => write!(
                f,
                "malformed {:?} value at frame offset {offset}",
                char::from(kind)
            ),
            ProtocolError::BlobEnd { offset } => {
                write!(f, "blob not followed by CRLF at frame offset {offset}")
            }
            ProtocolError::Verbatim { offset } => {
                write!(
                    f,
                    "verbatim string without a format at frame offset {offset}"
                )
            }
            ProtocolError::TooDeep => write!(f, "nesting deeper than {MAX_DEPTH}"),
        }
    }
}

/// Incremental decoder: bytes arrive in arbitrary pieces from a socket.
///
/// Feed every read with [`Decoder::feed`], then call [`Decoder::next`] until
/// it returns `Ok(None)`. Consumed bytes are released lazily (a read offset,
/// compacted when at least half the buffer is consumed), so each byte is
/// copied O(1) times amortised.
#[derive(Debug)]
pub struct Decoder {
    /// Received bytes; `buf[start..]` is not yet decoded.
    buf: Vec<u8>,
    /// Offset of the first undecoded byte (the start of the current frame).
    start: usize,
    /// Largest frame accepted, in bytes.
    max_buffer: usize,
    /// Longest bulk string kept inside a reply (not a push) frame; a
    /// longer one is discarded unread ([`Decoder::limit_bulk`]).
    max_bulk: usize,
    /// Progress through the current frame, kept across reads.
    walk: Walk,
    /// Set by the first error; every later `next` repeats it.
    failed: Option<RespError>,
}

impl Decoder {
    /// `max_buffer`: the most bytes buffered for one incomplete frame; beyond
    /// that next() returns TooLarge (a hostile or broken server must not make
    /// us grow without bound).
    ///
    /// The limit applies to each frame's total encoded size however it
    /// arrives, and is detected early when a length header already promises
    /// more. Complete frames waiting behind the current one are not counted:
    /// callers bound those by draining `next` after every `feed`.
    pub fn new(max_buffer: usize) -> Self {
        Decoder {
            buf: Vec::new(),
            start: 0,
            max_buffer,
            max_bulk: usize::MAX,
            walk: Walk::default(),
            failed: None,
        }
    }

    /// Bulk strings longer than `max` inside the reply frames decoded from
    /// now on (not pushes) are discarded unread as [`Value::Skipped`]: a
    /// caller that knows what the next reply may hold (a history page of
    /// entries of a known largest size) bounds it, so one oversized item
    /// costs that item, not the frame or the connection.
    pub fn limit_bulk(&mut self, max: usize) {
        self.max_bulk = max;
    }

    /// Appends bytes just read from the socket (those of a bulk string
    /// being skipped are discarded here).
    pub fn feed(&mut self, mut bytes: &[u8]) {
        if let Some((_, left)) = self.walk.skipped.as_mut() {
            let n = (*left).min(bytes.len());
            *left -= n;
            bytes = &bytes[n..];
        }
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
            if self.buf.capacity() > SHRINK_ABOVE && bytes.len() <= SHRINK_ABOVE {
                self.buf.shrink_to(SHRINK_ABOVE);
            }
        } else if self.start >= self.buf.len() - self.start {
            // Moving the remainder costs no more than the bytes already
            // consumed, which keeps compaction amortised O(1) per byte.
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Next complete value, Ok(None) when more bytes are needed, Err on
    /// garbage.
    ///
    /// After an Err the connection is unusable: the stream position is lost,
    /// so the caller must close it; later calls keep returning the same error.
    // The name is part of the module's contract; being fallible, it is not an
    // `Iterator::next`.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Value>, RespError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        match self.decode_one() {
            Ok(v) => Ok(v),
            Err(err) => {
                self.failed = Some(err.clone());
                Err(err)
            }
        }
    }

    /// Bytes received but not yet returned as values.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    fn decode_one(&mut self) -> Result<Option<Value>, RespError> {
        let avail = &self.buf[self.start..];
        match self.walk.advance(avail, self.max_buffer, self.max_bulk) {
            Ok(Some((len, value))) => {
                self.start += len;
                self.walk = Walk::default();
                Ok(Some(value))
            }
            // Incomplete: everything buffered belongs to this frame, and
            // `walk.need()` is a lower bound of its size.
            Ok(None) if avail.len().max(self.walk.need()) <= self.max_buffer => Ok(None),
            Err(Step::TooLarge) if self.walk.skippable() => {
                // One bulk string is too large: discard it, not the
                // connection (shared by many streams on p3).
                let (_, len) = self.walk.blob.expect("skippable is a blob");
                let at = self.start + self.walk.pos;
                let have = (self.buf.len() - at).min(len);
                self.buf.drain(at..at + have);
                self.walk.skipped = Some((len, len - have));
                self.walk.blob = Some((b'$', 0));
                self.decode_one()
            }
            Ok(None) | Err(Step::TooLarge) => Err(RespError::TooLarge {
                limit: self.max_buffer,
            }),
            Err(Step::Bad(e)) => Err(RespError::Protocol(e)),
        }
    }
}

/// Why a walk stopped short of a value.
enum Step {
    Bad(ProtocolError),
    TooLarge,
}

impl From<ProtocolError> for Step {
    fn from(e: ProtocolError) -> Step {
        Step::Bad(e)
    }
}

/// Resumable walk through one frame.
#[derive(Debug, Default)]
struct Walk {
    /// Offset (from the frame start) of the next header, or of the payload
    /// of `blob`.
    pos: usize,
    /// Where to resume looking for the `\n` ending the header at `pos`, so a
    /// long line arriving in pieces is searched once.
    line_from: usize,
    /// A blob header already read (type byte, payload length) whose payload
    /// starts at `pos` and has not fully arrived.
    blob: Option<(u8, usize)>,
    /// Aggregates being built, innermost last.
    open: Vec<Open>,
    /// A bulk string of a push too large for the frame limit, being
    /// discarded: (its length, payload bytes still to discard). Its bytes
    /// never enter the buffer; the frame's other items decode as usual.
    skipped: Option<(usize, usize)>,
}

/// An aggregate still collecting its items.
#[derive(Debug)]
struct Open {
    kind: u8,
    left: usize,
    items: Vec<Value>,
}

impl Walk {
    /// Whether the frame is too large only for the bulk string being read,
    /// which can then be skipped rather than fail the connection.
    fn skippable(&self) -> bool {
        matches!(self.blob, Some((b'$', _))) && self.skipped.is_none()
    }

    /// Whether the bulk string being read is over `max_bulk` in a reply.
    fn over_bulk(&self, max_bulk: usize) -> bool {
        matches!(self.blob, Some((b'$', len)) if len > max_bulk)
            && self.skipped.is_none()
            && self.open.first().is_none_or(|o| o.kind != b'>')
    }

    /// The fewest bytes the frame can have, from what has been read so far.
    fn need(&self) -> usize {
        match self.blob {
            Some((_, len)) => self.pos.saturating_add(len).saturating_add(2),
            None => self.pos,
        }
    }

    /// Walks as far as `avail` allows: the frame's length and value once
    /// complete, `None` when more bytes are needed.
    fn advance(
        &mut self,
        avail: &[u8],
        limit: usize,
        max_bulk: usize,
    ) -> Result<Option<(usize, Value)>, Step> {
        loop {
            if self.need() > limit || self.over_bulk(max_bulk) {
                return Err(Step::TooLarge);
            }
            let value = match self.blob {
                Some((kind, len)) => {
                    if self.skipped.is_some_and(|(_, left)| left > 0) {
                        return Ok(None);
                    }
                    let end = self.pos + len;
                    let Some(crlf) = avail.get(end..end + 2) else {
                        return Ok(None);
                    };
                    if crlf != b"\r\n" {
                        return Err(ProtocolError::BlobEnd { offset: end }.into());
                    }
                    let at = self.pos;
                    self.blob = None;
                    self.pos = end + 2;
                    match self.skipped.take() {
                        Some((skipped, _)) => Some(Value::Skipped(skipped)),
                        None => blob(kind, &avail[at..end], at)?,
                    }
                }
                None => match self.header(avail)? {
                    None => return Ok(None),
                    Some(value) => value,
                },
            };
            if let Some(value) = self.close(value) {
                if self.pos > limit {
                    return Err(Step::TooLarge);
                }
                return Ok(Some((self.pos, value)));
            }
        }
    }

    /// Reads the header at `pos`: a complete scalar value, or `Some(None)`
    /// when it opened a blob or an aggregate (or was an empty attribute).
    fn header(&mut self, avail: &[u8]) -> Result<Option<Option<Value>>, ProtocolError> {
        let at = self.pos;
        let Some(&kind) = avail.get(at) else {
            return Ok(None);
        };
        if !b"+-:,(#_$!=*~>%|".contains(&kind) {
            return Err(ProtocolError::TypeByte {
                byte: kind,
                offset: at,
            });
        }
        let from = self.line_from.max(at + 1);
        let Some(nl) = find_crlf_end(avail, from, at + 1) else {
            self.line_from = avail.len();
            return Ok(None);
        };
        self.line_from = 0;
        let line = &avail[at + 1..nl - 1];
        self.pos = nl + 1;
        let value = match kind {
            b'$' | b'*' if line == b"-1" => Value::Nil,
            b'$' | b'!' | b'=' => {
                let len = parse_len(line, at)?;
                self.pos
                    .checked_add(len)
                    .and_then(|end| end.checked_add(2))
                    .ok_or(ProtocolError::Overflow { offset: at })?;
                self.blob = Some((kind, len));
                return Ok(Some(None));
            }
            b'*' | b'~' | b'>' | b'%' | b'|' => {
                let n = parse_len(line, at)?;
                let left = if matches!(kind, b'%' | b'|') {
                    n.checked_mul(2)
                        .ok_or(ProtocolError::Overflow { offset: at })?
                } else {
                    n
                };
                if left == 0 {
                    return Ok(Some(aggregate(kind, Vec::new())));
                }
                if self.open.len() >= MAX_DEPTH {
                    return Err(ProtocolError::TooDeep);
                }
                self.open.push(Open {
                    kind,
                    left,
                    items: Vec::with_capacity(left.min(RESERVE_ITEMS)),
                });
                return Ok(Some(None));
            }
            _ => scalar(kind, line).ok_or(ProtocolError::Scalar { kind, offset: at })?,
        };
        Ok(Some(Some(value)))
    }

    /// Hands a finished value (`None`: nothing, e.g. a dropped attribute)
    /// to the aggregates it completes; returns the value once no aggregate
    /// takes it, so the caller either reads on or has the whole frame.
    fn close(&mut self, mut value: Option<Value>) -> Option<Value> {
        while let Some(item) = value {
            let Some(top) = self.open.last_mut() else {
                return Some(item);
            };
            top.items.push(item);
            top.left -= 1;
            if top.left > 0 {
                return None;
            }
            let done = self.open.pop().expect("the aggregate just filled");
            value = aggregate(done.kind, done.items);
        }
        None
    }
}

/// A finished aggregate; `None` for an attribute, which annotates the
/// value after it and is dropped.
fn aggregate(kind: u8, items: Vec<Value>) -> Option<Value> {
    Some(match kind {
        b'>' => Value::Push(items),
        b'%' => {
            let mut pairs = Vec::with_capacity(items.len() / 2);
            let mut it = items.into_iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                pairs.push((k, v));
            }
            Value::Map(pairs)
        }
        b'|' => return None,
        // `*`, and a set `~`, in the server's order.
        _ => Value::Array(items),
    })
}

/// A blob payload as its value.
fn blob(kind: u8, payload: &[u8], offset: usize) -> Result<Option<Value>, ProtocolError> {
    Ok(Some(match kind {
        b'!' => Value::Error(String::from_utf8_lossy(payload).into_owned()),
        b'=' => match payload.get(3) {
            // `txt:` or `mkd:`, then the text.
            Some(b':') => Value::Bulk(payload[4..].to_vec()),
            _ => return Err(ProtocolError::Verbatim { offset }),
        },
        _ => Value::Bulk(payload.to_vec()),
    }))
}

/// A line-only value (`+ - : , ( # _`); `None` when the line does not parse.
fn scalar(kind: u8, line: &[u8]) -> Option<Value> {
    let text = || String::from_utf8_lossy(line).into_owned();
    Some(match kind {
        b'+' => Value::Simple(text()),
        b'-' => Value::Error(text()),
        b':' => Value::Int(std::str::from_utf8(line).ok()?.parse().ok()?),
        b',' => Value::Double(std::str::from_utf8(line).ok()?.parse().ok()?),
        b'(' => {
            let digits = line.strip_prefix(b"-").unwrap_or(line);
            if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            Value::Simple(text())
        }
        b'#' => match line {
            b"t" => Value::Bool(true),
            b"f" => Value::Bool(false),
            _ => return None,
        },
        // `_`
        _ => line.is_empty().then_some(Value::Nil)?,
    })
}

/// Index of the `\n` of the first `\r\n` whose `\r` is at or after `min_cr`,
/// searching from `from`.
fn find_crlf_end(buf: &[u8], mut from: usize, min_cr: usize) -> Option<usize> {
    while from < buf.len() {
        let nl = from + buf[from..].iter().position(|&b| b == b'\n')?;
        if nl > min_cr && buf[nl - 1] == b'\r' {
            return Some(nl);
        }
        from = nl + 1;
    }
    None
}

/// A non-negative decimal length from the header line at `offset`.
fn parse_len(line: &[u8], offset: usize) -> Result<usize, ProtocolError> {
    if line.is_empty() || line.len() > 19 || !line.iter().all(u8::is_ascii_digit) {
        return Err(ProtocolError::Length { offset });
    }
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(ProtocolError::Length { offset })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::redis::resp::{encode_command, PubSub};

    pub(crate) fn bulk(s: &str) -> Value {
        Value::Bulk(s.as_bytes().to_vec())
    }

    /// Decodes everything in `input` fed at once; panics on error.
    pub(crate) fn decode_all(input: &[u8]) -> Vec<Value> {
        let mut d = Decoder::new(1 << 20);
        d.feed(input);
        let mut out = Vec::new();
        while let Some(v) = d.next().unwrap() {
            out.push(v);
        }
        assert_eq!(d.buffered(), 0, "all input consumed");
        out
    }

    pub(crate) fn decode_one(input: &[u8]) -> Value {
        let mut all = decode_all(input);
        assert_eq!(all.len(), 1, "exactly one value in {input:?}");
        all.pop().unwrap()
    }

    /// Decodes `input` fed in pieces cut at `cuts`; the values before the
    /// first error, and the error.
    fn decode_cut(input: &[u8], cuts: &[usize], limit: usize) -> (Vec<Value>, Option<RespError>) {
        let mut d = Decoder::new(limit);
        let mut values = Vec::new();
        let mut from = 0;
        for &cut in cuts.iter().chain([input.len()].iter()) {
            d.feed(&input[from..cut]);
            from = cut;
            loop {
                match d.next() {
                    Ok(Some(v)) => values.push(v),
                    Ok(None) => break,
                    Err(e) => return (values, Some(e)),
                }
            }
        }
        (values, None)
    }

    /// Every way of splitting `input` in two, and one byte at a time, gives
    /// what feeding it whole gives.
    fn same_however_split(input: &[u8], limit: usize) -> (Vec<Value>, Option<RespError>) {
        let whole = decode_cut(input, &[], limit);
        for split in 0..=input.len() {
            assert_eq!(
                decode_cut(input, &[split], limit),
                whole,
                "{input:?} split at {split}"
            );
        }
        let bytes: Vec<usize> = (1..input.len()).collect();
        assert_eq!(
            decode_cut(input, &bytes, limit),
            whole,
            "{input:?} byte by byte"
        );
        whole
    }

    #[test]
    fn malformed_input_is_a_typed_error_however_it_arrives() {
        use ProtocolError::*;
        let deep = [b"*1\r\n".repeat(MAX_DEPTH + 1), b":1\r\n".to_vec()].concat();
        let cases: Vec<(&[u8], ProtocolError)> = vec![
            (
                b"?x\r\n",
                TypeByte {
                    byte: b'?',
                    offset: 0,
                },
            ),
            // RESP3 streamed parts, which Redis does not send.
            (
                b";3\r\nabc\r\n",
                TypeByte {
                    byte: b';',
                    offset: 0,
                },
            ),
            (b"$?\r\n", Length { offset: 0 }),
            (b"$abc\r\nxyz\r\n", Length { offset: 0 }),
            (b"$-2\r\n", Length { offset: 0 }),
            (b"*\r\n", Length { offset: 0 }),
            (b"$99999999999999999999\r\n", Length { offset: 0 }),
            // A RESP2 null is `$-1` or `*-1`; no RESP3 type has one.
            (b"%-1\r\n", Length { offset: 0 }),
            (b"~-1\r\n", Length { offset: 0 }),
            (b">-1\r\n", Length { offset: 0 }),
            (b"|-1\r\n", Length { offset: 0 }),
            (b"!-1\r\n", Length { offset: 0 }),
            (b"=-1\r\n", Length { offset: 0 }),
            // Nested, the offset is the bad header's.
            (b"*2\r\n:1\r\n$x\r\n", Length { offset: 8 }),
            // A blob payload not followed by CRLF.
            (b"$3\r\nabcXY", BlobEnd { offset: 7 }),
            (b"$3\r\nabc\n\r", BlobEnd { offset: 7 }),
            (b"*1\r\n$0\r\nab", BlobEnd { offset: 8 }),
            (b"=3\r\ntxt\r\n", Verbatim { offset: 4 }),
            (b"=5\r\ntxt+a\r\n", Verbatim { offset: 4 }),
            (
                b":1.5\r\n",
                Scalar {
                    kind: b':',
                    offset: 0,
                },
            ),
            (
                b":\r\n",
                Scalar {
                    kind: b':',
                    offset: 0,
                },
            ),
            (
                b",x\r\n",
                Scalar {
                    kind: b',',
                    offset: 0,
                },
            ),
            (
                b"#x\r\n",
                Scalar {
                    kind: b'#',
                    offset: 0,
                },
            ),
            (
                b"_x\r\n",
                Scalar {
                    kind: b'_',
                    offset: 0,
                },
            ),
            (
                b"(12a\r\n",
                Scalar {
                    kind: b'(',
                    offset: 0,
                },
            ),
            (
                b"(\r\n",
                Scalar {
                    kind: b'(',
                    offset: 0,
                },
            ),
            (&deep, TooDeep),
        ];
        for (input, expected) in cases {
            let (values, err) = same_however_split(input, 1 << 10);
            assert_eq!(values, vec![], "{input:?}");
            assert_eq!(err, Some(RespError::Protocol(expected)), "{input:?}");
        }
        // A value before the bad frame is still returned.
        let (values, err) = same_however_split(b"+OK\r\n#?\r\n", 64);
        assert_eq!(values, vec![Value::Simple("OK".into())]);
        assert!(matches!(
            err,
            Some(RespError::Protocol(Scalar { kind: b'#', .. }))
        ));
    }

    #[test]
    fn lengths_that_overflow_are_errors_not_panics() {
        // 2 × this count overflows a 64-bit usize; on 32 bits it is no usize.
        let (_, err) = same_however_split(b"%9999999999999999999\r\n", 1 << 10);
        assert!(
            matches!(
                err,
                Some(RespError::Protocol(
                    ProtocolError::Overflow { offset: 0 } | ProtocolError::Length { offset: 0 }
                ))
            ),
            "{err:?}"
        );
        // A blob longer than memory is refused (32 bits) or discarded as
        // it comes (64 bits), never buffered.
        let mut d = Decoder::new(1 << 10);
        d.feed(b"$9999999999999999999\r\n");
        for _ in 0..100 {
            d.feed(&[b'z'; 4096]);
            match d.next() {
                Ok(None) => assert!(d.buffered() < 64),
                other => assert!(matches!(other, Err(RespError::Protocol(_))), "{other:?}"),
            }
        }
    }

    #[test]
    fn attributes_are_dropped_wherever_they_sit() {
        let (values, err) = same_however_split(
            b"*2\r\n|1\r\n+a\r\n+b\r\n:1\r\n:2\r\n|0\r\n:5\r\n%1\r\n|1\r\n+x\r\n:0\r\n+k\r\n+v\r\n",
            1 << 10,
        );
        assert_eq!(err, None);
        assert_eq!(
            values,
            vec![
                Value::Array(vec![Value::Int(1), Value::Int(2)]),
                Value::Int(5),
                Value::Map(vec![(Value::Simple("k".into()), Value::Simple("v".into()))]),
            ]
        );
    }

    #[test]
    fn a_header_promising_many_items_reserves_few() {
        let mut d = Decoder::new(1 << 20);
        d.feed(b"*100000000\r\n:1\r\n");
        assert_eq!(d.next(), Ok(None));
        assert!(d.walk.open[0].items.capacity() <= RESERVE_ITEMS);
        // Every item costs at least three bytes, so it can never complete
        // under the limit; it fails once the bytes outgrow it.
        d.feed(&b":1\r\n".repeat(300_000));
        assert_eq!(d.next(), Err(RespError::TooLarge { limit: 1 << 20 }));
    }

    #[test]
    fn too_large_however_it_arrives() {
        for input in [&b"*3\r\n:1\r\n:2\r\n:3\r\n"[..], b"+aaaaaaaaaaaaaaaaaa"] {
            let (values, err) = same_however_split(input, 15);
            assert_eq!(values, vec![]);
            assert_eq!(err, Some(RespError::TooLarge { limit: 15 }), "{input:?}");
        }
    }

    /// One pushed message too large for the limit costs that message, not
    /// the connection (a p3 subscription shared by many streams): its
    /// payload is discarded unread, and what follows decodes as usual.
    #[test]
    fn an_oversized_push_payload_is_skipped_however_it_arrives() {
        let big = "x".repeat(40);
        let input = format!(
            ">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$40\r\n{big}\r\n\
             >3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nok\r\n:5\r\n"
        );
        let (values, err) = same_however_split(input.as_bytes(), 40);
        assert_eq!(err, None);
        let push = |last: Value| {
            Value::Push(vec![
                Value::Bulk(b"message".to_vec()),
                Value::Bulk(b"ch".to_vec()),
                last,
            ])
        };
        assert_eq!(
            values,
            vec![
                push(Value::Skipped(40)),
                push(Value::Bulk(b"ok".to_vec())),
                Value::Int(5)
            ]
        );
        // Never buffered: a payload far above the limit costs nothing.
        let mut d = Decoder::new(40);
        d.feed(b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$100000000\r\n");
        for _ in 0..1000 {
            d.feed(&[b'y'; 100_000]);
            assert_eq!(d.next(), Ok(None));
            assert!(d.buffered() < 64, "{}", d.buffered());
        }
        d.feed(b"\r\n");
        assert_eq!(d.next(), Ok(Some(push(Value::Skipped(100_000_000)))));
        // A missing CRLF after the skipped bytes is still an error.
        let bad = format!(">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$40\r\n{big}xx");
        let (_, err) = decode_cut(bad.as_bytes(), &[], 40);
        assert!(matches!(err, Some(RespError::Protocol(_))), "{err:?}");
        // A reply's bulk string too large is skipped the same way: the
        // command that asked gets `Skipped`, the connection goes on.
        let input = format!("*2\r\n$40\r\n{big}\r\n$2\r\nok\r\n$40\r\n{big}\r\n:1\r\n");
        let (values, err) = same_however_split(input.as_bytes(), 40);
        assert_eq!(err, None);
        assert_eq!(
            values,
            vec![
                Value::Array(vec![Value::Skipped(40), Value::Bulk(b"ok".to_vec())]),
                Value::Skipped(40),
                Value::Int(1)
            ]
        );
    }

    /// A reply whose items may be at most `limit_bulk` long (a history
    /// page) keeps those and discards longer ones unread, whatever else
    /// fits the frame; pushes keep the frame limit alone.
    #[test]
    fn a_bulk_limit_skips_long_items_of_replies_only() {
        let item = |n: usize| format!("${n}\r\n{}\r\n", "y".repeat(n));
        let reply = format!("*4\r\n{}{}{}{}", item(3), item(30), item(4), item(5));
        let push = format!(">2\r\n{}{}", item(30), item(2));
        let input = format!("{reply}{push}");
        for cut in 0..input.len() {
            let mut d = Decoder::new(1000);
            d.limit_bulk(4);
            let mut got = Vec::new();
            for part in [&input.as_bytes()[..cut], &input.as_bytes()[cut..]] {
                d.feed(part);
                while let Some(v) = d.next().unwrap() {
                    got.push(v);
                }
            }
            let bulk = |n: usize| Value::Bulk(vec![b'y'; n]);
            assert_eq!(
                got,
                vec![
                    Value::Array(vec![
                        bulk(3),
                        Value::Skipped(30),
                        bulk(4),
                        Value::Skipped(5)
                    ]),
                    Value::Push(vec![bulk(30), bulk(2)]),
                ],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn compaction_keeps_partial_frames_intact() {
        // Many frames, fed in chunks that always leave a partial one behind.
        let mut stream = Vec::new();
        for i in 0..500 {
            encode_command(
                &mut stream,
                &[b"message", b"c", format!("payload-{i}").as_bytes()],
            );
        }
        let mut d = Decoder::new(256);
        let mut seen = 0;
        for chunk in stream.chunks(37) {
            d.feed(chunk);
            while let Some(v) = d.next().unwrap() {
                let Ok(PubSub::Message { payload, .. }) = v.into_pubsub() else {
                    panic!("expected message")
                };
                assert_eq!(payload, format!("payload-{seen}").into_bytes());
                seen += 1;
            }
            assert!(d.buf.len() <= 2 * 256 + 37, "buffer stays bounded");
        }
        assert_eq!(seen, 500);
        assert_eq!(d.buffered(), 0);
    }

    /// A stream mixing most frame kinds, including a RESP2 null inside an
    /// array, an attribute and a long line.
    const STREAM: &[u8] = b">3\r\n$7\r\nmessage\r\n$3\r\nch1\r\n$5\r\nhello\r\n\
        %2\r\n$6\r\nstatus\r\n$4\r\ndone\r\n$3\r\nnum\r\n:12\r\n\
        *3\r\n$-1\r\n*2\r\n+a\r\n,2.5\r\n_\r\n\
        -ERR boom\r\n\
        |1\r\n+ttl\r\n:3\r\n$4\r\n\r\n\r\n\r\n\
        +a-rather-long-simple-string-line-that-arrives-in-pieces\r\n\
        *3\r\n$9\r\nsubscribe\r\n$2\r\nc2\r\n:2\r\n";

    #[test]
    fn split_at_every_byte_boundary_yields_same_values() {
        let whole = decode_all(STREAM);
        assert_eq!(whole.len(), 7);
        assert_eq!(whole[3], Value::Error("ERR boom".into()));
        assert_eq!(whole[4], bulk("\r\n\r\n"));
        for split in 0..=STREAM.len() {
            let mut d = Decoder::new(1 << 20);
            let mut got = Vec::new();
            for part in [&STREAM[..split], &STREAM[split..]] {
                d.feed(part);
                while let Some(v) = d.next().unwrap() {
                    got.push(v);
                }
            }
            assert_eq!(got, whole, "split at {split}");
            assert_eq!(d.buffered(), 0);
        }
        // And one byte at a time.
        let mut d = Decoder::new(1 << 20);
        let mut got = Vec::new();
        for b in STREAM {
            d.feed(std::slice::from_ref(b));
            while let Some(v) = d.next().unwrap() {
                got.push(v);
            }
        }
        assert_eq!(got, whole);
    }

    #[test]
    fn two_frames_in_one_read_and_partial_tail() {
        let mut d = Decoder::new(1024);
        d.feed(b"+OK\r\n:5\r\n$5\r\nhel");
        assert_eq!(d.next(), Ok(Some(Value::Simple("OK".into()))));
        assert_eq!(d.next(), Ok(Some(Value::Int(5))));
        assert_eq!(d.next(), Ok(None));
        assert_eq!(d.buffered(), 7);
        d.feed(b"lo\r\n");
        assert_eq!(d.next(), Ok(Some(bulk("hello"))));
        assert_eq!(d.next(), Ok(None));
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn garbage_is_a_protocol_error_and_poisons() {
        let mut d = Decoder::new(1024);
        d.feed(b"?xyz\r\n");
        let err = d.next().unwrap_err();
        assert!(matches!(err, RespError::Protocol(_)), "{err:?}");
        d.feed(b"+OK\r\n");
        assert_eq!(d.next(), Err(err));

        // Detected from the first byte, before a line ends.
        let mut d = Decoder::new(1024);
        d.feed(b"hello");
        assert!(matches!(d.next(), Err(RespError::Protocol(_))));

        for input in [
            &b"$abc\r\nxyz\r\n"[..],
            b"*-2\r\n",
            b"$?\r\n;3\r\nabc\r\n;0\r\n",
            b":notanumber\r\n",
            b"$3\r\nabcXY",
            b"#x\r\n",
        ] {
            let mut d = Decoder::new(1024);
            d.feed(input);
            assert!(matches!(d.next(), Err(RespError::Protocol(_))), "{input:?}");
        }
    }

    #[test]
    fn frame_bigger_than_max_buffer_is_too_large() {
        // Known from the header alone: a bulk string is discarded unread
        // (the command that asked gets `Skipped`), the connection goes on.
        let mut d = Decoder::new(64);
        d.feed(b"$100\r\n");
        assert_eq!(d.next(), Ok(None));
        d.feed(&[b'a'; 100]);
        d.feed(b"\r\n:7\r\n");
        assert_eq!(d.next(), Ok(Some(Value::Skipped(100))));
        assert_eq!(d.next(), Ok(Some(Value::Int(7))));
        let mut d = Decoder::new(64);
        d.feed(b"*100\r\n");
        d.feed(&b":1\r\n".repeat(20));
        assert_eq!(d.next(), Err(RespError::TooLarge { limit: 64 }));

        // An unterminated line that keeps growing.
        let mut d = Decoder::new(64);
        d.feed(b"+");
        for _ in 0..10 {
            d.feed(b"aaaaaaa");
        }
        assert_eq!(d.next(), Err(RespError::TooLarge { limit: 64 }));

        // A complete frame over the limit, arriving in one read.
        let mut d = Decoder::new(15);
        d.feed(b"*3\r\n:1\r\n:2\r\n:3\r\n");
        assert_eq!(d.next(), Err(RespError::TooLarge { limit: 15 }));

        // Exactly at the limit is fine, also when several such frames queue up.
        let mut d = Decoder::new(10);
        d.feed(b"$4\r\nabcd\r\n$4\r\nefgh\r\n");
        assert_eq!(d.next(), Ok(Some(bulk("abcd"))));
        assert_eq!(d.next(), Ok(Some(bulk("efgh"))));
    }

    #[test]
    fn deep_nesting_is_refused() {
        use super::MAX_DEPTH;
        let mut input = b"*1\r\n".repeat(MAX_DEPTH + 1);
        input.extend_from_slice(b":1\r\n");
        let mut d = Decoder::new(1 << 20);
        d.feed(&input);
        assert!(matches!(d.next(), Err(RespError::Protocol(_))));

        let mut input = b"*1\r\n".repeat(MAX_DEPTH);
        input.extend_from_slice(b":1\r\n");
        let mut v = decode_one(&input);
        for _ in 0..MAX_DEPTH {
            let Value::Array(mut inner) = v else {
                panic!("expected array")
            };
            v = inner.pop().unwrap();
        }
        assert_eq!(v, Value::Int(1));
    }

    #[test]
    fn large_bulk_in_tiny_pieces_is_linear() {
        // Quadratic re-parsing would take minutes here (512 KiB * 512 Ki calls).
        let payload = vec![b'x'; 512 * 1024];
        let mut frame = Vec::new();
        encode_command(&mut frame, &[b"message", b"ch", &payload]);
        frame[0] = b'>';
        let mut d = Decoder::new(1 << 20);
        let mut got = None;
        for b in &frame {
            d.feed(std::slice::from_ref(b));
            if let Some(v) = d.next().unwrap() {
                got = Some(v);
            }
        }
        assert_eq!(
            got.and_then(|v| v.into_pubsub().ok()),
            Some(PubSub::Message {
                channel: b"ch".to_vec(),
                payload
            })
        );
    }

    #[test]
    fn wide_array_in_small_pieces() {
        let n = 20_000;
        let mut frame = format!("*{n}\r\n").into_bytes();
        for i in 0..n {
            frame.extend_from_slice(format!(":{i}\r\n").as_bytes());
        }
        let mut d = Decoder::new(1 << 20);
        let mut got = None;
        for chunk in frame.chunks(3) {
            d.feed(chunk);
            if let Some(v) = d.next().unwrap() {
                got = Some(v);
            }
        }
        let Some(Value::Array(items)) = got else {
            panic!("expected array")
        };
        assert_eq!(items.len(), n);
        assert_eq!(items[n - 1], Value::Int(n as i64 - 1));
    }
}

/// Property tests: command encoding round-trips, and decoding does not
/// depend on how the bytes are split into reads.
#[cfg(test)]
mod proptests {
    use super::*;
    use crate::redis::resp::encode_command;
    use proptest::prelude::*;

    /// A value and one RESP encoding of it (RESP2 and RESP3 forms mixed).
    fn frame() -> impl Strategy<Value = (Value, Vec<u8>)> {
        let line = "[ -~]{0,16}";
        let leaf = prop_oneof![
            line.prop_map(|s| (Value::Simple(s.clone()), format!("+{s}\r\n").into_bytes())),
            line.prop_map(|s| (Value::Error(s.clone()), format!("-{s}\r\n").into_bytes())),
            any::<i64>().prop_map(|i| (Value::Int(i), format!(":{i}\r\n").into_bytes())),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(|b| {
                let mut enc = format!("${}\r\n", b.len()).into_bytes();
                enc.extend_from_slice(&b);
                enc.extend_from_slice(b"\r\n");
                (Value::Bulk(b), enc)
            }),
            prop_oneof![Just("_\r\n"), Just("$-1\r\n"), Just("*-1\r\n")]
                .prop_map(|e| (Value::Nil, e.as_bytes().to_vec())),
            any::<bool>().prop_map(|b| {
                (
                    Value::Bool(b),
                    if b {
                        b"#t\r\n".to_vec()
                    } else {
                        b"#f\r\n".to_vec()
                    },
                )
            }),
            any::<f64>()
                .prop_filter("finite", |d| d.is_finite())
                .prop_map(|d| (Value::Double(d), format!(",{d}\r\n").into_bytes())),
        ];
        leaf.prop_recursive(3, 24, 5, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..5).prop_map(|items| {
                    let mut enc = format!("*{}\r\n", items.len()).into_bytes();
                    let mut values = Vec::new();
                    for (v, e) in items {
                        values.push(v);
                        enc.extend(e);
                    }
                    (Value::Array(values), enc)
                }),
                // Keys may repeat: maps keep every entry in order.
                proptest::collection::vec(("[a-c]{0,2}", inner), 0..4).prop_map(|entries| {
                    let mut enc = format!("%{}\r\n", entries.len()).into_bytes();
                    let mut pairs = Vec::new();
                    for (k, (v, e)) in entries {
                        enc.extend(format!("${}\r\n{k}\r\n", k.len()).into_bytes());
                        enc.extend(e);
                        pairs.push((Value::Bulk(k.into_bytes()), v));
                    }
                    (Value::Map(pairs), enc)
                }),
            ]
        })
    }

    /// Top-level frames, some wrapped as RESP3 pushes.
    fn frames() -> impl Strategy<Value = (Vec<Value>, Vec<u8>)> {
        let top = prop_oneof![
            3 => frame(),
            1 => proptest::collection::vec(frame(), 1..4).prop_map(|items| {
                let mut enc = format!(">{}\r\n", items.len()).into_bytes();
                let mut values = Vec::new();
                for (v, e) in items {
                    values.push(v);
                    enc.extend(e);
                }
                (Value::Push(values), enc)
            }),
        ];
        proptest::collection::vec(top, 1..6).prop_map(|frames| {
            let mut bytes = Vec::new();
            let mut values = Vec::new();
            for (v, e) in frames {
                values.push(v);
                bytes.extend(e);
            }
            (values, bytes)
        })
    }

    /// Found by the `resp_decode` fuzz target when maps lived in a hash map:
    /// a duplicate key kept either value. Maps are now a list in the
    /// server's order, duplicates included (Redis sends none; the gateway
    /// reads maps only from HGETALL, whose fields are unique).
    #[test]
    fn duplicate_map_keys_are_kept_in_order() {
        let mut d = Decoder::new(1024);
        d.feed(b"%2\r\n+k\r\n:1\r\n+k\r\n:2\r\n");
        let k = || Value::Simple("k".into());
        assert_eq!(
            d.next(),
            Ok(Some(Value::Map(vec![
                (k(), Value::Int(1)),
                (k(), Value::Int(2))
            ])))
        );
    }

    /// Found by the `resp_decode` fuzz target when sets lived in a hash set:
    /// items came in hash order. A set is now an array in the server's order.
    #[test]
    fn sets_decode_to_arrays_in_server_order() {
        let mut d = Decoder::new(1024);
        d.feed(b"~3\r\n+a\r\n+b\r\n:7\r\n");
        let simple = |s: &str| Value::Simple(s.into());
        assert_eq!(
            d.next(),
            Ok(Some(Value::Array(vec![
                simple("a"),
                simple("b"),
                Value::Int(7)
            ])))
        );
    }

    /// Feeds `bytes` cut at `cuts` (any positions), draining after each read.
    fn decode_split(bytes: &[u8], cuts: &[usize], limit: usize) -> Vec<Value> {
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        cuts.push(bytes.len());
        cuts.sort_unstable();
        let mut d = Decoder::new(limit);
        let (mut values, mut from) = (Vec::new(), 0);
        for cut in cuts {
            d.feed(&bytes[from..cut]);
            from = cut;
            while let Some(v) = d.next().expect("valid frames") {
                values.push(v);
            }
            assert!(d.buffered() <= limit);
        }
        assert_eq!(d.buffered(), 0, "all input consumed");
        values
    }

    proptest! {
        #[test]
        fn encoded_commands_decode_as_arrays_of_bulk(
            commands in proptest::collection::vec(
                proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..48), 0..6),
                1..4,
            ),
            cuts in proptest::collection::vec(any::<usize>(), 0..6),
        ) {
            let mut bytes = Vec::new();
            for args in &commands {
                let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
                encode_command(&mut bytes, &args);
            }
            let expected: Vec<Value> = commands
                .into_iter()
                .map(|args| Value::Array(args.into_iter().map(Value::Bulk).collect()))
                .collect();
            prop_assert_eq!(decode_split(&bytes, &[], bytes.len()), expected.clone());
            prop_assert_eq!(decode_split(&bytes, &cuts, bytes.len()), expected);
        }

        #[test]
        fn any_split_of_valid_frames_decodes_the_same(
            (values, bytes) in frames(),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
        ) {
            let expected = values;
            prop_assert_eq!(decode_split(&bytes, &[], 1 << 16), expected.clone());
            prop_assert_eq!(decode_split(&bytes, &cuts, 1 << 16), expected.clone());
            // One byte at a time.
            let every: Vec<usize> = (0..bytes.len()).collect();
            prop_assert_eq!(decode_split(&bytes, &every, 1 << 16), expected);
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_split_the_same(
            bytes in proptest::collection::vec(any::<u8>(), 0..64),
            cuts in proptest::collection::vec(any::<usize>(), 0..6),
            limit in 1usize..64,
        ) {
            let run = |cuts: &[usize]| {
                let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
                cuts.push(bytes.len());
                cuts.sort_unstable();
                let mut d = Decoder::new(limit);
                let (mut values, mut from) = (Vec::new(), 0);
                for cut in cuts {
                    d.feed(&bytes[from..cut]);
                    from = cut;
                    loop {
                        match d.next() {
                            Ok(Some(v)) => values.push(format!("{v:?}")),
                            Ok(None) => break,
                            Err(_) => return (values, true),
                        }
                    }
                    assert!(d.buffered() <= limit);
                }
                (values, false)
            };
            prop_assert_eq!(run(&[]), run(&cuts));
        }
    }
}
