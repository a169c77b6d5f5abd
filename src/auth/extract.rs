//! Authentication as extractors: a handler that takes [`Talent`], [`Staff`], [`Operator`]…
//! cannot run without a live session of that role — its signature says who may call it.

use std::future::Future;
use std::marker::PhantomData;
use std::ops::Deref;
use std::pin::Pin;

use actix_web::http::header;
use actix_web::{FromRequest, HttpMessage, HttpRequest, dev::Payload, web};

use super::roles::Role;
use super::sessions::{self, SessionInfo};
use super::tokens::TokenError;
use crate::audit::Actor;
use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;
use crate::telemetry::RequestId;

/// Any live session, including one that must still change its initial password
/// (for `/me`, `/me/password` and `/auth/logout`).
pub struct Session(pub SessionInfo);

impl Deref for Session {
    type Target = SessionInfo;
    fn deref(&self) -> &SessionInfo {
        &self.0
    }
}

/// A set of roles allowed through.
pub trait Policy {
    const ROLES: &'static [Role];
}

/// A live session of one of `P::ROLES` that has no pending password change.
pub struct Require<P: Policy>(pub SessionInfo, PhantomData<P>);

impl<P: Policy> Deref for Require<P> {
    type Target = SessionInfo;
    fn deref(&self) -> &SessionInfo {
        &self.0
    }
}

macro_rules! policy {
    ($(#[$doc:meta])* $alias:ident, $policy:ident, [$($role:ident),+]) => {
        #[doc(hidden)]
        pub struct $policy;
        impl Policy for $policy {
            const ROLES: &'static [Role] = &[$(Role::$role),+];
        }
        $(#[$doc])*
        pub type $alias = Require<$policy>;
    };
}

policy!(/// A talent (mini-program user).
    Talent, TalentPolicy, [Talent]);
policy!(/// Staff of a partner, manager included.
    Staff, StaffPolicy, [MerchantStaff, MerchantManager]);
policy!(/// A partner's manager.
    Manager, ManagerPolicy, [MerchantManager]);
policy!(/// A reviewer of applications and cards (or a super admin).
    Reviewer, ReviewerPolicy, [Reviewer, SuperAdmin]);
policy!(/// An operator of partners and benefits (or a super admin).
    Operator, OperatorPolicy, [Operator, SuperAdmin]);
policy!(/// Any admin role.
    AnyAdmin, AnyAdminPolicy, [Reviewer, Operator, SuperAdmin]);
policy!(/// A super admin.
    SuperAdmin, SuperAdminPolicy, [SuperAdmin]);

type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T, ApiError>>>>;

impl FromRequest for Session {
    type Error = ApiError;
    type Future = BoxFuture<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { authenticate(&req).await.map(Session) })
    }
}

impl<P: Policy + 'static> FromRequest for Require<P> {
    type Error = ApiError;
    type Future = BoxFuture<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let info = authenticate(&req).await?;
            if info.must_change_password {
                return Err(ApiError::new(ErrorCode::PasswordChangeRequired));
            }
            if !P::ROLES.contains(&info.role) {
                return Err(ApiError::new(ErrorCode::Forbidden));
            }
            Ok(Require(info, PhantomData))
        })
    }
}

async fn authenticate(req: &HttpRequest) -> Result<SessionInfo, ApiError> {
    let state = req.app_data::<web::Data<AppState>>().ok_or_else(|| ApiError::internal(anyhow::anyhow!("application state missing")))?;
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized))?;
    let claims = state.tokens.verify(token, state.clock.now()).map_err(|e| match e {
        TokenError::Expired => ApiError::new(ErrorCode::TokenExpired),
        TokenError::Invalid => ApiError::new(ErrorCode::TokenInvalid),
    })?;
    let info = sessions::load(state, claims.sid).await?.ok_or_else(|| ApiError::new(ErrorCode::SessionRevoked))?;
    if info.user_id != claims.sub || info.role != claims.role {
        return Err(ApiError::new(ErrorCode::SessionRevoked));
    }
    req.extensions_mut().insert(info.clone());
    Ok(info)
}

/// Where a request came from: the client address (the peer, or with `trust_proxy` the
/// address our proxy saw, see [`forwarded_client`]), user agent and request id.
#[derive(Debug, Clone, Default)]
pub struct RequestMeta {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
}

impl RequestMeta {
    pub fn of(req: &HttpRequest) -> Self {
        let trust_proxy = req.app_data::<web::Data<AppState>>().is_some_and(|s| s.settings.trust_proxy);
        let peer = || req.peer_addr().map(|a| a.ip().to_string());
        let ip = if trust_proxy { forwarded_client(req).or_else(peer) } else { peer() };
        Self {
            ip: ip.map(|ip| ip.chars().take(64).collect()),
            user_agent: req.headers().get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(|s| s.chars().take(256).collect()),
            request_id: req.extensions().get::<RequestId>().map(|r| r.0.clone()),
        }
    }

    /// The address that per-address limits and lockouts count by: an IPv4 address, or the
    /// /64 network of an IPv6 one (a subscriber holds a whole /64; counting its single
    /// addresses would let one client count as 2^64).
    pub fn limit_address(&self) -> String {
        use std::net::IpAddr;
        let Some(ip) = self.ip.as_deref() else { return "unknown".to_owned() };
        match ip.parse::<IpAddr>() {
            Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => v4.to_string(),
                None => {
                    let s = v6.segments();
                    format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
                }
            },
            Ok(IpAddr::V4(v4)) => v4.to_string(),
            Err(_) => ip.to_owned(),
        }
    }

    pub fn origin(&self) -> sessions::Origin {
        sessions::Origin { ip: self.ip.clone(), user_agent: self.user_agent.clone() }
    }

    /// The audit actor for a signed-in caller.
    pub fn actor(&self, session: &SessionInfo) -> Actor {
        Actor {
            user_id: Some(session.user_id),
            role: session.role.as_str().to_owned(),
            ip: self.ip.clone(),
            request_id: self.request_id.clone(),
        }
    }
}

/// The client as the proxy in front of us saw it: the last `X-Forwarded-For` entry, the
/// one that proxy appended. Earlier entries come from the client and can say anything;
/// trusting the first would let anyone pick their address, and so escape every
/// per-address limit.
fn forwarded_client(req: &HttpRequest) -> Option<String> {
    let header = req.headers().get_all("x-forwarded-for").last()?.to_str().ok()?;
    let last = header.rsplit(',').next()?.trim();
    last.parse::<std::net::IpAddr>().ok().map(|ip| ip.to_string())
}

impl FromRequest for RequestMeta {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(Ok(Self::of(req)))
    }
}
