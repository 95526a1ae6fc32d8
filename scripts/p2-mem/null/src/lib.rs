//! Null WASIp2 HTTP component: answers 200 with a body, writes one SSE
//! line so the client sees the stream open, then blocks forever in
//! wasi:io/poll (on a timer that never fires, or, with `NULL_TCP_PORT` in
//! its environment, on a TCP connection to 127.0.0.1:PORT that stays
//! silent); one open request holds one instance, as the gateway's p2 build
//! does. The host's own per-instance floor in docs/PERFORMANCE.md, "Where a
//! p2 stream's memory goes".
use wasi::http::types::{Fields, IncomingRequest, OutgoingResponse, ResponseOutparam};

struct Null;

impl wasi::exports::http::incoming_handler::Guest for Null {
    fn handle(_req: IncomingRequest, out: ResponseOutparam) {
        let headers =
            Fields::from_list(&[("content-type".to_string(), b"text/event-stream".to_vec())])
                .unwrap();
        let resp = OutgoingResponse::new(headers);
        resp.set_status_code(200).unwrap();
        let body = resp.body().unwrap();
        ResponseOutparam::set(out, Ok(resp));
        let stream = body.write().unwrap();
        // One line, so a client that waits for the first bytes of the body
        // (as the gateway's retry: line) knows the stream is open.
        stream.blocking_write_and_flush(b"retry: 1000\n\n").unwrap();
        // With NULL_TCP_PORT set: one TCP connection to 127.0.0.1:PORT held
        // open (its input stream's pollable is what the instance waits on),
        // as the gateway holds its Redis connection.
        let port = wasi::cli::environment::get_environment()
            .into_iter()
            .find(|(k, _)| k == "NULL_TCP_PORT")
            .and_then(|(_, v)| v.parse::<u16>().ok());
        if let Some(port) = port {
            use wasi::sockets::network::{IpAddressFamily, IpSocketAddress, Ipv4SocketAddress};
            let net = wasi::sockets::instance_network::instance_network();
            let sock =
                wasi::sockets::tcp_create_socket::create_tcp_socket(IpAddressFamily::Ipv4).unwrap();
            let addr = IpSocketAddress::Ipv4(Ipv4SocketAddress {
                port,
                address: (127, 0, 0, 1),
            });
            sock.start_connect(&net, addr).unwrap();
            let (input, _output) = loop {
                match sock.finish_connect() {
                    Ok(s) => break s,
                    Err(wasi::sockets::network::ErrorCode::WouldBlock) => sock.subscribe().block(),
                    Err(e) => panic!("connect: {e:?}"),
                }
            };
            loop {
                input.subscribe().block();
                let _ = input.read(4096);
            }
        }
        loop {
            let p = wasi::clocks::monotonic_clock::subscribe_duration(u64::MAX / 2);
            p.block();
        }
    }
}

wasi::http::proxy::export!(Null);
