//! The object store's HTTP client is egress (issue 23, class 6).
//!
//! `object_store` dials with a `reqwest` client of its own unless it is handed an
//! [`HttpConnector`]: that client resolves with the system resolver, checks no address and
//! counts nothing, so a backup to S3 reached a public endpoint in local-only mode and under
//! lockdown while `maestra guard check` said blocked. [`GuardedConnector`] answers every
//! request the store makes (credential look-ups and redirects included) through
//! [`Egress::send_relaying_redirects`]: the guarded resolver, the IP-literal check, no
//! proxies, and the byte counters; [`Traffic`] keeps this store's totals for its audit entry.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use http_body_util::BodyExt;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpResponse,
    HttpResponseBody, HttpService,
};
use object_store::{ClientConfigKey, ClientOptions};

use crate::egress::Egress;
use crate::error::Error;

/// What one store sent and received, and the host it last reached.
#[derive(Debug, Default)]
pub struct Traffic {
    pub sent: AtomicU64,
    pub received: AtomicU64,
    host: Mutex<String>,
}

impl Traffic {
    pub fn host(&self) -> String {
        self.host
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Hands `object_store` a client that is egress, on behalf of `service`.
#[derive(Clone)]
pub struct GuardedConnector {
    egress: Egress,
    service: &'static str,
    traffic: Arc<Traffic>,
}

impl std::fmt::Debug for GuardedConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardedConnector")
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

impl GuardedConnector {
    pub fn new(egress: Egress, service: &'static str, traffic: Arc<Traffic>) -> Self {
        GuardedConnector {
            egress,
            service,
            traffic,
        }
    }
}

impl HttpConnector for GuardedConnector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let allow_http = options
            .get_config_value(&ClientConfigKey::AllowHttp)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let timeout = options
            .get_config_value(&ClientConfigKey::Timeout)
            .and_then(|t| humantime::parse_duration(&t).ok());
        Ok(HttpClient::new(GuardedService {
            connector: self.clone(),
            allow_http,
            timeout,
        }))
    }
}

#[derive(Debug)]
struct GuardedService {
    connector: GuardedConnector,
    /// The store's own `allow_http`: its client refuses plain HTTP unless set, so this does.
    allow_http: bool,
    timeout: Option<Duration>,
}

#[async_trait]
impl HttpService for GuardedService {
    async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let c = &self.connector;
        let (parts, body) = req.into_parts();
        let url = url::Url::parse(&parts.uri.to_string())
            .map_err(|e| HttpError::new(HttpErrorKind::Unknown, e))?;
        if url.scheme() != "https" && !self.allow_http {
            let e = Error::BadRequest(format!(
                "{} over plain HTTP is refused (set allow_http only for a server on this machine)",
                c.service
            ));
            return Err(HttpError::new(HttpErrorKind::Unknown, e));
        }
        *c.traffic
            .host
            .lock()
            .unwrap_or_else(PoisonError::into_inner) =
            url.host_str().unwrap_or_default().to_string();
        let head: usize = parts
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum();
        let sent = (parts.method.as_str().len() + url.as_str().len() + 11 + head) as u64
            + body.content_length() as u64;
        let mut request = c
            .egress
            .request(parts.method, url)
            .headers(parts.headers)
            .body(reqwest::Body::wrap(body));
        if let Some(t) = self.timeout {
            request = request.timeout(t);
        }
        let resp = c
            .egress
            .send_relaying_redirects(c.service, request)
            .await
            .map_err(|e| HttpError::new(kind(&e), e))?;
        c.traffic.sent.fetch_add(sent, Ordering::Relaxed);
        let resp: http::Response<reqwest::Body> = resp.into();
        let (parts, body) = resp.into_parts();
        let traffic = c.traffic.clone();
        let body = body
            .map_frame(move |frame| {
                if let Some(data) = frame.data_ref() {
                    traffic
                        .received
                        .fetch_add(data.len() as u64, Ordering::Relaxed);
                }
                frame
            })
            .map_err(|e| HttpError::new(HttpErrorKind::Interrupted, e));
        Ok(HttpResponse::from_parts(parts, HttpResponseBody::new(body)))
    }
}

/// How `object_store` should treat a failure: a refusal by the guard is final (never retried).
fn kind(e: &Error) -> HttpErrorKind {
    match e.plain() {
        Error::UpstreamTimeout(_) => HttpErrorKind::Timeout,
        Error::Upstream(m) if m.starts_with("cannot connect") => HttpErrorKind::Connect,
        Error::Upstream(_) => HttpErrorKind::Request,
        _ => HttpErrorKind::Unknown,
    }
}

/// The guard's refusal inside an `object_store` error, if that is what it is.
pub fn blocked(e: &(dyn std::error::Error + 'static)) -> Option<Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(Error::LocalOnly(b)) = err.downcast_ref::<Error>() {
            return Some(Error::LocalOnly(b.clone()));
        }
        cur = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::net::IpAddr;

    use object_store::ObjectStore;
    use object_store::aws::AmazonS3Builder;
    use object_store::path::Path as ObjectPath;

    use super::*;
    use crate::egress::EgressOptions;
    use crate::privsec::guard::Catalog;

    /// An S3 store handed this connector, as a backup builds one (but without the backup's
    /// module: egress knows nothing of it).
    fn store(
        endpoint: &str,
        local_only: bool,
        allow_http: bool,
        traffic: Arc<Traffic>,
    ) -> impl ObjectStore {
        // A name that resolves (by the egress resolver's fixed answers: no DNS is asked) to a
        // documentation address, which is not local; nothing is ever dialled there.
        let overrides: HashMap<String, Vec<IpAddr>> = [(
            "s3.example.test".to_string(),
            vec!["203.0.113.9".parse().unwrap()],
        )]
        .into();
        let egress = Egress::new(
            Catalog::new(&Default::default()),
            EgressOptions {
                local_only,
                resolve_overrides: overrides,
                ..EgressOptions::default()
            },
        )
        .unwrap();
        AmazonS3Builder::new()
            .with_bucket_name("b")
            .with_endpoint(endpoint)
            .with_region("us-east-1")
            .with_access_key_id("testing")
            .with_secret_access_key("testing")
            .with_allow_http(allow_http)
            .with_http_connector(GuardedConnector::new(egress, "s3", traffic))
            .build()
            .unwrap()
    }

    fn manifest() -> ObjectPath {
        ObjectPath::from("p/manifest.mxb")
    }

    /// The error and every source under it, as one line.
    fn chain(e: &(dyn std::error::Error + 'static)) -> String {
        let mut out = e.to_string();
        let mut cur = e.source();
        while let Some(s) = cur {
            out.push_str(": ");
            out.push_str(&s.to_string());
            cur = s.source();
        }
        out
    }

    /// In local-only mode a non-local endpoint is refused by the guard before any connection:
    /// a name by the resolver's answer, an IP literal before it is dialled; nothing is sent.
    #[tokio::test]
    async fn a_non_local_endpoint_is_refused_in_local_only_mode() {
        for endpoint in ["http://s3.example.test:9000", "http://203.0.113.9:9000"] {
            let traffic = Arc::new(Traffic::default());
            let s = store(endpoint, true, true, traffic.clone());
            let err = s.head(&manifest()).await.unwrap_err();
            let found = blocked(&err);
            assert!(
                matches!(found, Some(Error::LocalOnly(_))),
                "{endpoint}: {}",
                chain(&err)
            );
            assert_eq!(traffic.sent.load(Ordering::Relaxed), 0, "{endpoint}");
        }
    }

    /// Plain HTTP without `allow_http` is refused here as the store's own client would.
    #[tokio::test]
    async fn plain_http_needs_allow_http() {
        let traffic = Arc::new(Traffic::default());
        let s = store("http://127.0.0.1:9", false, false, traffic.clone());
        let err = chain(&s.head(&manifest()).await.unwrap_err());
        assert!(err.contains("plain HTTP"), "{err}");
        assert_eq!(traffic.sent.load(Ordering::Relaxed), 0);
    }
}
