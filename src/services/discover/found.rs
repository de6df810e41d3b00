//! What discovery found: one [`Device`] per kind, address and port, merged across the ways it
//! was found, and at most [`MAX_DEVICES`] of them.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use serde::Serialize;

use crate::privsec::guard::is_local_addr;

/// The most devices one run keeps. A home has tens of devices; answers past this many are
/// counted, not kept, so a flood of forged answers (anyone on the link can send them) cannot
/// grow memory or the table without bound.
pub const MAX_DEVICES: usize = 1000;

/// How a device was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum How {
    Mdns,
    Ssdp,
}

impl How {
    pub fn as_str(self) -> &'static str {
        match self {
            How::Mdns => "mdns",
            How::Ssdp => "ssdp",
        }
    }
}

/// One device that answered.
#[derive(Debug, Clone, Serialize)]
pub struct Device {
    /// A kind of [`super::kinds::KINDS`].
    pub kind: &'static str,
    /// Its name as announced, cleaned by [`super::clean::clean_name`]; may be empty.
    pub name: String,
    pub address: IpAddr,
    pub port: u16,
    pub found_by: BTreeSet<How>,
    /// Whether `address` is loopback, private, link-local or unique-local.
    pub local: bool,
    /// Why it cannot be written even though its kind could be (a public address, a
    /// description URL naming another host, a link-local IPv6 address).
    pub not_writable: Option<String>,
    /// An SSDP answer's description URL, when it names the answering address itself (the
    /// only one fetched).
    #[serde(skip)]
    pub description_url: Option<url::Url>,
}

impl Device {
    pub fn new(kind: &'static str, name: &str, address: IpAddr, port: u16, how: How) -> Device {
        let local = is_local_addr(address);
        Device {
            kind,
            name: super::clean::clean_name(name),
            address,
            port,
            found_by: BTreeSet::from([how]),
            local,
            not_writable: (!local).then(|| {
                "it answered from a public address: a device list is a list of targets, so \
                 only addresses on the local network are ever written"
                    .to_string()
            }),
            description_url: None,
        }
    }

    /// `address:port` as a URL authority writes it (IPv6 in brackets).
    pub fn authority(&self) -> String {
        std::net::SocketAddr::new(self.address, self.port).to_string()
    }
}

/// The devices of one run, deduplicated and bounded.
#[derive(Debug, Default)]
pub struct Findings {
    devices: Vec<Device>,
    index: HashMap<(&'static str, IpAddr, u16), usize>,
    /// Answers for new devices that arrived once [`MAX_DEVICES`] were kept.
    pub dropped: usize,
    /// Answers that could not be read (malformed SSDP answers, mDNS trouble), counted.
    pub unreadable: usize,
    /// One line per way of looking that could not run at all (no multicast socket).
    pub problems: Vec<String>,
}

impl Findings {
    /// Adds `d`, or merges it into the device of the same kind, address and port (a second
    /// way of finding it; a name where it had none).
    pub fn add(&mut self, d: Device) {
        let key = (d.kind, d.address, d.port);
        if let Some(&i) = self.index.get(&key) {
            let kept = &mut self.devices[i];
            kept.found_by.extend(d.found_by);
            if kept.name.is_empty() {
                kept.name = d.name;
            }
            if kept.description_url.is_none() {
                kept.description_url = d.description_url;
            }
            return;
        }
        if self.devices.len() >= MAX_DEVICES {
            self.dropped += 1;
            return;
        }
        self.index.insert(key, self.devices.len());
        self.devices.push(d);
    }

    pub fn devices(&self) -> &[Device] {
        &self.devices
    }

    pub fn devices_mut(&mut self) -> &mut [Device] {
        &mut self.devices
    }

    /// The devices, sorted by kind, address and port, for a stable table.
    pub fn into_sorted(mut self) -> (Vec<Device>, usize, usize, Vec<String>) {
        self.devices
            .sort_by(|a, b| (a.kind, a.address, a.port).cmp(&(b.kind, b.address, b.port)));
        (self.devices, self.dropped, self.unreadable, self.problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_duplicates_and_stops_keeping_at_the_bound() {
        let mut f = Findings::default();
        let ip: IpAddr = "10.0.0.2".parse().unwrap();
        f.add(Device::new("hue", "", ip, 80, How::Ssdp));
        f.add(Device::new("hue", "Bridge", ip, 80, How::Mdns));
        assert_eq!(f.devices().len(), 1);
        assert_eq!(f.devices()[0].name, "Bridge");
        assert_eq!(f.devices()[0].found_by.len(), 2);
        for port in 0..(MAX_DEVICES as u16 + 500) {
            f.add(Device::new("upnp", "x", ip, port, How::Ssdp));
        }
        assert_eq!(f.devices().len(), MAX_DEVICES);
        assert_eq!(f.dropped, 501);
        let public = Device::new("hue", "", "203.0.113.9".parse().unwrap(), 80, How::Mdns);
        assert!(!public.local && public.not_writable.is_some());
    }
}
