//! The OpenAPI schemas of the privacy center's endpoints, merged into `/openapi.json`.

use serde_json::{Value, json};

pub fn schemas() -> Value {
    let s = |t: &str| json!({"type": t});
    let obj = |props: Value, required: &[&str]| json!({"type": "object", "properties": props, "required": required});
    let closed = |mut v: Value| {
        v["additionalProperties"] = json!(false);
        v
    };
    let nullable = |v: Value| json!({"anyOf": [v, {"type": "null"}]});
    let tally = || {
        obj(
            json!({"calls": s("integer"), "blocked": s("integer"), "errors": s("integer"),
        "bytes_sent": s("integer"), "bytes_received": s("integer"), "withheld": s("integer")}),
            &[
                "calls",
                "blocked",
                "errors",
                "bytes_sent",
                "bytes_received",
                "withheld",
            ],
        )
    };
    let approval = || {
        obj(
            json!({"id": s("string"), "server": s("string"), "tool": s("string"),
            "asked_by": s("string"), "arguments_bytes": s("integer"),
            "arguments_digest": s("string"), "arguments_preview": nullable(s("string")),
            "asked_at": nullable(s("string")), "expires_at": nullable(s("string")),
            "decision": {"anyOf": [{"type": "string", "enum": ["approved", "denied"]}, {"type": "null"}]},
            "decided_by": nullable(s("string"))}),
            &[
                "id",
                "server",
                "tool",
                "asked_by",
                "arguments_bytes",
                "arguments_digest",
                "asked_at",
                "expires_at",
                "decision",
                "decided_by",
            ],
        )
    };
    let job = obj(
        json!({
            "id": s("string"),
            "kind": {"type": "string", "enum": super::jobs::Kind::ALL.map(super::jobs::Kind::as_str)},
            "state": {"type": "string", "enum": ["running", "done", "failed"]},
            "started_at": s("string"), "finished_at": nullable(s("string")),
            "progress": obj(json!({"done": s("integer"), "total": s("integer")}), &["done", "total"]),
            "result": {}, "error": {}
        }),
        &["id", "kind", "state", "started_at", "progress"],
    );
    let group_props = || {
        json!({"key": s("string"), "usd": s("number"), "micros": s("integer"),
        "requests": s("integer"), "tokens_in": s("integer"), "tokens_out": s("integer"),
        "limits": s("object")})
    };
    let group_required = [
        "key",
        "usd",
        "micros",
        "requests",
        "tokens_in",
        "tokens_out",
    ];
    let groups = || json!({"type": "array", "items": obj(group_props(), &group_required)});
    let mut key_props = group_props();
    for (name, t) in [
        ("key_id", "string"),
        ("revoked", "boolean"),
        ("calls", "integer"),
        ("errors", "integer"),
    ] {
        key_props[name] = s(t);
    }
    let key_required: Vec<&str> = group_required
        .iter()
        .copied()
        .chain(["key_id", "revoked", "calls", "errors"])
        .collect();
    let keys = json!({"type": "array", "items": obj(key_props, &key_required)});
    json!({
        "PrivacyReport": obj(json!({
            "period": {"type": "string", "enum": ["today", "7d", "30d"]},
            "since": s("string"), "until": s("string"), "through_seq": s("integer"),
            "totals": tally(),
            "agents": {"type": "array", "items": obj(json!({"agent": s("string"), "totals": tally(),
                "destinations": s("array"), "blocked_reasons": s("array")}), &["agent", "totals", "destinations"])},
            "top_hosts": s("array"),
            "days": {"type": "array", "items": obj(json!({"day": s("string"), "calls": s("integer"),
                "blocked": s("integer"), "errors": s("integer"), "withheld": s("integer")}),
                &["day", "calls", "blocked", "errors", "withheld"])},
            "withheld": {"type": "array", "items": obj(json!({"day": s("string"),
                "service": s("string"), "values": s("integer")}), &["day", "service", "values"])},
            "tools": {"type": "array", "items": obj(json!({"server": s("string"), "tool": s("string"),
                "calls": s("integer"), "blocked": s("integer"), "errors": s("integer"),
                "last_used": nullable(s("string"))}),
                &["server", "tool", "calls", "blocked", "errors", "last_used"])}
        }), &["period", "since", "until", "totals", "agents", "top_hosts", "days", "tools",
              "withheld"]),
        "Spend": obj(json!({
            "days": s("integer"), "since": s("string"), "limits": s("object"),
            "total_usd": s("number"), "total_micros": s("integer"),
            "total_requests": s("integer"), "total_tokens_in": s("integer"),
            "total_tokens_out": s("integer"),
            "by_day": groups(), "by_model": groups(), "by_user": groups(), "by_key": keys
        }), &["days", "since", "limits", "total_usd", "total_requests", "total_tokens_in",
              "total_tokens_out", "by_day", "by_model", "by_user", "by_key"]),
        "VaultInfo": obj(json!({
            "key_source": {"type": "string", "enum": ["file", "environment"]},
            "active_keys": s("integer"),
            "key_status": {"type": "string", "enum": ["matches", "unset", "mismatch"]},
            "encrypted": s("integer"), "unencrypted": s("integer"),
            "secrets": {"type": "array", "items": obj(json!({"name": s("string"),
                "encrypted": s("boolean"), "updated_at": nullable(s("string")),
                "used_by": {"type": "array", "items": s("string")},
                "last_used": nullable(s("string"))}), &["name", "encrypted", "used_by", "last_used"])}
        }), &["key_source", "active_keys", "key_status", "secrets"]),
        "ToolApproval": approval(),
        "ToolApprovals": obj(json!({"timeout_secs": s("integer"),
            "waiting": {"type": "array", "items": approval()}}), &["timeout_secs", "waiting"]),
        "ToolDecisionRequest": closed(obj(json!({"decision": {"type": "string",
            "enum": ["approve", "deny"]}}), &["decision"])),
        "Job": job,
        "LatestJob": obj(json!({"job": {"anyOf": [{"$ref": "#/components/schemas/Job"}, {"type": "null"}]}}), &["job"]),
        "EmptyRequest": closed(obj(json!({}), &[])),
        "DiscoverRequest": closed(obj(json!({"timeout_ms": {"type": "integer",
            "minimum": 1000, "maximum": 120_000, "default": 5000,
            "description": "How long to listen for answers, in milliseconds"}}), &[])),
        "Devices": obj(json!({
            "discovery": s("boolean"),
            "period": {"type": "string", "enum": ["today", "7d", "30d"]},
            "last_run": nullable(s("string")),
            "devices": {"type": "array", "items": obj(json!({"kind": s("string"),
                "name": s("string"), "address": s("string"), "port": s("integer"),
                "found_by": {"type": "array", "items": {"type": "string", "enum": ["mdns", "ssdp"]}},
                "local": s("boolean"), "not_writable": nullable(s("string")),
                "writable": s("boolean"), "configured": nullable(s("string")), "offer": s("object"),
                "first_seen": s("string"), "last_seen": s("string"), "in_last_run": s("boolean")}),
                &["kind", "name", "address", "port", "found_by", "local", "writable",
                  "configured", "offer", "first_seen", "last_seen", "in_last_run"])},
            "services": {"type": "array", "items": obj(json!({"service": s("string"),
                "address": nullable(s("string")), "category": nullable(s("string")),
                "calls": s("integer"), "errors": s("integer"), "blocked": s("integer"),
                "last_call": nullable(s("string"))}),
                &["service", "address", "category", "calls", "errors", "blocked", "last_call"])}
        }), &["discovery", "period", "last_run", "devices", "services"]),
        "ConfirmRequest": closed(obj(json!({"confirm": {"const": true}}), &["confirm"])),
        "LocalOnlyRequest": closed(obj(json!({"on": s("boolean")}), &["on"])),
        "LocalOnlyState": obj(json!({"local_only": s("boolean")}), &["local_only"]),
        "LockdownResult": obj(json!({"local_only": s("boolean"), "api_keys_revoked": s("integer"),
            "vault_rotation": {"anyOf": [{"$ref": "#/components/schemas/Job"}, {"type": "null"}]}}),
            &["local_only", "api_keys_revoked"]),
    })
}
