//! Where Redis lives and how to log in: the target every connection
//! dials, parsed from `redis_url` (the TLS and resolver settings are added
//! by `config`). Part of the Redis layer, so its connections never read
//! the rest of the configuration.

use crate::redis::tls::TlsClient;
use std::net::SocketAddr;

/// Where Redis lives and how to log in, parsed from `redis_url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisTarget {
    /// Host name or IP literal (IPv6 without brackets).
    pub host: String,
    /// TCP port, 6379 by default.
    pub port: u16,
    /// ACL user name; `None` means `default`.
    pub username: Option<String>,
    /// Password for `HELLO 3 AUTH`; never logged.
    pub password: Option<String>,
    /// Database number for `SELECT`.
    pub db: u32,
    /// `rediss://`: TLS settings, the same for every cluster node.
    pub tls: Option<TlsClient>,
    /// `dns_server`: the resolver asked for host names (DNS over TCP);
    /// unset, the host's own lookup is used.
    pub dns_server: Option<SocketAddr>,
}

#[cfg(test)]
impl RedisTarget {
    /// A plain target `h:6379` for unit tests of the protocol modules.
    pub(crate) fn for_tests(password: Option<&str>, db: u32) -> RedisTarget {
        RedisTarget {
            host: "h".into(),
            port: 6379,
            username: None,
            password: password.map(Into::into),
            db,
            tls: None,
            dns_server: None,
        }
    }
}

/// Parses `redis[s]://[[user]:password@]host[:port][/db]`. `rediss://` is
/// TLS, verified against the bundled web PKI roots until
/// `Config::load` applies `redis_tls_*`.
pub fn parse_redis_url(url: &str) -> Result<RedisTarget, String> {
    let url = url.trim();
    let (rest, tls) = match (url.strip_prefix("redis://"), url.strip_prefix("rediss://")) {
        (Some(rest), _) => (rest, None),
        (_, Some(rest)) => (rest, Some(TlsClient::web_pki())),
        _ => return Err("must start with redis:// or rediss:// (TLS)".into()),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, ""),
    };
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
        None => (None, authority),
    };
    let (username, password) = match userinfo {
        None => (None, None),
        Some(ui) => {
            let (u, p) = ui.split_once(':').unwrap_or(("", ui));
            let u = percent_decode(u)?;
            let p = percent_decode(p)?;
            ((!u.is_empty()).then_some(u), (!p.is_empty()).then_some(p))
        }
    };
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or("has an unclosed [ in the host")?;
        (h, after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err("has no host".into());
    }
    let port = match port {
        None | Some("") => 6379,
        Some(p) => p.parse().map_err(|_| "has an invalid port")?,
    };
    let db_text = path.split(['?', '#']).next().unwrap_or("");
    let db = if db_text.is_empty() {
        0
    } else {
        db_text
            .parse()
            .map_err(|_| "has an invalid database number")?
    };
    Ok(RedisTarget {
        host: host.to_string(),
        port,
        username,
        password,
        db,
        tls,
        dns_server: None,
    })
}

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("has a malformed %-escape in its credentials")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "has credentials that are not UTF-8".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_urls() {
        let t = parse_redis_url("redis://:p%40ss@cache.local:6380/2").unwrap();
        assert_eq!(
            t,
            RedisTarget {
                host: "cache.local".into(),
                port: 6380,
                username: None,
                password: Some("p@ss".into()),
                db: 2,
                tls: None,
                dns_server: None,
            }
        );
        let t = parse_redis_url("redis://alice:pw@10.0.0.1").unwrap();
        assert_eq!(t.username.as_deref(), Some("alice"));
        assert_eq!(t.port, 6379);
        let t = parse_redis_url("redis://[::1]:7000/").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.db), ("::1", 7000, 0));
        let t = parse_redis_url("redis://pw@h").unwrap();
        assert_eq!((t.username, t.password.as_deref()), (None, Some("pw")));
    }

    #[test]
    fn bad_redis_urls() {
        for u in [
            "redis:/h",
            "http://h",
            "redis://",
            "redis://h:port",
            "redis://h/x",
            "redis://:%zz@h",
            "redis://[::1",
        ] {
            assert!(parse_redis_url(u).is_err(), "{u}");
        }
    }
}
