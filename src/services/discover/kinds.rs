//! What each kind of device is called, how it announces itself, and what Maestra can do with
//! it: the DNS-SD service types browsed, and for the kinds that have a built-in service
//! definition (SPEC §2.7), the base URL `--write` gives it and the credential it still needs.

/// A kind of device discovery looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindDef {
    /// The kind's name in the table, the JSON and the audit entry; a catalog name where the
    /// guard's catalog has one (`privsec::guard::LOCAL`).
    pub kind: &'static str,
    /// The DNS-SD service type it announces over mDNS, if any.
    pub mdns_type: Option<&'static str>,
    /// The built-in service `--write` configures for it; `None` for kinds Maestra has no
    /// definition of, which are listed only.
    pub service: Option<&'static str>,
    /// The port its HTTP API is on when that is not the port it announces (`None`: the
    /// announced one).
    pub api_port: Option<u16>,
    /// What the person still has to do before the service proxy can call it.
    pub credential: &'static str,
}

/// Every kind browsed for, the seed's local services first. Chromecast, AirPlay, HomeKit,
/// Spotify Connect and printers are found and listed but not written: their protocols are not
/// HTTP APIs the services proxy can forward to with a credential.
pub const KINDS: [KindDef; 10] = [
    KindDef {
        kind: "hue",
        mdns_type: Some("_hue._tcp.local."),
        service: Some("hue"),
        // The v1 API the `hue` definition speaks is served over HTTP on port 80; the port
        // announced (443) has a certificate from Signify's own authority, which Maestra does
        // not trust.
        api_port: Some(80),
        credential: "the bridge's username: run `maestra services pair hue` and press the \
                     bridge's link button",
    },
    KindDef {
        kind: "sonos",
        mdns_type: Some("_sonos._tcp.local."),
        service: Some("sonos"),
        // The player's local HTTP (UPnP control) port; mDNS announces its TLS port.
        api_port: Some(1400),
        credential: "none: the player's local API takes no credential",
    },
    KindDef {
        kind: "home_assistant",
        mdns_type: Some("_home-assistant._tcp.local."),
        service: Some("home_assistant"),
        api_port: None,
        credential: "a long-lived access token (Home Assistant: your profile, Security), \
                     then `maestra vault put home_assistant`",
    },
    KindDef {
        kind: "chromecast",
        mdns_type: Some("_googlecast._tcp.local."),
        service: None,
        api_port: None,
        credential: "",
    },
    KindDef {
        kind: "airplay",
        mdns_type: Some("_airplay._tcp.local."),
        service: None,
        api_port: None,
        credential: "",
    },
    KindDef {
        kind: "homekit",
        mdns_type: Some("_hap._tcp.local."),
        service: None,
        api_port: None,
        credential: "",
    },
    KindDef {
        kind: "spotify_connect",
        mdns_type: Some("_spotify-connect._tcp.local."),
        service: None,
        api_port: None,
        credential: "",
    },
    KindDef {
        kind: "printer",
        mdns_type: Some("_ipp._tcp.local."),
        service: None,
        api_port: None,
        credential: "",
    },
    KindDef {
        kind: "media_renderer",
        mdns_type: None,
        service: None,
        api_port: None,
        credential: "",
    },
    KindDef {
        kind: "upnp",
        mdns_type: None,
        service: None,
        api_port: None,
        credential: "",
    },
];

/// The definition of `kind` (every kind a finding carries comes from [`KINDS`]).
pub fn def(kind: &str) -> Option<&'static KindDef> {
    KINDS.iter().find(|k| k.kind == kind)
}

/// The kind announcing the DNS-SD type `ty` (`_hue._tcp.local.`).
pub fn by_mdns_type(ty: &str) -> Option<&'static KindDef> {
    KINDS.iter().find(|k| k.mdns_type == Some(ty))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_kinds_are_built_in_services_and_local_in_the_catalog() {
        let catalog = crate::privsec::guard::Catalog::new(&Default::default());
        for k in KINDS.iter().filter(|k| k.service.is_some()) {
            let s = k.service.unwrap_or_default();
            assert!(crate::services::is_builtin(s), "{s}");
            assert!(!k.credential.is_empty(), "{s}");
            assert_eq!(
                catalog.get(s).map(|e| e.kind),
                Some(crate::privsec::guard::Kind::Local)
            );
        }
        assert_eq!(
            by_mdns_type("_hue._tcp.local.").map(|k| k.kind),
            Some("hue")
        );
    }
}
