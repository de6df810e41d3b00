//! OpenAI's embeddings API (`POST /v1/embeddings`): which server a model's vectors come
//! from, and the call itself. The request is read in [`request`], the answer checked in
//! [`answer`].
//!
//! Embeddings are what an assistant's memory is made of, so the input is the person's own
//! text: it is held only for the call, never written anywhere.
//!
//! Routing says what the model name says: `text-embedding-*` is OpenAI's (a cloud call, under
//! the guard), a configured local model or `local/NAME` is the local server's. Anthropic has
//! no embeddings endpoint. There is no cloud fallback: vectors from another model live in
//! another space, and mixing them would silently spoil the client's index.

mod answer;
mod request;

use secrecy::ExposeSecret;

pub use answer::{Embeddings, Vector};
pub use request::{
    EmbeddingsRequest, Encoding, KNOWN_FIELDS, MAX_DIMENSIONS, MAX_INPUT_BYTES, MAX_INPUTS,
};

use super::{OPENAI_KEY, Provider, Providers, Route, check_status};
use crate::error::{Error, Result};
use crate::services::redact::Redactor;

/// Largest embeddings answer read. Far above a chat answer's: 2048 vectors of 1536 floats
/// written as JSON are tens of megabytes.
const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;

fn no_anthropic(model: &str) -> Error {
    Error::BadRequest(format!(
        "`{model}` is an Anthropic model, and Anthropic has no embeddings API; use a local \
         embeddings model or OpenAI's text-embedding-3-small"
    ))
}

impl Providers {
    /// Routes an embeddings model by name: `local/NAME` and the configured local models to the
    /// local server, `text-embedding-*` to OpenAI; `claude-*` is refused (400), anything else
    /// is an unknown model (404).
    pub fn route_embeddings(&self, model: &str) -> Result<Route> {
        let route = |provider| {
            Ok(Route {
                provider,
                model: model.to_string(),
            })
        };
        if let Some(name) = model.strip_prefix("local/") {
            return Ok(Route {
                provider: Provider::Local,
                model: name.to_string(),
            });
        }
        if self.local_models.iter().any(|m| m == model) {
            route(Provider::Local)
        } else if model.starts_with("text-embedding-") {
            route(Provider::OpenAi)
        } else if model.starts_with("claude-") {
            Err(no_anthropic(model))
        } else {
            Err(Error::UnknownModel(model.to_string()))
        }
    }

    /// One embeddings call through egress, with the upstream timeout over the whole answer.
    /// Errors are scrubbed of the key that was sent, and an answer with a base64 vector that
    /// decodes to it is refused.
    pub async fn embed(&self, route: &Route, req: &EmbeddingsRequest) -> Result<Embeddings> {
        let service = route.provider.service();
        self.egress.check_service(service)?;
        let url = match route.provider {
            Provider::Local => &self.local_embeddings,
            Provider::OpenAi => &self.openai_embeddings,
            Provider::Anthropic => return Err(no_anthropic(&route.model)),
        };
        let url = url
            .clone()
            .ok_or_else(|| Error::Config(format!("the {service} base URL is not a URL")))?;
        let builder = self
            .egress
            .request(reqwest::Method::POST, url)
            .json(&req.wire(&route.model))
            .timeout(self.timeout);
        // Credentials are injected here, at egress, straight from the vault.
        let (builder, key) = match route.provider {
            Provider::OpenAi => {
                let key = self.key(OPENAI_KEY).await?;
                (builder.bearer_auth(key.expose_secret()), Some(key))
            }
            _ => (builder, None),
        };
        let redactor = Redactor::new(key.as_ref());
        let answer = async {
            let resp = self.egress.send(service, builder).await?;
            let resp = check_status(route.provider, resp, &redactor).await?;
            let body = super::read_answer(
                route.provider,
                resp,
                MAX_ANSWER_BYTES,
                "an embeddings answer",
                "; send fewer inputs per request",
            )
            .await?;
            let e = Embeddings::parse(route.provider, &body, req.inputs.len())?;
            if e.quotes(&redactor) {
                return Err(Error::Upstream(format!(
                    "{service} sent the API key back in place of a vector"
                )));
            }
            Ok(e)
        };
        answer
            .await
            .map_err(|e| self.local_down(route, redactor.scrub_error(e)))
    }
}
