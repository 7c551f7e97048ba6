//! ICE servers for a session's peers: the configured STUN and TURN URLs and, with a TURN shared
//! secret, time-limited TURN credentials by the TURN REST scheme (as coturn's
//! `use-auth-secret` checks them): the username is `<expiry, unix seconds>:<peer id>` and the
//! password is base64(HMAC-SHA1(secret, username)). The TURN server needs no call to the hub: it
//! recomputes the password from the username and refuses it after the expiry.
//!
//! Each entry has the shape of WebRTC's `RTCIceServer` (`urls`, `username`, `credential`), so
//! that a client hands the list to `RTCPeerConnection` as it is.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use clap::Args;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha1::Sha1;

/// Where peers find STUN and TURN.
#[derive(Debug, Clone, Default, Args)]
pub struct IceConfig {
    /// STUN server URLs, comma-separated (`stun:stun.example.com:3478`).
    #[arg(long, env = "HUB_STUN_URLS", value_delimiter = ',')]
    pub stun_urls: Vec<String>,
    /// TURN server URLs, comma-separated (`turn:turn.example.com:3478?transport=udp`).
    #[arg(long, env = "HUB_TURN_URLS", value_delimiter = ',')]
    pub turn_urls: Vec<String>,
    /// The TURN server's shared secret (coturn `static-auth-secret`); with it, TURN entries carry
    /// time-limited credentials.
    #[arg(long, env = "HUB_TURN_SECRET", hide_env_values = true)]
    pub turn_secret: Option<String>,
    /// How long TURN credentials last, in seconds.
    #[arg(long, env = "HUB_TURN_TTL_SECS", default_value_t = 3600)]
    pub turn_ttl_secs: u64,
}

/// One entry of the list, as `RTCPeerConnection` takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct IceServer {
    /// The server's URLs.
    pub urls: Vec<String>,
    /// TURN only: the username.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// TURN only: the password.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// The ICE servers for `peer` at `now` (unix seconds): one STUN entry and one TURN entry, each
/// present only when configured. TURN without a secret is listed without credentials (a server
/// that needs none).
pub fn ice_servers(config: &IceConfig, peer: &str, now: i64) -> Vec<IceServer> {
    // `HUB_STUN_URLS=` (set but empty) configures nothing.
    let urls = |list: &[String]| -> Vec<String> {
        list.iter()
            .map(|u| u.trim())
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let (stun, turn) = (urls(&config.stun_urls), urls(&config.turn_urls));
    let mut servers = Vec::new();
    if !stun.is_empty() {
        servers.push(IceServer {
            urls: stun,
            username: None,
            credential: None,
        });
    }
    if !turn.is_empty() {
        let (username, credential) = match &config.turn_secret {
            Some(secret) => {
                let ttl = Duration::from_secs(config.turn_ttl_secs.max(60));
                let expiry = now.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(3600));
                let (u, p) = turn_credential(secret.as_bytes(), peer, expiry);
                (Some(u), Some(p))
            }
            None => (None, None),
        };
        servers.push(IceServer {
            urls: turn,
            username,
            credential,
        });
    }
    servers
}

/// The TURN REST username and password for `peer`, valid until `expiry` (unix seconds).
pub fn turn_credential(secret: &[u8], peer: &str, expiry: i64) -> (String, String) {
    let username = format!("{expiry}:{peer}");
    // HMAC takes a key of any length; `new_from_slice` cannot fail for it.
    let password = match Hmac::<Sha1>::new_from_slice(secret) {
        Ok(mut mac) => {
            mac.update(username.as_bytes());
            STANDARD.encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    };
    (username, password)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEER: &str = "01900000-0000-7000-8000-000000000001";

    #[test]
    fn credentials_follow_the_turn_rest_scheme() {
        // Computed independently: python3 hmac.new(secret, username, sha1), base64.
        let (user, pass) = turn_credential(b"turn-shared-secret", PEER, 1_800_003_600);
        assert_eq!(user, format!("1800003600:{PEER}"));
        assert_eq!(pass, "+6xgZvK37NTEvDc7cDKPTsqkbPo=");
    }

    #[test]
    fn the_list_has_what_is_configured_and_turn_credentials_expire_after_the_ttl() {
        assert!(ice_servers(&IceConfig::default(), PEER, 0).is_empty());
        let blank = IceConfig {
            stun_urls: vec![String::new()],
            ..IceConfig::default()
        };
        assert!(ice_servers(&blank, PEER, 0).is_empty(), "set but empty");
        let config = IceConfig {
            stun_urls: vec!["stun:stun.example.com:3478".into()],
            turn_urls: vec!["turn:turn.example.com:3478?transport=udp".into()],
            turn_secret: Some("turn-shared-secret".into()),
            turn_ttl_secs: 3600,
        };
        let list = ice_servers(&config, PEER, 1_800_000_000);
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].username, None);
        assert_eq!(
            list[1].username.as_deref(),
            Some(format!("1800003600:{PEER}").as_str())
        );
        assert_eq!(
            list[1].credential.as_deref(),
            Some("+6xgZvK37NTEvDc7cDKPTsqkbPo=")
        );
        let json = serde_json::to_value(&list).unwrap();
        assert_eq!(
            json[0],
            serde_json::json!({"urls": ["stun:stun.example.com:3478"]})
        );
        let open = IceConfig {
            turn_secret: None,
            ..config
        };
        assert_eq!(ice_servers(&open, PEER, 0)[1].credential, None);
    }
}
