//! TLS to Redis (`rediss://`): rustls with the ring provider, sans-I/O.
//!
//! [`TlsClient`] is the verified settings (trust roots, optional client
//! certificate), built once from configuration; [`TlsSession`] is one
//! connection's TLS state. Both are plain Rust: the shell hands socket
//! bytes in and writes what comes out, so the handshake and record logic
//! is unit-tested here against an in-memory rustls server.

use rustls::client::ClientConnection;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use std::io::{Read, Write};
use std::sync::Arc;

/// TLS settings shared by every connection to Redis (each cluster node
/// too). Cheap to clone.
#[derive(Clone)]
pub struct TlsClient {
    config: Arc<ClientConfig>,
    roots: &'static str,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient")
            .field("roots", &self.roots)
            .field(
                "client_cert",
                &self.config.client_auth_cert_resolver.has_certs(),
            )
            .finish()
    }
}

/// Two settings are equal when they are the same loaded settings.
impl PartialEq for TlsClient {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.config, &other.config)
    }
}

impl Eq for TlsClient {}

/// Which setting is wrong, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfigError {
    /// The variable at fault.
    pub variable: &'static str,
    /// What is wrong, without key material.
    pub problem: String,
}

fn bad(variable: &'static str, problem: impl Into<String>) -> TlsConfigError {
    TlsConfigError {
        variable,
        problem: problem.into(),
    }
}

impl TlsClient {
    /// Verifies servers against the bundled web PKI roots (Mozilla's set,
    /// from `webpki-roots`): what managed Redis services present.
    pub fn web_pki() -> TlsClient {
        TlsClient::new(None, None, None).expect("the bundled roots load")
    }

    /// Settings from configuration: `ca_pem` (PEM certificates that replace
    /// the web PKI roots) and a client certificate chain with its key for
    /// servers that ask for one (both or neither).
    pub fn new(
        ca_pem: Option<&str>,
        cert_pem: Option<&str>,
        key_pem: Option<&str>,
    ) -> Result<TlsClient, TlsConfigError> {
        let (roots, source) = match ca_pem {
            None => {
                let mut roots = RootCertStore::empty();
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                (roots, "web PKI")
            }
            Some(pem) => {
                let mut roots = RootCertStore::empty();
                for cert in certificates(pem, "redis_tls_ca_pem")? {
                    roots
                        .add(cert)
                        .map_err(|e| bad("redis_tls_ca_pem", format!("has an unusable CA: {e}")))?;
                }
                (roots, "redis_tls_ca_pem")
            }
        };
        let builder = builder().with_root_certificates(roots);
        let config = match (cert_pem, key_pem) {
            (None, None) => builder.with_no_client_auth(),
            (Some(cert), Some(key)) => {
                let chain = certificates(cert, "redis_tls_cert_pem")?;
                let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|_| {
                    bad(
                        "redis_tls_key_pem",
                        "holds no PEM private key (PKCS#8, PKCS#1 or SEC1)",
                    )
                })?;
                builder.with_client_auth_cert(chain, key).map_err(|e| {
                    bad(
                        "redis_tls_key_pem",
                        format!("does not fit redis_tls_cert_pem: {e}"),
                    )
                })?
            }
            (Some(_), None) => {
                return Err(bad(
                    "redis_tls_key_pem",
                    "is not set (redis_tls_cert_pem is)",
                ))
            }
            (None, Some(_)) => {
                return Err(bad(
                    "redis_tls_cert_pem",
                    "is not set (redis_tls_key_pem is)",
                ))
            }
        };
        Ok(TlsClient {
            config: Arc::new(config),
            roots: source,
        })
    }

    /// Starts a session with `host` (a name: sent as SNI and matched with
    /// the certificate's names; an IP: matched with its IP addresses).
    pub fn connect(&self, host: &str) -> Result<TlsSession, String> {
        let name = ServerName::try_from(host.to_string())
            .map_err(|_| format!("{host:?} is not a valid TLS server name"))?;
        let conn = ClientConnection::new(self.config.clone(), name)
            .map_err(|e| format!("TLS setup: {e}"))?;
        Ok(TlsSession { conn })
    }
}

fn builder() -> rustls::ConfigBuilder<ClientConfig, rustls::WantsVerifier> {
    ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
}

fn certificates(
    pem: &str,
    variable: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(variable, format!("is not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(bad(variable, "holds no PEM CERTIFICATE block"));
    }
    Ok(certs)
}

/// One connection's TLS state: plaintext in and out, records to and from
/// the socket.
pub struct TlsSession {
    conn: ClientConnection,
}

impl TlsSession {
    /// True until the server is verified and keys are agreed.
    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// Queues plaintext for the server (held until the handshake is done).
    pub fn write(&mut self, plain: &[u8]) -> Result<(), String> {
        self.conn
            .writer()
            .write_all(plain)
            .map_err(|e| format!("TLS write: {e}"))
    }

    /// `plain` as records to send now (with anything else queued).
    pub fn seal(&mut self, plain: &[u8]) -> Result<Vec<u8>, String> {
        self.write(plain)?;
        Ok(self.take_outgoing())
    }

    /// Records to send to the server now (handshake messages, alerts,
    /// encrypted plaintext).
    pub fn take_outgoing(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        while self.conn.wants_write() {
            if self.conn.write_tls(&mut out).is_err() {
                break;
            }
        }
        out
    }

    /// Feeds bytes read from the socket and appends the plaintext they
    /// carried to `plain`. An error (a certificate that does not verify, a
    /// corrupt record) ends the session; [`TlsSession::take_outgoing`] then
    /// holds the alert that tells the server why.
    pub fn receive(&mut self, mut bytes: &[u8], plain: &mut Vec<u8>) -> Result<(), String> {
        while !bytes.is_empty() {
            self.conn
                .read_tls(&mut bytes)
                .map_err(|e| format!("TLS read: {e}"))?;
            let state = self.conn.process_new_packets().map_err(|e| e.to_string())?;
            let n = state.plaintext_bytes_to_read();
            if n > 0 {
                let start = plain.len();
                plain.resize(start + n, 0);
                self.conn
                    .reader()
                    .read_exact(&mut plain[start..])
                    .map_err(|e| format!("TLS read: {e}"))?;
            }
        }
        Ok(())
    }
}

/// What travels on a Redis connection: plaintext, or one TLS session's
/// records. The shell writes what [`Wire::seal`] gives and feeds what it
/// reads to [`Wire::open`].
pub enum Wire {
    /// `redis://`: bytes as they are.
    Plain,
    /// `rediss://`: the session, and `host:port` for error texts.
    Tls {
        session: Box<TlsSession>,
        peer: String,
    },
}

impl Wire {
    /// The bytes to write for `plain`.
    pub fn seal(&mut self, plain: &[u8]) -> Result<Vec<u8>, String> {
        match self {
            Wire::Plain => Ok(plain.to_vec()),
            Wire::Tls { session, .. } => session.seal(plain),
        }
    }

    /// The plaintext in `bytes` (an error names the server), and what TLS
    /// answers at once (alerts, key updates), to write whatever the result.
    pub fn open(&mut self, bytes: &[u8]) -> (Result<Vec<u8>, String>, Vec<u8>) {
        match self {
            Wire::Plain => (Ok(bytes.to_vec()), Vec::new()),
            Wire::Tls { session, peer } => {
                let mut plain = Vec::new();
                let received = session.receive(bytes, &mut plain);
                let reply = session.take_outgoing();
                let plain = received.map(|()| plain);
                (plain.map_err(|e| format!("redis {peer} TLS: {e}")), reply)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    use rustls::server::WebPkiClientVerifier;
    use rustls::{ServerConfig, ServerConnection};

    struct Ca {
        cert: rcgen::Certificate,
        key: KeyPair,
    }

    fn ca(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    /// A leaf for `names` signed by `ca`; `expired` dates it in 2020.
    fn leaf(ca: &Ca, names: &[&str], expired: bool) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2020, 12, 31);
        }
        let cert = params.signed_by(&key, &ca.cert, &ca.key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn server(cert_pem: &str, key_pem: &str, client_ca: Option<&Ca>) -> ServerConnection {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                roots.add(ca.cert.der().clone()).unwrap();
                let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .unwrap();
                builder.with_client_cert_verifier(verifier)
            }
        };
        let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
        ServerConnection::new(Arc::new(builder.with_single_cert(chain, key).unwrap())).unwrap()
    }

    /// Runs the handshake and a `PING`/`+PONG` exchange in memory; returns
    /// the client's error, if any.
    fn exchange(
        client: &TlsClient,
        host: &str,
        mut server: ServerConnection,
    ) -> Result<(), String> {
        let mut session = client.connect(host)?;
        session.write(b"PING\r\n")?;
        let mut plain = Vec::new();
        for _ in 0..10 {
            let mut to_server = &session.take_outgoing()[..];
            while !to_server.is_empty() {
                server.read_tls(&mut to_server).unwrap();
            }
            if server.process_new_packets().is_err() {
                // The server refused us (our certificate); it sends an alert.
            }
            let mut got = Vec::new();
            server.reader().read_to_end(&mut got).ok();
            if got == b"PING\r\n" {
                server.writer().write_all(b"+PONG\r\n").unwrap();
            }
            let mut to_client = Vec::new();
            while server.wants_write() {
                server.write_tls(&mut to_client).unwrap();
            }
            session.receive(&to_client, &mut plain)?;
            if plain == b"+PONG\r\n" {
                assert!(!session.is_handshaking());
                return Ok(());
            }
        }
        Err("no PONG".into())
    }

    #[test]
    fn a_wire_passes_plaintext_or_names_the_server() {
        let mut plain = Wire::Plain;
        assert_eq!(plain.seal(b"PING"), Ok(b"PING".to_vec()));
        assert_eq!(
            plain.open(b"+PONG\r\n"),
            (Ok(b"+PONG\r\n".to_vec()), Vec::new())
        );
        let session = TlsClient::web_pki().connect("redis.test").unwrap();
        let mut tls = Wire::Tls {
            session: Box::new(session),
            peer: "redis.test:6380".into(),
        };
        assert_eq!(
            tls.seal(b"PING").unwrap()[0],
            0x16,
            "the client hello first"
        );
        let (plain, alert) = tls.open(b"+PONG\r\n");
        let why = plain.unwrap_err();
        assert!(why.starts_with("redis redis.test:6380 TLS: "), "{why}");
        assert_eq!(
            alert.first(),
            Some(&0x15),
            "an alert record tells the server"
        );
    }

    #[test]
    fn verifies_against_the_configured_ca() {
        let ca = ca("test CA");
        let (cert, key) = leaf(&ca, &["redis.test"], false);
        let client = TlsClient::new(Some(&ca.cert.pem()), None, None).unwrap();
        exchange(&client, "redis.test", server(&cert, &key, None)).unwrap();
    }

    #[test]
    fn refuses_what_a_user_must_not_trust() {
        let ca = ca("test CA");
        let client = TlsClient::new(Some(&ca.cert.pem()), None, None).unwrap();

        let (cert, key) = leaf(&self::ca("another CA"), &["redis.test"], false);
        let e = exchange(&client, "redis.test", server(&cert, &key, None)).unwrap_err();
        assert!(e.contains("UnknownIssuer"), "{e}");

        let (cert, key) = leaf(&ca, &["other.test"], false);
        let e = exchange(&client, "redis.test", server(&cert, &key, None)).unwrap_err();
        assert!(e.contains("not valid for name"), "{e}");

        let (cert, key) = leaf(&ca, &["redis.test"], true);
        let e = exchange(&client, "redis.test", server(&cert, &key, None)).unwrap_err();
        assert!(e.contains("certificate expired"), "{e}");

        // The bundled web PKI roots do not know a private CA.
        let (cert, key) = leaf(&ca, &["redis.test"], false);
        let e = exchange(
            &TlsClient::web_pki(),
            "redis.test",
            server(&cert, &key, None),
        )
        .unwrap_err();
        assert!(e.contains("UnknownIssuer"), "{e}");
    }

    #[test]
    fn ip_hosts_match_ip_addresses() {
        let ca = ca("test CA");
        let (cert, key) = leaf(&ca, &["127.0.0.1"], false);
        let client = TlsClient::new(Some(&ca.cert.pem()), None, None).unwrap();
        exchange(&client, "127.0.0.1", server(&cert, &key, None)).unwrap();
        let (cert, key) = leaf(&ca, &["redis.test"], false);
        assert!(exchange(&client, "127.0.0.1", server(&cert, &key, None)).is_err());
    }

    #[test]
    fn client_certificates() {
        let ca = ca("test CA");
        let (cert, key) = leaf(&ca, &["redis.test"], false);
        let (client_cert, client_key) = leaf(&ca, &["gateway"], false);
        let with =
            TlsClient::new(Some(&ca.cert.pem()), Some(&client_cert), Some(&client_key)).unwrap();
        exchange(&with, "redis.test", server(&cert, &key, Some(&ca))).unwrap();
        let without = TlsClient::new(Some(&ca.cert.pem()), None, None).unwrap();
        assert!(exchange(&without, "redis.test", server(&cert, &key, Some(&ca))).is_err());
    }

    #[test]
    fn bad_settings_name_the_variable() {
        let ca = ca("test CA");
        let (cert, key) = leaf(&ca, &["gateway"], false);
        let (_, other_key) = leaf(&ca, &["gateway"], false);
        let e = TlsClient::new(Some("nope"), None, None).unwrap_err();
        assert_eq!(e.variable, "redis_tls_ca_pem");
        let e = TlsClient::new(None, Some(&cert), None).unwrap_err();
        assert_eq!(e.variable, "redis_tls_key_pem");
        let e = TlsClient::new(None, None, Some(&key)).unwrap_err();
        assert_eq!(e.variable, "redis_tls_cert_pem");
        let e = TlsClient::new(None, Some(&cert), Some("junk")).unwrap_err();
        assert_eq!(e.variable, "redis_tls_key_pem");
        assert!(!e.problem.contains("junk"));
        let e = TlsClient::new(None, Some(&cert), Some(&other_key)).unwrap_err();
        assert_eq!(e.variable, "redis_tls_key_pem", "{e:?}");
        assert!(TlsClient::web_pki().connect("bad name!").is_err());
    }
}
