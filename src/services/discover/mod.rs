//! Device discovery on the local network (SPEC §2.7, issue 28): the person's Hue bridge, Sonos
//! players, Home Assistant and other devices, found over mDNS/DNS-SD and SSDP without asking
//! any vendor's cloud discovery service.
//!
//! Only link-local traffic leaves: multicast queries to 224.0.0.251 and ff02::fb (mDNS, by
//! `mdns-sd`) and 239.255.255.250 (SSDP, one hop), and unicast only to an address that
//! answered, for the UPnP description it named at that same private or link-local address
//! (through egress in local-only mode). What answers is untrusted: names are cleaned, the
//! number of devices kept is bounded, and an answer from a public address is listed but never
//! offered for writing.
//!
//! - `kinds`       — the kinds looked for, their DNS-SD types and built-in services
//! - `found`       — a found device, and the deduplicated, bounded set of them
//! - `clean`       — names made safe to show
//! - `mdns`        — DNS-SD browsing
//! - `ssdp`        — the M-SEARCH and its answers
//! - `description` — a UPnP device's name from its description
//! - `write`       — `--write`: found devices added to `maestra.toml`
//! - `report`      — a run as JSON and as its audit entry, for the CLI and the server alike

pub mod clean;
pub mod description;
pub mod found;
pub mod kinds;
pub mod mdns;
pub mod report;
pub mod ssdp;
pub mod write;

use std::time::Duration;

use tokio::sync::mpsc;

use crate::egress::Egress;
pub use found::{Device, How, MAX_DEVICES};

/// The shortest listening window: devices answer an SSDP search within its `MX` (at least one
/// second) and mDNS responders delay answers by up to half a second.
pub const MIN_WINDOW: Duration = Duration::from_secs(1);

/// The window when none is asked for (`--timeout`'s default, the server's job's).
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(5);

/// The longest listening window: long enough for a slow network, short enough that a typo
/// (`--timeout 5h`) does not leave a command listening for hours.
pub const MAX_WINDOW: Duration = Duration::from_secs(120);

/// Answers in flight between the listeners and the collector; a full channel slows the
/// listeners, never grows memory.
const CHANNEL_CAPACITY: usize = 256;

/// What a listener saw.
pub enum Seen {
    Device(Device),
    /// An answer that could not be read (malformed, not an answer, no address).
    Unreadable,
    /// A way of looking that could not run at all.
    Problem(String),
}

/// One run's result.
#[derive(Debug)]
pub struct Discovery {
    /// Sorted by kind, address and port.
    pub devices: Vec<Device>,
    /// Answers for more devices than [`MAX_DEVICES`], not kept.
    pub dropped: usize,
    pub unreadable: usize,
    pub problems: Vec<String>,
}

/// Listens for `window` over mDNS and SSDP at once, then names the SSDP-found devices from
/// their descriptions. `egress` must be in local-only mode (the caller builds it so).
pub async fn discover(window: Duration, egress: &Egress) -> Discovery {
    let (tx, mut rx) = mpsc::channel(CHANNEL_CAPACITY);
    let collect = async move {
        let mut findings = found::Findings::default();
        while let Some(seen) = rx.recv().await {
            match seen {
                Seen::Device(d) => findings.add(d),
                Seen::Unreadable => findings.unreadable += 1,
                Seen::Problem(p) => findings.problems.push(p),
            }
        }
        findings
    };
    let (_, _, mut findings) = tokio::join!(
        mdns::browse(window, tx.clone()),
        ssdp::search(window, tx),
        collect
    );
    description::name_from_descriptions(egress, findings.devices_mut()).await;
    let (devices, dropped, unreadable, problems) = findings.into_sorted();
    Discovery {
        devices,
        dropped,
        unreadable,
        problems,
    }
}
