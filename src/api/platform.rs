//! The platform's own vocabulary: its API versions, how a V1 messaging tag is
//! written, the messaging tags and the V2 identifier channels. Campaign files
//! name these values; the wire writes them.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ApiVersion {
    V1,
    V2,
}

impl ApiVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            ApiVersion::V1 => "v1",
            ApiVersion::V2 => "v2",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TagStyle {
    #[default]
    Quoted,
    Bare,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[allow(clippy::enum_variant_names)]
pub enum MessagingTag {
    #[serde(rename = "CONFIRMED_EVENT_UPDATE")]
    ConfirmedEventUpdate,
    #[serde(rename = "POST_PURCHASE_UPDATE")]
    PostPurchaseUpdate,
    #[serde(rename = "ACCOUNT_UPDATE")]
    AccountUpdate,
    #[serde(rename = "HUMAN_AGENT")]
    HumanAgent,
}

impl MessagingTag {
    pub fn as_str(self) -> &'static str {
        match self {
            MessagingTag::ConfirmedEventUpdate => "CONFIRMED_EVENT_UPDATE",
            MessagingTag::PostPurchaseUpdate => "POST_PURCHASE_UPDATE",
            MessagingTag::AccountUpdate => "ACCOUNT_UPDATE",
            MessagingTag::HumanAgent => "HUMAN_AGENT",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PriorityChannel {
    Fbid,
    Phone,
    Email,
}
