//! The local-only guard's policy: the service catalog and the local/cloud decision (SPEC §2.1).
//!
//! This module decides; [`crate::egress`] enforces, on the addresses actually dialled. A name
//! in the catalog is a hint for the user (and for refusing known cloud services early); the
//! address check is what keeps traffic on the machine.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Serialize;

use crate::config::GuardConfig;
pub use crate::error::LocalOnlyBlock;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Local,
    Cloud,
}

/// A service's place in the catalog: where it runs and what it is for (the latter picks
/// the alternatives offered when it is blocked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    pub group: &'static str,
}

/// The seed's 23 cloud services, with their group.
pub const CLOUD: [(&str, &str); 23] = [
    ("spotify", "media"),
    ("apple_music", "media"),
    ("youtube_music", "media"),
    ("notion", "productivity"),
    ("trello", "productivity"),
    ("asana", "productivity"),
    ("slack", "productivity"),
    ("gmail", "productivity"),
    ("google_calendar", "productivity"),
    ("openai", "llm"),
    ("anthropic", "llm"),
    ("deepseek", "llm"),
    ("cohere", "llm"),
    ("gemini", "llm"),
    ("tavily", "search"),
    ("brave_search", "search"),
    ("google_search", "search"),
    ("twitter", "social"),
    ("facebook", "social"),
    ("linkedin", "social"),
    ("oauth", "network"),
    ("rest_api", "network"),
    ("graphql", "network"),
];

/// The seed's 18 local services, with their group.
pub const LOCAL: [(&str, &str); 18] = [
    ("sonos", "media"),
    ("chromecast", "media"),
    ("airplay", "media"),
    ("hue", "smarthome"),
    ("home_assistant", "smarthome"),
    ("homekit", "smarthome"),
    ("zigbee", "smarthome"),
    ("zwave", "smarthome"),
    ("ffmpeg", "creative"),
    ("image_magick", "creative"),
    ("pandoc", "creative"),
    ("mdns", "network"),
    ("upnp", "network"),
    ("ssdp", "network"),
    ("localhost", "llm"),
    ("127.0.0.1", "network"),
    ("local_network", "network"),
    ("lan", "network"),
];

#[derive(Debug, Clone)]
pub struct Catalog {
    entries: BTreeMap<String, Entry>,
}

impl Catalog {
    /// The seed's defaults with the config's additions; a name listed in config moves to that side.
    pub fn new(overrides: &GuardConfig) -> Catalog {
        let mut entries: BTreeMap<String, Entry> = CLOUD
            .iter()
            .map(|(n, g)| {
                (
                    n.to_string(),
                    Entry {
                        kind: Kind::Cloud,
                        group: g,
                    },
                )
            })
            .chain(LOCAL.iter().map(|(n, g)| {
                (
                    n.to_string(),
                    Entry {
                        kind: Kind::Local,
                        group: g,
                    },
                )
            }))
            .collect();
        for (names, kind) in [
            (&overrides.cloud_services, Kind::Cloud),
            (&overrides.local_services, Kind::Local),
        ] {
            for name in names {
                let key = normalize(name);
                let group = entries.get(&key).map_or("other", |e| e.group);
                entries.insert(key, Entry { kind, group });
            }
        }
        Catalog { entries }
    }

    pub fn get(&self, service: &str) -> Option<Entry> {
        self.entries.get(&normalize(service)).copied()
    }

    pub fn names(&self, kind: Kind) -> Vec<&str> {
        self.entries
            .iter()
            .filter(|(_, e)| e.kind == kind)
            .map(|(n, _)| n.as_str())
            .collect()
    }

    /// Local services of the same group, offered instead of a blocked cloud one.
    pub fn alternatives(&self, service: &str) -> Vec<String> {
        let Some(group) = self.get(service).map(|e| e.group) else {
            return Vec::new();
        };
        self.entries
            .iter()
            .filter(|(_, e)| e.kind == Kind::Local && e.group == group)
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// The name-level decision in local-only mode: known cloud services are refused before any
    /// connection is attempted. Everything else still has to pass the address check at egress.
    pub fn check_name(&self, service: &str) -> Result<(), LocalOnlyBlock> {
        match self.get(service) {
            Some(Entry {
                kind: Kind::Cloud, ..
            }) => Err(LocalOnlyBlock {
                service: service.to_string(),
                reason: "it is a cloud service and local-only mode keeps traffic on this machine"
                    .into(),
                suggested_alternatives: self.alternatives(service),
            }),
            _ => Ok(()),
        }
    }

    /// The local-only decision for a personal service before anything is read or dialled,
    /// shared by the services proxy and `maestra guard check` so the two cannot disagree: a
    /// cloud service by catalog name, or one whose table declares `kind = "cloud"`, is
    /// refused; everything else is left to the address check at egress. `group` (the
    /// service's category) picks the local alternatives offered.
    pub fn check_service(
        &self,
        service: &str,
        declared: Option<Kind>,
        group: &str,
    ) -> Result<(), LocalOnlyBlock> {
        self.check_name(service)?;
        if declared == Some(Kind::Cloud) {
            return Err(LocalOnlyBlock {
                service: service.to_string(),
                reason: "it is configured as a cloud service (kind = \"cloud\") and local-only \
                         mode keeps traffic on this machine"
                    .into(),
                suggested_alternatives: self
                    .entries
                    .iter()
                    .filter(|(_, e)| e.kind == Kind::Local && e.group == group)
                    .map(|(n, _)| n.clone())
                    .collect(),
            });
        }
        Ok(())
    }

    /// The refusal for a host whose addresses cannot be learnt (no DNS, no such name, no
    /// answer): an address that cannot be resolved cannot be shown to be local, and egress
    /// sends nothing to it either.
    pub fn unresolved_block(&self, service: &str, host: &str, why: &str) -> LocalOnlyBlock {
        LocalOnlyBlock {
            service: service.to_string(),
            reason: format!(
                "{host} cannot be resolved ({why}), so it cannot be shown to be a local address"
            ),
            suggested_alternatives: self.alternatives(service),
        }
    }

    /// The refusal for a connection to a non-local address.
    pub fn address_block(&self, service: &str, host: &str, addr: IpAddr) -> LocalOnlyBlock {
        LocalOnlyBlock {
            service: service.to_string(),
            reason: format!(
                "{host} resolves to {addr}, which is not a loopback, private, link-local or unique-local address"
            ),
            suggested_alternatives: self.alternatives(service),
        }
    }
}

fn normalize(name: &str) -> String {
    name.trim().to_ascii_lowercase().replace('-', "_")
}

/// Loopback, RFC 1918 private, link-local, IPv6 unique-local (and the v4-mapped forms of these).
/// Unspecified and broadcast addresses are not "local": they are not a machine on the LAN.
pub fn is_local_addr(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local(),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_local_addr(IpAddr::V4(v4));
            }
            let seg0 = v6.segments()[0];
            v6.is_loopback()
                || (seg0 & 0xfe00) == 0xfc00 // fc00::/7 unique local
                || (seg0 & 0xffc0) == 0xfe80 // fe80::/10 link local
        }
    }
}

/// How long the name of a configured peer may take to resolve before it is refused.
const PEER_RESOLVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// In local-only mode, a peer the configuration names (the PostgreSQL store, Redis) is
/// reached only if every host its URL names is local by [`is_local_addr`]: an IP literal as
/// it is, a name by every address it resolves to, a Unix socket always. Checked before any
/// connection is made; anything else is refused with a `local_only_mode` error naming
/// `setting` (the URL itself may hold a password: only its host is named). Off when
/// `local_only` is false.
pub async fn check_configured_peer(
    local_only: bool,
    setting: &str,
    url: &str,
) -> crate::error::Result<()> {
    if !local_only {
        return Ok(());
    }
    let refuse = |reason: String| {
        crate::error::Error::LocalOnly(Box::new(LocalOnlyBlock {
            service: setting.to_string(),
            reason: format!(
                "{reason}; local-only mode (MAESTRA_LOCAL_ONLY) reaches only this machine and \
                 the local network (loopback, private, link-local, unique-local addresses), so \
                 no connection was made"
            ),
            suggested_alternatives: Vec::new(),
        }))
    };
    let hosts = peer_hosts(url).map_err(|why| refuse(why.to_string()))?;
    for host in hosts {
        match host {
            PeerHost::Socket => {}
            PeerHost::Ip(ip) => {
                if !is_local_addr(ip) {
                    return Err(refuse(format!("its host {ip} is not a local address")));
                }
            }
            PeerHost::Name(name) => {
                let resolved = tokio::time::timeout(
                    PEER_RESOLVE_TIMEOUT,
                    tokio::net::lookup_host((name.as_str(), 0)),
                )
                .await;
                let addrs: Vec<IpAddr> = match resolved {
                    Ok(Ok(addrs)) => addrs.map(|a| a.ip()).collect(),
                    _ => {
                        return Err(refuse(format!(
                            "its host {name:?} could not be resolved to check that it is local"
                        )));
                    }
                };
                if addrs.is_empty() {
                    return Err(refuse(format!("its host {name:?} resolves to no address")));
                }
                if let Some(ip) = addrs.into_iter().find(|ip| !is_local_addr(*ip)) {
                    return Err(refuse(format!(
                        "its host {name:?} resolves to {ip}, which is not a local address"
                    )));
                }
            }
        }
    }
    Ok(())
}

/// A host a configured peer's URL names.
#[derive(Debug, PartialEq)]
enum PeerHost {
    /// A Unix socket (a path): on this machine.
    Socket,
    Ip(IpAddr),
    Name(String),
}

/// Every host a database or Redis URL names: the authority's (percent-decoded: a path is a
/// Unix socket), and libpq-style `host` / `hostaddr` query parameters; none at all means the
/// client's default (a local socket or localhost). `unix:` and `redis+unix:` are sockets.
fn peer_hosts(url: &str) -> std::result::Result<Vec<PeerHost>, &'static str> {
    let url = url::Url::parse(url.trim())
        .map_err(|_| "it is not a URL, so its host cannot be checked")?;
    if matches!(url.scheme(), "unix" | "redis+unix") {
        return Ok(vec![PeerHost::Socket]);
    }
    let mut named: Vec<String> = Vec::new();
    if let Some(h) = url.host_str().filter(|h| !h.is_empty()) {
        let decoded = percent_encoding::percent_decode_str(h)
            .decode_utf8()
            .map_err(|_| "its host is not valid UTF-8")?;
        named.push(decoded.into_owned());
    }
    for (k, v) in url.query_pairs() {
        if k.eq_ignore_ascii_case("host") || k.eq_ignore_ascii_case("hostaddr") {
            named.extend(v.split(',').map(|h| h.trim().to_string()));
        }
    }
    let mut hosts = Vec::new();
    for h in named {
        if h.starts_with('/') {
            hosts.push(PeerHost::Socket);
        } else if h.is_empty() {
            return Err("it names an empty host");
        } else if let Ok(ip) = h
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            hosts.push(PeerHost::Ip(ip));
        } else {
            hosts.push(PeerHost::Name(h));
        }
    }
    if hosts.is_empty() {
        hosts.push(PeerHost::Socket);
    }
    Ok(hosts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configured_peer_s_hosts() {
        let ip = |s: &str| PeerHost::Ip(s.parse().unwrap());
        let name = |s: &str| PeerHost::Name(s.to_string());
        for (url, want) in [
            (
                "postgresql://u:p@203.0.113.7:5432/db",
                vec![ip("203.0.113.7")],
            ),
            (
                "postgresql://u:p@[::ffff:203.0.113.7]/db",
                vec![ip("::ffff:203.0.113.7")],
            ),
            (
                "postgres://u@db.example.test/db?sslmode=require",
                vec![name("db.example.test")],
            ),
            (
                "postgresql://%2Fvar%2Frun%2Fpostgresql/db",
                vec![PeerHost::Socket],
            ),
            ("postgresql:///db", vec![PeerHost::Socket]),
            ("postgresql:///db?host=/tmp", vec![PeerHost::Socket]),
            (
                "postgresql://localhost/db?hostaddr=203.0.113.7",
                vec![name("localhost"), ip("203.0.113.7")],
            ),
            ("redis://:p@10.0.0.5:6379/0", vec![ip("10.0.0.5")]),
            (
                "rediss://cache.example.test",
                vec![name("cache.example.test")],
            ),
            ("redis+unix:///run/redis.sock", vec![PeerHost::Socket]),
            ("unix:///run/redis.sock", vec![PeerHost::Socket]),
        ] {
            assert_eq!(peer_hosts(url).unwrap(), want, "{url}");
        }
        assert!(peer_hosts("not a url").is_err());
    }

    #[tokio::test]
    async fn a_configured_peer_must_be_local_in_local_only_mode() {
        for url in [
            "postgresql://u:CANARY@203.0.113.7:5432/db",
            "postgresql://u@[::ffff:203.0.113.7]/db",
            "postgresql://localhost/db?hostaddr=203.0.113.7",
            "redis://:CANARY@203.0.113.7:6379",
        ] {
            let t = std::time::Instant::now();
            let e = check_configured_peer(true, "db_url (MAESTRA_DB_URL)", url)
                .await
                .unwrap_err();
            assert!(t.elapsed() < std::time::Duration::from_secs(1), "{url}");
            let text = e.to_string();
            assert_eq!(e.code(), "local_only_mode", "{url}: {text}");
            assert!(
                text.contains("db_url (MAESTRA_DB_URL)") && text.contains("203.0.113.7"),
                "{text}"
            );
            assert!(!text.contains("CANARY"), "{text}");
            // Off, nothing is checked (and nothing is dialled here either way).
            check_configured_peer(false, "db_url", url).await.unwrap();
        }
        for url in [
            "postgresql://u:p@127.0.0.1:5432/db",
            "postgresql://u:p@localhost/db",
            "postgresql://u:p@192.168.1.20/db",
            "postgresql:///db?host=/var/run/postgresql",
            "redis://[fd00::1]:6379",
            "unix:///run/redis.sock",
        ] {
            check_configured_peer(true, "db_url", url).await.unwrap();
        }
    }

    #[test]
    fn seed_catalog_sizes() {
        let c = Catalog::new(&GuardConfig::default());
        assert_eq!(c.names(Kind::Cloud).len(), 23);
        assert_eq!(c.names(Kind::Local).len(), 18);
    }

    #[test]
    fn cloud_blocked_with_alternatives() {
        let c = Catalog::new(&GuardConfig::default());
        let block = c.check_name("Spotify").unwrap_err();
        assert_eq!(block.service, "Spotify");
        assert!(block.suggested_alternatives.contains(&"sonos".to_string()));
        assert!(c.check_name("hue").is_ok());
        assert!(
            c.check_name("unknown_thing").is_ok(),
            "left to the address check"
        );
    }

    #[test]
    fn a_declared_cloud_kind_is_refused_like_a_catalog_one() {
        let c = Catalog::new(&GuardConfig::default());
        let block = c
            .check_service("my_nas_sync", Some(Kind::Cloud), "media")
            .unwrap_err();
        assert!(block.reason.contains("kind = \"cloud\""), "{block}");
        assert!(block.suggested_alternatives.contains(&"sonos".to_string()));
        assert!(c.check_service("spotify", None, "media").is_err());
        assert!(
            c.check_service("spotify", Some(Kind::Local), "media")
                .is_err()
        );
        assert!(c.check_service("my_nas", Some(Kind::Local), "data").is_ok());
        assert!(c.check_service("my_nas", None, "data").is_ok());
    }

    #[test]
    fn overrides_extend_and_move() {
        let c = Catalog::new(&GuardConfig {
            cloud_services: vec!["my-cloud".into(), "sonos".into()],
            local_services: vec!["jellyfin".into()],
        });
        assert_eq!(c.get("my_cloud").unwrap().kind, Kind::Cloud);
        assert_eq!(c.get("sonos").unwrap().kind, Kind::Cloud);
        assert_eq!(c.get("jellyfin").unwrap().kind, Kind::Local);
    }

    #[test]
    fn local_addresses() {
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.1.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:192.168.1.1",
        ] {
            assert!(is_local_addr(a.parse().unwrap()), "{a}");
        }
        for a in [
            "8.8.8.8",
            "172.32.0.1",
            "100.64.0.1",
            "0.0.0.0",
            "2001:db8::1",
            "::ffff:8.8.8.8",
            "255.255.255.255",
            "::",
        ] {
            assert!(!is_local_addr(a.parse().unwrap()), "{a}");
        }
    }
}
