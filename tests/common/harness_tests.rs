//! Harness self-tests (no gateway needed).

use super::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

#[test]
fn history_ids_parse() {
    assert_eq!(
        parse_history_id("1732712345678-0"),
        Some((1732712345678, 0))
    );
    assert_eq!(parse_history_id("5-12"), Some((5, 12)));
    for bad in ["", "123", "1-2-3", "-1", "1-", "a-1", "1-b", " 1-2"] {
        assert_eq!(parse_history_id(bad), None, "{bad:?}");
    }
}

#[test]
fn request_sends_method_headers_and_body() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut req = Vec::new();
        let mut buf = [0u8; 4096];
        while !req.ends_with(b"{\"a\":1}") {
            let n = s.read(&mut buf).unwrap();
            assert!(
                n > 0,
                "EOF before the body: {:?}",
                String::from_utf8_lossy(&req)
            );
            req.extend_from_slice(&buf[..n]);
        }
        s.write_all(b"HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\ncontent-length: 8\r\n\r\n{\"id\":1}")
            .unwrap();
        String::from_utf8(req).unwrap()
    });
    let r = post_json(addr, "/p", Some("tok"), "{\"a\":1}");
    assert_eq!(r.status, 202);
    assert_eq!(r.json()["id"], 1);
    let req = server.join().unwrap();
    assert!(req.starts_with("POST /p HTTP/1.1\r\n"), "{req}");
    assert!(req.contains("Authorization: Bearer tok\r\n"), "{req}");
    assert!(req.contains("Content-Length: 7\r\n"), "{req}");
}

/// Serve canned bytes on a local socket, with pauses between pieces.
fn canned_server(pieces: Vec<(Vec<u8>, u64)>, close: bool) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4096];
        let mut req = Vec::new();
        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                return;
            }
            req.extend_from_slice(&buf[..n]);
        }
        for (bytes, pause_ms) in pieces {
            thread::sleep(Duration::from_millis(pause_ms));
            if s.write_all(&bytes).is_err() {
                return;
            }
        }
        if close {
            drop(s);
        } else {
            thread::sleep(Duration::from_secs(5));
        }
    });
    addr
}

#[test]
fn sse_stream_over_chunked_http() {
    let head =
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
            .to_vec();
    let addr = canned_server(
        vec![
            (head, 0),
            (b"1a\r\ndata: {\"event_type\":\"a\"}\n\n\r\n".to_vec(), 0),
            (b"8\r\n: ping\n\n\r\n".to_vec(), 300),
            (b"6\r\ndata: ".to_vec(), 0),
            (b"\r\n4\r\n1\n\nx\r\n".to_vec(), 50),
            (b"0\r\n\r\n".to_vec(), 0),
        ],
        false,
    );
    let mut s = open_stream(addr, "/x", &[]);
    assert_eq!(s.resp.header("Content-Type"), Some("text/event-stream"));
    assert!(s.resp.is_chunked());
    assert_eq!(s.next_json(Duration::from_secs(2))["event_type"], "a");
    assert!(matches!(s.next(Duration::from_millis(50)), Next::Timeout));
    assert!(matches!(
        s.next(Duration::from_secs(2)),
        Next::Item(SseItem::Comment(c)) if c == "ping"
    ));
    assert_eq!(s.next_event(Duration::from_secs(2)).data, "1");
    // "x" is an incomplete line at the terminal chunk: no event; clean end.
    s.expect_end(Duration::from_secs(2));
}

#[test]
fn abrupt_end_and_plain_get() {
    let head = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\ndata:".to_vec();
    let addr = canned_server(vec![(head, 0)], true);
    let mut resp = send_get(addr, "/", &[], Duration::from_secs(2)).unwrap();
    let (body, end) = resp.read_to_end(Duration::from_secs(2));
    assert_eq!(body, b"data:");
    assert!(matches!(end, Some(EndKind::Abrupt(_))), "{end:?}");

    let addr = canned_server(
        vec![(
            b"HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: 13\r\n\r\n{\"detail\":1}\n"
                .to_vec(),
            0,
        )],
        false,
    );
    let r = get(addr, "/", &[]);
    assert_eq!(r.status, 401);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.json()["detail"], 1);
    assert_eq!(r.end, Some(EndKind::Clean));

    let addr = canned_server(vec![(b"HTTP/1.1 500 X\r\n\r\nbye".to_vec(), 0)], true);
    let r = get(addr, "/", &[]);
    assert_eq!(
        (r.status, r.text().as_str(), r.end),
        (500, "bye", Some(EndKind::Clean))
    );
}

#[test]
fn jwt_hs256_matches_reference_vector() {
    // RFC 7515 appendix A.1 uses a binary key; check our HMAC against the
    // well-known jwt.io example instead (secret "your-256-bit-secret").
    let header = r#"{"alg":"HS256","typ":"JWT"}"#;
    let claims = r#"{"sub":"1234567890","name":"John Doe","iat":1516239022}"#;
    let input = format!(
        "{}.{}",
        jwt::b64(header.as_bytes()),
        jwt::b64(claims.as_bytes())
    );
    assert_eq!(
        format!("{input}.{}", jwt::hs256_sig("your-256-bit-secret", &input)),
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
    );
    let t = jwt::token("u1", "user");
    assert_eq!(t.split('.').count(), 3);
}

#[test]
fn execution_ids_are_unique_uuids() {
    let ids: std::collections::HashSet<String> = (0..1000).map(|_| new_execution_id()).collect();
    assert_eq!(ids.len(), 1000);
    for id in ids.iter().take(20) {
        let parts: Vec<&str> = id.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            vec![8, 4, 4, 4, 12],
            "{id}"
        );
        assert!(id.chars().all(|c| c == '-' || c.is_ascii_hexdigit()));
    }
}

#[test]
fn redis_server_start_stop_restart_and_helpers() {
    let mut r = RedisServer::start();
    let port = r.port();
    assert!(redis_ping(port));
    let id = new_execution_id();
    r.put_execution(&ExecRecord::new(&id, "alice", "running").with_result("{\"x\":1}"));
    let mut con = r.conn();
    let rec: std::collections::HashMap<String, String> = redis::cmd("HGETALL")
        .arg(format!("exec:{id}"))
        .query(&mut con)
        .unwrap();
    assert_eq!(rec["user_id"], "alice");
    assert_eq!(rec["result"], "{\"x\":1}");

    // A subscriber shows up in NUMSUB and receives PUBLISH.
    let ch = exec_channel(&id);
    let mut sub = TcpStream::connect(("127.0.0.1", port)).unwrap();
    sub.write_all(format!("SUBSCRIBE {ch}\r\n").as_bytes())
        .unwrap();
    r.wait_numsub(&ch, 1, Duration::from_secs(5)).unwrap();
    assert_eq!(r.publish(&ch, "hello"), 1);
    drop(sub);
    r.wait_numsub(&ch, 0, Duration::from_secs(5)).unwrap();

    // The redis-crate subscriber gets messages in order, and leaves.
    let raw = r.raw_subscribe(&ch);
    assert_eq!(r.numsub(&ch), 1);
    r.publish(&ch, "{\"a\":1}");
    r.publish(&ch, "plain");
    assert_eq!(
        raw.next_json(Duration::from_secs(5)),
        serde_json::json!({"a": 1})
    );
    assert_eq!(
        raw.next_payload(Duration::from_secs(5)).as_deref(),
        Some(&b"plain"[..])
    );
    assert_eq!(raw.next_payload(Duration::from_millis(100)), None);
    drop(raw);
    r.wait_numsub(&ch, 0, Duration::from_secs(5)).unwrap();

    r.stop();
    assert!(!redis_ping(port));
    r.restart();
    assert_eq!(r.port(), port);
    assert!(redis_ping(port));
    drop(r);
    assert!(!redis_ping(port));
}

#[test]
fn the_matrix_passes_are_named_by_sse_gateway_host() {
    assert_eq!(
        Pass::parse("").unwrap(),
        Pass {
            host: Host::Wasmtime,
            build: Build::P2
        }
    );
    for p in Pass::ALL {
        assert_eq!(Pass::parse(&p.name()).unwrap(), p);
    }
    let names: Vec<String> = Pass::ALL.iter().map(|p| p.name()).collect();
    assert_eq!(names, ["wasmtime", "spin", "p3-wasmtime", "p3-spin"]);
    let e = Pass::parse("p3").unwrap_err();
    assert!(e.contains("p3-spin"), "{e}");
}
