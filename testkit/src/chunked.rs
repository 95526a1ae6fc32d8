//! An incremental `transfer-encoding: chunked` decoder: the gateway's
//! streams are chunked HTTP/1.1 bodies read a socket read at a time.

/// Incremental `transfer-encoding: chunked` decoder.
#[derive(Debug, Default)]
pub struct ChunkedDecoder {
    buf: Vec<u8>,
    state: ChunkState,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    Data(u64),
    DataEnd,
    Trailers,
    Done,
}

impl ChunkedDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Feed raw bytes; returns the decoded payload available so far.
    pub fn feed(&mut self, input: &[u8]) -> Result<Vec<u8>, String> {
        self.buf.extend_from_slice(input);
        let mut out = Vec::new();
        let mut pos = 0;
        loop {
            match self.state {
                ChunkState::Done => {
                    // Bytes after the terminal chunk belong to the next
                    // response on the connection: keep them aside.
                    break;
                }
                ChunkState::Size => {
                    let Some(nl) = find_crlf(&self.buf[pos..]) else {
                        break;
                    };
                    let line = String::from_utf8_lossy(&self.buf[pos..pos + nl]).to_string();
                    pos += nl + 2;
                    let hex = line.split(';').next().unwrap_or("").trim();
                    let size = u64::from_str_radix(hex, 16)
                        .map_err(|_| format!("bad chunk size line {line:?}"))?;
                    self.state = if size == 0 {
                        ChunkState::Trailers
                    } else {
                        ChunkState::Data(size)
                    };
                }
                ChunkState::Data(left) => {
                    let avail = (self.buf.len() - pos) as u64;
                    if avail == 0 {
                        break;
                    }
                    let take = avail.min(left) as usize;
                    out.extend_from_slice(&self.buf[pos..pos + take]);
                    pos += take;
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left)
                    };
                }
                ChunkState::DataEnd => {
                    if self.buf.len() - pos < 2 {
                        break;
                    }
                    if &self.buf[pos..pos + 2] != b"\r\n" {
                        return Err("chunk data not followed by CRLF".into());
                    }
                    pos += 2;
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailers => {
                    let Some(nl) = find_crlf(&self.buf[pos..]) else {
                        break;
                    };
                    let empty = nl == 0;
                    pos += nl + 2;
                    if empty {
                        self.state = ChunkState::Done;
                    }
                }
            }
        }
        self.buf.drain(..pos);
        Ok(out)
    }
}

fn find_crlf(bytes: &[u8]) -> Option<usize> {
    bytes.windows(2).position(|w| w == b"\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incremental() {
        let body = b"7\r\ndata: x\r\n3;ext=1\r\n\n\n\n\r\n0\r\nTrailer: v\r\n\r\nNEXT";
        let mut whole = ChunkedDecoder::new();
        assert_eq!(whole.feed(body).unwrap(), b"data: x\n\n\n");
        assert!(whole.is_done());
        for split in 1..body.len() {
            let mut d = ChunkedDecoder::new();
            let mut out = d.feed(&body[..split]).unwrap();
            out.extend(d.feed(&body[split..]).unwrap());
            assert_eq!(out, b"data: x\n\n\n", "split at {split}");
            assert!(d.is_done(), "split at {split}");
        }
        let mut d = ChunkedDecoder::new();
        assert!(d.feed(b"zz\r\n").is_err());
        let mut d = ChunkedDecoder::new();
        assert!(d.feed(b"2\r\nabXY").is_err());
    }
}
