//! `--write`: what discovery offers to add to `maestra.toml`, and the edit that adds it. A
//! configured entry is never rewritten: a configured service found at a new address (DHCP
//! moved it) is printed as an offered update for the person to make.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde::Serialize;
use toml_edit::{DocumentMut, Item, Table, value};
use url::{Host, Url};

use super::found::Device;
use super::kinds;
use crate::config::ServiceConfig;
use crate::error::{Error, Result};

/// The most entries of one kind `--write` names (`hue`, `hue_2`, ... `hue_16`): a home has
/// one or two bridges, and the bound keeps forged answers from filling the file.
pub const MAX_PER_KIND: usize = 16;

/// What discovery offers for one device.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "offer", rename_all = "snake_case")]
pub enum Offer {
    /// A `[services.NAME]` already points at its address.
    Configured { service: String },
    /// The same device as another row (found on another port or another way).
    Same { service: String },
    /// `[services.NAME]` of its kind points elsewhere and nothing answered there: perhaps the
    /// device moved. Printed, never written.
    Update {
        service: String,
        configured: String,
        found: String,
    },
    /// What `--write` adds.
    New {
        service: String,
        base_url: String,
        credential: &'static str,
    },
    /// Listed only, with the reason.
    NotWritable { reason: String },
}

impl Offer {
    /// The `configured` column: the service it is (or would be) configured as.
    pub fn column(&self) -> String {
        match self {
            Offer::Configured { service } => format!("yes ({service})"),
            Offer::Same { service } => format!("same as {service}"),
            Offer::Update { service, .. } => format!("moved? ({service})"),
            Offer::New { service, .. } => format!("no (--write: {service})"),
            Offer::NotWritable { .. } => "no (not writable)".into(),
        }
    }
}

/// The offer for each of `devices`, in order, given the configured `services`.
pub fn offers(devices: &[Device], services: &BTreeMap<String, ServiceConfig>) -> Vec<Offer> {
    let configured_host = |ip: IpAddr| {
        services.iter().find_map(|(name, s)| {
            let url = Url::parse(s.base_url.as_deref()?).ok()?;
            (host_ip(&url)? == ip).then(|| name.clone())
        })
    };
    // Configured services whose address answered this time: not candidates for an update.
    let answered: BTreeSet<String> = devices
        .iter()
        .filter_map(|d| configured_host(d.address))
        .collect();
    let mut taken: BTreeSet<String> = services.keys().cloned().collect();
    let mut planned: BTreeMap<String, String> = BTreeMap::new(); // base_url -> service
    let mut updates_offered: BTreeSet<String> = BTreeSet::new();
    devices
        .iter()
        .map(|d| {
            if let Some(service) = configured_host(d.address) {
                return Offer::Configured { service };
            }
            let def = kinds::def(d.kind);
            let Some((def, builtin)) = def.and_then(|k| Some((k, k.service?))) else {
                return Offer::NotWritable {
                    reason: format!("Maestra has no built-in service for a {} device", d.kind),
                };
            };
            if let Some(reason) = &d.not_writable {
                return Offer::NotWritable {
                    reason: reason.clone(),
                };
            }
            let base_url = base_url(d, def.api_port);
            if let Some(service) = planned.get(&base_url) {
                return Offer::Same {
                    service: service.clone(),
                };
            }
            if let Some(current) = services.get(builtin).and_then(|s| s.base_url.clone())
                && !answered.contains(builtin)
                && updates_offered.insert(builtin.to_string())
            {
                planned.insert(base_url.clone(), builtin.to_string());
                return Offer::Update {
                    service: builtin.to_string(),
                    configured: current,
                    found: base_url,
                };
            }
            let Some(service) = free_name(builtin, &taken) else {
                return Offer::NotWritable {
                    reason: format!("more than {MAX_PER_KIND} {} devices", d.kind),
                };
            };
            taken.insert(service.clone());
            planned.insert(base_url.clone(), service.clone());
            Offer::New {
                service,
                base_url,
                credential: def.credential,
            }
        })
        .collect()
}

/// The address a URL's host is, when it is an IP literal.
fn host_ip(url: &Url) -> Option<IpAddr> {
    match url.host()? {
        Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
        Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
        Host::Domain(_) => None,
    }
}

/// `http://ADDRESS:PORT` of the device's API (the kind's API port when it has one).
fn base_url(d: &Device, api_port: Option<u16>) -> String {
    let port = api_port.unwrap_or(d.port);
    match (d.address, port) {
        (IpAddr::V4(v4), 80) => format!("http://{v4}"),
        (IpAddr::V6(v6), 80) => format!("http://[{v6}]"),
        (a, p) => format!("http://{}", std::net::SocketAddr::new(a, p)),
    }
}

/// `builtin`, or `builtin_2`, `builtin_3`, ..., whichever is not taken first.
fn free_name(builtin: &str, taken: &BTreeSet<String>) -> Option<String> {
    (1..=MAX_PER_KIND)
        .map(|i| {
            if i == 1 {
                builtin.to_string()
            } else {
                format!("{builtin}_{i}")
            }
        })
        .find(|n| !taken.contains(n))
}

/// Adds a `[services.NAME]` table for each [`Offer::New`] to the file at `path` (created,
/// mode 0600, if missing), keeping everything else (comments, order, layout) and the file's
/// mode; a name already in the file is left as it is. Returns the names added.
pub fn write(path: &Path, offers: &[Offer]) -> Result<Vec<String>> {
    let (text, mode) = match std::fs::read_to_string(path) {
        Ok(t) => {
            let meta = std::fs::metadata(path)
                .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
            (t, Some(meta.permissions().mode() & 0o7777))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (String::new(), None),
        Err(e) => return Err(Error::io(format!("cannot read {}", path.display()), e)),
    };
    let mut doc: DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| {
        Error::Config(format!(
            "{} is not valid TOML: {}",
            path.display(),
            e.message()
        ))
    })?;
    let services = doc
        .entry("services")
        .or_insert_with(|| {
            let mut t = Table::new();
            t.set_implicit(true);
            Item::Table(t)
        })
        .as_table_mut()
        .ok_or_else(|| Error::Config(format!("{}: `services` is not a table", path.display())))?;
    let mut added = Vec::new();
    for offer in offers {
        let Offer::New {
            service, base_url, ..
        } = offer
        else {
            continue;
        };
        if services.contains_key(service) {
            continue;
        }
        let mut table = Table::new();
        table
            .decor_mut()
            .set_prefix("\n# Found on the local network by `maestra services discover --write`.\n");
        table.insert("base_url", value(base_url.as_str()));
        // A second device of a kind is not the built-in service: it needs the built-in's
        // settings spelled out (its credential is its own vault name, `hue_2`).
        if !super::super::is_builtin(service) {
            let builtin = service
                .rsplit_once('_')
                .map_or(service.as_str(), |(b, _)| b);
            if let Some((category, auth)) = super::super::builtin_settings(builtin) {
                let category = serde_json::to_value(category).unwrap_or_default();
                table.insert("category", value(category.as_str().unwrap_or_default()));
                table.insert("auth", value(auth));
                table.insert("kind", value("local"));
            }
        }
        services.insert(service, Item::Table(table));
        added.push(service.clone());
    }
    if added.is_empty() {
        return Ok(added);
    }
    crate::home::write_private_atomic(path, doc.to_string().as_bytes())?;
    if let Some(mode) = mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| Error::io(format!("cannot set the mode of {}", path.display()), e))?;
    }
    Ok(added)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::discover::How;

    fn dev(kind: &'static str, ip: &str, port: u16) -> Device {
        Device::new(kind, "x", ip.parse().unwrap(), port, How::Mdns)
    }

    fn cfg(base_url: &str) -> ServiceConfig {
        toml::from_str(&format!("base_url = {base_url:?}")).unwrap()
    }

    #[test]
    fn offers_new_same_configured_update_and_refusals() {
        let mut services = BTreeMap::new();
        services.insert("home_assistant".to_string(), cfg("http://10.0.0.9:8123"));
        services.insert("sonos".to_string(), cfg("http://10.0.0.50:1400"));
        let devices = [
            dev("hue", "10.0.0.2", 443),
            dev("hue", "10.0.0.2", 80),
            dev("hue", "10.0.0.3", 443),
            dev("home_assistant", "10.0.0.9", 8123),
            dev("sonos", "10.0.0.51", 1443),
            dev("sonos", "10.0.0.52", 1443),
            dev("chromecast", "10.0.0.4", 8009),
            dev("hue", "203.0.113.9", 443),
        ];
        let o = offers(&devices, &services);
        let new = |s: &str, u: &str| Offer::New {
            service: s.into(),
            base_url: u.into(),
            credential: kinds::def(s.split('_').next().unwrap()).map_or("", |k| k.credential),
        };
        assert_eq!(o[0], new("hue", "http://10.0.0.2"));
        assert_eq!(
            o[1],
            Offer::Same {
                service: "hue".into()
            }
        );
        assert_eq!(o[2], new("hue_2", "http://10.0.0.3"));
        assert_eq!(
            o[3],
            Offer::Configured {
                service: "home_assistant".into()
            }
        );
        assert_eq!(
            o[4],
            Offer::Update {
                service: "sonos".into(),
                configured: "http://10.0.0.50:1400".into(),
                found: "http://10.0.0.51:1400".into()
            }
        );
        assert_eq!(o[5], new("sonos_2", "http://10.0.0.52:1400"));
        assert!(matches!(o[6], Offer::NotWritable { .. }));
        assert!(matches!(o[7], Offer::NotWritable { .. }));
    }

    #[test]
    fn writes_tables_keeping_comments_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("maestra.toml");
        let text = "# my settings\nlocal_only = true # keep it\n\n[services.sonos]\nbase_url = \"http://10.0.0.50:1400\"\n";
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let offers = [
            Offer::New {
                service: "hue".into(),
                base_url: "http://10.0.0.2".into(),
                credential: "",
            },
            Offer::New {
                service: "hue_2".into(),
                base_url: "http://10.0.0.3".into(),
                credential: "",
            },
            Offer::New {
                service: "sonos".into(),
                base_url: "http://10.9.9.9:1400".into(),
                credential: "",
            },
        ];
        assert_eq!(write(&path, &offers).unwrap(), ["hue", "hue_2"]);
        let out = std::fs::read_to_string(&path).unwrap();
        assert!(
            out.starts_with("# my settings\nlocal_only = true # keep it\n"),
            "{out}"
        );
        assert!(
            out.contains("10.0.0.50:1400") && !out.contains("10.9.9.9"),
            "{out}"
        );
        let parsed: toml::Table = toml::from_str(&out).unwrap();
        let hue2 = &parsed["services"]["hue_2"];
        assert_eq!(hue2["auth"].as_str(), Some("path_prefix:/api"));
        assert_eq!(hue2["category"].as_str(), Some("smarthome"));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
    }
}
