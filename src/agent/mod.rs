//! Agent conversations: the model client and the tool-calling loop over the shared call pipeline.

pub mod llm;
pub mod run;

pub use llm::{Llm, LlmError};
pub use run::{AgentRun, ChatOutcome, FinishReason, GatewayCall, run};
