//! The hub under test: its base URL parsed once into host, port and path prefix, and the safety
//! check that keeps the harness pointed at this machine unless `--allow-remote` says otherwise.
//!
//! Both the REST setup (`rest.rs`) and the WebSocket dialer (`ws.rs`) build their addresses from
//! a [`Target`], so the URL is validated in exactly one place.

use std::fmt;
use std::net::IpAddr;

use hyper::Uri;

/// A base URL that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetError(String);

impl fmt::Display for TargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TargetError {}

/// Where the hub listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Host name or IP address, without the brackets of an IPv6 literal.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// `host:port` as sent in `Host` headers (IPv6 literals keep their brackets).
    pub authority: String,
    /// Path prefix the hub is mounted under, without a trailing slash (usually empty).
    pub base_path: String,
}

impl Target {
    /// Parses `http://host[:port][/prefix]` (`ws://` is accepted as a synonym). Refuses TLS
    /// schemes (the harness speaks plain TCP) and, unless `allow_remote`, any host that is not a
    /// loopback address: a load test pointed at a shared server by mistake is an outage.
    ///
    /// # Errors
    /// A [`TargetError`] saying what is wrong with the URL.
    pub fn parse(url: &str, allow_remote: bool) -> Result<Target, TargetError> {
        let err = |m: String| TargetError(m);
        let uri: Uri = url
            .parse()
            .map_err(|e| err(format!("`{url}` is not a URL: {e}")))?;
        match uri.scheme_str() {
            Some("http" | "ws") => {}
            Some("https" | "wss") => {
                return Err(err(format!(
                    "`{url}`: TLS is not supported; point the harness at the hub's plain \
                     http:// listener"
                )));
            }
            Some(other) => return Err(err(format!("`{url}`: unsupported scheme `{other}`"))),
            None => return Err(err(format!("`{url}`: expected http://host:port"))),
        }
        if uri.query().is_some() {
            return Err(err(format!("`{url}`: the base URL must not have a query")));
        }
        let bracketed = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| err(format!("`{url}`: no host")))?;
        let host = bracketed
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(bracketed)
            .to_owned();
        if !allow_remote && !is_loopback_host(&host) {
            return Err(err(format!(
                "`{host}` is not a loopback address (127.0.0.0/8, ::1, localhost); pass \
                 --allow-remote to load-test another machine"
            )));
        }
        let port = uri.port_u16().unwrap_or(80);
        Ok(Target {
            authority: format!("{bracketed}:{port}"),
            host,
            port,
            base_path: uri.path().trim_end_matches('/').to_owned(),
        })
    }

    /// The absolute `http://` URI of a REST path such as `/api/v1/workspaces`.
    pub fn http_uri(&self, path: &str) -> String {
        format!("http://{}{}{}", self.authority, self.base_path, path)
    }

    /// The request target of the WebSocket upgrade, token included (origin form, for the
    /// `GET` line).
    pub fn ws_path(&self, token: &str) -> String {
        format!("{}/ws?token={}", self.base_path, percent_encode(token))
    }

    /// The WebSocket URL without its token, for messages.
    pub fn ws_display(&self) -> String {
        format!("ws://{}{}/ws", self.authority, self.base_path)
    }
}

/// True for `localhost` and for any address in 127.0.0.0/8 or `::1` (IPv4-mapped forms
/// included).
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_end_matches('.');
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match host.parse::<IpAddr>() {
        Ok(ip) => ip.to_canonical().is_loopback(),
        Err(_) => false,
    }
}

/// Escapes everything but RFC 3986 unreserved characters, so a token survives a query string
/// whatever its alphabet (JWTs need nothing escaped, but this costs nothing).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_recognised() {
        for host in [
            "127.0.0.1",
            "127.8.9.10",
            "localhost",
            "LOCALHOST",
            "::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "10.0.0.1",
            "0.0.0.0",
            "example.com",
            "localhost.example.com",
            "::",
            "128.0.0.1",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn a_remote_host_needs_allow_remote() {
        let err = Target::parse("http://10.1.2.3:8080", false).unwrap_err();
        assert!(err.to_string().contains("--allow-remote"), "{err}");
        let t = Target::parse("http://10.1.2.3:8080", true).unwrap();
        assert_eq!(t.host, "10.1.2.3");
    }

    #[test]
    fn urls_parse_into_host_port_and_prefix() {
        let t = Target::parse("http://127.0.0.1:8080", false).unwrap();
        assert_eq!((t.host.as_str(), t.port), ("127.0.0.1", 8080));
        assert_eq!(
            t.http_uri("/api/v1/auth/register"),
            "http://127.0.0.1:8080/api/v1/auth/register"
        );
        assert_eq!(t.ws_path("a.b_c"), "/ws?token=a.b_c");

        let t = Target::parse("ws://[::1]:9000/hub/", false).unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 9000));
        assert_eq!(t.authority, "[::1]:9000");
        assert_eq!(t.ws_display(), "ws://[::1]:9000/hub/ws");

        let t = Target::parse("http://localhost", false).unwrap();
        assert_eq!(t.port, 80);
        assert_eq!(t.base_path, "");
    }

    #[test]
    fn tls_and_odd_urls_are_refused() {
        assert!(Target::parse("https://127.0.0.1:8443", false).is_err());
        assert!(Target::parse("ftp://127.0.0.1", false).is_err());
        assert!(Target::parse("127.0.0.1:8080", false).is_err());
        assert!(Target::parse("http://127.0.0.1:8080/?x=1", false).is_err());
        assert!(Target::parse("not a url", false).is_err());
    }

    #[test]
    fn tokens_are_escaped_for_the_query() {
        assert_eq!(percent_encode("a+b/c=d"), "a%2Bb%2Fc%3Dd");
    }
}
