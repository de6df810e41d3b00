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
                    .map_err(|why| {
                        Error::Config(format!(
                            "{setting}: {e:?} is not an address or a CIDR such as 10.0.0.0/8"
                        ))
                        .because(why)
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

/// Which header the trusted proxies write the client's address into. Only that one is read:
/// a proxy appends to its own header and passes the other through as the client sent it, so
/// reading both (or preferring the one the proxy does not write) lets a client name itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, ...` (nginx, Traefik, Caddy, most load balancers).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for=proxy1`.
    Forwarded,
}

impl ForwardedHeader {
    pub fn parse(setting: &str, text: &str) -> Result<ForwardedHeader> {
        match text.trim().to_ascii_lowercase().as_str() {
            "x-forwarded-for" => Ok(ForwardedHeader::XForwardedFor),
            "forwarded" => Ok(ForwardedHeader::Forwarded),
            _ => Err(Error::Config(format!(
                "{setting} must be \"x-forwarded-for\" or \"forwarded\", not {text:?}"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ForwardedHeader::XForwardedFor => "x-forwarded-for",
            ForwardedHeader::Forwarded => "forwarded",
        }
    }
}

/// One hop of a chain as the proxy recorded it: an address, or something that is not one.
fn hops(headers: &HeaderMap, header: ForwardedHeader) -> Vec<Option<IpAddr>> {
    let mut out = Vec::new();
    for line in headers.get_all(header.name()) {
        let Ok(line) = line.to_str() else {
            out.push(None);
            continue;
        };
        match header {
            ForwardedHeader::XForwardedFor => {
                out.extend(line.split(',').map(|p| IpAddr::from_str(p.trim()).ok()));
            }
            ForwardedHeader::Forwarded => {
                out.extend(rfc7239::parse(line).map(|e| match e {
                    Ok(rfc7239::Forwarded {
                        forwarded_for:
                            Some(rfc7239::NodeIdentifier {
                                name: rfc7239::NodeName::Ip(ip),
                                ..
                            }),
                        ..
                    }) => Some(ip),
                    _ => None,
                }));
            }
        }
    }
    out
}

/// The client's address: the peer's, unless the peer is a trusted proxy, in which case the
/// chain in `header` is walked from the right (the part trusted proxies wrote) to the first
/// address that is not a trusted proxy. `None`: the client cannot be told — an entry that is
/// not an address (or `unknown`, or an obfuscated name) came before any untrusted address. It
/// is never the proxy's own address, which the allow-list may well admit.
pub fn client_ip(
    peer: IpAddr,
    headers: &HeaderMap,
    trusted: &Networks,
    header: ForwardedHeader,
) -> Option<IpAddr> {
    let peer = peer.to_canonical();
    if !trusted.contains(peer) {
        return Some(peer);
    }
    let hops = hops(headers, header);
    if hops.is_empty() {
        return Some(peer);
    }
    let mut client = peer;
    for hop in hops.iter().rev().take(MAX_HOPS) {
        client = (*hop)?.to_canonical();
        if !trusted.contains(client) {
            return Some(client);
        }
    }
    // Every hop looked at is a trusted proxy: the leftmost is as far as anyone can tell.
    Some(client)
}

/// Whether the request's `Host` is a loopback name (or absent, as from a plain HTTP/1.0
/// client): in local mode anything else is a DNS-rebinding page or a foreign network.
pub fn loopback_host(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get("host") else {
        return true;
    };
    let Ok(host) = host.to_str() else {
        return false;
    };
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
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

    const XFF: ForwardedHeader = ForwardedHeader::XForwardedFor;
    const FWD: ForwardedHeader = ForwardedHeader::Forwarded;

    #[test]
    fn only_a_trusted_peer_is_believed() {
        let trusted = nets(&["10.0.0.0/8"]);
        let xff = headers(&[("x-forwarded-for", "6.6.6.6, 203.0.113.9, 10.0.0.1")]);
        let at = |peer: &str, h: &HeaderMap, which| client_ip(ip(peer), h, &trusted, which);
        assert_eq!(at("10.0.0.2", &xff, XFF), Some(ip("203.0.113.9")));
        assert_eq!(at("192.0.2.1", &xff, XFF), Some(ip("192.0.2.1")));
        let fwd = headers(&[(
            "forwarded",
            "for=6.6.6.6, for=\"[2001:db8::1]:443\";proto=https",
        )]);
        assert_eq!(at("10.1.1.1", &fwd, FWD), Some(ip("2001:db8::1")));
        // Only the configured header is read: a client's own Forwarded passed through by a
        // proxy that appends to X-Forwarded-For names nothing.
        let both = headers(&[
            ("forwarded", "for=10.9.9.9"),
            ("x-forwarded-for", "198.51.100.4"),
        ]);
        assert_eq!(at("10.1.1.1", &both, XFF), Some(ip("198.51.100.4")));
        // Mapped IPv4 peers count as their IPv4 address.
        assert_eq!(at("::ffff:10.0.0.2", &xff, XFF), Some(ip("203.0.113.9")));
        // No header from the proxy: the proxy is the client.
        assert_eq!(at("10.0.0.2", &HeaderMap::new(), XFF), Some(ip("10.0.0.2")));
    }

    #[test]
    fn what_the_client_wrote_before_an_untrusted_hop_does_not_matter() {
        let trusted = nets(&["10.0.0.0/8"]);
        let h = headers(&[("x-forwarded-for", "garbage, 198.51.100.1")]);
        assert_eq!(
            client_ip(ip("10.0.0.2"), &h, &trusted, XFF),
            Some(ip("198.51.100.1"))
        );
    }

    #[test]
    fn an_unreadable_hop_makes_the_client_unknown_never_the_proxy() {
        let trusted = nets(&["10.0.0.0/8"]);
        for (name, value, which) in [
            ("x-forwarded-for", "198.51.100.1, not-an-ip", XFF),
            ("x-forwarded-for", "x", XFF),
            ("forwarded", "for=unknown", FWD),
            ("forwarded", "for=_hidden", FWD),
            ("forwarded", "proto=https", FWD),
            ("forwarded", "for=\"bad", FWD),
        ] {
            assert_eq!(
                client_ip(ip("10.0.0.2"), &headers(&[(name, value)]), &trusted, which),
                None,
                "{value:?}"
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
            let peer = IpAddr::V4(if peer.octets()[0] % 2 == 0 { std::net::Ipv4Addr::new(10, 0, 0, 2) } else { peer });
            let h = headers(&[("x-forwarded-for", &header), ("forwarded", &header)]);
            for which in [XFF, FWD] {
                let got = client_ip(peer, &h, &trusted, which);
                // From an untrusted peer the headers are never read; from a trusted one, any
                // header text gives an answer without a panic.
                if !trusted.contains(peer) {
                    prop_assert_eq!(got, Some(peer));
                }
            }
        }

        #[test]
        fn any_cidr_text_parses_or_errs(text in "[0-9a-f.:/]{0,45}") {
            let _ = Networks::parse("allow_ips", &[text]);
        }
    }

    #[test]
    fn only_loopback_hosts_pass() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert("host", v.parse().unwrap());
            loopback_host(&m)
        };
        for ok in [
            "127.0.0.1:8825",
            "localhost:8825",
            "LOCALHOST",
            "[::1]:8825",
            "127.0.0.2",
        ] {
            assert!(h(ok), "{ok}");
        }
        for bad in [
            "evil.example:8825",
            "192.168.1.2:8825",
            "localhost.evil.com",
            "[::2]:1",
        ] {
            assert!(!h(bad), "{bad}");
        }
    }
}
