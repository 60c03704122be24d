//! The `toolgate` command: parses the CLI and hands over to the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use toolgate::config::ServeConfig;

#[derive(Parser)]
#[command(name = "toolgate", version, about = "AI-agent tool-calling gateway")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (admin API, tool invocation, history).
    Serve(ServeConfig),
    /// Check tool and agent files without starting a server; exits non-zero on any error.
    Validate {
        /// Directories of *.toml files (e.g. tools/ prompts/).
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
    },
    /// Talk to an agent of a running gateway: reads lines from stdin, prints replies and tool calls.
    Chat {
        /// Agent name or id.
        #[arg(long)]
        agent: String,
        /// Gateway base URL.
        #[arg(long, env = "TOOLGATE_URL", default_value = "http://127.0.0.1:8080")]
        url: String,
        /// Admin token of the gateway, if it has one.
        #[arg(long, env = "TOOLGATE_ADMIN_TOKEN", hide_env_values = true)]
        admin_token: Option<String>,
        /// Context object (JSON) sent with every turn.
        #[arg(long, default_value = "{}")]
        context: String,
    },
    /// Serve MCP over stdin/stdout for desktop clients (opens the data dir itself: stop `serve` first, or use /mcp over HTTP).
    Mcp {
        /// Expose only this agent's tools.
        #[arg(long)]
        agent: Option<String>,
        /// Context object (JSON) used for every call of this session.
        #[arg(long, env = "TOOLGATE_MCP_CONTEXT", default_value = "{}")]
        context: String,
        #[command(flatten)]
        config: ServeConfig,
    },
    /// Print the JSON Schema of a config file kind, for editors and CI.
    Schema {
        /// `tool-file` (tools/*.toml) or `agent-file` (prompts/*.toml).
        #[arg(value_parser = ["tool-file", "agent-file"])]
        kind: String,
    },
    /// Write one tools/*.toml per operation of an OpenAPI document (Swagger 2.0, OpenAPI 3.0/3.1).
    ImportOpenapi {
        /// The document (YAML or JSON file).
        spec: PathBuf,
        /// Directory to write the tool files into (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// The API's base URL; the document's first server when absent.
        #[arg(long)]
        base_url: Option<String>,
        /// Put before every tool name.
        #[arg(long)]
        tool_prefix: Option<String>,
        /// Only these operationIds or tags (repeatable).
        #[arg(long)]
        include: Vec<String>,
        /// Fill a security scheme with a secret: SCHEME=SECRET_NAME (repeatable).
        #[arg(long)]
        auth: Vec<String>,
    },
    /// Run the built-in demo API (orders, tickets, messages) that the example tools call.
    DemoApi {
        /// Address to listen on (loopback).
        #[arg(long, env = "TOOLGATE_DEMO_LISTEN", default_value = "127.0.0.1:8090")]
        listen: SocketAddr,
    },
}

/// Libraries that log protocol payloads or headers below INFO (rmcp logs whole MCP messages at
/// DEBUG, hyper and reqwest log headers at TRACE). They are capped at INFO whatever `TOOLGATE_LOG`
/// says, because those payloads carry tool results and request headers, and so secret values.
const PAYLOAD_LOGGERS: &[&str] = &["rmcp", "hyper", "hyper_util", "reqwest", "h2", "rustls"];

fn init_tracing() {
    let base = std::env::var("TOOLGATE_LOG").unwrap_or_else(|_| "info".into());
    let caps: Vec<String> = PAYLOAD_LOGGERS
        .iter()
        .map(|t| format!("{t}=info"))
        .collect();
    let filter = tracing_subscriber::EnvFilter::try_new(format!("{base},{}", caps.join(",")))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down: draining history");
}

/// `toolgate import-openapi`: plan the import offline and write the files.
fn import_openapi(
    spec: &std::path::Path,
    out: &std::path::Path,
    base_url: Option<String>,
    tool_prefix: Option<String>,
    include: Vec<String>,
    auth: Vec<String>,
) -> Result<(), String> {
    use toolgate::openapi::{ImportOptions, SchemeSecret, plan, to_files::tool_files};
    let text = std::fs::read_to_string(spec).map_err(|e| format!("{}: {e}", spec.display()))?;
    let mut opts = ImportOptions {
        base_url,
        tool_prefix,
        include: (!include.is_empty()).then_some(include),
        ..Default::default()
    };
    for a in auth {
        let (scheme, secret) = a
            .split_once('=')
            .ok_or_else(|| format!("--auth '{a}': write SCHEME=SECRET_NAME"))?;
        opts.auth.insert(
            scheme.to_string(),
            SchemeSecret {
                secret: secret.to_string(),
            },
        );
    }
    let plan = plan(&serde_json::Value::String(text), &opts).map_err(|e| {
        let lines: Vec<String> = e
            .details
            .iter()
            .map(|d| format!("{}: {}", d.field, d.message))
            .collect();
        format!("{}: {}", spec.display(), lines.join("; "))
    })?;
    let mut skipped = plan.skipped.clone();
    let files = tool_files(&plan, &mut skipped);
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    for (name, text) in &files {
        let path = out.join(name);
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    for s in &skipped {
        eprintln!(
            "skipped {} ({} {}): {}",
            s.operation_id, s.method, s.path, s.reason
        );
    }
    for w in &plan.warnings {
        eprintln!("warning: {w}");
    }
    println!(
        "{} tool file(s) written to {}, {} operation(s) skipped",
        files.len(),
        out.display(),
        skipped.len()
    );
    Ok(())
}

/// mimalloc: a call allocates and frees many small buffers on two threads at once, where glibc's
/// malloc was a fifth of the call path's CPU time (`allocator::Allocator` says how it is asked).
#[global_allocator]
static ALLOCATOR: toolgate::allocator::Allocator = toolgate::allocator::Allocator;

fn main() -> ExitCode {
    toolgate::allocator::use_small_pages();
    toolgate::allocator::return_freed_memory_soon();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_park(toolgate::allocator::return_what_is_due_now_and_then)
        .build();
    match runtime {
        Ok(runtime) => runtime.block_on(run()),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The command line, run on the runtime `main` built.
async fn run() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    match cli.command {
        Command::Serve(config) => {
            if let Err(e) = config.check() {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
            let listener = match tokio::net::TcpListener::bind(config.listen).await {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("error: cannot listen on {}: {e}", config.listen);
                    return ExitCode::from(2);
                }
            };
            match toolgate::run(config, listener, shutdown_signal()).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Validate { dirs } => match toolgate::files::load_dirs(
            &dirs.iter().map(|d| d.as_path()).collect::<Vec<_>>(),
            &|_| false,
        ) {
            Ok(loaded) => {
                println!(
                    "{} tool file(s) and {} agent file(s) OK",
                    loaded.tools.len(),
                    loaded.agents.len()
                );
                ExitCode::SUCCESS
            }
            Err(errors) => {
                for e in &errors {
                    eprintln!("{e}");
                }
                eprintln!("{} error(s)", errors.len());
                ExitCode::FAILURE
            }
        },
        Command::Mcp {
            agent,
            context,
            config,
        } => {
            let context: serde_json::Value = match serde_json::from_str(&context) {
                Ok(v @ serde_json::Value::Object(_)) => v,
                _ => {
                    eprintln!("error: --context must be a JSON object");
                    return ExitCode::from(2);
                }
            };
            let state = match toolgate::build_state(config).await {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let result = toolgate::mcp::serve_stdio(state.clone(), agent, context).await;
            state.recorder.close().await;
            let _ = state.store.flush().await;
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Chat {
            agent,
            url,
            admin_token,
            context,
        } => match toolgate::chat_cli::run(&url, &agent, admin_token.as_deref(), &context).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Schema { kind } => {
            println!("{}", toolgate::files::file_schema(&kind));
            ExitCode::SUCCESS
        }
        Command::ImportOpenapi {
            spec,
            out,
            base_url,
            tool_prefix,
            include,
            auth,
        } => match import_openapi(&spec, &out, base_url, tool_prefix, include, auth) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::DemoApi { listen } => {
            let listener = match tokio::net::TcpListener::bind(listen).await {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("error: cannot listen on {listen}: {e}");
                    return ExitCode::from(2);
                }
            };
            tracing::info!(%listen, "demo API listening");
            match toolgate::demo_api::serve(listener).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
