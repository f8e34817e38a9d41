//! Who may do what on the Orchestrator API and the registry: the one home
//! of the authorization policy.
//!
//! Authentication (`[server.auth]`, in the runtime) puts a
//! [`Principal`] on every request; this module decides. The table:
//!
//! | call | roles, any of |
//! |---|---|
//! | Run, Submit, Plan | submit, admin |
//! | GetRun, WatchRun, ListRuns | submit (own runs), read, admin |
//! | CancelRun | submit (own runs), admin |
//! | ListAgents | submit, read, admin |
//! | Register, RenewLease, Deregister | agent (own registration), admin |
//!
//! A run another principal may not see answers NOT_FOUND, exactly as a run
//! that does not exist, so that run ids are not confirmed to strangers.
//! Without `[server.auth]` every caller may do everything and runs have no
//! owner.

pub mod limits;

use std::sync::Arc;

use agentmesh_proto::error::{ErrorReason, MeshError};
use agentmesh_runtime::auth::{Principal, Role};
use tonic::{Request, Status};

/// Something a caller asks to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Run, Submit.
    StartRun,
    /// Plan.
    Plan,
    /// GetRun, WatchRun, ListRuns.
    ReadRuns,
    /// CancelRun, ProvideInput (who may cancel a run may answer it).
    CancelRun,
    /// ListAgents.
    ListAgents,
    /// Register, RenewLease, Deregister.
    Register,
}

impl Action {
    /// The roles any of which allows the action.
    pub fn needs(self) -> &'static [Role] {
        match self {
            Self::StartRun | Self::Plan => &[Role::Submit, Role::Admin],
            Self::ReadRuns | Self::ListAgents => &[Role::Submit, Role::Read, Role::Admin],
            Self::CancelRun => &[Role::Submit, Role::Admin],
            Self::Register => &[Role::Agent, Role::Admin],
        }
    }
}

/// The caller of a request.
#[derive(Debug, Clone)]
pub enum Caller {
    /// The API is not authenticated: anyone may do anything.
    Anyone,
    /// An authenticated principal.
    Principal(Principal),
}

impl Caller {
    /// The caller of `request`, as authentication left it.
    pub fn of<T>(request: &Request<T>) -> Self {
        match request.extensions().get::<Principal>() {
            Some(p) => Self::Principal(p.clone()),
            None => Self::Anyone,
        }
    }

    /// Checks that the caller may do `action` at all.
    pub fn require(&self, action: Action) -> Result<(), Status> {
        match self {
            Self::Anyone => Ok(()),
            Self::Principal(p) if p.roles.any(action.needs()) => Ok(()),
            Self::Principal(_) => Err(denied(action)),
        }
    }

    /// The owner of the runs this caller starts ("" for anyone).
    pub fn owner(&self) -> Arc<str> {
        match self {
            Self::Anyone => Arc::from(""),
            Self::Principal(p) => Arc::clone(&p.name),
        }
    }

    /// Whether the caller is an admin (or the API is open).
    fn admin(&self) -> bool {
        match self {
            Self::Anyone => true,
            Self::Principal(p) => p.roles.has(Role::Admin),
        }
    }

    /// Only these owner's runs are visible to the caller; None: all.
    pub fn visible_owner(&self) -> Option<&str> {
        match self {
            Self::Principal(p) if !p.roles.any(&[Role::Admin, Role::Read]) => Some(&p.name),
            _ => None,
        }
    }

    /// Whether the caller may see a run of `owner`.
    pub fn sees(&self, owner: &str) -> bool {
        self.visible_owner().is_none_or(|me| me == owner)
    }

    /// Whether the caller may steer (cancel, answer) a run of `owner`.
    pub fn steers(&self, owner: &str) -> bool {
        let own =
            matches!(self, Self::Principal(p) if p.roles.has(Role::Submit) && *p.name == *owner);
        self.admin() || own
    }

    /// Checks that the caller may cancel a run of `owner` it can see.
    pub fn may_cancel(&self, owner: &str) -> Result<(), Status> {
        if self.steers(owner) {
            return Ok(());
        }
        Err(MeshError::new(
            ErrorReason::PermissionDenied,
            "only the run's owner or an admin may cancel it",
        )
        .with_meta("needs", "admin")
        .into_status())
    }

    /// Whether the caller may act on a registration of `owner`.
    pub fn owns_registration(&self, owner: &str) -> bool {
        self.admin() || matches!(self, Self::Principal(p) if *p.name == *owner)
    }
}

fn denied(action: Action) -> Status {
    let needs: Vec<&str> = action.needs().iter().map(|r| r.name()).collect();
    MeshError::new(
        ErrorReason::PermissionDenied,
        format!(
            "this call needs one of the roles {}; ask for one of them",
            needs.join(", ")
        ),
    )
    .with_meta("needs", needs.join(","))
    .into_status()
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentmesh_runtime::auth::principal::Method;

    fn caller(name: &str, roles: &[Role]) -> Caller {
        Caller::Principal(Principal {
            name: Arc::from(name),
            roles: roles.iter().copied().collect(),
            method: Method::Token,
        })
    }

    #[test]
    fn roles_open_what_the_table_says() {
        let submitter = caller("app", &[Role::Submit]);
        let reader = caller("auditor", &[Role::Read]);
        let agent = caller("agent-1", &[Role::Agent]);
        assert!(submitter.require(Action::StartRun).is_ok());
        assert!(reader.require(Action::StartRun).is_err());
        assert!(agent.require(Action::ReadRuns).is_err());
        assert!(agent.require(Action::Register).is_ok());
        assert!(submitter.require(Action::Register).is_err());
        assert!(submitter.sees("app") && !submitter.sees("other"));
        assert!(reader.sees("other"));
        assert!(reader.may_cancel("other").is_err());
        assert!(submitter.may_cancel("app").is_ok());
        assert!(caller("root", &[Role::Admin]).may_cancel("other").is_ok());
        assert!(submitter.steers("app") && !submitter.steers("other"));
        assert!(!reader.steers("app") && Caller::Anyone.steers("app"));
        assert!(Caller::Anyone.sees("x") && Caller::Anyone.require(Action::Register).is_ok());
    }
}
