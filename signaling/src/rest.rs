//! The bodies of the REST API's requests, and the checks that put them in their stored form.
//!
//! They live here, beside the WebSocket commands, because they are as much a part of the
//! contract with client apps, and so that one fuzz target can drive every body through
//! [`crate::json::from_slice`] and its checks without an HTTP server.

use serde::Deserialize;

use crate::task::FieldError;
use crate::text;
use crate::workspace::Role;

/// Longest display name or workspace name, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// Password length bounds, in characters.
pub const PASSWORD_CHARS: std::ops::RangeInclusive<usize> = 8..=128;

/// `POST /auth/register`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct RegisterBody {
    /// Normalized by [`RegisterBody::normalize`].
    pub email: String,
    /// 8–128 characters.
    pub password: String,
    /// A display name, 1–100 characters.
    pub name: String,
}

impl RegisterBody {
    /// Normalizes the email and the name and checks the password's length.
    ///
    /// # Errors
    /// The first field that is out of range.
    pub fn normalize(mut self) -> Result<Self, FieldError> {
        self.email = text::normalize_email(&self.email)?;
        self.name = clean_name(&self.name)?;
        check_password(&self.password)?;
        Ok(self)
    }
}

/// `POST /auth/login`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct LoginBody {
    /// Normalized like at registration.
    pub email: String,
    /// The password.
    pub password: String,
}

impl LoginBody {
    /// Normalizes the email.
    ///
    /// # Errors
    /// The email cannot be an address.
    pub fn normalize(mut self) -> Result<Self, FieldError> {
        self.email = text::normalize_email(&self.email)?;
        Ok(self)
    }
}

/// `POST /auth/refresh` and `POST /auth/logout`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct RefreshBody {
    /// The opaque refresh token.
    pub refresh_token: String,
}

/// `DELETE /auth/me`: deleting one's own account takes the password again.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct PasswordBody {
    /// The account's password.
    pub password: String,
}

/// `POST /workspaces` and `PUT /workspaces/{id}`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct NameBody {
    /// 1–100 characters.
    pub name: String,
}

impl NameBody {
    /// The name in its stored form.
    ///
    /// # Errors
    /// Empty, too long, or with control or invisible characters.
    pub fn normalize(self) -> Result<String, FieldError> {
        clean_name(&self.name)
    }
}

/// `POST /workspaces/{id}/members`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct AddMemberBody {
    /// The account to add, by email.
    pub email: String,
    /// Its role.
    pub role: Role,
}

impl AddMemberBody {
    /// Normalizes the email.
    ///
    /// # Errors
    /// The email cannot be an address.
    pub fn normalize(mut self) -> Result<Self, FieldError> {
        self.email = text::normalize_email(&self.email)?;
        Ok(self)
    }
}

/// `PUT /workspaces/{id}/members/{user_id}`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct RoleBody {
    /// The new role.
    pub role: Role,
}

/// A display name or a workspace name in its stored form: trimmed, 1–100 characters, no control
/// or invisible characters.
///
/// # Errors
/// The name is out of range.
pub fn clean_name(name: &str) -> Result<String, FieldError> {
    text::clean_line(name, "name", MAX_NAME_CHARS).map_err(|e| match e.problem {
        text::problem::EMPTY | text::problem::TOO_LONG => FieldError {
            field: "name",
            problem: "must be 1-100 characters",
        },
        _ => e,
    })
}

/// Checks a new password's length.
///
/// # Errors
/// Not 8–128 characters.
pub fn check_password(password: &str) -> Result<(), FieldError> {
    if PASSWORD_CHARS.contains(&password.chars().count()) {
        Ok(())
    } else {
        Err(FieldError {
            field: "password",
            problem: "must be 8-128 characters",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json;

    #[test]
    fn a_registration_is_normalized() {
        let body: RegisterBody = json::from_slice(
            br#"{"email": " Ada@Example.COM ", "password": "correct horse", "name": " Ada "}"#,
        )
        .unwrap();
        let body = body.normalize().unwrap();
        assert_eq!(
            (body.email.as_str(), body.name.as_str()),
            ("ada@example.com", "Ada")
        );
    }

    #[test]
    fn nul_and_invisible_characters_are_refused_in_every_text_field() {
        let reg = |email: &str, name: &str| RegisterBody {
            email: email.into(),
            password: "correct horse".into(),
            name: name.into(),
        };
        assert_eq!(
            reg("a\u{0}@x.io", "Ada").normalize().unwrap_err().field,
            "email"
        );
        assert_eq!(
            reg("a\u{200b}@x.io", "Ada").normalize().unwrap_err().field,
            "email"
        );
        assert_eq!(
            reg("a@x.io", "A\u{0}da").normalize().unwrap_err().field,
            "name"
        );
        let name = NameBody {
            name: "Team\u{0}".into(),
        };
        assert_eq!(name.normalize().unwrap_err().field, "name");
        let short = RegisterBody {
            password: "short".into(),
            ..reg("a@x.io", "Ada")
        };
        assert_eq!(short.normalize().unwrap_err().field, "password");
    }

    #[test]
    fn name_limits_keep_their_message() {
        let err = clean_name(&"x".repeat(101)).unwrap_err();
        assert_eq!(err.to_string(), "name: must be 1-100 characters");
        assert_eq!(
            clean_name("   ").unwrap_err().to_string(),
            "name: must be 1-100 characters"
        );
    }
}
