//! Principals and their roles.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// What a principal may do. Which calls each role opens is the serving
/// side's policy (docs/OPERATIONS.md has the table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Start runs, and see and cancel one's own.
    Submit,
    /// See every run.
    Read,
    /// Everything.
    Admin,
    /// Register, renew and deregister one's own registration.
    Agent,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 4] = [Role::Submit, Role::Read, Role::Admin, Role::Agent];

    /// The name used in files, tokens and messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Submit => "submit",
            Self::Read => "read",
            Self::Admin => "admin",
            Self::Agent => "agent",
        }
    }

    /// The role called `name`, if there is one.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.name() == name)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of roles.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Roles(u8);

impl Roles {
    /// No role.
    pub const NONE: Roles = Roles(0);

    /// Whether `role` is in the set.
    pub fn has(self, role: Role) -> bool {
        self.0 & role.bit() != 0
    }

    /// Whether any of `roles` is in the set.
    pub fn any(self, roles: &[Role]) -> bool {
        roles.iter().any(|r| self.has(*r))
    }

    /// The set with `role` added.
    #[must_use]
    pub fn with(self, role: Role) -> Self {
        Self(self.0 | role.bit())
    }
}

impl FromIterator<Role> for Roles {
    fn from_iter<I: IntoIterator<Item = Role>>(iter: I) -> Self {
        iter.into_iter().fold(Roles::NONE, Roles::with)
    }
}

impl fmt::Display for Roles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = Role::ALL
            .into_iter()
            .filter(|r| self.has(*r))
            .map(Role::name)
            .collect();
        f.write_str(&names.join(","))
    }
}

/// How a principal proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// A bearer token from the tokens file.
    Token,
    /// A JWT.
    Jwt,
    /// A client certificate under mutual TLS.
    Certificate,
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Its name: the tokens file's `principal`, the JWT's subject claim, or
    /// the certificate's identity. Runs record it as their owner.
    pub name: Arc<str>,
    /// What it may do.
    pub roles: Roles,
    /// How it proved it.
    pub method: Method,
}
