//! What a route is, and the matcher that finds one for a request: the code that reads the
//! route table (`routes`), kept apart from it so the edge stages that match requests import
//! no handler.

use axum::routing::MethodRouter;

use super::state::Shared;
use crate::access::scope::KeyScope;

/// One operation of the API: what the router serves and what the document says of it.
pub struct Route {
    pub method: &'static str,
    /// The OpenAPI template (`{path}` where the router has `{*path}`).
    pub path: &'static str,
    pub summary: &'static str,
    pub request: Option<&'static str>,
    pub response: &'static str,
    pub query: Query,
    /// Media types of a success.
    pub produces: &'static [&'static str],
    /// Media types of a failure.
    pub errors: &'static [&'static str],
    /// What answers it.
    pub handler: fn() -> MethodRouter<Shared>,
    /// The least API key scope that may call it (cloud mode; README's scope table); `None`:
    /// no key at all (`/health`).
    pub scope: Option<KeyScope>,
}

/// What a route accepts in its query string. The edge refuses any other parameter (400), so
/// a misspelt filter is never silently ignored into a wider answer.
pub enum Query {
    /// No query string at all.
    None,
    /// Exactly these parameters: (name, JSON schema).
    Named(&'static [(&'static str, &'static str)]),
    /// Passed on untouched (the services proxy).
    Forwarded,
}

/// The router's form of a document template: a trailing `{path}` matches the rest.
pub fn router_template(path: &str) -> String {
    path.replace("{path}", "{*path}")
}

/// A route table with its matcher, built once (`routes::table`).
pub struct RouteTable {
    routes: &'static [Route],
    /// The routes whose bodies may be as large as `server.max_model_body_bytes`.
    model_routes: &'static [&'static str],
    /// The router's own matcher (`matchit`), so the edge reaches the route the router will.
    matcher: matchit::Router<usize>,
    /// Per distinct path: (document template, router template).
    paths: Vec<(&'static str, &'static str)>,
}

impl RouteTable {
    pub fn new(routes: &'static [Route], model_routes: &'static [&'static str]) -> RouteTable {
        let mut matcher = matchit::Router::new();
        let mut paths: Vec<(&'static str, &'static str)> = Vec::new();
        for r in routes {
            if paths.iter().any(|(p, _)| *p == r.path) {
                continue;
            }
            // Leaked once per path for the life of the process (the table is built once): the
            // router template is the metric label every request carries, borrowed, not copied.
            let template: &'static str = router_template(r.path).leak();
            // The router itself refuses an invalid or conflicting template at start.
            if matcher.insert(template, paths.len()).is_ok() {
                paths.push((r.path, template));
            }
        }
        RouteTable {
            routes,
            model_routes,
            matcher,
            paths,
        }
    }

    pub fn routes(&self) -> &'static [Route] {
        self.routes
    }

    /// The route template a request's path matches, or `None` (the router answers 404).
    pub fn matched(&'static self, path: &str) -> Option<Matched> {
        let found = self.matcher.at(path).ok()?;
        let (path, template) = *self.paths.get(*found.value)?;
        Some(Matched {
            path,
            template,
            table: self,
        })
    }

    /// A path served beside the table (the privacy center's files), named by itself: it has
    /// no operation here, so it needs admin wherever a key is asked for.
    pub fn file(&'static self, path: &'static str) -> Matched {
        Matched {
            path,
            template: path,
            table: self,
        }
    }
}

/// The route template a request's path matched, found by the edge before the router runs, so
/// the edge stages can wrap the router once instead of being cloned into every route.
#[derive(Clone, Copy)]
pub struct Matched {
    /// The document's template (`{path}`): what the scope and query checks go by.
    pub path: &'static str,
    /// The router's template (`{*path}`), as axum's `MatchedPath` names it: the metric label.
    pub template: &'static str,
    table: &'static RouteTable,
}

impl std::fmt::Debug for Matched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Matched")
            .field("path", &self.path)
            .field("template", &self.template)
            .finish_non_exhaustive()
    }
}

impl Matched {
    /// The documented operation for this path and `method` (`HEAD` as `GET`).
    pub fn route(&self, method: &str) -> Option<&'static Route> {
        let method = if method.eq_ignore_ascii_case("head") {
            "get"
        } else {
            method
        };
        self.table
            .routes
            .iter()
            .find(|r| r.path == self.path && r.method.eq_ignore_ascii_case(method))
    }

    /// The scope `method` needs here. An operation the table does not know needs admin: an
    /// undocumented route can never be open to lesser keys.
    pub fn scope(&self, method: &str) -> Option<KeyScope> {
        self.route(method)
            .map_or(Some(KeyScope::Admin), |r| r.scope)
    }

    /// The `Allow` header's value: the documented methods, and `HEAD` wherever `GET` is
    /// (axum answers it).
    pub fn allowed_methods(&self) -> String {
        let mut methods: Vec<String> = self
            .table
            .routes
            .iter()
            .filter(|r| r.path == self.path)
            .map(|r| r.method.to_uppercase())
            .collect();
        if methods.iter().any(|m| m == "GET") {
            methods.push("HEAD".into());
        }
        methods.join(", ")
    }

    /// Whether this route carries a model's input, and so takes the larger body limit.
    pub fn model_body(&self) -> bool {
        self.table.model_routes.contains(&self.path)
    }
}
