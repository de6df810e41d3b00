//! A guarded TCP connection, for bytes Maestra relays without speaking their protocol: the
//! HTTP proxy a sandboxed tool program reaches the network through (`mcp::sandbox`), whose
//! `CONNECT` tunnels carry TLS end to end. The decision is the client's own
//! ([`Egress::check_url`]'s): under local-only mode the service's name first, then the host
//! resolved by the same resolver (the tests' fixed answers included) or taken as the IP
//! literal it is, and every address must be local. Only the addresses decided on are dialled,
//! so a name cannot resolve to one address for the check and another for the connection.

use std::net::SocketAddr;

use tokio::net::TcpStream;
use url::Host;

use super::Egress;
use crate::error::{Error, Result};

impl Egress {
    /// A connection to `host:port` on behalf of `service` (a tool server's name), or the
    /// refusal: local-only mode's (`Error::LocalOnly`, with its reason), a host that is not
    /// one (`Error::BadRequest`), or no address answering (`Error::Upstream`).
    pub async fn connect(&self, service: &str, host: &str, port: u16) -> Result<TcpStream> {
        let parsed = Host::parse(host)
            .map_err(|e| Error::BadRequest(format!("{host:?} is not a host name")).because(e))?;
        let host_ref = match &parsed {
            Host::Domain(d) => Host::Domain(d.as_str()),
            Host::Ipv4(v4) => Host::Ipv4(*v4),
            Host::Ipv6(v6) => Host::Ipv6(*v6),
        };
        let ips = self.addresses(service, host_ref).await?;
        let mut last = None;
        for ip in ips {
            let addr = SocketAddr::new(ip, port);
            match tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => return Ok(stream),
                Ok(Err(e)) => last = Some(e),
                Err(_) => {
                    last = Some(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no answer within {} s", self.connect_timeout.as_secs_f32()),
                    ))
                }
            }
        }
        let plain = Error::Upstream(format!("cannot connect to {service} ({host}:{port})"));
        Err(match last {
            Some(e) => plain.because(e),
            None => plain,
        })
    }

    /// Counts the bytes a relayed connection carried, in `/metrics` like a request's.
    pub fn count_relayed(&self, service: &str, host: &str, sent: u64, received: u64) {
        self.count(service, host, "sent", sent);
        self.count(service, host, "received", received);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::net::IpAddr;

    use crate::egress::{Egress, EgressOptions};
    use crate::error::Error;
    use crate::privsec::guard::Catalog;

    fn egress(local_only: bool, overrides: &[(&str, &str)]) -> Egress {
        let resolve_overrides: HashMap<String, Vec<IpAddr>> = overrides
            .iter()
            .map(|(n, ip)| (n.to_string(), vec![ip.parse().unwrap()]))
            .collect();
        Egress::new(
            Catalog::new(&Default::default()),
            EgressOptions {
                local_only,
                resolve_overrides,
                ..EgressOptions::default()
            },
        )
        .unwrap()
    }

    #[tokio::test]
    async fn local_only_refuses_a_public_name_or_literal_before_dialling() {
        let e = egress(true, &[("api.example.test", "203.0.113.7")]);
        for host in ["api.example.test", "203.0.113.7", "[2001:db8::1]"] {
            let err = e.connect("fetch", host, 443).await.unwrap_err();
            match err.plain() {
                Error::LocalOnly(b) => {
                    assert_eq!(b.service, "fetch");
                    assert!(b.reason.contains("not a loopback"), "{}", b.reason);
                }
                other => panic!("{host}: {other}"),
            }
        }
        // A cloud service's name is refused before its host is even looked at.
        let err = e.connect("openai", "127.0.0.1", 1).await.unwrap_err();
        assert!(matches!(err.plain(), Error::LocalOnly(_)), "{err}");
    }

    #[tokio::test]
    async fn a_local_address_is_dialled_and_a_name_resolves_through_the_overrides() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let e = egress(true, &[("printer.lan.test", "127.0.0.1")]);
        for host in ["127.0.0.1", "printer.lan.test"] {
            let stream = e.connect("fetch", host, port).await.unwrap();
            assert_eq!(stream.peer_addr().unwrap().port(), port);
        }
        // Nobody listens on a port just released: an upstream error, not a block.
        let free = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let err = e.connect("fetch", "127.0.0.1", free).await.unwrap_err();
        assert_eq!(err.code(), "upstream_error", "{err}");
        let err = e.connect("fetch", "bad host", 80).await.unwrap_err();
        assert_eq!(err.status(), 400, "{err}");
    }
}
