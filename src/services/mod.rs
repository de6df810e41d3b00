//! Personal services (SPEC §2.7): what a service is, where it lives and how its credential
//! goes upstream, so the assistant can reach Spotify or the Hue bridge without ever holding a
//! token. `gateway::services` (the `/api/services/...` route) is the caller.
//!
//! - `auth`   — the `auth` setting (`bearer`, `header:NAME`, `path_prefix`, `oauth2`, `none`),
//!   and which headers may pass each way
//! - `body`   — the client's body (limited, kept whole for OAuth2) and the service's (scrubbed)
//! - `content_type` — writes carry JSON unless the service declares another type
//! - `discover` — devices on the local network found over mDNS and SSDP, and `--write`
//! - `endpoint` — a service's name and URL checked on their own (configuration uses it too)
//! - `oauth`  — OAuth2 credentials kept in the vault, refreshed once for all waiting requests
//! - `pair`   — the Hue bridge's link-button pairing, its username into the vault
//! - `path`   — the client's path joined under `base_url`, or refused
//! - `redact` — the injected credential scrubbed from what goes back to the client
//!
//! A service is resolved from `config.services` over the built-in definitions: every table is
//! resolved once by [`check_services`] when a command loads the configuration, so a bad
//! `[services.X]` table stops the start with a line naming it, and again per request (a few
//! string checks).

pub mod auth;
pub mod body;
pub mod content_type;
pub mod discover;
pub mod endpoint;
pub mod oauth;
pub mod pair;
pub mod path;
pub mod redact;

use std::collections::BTreeMap;

use mime::Mime;
use url::Url;

use crate::config::{Config, ServiceConfig};
use crate::error::{Error, Result};
use crate::privsec::audit::Category;
use crate::privsec::guard::{Catalog, Kind};
pub use auth::Auth;
pub use endpoint::{parse_endpoint, validate_name};

/// A built-in definition; the user completes it with `base_url` (and a vault credential).
struct Builtin {
    name: &'static str,
    kind: Kind,
    category: Category,
    auth: &'static str,
    /// Public endpoints are known; local devices' addresses are not.
    base_url: Option<&'static str>,
    token_url: Option<&'static str>,
}

const BUILTINS: [Builtin; 4] = [
    Builtin {
        name: "spotify",
        kind: Kind::Cloud,
        category: Category::Media,
        auth: "oauth2",
        base_url: Some("https://api.spotify.com/v1"),
        token_url: Some("https://accounts.spotify.com/api/token"),
    },
    Builtin {
        name: "sonos",
        kind: Kind::Local,
        category: Category::Media,
        auth: "none",
        base_url: None,
        token_url: None,
    },
    Builtin {
        name: "hue",
        kind: Kind::Local,
        category: Category::Smarthome,
        auth: "path_prefix:/api",
        base_url: None,
        token_url: None,
    },
    Builtin {
        name: "home_assistant",
        kind: Kind::Local,
        category: Category::Smarthome,
        auth: "bearer",
        base_url: None,
        token_url: None,
    },
];

/// Whether `name` is a built-in service (usable with a `[services.NAME]` table or, for
/// Spotify, without one).
pub fn is_builtin(name: &str) -> bool {
    BUILTINS.iter().any(|b| b.name == name)
}

/// A built-in service's category and `auth` setting, for a table that configures a second
/// device of its kind under another name (`hue_2`), which the built-in does not cover.
pub fn builtin_settings(name: &str) -> Option<(Category, &'static str)> {
    BUILTINS
        .iter()
        .find(|b| b.name == name)
        .map(|b| (b.category, b.auth))
}

/// Categories a service's calls may be audited under (the others are Maestra's own).
const SERVICE_CATEGORIES: [Category; 5] = [
    Category::Media,
    Category::Smarthome,
    Category::Creative,
    Category::Llm,
    Category::Data,
];

/// A service ready to be called.
#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    pub base_url: Url,
    pub category: Category,
    /// From config or the catalog; `None` leaves the decision to egress's address check.
    pub kind: Option<Kind>,
    /// The vault name of the credential, when `auth` needs one.
    pub credential: Option<String>,
    pub auth: Auth,
    /// Body types besides JSON that writes to this service may carry (`content_types`).
    pub content_types: Vec<Mime>,
}

/// Every `[services.NAME]` table resolved once, so a bad one stops the start (and every
/// command that loads the configuration) with a line naming it rather than a 503 on its
/// first call. The configuration only reads the tables; this needs the guard's catalog.
pub fn check_services(config: &Config) -> Result<()> {
    let catalog = Catalog::new(&config.guard);
    for name in config.services.keys() {
        resolve(name, &config.services, &catalog).map_err(|e| match e {
            Error::Config(m) => Error::Config(m),
            Error::BadRequest(m) | Error::NotFound(m) => {
                Error::Config(format!("[services.{name}]: {m}"))
            }
            other => Error::Config(format!("[services.{name}]: {other}")).because(other),
        })?;
    }
    Ok(())
}

/// The service `name` from `[services.NAME]` over the built-ins; 404 when neither knows it.
pub fn resolve(
    name: &str,
    config: &BTreeMap<String, ServiceConfig>,
    catalog: &Catalog,
) -> Result<Service> {
    validate_name(name)?;
    let builtin = BUILTINS.iter().find(|b| b.name == name);
    let cfg = config.get(name);
    if cfg.is_none() && builtin.is_none() {
        return Err(Error::NotFound(format!(
            "unknown service {name:?}; add a [services.{name}] table to maestra.toml"
        )));
    }
    // A setting of the table, if there is one.
    let set = |f: fn(&ServiceConfig) -> &Option<String>| cfg.and_then(|c| f(c).as_deref());
    let bad = |what: &str| Error::Config(format!("[services.{name}] {what}"));

    let base = set(|c| &c.base_url)
        .or(builtin.and_then(|b| b.base_url))
        .ok_or_else(|| bad("has no base_url; set it in maestra.toml"))?;
    let base_url = parse_endpoint(base).map_err(|why| bad(&format!("base_url {why}")))?;

    let category = match set(|c| &c.category) {
        Some(c) => c
            .parse::<Category>()
            .ok()
            .filter(|c| SERVICE_CATEGORIES.contains(c))
            .ok_or_else(|| bad("category must be media, smarthome, creative, llm or data"))?,
        None => builtin
            .map(|b| b.category)
            .or_else(|| {
                let group = catalog.get(name)?.group;
                group
                    .parse::<Category>()
                    .ok()
                    .filter(|c| SERVICE_CATEGORIES.contains(c))
            })
            .ok_or_else(|| bad("needs a category (media, smarthome, creative, llm or data)"))?,
    };

    let kind = match set(|c| &c.kind) {
        Some("local") => Some(Kind::Local),
        Some("cloud") => Some(Kind::Cloud),
        Some(_) => return Err(bad("kind must be \"local\" or \"cloud\"")),
        None => builtin
            .map(|b| b.kind)
            .or_else(|| catalog.get(name).map(|e| e.kind)),
    };

    let token_url = set(|c| &c.token_url)
        .or(builtin.and_then(|b| b.token_url))
        .map(|t| parse_endpoint(t).map_err(|why| bad(&format!("token_url {why}"))))
        .transpose()?;
    let credential = set(|c| &c.credential);
    let auth_text = match (set(|c| &c.auth), builtin) {
        (Some(a), _) => a,
        (None, Some(b)) => b.auth,
        (None, None) if credential.is_some() => "bearer",
        (None, None) => "none",
    };
    let auth = Auth::parse(auth_text, token_url).map_err(|why| bad(&format!("auth {why}")))?;

    let credential = if auth.needs_credential() {
        let c = credential.unwrap_or(name).to_string();
        crate::privsec::vault::validate_name(&c)
            .map_err(|_| bad("credential is not a valid vault name"))?;
        Some(c)
    } else {
        None
    };
    let content_types = content_type::parse_declared(cfg.map_or(&[], declared_content_types))
        .map_err(|why| bad(&format!("content_types {why}")))?;
    Ok(Service {
        name: name.to_string(),
        base_url,
        category,
        kind,
        credential,
        auth,
        content_types,
    })
}

/// The body types besides JSON a service's writes may carry (`content_types`), as written.
fn declared_content_types(cfg: &ServiceConfig) -> &[String] {
    &cfg.content_types
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GuardConfig;

    /// A `[services.X]` table as the config file would give it (built from TOML, so a new
    /// optional field does not break these tests).
    fn cfg(pairs: &[(&str, &str)]) -> ServiceConfig {
        let table: String = pairs
            .iter()
            .map(|(k, v)| format!("{k} = {}\n", toml::Value::String(v.to_string())))
            .collect();
        toml::from_str(&table).unwrap()
    }

    #[test]
    fn builtins_need_only_a_base_url() {
        let catalog = Catalog::new(&GuardConfig::default());
        let mut services = BTreeMap::new();
        let s = resolve("spotify", &services, &catalog).unwrap();
        assert_eq!(s.category, Category::Media);
        assert_eq!(s.kind, Some(Kind::Cloud));
        assert!(matches!(s.auth, Auth::OAuth2 { .. }));
        assert_eq!(s.credential.as_deref(), Some("spotify"));
        assert_eq!(
            resolve("hue", &services, &catalog).unwrap_err().code(),
            "configuration_error"
        );
        services.insert("hue".into(), cfg(&[("base_url", "http://10.0.0.2")]));
        let hue = resolve("hue", &services, &catalog).unwrap();
        assert_eq!(hue.category, Category::Smarthome);
        assert!(matches!(hue.auth, Auth::PathPrefix { .. }));
        assert_eq!(
            resolve("nope", &services, &catalog).unwrap_err().status(),
            404
        );
        assert_eq!(
            resolve("../x", &services, &catalog).unwrap_err().status(),
            400
        );
    }

    #[test]
    fn custom_services_and_bad_tables() {
        let catalog = Catalog::new(&GuardConfig::default());
        let mut services = BTreeMap::new();
        services.insert(
            "jellyfin".into(),
            cfg(&[
                ("base_url", "http://192.168.1.5:8096"),
                ("category", "media"),
                ("auth", "header:X-Emby-Token"),
            ]),
        );
        let j = resolve("jellyfin", &services, &catalog).unwrap();
        assert_eq!(j.kind, None);
        assert_eq!(j.credential.as_deref(), Some("jellyfin"));
        for bad in [
            [("base_url", "ftp://x"), ("category", "media")],
            [("base_url", "http://u:p@x"), ("category", "media")],
            [("base_url", "http://x"), ("category", "auth")],
            [("base_url", "http://x?q=1"), ("category", "media")],
        ] {
            services.insert("t".into(), cfg(&bad));
            let e = resolve("t", &services, &catalog).unwrap_err();
            assert_eq!(e.code(), "configuration_error", "{bad:?}");
            assert!(!e.to_string().contains("u:p"));
        }
    }

    /// A bad table stops every command that loads the configuration (moved here from the
    /// configuration's own list of bad settings, which no longer sees the catalog).
    #[test]
    fn a_bad_table_is_a_configuration_error_naming_it() {
        for text in [
            "[services.x]\nbase_url = \"not a url\"\n",
            "[services.x]\nbase_url = \"http://h\"\nkind = \"remote\"\ncategory = \"media\"\n",
        ] {
            let config = Config::from_parts(
                &std::collections::HashMap::<String, String>::new(),
                "/h".into(),
                "/h/maestra.toml".into(),
                Some(text),
            )
            .unwrap();
            let e = check_services(&config).unwrap_err();
            assert_eq!(e.code(), "configuration_error", "{text}");
            assert!(e.to_string().contains("services.x"), "{text}: {e}");
        }
    }
}
