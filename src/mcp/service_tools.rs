//! The configured personal services as MCP tools (SPEC §2.11): typed tools for the built-ins
//! and one generic `service_request` per service, each turned into the one HTTP call the
//! services proxy makes (`/api/services/{service}/{path}`), so a tool call meets the same
//! path checks, guard, credential, redaction and audit as a REST call.
//!
//! What each typed tool calls:
//! - Hue (the bridge's v1 API, the username injected by the proxy): `lights`,
//!   `lights/{id}/state`.
//! - Sonos through the local `node-sonos-http-api` bridge: `{room}/play`, `{room}/pause`,
//!   `{room}/volume/{level}`.
//! - Spotify's Web API: `me/player/currently-playing`, `me/player/play`, `me/player/pause`.
//! - Home Assistant's REST API: `api/states[/{entity_id}]`,
//!   `api/services/{domain}/{service}`.

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use serde_json::{Map, Value, json};

use super::names;
use crate::error::{Error, Result};

/// What a tool is, as `tools/list` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    /// A JSON Schema object.
    pub input_schema: Map<String, Value>,
}

/// The HTTP call a service tool makes through the services proxy.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceCall {
    pub service: String,
    pub method: &'static str,
    /// Below the service's `base_url`, no leading `/`; segments taken from arguments are
    /// percent-encoded, so an argument can never add a segment or a query.
    pub path: String,
    pub body: Option<Value>,
}

/// The generic tool every service has.
const GENERIC: &str = "service_request";
const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/// Everything but unreserved characters is encoded in a segment taken from an argument.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'\\')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'[')
    .add(b']')
    .add(b'^')
    .add(b'|')
    .add(b';')
    .add(b'&')
    .add(b'=')
    .add(b'+');

/// A tool's call before it is named for its service: method, path, body.
type Made = (&'static str, String, Option<Value>);

/// A typed tool of a built-in service.
struct Typed {
    service: &'static str,
    tool: &'static str,
    description: &'static str,
    schema: fn() -> Value,
    call: fn(&Map<String, Value>) -> Result<Made>,
}

const TYPED: &[Typed] = &[
    Typed {
        service: "hue",
        tool: "list_lights",
        description: "List the Hue bridge's lights with their state (on, brightness, colour).",
        schema: || json!({"type": "object", "properties": {}, "additionalProperties": false}),
        call: |_| Ok(("GET", "lights".into(), None)),
    },
    Typed {
        service: "hue",
        tool: "set_light",
        description: "Switch a Hue light on or off and set its brightness (1-254).",
        schema: || {
            json!({"type": "object", "required": ["light"], "additionalProperties": false,
                "properties": {
                    "light": {"type": "string", "minLength": 1, "maxLength": 64, "description": "The light's id, as list_lights gives it"},
                    "on": {"type": "boolean"},
                    "brightness": {"type": "integer", "minimum": 1, "maximum": 254}}})
        },
        call: |a| {
            let light = text(a, "light")?;
            let mut state = Map::new();
            if let Some(on) = a.get("on") {
                state.insert("on".into(), Value::Bool(boolean(on, "on")?));
            }
            if let Some(b) = a.get("brightness") {
                state.insert("bri".into(), json!(integer(b, "brightness", 1, 254)?));
            }
            if state.is_empty() {
                return Err(Error::BadRequest(
                    "set_light needs `on`, `brightness` or both".into(),
                ));
            }
            Ok((
                "PUT",
                format!("lights/{}/state", segment(light)),
                Some(Value::Object(state)),
            ))
        },
    },
    Typed {
        service: "sonos",
        tool: "play",
        description: "Start playback in a Sonos room.",
        schema: room_schema,
        call: |a| Ok(("GET", format!("{}/play", segment(text(a, "room")?)), None)),
    },
    Typed {
        service: "sonos",
        tool: "pause",
        description: "Pause playback in a Sonos room.",
        schema: room_schema,
        call: |a| Ok(("GET", format!("{}/pause", segment(text(a, "room")?)), None)),
    },
    Typed {
        service: "sonos",
        tool: "volume",
        description: "Set a Sonos room's volume (0-100).",
        schema: || {
            json!({"type": "object", "required": ["room", "level"], "additionalProperties": false,
                "properties": {
                    "room": {"type": "string", "minLength": 1, "maxLength": 128},
                    "level": {"type": "integer", "minimum": 0, "maximum": 100}}})
        },
        call: |a| {
            let room = segment(text(a, "room")?);
            let level = integer(a.get("level").unwrap_or(&Value::Null), "level", 0, 100)?;
            Ok(("GET", format!("{room}/volume/{level}"), None))
        },
    },
    Typed {
        service: "spotify",
        tool: "now_playing",
        description: "What Spotify is playing now (track, artist, progress).",
        schema: no_arguments,
        call: |_| Ok(("GET", "me/player/currently-playing".into(), None)),
    },
    Typed {
        service: "spotify",
        tool: "play",
        description: "Resume Spotify playback on the active device.",
        schema: no_arguments,
        call: |_| Ok(("PUT", "me/player/play".into(), None)),
    },
    Typed {
        service: "spotify",
        tool: "pause",
        description: "Pause Spotify playback on the active device.",
        schema: no_arguments,
        call: |_| Ok(("PUT", "me/player/pause".into(), None)),
    },
    Typed {
        service: "home_assistant",
        tool: "states",
        description: "Home Assistant entity states: all of them, or one entity's.",
        schema: || {
            json!({"type": "object", "additionalProperties": false,
                "properties": {"entity_id": {"type": "string", "minLength": 1, "maxLength": 255}}})
        },
        call: |a| match a.get("entity_id") {
            None => Ok(("GET", "api/states".into(), None)),
            Some(_) => Ok((
                "GET",
                format!("api/states/{}", segment(text(a, "entity_id")?)),
                None,
            )),
        },
    },
    Typed {
        service: "home_assistant",
        tool: "call_service",
        description: "Call a Home Assistant service, e.g. domain `light`, service `turn_on`, data `{\"entity_id\": \"light.kitchen\"}`.",
        schema: || {
            json!({"type": "object", "required": ["domain", "service"], "additionalProperties": false,
                "properties": {
                    "domain": {"type": "string", "minLength": 1, "maxLength": 64},
                    "service": {"type": "string", "minLength": 1, "maxLength": 64},
                    "data": {"type": "object"}}})
        },
        call: |a| {
            let path = format!(
                "api/services/{}/{}",
                segment(text(a, "domain")?),
                segment(text(a, "service")?)
            );
            let data = match a.get("data") {
                None => json!({}),
                Some(Value::Object(o)) => Value::Object(o.clone()),
                Some(_) => return Err(Error::BadRequest("`data` must be an object".into())),
            };
            Ok(("POST", path, Some(data)))
        },
    },
];

fn room_schema() -> Value {
    json!({"type": "object", "required": ["room"], "additionalProperties": false,
        "properties": {"room": {"type": "string", "minLength": 1, "maxLength": 128}}})
}

fn no_arguments() -> Value {
    json!({"type": "object", "properties": {}, "additionalProperties": false})
}

fn generic_schema() -> Value {
    json!({"type": "object", "required": ["method", "path"], "additionalProperties": false,
        "properties": {
            "method": {"type": "string", "enum": METHODS},
            "path": {"type": "string", "maxLength": 2048, "description": "Below the service's base URL, e.g. `lights/1`; a query may follow `?`"},
            "body": {"description": "A JSON body for POST, PUT or PATCH"}}})
}

/// The tools of the configured services, in the order of `services` (each name checked by
/// the configuration already).
pub fn list<'a>(services: impl IntoIterator<Item = &'a str>) -> Vec<ToolSpec> {
    let mut out = Vec::new();
    for service in services {
        for t in TYPED.iter().filter(|t| t.service == service) {
            out.push(spec(service, t.tool, t.description, (t.schema)()));
        }
        out.push(spec(
            service,
            GENERIC,
            &format!("Any HTTP call to the {service} service, its credential added by Maestra."),
            generic_schema(),
        ));
    }
    out
}

fn spec(service: &str, tool: &str, description: &str, schema: Value) -> ToolSpec {
    let Value::Object(input_schema) = schema else {
        unreachable!("every schema above is an object literal")
    };
    ToolSpec {
        name: names::join(service, tool),
        description: description.to_string(),
        input_schema,
    }
}

/// The call a service tool stands for; `None` if `tool` is not one of `service`'s.
pub fn call(service: &str, tool: &str, args: &Map<String, Value>) -> Option<Result<ServiceCall>> {
    let made = if tool == GENERIC {
        generic(args)
    } else {
        let t = TYPED
            .iter()
            .find(|t| t.service == service && t.tool == tool)?;
        (t.call)(args)
    };
    Some(made.map(|(method, path, body)| ServiceCall {
        service: service.to_string(),
        method,
        path,
        body,
    }))
}

fn generic(a: &Map<String, Value>) -> Result<Made> {
    if let Some(k) = a
        .keys()
        .find(|k| !matches!(k.as_str(), "method" | "path" | "body"))
    {
        return Err(Error::BadRequest(format!(
            "unknown argument {:?}; service_request takes method, path and body",
            k.chars().take(64).collect::<String>()
        )));
    }
    let m = text(a, "method")?;
    let method = METHODS
        .iter()
        .find(|x| x.eq_ignore_ascii_case(m))
        .copied()
        .ok_or_else(|| {
            Error::BadRequest(format!("method must be one of {}", METHODS.join(", ")))
        })?;
    let path = text(a, "path")?.trim_start_matches('/').to_string();
    let body = a.get("body").cloned();
    if body.is_some() && matches!(method, "GET" | "DELETE") {
        return Err(Error::BadRequest(format!("a {method} carries no body")));
    }
    Ok((method, path, body))
}

fn text<'a>(a: &'a Map<String, Value>, key: &str) -> Result<&'a str> {
    match a.get(key) {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 2048 => Ok(s),
        Some(_) => Err(Error::BadRequest(format!(
            "`{key}` must be a non-empty string of at most 2048 bytes"
        ))),
        None => Err(Error::BadRequest(format!("`{key}` is required"))),
    }
}

fn boolean(v: &Value, key: &str) -> Result<bool> {
    v.as_bool()
        .ok_or_else(|| Error::BadRequest(format!("`{key}` must be true or false")))
}

fn integer(v: &Value, key: &str, lo: i64, hi: i64) -> Result<i64> {
    v.as_i64().filter(|n| (lo..=hi).contains(n)).ok_or_else(|| {
        Error::BadRequest(format!("`{key}` must be a whole number from {lo} to {hi}"))
    })
}

fn segment(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn typed_tools_for_builtins_and_a_generic_one_for_every_service() {
        let names: Vec<String> = list(["hue", "nas"]).into_iter().map(|t| t.name).collect();
        assert_eq!(
            names,
            [
                "hue__list_lights",
                "hue__set_light",
                "hue__service_request",
                "nas__service_request"
            ]
        );
        for t in list(["hue", "sonos", "spotify", "home_assistant"]) {
            assert_eq!(t.input_schema["type"], "object", "{}", t.name);
        }
    }

    #[test]
    fn arguments_become_one_call_and_cannot_add_a_segment() {
        let c = call(
            "hue",
            "set_light",
            &args(json!({"light": "1/../../config", "on": true})),
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.method, "PUT");
        assert_eq!(c.path, "lights/1%2F..%2F..%2Fconfig/state");
        assert_eq!(c.body, Some(json!({"on": true})));
        let c = call(
            "sonos",
            "volume",
            &args(json!({"room": "Living Room", "level": 30})),
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.path, "Living%20Room/volume/30");
        let c = call(
            "home_assistant",
            "call_service",
            &args(
                json!({"domain": "light", "service": "turn_on", "data": {"entity_id": "light.k"}}),
            ),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (c.method, c.path.as_str()),
            ("POST", "api/services/light/turn_on")
        );
        let c = call(
            "nas",
            "service_request",
            &args(json!({"method": "post", "path": "/a/b?x=1", "body": [1]})),
        )
        .unwrap()
        .unwrap();
        assert_eq!((c.method, c.path.as_str()), ("POST", "a/b?x=1"));
        assert!(call("nas", "set_light", &Map::new()).is_none());
    }

    #[test]
    fn wrong_arguments_are_named() {
        for (service, tool, a, says) in [
            ("hue", "set_light", json!({"light": "1"}), "needs `on`"),
            (
                "hue",
                "set_light",
                json!({"light": 1, "on": true}),
                "`light` must be",
            ),
            (
                "hue",
                "set_light",
                json!({"light": "1", "brightness": 999}),
                "1 to 254",
            ),
            ("sonos", "volume", json!({"room": "k"}), "`level`"),
            ("sonos", "play", json!({}), "`room` is required"),
            (
                "nas",
                "service_request",
                json!({"method": "TRACE", "path": "x"}),
                "method must be",
            ),
            (
                "nas",
                "service_request",
                json!({"method": "GET", "path": "x", "body": 1}),
                "no body",
            ),
            (
                "nas",
                "service_request",
                json!({"method": "GET", "path": "x", "hdr": 1}),
                "unknown argument",
            ),
            (
                "home_assistant",
                "call_service",
                json!({"domain": "l", "service": "s", "data": 1}),
                "`data`",
            ),
        ] {
            let e = call(service, tool, &args(a)).unwrap().unwrap_err();
            assert!(matches!(e, Error::BadRequest(_)), "{e}");
            assert!(e.to_string().contains(says), "{tool}: {e}");
        }
    }
}
