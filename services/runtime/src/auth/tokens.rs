//! Bearer tokens from a tokens file, kept as SHA-256 hashes.
//!
//! ```toml
//! [[tokens]]
//! sha256 = "…64 hex digits: sha256 of the token…"
//! principal = "reporting-app"
//! roles = ["submit"]
//! ```
//!
//! `printf %s "$TOKEN" | sha256sum` gives the hash. Tokens themselves are
//! long random strings (32 bytes or more of randomness), so an unsalted
//! hash is enough: there is nothing to guess.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::AuthError;
use super::principal::{Method, Principal, Role, Roles};

const WHAT: &str = "server.auth.tokens_file";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    tokens: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    sha256: String,
    principal: String,
    roles: Vec<Role>,
}

/// The tokens of a tokens file.
#[derive(Debug, Default)]
pub struct Tokens {
    by_hash: HashMap<[u8; 32], Principal>,
}

impl Tokens {
    /// Reads and checks a tokens file.
    pub fn load(path: &Path) -> Result<Self, AuthError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthError::Read {
            what: WHAT,
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|problem| AuthError::Invalid {
            what: WHAT,
            path: path.to_path_buf(),
            problem,
        })
    }

    /// Parses a tokens file's text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: File = toml::from_str(text).map_err(|e| e.message().to_string())?;
        let mut by_hash = HashMap::new();
        for (i, entry) in file.tokens.into_iter().enumerate() {
            let hash = parse_hash(&entry.sha256)
                .ok_or_else(|| format!("tokens[{i}].sha256 must be 64 hex digits"))?;
            if entry.principal.trim().is_empty() {
                return Err(format!("tokens[{i}].principal is empty"));
            }
            let principal = Principal {
                name: Arc::from(entry.principal),
                roles: entry.roles.into_iter().collect::<Roles>(),
                method: Method::Token,
            };
            if by_hash.insert(hash, principal).is_some() {
                return Err(format!("tokens[{i}]: the same token is listed twice"));
            }
        }
        Ok(Self { by_hash })
    }

    /// The principal of `token`, if it is listed.
    pub fn principal(&self, token: &str) -> Option<&Principal> {
        self.by_hash.get(&hash(token))
    }

    /// How many tokens are listed.
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }
}

/// SHA-256 of a token.
pub fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// SHA-256 of a token, as the tokens file writes it.
pub fn hash_hex(token: &str) -> String {
    let mut out = String::with_capacity(64);
    crate::telemetry::push_hex(&mut out, &hash(token));
    out
}

fn parse_hash(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_listed_token_by_its_hash_only() {
        let text = format!(
            "[[tokens]]\nsha256 = \"{}\"\nprincipal = \"alice\"\nroles = [\"submit\", \"read\"]\n",
            hash_hex("s3cret-token")
        );
        let tokens = Tokens::parse(&text).unwrap_or_default();
        assert_eq!(tokens.len(), 1);
        let alice = tokens
            .principal("s3cret-token")
            .map(|p| (&*p.name, p.roles));
        assert_eq!(
            alice,
            Some(("alice", [Role::Submit, Role::Read].into_iter().collect()))
        );
        assert!(tokens.principal("s3cret-tokeN").is_none());
        assert!(!text.contains("s3cret"), "the file holds no token");
    }

    #[test]
    fn refuses_bad_files_with_the_entry_named() {
        let bad_hash = "[[tokens]]\nsha256 = \"abc\"\nprincipal = \"a\"\nroles = []\n";
        assert!(Tokens::parse(bad_hash).is_err_and(|e| e.contains("tokens[0].sha256")));
        let bad_role = format!(
            "[[tokens]]\nsha256 = \"{}\"\nprincipal = \"a\"\nroles = [\"root\"]\n",
            hash_hex("t")
        );
        assert!(Tokens::parse(&bad_role).is_err_and(|e| e.contains("root")));
        let twice = format!(
            "[[tokens]]\nsha256 = \"{h}\"\nprincipal = \"a\"\nroles = []\n[[tokens]]\nsha256 = \"{h}\"\nprincipal = \"b\"\nroles = []\n",
            h = hash_hex("t")
        );
        assert!(Tokens::parse(&twice).is_err_and(|e| e.contains("twice")));
    }
}
