//! Prometheus metrics served at `GET /metrics`.
//!
//! Labels are bounded on purpose: routes are the router's templates (never raw paths with ids),
//! and no label ever holds a user, a key or content.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The media type `GET /metrics` answers with: the OpenMetrics text exposition, which is
/// what `prometheus_client` writes (it ends with `# EOF`).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub route: String,
    pub method: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    pub provider: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabels {
    pub service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

type HistogramFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    pub requests: Family<HttpLabels, Counter>,
    pub latency: HistogramFamily,
    pub upstream_errors: Family<UpstreamLabels, Counter>,
    pub local_only_blocks: Family<ServiceLabels, Counter>,
    /// Refusals at the access stages: failed keys, rate-limit and cost-limit hits.
    pub refusals: Family<ReasonLabels, Counter>,
    pub in_flight: Gauge,
    pub audit_lost: Gauge,
}

fn latency_histogram() -> Histogram {
    // 0.25 ms .. ~8 s: the low end matters, Maestra's own overhead is sub-millisecond.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("maestra");
        let requests = Family::<HttpLabels, Counter>::default();
        let latency: HistogramFamily = Family::new_with_constructor(latency_histogram);
        let upstream_errors = Family::<UpstreamLabels, Counter>::default();
        let local_only_blocks = Family::<ServiceLabels, Counter>::default();
        let refusals = Family::<ReasonLabels, Counter>::default();
        let in_flight = Gauge::default();
        let audit_lost = Gauge::default();
        registry.register(
            "http_requests",
            "HTTP requests by route template, method and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to the response head, by route template",
            latency.clone(),
        );
        registry.register(
            "upstream_errors",
            "Failed calls to model providers and services, by provider and error code",
            upstream_errors.clone(),
        );
        registry.register(
            "local_only_blocks",
            "Outbound calls refused by local-only mode, by service",
            local_only_blocks.clone(),
        );
        registry.register(
            "access_refusals",
            "Requests refused for a bad key, a rate limit or a cost limit",
            refusals.clone(),
        );
        registry.register(
            "http_requests_in_flight",
            "Requests being served",
            in_flight.clone(),
        );
        registry.register(
            "audit_entries_lost",
            "Audit entries that could not be written (fail_closed = false)",
            audit_lost.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            upstream_errors,
            local_only_blocks,
            refusals,
            in_flight,
            audit_lost,
        }
    }
}

impl Metrics {
    /// Metrics that also expose egress's bytes per destination
    /// (`maestra_egress_bytes_total{service, host, direction}`).
    pub fn with_egress(bytes: Family<crate::egress::ByteLabels, Counter>) -> Metrics {
        let mut m = Metrics::default();
        m.registry.register(
            "egress_bytes",
            "Bytes sent to and received from each outbound destination (service and host)",
            bytes,
        );
        m
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; an empty page would be the only symptom.
        let _ = encode(&mut out, &self.registry);
        out
    }

    /// Counts a failed upstream call or a local-only refusal, from the error it produced.
    pub fn upstream_failure(&self, provider: &str, err: &crate::Error) {
        if let crate::Error::LocalOnly(block) = err {
            self.local_only_blocks
                .get_or_create(&ServiceLabels {
                    service: block.service.clone(),
                })
                .inc();
        } else {
            self.upstream_errors
                .get_or_create(&UpstreamLabels {
                    provider: provider.to_string(),
                    code: err.code().to_string(),
                })
                .inc();
        }
    }
}
