//! Wire types of the OpenAI HTTP API. Requests keep every field as raw JSON so that the
//! converters (`crate::convert`) can validate each one and name it in errors (a serde type error
//! names a column, not a parameter); responses are typed and serialize to OpenAI's exact shape.

pub mod request;
pub mod response;
