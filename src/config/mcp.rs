//! The `[mcp]` section: the tool servers the person adds (SPEC §2.11), each a stdio program
//! (`command`) or a streamable-HTTP endpoint (`url`), with the reach it is declared to have
//! (`kind`) and its credentials only as vault references.
//!
//! A credential written here in clear would sit in a file that editors, backups and
//! screenshots copy, so `env` and `headers` values must name a vault secret (`vault:NAME`);
//! the secret is read when the server is started or dialled, never stored with the config.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::validate;
use crate::error::{Error, Result};

/// The longest tool-server name: it prefixes every tool name (`NAME__tool`), and MCP keeps
/// tool names to 128 characters.
const MAX_SERVER_NAME: usize = 32;
/// What separates a server's name from its tools' names.
pub const SEPARATOR: &str = "__";
/// The default and the largest time one `tools/call` may take.
const DEFAULT_CALL_TIMEOUT: u64 = 60;
const MAX_CALL_TIMEOUT: u64 = 3600;
/// How long a call of an `ask` tool waits for the person's decision before it is refused: long
/// enough to notice and read it, short enough that an assistant is not left hanging. A wait
/// longer than `server.request_timeout` is cut by the request's own deadline.
const DEFAULT_ASK_TIMEOUT: u64 = 120;
const MAX_ASK_TIMEOUT: u64 = 3600;
/// Tool servers a home may declare: each may be a running child process.
const MAX_SERVERS: usize = 64;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct McpFile {
    #[serde(default)]
    servers: BTreeMap<String, ServerFile>,
    call_timeout: Option<u64>,
    ask_timeout: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerFile {
    command: Option<Vec<String>>,
    url: Option<String>,
    kind: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    tools: BTreeMap<String, String>,
}

/// The tool servers, checked.
#[derive(Debug, Clone, Default)]
pub struct McpConfig {
    pub servers: BTreeMap<String, ToolServer>,
    /// How long one `tools/call` to a tool server may take before it is answered with an
    /// error (the server's own work is abandoned, not waited for).
    pub call_timeout: Duration,
    /// How long a call of an `ask` tool waits for the person's approval.
    pub ask_timeout: Duration,
}

/// One `[mcp.servers.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolServer {
    pub name: String,
    pub transport: Transport,
    pub kind: Reach,
    /// Environment variables for a stdio program: (variable, vault secret name).
    pub env: Vec<(String, String)>,
    /// Headers for an HTTP server, sent with every request to it: (header, vault secret name).
    pub headers: Vec<(String, String)>,
    /// Which of its tools the assistant may use (`tools = { NAME = "allow" | "deny" | "ask" }`,
    /// `"*"` for the rest; every tool by default).
    pub policy: ToolPolicy,
}

/// A server's per-tool rule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolPolicy {
    pub tools: BTreeMap<String, Rule>,
    /// For a tool not named (`"*"`).
    pub rest: Rule,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Rule {
    #[default]
    Allow,
    Deny,
    /// Each call waits until the person approves it (privacy center, `maestra mcp approve`).
    Ask,
}

impl ToolPolicy {
    pub fn rule(&self, tool: &str) -> Rule {
        self.tools.get(tool).copied().unwrap_or(self.rest)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// A program spoken to over its stdin and stdout.
    Stdio { program: String, args: Vec<String> },
    /// A streamable-HTTP endpoint, dialled through egress (`mcp::remote`).
    Http { url: String },
}

/// Where a tool server's work may go, as the person declares it: local-only mode refuses a
/// cloud one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    Local,
    Cloud,
}

impl Reach {
    pub fn as_str(self) -> &'static str {
        match self {
            Reach::Local => "local",
            Reach::Cloud => "cloud",
        }
    }
}

/// Reads the `[mcp]` section, naming every setting that is wrong at once.
pub(super) fn load(file: McpFile) -> Result<McpConfig> {
    if file.servers.len() > MAX_SERVERS {
        return Err(Error::Config(format!(
            "[mcp.servers] declares {} servers; at most {MAX_SERVERS}",
            file.servers.len()
        )));
    }
    let call_timeout = validate::range(
        "mcp.call_timeout",
        file.call_timeout.unwrap_or(DEFAULT_CALL_TIMEOUT),
        1,
        MAX_CALL_TIMEOUT,
    );
    let mut errors = Vec::new();
    let mut servers = BTreeMap::new();
    for (name, f) in file.servers {
        match server(&name, f) {
            Ok(s) => {
                servers.insert(name, s);
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    let ask_timeout = validate::range(
        "mcp.ask_timeout",
        file.ask_timeout.unwrap_or(DEFAULT_ASK_TIMEOUT),
        1,
        MAX_ASK_TIMEOUT,
    );
    for e in [&call_timeout, &ask_timeout]
        .into_iter()
        .filter_map(|r| r.as_ref().err())
    {
        errors.push(e.to_string());
    }
    if !errors.is_empty() {
        return Err(Error::Config(errors.join("\n")));
    }
    Ok(McpConfig {
        servers,
        call_timeout: Duration::from_secs(call_timeout?),
        ask_timeout: Duration::from_secs(ask_timeout?),
    })
}

fn server(name: &str, f: ServerFile) -> Result<ToolServer> {
    let bad = |what: &str| Error::Config(format!("[mcp.servers.{name}] {what}"));
    let name_ok = !name.is_empty()
        && name.len() <= MAX_SERVER_NAME
        && !name.contains(SEPARATOR)
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !name_ok {
        return Err(bad(&format!(
            "the name must be 1-{MAX_SERVER_NAME} lowercase letters, digits, `_` or `-`, \
             without `{SEPARATOR}` (it prefixes the server's tools)"
        )));
    }
    let transport = match (f.command, f.url) {
        (Some(command), None) => {
            let mut parts = command.into_iter();
            let program = parts
                .next()
                .filter(|p| !p.trim().is_empty())
                .ok_or_else(|| bad("command must name a program"))?;
            let args: Vec<String> = parts.collect();
            if args.iter().chain([&program]).any(|a| a.contains('\0')) {
                return Err(bad("command may not hold a NUL character"));
            }
            Transport::Stdio { program, args }
        }
        (None, Some(url)) => {
            let url = validate::endpoint(&format!("[mcp.servers.{name}] url"), &url)?;
            Transport::Http { url }
        }
        _ => {
            return Err(bad(
                "needs exactly one of `command = [...]` or `url = \"...\"`",
            ));
        }
    };
    // Stated, never guessed: a program can dial anything, and a URL's host says little about
    // where the server behind it sends what it is given.
    let kind = match f.kind.as_deref() {
        Some("local") => Reach::Local,
        Some("cloud") => Reach::Cloud,
        Some(_) => return Err(bad("kind must be \"local\" or \"cloud\"")),
        None => {
            return Err(bad(
                "needs kind = \"local\" (its work stays on this machine and network) or \
                 \"cloud\" (it reaches the internet; refused in local-only mode)",
            ));
        }
    };
    let env = references(name, "env", f.env, env_name)?;
    let headers = references(name, "headers", f.headers, header_name)?;
    let policy = policy(name, f.tools)?;
    match transport {
        Transport::Stdio { .. } if !headers.is_empty() => {
            return Err(bad("headers are for a `url` server; a program takes `env`"));
        }
        Transport::Http { .. } if !env.is_empty() => {
            return Err(bad("env is for a `command` server; a URL takes `headers`"));
        }
        _ => {}
    }
    Ok(ToolServer {
        name: name.to_string(),
        transport,
        kind,
        env,
        headers,
        policy,
    })
}

/// `tools = { NAME = "allow" | "deny" | "ask", "*" = ... }`.
fn policy(server: &str, rules: BTreeMap<String, String>) -> Result<ToolPolicy> {
    let mut out = ToolPolicy::default();
    for (tool, rule) in rules {
        let rule = match rule.as_str() {
            "allow" => Rule::Allow,
            "deny" => Rule::Deny,
            "ask" => Rule::Ask,
            _ => {
                return Err(Error::Config(format!(
                    "[mcp.servers.{server}] tools.{tool} must be \"allow\", \"deny\" or \"ask\""
                )));
            }
        };
        if tool == "*" {
            out.rest = rule;
        } else if names_ok(&tool) {
            out.tools.insert(tool, rule);
        } else {
            return Err(Error::Config(format!(
                "[mcp.servers.{server}] tools: {:?} is not a tool name",
                tool.chars().take(64).collect::<String>()
            )));
        }
    }
    Ok(out)
}

/// A tool name as MCP allows one (`mcp::names::valid_tool`, which configuration cannot
/// import): 1-128 of letters, digits, `_`, `-` and `.`.
fn names_ok(tool: &str) -> bool {
    !tool.is_empty()
        && tool.len() <= 128
        && tool
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// `KEY = "vault:NAME"` pairs; anything else is refused without quoting the value, which may
/// be the very credential that belongs in the vault.
fn references(
    server: &str,
    table: &str,
    pairs: BTreeMap<String, String>,
    key_ok: fn(&str) -> bool,
) -> Result<Vec<(String, String)>> {
    let mut out = Vec::with_capacity(pairs.len());
    for (key, value) in pairs {
        let at = format!("[mcp.servers.{server}] {table}.{key}");
        if !key_ok(&key) {
            return Err(Error::Config(format!(
                "{at}: not a valid name (or one the transport sets itself)"
            )));
        }
        let secret = value
            .strip_prefix("vault:")
            .filter(|n| vault_name(n))
            .ok_or_else(|| {
                Error::Config(format!(
                    "{at} must be a vault reference such as \"vault:{}\" (its value is not \
                     shown; store the secret with `maestra vault put NAME`)",
                    key.to_ascii_lowercase()
                ))
            })?;
        out.push((key, secret.to_string()));
    }
    Ok(out)
}

fn env_name(k: &str) -> bool {
    let mut b = k.bytes();
    b.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
        && k.len() <= 128
}

/// Headers the streamable-HTTP transport sets itself (the body's type, what it accepts, the
/// session, the protocol's own `Mcp-*`) or the HTTP client does: a credential under one of
/// these names would replace what the protocol needs.
const TRANSPORT_HEADERS: [&str; 7] = [
    "accept",
    "content-type",
    "content-length",
    "host",
    "transfer-encoding",
    "connection",
    "last-event-id",
];

fn header_name(k: &str) -> bool {
    axum::http::HeaderName::from_bytes(k.as_bytes()).is_ok()
        && !TRANSPORT_HEADERS.iter().any(|r| k.eq_ignore_ascii_case(r))
        && !k.to_ascii_lowercase().starts_with("mcp-")
}

/// The vault's own rule for a secret's name (`privsec::vault::validate_name`).
fn vault_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 128
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<McpConfig> {
        #[derive(Deserialize)]
        struct F {
            mcp: McpFile,
        }
        let f: F = toml::from_str(text).map_err(|e| Error::Config(e.to_string()))?;
        load(f.mcp)
    }

    #[test]
    fn servers_of_both_transports() {
        let c = parse(
            r#"
            [mcp]
            call_timeout = 5
            [mcp.servers.time]
            command = ["uvx", "mcp-server-time", "--local-timezone", "UTC"]
            kind = "local"
            [mcp.servers.notion]
            url = "https://mcp.example.com/mcp"
            kind = "cloud"
            headers = { Authorization = "vault:notion" }
            tools = { search = "allow", create_page = "ask", "*" = "deny" }
            "#,
        )
        .unwrap();
        assert_eq!(c.call_timeout, Duration::from_secs(5));
        let time = &c.servers["time"];
        assert_eq!(
            time.transport,
            Transport::Stdio {
                program: "uvx".into(),
                args: vec![
                    "mcp-server-time".into(),
                    "--local-timezone".into(),
                    "UTC".into()
                ]
            }
        );
        assert_eq!(time.kind, Reach::Local);
        let notion = &c.servers["notion"];
        assert_eq!(notion.kind, Reach::Cloud);
        assert_eq!(
            notion.headers,
            vec![("Authorization".to_string(), "notion".to_string())]
        );
        assert_eq!(notion.policy.rule("search"), Rule::Allow);
        assert_eq!(notion.policy.rule("delete_page"), Rule::Deny);
        assert_eq!(notion.policy.rule("create_page"), Rule::Ask);
        assert_eq!(time.policy.rule("anything"), Rule::Allow);
    }

    #[test]
    fn a_bad_table_names_itself_and_never_quotes_a_value() {
        for (text, says) in [
            (
                "[mcp.servers.a__b]\ncommand=[\"x\"]\nkind=\"local\"",
                "without `__`",
            ),
            (
                "[mcp.servers.Time]\ncommand=[\"x\"]\nkind=\"local\"",
                "lowercase",
            ),
            (
                "[mcp.servers.t]\ncommand=[]\nkind=\"local\"",
                "must name a program",
            ),
            ("[mcp.servers.t]\ncommand=[\"x\"]", "needs kind"),
            (
                "[mcp.servers.t]\ncommand=[\"x\"]\nkind=\"lan\"",
                "kind must be",
            ),
            ("[mcp.servers.t]\nkind=\"local\"", "exactly one of"),
            (
                "[mcp.servers.t]\ncommand=[\"x\"]\nurl=\"http://127.0.0.1:1\"\nkind=\"local\"",
                "exactly one of",
            ),
            ("[mcp.servers.t]\nurl=\"ftp://x\"\nkind=\"cloud\"", "url"),
            (
                "[mcp.servers.t]\ncommand=[\"x\"]\nkind=\"local\"\nenv={TOKEN=\"sk-CANARY\"}",
                "vault reference",
            ),
            (
                "[mcp.servers.t]\ncommand=[\"x\"]\nkind=\"local\"\nheaders={A=\"vault:a\"}",
                "headers are for",
            ),
            (
                "[mcp.servers.t]\nurl=\"https://x.example\"\nkind=\"cloud\"\nenv={A=\"vault:a\"}",
                "env is for",
            ),
            (
                "[mcp.servers.t]\nurl=\"https://x.example\"\nkind=\"cloud\"\nheaders={Mcp-Session-Id=\"vault:a\"}",
                "sets itself",
            ),
            (
                "[mcp.servers.t]\nurl=\"https://x.example\"\nkind=\"cloud\"\nheaders={accept=\"vault:a\"}",
                "sets itself",
            ),
            (
                "[mcp.servers.t]\ncommand=[\"x\"]\nkind=\"local\"\nargs=1",
                "unknown field",
            ),
            (
                "[mcp.servers.t]\ncommand=[\"x\"]\nkind=\"local\"\ntools={a=\"maybe\"}",
                "\"allow\", \"deny\" or \"ask\"",
            ),
            (
                "[mcp.servers.t]\ncommand=[\"x\"]\nkind=\"local\"\ntools={\"a b\"=\"deny\"}",
                "not a tool name",
            ),
        ] {
            let e = parse(&format!("[mcp]\n{text}")).unwrap_err().to_string();
            assert!(e.contains(says), "{text}: {e}");
            assert!(!e.contains("CANARY"), "{e}");
        }
        let e = parse("[mcp]\ncall_timeout = 0\nask_timeout = 3601")
            .unwrap_err()
            .to_string();
        assert!(e.contains("mcp.call_timeout"), "{e}");
        assert!(e.contains("mcp.ask_timeout"), "{e}");
    }
}
