//! The only outbound HTTP client (SPEC §2, §2.1).
//!
//! Local-only mode is enforced here, on the addresses actually dialled: the resolver refuses a
//! name whose addresses are not local, and URLs with IP literals (which skip the resolver) are
//! checked before sending. Proxies from the environment are ignored, since dialling a proxy
//! would hide the real destination.
//!
//! **No redirect is ever followed.** Almost every request Maestra sends carries a credential it
//! injected (a provider's `Authorization` or `x-api-key`, a service's token or its path-borne
//! username, an OAuth2 client secret), and an HTTP client that follows a redirect re-sends
//! custom headers, the body and the path to wherever the `Location` points: another host
//! would receive the key and the prompt. Following hops would also make the destination a
//! choice of the upstream instead of the configuration. So the one rule is: a 3xx ends the
//! request. [`Egress::send`] turns it into an upstream error naming the status (never the
//! `Location`, which may hold a credential); [`Egress::send_relaying_redirects`] hands it back
//! for the services proxy to relay to its client, scrubbed, as an answer like any other.
//!
//! Other crates' clients are routed here too: the object store's (backups to S3) through
//! `backup::connector::GuardedConnector`, which the backup (above egress) builds on this
//! client. `tests/egress_sockets.rs` lists every crate in the tree that can open a socket and
//! why each one is either egress or a configured local peer.
//!
//! Bytes Maestra does not speak itself (a sandboxed tool program's traffic, relayed by
//! `mcp::sandbox`) get the same decision on a bare TCP connection: [`Egress::connect`], in
//! `egress/connect`.
//!
//! Every request is also counted here: bytes sent and received per service and host, in
//! `/metrics` ([`Egress::bytes`]) and, through [`tally`], in the request's audit entry.

mod connect;
pub mod tally;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::TryStreamExt;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

use crate::error::{Error, Result};
use crate::privsec::guard::{Catalog, LocalOnlyBlock, is_local_addr};

/// The resolver's refusal; `send` turns it into a [`LocalOnlyBlock`] naming the service.
#[derive(Debug, thiserror::Error)]
#[error("{host} resolves to non-local address {addr}")]
pub struct NonLocalAddress {
    pub host: String,
    pub addr: IpAddr,
}

/// Shared by the client and its resolver.
struct Policy {
    local_only: AtomicBool,
    /// Fixed answers for names, so tests never depend on (or send traffic to) real DNS.
    overrides: HashMap<String, Vec<IpAddr>>,
}

impl Policy {
    async fn lookup(&self, host: &str) -> std::io::Result<Vec<IpAddr>> {
        if let Some(ips) = self.overrides.get(&host.to_ascii_lowercase()) {
            return Ok(ips.clone());
        }
        Ok(tokio::net::lookup_host((host, 0))
            .await?
            .map(|s| s.ip())
            .collect())
    }

    fn check(&self, host: &str, addrs: &[IpAddr]) -> Result<(), NonLocalAddress> {
        if !self.local_only.load(Ordering::Relaxed) {
            return Ok(());
        }
        // One public answer taints the whole name: a mixed answer is how rebinding starts.
        match addrs.iter().find(|a| !is_local_addr(**a)) {
            Some(addr) => Err(NonLocalAddress {
                host: host.to_string(),
                addr: *addr,
            }),
            None => Ok(()),
        }
    }

    /// The check for a URL whose host is an IP literal; names are left to the resolver.
    fn check_literal(&self, url: &Url) -> Result<(), NonLocalAddress> {
        let ip = match url.host() {
            Some(Host::Ipv4(v4)) => IpAddr::V4(v4),
            Some(Host::Ipv6(v6)) => IpAddr::V6(v6),
            _ => return Ok(()),
        };
        self.check(&ip.to_string(), &[ip])
    }
}

struct GuardedResolver(Arc<Policy>);

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.0.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let ips = policy.lookup(&host).await?;
            policy.check(&host, &ips)?;
            let addrs: Addrs = Box::new(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

/// Options for building the client; tests set `resolve_overrides`.
#[derive(Debug, Clone)]
pub struct EgressOptions {
    pub local_only: bool,
    pub connect_timeout: Duration,
    pub resolve_overrides: HashMap<String, Vec<IpAddr>>,
}

impl Default for EgressOptions {
    fn default() -> Self {
        EgressOptions {
            local_only: false,
            connect_timeout: Duration::from_secs(5),
            resolve_overrides: HashMap::new(),
        }
    }
}

/// The labels of the byte counters: destinations come from the configuration (providers'
/// and services' base URLs), so the set stays small.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ByteLabels {
    pub service: String,
    pub host: String,
    /// `sent` or `received`.
    pub direction: &'static str,
}

#[derive(Clone)]
pub struct Egress {
    /// The guarded client; it never follows a redirect (see the module documentation).
    client: reqwest::Client,
    policy: Arc<Policy>,
    catalog: Arc<Catalog>,
    bytes: Family<ByteLabels, Counter>,
    /// How long a connection may take to open, for the client and [`Egress::connect`] alike.
    connect_timeout: Duration,
}

impl Egress {
    /// A client that reaches local addresses only, whatever the mode: for what is on the local
    /// network by nature (devices found by discovery, a Hue bridge being paired, `guard check`).
    pub fn local_network(catalog: Catalog) -> Result<Egress> {
        Egress::new(
            catalog,
            EgressOptions {
                local_only: true,
                ..EgressOptions::default()
            },
        )
    }

    pub fn new(catalog: Catalog, opts: EgressOptions) -> Result<Egress> {
        let policy = Arc::new(Policy {
            local_only: AtomicBool::new(opts.local_only),
            overrides: opts
                .resolve_overrides
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect(),
        });
        let client = build_client(&policy, opts.connect_timeout)?;
        Ok(Egress {
            client,
            policy,
            catalog: Arc::new(catalog),
            bytes: Family::default(),
            connect_timeout: opts.connect_timeout,
        })
    }

    /// Bytes sent and received per service and host, for `/metrics` to register.
    pub fn bytes(&self) -> Family<ByteLabels, Counter> {
        self.bytes.clone()
    }

    fn count(&self, service: &str, host: &str, direction: &'static str, n: u64) {
        self.bytes
            .get_or_create(&ByteLabels {
                service: service.to_string(),
                host: host.to_string(),
                direction,
            })
            .inc_by(n);
    }

    pub fn local_only(&self) -> bool {
        self.policy.local_only.load(Ordering::Relaxed)
    }

    /// Turns local-only mode on or off for every later connection (lockdown uses this).
    pub fn set_local_only(&self, on: bool) {
        self.policy.local_only.store(on, Ordering::Relaxed);
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The name-level local-only decision alone, for callers that must refuse before they
    /// even read a credential (the guard stage comes before credential injection).
    pub fn check_service(&self, service: &str) -> Result<()> {
        if self.local_only() {
            self.catalog
                .check_name(service)
                .map_err(|b| Error::LocalOnly(Box::new(b)))?;
        }
        Ok(())
    }

    /// A request builder on the guarded client; send it with [`Egress::send`].
    pub fn request(&self, method: reqwest::Method, url: Url) -> reqwest::RequestBuilder {
        self.client.request(method, url)
    }

    /// Sends a request on behalf of `service`, applying the name check, the IP-literal check
    /// and (through the resolver) the address check. A redirect is an upstream error: the
    /// callers (providers) expect an answer, and following it would hand the credential and
    /// the body to whatever host the upstream names.
    pub async fn send(
        &self,
        service: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response> {
        let resp = self.send_relaying_redirects(service, request).await?;
        if resp.status().is_redirection() {
            let host = resp.url().host_str().unwrap_or_default().to_string();
            return Err(redirect_refused(service, &host, resp.status()));
        }
        Ok(resp)
    }

    /// Like [`Egress::send`], but a 3xx answer is returned (still not followed), for the
    /// services proxy, which relays it to its client as it relays any other answer.
    pub async fn send_relaying_redirects(
        &self,
        service: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response> {
        let request = request
            .build()
            // The cause is kept without its URL, which may carry a credential in its query.
            .map_err(|e| {
                Error::BadRequest(format!("invalid outbound request: {e}")).because(e.without_url())
            })?;
        let host = request.url().host_str().unwrap_or_default().to_string();
        let dest = tally::destination(service, &host);
        if self.local_only() {
            self.catalog
                .check_name(service)
                .map_err(|b| Error::LocalOnly(Box::new(b)))?;
            self.policy
                .check_literal(request.url())
                .map_err(|b| self.blocked(service, b))?;
        }
        let sent = request_bytes(&request);
        let resp = self.client.execute(request).await.map_err(|e| {
            if let Some(b) = find_block(&e) {
                return self.blocked(service, b);
            }
            let e = e.without_url();
            let plain = if e.is_timeout() {
                Error::UpstreamTimeout(format!("{service} ({host}) did not answer in time"))
            } else if e.is_connect() {
                Error::Upstream(format!(
                    "cannot connect to {service} ({host}): {}",
                    chain(&e)
                ))
            } else {
                Error::Upstream(format!("{service} ({host}): {}", chain(&e)))
            };
            plain.because(e)
        })?;
        // Sent once the upstream answered: a refused connection carried nothing.
        dest.sent.fetch_add(sent, Ordering::Relaxed);
        self.count(service, &host, "sent", sent);
        self.counted(service, &host, dest, resp)
    }

    /// The response with its body counted as it is read: the head and the declared length
    /// go to the audit tally at once, every byte that flows to `/metrics`.
    fn counted(
        &self,
        service: &str,
        host: &str,
        dest: Arc<tally::Destination>,
        resp: reqwest::Response,
    ) -> Result<reqwest::Response> {
        use reqwest::ResponseBuilderExt;
        let head = 12
            + resp
                .headers()
                .iter()
                .map(|(k, v)| k.as_str().len() + v.len() + 4)
                .sum::<usize>() as u64;
        let declared = resp
            .headers()
            .get(reqwest::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        dest.received
            .fetch_add(head + declared.unwrap_or(0), Ordering::Relaxed);
        self.count(service, host, "received", head);
        let mut builder = http::Response::builder()
            .status(resp.status())
            .version(resp.version())
            .url(resp.url().clone());
        if let Some(h) = builder.headers_mut() {
            *h = resp.headers().clone();
        }
        let counter = self.bytes.get_or_create(&ByteLabels {
            service: service.to_string(),
            host: host.to_string(),
            direction: "received",
        });
        let counter = counter.clone();
        let body = resp.bytes_stream().inspect_ok(move |chunk| {
            counter.inc_by(chunk.len() as u64);
            if declared.is_none() {
                dest.received
                    .fetch_add(chunk.len() as u64, Ordering::Relaxed);
            }
        });
        builder
            .body(reqwest::Body::wrap_stream(body))
            .map(reqwest::Response::from)
            .map_err(|e| Error::Upstream(format!("{service} ({host}): {e}")).because(e))
    }

    /// What `guard check` reports for a URL: the addresses it resolves to, or the refusal.
    pub async fn check_url(&self, service: &str, url: &Url) -> Result<Vec<IpAddr>> {
        let host = url
            .host()
            .ok_or_else(|| Error::BadRequest(format!("{url} has no host")))?;
        self.addresses(service, host).await
    }

    /// The addresses `host` may be dialled at for `service`, decided as the client decides:
    /// under local-only mode the name check first, then every address must be local, and a
    /// name that cannot be resolved is refused (it cannot be shown to be local).
    async fn addresses(&self, service: &str, host: Host<&str>) -> Result<Vec<IpAddr>> {
        let local_only = self.local_only();
        if local_only {
            // Before any lookup: a cloud service's name is not even sent to a resolver.
            self.catalog
                .check_name(service)
                .map_err(|b| Error::LocalOnly(Box::new(b)))?;
        }
        let ips = match host {
            Host::Ipv4(v4) => vec![IpAddr::V4(v4)],
            Host::Ipv6(v6) => vec![IpAddr::V6(v6)],
            Host::Domain(d) => match self.policy.lookup(d).await {
                Ok(ips) if !ips.is_empty() => ips,
                // An address that cannot be resolved cannot be shown to be local.
                Ok(_) if local_only => {
                    let block = self.catalog.unresolved_block(service, d, "no address");
                    return Err(Error::LocalOnly(Box::new(block)));
                }
                Err(e) if local_only => {
                    let block = self.catalog.unresolved_block(service, d, &e.to_string());
                    return Err(Error::LocalOnly(Box::new(block)));
                }
                Ok(_) => return Err(Error::Upstream(format!("{d} has no address"))),
                Err(e) => {
                    return Err(Error::Upstream(format!("cannot resolve {d}: {e}")).because(e));
                }
            },
        };
        if local_only {
            self.policy.check(&host.to_string(), &ips).map_err(|b| {
                self.blocked(
                    service,
                    NonLocalAddress {
                        host: b.host,
                        addr: b.addr,
                    },
                )
            })?;
        }
        Ok(ips)
    }

    fn blocked(&self, service: &str, b: NonLocalAddress) -> Error {
        Error::LocalOnly(Box::new(
            self.catalog.address_block(service, &b.host, b.addr),
        ))
    }
}

/// The upstream error for a redirect: the status only, since the `Location` may hold a
/// credential (a service that puts its token in a URL) and is the upstream's choice anyway.
fn redirect_refused(service: &str, host: &str, status: reqwest::StatusCode) -> Error {
    Error::Upstream(format!(
        "{service} ({host}) answered {} with a redirect; Maestra never follows redirects, \
         since that would send the credential to wherever it points: configure the final URL",
        status.as_u16()
    ))
}

/// A request's size on the wire, near enough: request line, headers, and the body when its
/// length is known (buffered, or declared in `Content-Length`).
fn request_bytes(r: &reqwest::Request) -> u64 {
    let line = r.method().as_str().len() + r.url().as_str().len() + 11;
    let headers: usize = r
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    let body = r
        .body()
        .and_then(|b| b.as_bytes())
        .map(|b| b.len() as u64)
        .or_else(|| {
            r.headers()
                .get(reqwest::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0);
    (line + headers) as u64 + body
}

/// The client: guarded resolver, no environment proxies, and no redirects followed.
fn build_client(policy: &Arc<Policy>, connect_timeout: Duration) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .dns_resolver(Arc::new(GuardedResolver(policy.clone())))
        .connect_timeout(connect_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| Error::Config(format!("cannot build the HTTP client: {e}")).because(e))
}

/// Finds the resolver's refusal inside a reqwest error chain.
fn find_block(e: &reqwest::Error) -> Option<NonLocalAddress> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(b) = err.downcast_ref::<NonLocalAddress>() {
            return Some(NonLocalAddress {
                host: b.host.clone(),
                addr: b.addr,
            });
        }
        cur = err.source();
    }
    None
}

/// The error and its causes on one line; reqwest errors carry no header or body values.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

impl From<LocalOnlyBlock> for Error {
    fn from(b: LocalOnlyBlock) -> Self {
        Error::LocalOnly(Box::new(b))
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn an_upstream_error_from_reqwest_shows_no_url_query() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let egress = crate::egress::Egress::new(
            crate::privsec::guard::Catalog::new(&Default::default()),
            crate::egress::EgressOptions::default(),
        )
        .unwrap();
        let url = format!("http://127.0.0.1:{port}/v1/x?key=sk-secret-query-123")
            .parse()
            .unwrap();
        let e = egress
            .send("svc", egress.request(reqwest::Method::GET, url))
            .await
            .unwrap_err();
        assert_eq!((e.status(), e.code()), (502, "upstream_error"), "{e}");
        assert!(
            e.to_string()
                .starts_with("upstream error: cannot connect to svc"),
            "{e}"
        );
        let reqwest = e.causes().find_map(|c| c.downcast_ref::<reqwest::Error>());
        assert!(reqwest.is_some_and(|r| r.url().is_none()), "{e:?}");
        for shown in std::iter::once(e.to_string()).chain(e.causes().map(|c| c.to_string())) {
            assert!(
                !shown.contains("sk-secret") && !shown.contains("key="),
                "{shown}"
            );
        }
        assert!(!format!("{e:?}").contains("sk-secret"), "{e:?}");
    }
}
