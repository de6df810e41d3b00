//! What one run reports, the same wherever it ran (`maestra services discover --json`, the
//! server's `POST /api/services/discover` job): the devices with their offers as JSON, and the
//! run's one audit entry (category `network`: counts and kinds, never a name or an address).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::write::Offer;
use super::{Device, Discovery};
use crate::error::Error;
use crate::privsec::audit::{Category, Event, Outcome};

/// The refusal when the `discovery` setting is off: nothing is sent, and the message says how
/// to turn it on.
pub fn turned_off() -> Error {
    Error::DiscoveryOff(
        "device discovery is turned off on this machine: nothing was sent. Set `discovery = \
         true` in maestra.toml (or MAESTRA_DISCOVERY=true) and restart `maestra serve` to turn \
         it on"
            .into(),
    )
}

/// The run's devices, each with how it was found, whether it could be written, the service it
/// is configured as and its offer (`write::Offer`), and the run's counts.
pub fn to_json(found: &Discovery, offers: &[Offer]) -> Value {
    let devices: Vec<Value> = found
        .devices
        .iter()
        .zip(offers)
        .map(|(d, o)| device_json(d, o))
        .collect();
    json!({
        "devices": devices,
        "dropped": found.dropped,
        "unreadable": found.unreadable,
        "problems": found.problems,
    })
}

/// One device as the JSON shows it: the device's fields, how it was found, whether `--write`
/// would add it, the service it is configured as (else null) and its offer.
pub fn device_json(d: &Device, o: &Offer) -> Value {
    let mut v = json!(d);
    v["found_by"] = json!(d.found_by.iter().map(|h| h.as_str()).collect::<Vec<_>>());
    v["writable"] = json!(matches!(o, Offer::New { .. }));
    v["configured"] = match o {
        Offer::Configured { service } => json!(service),
        _ => Value::Null,
    };
    v["offer"] = json!(o);
    v
}

/// The run's one audit entry: counts by kind and what was written, never a name or address.
pub fn audit_event(found: &Discovery, offers: &[Offer], written: &[String]) -> Event {
    let mut kinds: BTreeMap<&str, u64> = BTreeMap::new();
    for d in &found.devices {
        *kinds.entry(d.kind).or_default() += 1;
    }
    let count = |f: fn(&Offer) -> bool| offers.iter().filter(|o| f(o)).count();
    Event::new(Category::Network, "discovery", "discover", Outcome::Success)
        .detail("found", found.devices.len())
        .detail("kinds", json!(kinds))
        .detail(
            "not_local",
            found.devices.iter().filter(|d| !d.local).count(),
        )
        .detail(
            "configured",
            count(|o| matches!(o, Offer::Configured { .. })),
        )
        .detail(
            "updates_offered",
            count(|o| matches!(o, Offer::Update { .. })),
        )
        .detail("dropped", found.dropped)
        .detail("unreadable", found.unreadable)
        .detail("written", json!(written))
}
