//! `/dav/{volumeIdOrName}/...`: WebDAV access to a volume's files, served by
//! [`sandbar_dav::DavService`] straight from the volume's host directory (no sandbox needed).
//!
//! Authentication is the API key, as `Authorization: Bearer <key>` or HTTP Basic with the key as
//! the password (any user name; a key given as the user name with an empty password works too,
//! for clients that only fill one field). The volume must belong to the key's organization:
//! another organization's volume is 404, like a missing one. Failures answer 401 with
//! `WWW-Authenticate: Basic realm="sandbar"` so desktop clients prompt for credentials.

use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;

use crate::error::ApiError;
use crate::AppState;

/// Every method on `/dav/{volume}` and below.
pub async fn serve(State(state): State<AppState>, request: Request) -> Response {
    let Some(key) = api_key(&request) else {
        return unauthorized();
    };
    let org = match state.store().authenticate(&key).await {
        Ok(Some(org)) => org,
        Ok(None) => return unauthorized(),
        Err(err) => return ApiError::from(err).into_response(),
    };
    let Some(name) = volume_segment(request.uri().path()) else {
        return plain(StatusCode::NOT_FOUND, "no such volume\n");
    };
    let volume = match state.store().find_volume(org, &name).await {
        Ok(Some(volume)) => volume,
        Ok(None) => return plain(StatusCode::NOT_FOUND, "no such volume\n"),
        Err(err) => return ApiError::from(err).into_response(),
    };
    let id = volume.id.to_string();
    let root = state.lifecycle().volumes().root(&id);
    let prefix = format!("/dav/{name}");
    state
        .dav()
        .serve(&id, &root, &prefix, request)
        .await
        .map(axum::body::Body::new)
}

/// The key from `Bearer <key>` or `Basic base64(user:key)`.
fn api_key(request: &Request) -> Option<String> {
    let value = request.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    let rest = rest.trim();
    let key = if scheme.eq_ignore_ascii_case("bearer") {
        rest.to_owned()
    } else if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (user, password) = text.split_once(':')?;
        if password.is_empty() {
            user.to_owned()
        } else {
            password.to_owned()
        }
    } else {
        return None;
    };
    (!key.is_empty()).then_some(key)
}

/// The decoded volume id or name of `/dav/<segment>[/...]`.
fn volume_segment(path: &str) -> Option<String> {
    let segment = path.strip_prefix("/dav/")?.split('/').next()?;
    let name = percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .ok()?
        .into_owned();
    (!name.is_empty() && name != "." && name != "..").then_some(name)
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    (
        status,
        [(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        text,
    )
        .into_response()
}

fn unauthorized() -> Response {
    let mut response = plain(StatusCode::UNAUTHORIZED, "an API key is required\n");
    response.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"sandbar\""),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_auth(value: &str) -> Request {
        Request::builder()
            .header(AUTHORIZATION, value)
            .body(axum::body::Body::empty())
            .unwrap()
    }

    #[test]
    fn keys_from_bearer_and_basic() {
        let basic = |s: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(s)
            )
        };
        assert_eq!(api_key(&with_auth("Bearer sb_1")).as_deref(), Some("sb_1"));
        assert_eq!(
            api_key(&with_auth(&basic("anyone:sb_2"))).as_deref(),
            Some("sb_2")
        );
        assert_eq!(
            api_key(&with_auth(&basic("sb_3:"))).as_deref(),
            Some("sb_3")
        );
        assert_eq!(api_key(&with_auth(&basic(":"))), None);
        assert_eq!(api_key(&with_auth("Digest x")), None);
    }

    #[test]
    fn volume_segments() {
        assert_eq!(volume_segment("/dav/v1/a/b").as_deref(), Some("v1"));
        assert_eq!(volume_segment("/dav/my%20vol/").as_deref(), Some("my vol"));
        assert_eq!(volume_segment("/dav/%2e%2e/x"), None);
        assert_eq!(volume_segment("/dav/"), None);
    }
}
