//! The MCP handler: the tools a caller sees, and where each call goes.
//!
//! A tool is named `PREFIX__tool`: the prefix is a configured service (its calls go through
//! the services proxy) or a tool server from `[mcp.servers]` (its calls go to that server).
//! Over HTTP the caller is who the edge authenticated; over stdio it is the person at the
//! machine (`maestra mcp`), as in local mode.

use std::sync::Arc;

use http::request::Parts;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, ErrorCode, Implementation, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::Value;

use super::{server_tool, service_tool};
use crate::access::scope::Principal;
use crate::error::Error;
use crate::gateway::request_info::RequestInfo;
use crate::gateway::state::Shared;
use crate::mcp::{names, service_tools};
use crate::services::oauth::Refresher;

/// What the server tells a client about itself.
const INSTRUCTIONS: &str = "Maestra's tools: the person's services (lights, speakers, music, \
    home) and the tool servers they added, each named SERVER__tool. Every call is checked \
    against the person's privacy settings and recorded in their audit log.";

#[derive(Clone)]
pub struct Tools {
    state: Shared,
    refresher: Arc<Refresher>,
    /// `Some` over stdio: the one caller there is. Over HTTP, each request's own.
    fixed: Option<Principal>,
}

impl Tools {
    pub fn over_http(state: Shared, refresher: Arc<Refresher>) -> Tools {
        Tools {
            state,
            refresher,
            fixed: None,
        }
    }

    /// For `maestra mcp`: the person at the machine, with local mode's reach.
    pub fn over_stdio(state: Shared) -> Tools {
        Tools {
            state,
            refresher: Arc::new(Refresher::default()),
            fixed: Some(Principal::local()),
        }
    }

    /// Who asks: the edge's `RequestInfo` (HTTP), or a fresh one for the stdio caller. A
    /// request without one never passed the edge: refused, never taken as anyone.
    fn caller(&self, context: &RequestContext<RoleServer>) -> Result<RequestInfo, ErrorData> {
        if let Some(p) = &self.fixed {
            let mut info = RequestInfo::unknown();
            info.id = uuid::Uuid::new_v4().simple().to_string();
            info.principal = p.clone();
            return Ok(info);
        }
        context
            .extensions
            .get::<Parts>()
            .and_then(|parts| parts.extensions.get::<RequestInfo>())
            .cloned()
            .ok_or_else(|| ErrorData::internal_error("the request did not pass the edge", None))
    }

    /// The services offered as tools: a name with the separator in it would be read as
    /// another prefix, so such a service is reached through `/api/services/` only.
    fn services(&self) -> impl Iterator<Item = &str> {
        self.state
            .config
            .services
            .keys()
            .map(String::as_str)
            .filter(|s| !s.contains(crate::config::mcp::SEPARATOR))
    }
}

impl ServerHandler for Tools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("maestra", env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let info = self.caller(&context)?;
        let p = &info.principal;
        let mut tools: Vec<Tool> = service_tools::list(self.services().filter(|s| p.may_call(s)))
            .into_iter()
            .map(|t| Tool::new(t.name, t.description, t.input_schema))
            .collect();
        let local_only = self.state.egress.local_only();
        // All at once: one slow server must not hold the others' tools.
        let servers: Vec<&str> = self.state.tools.names().filter(|s| p.may_call(s)).collect();
        let listings = futures_util::future::join_all(servers.iter().map(|server| {
            self.state
                .tools
                .tools(server, &self.state.vault, local_only)
        }))
        .await;
        for (server, listing) in servers.into_iter().zip(listings) {
            // A server that cannot be reached (refused in local-only mode, not started, not
            // answering) lists no tools; calling one of them says why.
            match listing {
                Ok(listed) => {
                    server_tool::audit_pins(&self.state, &info, server, &listed)
                        .await
                        .map_err(|e| rpc_error(&e))?;
                    tools.extend(listed.tools);
                }
                Err(e) => tracing::info!(server, error = %e.plain(), "tool server not listed"),
            }
        }
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let info = self.caller(&context)?;
        let name = request.name.as_ref();
        let Some((prefix, tool)) = names::split(name) else {
            return Err(self.unknown(&info, name).await);
        };
        let args = request.arguments.unwrap_or_default();
        let to_service = self.state.config.services.contains_key(prefix);
        if !to_service && self.state.tools.reach(prefix).is_none() {
            return Err(self.unknown(&info, name).await);
        }
        // rmcp runs this on a task of its own and never drops it when the client hangs up (or
        // the request's deadline cuts it off): it cancels `context.ct`, which only an `ask`
        // wait heeds, so a call that went out still ends and is audited once. Tracked, so
        // shutdown waits for it before the audit log closes. Boxed: rmcp moves the handler's
        // future into its task, and a call's state is large (copying it cost more than the
        // allocation).
        let call = Box::pin(self.state.calls.track(async {
            if to_service {
                service_tool::call(&self.state, &self.refresher, &info, prefix, tool, args).await
            } else {
                server_tool::call(&self.state, &info, prefix, tool, args, &context.ct).await
            }
        }));
        // A tally of its own (rmcp runs this on a task of its own, outside the edge's, and
        // stdio has no edge): the call's audit entry gets the host and bytes it moved.
        let result = crate::egress::tally::scope(call).await;
        result.map(Into::into).map_err(|e| rpc_error(&e))
    }
}

impl Tools {
    /// A call of a name no service or server has: refused, and audited like every call.
    async fn unknown(&self, info: &RequestInfo, name: &str) -> ErrorData {
        let shown: String = name.chars().take(names::MAX_TOOL_NAME).collect();
        let e = Error::BadRequest(format!("unknown tool {shown:?}; tools/list names them"));
        if let Err(failed) = server_tool::audit_unknown(&self.state, info, &e).await {
            return rpc_error(&failed);
        }
        rpc_error(&e)
    }
}

/// A refusal as the JSON-RPC error the client gets: bad arguments (Maestra's, or a tool
/// server's `-32602`) as invalid params, anything else as a server error carrying the SPEC §4
/// error object (`code`, `message`, a tool server's own `rpc_code`, and a local-only block's
/// `service` and `reason`). A tool server's other codes are not passed on as codes: some of
/// them choose the HTTP status of Maestra's answer (`-32601` is a 404 in MCP 2026-07-28).
pub fn rpc_error(e: &Error) -> ErrorData {
    let body = e.body();
    let mut data = body.get("error").cloned();
    if let (Error::ToolError(t), Some(Value::Object(d))) = (e.plain(), data.as_mut()) {
        d.insert("rpc_code".into(), Value::from(t.code));
    }
    match e.plain() {
        Error::ToolError(t) if t.code == ErrorCode::INVALID_PARAMS.0 => {
            ErrorData::invalid_params(t.message.clone(), data)
        }
        Error::ToolError(t) => ErrorData::new(ErrorCode(SERVER_ERROR), t.message.clone(), data),
        Error::BadRequest(_) | Error::NotFound(_) | Error::TooLarge(_) => {
            ErrorData::invalid_params(e.to_string(), data)
        }
        _ => ErrorData::new(ErrorCode(SERVER_ERROR), e.to_string(), data),
    }
}

/// JSON-RPC's first implementation-defined server error code.
const SERVER_ERROR: i32 = -32000;
