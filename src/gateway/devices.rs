//! The devices the server's discovery runs found (`POST /api/services/discover`), kept in
//! memory for the privacy center's Devices list: each with when it was first and last seen,
//! merged across runs by kind, address and port. Nothing is stored on disk (a device list is a
//! list of targets; a restart forgets it), and at most [`MAX_KEPT`] devices are kept: past
//! that, the ones seen longest ago go first.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};

use serde_json::{Value, json};

use crate::conversations::model::format_millis;
use crate::services::discover::report::device_json;
use crate::services::discover::write::Offer;
use crate::services::discover::{Device, MAX_DEVICES};

/// The most devices kept across runs: one run's bound, so the newest run always fits whole.
pub const MAX_KEPT: usize = MAX_DEVICES;

struct Kept {
    device: Device,
    offer: Offer,
    first_seen_ms: i64,
    last_seen_ms: i64,
}

#[derive(Default)]
struct Inner {
    by: HashMap<(&'static str, IpAddr, u16), Kept>,
    /// When the newest run finished (Unix milliseconds).
    last_run_ms: Option<i64>,
}

/// The kept devices, shared by the discovery job (which adds) and `GET /api/devices`.
#[derive(Default)]
pub struct Devices {
    inner: Mutex<Inner>,
}

impl Devices {
    /// Adds a run's devices (with their offers), seen at `now_ms`.
    pub fn record(&self, devices: &[Device], offers: &[Offer], now_ms: i64) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        for (d, o) in devices.iter().zip(offers) {
            let first_seen_ms = inner
                .by
                .get(&(d.kind, d.address, d.port))
                .map_or(now_ms, |k| k.first_seen_ms);
            inner.by.insert(
                (d.kind, d.address, d.port),
                Kept {
                    device: d.clone(),
                    offer: o.clone(),
                    first_seen_ms,
                    last_seen_ms: now_ms,
                },
            );
        }
        if inner.by.len() > MAX_KEPT {
            let mut ages: Vec<(i64, (&'static str, IpAddr, u16))> =
                inner.by.iter().map(|(k, v)| (v.last_seen_ms, *k)).collect();
            ages.sort();
            let excess = inner.by.len() - MAX_KEPT;
            for (_, key) in ages.into_iter().take(excess) {
                inner.by.remove(&key);
            }
        }
        inner.last_run_ms = Some(now_ms);
    }

    /// Every kept device (sorted by kind, address and port) and when the newest run ended.
    pub fn list(&self) -> (Vec<Value>, Option<String>) {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let mut kept: Vec<&Kept> = inner.by.values().collect();
        kept.sort_by_key(|k| (k.device.kind, k.device.address, k.device.port));
        let devices = kept
            .into_iter()
            .map(|k| {
                let mut v = device_json(&k.device, &k.offer);
                v["first_seen"] = json!(format_millis(k.first_seen_ms));
                v["last_seen"] = json!(format_millis(k.last_seen_ms));
                v["in_last_run"] = json!(Some(k.last_seen_ms) == inner.last_run_ms);
                v
            })
            .collect();
        (devices, inner.last_run_ms.map(format_millis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::discover::How;

    fn device(port: u16) -> (Device, Offer) {
        let ip: IpAddr = "10.0.0.2".parse().unwrap();
        let d = Device::new("upnp", "x", ip, port, How::Ssdp);
        let o = Offer::NotWritable {
            reason: "listed only".into(),
        };
        (d, o)
    }

    #[test]
    fn runs_merge_and_the_oldest_go_past_the_bound() {
        let devices = Devices::default();
        let (first, offers): (Vec<Device>, Vec<Offer>) = (0..10).map(device).unzip();
        devices.record(&first, &offers, 1_000);
        let (later, offers): (Vec<Device>, Vec<Offer>) =
            (5..(5 + MAX_KEPT as u16)).map(device).unzip();
        devices.record(&later, &offers, 2_000);
        let (list, last_run) = devices.list();
        assert_eq!(list.len(), MAX_KEPT);
        assert_eq!(last_run.as_deref(), Some("1970-01-01T00:00:02Z"));
        // Ports 0-4 were seen only in the first run, so they went; 5-9 kept their first sight.
        assert_eq!(list[0]["port"], 5);
        assert_eq!(list[0]["first_seen"], "1970-01-01T00:00:01Z");
        assert_eq!(list[0]["last_seen"], "1970-01-01T00:00:02Z");
        assert!(list.iter().all(|d| d["in_last_run"] == true));
    }
}
