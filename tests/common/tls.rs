//! Real parts for reaching Redis by name and over TLS:
//! - [`Pki`]: a private CA made in the test (rcgen) and certificates it
//!   issues, valid or expired;
//! - [`TlsRedis`]: `redis-server` serving TLS on `--tls-port` (and plain
//!   TCP on another port, for seeding and publishing from the test);
//! - [`Dnsmasq`]: a real DNS server on loopback that answers over TCP.

use super::{die_with_parent, free_port, kill_child, log_dir, tail, unique_tag};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A certificate authority made for one test.
pub struct Pki {
    cert: rcgen::Certificate,
    key: KeyPair,
    dir: PathBuf,
}

/// A certificate and its key, PEM, with the files redis-server reads.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl Pki {
    /// A CA whose subject is `name` (distinct names keep CAs apart).
    pub fn new(name: &str) -> Pki {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        let dir = log_dir().join(format!("pki-{}", unique_tag()));
        fs::create_dir_all(&dir).unwrap();
        let pki = Pki { cert, key, dir };
        fs::write(pki.ca_file(), pki.ca_pem()).unwrap();
        pki
    }

    pub fn ca_pem(&self) -> String {
        self.cert.pem()
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A leaf for `names` (DNS names or IPs); `expired` dates it in 2020.
    pub fn issue(&self, names: &[&str], expired: bool) -> Issued {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2020, 12, 31);
        }
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        let tag = unique_tag();
        let cert_file = self.dir.join(format!("{tag}.crt"));
        let key_file = self.dir.join(format!("{tag}.key"));
        fs::write(&cert_file, cert.pem()).unwrap();
        fs::write(&key_file, key.serialize_pem()).unwrap();
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_file,
            key_file,
        }
    }
}

/// How a [`TlsRedis`] is started.
#[derive(Default)]
pub struct TlsRedisOptions {
    /// `--requirepass`.
    pub password: Option<String>,
    /// `--tls-auth-clients yes` against the server's CA.
    pub require_client_cert: bool,
}

/// `redis-server` with TLS on `tls_port` and plain TCP on `port`; killed
/// on drop.
pub struct TlsRedis {
    pub port: u16,
    pub tls_port: u16,
    password: Option<String>,
    child: Option<Child>,
    log_path: PathBuf,
}

impl TlsRedis {
    /// Serves `server` (issued by `pki`), trusting `pki` for client
    /// certificates.
    pub fn start(pki: &Pki, server: &Issued, opts: TlsRedisOptions) -> TlsRedis {
        TlsRedis::spawn(pki, server, &opts, &[])
    }

    fn spawn(pki: &Pki, server: &Issued, opts: &TlsRedisOptions, extra: &[&str]) -> TlsRedis {
        // Cluster nodes need their bus ports (+10000) free too.
        let bus_free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p + 10_000)).is_ok();
        let pick = || loop {
            let p = free_port();
            if bus_free(p) {
                return p;
            }
        };
        let (port, tls_port) = (pick(), pick());
        let log_path = log_dir().join(format!("redis-tls-{tls_port}-{}.log", unique_tag()));
        let log = fs::File::create(&log_path).unwrap();
        let mut cmd = Command::new("redis-server");
        cmd.args([
            "--port",
            &port.to_string(),
            "--tls-port",
            &tls_port.to_string(),
        ])
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .args(["--protected-mode", "no"])
        .arg("--tls-cert-file")
        .arg(&server.cert_file)
        .arg("--tls-key-file")
        .arg(&server.key_file)
        .arg("--tls-ca-cert-file")
        .arg(pki.ca_file())
        .args([
            "--tls-auth-clients",
            if opts.require_client_cert {
                "yes"
            } else {
                "no"
            },
        ])
        .arg("--dir")
        .arg(log_dir())
        .arg("--cluster-config-file")
        .arg(format!("nodes-{tls_port}-{}.conf", unique_tag()));
        if let Some(pw) = &opts.password {
            cmd.args(["--requirepass", pw]);
        }
        cmd.args(extra);
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        die_with_parent(&mut cmd);
        let child = cmd.spawn().expect("redis-server runs");
        let mut redis = TlsRedis {
            port,
            tls_port,
            password: opts.password.clone(),
            child: Some(child),
            log_path,
        };
        redis.wait_ready();
        redis
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !answers(self.port) {
            let log = fs::read_to_string(&self.log_path).unwrap_or_default();
            let exited = self.child.as_mut().unwrap().try_wait().unwrap();
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "redis-server with TLS did not start (needs a TLS build):\n{}",
                tail(&log, 4000)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A plain-TCP client (with the password), for the test's own commands.
    pub fn conn(&self) -> redis::Connection {
        let auth = self
            .password
            .as_ref()
            .map(|p| format!(":{p}@"))
            .unwrap_or_default();
        let client =
            redis::Client::open(format!("redis://{auth}127.0.0.1:{}/", self.port)).unwrap();
        let con = client
            .get_connection_with_timeout(Duration::from_secs(5))
            .unwrap();
        con.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        con
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        kill_child(&mut self.child);
        if std::thread::panicking() {
            let log = fs::read_to_string(&self.log_path).unwrap_or_default();
            eprintln!("----- redis-server (TLS) log -----\n{}", tail(&log, 4000));
        }
    }
}

/// True when a server on `port` answers a RESP `PING` at all (`+PONG`, or
/// `-NOAUTH` when it wants a password).
fn answers(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 64];
    s.write_all(b"PING\r\n").is_ok() && matches!(s.read(&mut buf), Ok(n) if n > 0)
}

/// `dnsmasq` on a loopback port answering `names` (name → IP) and nothing
/// else; killed on drop.
pub struct Dnsmasq {
    pub port: u16,
    child: Option<Child>,
}

impl Dnsmasq {
    pub fn start(names: &[(&str, &str)]) -> Dnsmasq {
        let port = free_port();
        let mut cmd = Command::new(dnsmasq_bin());
        cmd.args([
            "--no-daemon",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
        ])
        .args(["--listen-address=127.0.0.1", "--user=root"])
        .arg(format!("--port={port}"))
        .arg(format!(
            "--pid-file={}",
            log_dir().join(format!("dnsmasq-{port}.pid")).display()
        ));
        for (name, ip) in names {
            cmd.arg(format!("--address=/{name}/{ip}"));
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .expect("dnsmasq runs (scripts/tools.sh installs it)");
        let dns = Dnsmasq {
            port,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "dnsmasq did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        dns
    }

    /// The `dns_server` value: the `tcp://` form Spin's allowlist takes too.
    pub fn server(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }
}

/// `DNSMASQ`, else `dnsmasq` on PATH, else Debian's `/usr/sbin/dnsmasq`
/// (not on a normal user's PATH).
fn dnsmasq_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("DNSMASQ") {
        return PathBuf::from(p);
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("dnsmasq"))
        .find(|p| p.is_file());
    on_path.unwrap_or_else(|| PathBuf::from("/usr/sbin/dnsmasq"))
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        kill_child(&mut self.child);
    }
}

/// Three Redis Cluster nodes speaking TLS to clients and to each other
/// (`tls-cluster yes`), each announcing the host name `localhost`, so
/// `MOVED` replies name a host; plain ports too, for the test's commands.
pub struct TlsCluster {
    pub nodes: Vec<TlsRedis>,
}

impl TlsCluster {
    pub fn start(pki: &Pki, server: &Issued) -> TlsCluster {
        let nodes: Vec<TlsRedis> = (0..3)
            .map(|_| {
                TlsRedis::spawn(
                    pki,
                    server,
                    &TlsRedisOptions::default(),
                    &[
                        "--cluster-enabled",
                        "yes",
                        "--tls-cluster",
                        "yes",
                        "--cluster-announce-hostname",
                        "localhost",
                        "--cluster-preferred-endpoint-type",
                        "hostname",
                    ],
                )
            })
            .collect();
        let mut create = Command::new("redis-cli");
        create
            .args(["--tls", "--cacert"])
            .arg(pki.ca_file())
            .args(["--cluster", "create"]);
        for n in &nodes {
            create.arg(format!("127.0.0.1:{}", n.tls_port));
        }
        let out = create
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli runs");
        assert!(
            out.status.success(),
            "TLS cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        for n in &nodes {
            loop {
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query(&mut n.conn())
                    .unwrap();
                if info.contains("cluster_state:ok") {
                    break;
                }
                assert!(Instant::now() < deadline, "cluster not ok: {info}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        TlsCluster { nodes }
    }
}
