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
//! The parser is our own ([`Decoder`], in `resp/decode.rs`): one resumable
//! walk frames and builds each value, so a large frame arriving in many
//! small reads costs linear, not quadratic, time, and size and nesting limits
//! hold before anything is allocated for a frame. Encoding is only commands
//! (arrays of bulk strings), a few lines here.

use std::fmt;

mod decode;

pub use decode::{Decoder, ProtocolError};

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
    /// RESP3 map (`%`), entries in the server's order.
    Map(Vec<(Value, Value)>),
    /// RESP3 out-of-band push (`>`), e.g. a pub/sub message.
    Push(Vec<Value>),
    /// A bulk string inside a push too large for the decoder's frame
    /// limit: discarded unread, only its length kept, so one oversized
    /// message costs its own channel, not the connection.
    Skipped(usize),
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
            Value::Skipped(_) => "skipped bulk string",
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
    /// A published message too large for the connection's frame limit,
    /// discarded unread ([`Value::Skipped`]): its subscribers are told.
    Dropped {
        /// Channel the message was published to.
        channel: Vec<u8>,
        /// The payload's length.
        bytes: usize,
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
    Dropped,
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
    let skipped = |i: usize| matches!(items.get(i), Some(Value::Skipped(_)));
    if items.len() == 3 && (is("message") || is("smessage")) && bytes(1) && bytes(2) {
        Some(PubSubKind::Message)
    } else if items.len() == 3 && (is("message") || is("smessage")) && bytes(1) && skipped(2) {
        Some(PubSubKind::Dropped)
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
    let skipped = match items.get(2) {
        Some(Value::Skipped(n)) => *n,
        _ => 0,
    };
    let mut it = items.into_iter().skip(1).map(into_bytes);
    let mut next = || it.next().unwrap_or_default();
    match kind {
        PubSubKind::Message => PubSub::Message {
            channel: next(),
            payload: next(),
        },
        PubSubKind::Dropped => PubSub::Dropped {
            channel: next(),
            bytes: skipped,
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
    push_header(out, b'*', args.len());
    for arg in args {
        push_header(out, b'$', arg.len());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// A type byte, a decimal count and CRLF.
fn push_header(out: &mut Vec<u8>, kind: u8, n: usize) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.push(kind);
    out.extend_from_slice(&digits[at..]);
    out.extend_from_slice(b"\r\n");
}

/// Why decoding or interpreting a reply failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RespError {
    /// The byte stream is not valid RESP; the connection must be dropped.
    Protocol(ProtocolError),
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
    Moved(crate::redis::cluster::Moved),
    /// Redis Cluster: the key's slot is migrating to another node (`-ASK`);
    /// not followed, the request fails and the client retries.
    Ask(crate::redis::cluster::Moved),
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
            RespError::Ask(m) => write!(f, "Redis error: ASK {} {}:{}", m.slot, m.host, m.port),
        }
    }
}

impl std::error::Error for RespError {}

#[cfg(test)]
mod tests {
    use super::decode::tests::{bulk, decode_one};
    use super::*;

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
        // Map entries keep the server's order.
        let expected = vec![pair("user_id", "u1"), pair("status", "running")];
        assert_eq!(map.into_pairs().unwrap(), expected);

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
        // A set folds into an array, in the server's order.
        assert_eq!(
            decode_one(b"~2\r\n:2\r\n:1\r\n"),
            Value::Array(vec![Value::Int(2), Value::Int(1)])
        );
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
