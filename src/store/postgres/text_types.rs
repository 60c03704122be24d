//! The model's name and id newtypes as PostgreSQL `text`: written as their text, and checked
//! again when read, so a row edited by hand into a bad value fails to decode rather than
//! reaching the catalog.

use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgTypeInfo, PgValueRef};
use sqlx::{Decode, Encode, Postgres, Type};

use crate::model::{
    AgentId, AgentName, CallId, SecretId, SecretName, SubscriptionId, ToolId, ToolName, WebhookId,
};

macro_rules! pg_text {
    ($($name:ty),*) => {$(
        impl Type<Postgres> for $name {
            fn type_info() -> PgTypeInfo {
                <String as Type<Postgres>>::type_info()
            }

            fn compatible(ty: &PgTypeInfo) -> bool {
                <String as Type<Postgres>>::compatible(ty)
            }
        }

        impl Encode<'_, Postgres> for $name {
            fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
                <&str as Encode<Postgres>>::encode(self.as_str(), buf)
            }
        }

        impl<'r> Decode<'r, Postgres> for $name {
            fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
                let text = <String as Decode<Postgres>>::decode(value)?;
                <$name>::parse(text).map_err(Into::into)
            }
        }
    )*};
}

pg_text!(
    AgentId,
    AgentName,
    CallId,
    SecretId,
    SecretName,
    SubscriptionId,
    ToolId,
    ToolName,
    WebhookId
);
