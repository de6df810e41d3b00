//! Language-model providers: routing by model name, and the calls themselves, always through
//! the guarded [`Egress`] client (so local-only mode blocks cloud models at the socket).
//!
//! - `chat`      — provider-neutral request, answer and stream shapes
//! - `embeddings` — the embeddings request, its routing, the call and its checked answer
//! - `openai`    — the OpenAI wire format (OpenAI and local OpenAI-compatible servers)
//! - `anthropic` — the Messages API, translated
//! - `keys`      — provider API keys from the vault, kept decrypted for a second

pub mod anthropic;
pub mod chat;
pub mod embeddings;
mod keys;
pub mod openai;
mod stream;

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::Value;
use url::Url;

pub use chat::{
    ChatMessage, ChatRequest, Choice, Completion, Delta, Image, ImageSource, Part, ResponseFormat,
    Tool, ToolCall, ToolChoice, Usage,
};
pub use stream::DeltaStream;

use crate::config::Config;
use crate::egress::Egress;
use crate::error::{Error, Result};
use crate::privsec::vault::Vault;
use crate::services::redact::Redactor;

/// Vault names of the provider keys (`MAESTRA_OPENAI_KEY` / `MAESTRA_ANTHROPIC_KEY` are imported
/// here on start, so a key lives encrypted at rest like every other credential).
pub const OPENAI_KEY: &str = "openai_api_key";
pub const ANTHROPIC_KEY: &str = "anthropic_api_key";
/// The cloud model a fallback goes to, per provider.
const OPENAI_FALLBACK: &str = "gpt-4o-mini";
const ANTHROPIC_FALLBACK: &str = "claude-3-5-haiku-latest";
/// Largest upstream answer read, in bytes.
const MAX_ANSWER_BYTES: usize = 8 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Local,
    Cloud,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Local,
    OpenAi,
    Anthropic,
}

impl Provider {
    /// The name in the guard catalog and in audit entries. The local server is not a catalog
    /// entry on purpose: it is allowed only if its address really is local.
    pub fn service(self) -> &'static str {
        match self {
            Provider::Local => "local_model",
            Provider::OpenAi => "openai",
            Provider::Anthropic => "anthropic",
        }
    }

    pub fn source(self) -> Source {
        match self {
            Provider::Local => Source::Local,
            _ => Source::Cloud,
        }
    }
}

/// Where a model name goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub provider: Provider,
    pub model: String,
}

pub struct Providers {
    egress: Egress,
    keys: keys::ProviderKeys,
    /// Upstream endpoints, parsed once (config has checked them; `None` only if it did not).
    local_chat: Option<Url>,
    /// `MAESTRA_LOCAL_MODEL_URL` as an error may show it (no userinfo, no query).
    local_url: String,
    local_models: Vec<String>,
    openai_chat: Option<Url>,
    /// `POST /v1/embeddings`'s endpoints (`providers::embeddings`).
    local_embeddings: Option<Url>,
    openai_embeddings: Option<Url>,
    anthropic_messages: Option<Url>,
    timeout: Duration,
    fallback: bool,
}

/// `base` + `/` + `path`, parsed once at start rather than on every call.
fn endpoint(base: &str, path: &str) -> Option<Url> {
    Url::parse(&format!("{}/{path}", base.trim_end_matches('/'))).ok()
}

impl Providers {
    pub fn new(config: &Config, egress: Egress, vault: Arc<Vault>) -> Providers {
        Providers {
            egress,
            keys: keys::ProviderKeys::new(vault, keys::TTL),
            local_chat: endpoint(&config.local_model_url, "chat/completions"),
            local_url: shown_url(&config.local_model_url),
            local_models: config.local_models(),
            openai_chat: endpoint(&config.openai_base_url, "chat/completions"),
            local_embeddings: endpoint(&config.local_model_url, "embeddings"),
            openai_embeddings: endpoint(&config.openai_base_url, "embeddings"),
            anthropic_messages: endpoint(&config.anthropic_base_url, "messages"),
            timeout: Duration::from_secs(config.upstream_timeout),
            fallback: config.cloud_fallback,
        }
    }

    /// The model the core endpoint uses: the first local one.
    pub fn default_route(&self) -> Route {
        Route {
            provider: Provider::Local,
            model: self.local_models.first().cloned().unwrap_or_default(),
        }
    }

    /// Routes by name: the configured local models (or `local/NAME`), `gpt-*`/`o1..o4*`/
    /// `chatgpt-*` to OpenAI, `claude-*` to Anthropic; anything else is an unknown model.
    pub fn route(&self, model: &str) -> Result<Route> {
        if let Some(name) = model.strip_prefix("local/") {
            return Ok(Route {
                provider: Provider::Local,
                model: name.to_string(),
            });
        }
        let provider = if self.local_models.iter().any(|m| m == model) {
            Provider::Local
        } else if model.starts_with("gpt-")
            || model.starts_with("chatgpt-")
            || ["o1", "o3", "o4"].iter().any(|p| model.starts_with(p))
        {
            Provider::OpenAi
        } else if model.starts_with("claude-") {
            Provider::Anthropic
        } else {
            return Err(Error::UnknownModel(model.to_string()));
        };
        Ok(Route {
            provider,
            model: model.to_string(),
        })
    }

    /// What `GET /v1/models` lists: local models, and cloud ones whose key is in the vault.
    pub async fn models(&self) -> Vec<(String, Provider)> {
        let mut out: Vec<_> = self
            .local_models
            .iter()
            .map(|m| (m.clone(), Provider::Local))
            .collect();
        if !self.egress.local_only() {
            for (key, model, p) in [
                (OPENAI_KEY, OPENAI_FALLBACK, Provider::OpenAi),
                (ANTHROPIC_KEY, ANTHROPIC_FALLBACK, Provider::Anthropic),
            ] {
                if self.keys.get(key).await.is_ok() {
                    out.push((model.to_string(), p));
                }
            }
        }
        out
    }

    /// The cloud route a failed local call may fall back to: only when the user turned
    /// fallback on, never in local-only mode, and only to a provider whose key is stored.
    pub async fn fallback_for(&self, route: &Route, err: &Error) -> Option<Route> {
        let transient = matches!(
            err.plain(),
            Error::Upstream(_) | Error::UpstreamUnavailable(_) | Error::UpstreamTimeout(_)
        );
        if !self.fallback || self.egress.local_only() || !transient {
            return None;
        }
        if route.provider != Provider::Local {
            return None;
        }
        for (key, model, provider) in [
            (OPENAI_KEY, OPENAI_FALLBACK, Provider::OpenAi),
            (ANTHROPIC_KEY, ANTHROPIC_FALLBACK, Provider::Anthropic),
        ] {
            if self.keys.get(key).await.is_ok() {
                return Some(Route {
                    provider,
                    model: model.to_string(),
                });
            }
        }
        None
    }

    /// Refuses, by name, what the route's provider cannot do (more than one choice, log
    /// probabilities, ...), before anything is reserved or sent: dropping it silently would
    /// hand the client an answer to a question it did not ask.
    pub fn check(&self, route: &Route, req: &ChatRequest) -> Result<()> {
        match route.provider {
            Provider::Anthropic => anthropic::check(req, &route.model),
            Provider::OpenAi => Ok(()),
            Provider::Local => openai::check_local(req),
        }
    }

    /// One whole answer, with connect and overall timeouts. Every error and the answer's
    /// text are scrubbed of the key that was sent: an upstream may quote it back.
    pub async fn complete(&self, route: &Route, req: &ChatRequest) -> Result<Completion> {
        let (request, key) = self.request(route, req, false).await?;
        let redactor = Redactor::new(key.as_ref());
        let request = request.timeout(self.timeout);
        let answer = async {
            let resp = self.egress.send(route.provider.service(), request).await?;
            let resp = check_status(route.provider, resp, &redactor).await?;
            let body = read_capped(route.provider, resp).await?;
            let v: Value = serde_json::from_slice(&body).map_err(|e| {
                Error::Upstream(format!(
                    "{} sent an answer that is not JSON",
                    route.provider.service()
                ))
                .because(e)
            })?;
            match route.provider {
                Provider::Anthropic => anthropic::parse_completion(&v, req),
                _ => openai::parse_completion(&v, req.n),
            }
        };
        let mut completion = answer
            .await
            .map_err(|e| self.local_down(route, redactor.scrub_error(e)))?;
        scrub_completion(&redactor, &mut completion);
        Ok(completion)
    }

    /// A streamed answer. Waiting for the first byte and every gap between events are bounded
    /// by the timeout, so a silent upstream ends the stream with an error instead of a hang.
    /// Errors and text are scrubbed of the key that was sent, as in [`Providers::complete`].
    pub async fn stream(&self, route: &Route, req: &ChatRequest) -> Result<DeltaStream> {
        let (request, key) = self.request(route, req, true).await?;
        let redactor = Redactor::new(key.as_ref());
        let start = async {
            let send = self.egress.send(route.provider.service(), request);
            let resp = tokio::time::timeout(self.timeout, send)
                .await
                .map_err(|_| timeout(route.provider))??;
            check_status(route.provider, resp, &redactor).await
        };
        let resp = start
            .await
            .map_err(|e| self.local_down(route, redactor.scrub_error(e)))?;
        Ok(stream::deltas(
            route.provider,
            resp,
            self.timeout,
            redactor,
            req.n,
            anthropic::StreamState::new(req),
        ))
    }

    /// A local model nobody serves (the connection refused or unroutable) is the first thing
    /// a new user meets: the error names the address dialled and the fix. Same status (502).
    fn local_down(&self, route: &Route, e: Error) -> Error {
        let m = match e.plain() {
            Error::Upstream(m)
                if route.provider == Provider::Local && m.starts_with("cannot connect") =>
            {
                m
            }
            _ => return e,
        };
        let hint = Error::Upstream(format!(
            "{m}; no local model answers at {} (MAESTRA_LOCAL_MODEL_URL): start Ollama or \
             llama.cpp there, or set MAESTRA_LOCAL_MODEL_URL",
            self.local_url
        ));
        match e {
            Error::Caused { source, .. } => hint.because(source),
            _ => hint,
        }
    }

    /// The request, and the key injected into it (what answers must not quote back).
    async fn request(
        &self,
        route: &Route,
        req: &ChatRequest,
        stream: bool,
    ) -> Result<(reqwest::RequestBuilder, Option<secrecy::SecretString>)> {
        self.egress.check_service(route.provider.service())?;
        let (url, body) = match route.provider {
            Provider::Anthropic => (
                &self.anthropic_messages,
                anthropic::request_body(req, &route.model, stream)?,
            ),
            Provider::OpenAi => (
                &self.openai_chat,
                openai::request_body(req, &route.model, stream, false),
            ),
            Provider::Local => (
                &self.local_chat,
                openai::request_body(req, &route.model, stream, true),
            ),
        };
        let url = url.clone().ok_or_else(|| {
            Error::Config(format!(
                "the {} base URL is not a URL",
                route.provider.service()
            ))
        })?;
        let builder = self.egress.request(reqwest::Method::POST, url).json(&body);
        // Credentials are injected here, at egress, straight from the vault.
        Ok(match route.provider {
            Provider::Local => (builder, None),
            Provider::OpenAi => {
                let key = self.key(OPENAI_KEY).await?;
                let builder = builder.bearer_auth(key.expose_secret());
                (builder, Some(key))
            }
            Provider::Anthropic => {
                let key = self.key(ANTHROPIC_KEY).await?;
                let mut value = reqwest::header::HeaderValue::from_str(key.expose_secret())
                    .map_err(|_| {
                        // Dropped on purpose: the cause is about the key's value, which is never told.
                        Error::Vault(format!("{ANTHROPIC_KEY} is not a valid header value"))
                    })?;
                value.set_sensitive(true);
                let mut builder = builder
                    .header("x-api-key", value)
                    .header("anthropic-version", anthropic::VERSION);
                if anthropic::wants_strict(req) {
                    builder = builder.header("anthropic-beta", anthropic::STRUCTURED_OUTPUTS_BETA);
                }
                (builder, Some(key))
            }
        })
    }

    async fn key(&self, name: &'static str) -> Result<secrecy::SecretString> {
        self.keys.get(name).await.map_err(|e| match e {
            Error::SecretNotFound(_) => Error::UpstreamUnavailable(format!(
                "no API key stored: set it with `maestra vault put {name}`"
            )),
            other => other,
        })
    }
}

/// A whole answer with the key that was sent scrubbed from every text in it: an upstream may
/// quote it back in the answer, a call's id, name or arguments, or a refusal. Log
/// probabilities spell the answer's tokens out again, a key split over many of them: when they
/// spell it, the choice's are dropped (null) rather than pieced back together.
fn scrub_completion(redactor: &Redactor, completion: &mut Completion) {
    for c in &mut completion.choices {
        c.content = redactor.scrub_text(&c.content);
        for t in &mut c.tool_calls {
            t.id = redactor.scrub_text(&t.id);
            t.name = redactor.scrub_text(&t.name);
            t.arguments = redactor.scrub_text(&t.arguments);
        }
        c.refusal = c.refusal.as_deref().map(|r| redactor.scrub_text(r));
        if let Some(lp) = c.logprobs.take() {
            c.logprobs = if openai::logprobs_spell_key(redactor, &lp) {
                None
            } else {
                // A key in one token, or JSON-escaped.
                let scrubbed = redactor.scrub_text(&lp.to_string());
                serde_json::from_str(&scrubbed).ok()
            };
        }
    }
}

/// A configured URL as messages and the console may show it: without a user name, password,
/// query or fragment (where a key may have been put).
pub fn shown_url(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => "(not a URL)".into(),
    }
}

fn timeout(p: Provider) -> Error {
    Error::UpstreamTimeout(format!("{} did not answer in time", p.service()))
}

/// Maps an upstream failure status to ours: overload and rate limits are "unavailable" (503),
/// a gateway timeout stays a timeout (504), a prompt over the model's context is the client's
/// to fix (400, with the upstream's words, which name the limit), everything else is a bad
/// upstream answer (502). The body is scrubbed of the key before anything is taken from it,
/// so the message can be shortened without cutting a key in two (a half key would escape the
/// exact-match scrub).
async fn check_status(
    p: Provider,
    resp: reqwest::Response,
    redactor: &Redactor,
) -> Result<reqwest::Response> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let body = read_capped(p, resp).await.unwrap_or_default();
    let body = redactor.scrub_text(&String::from_utf8_lossy(&body));
    let error = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|mut v| v.get_mut("error").map(Value::take));
    let detail = error.as_ref().map(upstream_message).unwrap_or_default();
    let msg = format!(
        "{} answered {}{}{}",
        p.service(),
        status.as_u16(),
        if detail.is_empty() { "" } else { ": " },
        detail
    );
    Err(match status {
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
            Error::UpstreamUnavailable(msg)
        }
        StatusCode::GATEWAY_TIMEOUT => Error::UpstreamTimeout(msg),
        StatusCode::BAD_REQUEST if error.as_ref().is_some_and(over_context) => Error::BadRequest(
            format!("the prompt does not fit the model's context ({msg})"),
        ),
        _ => Error::Upstream(msg),
    })
}

/// Whether an upstream's 400 error object says the prompt (with `max_tokens`) is over the
/// model's context: by its code where the server gives one (OpenAI and llama-cpp-python
/// `context_length_exceeded`, llama.cpp's own server `exceed_context_size_error`), else by
/// its words (vLLM's "maximum context length", Anthropic's "prompt is too long").
fn over_context(err: &Value) -> bool {
    const CODES: [&str; 2] = ["context_length_exceeded", "exceed_context_size_error"];
    const WORDS: [&str; 4] = [
        "context length",
        "context window",
        "context size",
        "prompt is too long",
    ];
    let field = |k: &str| err.get(k).and_then(Value::as_str).unwrap_or("");
    if CODES.contains(&field("code")) || CODES.contains(&field("type")) {
        return true;
    }
    let message = match err {
        Value::String(s) => s.as_str(),
        _ => field("message"),
    }
    .to_lowercase();
    WORDS.iter().any(|w| message.contains(w))
}

async fn read_capped(p: Provider, resp: reqwest::Response) -> Result<Vec<u8>> {
    read_answer(p, resp, MAX_ANSWER_BYTES, "an answer", "").await
}

/// A provider's answer body, up to `limit` bytes; past it, an error naming `what` was too
/// large, with `advice` after it.
pub(crate) async fn read_answer(
    p: Provider,
    mut resp: reqwest::Response,
    limit: usize,
    what: &str,
    advice: &str,
) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > limit {
                    return Err(Error::Upstream(format!(
                        "{} sent {what} over {limit} bytes{advice}",
                        p.service()
                    )));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) if e.is_timeout() => return Err(timeout(p)),
            Err(_) => {
                return Err(Error::Upstream(format!(
                    "{} closed the connection mid-answer",
                    p.service()
                )));
            }
        }
    }
}

/// An upstream error object's message, redacted (providers echo key prefixes) and shortened.
/// The exact key sent is scrubbed by the caller ([`Redactor::scrub_error`]) before any
/// message leaves this module; this catches key-shaped text that is not ours.
pub(crate) fn upstream_message(err: &Value) -> String {
    let text = match err {
        Value::String(s) => s.clone(),
        other => other
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
    };
    let text = crate::conversations::redact::redact(&text);
    let mut short: String = text.chars().filter(|c| !c.is_control()).take(200).collect();
    if text.chars().count() > 200 {
        short.push('…');
    }
    short
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{Choice, Completion, Redactor, ToolCall, Usage, over_context, scrub_completion};

    #[test]
    fn a_whole_answer_is_scrubbed_everywhere_the_key_may_be() {
        const KEY: &str = "sk-proj-WHOLEKEY0123456789";
        let key = secrecy::SecretString::from(KEY.to_string());
        let r = Redactor::new([&key]);
        let tokens: Vec<_> = ["Your key: ", "sk-proj", "-WHOLE", "KEY0123", "456789"]
            .iter()
            .map(
                |t| json!({"token": t, "logprob": -0.1, "bytes": t.as_bytes(), "top_logprobs": []}),
            )
            .collect();
        let choice = |logprobs| Choice {
            content: format!("Your key: {KEY}"),
            tool_calls: vec![ToolCall {
                id: format!("call_{KEY}"),
                name: format!("{KEY}_fn"),
                arguments: format!("{{\"k\":\"{KEY}\"}}"),
            }],
            finish_reason: "stop".into(),
            logprobs: Some(logprobs),
            refusal: Some(KEY.into()),
        };
        let clean = json!({"content": [{"token": "hi", "bytes": [104, 105]}]});
        let mut c = Completion {
            choices: vec![
                choice(json!({"content": tokens})),
                choice(json!({"content": null, "refusal": tokens})),
                choice(clean.clone()),
            ],
            usage: Usage::default(),
        };
        scrub_completion(&r, &mut c);
        let shown = format!("{c:?}");
        assert!(!shown.contains("WHOLEKEY"), "{shown}");
        let t = &c.choices[0].tool_calls[0];
        assert_eq!(
            (t.id.as_str(), t.name.as_str()),
            ("call_[REDACTED]", "[REDACTED]_fn")
        );
        assert_eq!(
            (&c.choices[0].logprobs, &c.choices[1].logprobs),
            (&None, &None)
        );
        assert_eq!(c.choices[2].logprobs, Some(clean));
    }

    #[test]
    fn context_overflow_is_told_from_other_bad_requests() {
        for over in [
            // llama-cpp-python's server (tests/local_model.rs sees it for real).
            json!({"message": "This model's maximum context length is 256 tokens. However, you requested 489 tokens", "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}),
            json!({"code": 400, "message": "the request exceeds the available context size, try increasing it", "type": "exceed_context_size_error"}),
            json!({"message": "prompt is too long: 210000 tokens > 200000 maximum", "type": "invalid_request_error"}),
            json!("This model's maximum context length is 4096 tokens."),
        ] {
            assert!(over_context(&over), "{over}");
        }
        for other in [
            json!({"message": "Invalid value for 'temperature'", "type": "invalid_request_error", "code": null}),
            json!({"message": "The model `x` does not exist", "code": "model_not_found"}),
            json!(42),
        ] {
            assert!(!over_context(&other), "{other}");
        }
    }
}
