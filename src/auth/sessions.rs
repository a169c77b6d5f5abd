//! Sessions live in the database and are cached (SPEC §5). The cache answers the
//! per-request "is this session live?" check; the database decides when the cache cannot
//! answer. Revocation writes the database first and then a tombstone into the cache, so
//! a revoked session is refused on every instance from the next request on.

use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::{refresh_token, session, user};
use sea_orm::ExprTrait;
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::roles::Role;
use super::service::PHONE_CONTEXT;
use super::tokens::ACCESS_TTL_SECS;
use crate::cache::Cache;
use crate::crypto::{self, Keyring, mask};
use crate::state::AppState;

/// How long "this session is live" may be believed without asking the database.
const LIVE_TTL: Duration = Duration::from_secs(60);
/// A tombstone outlives every access token issued for the session.
const REVOKED_TTL: Duration = Duration::from_secs(ACCESS_TTL_SECS as u64 + 120);

/// What a request needs to know about its caller, and what `/me` shows, so that
/// neither needs the database while the cache holds the session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionInfo {
    pub session_id: Uuid,
    pub user_id: Uuid,
    pub role: Role,
    pub partner_id: Option<Uuid>,
    pub must_change_password: bool,
    pub expires_at: DateTime<Utc>,
    pub username: Option<String>,
    /// Masked (`138****5678`); the number itself is never cached.
    pub phone: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl SessionInfo {
    fn new(session_id: Uuid, expires_at: DateTime<Utc>, user: &user::Model, role: Role, keyring: &Keyring) -> Self {
        let phone = user.phone_enc.as_deref().and_then(|enc| keyring.decrypt(PHONE_CONTEXT, enc).ok()).map(|p| mask::phone(&p));
        Self {
            session_id,
            user_id: user.id,
            role,
            partner_id: user.partner_id,
            must_change_password: user.must_change_password,
            expires_at,
            username: user.username.clone(),
            phone,
            created_at: user.created_at,
        }
    }
}

#[derive(Serialize, Deserialize)]
enum Cached {
    Live(SessionInfo),
    Revoked,
}

fn key(session: Uuid) -> String {
    format!("sess:{session}")
}

/// The live session with this id, or `None` when it is revoked, expired or unknown.
pub async fn load(state: &AppState, session_id: Uuid) -> Result<Option<SessionInfo>, DbErr> {
    let now = state.clock.now();
    if let Ok(Some(bytes)) = state.cache.get(&key(session_id)).await {
        match serde_json::from_slice::<Cached>(&bytes) {
            Ok(Cached::Live(info)) if info.expires_at > now => return Ok(Some(info)),
            Ok(Cached::Live(_) | Cached::Revoked) => return Ok(None),
            Err(_) => {}
        }
    }
    let info = load_from_db(&state.db, &state.keyring, session_id, now).await?;
    let cached = match &info {
        Some(info) => (Cached::Live(info.clone()), LIVE_TTL),
        None => (Cached::Revoked, REVOKED_TTL),
    };
    if let Ok(bytes) = serde_json::to_vec(&cached.0) {
        // Best effort: without the cache the next request asks the database again. "Live"
        // never overwrites a tombstone: this request may have read the database just before
        // a revocation whose tombstone is already in Redis (or reached a hung Redis first).
        let stored = match (&cached.0, serde_json::to_vec(&Cached::Revoked)) {
            (Cached::Live(_), Ok(tombstone)) => state.cache.set_unless(&key(session_id), &bytes, &tombstone, cached.1).await.map(drop),
            _ => state.cache.set(&key(session_id), &bytes, cached.1).await,
        };
        drop(stored);
    }
    Ok(info)
}

pub async fn load_from_db<C: ConnectionTrait>(
    db: &C,
    keyring: &Keyring,
    session_id: Uuid,
    now: DateTime<Utc>,
) -> Result<Option<SessionInfo>, DbErr> {
    let Some(s) = session::Entity::find_by_id(session_id).one(db).await? else { return Ok(None) };
    if s.revoked_at.is_some() || s.expires_at <= now {
        return Ok(None);
    }
    let Some(u) = user::Entity::find_by_id(s.user_id).one(db).await? else { return Ok(None) };
    let Some(role) = Role::parse(&u.role) else { return Ok(None) };
    if u.status != "active" {
        return Ok(None);
    }
    Ok(Some(SessionInfo::new(s.id, s.expires_at, &u, role, keyring)))
}

/// Client details kept with a session, for the user's and the auditors' benefit.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// Opens a session for `user`; returns it with its first refresh token.
pub async fn open<C: ConnectionTrait>(
    db: &C,
    keyring: &Keyring,
    user: &user::Model,
    role: Role,
    origin: &Origin,
    now: DateTime<Utc>,
) -> Result<(SessionInfo, String), DbErr> {
    let id = Uuid::now_v7();
    let expires_at = now + role.session_lifetime();
    session::Entity::insert(session::ActiveModel {
        id: Set(id),
        user_id: Set(user.id),
        created_at: Set(now),
        expires_at: Set(expires_at),
        refreshed_at: Set(now),
        revoked_at: Set(None),
        revoke_reason: Set(None),
        ip: Set(origin.ip.clone()),
        user_agent: Set(origin.user_agent.as_deref().map(|ua| ua.chars().take(256).collect())),
    })
    .exec_without_returning(db)
    .await?;
    let refresh = new_refresh_token(db, id, now).await?;
    Ok((SessionInfo::new(id, expires_at, user, role, keyring), refresh))
}

pub async fn new_refresh_token<C: ConnectionTrait>(db: &C, session_id: Uuid, now: DateTime<Utc>) -> Result<String, DbErr> {
    let token = format!("zrt_{}", crypto::random_token(32));
    refresh_token::Entity::insert(refresh_token::ActiveModel {
        token_hash: Set(crypto::sha256_hex(token.as_bytes())),
        session_id: Set(session_id),
        created_at: Set(now),
        rotated_at: Set(None),
    })
    .exec_without_returning(db)
    .await?;
    Ok(token)
}

/// Marks sessions revoked in the database; returns the ids that were live. Call
/// [`forget`] with them after the transaction commits.
pub async fn revoke<C: ConnectionTrait>(db: &C, filter: Revoke, reason: &str, now: DateTime<Utc>) -> Result<Vec<Uuid>, DbErr> {
    let condition = match filter {
        Revoke::Session(id) => session::Column::Id.eq(id),
        Revoke::AllOfUser(user) => session::Column::UserId.eq(user),
        Revoke::OthersOfUser { user, keep } => session::Column::UserId.eq(user).and(session::Column::Id.ne(keep)),
    };
    let ids: Vec<Uuid> = session::Entity::find()
        .filter(condition.clone())
        .filter(session::Column::RevokedAt.is_null())
        .all(db)
        .await?
        .into_iter()
        .map(|s| s.id)
        .collect();
    if ids.is_empty() {
        return Ok(ids);
    }
    session::Entity::update_many()
        .col_expr(session::Column::RevokedAt, Expr::value(now))
        .col_expr(session::Column::RevokeReason, Expr::value(reason))
        .filter(session::Column::Id.is_in(ids.clone()))
        .filter(session::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    Ok(ids)
}

pub enum Revoke {
    Session(Uuid),
    AllOfUser(Uuid),
    OthersOfUser { user: Uuid, keep: Uuid },
}

/// Writes tombstones for revoked sessions, together and past the circuit breaker; while
/// the cache is unreachable they are retried in the background, so that a cache that comes
/// back with an old "live" entry is corrected within seconds (and the entry expires within
/// a minute regardless).
pub async fn forget(cache: &Cache, sessions: &[Uuid]) {
    let Ok(tombstone) = serde_json::to_vec(&Cached::Revoked) else { return };
    let entries = sessions.iter().map(|&id| (key(id), tombstone.clone())).collect();
    cache.set_all_eventually(entries, REVOKED_TTL, LIVE_TTL).await;
}

/// Drops the cached view of a session so that the next request reads it afresh
/// (after a password change, say).
pub async fn refresh_cached(cache: &Cache, session: Uuid) {
    drop(cache.delete(&key(session)).await);
}
