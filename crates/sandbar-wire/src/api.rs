//! API (`/api/...`) request and response bodies.
//!
//! Shapes follow `shared/daytona-api.md` §2, §3, §6, §7 and §8. Responses always carry every
//! field the Python client marks as required; optional fields are left out when unknown.
//! Requests accept unknown keys and `null` for every optional field.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Value of `source` in every error the API itself returns.
pub const ERROR_SOURCE: &str = "DAYTONA_API";
/// Value of `source` in errors produced by the toolbox proxy (not by the agent).
pub const PROXY_ERROR_SOURCE: &str = "DAYTONA_PROXY";
/// Label the SDKs use to remember a sandbox's code-run language.
pub const LANGUAGE_LABEL: &str = "code-toolbox-language";

/// The error envelope of every non-2xx API response (§8).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    pub status_code: u16,
    /// Reason phrase of the status, e.g. `Not Found`.
    pub error: String,
    pub message: String,
    pub code: String,
    pub source: String,
    pub path: String,
    pub timestamp: String,
}

/// A volume mount as sent on create and returned in [`Sandbox::volumes`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SandboxVolume {
    /// Volume id (or, in requests, a volume name).
    pub volume_id: String,
    pub mount_path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subpath: Option<String>,
}

/// `buildInfo` of a create request (image based sandboxes).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct CreateBuildInfo {
    #[serde(default)]
    pub dockerfile_content: Option<String>,
    #[serde(default)]
    pub context_hashes: Option<Vec<String>>,
}

/// Body of `POST /api/sandbox` (§3.1). Every key is optional.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct CreateSandbox {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub snapshot: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub env: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub public: Option<bool>,
    #[serde(default)]
    pub network_block_all: Option<bool>,
    #[serde(default)]
    pub network_allow_list: Option<String>,
    #[serde(default)]
    pub domain_allow_list: Option<String>,
    #[serde(default)]
    pub kvm: Option<bool>,
    #[serde(default)]
    pub target: Option<String>,
    #[serde(default)]
    pub cpu: Option<i64>,
    #[serde(default)]
    pub gpu: Option<i64>,
    #[serde(default)]
    pub memory: Option<i64>,
    #[serde(default)]
    pub disk: Option<i64>,
    #[serde(default)]
    pub auto_stop_interval: Option<i64>,
    #[serde(default)]
    pub auto_archive_interval: Option<i64>,
    #[serde(default)]
    pub auto_delete_interval: Option<i64>,
    #[serde(default)]
    pub volumes: Option<Vec<SandboxVolume>>,
    #[serde(default)]
    pub build_info: Option<CreateBuildInfo>,
}

/// The `Sandbox` object (§2.1), also used for the items of `GET /api/sandbox` (§2.3): the
/// extra keys a list item does not define are accepted by the clients.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Sandbox {
    pub id: String,
    pub organization_id: String,
    pub name: String,
    pub user: String,
    pub env: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub public: bool,
    pub network_block_all: bool,
    pub kvm: bool,
    pub target: String,
    pub cpu: i64,
    pub gpu: i64,
    /// GiB.
    pub memory: i64,
    /// GiB.
    pub disk: i64,
    pub toolbox_proxy_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recoverable: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_allow_list: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain_allow_list: Option<String>,
    pub spot: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_stop_interval: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_archive_interval: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_delete_interval: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<Vec<SandboxVolume>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_activity_at: Option<String>,
    /// Sandbar extension: why the last state change happened when no user asked for it
    /// (auto-stop, auto-archive, OOM kill, server restart, ...); absent after a requested one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_reason: Option<String>,
    /// Sandbar extension: when the state last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_changed_at: Option<String>,
}

/// Body of `GET /api/sandbox` (§3.2).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SandboxList {
    pub items: Vec<Sandbox>,
    pub next_cursor: Option<String>,
}

/// Body of `PUT /api/sandbox/{id}/labels` and its answer.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SandboxLabels {
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// Body of `POST /api/sandbox/{id}/network-settings`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct NetworkSettings {
    #[serde(default)]
    pub network_block_all: Option<bool>,
    #[serde(default)]
    pub network_allow_list: Option<String>,
    #[serde(default)]
    pub domain_allow_list: Option<String>,
}

/// Body of `POST /api/sandbox/{id}/resize`: the new allocation; absent keys stay as they are.
/// `memory` and `disk` in GiB.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ResizeSandbox {
    #[serde(default)]
    pub cpu: Option<i64>,
    #[serde(default)]
    pub memory: Option<i64>,
    #[serde(default)]
    pub disk: Option<i64>,
}

/// Answer of `GET /api/sandbox/{id}/toolbox-proxy-url`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ToolboxProxyUrl {
    pub url: String,
}

/// Answer of `GET /api/sandbox/{id}/ports/{port}/preview-url` (§3.4).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct PortPreviewUrl {
    pub sandbox_id: String,
    pub url: String,
    pub token: String,
}

/// Answer of `GET /api/sandbox/{id}/ports/{port}/signed-preview-url` (§3.4).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SignedPortPreviewUrl {
    pub sandbox_id: String,
    pub port: i64,
    pub token: String,
    pub url: String,
}

/// Body of `POST /api/volumes`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateVolume {
    #[serde(default)]
    pub name: Option<String>,
    /// Size limit in GiB (a Sandbar extension; default: the server's `--volume-size-gib`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u32>,
}

/// `VolumeDto` (§6).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    pub id: String,
    pub name: String,
    pub organization_id: String,
    pub state: String,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_reason: Option<String>,
}

/// `SnapshotDto` (§7). Note `mem`, not `memory`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization_id: Option<String>,
    pub general: bool,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_name: Option<String>,
    pub state: String,
    pub cpu: i64,
    pub gpu: i64,
    pub mem: i64,
    pub disk: i64,
    pub created_at: String,
    pub updated_at: String,
}

/// Answer of `GET /api/snapshots`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SnapshotList {
    pub items: Vec<Snapshot>,
    pub total: i64,
    pub page: i64,
    pub total_pages: i64,
}

/// `oidc` of [`Config`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct OidcConfig {
    pub issuer: String,
    pub client_id: String,
    pub audience: String,
}

/// Answer of `GET /api/config` (the fields Sandbar can fill).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Config {
    pub version: String,
    pub oidc: OidcConfig,
    pub linked_accounts_enabled: bool,
    pub announcements: BTreeMap<String, String>,
    pub proxy_template_url: String,
    pub proxy_toolbox_url: String,
    pub default_snapshot: String,
    pub dashboard_url: String,
    pub max_auto_archive_interval: i64,
    pub maintanance_mode: bool,
    pub environment: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_sandbox_accepts_nulls_and_unknown_keys() {
        let body: CreateSandbox = serde_json::from_str(
            r#"{"name":null,"env":{},"labels":{"code-toolbox-language":"python"},"volumes":[],"secrets":[]}"#,
        )
        .unwrap();
        assert_eq!(body.name, None);
        assert_eq!(body.labels.unwrap()["code-toolbox-language"], "python");
    }

    #[test]
    fn volume_mount_omits_missing_subpath() {
        let v = SandboxVolume {
            volume_id: "v".into(),
            mount_path: "/w".into(),
            subpath: None,
        };
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            r#"{"volumeId":"v","mountPath":"/w"}"#
        );
    }
}
