//! What the edge learned about a request, carried in its extensions to every later stage and
//! handler: its id, the client's address, the key and principal it acts as, and who it says
//! sent it. A file of its own so the pipeline and the handlers need nothing of the edge's
//! middleware to read it.

use std::net::IpAddr;

use super::agent::Claim;
use crate::access::scope::Principal;
use crate::config::minimise::Level;
use crate::privsec::audit::Event;

/// What the edge learned about a request, for audit entries and logs.
#[derive(Debug, Clone)]
pub struct RequestInfo {
    pub id: String,
    pub ip: Option<IpAddr>,
    /// The API key's public id, once the auth stage accepted one.
    pub key_id: Option<String>,
    /// Who the request acts as (set by the auth stage; anonymous before it).
    pub principal: Principal,
    /// Who the request says sent it (`X-Maestra-Surface`, else the `User-Agent`), for the
    /// audit entry of a `/v1` call: see [`super::agent`].
    pub claim: Claim,
    /// `X-Maestra-Minimise`: how much more a cloud call must withhold than its provider's
    /// setting (SPEC §2.12); the 400's message when it is not a level.
    pub minimise: Result<Option<Level>, String>,
}

/// The request header that tightens minimisation.
pub const MINIMISE_HEADER: &str = "x-maestra-minimise";

/// Reads `X-Maestra-Minimise`: one of `off`, `standard`, `strict`, given at most once.
pub fn read_minimise(headers: &http::HeaderMap) -> Result<Option<Level>, String> {
    let mut values = headers.get_all(MINIMISE_HEADER).iter();
    let Some(v) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err("X-Maestra-Minimise may be given only once".into());
    }
    v.to_str()
        .ok()
        .and_then(|v| v.trim().parse::<Level>().ok())
        .map(Some)
        .ok_or_else(|| "X-Maestra-Minimise must be off, standard or strict".into())
}

impl RequestInfo {
    /// For a request that did not pass the request-id layer (never the case behind the router).
    pub fn unknown() -> RequestInfo {
        RequestInfo {
            id: String::new(),
            ip: None,
            key_id: None,
            principal: Principal::anonymous(),
            claim: Claim::Nothing,
            minimise: Ok(None),
        }
    }

    pub fn ip_string(&self) -> Option<String> {
        self.ip.map(|ip| ip.to_string())
    }

    /// An audit event marked with who asked: the request id, the client's address, the key's
    /// public id and the key's user.
    pub fn stamp(&self, mut e: Event) -> Event {
        e = e.request_id(&self.id);
        if let Some(ip) = self.ip_string() {
            e = e.ip(ip);
        }
        if let Some(k) = &self.key_id {
            e = e.detail("key_id", k.as_str());
        }
        if let Some(u) = &self.principal.user_id {
            e = e.user(u);
        }
        e
    }
}
