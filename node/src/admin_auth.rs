//! Who may use the administration endpoints (`/cluster/*`, the `/kv` routes): the holder of
//! the cluster admin token (`Authorization: Bearer <token>`), or an admin account's ZStack
//! session (`Authorization: OAuth <session uuid>`, ZStack's own header). A normal account's
//! session is refused with a permission error; no credential or a wrong one with 401.

use std::sync::Arc;

use axum::extract::Request;
use axum::extract::State;
use axum::middleware::Next;
use axum::response::IntoResponse;
use axum::response::Response;

use crate::error::NodeError;
use crate::http::HttpError;
use crate::node::Node;
use crate::state_view::StateView;

/// Who was let in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admin {
    /// The cluster admin token.
    Token,
    /// An admin account's session.
    Session(String),
}

fn eq_ct(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

const HOW: &str = "send `Authorization: Bearer <cluster admin token>` (pki/admin.token on the node that created the cluster; zsctl --token-file) or `Authorization: OAuth <session uuid>` of an admin account";

/// Check the request's credential.
pub async fn authenticate(node: &Node, header: Option<&str>) -> Result<Admin, NodeError> {
    let Some(h) = header else {
        return Err(NodeError::Unauthenticated(format!(
            "administration endpoints need a credential: {HOW}"
        )));
    };
    let (scheme, value) = h.trim().split_once(' ').unwrap_or((h.trim(), ""));
    let value = value.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        if eq_ct(
            &crate::pki::token_hash(value),
            &node.credentials().admin_token_sha256,
        ) {
            return Ok(Admin::Token);
        }
        return Err(NodeError::Unauthenticated(
            "the admin token is not this cluster's".into(),
        ));
    }
    if scheme.eq_ignore_ascii_case("oauth") {
        let check = |node: &Node| {
            api::families::identity::session_caller(
                &StateView(&node.sm),
                "cluster administration",
                Some(value),
                crate::node::now_ms(),
            )
        };
        let caller = match check(node) {
            Ok((c, _)) => c,
            Err(_) => {
                // The session may have been created on a node this one has not caught up with.
                node.linearizable_barrier().await?;
                check(node)
                    .map_err(|_| {
                        NodeError::Unauthenticated("the session is unknown or expired".into())
                    })?
                    .0
            }
        };
        if !caller.admin {
            return Err(NodeError::Forbidden(format!(
                "account {} is not an admin account; cluster administration needs the admin account or the cluster admin token",
                caller.account_uuid
            )));
        }
        return Ok(Admin::Session(caller.account_uuid));
    }
    Err(NodeError::Unauthenticated(format!(
        "unknown Authorization scheme {scheme:?}: {HOW}"
    )))
}

/// Middleware of the administration routes.
pub async fn require_admin(State(node): State<Arc<Node>>, req: Request, next: Next) -> Response {
    let header = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or("\u{0}"));
    match authenticate(&node, header).await {
        Ok(who) => {
            tracing::debug!(?who, path = %req.uri().path(), "administration request authorised");
            next.run(req).await
        }
        Err(e) => {
            tracing::info!(path = %req.uri().path(), reason = %e, "administration request refused");
            HttpError::new(e, node.id).into_response()
        }
    }
}
