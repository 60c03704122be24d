//! The domain layer between the surfaces (REST handlers, config files, the console) and the
//! store: every change of a webhook, tool or agent goes validate → write → catalog refresh here,
//! and the store's transaction writes its event. Handlers only parse, call one of these, and shape
//! the answer.

use std::collections::HashSet;
use std::path::Path;

use crate::catalog::Catalog;
use crate::model::validate::{FieldError, validate_agent, validate_tool, validate_webhook};
use crate::model::{Agent, AgentSpec, ManagedBy, Tool, ToolSpec, Webhook, WebhookSpec};
use crate::store::{Store, StoreError};

/// Why a change of a definition was refused.
#[derive(Debug, thiserror::Error)]
pub enum DefinitionError {
    /// The definition has problems, each with its field.
    #[error("the definition is invalid")]
    Invalid(Vec<FieldError>),
    /// The definition comes from a config file: the file is where it changes.
    #[error(
        "this {kind} is defined in the config file {file}; edit or delete it there (changes apply within a second)"
    )]
    ManagedByFile {
        /// `webhook`, `tool` or `agent`.
        kind: &'static str,
        /// The file.
        file: String,
    },
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Who makes a change: the API (secrets must exist, file-managed definitions are off limits) or
/// a config file (secrets may come later; it owns what it made).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Author {
    /// An API caller.
    Api,
    /// A `tools/` or `prompts/` file.
    File,
}

/// The definitions service over one store and catalog.
pub struct Definitions<'a> {
    /// Persistence.
    pub store: &'a dyn Store,
    /// The compiled tools the call path reads.
    pub catalog: &'a Catalog,
    /// Where agents' prompt files live.
    pub prompts_dir: &'a Path,
}

/// A definition that a config file may own.
trait FileOwned {
    /// The owner mark and the file.
    fn owner(&self) -> (Option<ManagedBy>, Option<&str>);
}

macro_rules! file_owned {
    ($($t:ty),*) => {$(
        impl FileOwned for $t {
            fn owner(&self) -> (Option<ManagedBy>, Option<&str>) {
                (self.managed_by, self.managed_file.as_deref())
            }
        }
    )*};
}

file_owned!(WebhookSpec, ToolSpec, AgentSpec);

fn refuse_if_file_managed(
    kind: &'static str,
    spec: &dyn FileOwned,
    author: Author,
) -> Result<(), DefinitionError> {
    match (author, spec.owner()) {
        (Author::Api, (Some(_), file)) => Err(DefinitionError::ManagedByFile {
            kind,
            file: file.unwrap_or("(unknown)").to_string(),
        }),
        _ => Ok(()),
    }
}

fn checked(errs: Vec<FieldError>) -> Result<(), DefinitionError> {
    if errs.is_empty() {
        Ok(())
    } else {
        Err(DefinitionError::Invalid(errs))
    }
}

impl Definitions<'_> {
    /// Which of `names` are stored secrets: one lookup per name, not a read of every secret.
    pub async fn existing_secrets<'n>(
        &self,
        names: impl IntoIterator<Item = &'n str>,
    ) -> Result<HashSet<String>, StoreError> {
        let mut out = HashSet::new();
        for n in names {
            if self.store.secret_exists(n).await? {
                out.insert(n.to_string());
            }
        }
        Ok(out)
    }

    /// Which of `names` are stored tools: one lookup per name, not a read of every tool.
    pub async fn existing_tools<'n>(
        &self,
        names: impl IntoIterator<Item = &'n str>,
    ) -> Result<HashSet<String>, StoreError> {
        let mut out = HashSet::new();
        for n in names {
            match self.store.get_tool_by_name(n).await {
                Ok(_) => {
                    out.insert(n.to_string());
                }
                Err(StoreError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    async fn check_webhook(
        &self,
        spec: &WebhookSpec,
        author: Author,
    ) -> Result<(), DefinitionError> {
        let mut probe = spec.clone();
        if author == Author::File {
            // Marks are set by the file loader; validation is about the user's definition.
            (probe.managed_by, probe.managed_file) = (None, None);
        }
        let errs = match author {
            Author::Api => {
                let names = probe.secret_names();
                let stored = self
                    .existing_secrets(names.iter().map(String::as_str))
                    .await?;
                validate_webhook(&probe, &|name| stored.contains(name))
            }
            Author::File => validate_webhook(&probe, &|_| true),
        };
        checked(errs)
    }

    /// Create a webhook.
    pub async fn create_webhook(
        &self,
        spec: WebhookSpec,
        author: Author,
    ) -> Result<Webhook, DefinitionError> {
        self.check_webhook(&spec, author).await?;
        let w = self
            .store
            .create_webhook(spec, author == Author::Api)
            .await?;
        self.catalog.refresh_webhook(self.store, &w.id).await?;
        Ok(w)
    }

    /// Replace a webhook's definition in place; linked tools use it on their next call.
    pub async fn update_webhook(
        &self,
        id: &str,
        spec: WebhookSpec,
        author: Author,
    ) -> Result<Webhook, DefinitionError> {
        let old = self.store.get_webhook(id).await?;
        refuse_if_file_managed("webhook", &old.spec, author)?;
        self.check_webhook(&spec, author).await?;
        let w = self
            .store
            .update_webhook(id, spec, author == Author::Api)
            .await?;
        self.catalog.refresh_webhook(self.store, id).await?;
        Ok(w)
    }

    /// Delete a webhook no tool links to.
    pub async fn delete_webhook(&self, id: &str, author: Author) -> Result<(), DefinitionError> {
        let old = self.store.get_webhook(id).await?;
        refuse_if_file_managed("webhook", &old.spec, author)?;
        self.store.delete_webhook(id).await?;
        self.catalog.refresh_webhook(self.store, id).await?;
        Ok(())
    }

    fn check_tool(&self, spec: &ToolSpec, author: Author) -> Result<(), DefinitionError> {
        let mut probe = spec.clone();
        if author == Author::File {
            (probe.managed_by, probe.managed_file) = (None, None);
        }
        checked(validate_tool(&probe))
    }

    /// Create a tool; its webhook, if any, must exist.
    pub async fn create_tool(
        &self,
        spec: ToolSpec,
        author: Author,
    ) -> Result<Tool, DefinitionError> {
        self.check_tool(&spec, author)?;
        let t = self.store.create_tool(spec).await?;
        self.catalog.refresh_tool(self.store, &t.id, None).await?;
        Ok(t)
    }

    /// Replace a tool (rename, relink, unlink with `webhook_id: None`).
    pub async fn update_tool(
        &self,
        id: &str,
        spec: ToolSpec,
        author: Author,
    ) -> Result<Tool, DefinitionError> {
        let old = self.store.get_tool(id).await?;
        refuse_if_file_managed("tool", &old.spec, author)?;
        self.check_tool(&spec, author)?;
        let t = self.store.update_tool(id, spec).await?;
        self.catalog
            .refresh_tool(self.store, id, Some(&old.spec.name))
            .await?;
        Ok(t)
    }

    /// Unlink a tool from its webhook: it is then offered to no model.
    pub async fn unlink_tool(&self, id: &str, author: Author) -> Result<Tool, DefinitionError> {
        let old = self.store.get_tool(id).await?;
        let spec = ToolSpec {
            webhook_id: None,
            ..old.spec
        };
        self.update_tool(id, spec, author).await
    }

    /// Delete a tool.
    pub async fn delete_tool(&self, id: &str, author: Author) -> Result<(), DefinitionError> {
        let old = self.store.get_tool(id).await?;
        refuse_if_file_managed("tool", &old.spec, author)?;
        self.store.delete_tool(id).await?;
        self.catalog
            .refresh_tool(self.store, id, Some(&old.spec.name))
            .await?;
        Ok(())
    }

    async fn check_agent(&self, spec: &AgentSpec, author: Author) -> Result<(), DefinitionError> {
        let mut probe = spec.clone();
        if author == Author::File {
            (probe.managed_by, probe.managed_file) = (None, None);
        }
        let tools = self
            .existing_tools(probe.tools.iter().map(crate::model::ToolName::as_str))
            .await?;
        let dir = self.prompts_dir;
        checked(validate_agent(&probe, &|t| tools.contains(t), &|p| {
            dir.join(p).is_file()
        }))
    }

    /// Create an agent.
    pub async fn create_agent(
        &self,
        spec: AgentSpec,
        author: Author,
    ) -> Result<Agent, DefinitionError> {
        self.check_agent(&spec, author).await?;
        let a = self.store.create_agent(spec).await?;
        self.catalog.notify_changed();
        Ok(a)
    }

    /// Replace an agent.
    pub async fn update_agent(
        &self,
        id: &str,
        spec: AgentSpec,
        author: Author,
    ) -> Result<Agent, DefinitionError> {
        let old = self.store.get_agent(id).await?;
        refuse_if_file_managed("agent", &old.spec, author)?;
        self.check_agent(&spec, author).await?;
        let a = self.store.update_agent(id, spec).await?;
        self.catalog.notify_changed();
        Ok(a)
    }

    /// Delete an agent.
    pub async fn delete_agent(&self, id: &str, author: Author) -> Result<(), DefinitionError> {
        let old = self.store.get_agent(id).await?;
        refuse_if_file_managed("agent", &old.spec, author)?;
        self.store.delete_agent(id).await?;
        self.catalog.notify_changed();
        Ok(())
    }
}
