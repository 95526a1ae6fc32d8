//! Sans-I/O RESP (Redis protocol) layer.
//!
//! Nothing here touches a socket: the WASI shell feeds the bytes it reads from
//! the Redis TCP stream into a [`Decoder`] and writes the bytes that
//! [`encode_command`] produces. Keeping I/O out makes the protocol logic
//! testable on the host.
//!
//! The gateway speaks RESP3 (`HELLO 3`) so that one connection can both be
//! subscribed and run ordinary commands; pub/sub messages then arrive as push
//! frames. RESP2-shaped replies (null bulk `$-1`, pub/sub messages as plain
//! arrays, HGETALL as a flat array) are accepted too, because some servers and
//! proxies answer that way.
//!
//! Value parsing and command encoding are done by the `redis-protocol` crate;
//! its types stay private to this module. On top of it the [`Decoder`] runs a
//! small resumable framing scanner, so that the crate (which can only parse a
//! buffer from the start) is called once per complete frame instead of once per
//! socket read: a large frame arriving in many small reads costs linear, not
//! quadratic, time. The scanner also enforces the size and nesting limits before
//! the crate ever sees (and allocates for) a frame.

use std::fmt;

use redis_protocol::resp2::encode::encode_borrowed;
use redis_protocol::resp2::types::BorrowedFrame;
use redis_protocol::resp3::decode::complete::decode as decode_resp3;
use redis_protocol::resp3::types::OwnedFrame;

/// Deepest aggregate nesting accepted. Real replies nest a handful of levels
/// (XREAD: map → array → entry → fields); the cap keeps a hostile server from
/// driving the recursive parser into a stack overflow.
const MAX_DEPTH: usize = 64;

/// Above this capacity an emptied buffer is shrunk back, so one large frame
/// does not pin its memory for the connection's whole life.
const SHRINK_ABOVE: usize = 64 * 1024;

/// A decoded RESP value (RESP2 and RESP3 kinds folded into one enum).
///
/// Folding keeps callers independent of the protocol version the server
/// chose: RESP3 verbatim strings become [`Value::Bulk`] (without the `txt:`
/// prefix), big numbers become [`Value::Simple`], sets become
/// [`Value::Array`], blob errors become [`Value::Error`], and RESP2 null
/// bulk/array and RESP3 null all become [`Value::Nil`]. RESP3 attributes are
/// dropped.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Simple string (`+OK`), or a RESP3 big number (`(123…`) as text.
    Simple(String),
    /// Error reply (`-ERR …` or a RESP3 blob error), kept as a value so the
    /// connection stays usable; helpers turn it into [`RespError::Server`].
    Error(String),
    /// Integer (`:1`).
    Int(i64),
    /// Binary-safe bulk string (`$3\r\nfoo`), or a RESP3 verbatim string.
    Bulk(Vec<u8>),
    /// Null in any encoding: `$-1`, `*-1`, RESP3 `_`.
    Nil,
    /// RESP3 boolean (`#t`).
    Bool(bool),
    /// RESP3 double (`,1.5`).
    Double(f64),
    /// Array (`*`), or a RESP3 set (`~`).
    Array(Vec<Value>),
    /// RESP3 map (`%`). The order of entries is not preserved (redis-protocol
    /// stores maps in a hash map).
    Map(Vec<(Value, Value)>),
    /// RESP3 out-of-band push (`>`), e.g. a pub/sub message.
    Push(Vec<Value>),
}

impl Value {
    /// The raw bytes of a string-like value (Simple or Bulk), for channel
    /// names and payloads that need not be UTF-8.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Simple(s) => Some(s.as_bytes()),
            Value::Bulk(b) => Some(b),
            _ => None,
        }
    }

    /// The text of a Simple value, or of a Bulk value that is valid UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Simple(s) => Some(s),
            Value::Bulk(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// An integer, or a Simple/Bulk string that parses as one (servers and
    /// RESP versions disagree on whether counts come as `:1` or `$1\r\n1`).
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Simple(_) | Value::Bulk(_) => self.as_str()?.parse().ok(),
            _ => None,
        }
    }

    /// Turns an error reply into `Err(RespError::Server)` and passes any other
    /// value through, so callers can use `?` on command replies.
    pub fn into_result(self) -> Result<Value, RespError> {
        match self {
            Value::Error(e) => Err(RespError::Server(e)),
            other => Ok(other),
        }
    }

    /// HGETALL reply (RESP3 Map or RESP2 flat array) into field/value pairs;
    /// Nil or empty → empty vec. Non-UTF-8 bytes → error.
    ///
    /// An error reply becomes [`RespError::Server`]; any other shape (or an
    /// odd-length array) becomes [`RespError::Unexpected`]. Integer fields are
    /// rendered as decimal text.
    pub fn into_pairs(self) -> Result<Vec<(String, String)>, RespError> {
        match self {
            Value::Nil => Ok(Vec::new()),
            Value::Map(entries) => entries
                .into_iter()
                .map(|(k, v)| Ok((k.into_text()?, v.into_text()?)))
                .collect(),
            Value::Array(items) => {
                if items.len() % 2 != 0 {
                    return Err(RespError::Unexpected(format!(
                        "field/value array has odd length {}",
                        items.len()
                    )));
                }
                let mut pairs = Vec::with_capacity(items.len() / 2);
                let mut it = items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    pairs.push((k.into_text()?, v.into_text()?));
                }
                Ok(pairs)
            }
            Value::Error(e) => Err(RespError::Server(e)),
            other => Err(RespError::Unexpected(format!(
                "expected a map or field/value array, got {}",
                other.kind_name()
            ))),
        }
    }

    /// Classifies a value by value, moving channel and payload out instead of
    /// copying them (the zero-copy form of [`pubsub`], for the event hot path).
    /// `Err` gives the value back untouched when it is not a pub/sub message.
    pub fn into_pubsub(self) -> Result<PubSub, Value> {
        let kind = match &self {
            Value::Push(items) | Value::Array(items) => pubsub_kind(items),
            _ => None,
        };
        match (kind, self) {
            (Some(kind), Value::Push(items) | Value::Array(items)) => Ok(build_pubsub(kind, items)),
            (_, other) => Err(other),
        }
    }

    /// Text form of a scalar, for hash fields and values.
    fn into_text(self) -> Result<String, RespError> {
        match self {
            Value::Bulk(b) => String::from_utf8(b)
                .map_err(|_| RespError::Unexpected("non-UTF-8 bytes in a text field".into())),
            Value::Simple(s) => Ok(s),
            Value::Int(i) => Ok(i.to_string()),
            other => Err(RespError::Unexpected(format!(
                "expected a string, got {}",
                other.kind_name()
            ))),
        }
    }

    /// Short name of the variant, for error messages.
    fn kind_name(&self) -> &'static str {
        match self {
            Value::Simple(_) => "simple string",
            Value::Error(_) => "error",
            Value::Int(_) => "integer",
            Value::Bulk(_) => "bulk string",
            Value::Nil => "nil",
            Value::Bool(_) => "boolean",
            Value::Double(_) => "double",
            Value::Array(_) => "array",
            Value::Map(_) => "map",
            Value::Push(_) => "push",
        }
    }
}

/// A message pushed by the server on a subscribed connection.
///
/// Sharded (`smessage`, `ssubscribe`, `sunsubscribe`) and pattern
/// (`pmessage`, `psubscribe`, `punsubscribe`) forms map onto the same
/// variants, so the streaming code need not care which kind of subscription
/// produced an event.
#[derive(Debug, Clone, PartialEq)]
pub enum PubSub {
    /// A published message. For `pmessage` this is the concrete channel, not
    /// the pattern.
    Message {
        /// Channel the message was published to.
        channel: Vec<u8>,
        /// The published payload, unchanged.
        payload: Vec<u8>,
    },
    /// Confirmation of a (s|p)SUBSCRIBE; `count` is the connection's number of
    /// subscriptions afterwards. For a pattern subscription `channel` holds
    /// the pattern.
    Subscribed {
        /// Channel (or pattern) now subscribed.
        channel: Vec<u8>,
        /// Subscriptions remaining on the connection.
        count: i64,
    },
    /// Confirmation of an (s|p)UNSUBSCRIBE; `channel` is empty when the server
    /// reports a null channel (unsubscribe-all with nothing subscribed).
    Unsubscribed {
        /// Channel (or pattern) no longer subscribed.
        channel: Vec<u8>,
        /// Subscriptions remaining on the connection.
        count: i64,
    },
}

/// Shape of a recognised pub/sub frame, checked before anything is moved.
#[derive(Debug, Clone, Copy)]
enum PubSubKind {
    Message,
    PMessage,
    Subscribed,
    Unsubscribed,
}

/// Classify a decoded value: Some(PubSub) if it is a pub/sub push (RESP3 Push,
/// or a RESP2 array whose first element is "message"/"subscribe"/... ), None
/// otherwise (an ordinary command reply).
///
/// Takes a reference and copies channel and payload; use
/// [`Value::into_pubsub`] on the hot path to move them instead.
///
/// Caveats: a RESP3 push that is not pub/sub (e.g. client-tracking
/// `invalidate`) also yields None, so a caller matching replies to commands
/// should drop any remaining [`Value::Push`] rather than treat it as a reply.
/// Recognising plain arrays is sound only where Redis itself forbids other
/// commands (a RESP2 connection in subscribe mode); on a RESP3 connection
/// pub/sub always arrives as Push, but a command reply that happens to look
/// like `["message", x, y]` would be misread.
pub fn pubsub(value: &Value) -> Option<PubSub> {
    match value {
        Value::Push(items) | Value::Array(items) => {
            pubsub_kind(items).map(|kind| build_pubsub(kind, items.clone()))
        }
        _ => None,
    }
}

/// Recognises a pub/sub frame by its first element and arity.
fn pubsub_kind(items: &[Value]) -> Option<PubSubKind> {
    let name = items.first()?.as_bytes()?;
    let is = |s: &str| name.eq_ignore_ascii_case(s.as_bytes());
    let bytes = |i: usize| items.get(i).and_then(Value::as_bytes).is_some();
    let int = |i: usize| items.get(i).and_then(Value::as_int).is_some();
    if items.len() == 3 && (is("message") || is("smessage")) && bytes(1) && bytes(2) {
        Some(PubSubKind::Message)
    } else if items.len() == 4 && is("pmessage") && bytes(2) && bytes(3) {
        Some(PubSubKind::PMessage)
    } else if items.len() == 3
        && (is("subscribe") || is("ssubscribe") || is("psubscribe"))
        && bytes(1)
        && int(2)
    {
        Some(PubSubKind::Subscribed)
    } else if items.len() == 3
        && (is("unsubscribe") || is("sunsubscribe") || is("punsubscribe"))
        && (bytes(1) || items[1] == Value::Nil)
        && int(2)
    {
        Some(PubSubKind::Unsubscribed)
    } else {
        None
    }
}

/// Builds the message from items already checked by [`pubsub_kind`].
fn build_pubsub(kind: PubSubKind, items: Vec<Value>) -> PubSub {
    let count = items.get(2).and_then(Value::as_int).unwrap_or(0);
    let mut it = items.into_iter().skip(1).map(into_bytes);
    let mut next = || it.next().unwrap_or_default();
    match kind {
        PubSubKind::Message => PubSub::Message {
            channel: next(),
            payload: next(),
        },
        PubSubKind::PMessage => {
            let _pattern = next();
            PubSub::Message {
                channel: next(),
                payload: next(),
            }
        }
        PubSubKind::Subscribed => PubSub::Subscribed {
            channel: next(),
            count,
        },
        PubSubKind::Unsubscribed => PubSub::Unsubscribed {
            channel: next(),
            count,
        },
    }
}

/// Moves the bytes out of a string-like value; anything else becomes empty.
fn into_bytes(value: Value) -> Vec<u8> {
    match value {
        Value::Bulk(b) => b,
        Value::Simple(s) => s.into_bytes(),
        _ => Vec::new(),
    }
}

/// Encode one command as a RESP array of bulk strings, appending to `out`.
///
/// Bulk strings are binary-safe, so keys and payloads need no escaping; this
/// is the only form Redis accepts for commands with arbitrary arguments.
pub fn encode_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    let parts: Vec<BorrowedFrame<'_>> = args.iter().map(|a| BorrowedFrame::BulkString(a)).collect();
    let frame = BorrowedFrame::Array(&parts);
    let start = out.len();
    out.resize(start + frame.encode_len(false), 0);
    let written = encode_borrowed(&mut out[start..], &frame, false)
        .expect("buffer sized by redis-protocol's own encode_len");
    debug_assert_eq!(start + written, out.len());
}

/// Why decoding or interpreting a reply failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RespError {
    /// The byte stream is not valid RESP; the connection must be dropped.
    Protocol(String),
    /// A frame exceeded the decoder's `max_buffer`; the connection must be
    /// dropped (the rest of the frame cannot be skipped safely).
    TooLarge {
        /// The configured limit, in bytes.
        limit: usize,
    },
    /// The server answered with an error reply (`-ERR …`), surfaced by helpers
    /// such as [`Value::into_pairs`] and [`Value::into_result`].
    Server(String),
    /// A well-formed reply of the wrong shape for the command that was sent.
    Unexpected(String),
    /// Redis Cluster: the key's slot lives on another node (`-MOVED`).
    Moved(crate::cluster::Moved),
}

impl fmt::Display for RespError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RespError::Protocol(m) => write!(f, "RESP protocol error: {m}"),
            RespError::TooLarge { limit } => {
                write!(f, "RESP frame larger than the {limit}-byte limit")
            }
            RespError::Server(m) => write!(f, "Redis error: {m}"),
            RespError::Unexpected(m) => write!(f, "unexpected Redis reply: {m}"),
            RespError::Moved(m) => write!(f, "Redis error: MOVED {} {}:{}", m.slot, m.host, m.port),
        }
    }
}

impl std::error::Error for RespError {}

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
    /// Framing progress through the current frame, kept across reads.
    scan: Scan,
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
            scan: Scan::default(),
            failed: None,
        }
    }

    /// Appends bytes just read from the socket.
    pub fn feed(&mut self, bytes: &[u8]) {
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
        let too_large = RespError::TooLarge {
            limit: self.max_buffer,
        };
        let Some(len) = self.scan.advance(avail)? else {
            // Incomplete: everything buffered belongs to this frame, and
            // `scan.pos` is a lower bound of its size.
            if avail.len().max(self.scan.pos) > self.max_buffer {
                return Err(too_large);
            }
            return Ok(None);
        };
        if len > self.max_buffer {
            return Err(too_large);
        }
        let frame = &avail[..len];
        let value = if self.scan.nulls.is_empty() {
            parse_frame(frame)?
        } else {
            parse_frame(&patch_resp2_nulls(frame, &self.scan.nulls))?
        };
        self.start += len;
        self.scan.reset();
        Ok(Some(value))
    }
}

/// Resumable walk over one frame's headers, finding where the frame ends
/// without parsing values. Blob payloads are skipped by length, so a large
/// bulk string arriving in many reads costs O(1) per read.
#[derive(Debug, Default)]
struct Scan {
    /// Offset (from the frame start) of the next header to read; once
    /// `complete`, the frame's length. May exceed the bytes available while a
    /// blob payload is still arriving.
    pos: usize,
    /// Where to resume looking for the `\n` ending the header at `pos`, so a
    /// long line arriving in pieces is searched once.
    line_from: usize,
    /// Children still expected by each open aggregate, innermost last.
    open: Vec<usize>,
    /// Offsets of RESP2 nulls (`$-1`, `*-1`), which the RESP3 parser rejects.
    nulls: Vec<usize>,
    /// Offsets where a blob payload's `\r\n` must sit; checked once the frame
    /// is buffered, because redis-protocol skips those two bytes unchecked.
    blob_ends: Vec<usize>,
    /// The whole frame has been walked.
    complete: bool,
}

impl Scan {
    fn reset(&mut self) {
        self.pos = 0;
        self.line_from = 0;
        self.open.clear();
        self.nulls.clear();
        self.blob_ends.clear();
        self.complete = false;
    }

    /// Walks as far as `avail` allows: `Some(len)` once the frame is complete
    /// and fully buffered, `None` when more bytes are needed.
    fn advance(&mut self, avail: &[u8]) -> Result<Option<usize>, RespError> {
        loop {
            if self.complete {
                if self.pos > avail.len() {
                    return Ok(None);
                }
                if let Some(&at) = self
                    .blob_ends
                    .iter()
                    .find(|&&at| &avail[at..at + 2] != b"\r\n")
                {
                    return Err(RespError::Protocol(format!(
                        "blob not followed by CRLF at frame offset {at}"
                    )));
                }
                return Ok(Some(self.pos));
            }
            let Some(&kind) = avail.get(self.pos) else {
                return Ok(None);
            };
            if !b"+-:,(#_$!=*~>%|".contains(&kind) {
                return Err(RespError::Protocol(format!(
                    "invalid type byte {:?} at frame offset {}",
                    char::from(kind),
                    self.pos
                )));
            }
            let from = self.line_from.max(self.pos + 1);
            let Some(nl) = find_crlf_end(avail, from, self.pos + 1) else {
                self.line_from = avail.len();
                return Ok(None);
            };
            self.line_from = 0;
            let header = &avail[self.pos + 1..nl - 1];
            let after = nl + 1;
            match kind {
                b'$' | b'*' if header == b"-1" => {
                    self.nulls.push(self.pos);
                    self.pos = after;
                }
                b'$' | b'!' | b'=' => {
                    let n = parse_len(header)?;
                    let end = after
                        .checked_add(n)
                        .ok_or_else(|| RespError::Protocol("length overflow".into()))?;
                    self.blob_ends.push(end);
                    self.pos = end
                        .checked_add(2)
                        .ok_or_else(|| RespError::Protocol("length overflow".into()))?;
                }
                b'*' | b'~' | b'>' | b'%' | b'|' => {
                    let n = parse_len(header)?;
                    let children = match kind {
                        b'%' => n.checked_mul(2),
                        // Attributes are followed by the value they annotate,
                        // which together count as one element.
                        b'|' => n.checked_mul(2).and_then(|c| c.checked_add(1)),
                        _ => Some(n),
                    }
                    .ok_or_else(|| RespError::Protocol("length overflow".into()))?;
                    self.pos = after;
                    if children > 0 {
                        if self.open.len() >= MAX_DEPTH {
                            return Err(RespError::Protocol(format!(
                                "nesting deeper than {MAX_DEPTH}"
                            )));
                        }
                        self.open.push(children);
                        continue;
                    }
                }
                // Line-only types: + - : , ( # _
                _ => self.pos = after,
            }
            // One element finished: close every aggregate it completes.
            loop {
                match self.open.last_mut() {
                    None => {
                        self.complete = true;
                        break;
                    }
                    Some(left) => {
                        *left -= 1;
                        if *left > 0 {
                            break;
                        }
                        self.open.pop();
                    }
                }
            }
        }
    }
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

/// A non-negative decimal length from a header line.
fn parse_len(header: &[u8]) -> Result<usize, RespError> {
    let bad = || {
        RespError::Protocol(format!(
            "invalid length {:?}",
            String::from_utf8_lossy(header)
        ))
    };
    if header.is_empty() || header.len() > 19 || !header.iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    std::str::from_utf8(header)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)
}

/// Rewrites each RESP2 null (`$-1\r\n` or `*-1\r\n`, 5 bytes) at the given
/// offsets into RESP3 null (`_\r\n`): redis-protocol's RESP3 parser reads
/// `-1` as a streamed-type marker and fails, while its RESP2 parser rejects
/// RESP3 types, so this lets one parser handle mixed frames.
fn patch_resp2_nulls(frame: &[u8], nulls: &[usize]) -> Vec<u8> {
    let mut out = Vec::with_capacity(frame.len());
    let mut copied = 0;
    for &at in nulls {
        out.extend_from_slice(&frame[copied..at]);
        out.extend_from_slice(b"_\r\n");
        copied = at + 5;
    }
    out.extend_from_slice(&frame[copied..]);
    out
}

/// Parses exactly one complete frame with redis-protocol.
fn parse_frame(frame: &[u8]) -> Result<Value, RespError> {
    match decode_resp3(frame) {
        Ok(Some((parsed, used))) if used == frame.len() => from_frame(parsed),
        Ok(_) => Err(RespError::Protocol(
            "frame boundary disagrees with the parser".into(),
        )),
        Err(e) => Err(RespError::Protocol(e.to_string())),
    }
}

/// Converts redis-protocol's frame into our [`Value`], moving buffers.
fn from_frame(frame: OwnedFrame) -> Result<Value, RespError> {
    fn all(frames: impl IntoIterator<Item = OwnedFrame>) -> Result<Vec<Value>, RespError> {
        frames.into_iter().map(from_frame).collect()
    }
    Ok(match frame {
        OwnedFrame::BlobString { data, .. } | OwnedFrame::VerbatimString { data, .. } => {
            Value::Bulk(data)
        }
        OwnedFrame::SimpleString { data, .. } | OwnedFrame::BigNumber { data, .. } => {
            Value::Simple(lossy(data))
        }
        OwnedFrame::SimpleError { data, .. } => Value::Error(data),
        OwnedFrame::BlobError { data, .. } => Value::Error(lossy(data)),
        OwnedFrame::Number { data, .. } => Value::Int(data),
        OwnedFrame::Double { data, .. } => Value::Double(data),
        OwnedFrame::Boolean { data, .. } => Value::Bool(data),
        OwnedFrame::Null => Value::Nil,
        OwnedFrame::Array { data, .. } => Value::Array(all(data)?),
        OwnedFrame::Set { data, .. } => Value::Array(all(data)?),
        OwnedFrame::Push { data, .. } => Value::Push(all(data)?),
        OwnedFrame::Map { data, .. } => Value::Map(
            data.into_iter()
                .map(|(k, v)| Ok((from_frame(k)?, from_frame(v)?)))
                .collect::<Result<_, RespError>>()?,
        ),
        OwnedFrame::Hello { .. } | OwnedFrame::ChunkedString(_) => {
            return Err(RespError::Protocol(
                "unexpected HELLO or streamed chunk from server".into(),
            ))
        }
    })
}

/// Text from bytes, keeping valid UTF-8 without a copy.
fn lossy(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::Bulk(s.as_bytes().to_vec())
    }

    /// Decodes everything in `input` fed at once; panics on error.
    fn decode_all(input: &[u8]) -> Vec<Value> {
        let mut d = Decoder::new(1 << 20);
        d.feed(input);
        let mut out = Vec::new();
        while let Some(v) = d.next().unwrap() {
            out.push(v);
        }
        assert_eq!(d.buffered(), 0, "all input consumed");
        out
    }

    fn decode_one(input: &[u8]) -> Value {
        let mut all = decode_all(input);
        assert_eq!(all.len(), 1, "exactly one value in {input:?}");
        all.pop().unwrap()
    }

    fn sorted(mut pairs: Vec<(String, String)>) -> Vec<(String, String)> {
        pairs.sort();
        pairs
    }

    fn pair(k: &str, v: &str) -> (String, String) {
        (k.to_string(), v.to_string())
    }

    #[test]
    fn encodes_command_exactly_and_appends() {
        let mut out = b"prefix".to_vec();
        encode_command(&mut out, &[b"HGETALL", b"exec:42"]);
        assert_eq!(
            out,
            b"prefix*2\r\n$7\r\nHGETALL\r\n$7\r\nexec:42\r\n".to_vec()
        );

        let mut out = Vec::new();
        encode_command(&mut out, &[b"PUBLISH", b"", b"a\r\nb"]);
        assert_eq!(
            out,
            b"*3\r\n$7\r\nPUBLISH\r\n$0\r\n\r\n$4\r\na\r\nb\r\n".to_vec()
        );

        let mut out = Vec::new();
        encode_command(&mut out, &[]);
        assert_eq!(out, b"*0\r\n".to_vec());
    }

    #[test]
    fn encoded_command_decodes_back() {
        let mut out = Vec::new();
        encode_command(&mut out, &[b"SUBSCRIBE", b"sse:exec:1", &[0, 255, 13]]);
        assert_eq!(
            decode_one(&out),
            Value::Array(vec![
                bulk("SUBSCRIBE"),
                bulk("sse:exec:1"),
                Value::Bulk(vec![0, 255, 13])
            ])
        );
    }

    #[test]
    fn resp3_push_message() {
        let v =
            decode_one(b">3\r\n$7\r\nmessage\r\n$10\r\nsse:exec:1\r\n$11\r\n{\"a\":\"\r\nb\"}\r\n");
        assert_eq!(
            v,
            Value::Push(vec![
                bulk("message"),
                bulk("sse:exec:1"),
                bulk("{\"a\":\"\r\nb\"}")
            ])
        );
        let expected = PubSub::Message {
            channel: b"sse:exec:1".to_vec(),
            payload: b"{\"a\":\"\r\nb\"}".to_vec(),
        };
        assert_eq!(pubsub(&v), Some(expected.clone()));
        assert_eq!(v.into_pubsub(), Ok(expected));
    }

    #[test]
    fn resp2_message_array() {
        let v = decode_one(b"*3\r\n$7\r\nmessage\r\n$4\r\nchan\r\n$5\r\nhello\r\n");
        assert!(matches!(v, Value::Array(_)));
        assert_eq!(
            pubsub(&v),
            Some(PubSub::Message {
                channel: b"chan".to_vec(),
                payload: b"hello".to_vec()
            })
        );
    }

    #[test]
    fn subscribe_confirmations() {
        let v = decode_one(b">3\r\n$9\r\nsubscribe\r\n$4\r\nchan\r\n:1\r\n");
        assert_eq!(
            pubsub(&v),
            Some(PubSub::Subscribed {
                channel: b"chan".to_vec(),
                count: 1
            })
        );
        let v = decode_one(b"*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n");
        assert_eq!(
            pubsub(&v),
            Some(PubSub::Subscribed {
                channel: b"b".to_vec(),
                count: 2
            })
        );
        let v = decode_one(b">3\r\n$11\r\nunsubscribe\r\n$4\r\nchan\r\n:0\r\n");
        assert_eq!(
            pubsub(&v),
            Some(PubSub::Unsubscribed {
                channel: b"chan".to_vec(),
                count: 0
            })
        );
        // Unsubscribe-all with nothing subscribed: null channel, RESP2 form.
        let v = decode_one(b"*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n");
        assert_eq!(
            v.into_pubsub(),
            Ok(PubSub::Unsubscribed {
                channel: Vec::new(),
                count: 0
            })
        );
        let v = decode_one(b">3\r\n$10\r\nssubscribe\r\n$1\r\nx\r\n:1\r\n");
        assert_eq!(
            pubsub(&v),
            Some(PubSub::Subscribed {
                channel: b"x".to_vec(),
                count: 1
            })
        );
        let v = decode_one(b">3\r\n$12\r\nsunsubscribe\r\n$1\r\nx\r\n:0\r\n");
        assert_eq!(
            pubsub(&v),
            Some(PubSub::Unsubscribed {
                channel: b"x".to_vec(),
                count: 0
            })
        );
    }

    #[test]
    fn pmessage_and_smessage() {
        let v = decode_one(
            b">4\r\n$8\r\npmessage\r\n$7\r\nsse:*:1\r\n$10\r\nsse:exec:1\r\n$2\r\n{}\r\n",
        );
        assert_eq!(
            pubsub(&v),
            Some(PubSub::Message {
                channel: b"sse:exec:1".to_vec(),
                payload: b"{}".to_vec()
            })
        );
        let v = decode_one(b"*4\r\n$8\r\npmessage\r\n$1\r\n*\r\n$1\r\nc\r\n$1\r\np\r\n");
        assert_eq!(
            v.into_pubsub(),
            Ok(PubSub::Message {
                channel: b"c".to_vec(),
                payload: b"p".to_vec()
            })
        );
        let v = decode_one(b">3\r\n$8\r\nsmessage\r\n$2\r\nsc\r\n$3\r\npay\r\n");
        assert_eq!(
            pubsub(&v),
            Some(PubSub::Message {
                channel: b"sc".to_vec(),
                payload: b"pay".to_vec()
            })
        );
    }

    #[test]
    fn ordinary_replies_are_not_pubsub() {
        for input in [
            &b"+PONG\r\n"[..],
            b"*2\r\n$4\r\npong\r\n$0\r\n\r\n",
            // HGETALL of a hash whose first field is "message": even length.
            b"*4\r\n$7\r\nmessage\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n",
            // subscribe-shaped but the count is not a number
            b"*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n$1\r\nx\r\n",
            // non-pub/sub push (client tracking)
            b">2\r\n$10\r\ninvalidate\r\n*1\r\n$3\r\nkey\r\n",
            b"%1\r\n$7\r\nmessage\r\n$1\r\nx\r\n",
        ] {
            let v = decode_one(input);
            assert_eq!(pubsub(&v), None, "{input:?}");
            assert_eq!(v.clone().into_pubsub(), Err(v));
        }
    }

    #[test]
    fn hgetall_resp3_map_and_resp2_array() {
        let map =
            decode_one(b"%2\r\n$7\r\nuser_id\r\n$2\r\nu1\r\n$6\r\nstatus\r\n$7\r\nrunning\r\n");
        assert!(matches!(&map, Value::Map(m) if m.len() == 2));
        let expected = vec![pair("status", "running"), pair("user_id", "u1")];
        assert_eq!(sorted(map.into_pairs().unwrap()), expected);

        let flat =
            decode_one(b"*4\r\n$7\r\nuser_id\r\n$2\r\nu1\r\n$6\r\nstatus\r\n$7\r\nrunning\r\n");
        // A flat array keeps server order.
        assert_eq!(
            flat.into_pairs().unwrap(),
            vec![pair("user_id", "u1"), pair("status", "running")]
        );

        assert_eq!(decode_one(b"%0\r\n").into_pairs().unwrap(), vec![]);
        assert_eq!(decode_one(b"*0\r\n").into_pairs().unwrap(), vec![]);
        assert_eq!(decode_one(b"_\r\n").into_pairs().unwrap(), vec![]);
        assert_eq!(decode_one(b"*-1\r\n").into_pairs().unwrap(), vec![]);
    }

    #[test]
    fn into_pairs_errors() {
        let bad_utf8 = decode_one(b"*2\r\n$1\r\nk\r\n$2\r\n\xff\xfe\r\n");
        assert!(matches!(
            bad_utf8.into_pairs(),
            Err(RespError::Unexpected(_))
        ));
        let odd = decode_one(b"*3\r\n$1\r\nk\r\n$1\r\nv\r\n$1\r\nx\r\n");
        assert!(matches!(odd.into_pairs(), Err(RespError::Unexpected(_))));
        let err = decode_one(b"-WRONGTYPE Operation against a key\r\n");
        assert_eq!(
            err.into_pairs(),
            Err(RespError::Server(
                "WRONGTYPE Operation against a key".into()
            ))
        );
        assert!(matches!(
            Value::Int(3).into_pairs(),
            Err(RespError::Unexpected(_))
        ));
    }

    #[test]
    fn error_reply_is_a_value() {
        let v = decode_one(b"-ERR unknown command 'FOO'\r\n");
        assert_eq!(v, Value::Error("ERR unknown command 'FOO'".into()));
        assert_eq!(
            v.into_result(),
            Err(RespError::Server("ERR unknown command 'FOO'".into()))
        );
        assert_eq!(
            decode_one(b"!21\r\nSYNTAX invalid syntax\r\n"),
            Value::Error("SYNTAX invalid syntax".into())
        );
        assert_eq!(
            decode_one(b"+OK\r\n").into_result(),
            Ok(Value::Simple("OK".into()))
        );
    }

    #[test]
    fn nested_arrays() {
        // XREAD-like RESP2 reply: [[stream, [[id, [field, value]]]]]
        let v = decode_one(
            b"*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n",
        );
        assert_eq!(
            v,
            Value::Array(vec![Value::Array(vec![
                bulk("s"),
                Value::Array(vec![Value::Array(vec![
                    bulk("1-0"),
                    Value::Array(vec![bulk("f"), bulk("v")])
                ])])
            ])])
        );
        assert_eq!(
            decode_one(b"*2\r\n*0\r\n*1\r\n:7\r\n"),
            Value::Array(vec![
                Value::Array(vec![]),
                Value::Array(vec![Value::Int(7)])
            ])
        );
    }

    #[test]
    fn nulls_in_every_encoding() {
        assert_eq!(decode_one(b"$-1\r\n"), Value::Nil);
        assert_eq!(decode_one(b"*-1\r\n"), Value::Nil);
        assert_eq!(decode_one(b"_\r\n"), Value::Nil);
        // RESP2 nulls nested, also next to RESP3-only types.
        assert_eq!(
            decode_one(b"*4\r\n$-1\r\n:1\r\n*-1\r\n#t\r\n"),
            Value::Array(vec![
                Value::Nil,
                Value::Int(1),
                Value::Nil,
                Value::Bool(true)
            ])
        );
        assert_eq!(decode_one(b"$0\r\n\r\n"), Value::Bulk(vec![]));
    }

    #[test]
    fn resp3_scalar_kinds() {
        assert_eq!(decode_one(b",1.5\r\n"), Value::Double(1.5));
        assert_eq!(decode_one(b"#f\r\n"), Value::Bool(false));
        assert_eq!(decode_one(b":-12\r\n"), Value::Int(-12));
        assert_eq!(
            decode_one(b"(3492890328409238509324850943850943825024385\r\n"),
            Value::Simple("3492890328409238509324850943850943825024385".into())
        );
        assert_eq!(
            decode_one(b"=15\r\ntxt:Some string\r\n"),
            bulk("Some string")
        );
        let set = decode_one(b"~2\r\n:1\r\n:2\r\n");
        let Value::Array(mut items) = set else {
            panic!("set should fold into an array")
        };
        items.sort_by_key(|v| v.as_int());
        assert_eq!(items, vec![Value::Int(1), Value::Int(2)]);
        // Attributes are dropped; the annotated value remains.
        assert_eq!(
            decode_one(b"|1\r\n+key\r\n:9\r\n*2\r\n:1\r\n:2\r\n"),
            Value::Array(vec![Value::Int(1), Value::Int(2)])
        );
    }

    #[test]
    fn accessors() {
        assert_eq!(bulk("42").as_int(), Some(42));
        assert_eq!(Value::Simple("7".into()).as_int(), Some(7));
        assert_eq!(Value::Int(-3).as_int(), Some(-3));
        assert_eq!(bulk("x").as_int(), None);
        assert_eq!(Value::Nil.as_int(), None);
        assert_eq!(bulk("hé").as_str(), Some("hé"));
        assert_eq!(Value::Bulk(vec![0xff]).as_str(), None);
        assert_eq!(Value::Bulk(vec![0xff]).as_bytes(), Some(&[0xff][..]));
        assert_eq!(Value::Simple("OK".into()).as_bytes(), Some(&b"OK"[..]));
        assert_eq!(Value::Int(1).as_bytes(), None);
        assert_eq!(Value::Error("E".into()).as_str(), None);
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

    fn normalized(values: Vec<Value>) -> Vec<Value> {
        // Map order is not preserved by redis-protocol; sort map entries.
        values
            .into_iter()
            .map(|v| match v {
                Value::Map(mut m) => {
                    m.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
                    Value::Map(m)
                }
                other => other,
            })
            .collect()
    }

    #[test]
    fn split_at_every_byte_boundary_yields_same_values() {
        let whole = normalized(decode_all(STREAM));
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
            assert_eq!(normalized(got), whole, "split at {split}");
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
        assert_eq!(normalized(got), whole);
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
        // Known from the header alone.
        let mut d = Decoder::new(64);
        d.feed(b"$100\r\n");
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

    #[test]
    fn error_display() {
        assert_eq!(
            RespError::TooLarge { limit: 8 }.to_string(),
            "RESP frame larger than the 8-byte limit"
        );
        assert_eq!(
            RespError::Server("ERR x".into()).to_string(),
            "Redis error: ERR x"
        );
    }
}

/// Property tests: command encoding round-trips, and decoding does not
/// depend on how the bytes are split into reads.
#[cfg(test)]
mod proptests {
    use super::*;
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
                // Map keys are distinct bulk strings: redis-protocol keeps maps
                // in a hash map, so duplicates would collapse.
                proptest::collection::btree_map("[a-z]{0,6}", inner, 0..4).prop_map(|entries| {
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

    fn sorted(value: Value) -> Value {
        match value {
            Value::Map(entries) => {
                let mut entries: Vec<_> = entries
                    .into_iter()
                    .map(|(k, v)| (sorted(k), sorted(v)))
                    .collect();
                entries.sort_by_key(|e| format!("{e:?}"));
                Value::Map(entries)
            }
            Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
            Value::Push(items) => Value::Push(items.into_iter().map(sorted).collect()),
            other => other,
        }
    }

    /// What stays the same between two decodes of `input`: a RESP3 set (`~`)
    /// decodes to an array in hash-set order, and a map (`%`, attributes `|`)
    /// with a duplicate key keeps either value, both at random (redis-protocol
    /// uses hash containers). Where `input` may hold them, compare array
    /// items as a multiset, and maps by their keys only.
    fn unordered(value: Value, input: &[u8]) -> Value {
        let sets = input.contains(&b'~');
        let maps = input.contains(&b'%') || input.contains(&b'|');
        if !sets && !maps {
            return value;
        }
        let all = |items: Vec<Value>| {
            let mut items: Vec<Value> = items.into_iter().map(|v| unordered(v, input)).collect();
            items.sort_by_key(|v| format!("{v:?}"));
            items
        };
        match value {
            Value::Array(items) => Value::Array(all(items)),
            Value::Push(items) => Value::Push(all(items)),
            Value::Map(entries) => {
                let mut entries: Vec<(Value, Value)> = entries
                    .into_iter()
                    .map(|(k, v)| {
                        (
                            unordered(k, input),
                            if maps {
                                Value::Nil
                            } else {
                                unordered(v, input)
                            },
                        )
                    })
                    .collect();
                entries.sort_by_key(|e| format!("{e:?}"));
                Value::Map(entries)
            }
            other => other,
        }
    }

    /// Found by the `resp_decode` fuzz target: a map with a duplicate key
    /// keeps one entry, with either value (the whole and split decodes of one
    /// input disagreed). Redis never sends such maps; the gateway reads maps
    /// only from HGETALL, whose fields are unique.
    #[test]
    fn duplicate_map_keys_collapse_to_one_entry() {
        let mut d = Decoder::new(1024);
        d.feed(b"%2\r\n+k\r\n:1\r\n+k\r\n:2\r\n");
        let Some(Value::Map(entries)) = d.next().unwrap() else {
            panic!("a map")
        };
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].0, Value::Simple("k".into()));
        assert!(matches!(entries[0].1, Value::Int(1 | 2)));
    }

    /// Found by the `resp_decode` fuzz target (the split and whole decodes of
    /// one input disagreed): set items come in hash order, so callers must not
    /// rely on the order of a set. The gateway reads no sets.
    #[test]
    fn sets_decode_to_arrays_in_no_fixed_order() {
        let mut d = Decoder::new(1024);
        d.feed(b"~3\r\n+a\r\n+b\r\n:7\r\n");
        let Some(Value::Array(items)) = d.next().unwrap() else {
            panic!("a set decodes to an array")
        };
        let mut items: Vec<String> = items.iter().map(|v| format!("{v:?}")).collect();
        items.sort();
        assert_eq!(items, ["Int(7)", "Simple(\"a\")", "Simple(\"b\")"]);
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
                values.push(sorted(v));
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
            let expected: Vec<Value> = values.into_iter().map(sorted).collect();
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
                            Ok(Some(v)) => values.push(format!("{:?}", unordered(sorted(v), &bytes))),
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
