//! A small streaming HTTP/1.1 client (the chunked decoder is the testkit's).

use super::*;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// How a response body ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndKind {
    /// Terminal chunk, full content-length, or EOF of a close-delimited body.
    Clean,
    /// Reset, EOF inside a chunked/length body, or a framing error.
    Abrupt(String),
}

#[derive(Debug)]
pub enum BodyRead {
    Data(Vec<u8>),
    End(EndKind),
    Timeout,
}

pub use sse_gateway_testkit::chunked::ChunkedDecoder;

enum BodyMode {
    Chunked(ChunkedDecoder),
    Length(u64),
    UntilClose,
}

/// A response whose head has been read; the body is read incrementally.
pub struct HttpResponse {
    pub status: u16,
    pub reason: String,
    /// Header names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    stream: TcpStream,
    raw: Vec<u8>,
    mode: BodyMode,
    end: Option<EndKind>,
}

impl fmt::Debug for HttpResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpResponse")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .finish()
    }
}

/// Send `GET path` with extra headers and read the response head.
pub fn send_get(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> io::Result<HttpResponse> {
    send_request(addr, "GET", path, headers, None, timeout)
}

/// Send `method path` with extra headers and, when `body` is Some, that body
/// with a `content-length`; read the response head. A server that answers
/// before reading the whole body (e.g. 413) may close its side while we are
/// still writing: the write error is then ignored and the answer read anyway.
pub fn send_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    timeout: Duration,
) -> io::Result<HttpResponse> {
    let deadline = Instant::now() + timeout;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_nodelay(true)?;
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: sse-gateway-e2e\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(body) = body {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(req.as_bytes())?;
    let write_err = match body {
        Some(body) => stream.write_all(body).err(),
        None => None,
    };
    HttpResponse::read_head(stream, deadline).map_err(|e| match write_err {
        Some(w) => io::Error::new(
            e.kind(),
            format!("{e} (and writing the request body failed: {w})"),
        ),
        None => e,
    })
}

/// Write `raw`, a complete request byte for byte (e.g. with header values
/// that are not UTF-8), on an already connected `stream` and read the
/// response head.
pub fn send_raw_on(
    mut stream: TcpStream,
    raw: &[u8],
    timeout: Duration,
) -> io::Result<HttpResponse> {
    let deadline = Instant::now() + timeout;
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(raw)?;
    HttpResponse::read_head(stream, deadline)
}

/// Connect to `addr` and [`send_raw_on`].
pub fn send_raw(addr: SocketAddr, raw: &[u8], timeout: Duration) -> io::Result<HttpResponse> {
    let stream = TcpStream::connect_timeout(&addr, timeout)?;
    send_raw_on(stream, raw, timeout)
}

/// Read from `stream` with the time left until `deadline`.
/// Ok(Some(n)): n bytes (0 = EOF); Ok(None): timed out.
fn read_until_deadline(
    stream: &mut TcpStream,
    buf: &mut [u8],
    deadline: Instant,
) -> io::Result<Option<usize>> {
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        let left = (deadline - now).max(Duration::from_millis(1));
        stream.set_read_timeout(Some(left))?;
        match stream.read(buf) {
            Ok(n) => return Ok(Some(n)),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(None)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

impl HttpResponse {
    fn read_head(mut stream: TcpStream, deadline: Instant) -> io::Result<HttpResponse> {
        let mut raw = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        let head_end = loop {
            if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            match read_until_deadline(&mut stream, &mut buf, deadline)? {
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "no complete response head in time (got {:?})",
                            String::from_utf8_lossy(&raw)
                        ),
                    ))
                }
                Some(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "connection closed before the response head (got {:?})",
                            String::from_utf8_lossy(&raw)
                        ),
                    ))
                }
                Some(n) => raw.extend_from_slice(&buf[..n]),
            }
        };
        let head = String::from_utf8_lossy(&raw[..head_end]).to_string();
        raw.drain(..head_end + 4);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default();
        if !version.starts_with("HTTP/1.") {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad status line {status_line:?}"),
            ));
        }
        let status: u16 = parts.next().unwrap_or_default().parse().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad status line {status_line:?}"),
            )
        })?;
        let reason = parts.next().unwrap_or_default().to_string();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| {
                let (k, v) = l.split_once(':')?;
                Some((k.trim().to_ascii_lowercase(), v.trim().to_string()))
            })
            .collect();
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let mode = if header("transfer-encoding")
            .map(|v| v.to_ascii_lowercase().contains("chunked"))
            .unwrap_or(false)
        {
            BodyMode::Chunked(ChunkedDecoder::new())
        } else if let Some(len) = header("content-length") {
            BodyMode::Length(len.parse().map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad content-length {len:?}"),
                )
            })?)
        } else if status == 204 || status == 304 {
            BodyMode::Length(0)
        } else {
            BodyMode::UntilClose
        };
        Ok(HttpResponse {
            status,
            reason,
            headers,
            stream,
            raw,
            mode,
            end: None,
        })
    }

    /// First value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn is_chunked(&self) -> bool {
        matches!(self.mode, BodyMode::Chunked(_))
    }

    /// The next piece of body, the end of the body, or a timeout.
    pub fn read_body(&mut self, timeout: Duration) -> BodyRead {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 16 * 1024];
        loop {
            if let Some(end) = &self.end {
                return BodyRead::End(end.clone());
            }
            // Decode what we already have.
            if !self.raw.is_empty() || matches!(self.mode, BodyMode::Length(0)) {
                let raw = std::mem::take(&mut self.raw);
                let data = match &mut self.mode {
                    BodyMode::Chunked(dec) => match dec.feed(&raw) {
                        Ok(data) => {
                            if dec.is_done() {
                                self.end = Some(EndKind::Clean);
                            }
                            data
                        }
                        Err(e) => {
                            self.end = Some(EndKind::Abrupt(format!("chunked framing: {e}")));
                            Vec::new()
                        }
                    },
                    BodyMode::Length(left) => {
                        let take = (*left as usize).min(raw.len());
                        *left -= take as u64;
                        if *left == 0 {
                            self.end = Some(EndKind::Clean);
                        }
                        raw[..take].to_vec()
                    }
                    BodyMode::UntilClose => raw,
                };
                if !data.is_empty() {
                    return BodyRead::Data(data);
                }
                if self.end.is_some() {
                    continue;
                }
            }
            match read_until_deadline(&mut self.stream, &mut buf, deadline) {
                Ok(None) => return BodyRead::Timeout,
                Ok(Some(0)) => {
                    self.end = Some(match self.mode {
                        BodyMode::UntilClose => EndKind::Clean,
                        BodyMode::Chunked(_) => {
                            EndKind::Abrupt("EOF before the terminal chunk".into())
                        }
                        BodyMode::Length(left) => {
                            EndKind::Abrupt(format!("EOF with {left} body bytes missing"))
                        }
                    });
                }
                Ok(Some(n)) => self.raw.extend_from_slice(&buf[..n]),
                Err(e) => self.end = Some(EndKind::Abrupt(format!("read error: {e}"))),
            }
        }
    }

    /// Read the whole body (at most `timeout`). Returns the bytes and how it
    /// ended (None: still open when the time ran out).
    pub fn read_to_end(&mut self, timeout: Duration) -> (Vec<u8>, Option<EndKind>) {
        let deadline = Instant::now() + timeout;
        let mut body = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.read_body(left) {
                BodyRead::Data(d) => body.extend_from_slice(&d),
                BodyRead::End(end) => return (body, Some(end)),
                BodyRead::Timeout => return (body, None),
            }
        }
    }

    /// Read the rest of the body (at most `timeout`) into a [`Response`].
    pub fn into_response(mut self, timeout: Duration) -> Response {
        let (body, end) = self.read_to_end(timeout);
        Response {
            status: self.status,
            headers: self.headers.clone(),
            body,
            end,
        }
    }

    /// Close the connection both ways (what a browser tab closing does).
    pub fn disconnect(self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// A complete (non-streaming) response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// None when the body was still open after the read timeout.
    pub end: Option<EndKind>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): status {} headers {:?} body {:?}",
                self.status,
                self.headers,
                self.text()
            )
        })
    }
}

/// A plain GET: status, headers, body. An event stream is read for at most
/// one second (so a wrong 200 stream does not stall the test).
pub fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Response {
    request(addr, "GET", path, headers, None)
}

/// Any method, optional body (sent with `content-length`); the complete
/// response. An event stream is read for at most one second.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Response {
    let mut resp = send_request(addr, method, path, headers, body, Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let streaming = resp
        .header("content-type")
        .map(|v| v.starts_with("text/event-stream"))
        .unwrap_or(false);
    let timeout = if streaming {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(15)
    };
    let (body, end) = resp.read_to_end(timeout);
    Response {
        status: resp.status,
        headers: resp.headers.clone(),
        body,
        end,
    }
}

/// `POST path` with a JSON (or any text) body, optionally with a Bearer token.
pub fn post_json(addr: SocketAddr, path: &str, token: Option<&str>, body: &str) -> Response {
    let auth = token.map(bearer);
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    request(addr, "POST", path, &headers, Some(body.as_bytes()))
}
