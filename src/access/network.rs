//! Who is calling, by address (issue 15): the client address behind trusted proxies, and the
//! address allow-list.
//!
//! `X-Forwarded-For` and `Forwarded` are whatever the client typed, except the entries that
//! proxies we trust appended. So they are read only when the connection's peer is a trusted
//! proxy, walked from the right, and the first address that is not a trusted proxy is the
//! client. A chain that does not parse (or names a client as `unknown` or an obfuscated
//! token) fails closed: the peer's own address is used. Everything that keys on a client —
//! rate limits, the allow-list, the audit `ip_address` — uses this one answer.

use std::net::IpAddr;
use std::str::FromStr;

use axum::http::HeaderMap;
use ipnet::IpNet;

use crate::error::{Error, Result};

/// Hops of a forwarding chain looked at, at most: a longer chain is cut from the left (the
/// part the client controls), so a huge header costs nothing.
const MAX_HOPS: usize = 32;

/// A list of networks, written as CIDRs (`10.0.0.0/8`, `2001:db8::/32`) or single addresses.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Networks(Vec<IpNet>);

impl Networks {
    /// Parses the entries, naming the setting and the entry that is wrong.
    pub fn parse<S: AsRef<str>>(setting: &str, entries: &[S]) -> Result<Networks> {
        entries
            .iter()
            .map(|e| {
                let e = e.as_ref().trim();
                IpNet::from_str(e)
                    .or_else(|_| IpAddr::from_str(e).map(IpNet::from))
                    .map(|n| n.trunc())
                    .map_err(|_| {
                        Error::Config(format!(
                            "{setting}: {e:?} is not an address or a CIDR such as 10.0.0.0/8"
                        ))
                    })
            })
            .collect::<Result<Vec<_>>>()
            .map(Networks)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// The entries as written back (for `/api/privacy`).
    pub fn to_strings(&self) -> Vec<String> {
        self.0.iter().map(ToString::to_string).collect()
    }
}

/// The chain of addresses proxies reported, oldest first, or `None` when it does not parse.
fn chain(headers: &HeaderMap) -> Option<Vec<IpAddr>> {
    let forwarded: Vec<_> = headers.get_all("forwarded").iter().collect();
    let mut out = Vec::new();
    if !forwarded.is_empty() {
        for line in forwarded {
            for element in rfc7239::parse(line.to_str().ok()?) {
                match element.ok()?.forwarded_for?.name {
                    rfc7239::NodeName::Ip(ip) => out.push(ip),
                    _ => return None,
                }
            }
        }
    } else {
        for line in headers.get_all("x-forwarded-for") {
            for part in line.to_str().ok()?.split(',') {
                out.push(IpAddr::from_str(part.trim()).ok()?);
            }
        }
    }
    Some(out)
}

/// The client's address: the peer's, unless the peer is a trusted proxy that says otherwise.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &Networks) -> IpAddr {
    let peer = peer.to_canonical();
    if !trusted.contains(peer) {
        return peer;
    }
    let Some(hops) = chain(headers) else {
        return peer;
    };
    let mut client = peer;
    for hop in hops.iter().rev().take(MAX_HOPS) {
        client = hop.to_canonical();
        if !trusted.contains(client) {
            break;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn nets(list: &[&str]) -> Networks {
        Networks::parse("trusted_proxies", list).unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_a_trusted_peer_is_believed() {
        let trusted = nets(&["10.0.0.0/8"]);
        let xff = headers(&[("x-forwarded-for", "6.6.6.6, 203.0.113.9, 10.0.0.1")]);
        assert_eq!(client_ip(ip("10.0.0.2"), &xff, &trusted), ip("203.0.113.9"));
        assert_eq!(client_ip(ip("192.0.2.1"), &xff, &trusted), ip("192.0.2.1"));
        let fwd = headers(&[(
            "forwarded",
            "for=6.6.6.6, for=\"[2001:db8::1]:443\";proto=https",
        )]);
        assert_eq!(client_ip(ip("10.1.1.1"), &fwd, &trusted), ip("2001:db8::1"));
        // Forwarded wins over X-Forwarded-For when both are sent.
        let both = headers(&[
            ("forwarded", "for=198.51.100.4"),
            ("x-forwarded-for", "6.6.6.6"),
        ]);
        assert_eq!(
            client_ip(ip("10.1.1.1"), &both, &trusted),
            ip("198.51.100.4")
        );
        // Mapped IPv4 peers count as their IPv4 address.
        assert_eq!(
            client_ip(ip("::ffff:10.0.0.2"), &xff, &trusted),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn a_chain_that_does_not_parse_fails_closed() {
        let trusted = nets(&["10.0.0.0/8"]);
        for bad in [
            ("x-forwarded-for", "203.0.113.9, not-an-ip"),
            ("forwarded", "for=unknown"),
            ("forwarded", "for=_hidden"),
            ("forwarded", "for=\"bad"),
        ] {
            assert_eq!(
                client_ip(ip("10.0.0.2"), &headers(&[bad]), &trusted),
                ip("10.0.0.2"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn networks_parse_or_name_the_entry() {
        let n = nets(&["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"]);
        assert!(n.contains(ip("10.200.1.1")) && n.contains(ip("2001:db8::5")));
        assert!(n.contains(ip("192.0.2.7")) && !n.contains(ip("192.0.2.8")));
        for bad in ["10.0.0.0/33", "10.0.0", "", "host.example", "10.0.0.0/8/8"] {
            let e = Networks::parse("allow_ips", &[bad])
                .unwrap_err()
                .to_string();
            assert!(e.contains("allow_ips"), "{bad}: {e}");
        }
    }

    proptest! {
        #[test]
        fn an_untrusted_peer_is_always_the_client(
            peer in any::<std::net::Ipv4Addr>(),
            header in "[0-9a-f.:, ;=\\[\\]\"a-z]{0,80}",
        ) {
            let trusted = nets(&["10.0.0.0/8"]);
            let peer = IpAddr::V4(peer);
            let h = headers(&[("x-forwarded-for", &header), ("forwarded", &header)]);
            let got = client_ip(peer, &h, &trusted);
            if !trusted.contains(peer) {
                prop_assert_eq!(got, peer);
            }
        }

        #[test]
        fn any_cidr_text_parses_or_errs(text in "[0-9a-f.:/]{0,45}") {
            let _ = Networks::parse("allow_ips", &[text]);
        }
    }
}
