//! `maestra serve`: the HTTP API of SPEC §4, the data path of SPEC §2.
//!
//! - `state`         — what every stage and handler shares, built once at start
//! - `calls`         — the tasks paid calls run on, which shutdown waits for
//! - `router`        — the routes, and the edge layers in pipeline order
//! - `edge`          — request ids, limits, timeouts, metrics, JSON in and errors out
//! - `request_info`  — what the edge learned about a request, read by every later stage
//! - `checks`        — a request's shape: head size, declared body length, known query names
//! - `access`        — the auth and rate-limit stages: host and key checks, GCRA limits
//! - `pipeline`      — one model call, a file per stage in the order it runs: guard, reserve,
//!   call, settle, audit, store
//! - `core`          — `/api/maestra/core` and the legacy `/api/maestra/advisor/ask`
//! - `openai_api`    — `/v1/chat/completions` (with SSE streaming) and `/v1/models`
//! - `embeddings_api` — `/v1/embeddings`, OpenAI-compatible; nothing of the input is kept
//! - `responses`     — `/v1/responses`, the Responses API, stateless (typed SSE events)
//! - `agent`         — who made a `/v1` call: the key's name, `X-Maestra-Surface`, the User-Agent
//! - `conversations` — conversation listing, export and deletion, a user's data rights
//! - `services`      — `/api/services/{service}/{path}`: the credential-injecting proxy
//! - `mcp`           — `/mcp` and `maestra mcp`: the MCP server, services and tool servers as tools
//! - `audit_api`     — `GET /api/audit` and `POST /api/audit/events` (local tool actions)
//! - `system`        — `/health`, `/metrics`, `/api/privacy`, `/openapi.json`
//! - `report_api`, `spend_api`, `vault_api`, `verify_api`, `controls_api`, `approvals_api` —
//!   the privacy center's endpoints (`/api/report`, `/api/spend`, `/api/vault`,
//!   `/api/audit/verify`, `/api/controls/*`, `/api/tools/approvals`); `jobs` — their long
//!   actions, polled at `/api/jobs/{id}`
//! - `discover_api`  — `POST /api/services/discover` (a discovery job) and `GET /api/devices`;
//!   `devices` — the devices found, kept in memory for the Devices list
//! - `same_origin`   — the page's own writes past the Origin check; the egress tally scope
//! - `routes`        — the route table: paths, methods, key scopes, body limits (the data)
//! - `route`         — what a route is, and the matcher the edge finds one with (the code)
//! - `openapi`       — the OpenAPI document; `center_schemas` and `center_body` its privacy
//!   center parts
//! - `tls`           — TLS for cloud mode
//! - `server`        — the accept loop: header limits, graceful shutdown

pub(crate) mod access;
mod agent;
mod approvals_api;
mod audit_api;
mod calls;
mod center_body;
mod center_schemas;
mod checks;
mod controls_api;
mod conversations;
mod core;
mod devices;
mod discover_api;
mod edge;
mod embeddings_api;
mod jobs;
pub mod mcp;
mod openai_api;
mod openapi;
mod pipeline;
mod report_api;
mod request_info;
mod responses;
mod route;
mod router;
mod routes;
mod same_origin;
mod server;
mod services;
mod spend_api;
mod state;
mod system;
pub mod tls;
mod vault_api;
mod verify_api;

pub use router::router;
pub use server::serve;
pub use state::{AppState, Shared};
