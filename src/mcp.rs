//! MCP server over the catalog and the shared call pipeline: streamable HTTP at `/mcp` (and
//! `/mcp/agents/{name}` for one agent's tools) and stdio via `toolgate mcp`. Tool failures are
//! results with `isError: true`, never protocol errors, so the model can recover.

use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{MaybeSendFuture, NotificationContext, RequestContext};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use serde_json::{Value, json};

use crate::AppState;
use crate::call::context::{CONTEXT_HEADER, parse_context_header};
use crate::call::{self, CallRequest};
use crate::catalog::CompiledTool;
use crate::model::Source;

/// One MCP session's view of toolgate.
#[derive(Clone)]
pub struct McpServer {
    state: AppState,
    agent: Option<String>,
    context: Value,
}

impl McpServer {
    /// A server exposing every linked tool, or only `agent`'s; `context` is used when a request
    /// carries no `X-Toolgate-Context` header (stdio).
    pub fn new(state: AppState, agent: Option<String>, context: Value) -> Self {
        McpServer {
            state,
            agent,
            context,
        }
    }

    fn parts(ctx: &RequestContext<RoleServer>) -> Option<&axum::http::request::Parts> {
        ctx.extensions.get::<axum::http::request::Parts>()
    }

    /// The caller the HTTP layer authenticated; `None` over stdio (the local user).
    fn caller(ctx: &RequestContext<RoleServer>) -> Option<crate::access::Caller> {
        Self::parts(ctx)?
            .extensions
            .get::<crate::access::Caller>()
            .cloned()
    }

    fn agent_for(&self, ctx: &RequestContext<RoleServer>) -> Option<String> {
        if self.agent.is_some() {
            return self.agent.clone();
        }
        let path = Self::parts(ctx)?.uri.path();
        path.strip_prefix("/mcp/agents/")
            .map(|n| n.trim_end_matches('/').to_string())
            .filter(|n| !n.is_empty())
    }

    fn context_for(&self, ctx: &RequestContext<RoleServer>) -> Result<Value, String> {
        match Self::parts(ctx).and_then(|p| p.headers.get(CONTEXT_HEADER)) {
            None => Ok(self.context.clone()),
            Some(v) => parse_context_header(v.as_bytes()),
        }
    }

    async fn visible_tools(&self, agent: Option<&str>) -> Result<Vec<Arc<CompiledTool>>, McpError> {
        let snap = self.state.catalog.snapshot();
        Ok(match agent {
            None => snap.visible_tools(None),
            Some(name) => {
                let agent = self
                    .state
                    .store
                    .get_agent_by_name(name)
                    .await
                    .map_err(|_| {
                        McpError::invalid_params(format!("no agent named '{name}'"), None)
                    })?;
                snap.visible_tools(Some(&agent.spec))
            }
        })
    }
}

fn mcp_tool(t: &CompiledTool) -> Tool {
    let schema = match t.hook.parameters_copy() {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    Tool::new(
        t.tool.spec.name.to_string(),
        t.description().to_string(),
        Arc::new(schema),
    )
}

fn error_result(text: String) -> CallToolResponse {
    CallToolResult::error(vec![ContentBlock::text(text)]).into()
}

impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().enable_tool_list_changed().build())
            .with_server_info(Implementation::new("toolgate", env!("CARGO_PKG_VERSION")))
            .with_instructions("Tools registered in toolgate. Each call is validated, sent to its HTTP API and recorded.")
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let mut tools = self.visible_tools(self.agent_for(&ctx).as_deref()).await?;
        if let Some(c) = Self::caller(&ctx) {
            tools.retain(|t| c.may_use(&t.tool.spec));
        }
        Ok(ListToolsResult {
            tools: tools.iter().map(|t| mcp_tool(t)).collect(),
            ..Default::default()
        })
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let name = request.name.to_string();
        let agent = self.agent_for(&ctx);
        let tools = self.visible_tools(agent.as_deref()).await?;
        let Some(tool) = tools.into_iter().find(|t| t.tool.spec.name == name) else {
            return Ok(error_result(format!("There is no tool named '{name}'.")));
        };
        let caller = Self::caller(&ctx);
        let context = match self.context_for(&ctx) {
            Ok(c) => match &caller {
                Some(who) => who.bind_context(&c),
                None => c,
            },
            Err(e) => return Ok(error_result(e)),
        };
        let arguments = request
            .arguments
            .map(Value::Object)
            .unwrap_or_else(|| json!({}));
        let result = call::invoke(
            &self.state.pipeline,
            CallRequest {
                tool: Some(&name),
                hook: tool.hook.clone(),
                arguments: &arguments,
                context: &context,
                source: Source::Mcp,
                agent: agent.as_deref(),
                conversation_id: None,
                caller: caller.as_ref(),
                authorized: &tool.tool.spec.authorized,
            },
        )
        .await;
        let mut out = if result.ok {
            CallToolResult::success(vec![ContentBlock::text(result.content.clone())])
        } else {
            CallToolResult::error(vec![ContentBlock::text(result.content.clone())])
        };
        if result.ok
            && let response = result.response_value()
            && matches!(*response, Value::Object(_))
        {
            out.structured_content = Some(response.into_owned());
        }
        Ok(out.into())
    }

    fn on_initialized(
        &self,
        ctx: NotificationContext<RoleServer>,
    ) -> impl Future<Output = ()> + MaybeSendFuture + '_ {
        let mut changes = self.state.catalog.subscribe();
        let peer = ctx.peer.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    changed = changes.changed() => {
                        if changed.is_err() || peer.notify_tool_list_changed().await.is_err() {
                            break;
                        }
                    }
                    _ = tokio::time::sleep(std::time::Duration::from_secs(30)) => {
                        if peer.is_transport_closed() {
                            break;
                        }
                    }
                }
            }
        });
        std::future::ready(())
    }
}

/// Serve MCP over stdin/stdout until the client disconnects.
pub async fn serve_stdio(
    state: AppState,
    agent: Option<String>,
    context: Value,
) -> Result<(), String> {
    use rmcp::ServiceExt;
    let server = McpServer::new(state, agent, context);
    let running = server
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| format!("MCP start failed: {e}"))?;
    running
        .waiting()
        .await
        .map_err(|e| format!("MCP session failed: {e}"))?;
    Ok(())
}
