//! A workspace's task categories: a [`Category`], what a client sends to create one
//! ([`CategoryDraft`]) and to change one ([`CategoryChanges`]). A name is 1–50 characters and
//! unique in its workspace (ignoring case); a color is `#rrggbb`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{CategoryId, UserId};
use crate::text::{self, FieldError};

/// Longest category name, in characters.
pub const MAX_CATEGORY_NAME_CHARS: usize = 50;

/// A category as the room holds it and as clients see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Category {
    /// Its id.
    pub id: CategoryId,
    /// 1–50 characters, unique in the workspace ignoring case.
    pub name: String,
    /// `#rrggbb` (lower case), if set.
    pub color: Option<String>,
    /// Order in the category list; lower first.
    pub position: i64,
    /// Who created it.
    pub created_by: UserId,
    /// When.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// What a client sends to create a category.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CategoryDraft {
    /// An id chosen by the client (an offline client names what it creates); else the hub's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<CategoryId>,
    /// 1–50 characters.
    pub name: String,
    /// `#rrggbb`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<String>,
    /// Defaults to after the last category.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<i64>,
}

impl CategoryDraft {
    /// Checks the limits and puts the fields in their stored form.
    ///
    /// # Errors
    /// The first field that is out of range.
    pub fn normalize(&mut self) -> Result<(), FieldError> {
        self.name = clean_name(&self.name)?;
        self.color = self.color.as_deref().map(clean_color).transpose()?;
        Ok(())
    }
}

/// A partial update of a category: only the fields present change; `color: null` clears it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CategoryChanges {
    /// New name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// New color, or `null` to clear.
    #[serde(
        default,
        deserialize_with = "crate::task::nullable",
        skip_serializing_if = "Option::is_none"
    )]
    pub color: Option<Option<String>>,
    /// New position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<i64>,
}

impl CategoryChanges {
    /// Checks the limits and puts the fields in their stored form.
    ///
    /// # Errors
    /// Nothing to change, or the first field that is out of range.
    pub fn normalize(&mut self) -> Result<(), FieldError> {
        if *self == CategoryChanges::default() {
            return Err(FieldError {
                field: "changes",
                problem: "names no field to change",
            });
        }
        if let Some(name) = &self.name {
            self.name = Some(clean_name(name)?);
        }
        if let Some(Some(color)) = &self.color {
            self.color = Some(Some(clean_color(color)?));
        }
        Ok(())
    }

    /// Applies the changes (not the timestamps: the room sets them).
    pub fn apply_to(&self, category: &mut Category) {
        if let Some(name) = &self.name {
            category.name.clone_from(name);
        }
        if let Some(color) = &self.color {
            category.color.clone_from(color);
        }
        if let Some(position) = self.position {
            category.position = position;
        }
    }
}

fn clean_name(name: &str) -> Result<String, FieldError> {
    text::clean_line(name, "name", MAX_CATEGORY_NAME_CHARS).map_err(|e| {
        if e.problem == text::problem::TOO_LONG {
            FieldError {
                field: "name",
                problem: "must be at most 50 characters",
            }
        } else {
            e
        }
    })
}

fn clean_color(color: &str) -> Result<String, FieldError> {
    let hex = color.strip_prefix('#').unwrap_or("");
    if hex.len() == 6 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(format!("#{}", hex.to_ascii_lowercase()))
    } else {
        Err(FieldError {
            field: "color",
            problem: "must be #rrggbb",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_colors_are_checked_and_normalized() {
        let mut d = CategoryDraft {
            id: None,
            name: "  Work ".into(),
            color: Some("#A1B2C3".into()),
            position: None,
        };
        d.normalize().unwrap();
        assert_eq!(
            (d.name.as_str(), d.color.as_deref()),
            ("Work", Some("#a1b2c3"))
        );
        for bad in ["red", "#12345", "#1234567", "123456", "#12345g"] {
            d.color = Some(bad.into());
            assert_eq!(d.normalize().unwrap_err().field, "color", "{bad}");
        }
        d.color = None;
        d.name = "x".repeat(51);
        assert_eq!(
            d.normalize().unwrap_err().to_string(),
            "name: must be at most 50 characters"
        );
        assert!(CategoryChanges::default().normalize().is_err());
        let clear: CategoryChanges = serde_json::from_str(r#"{"color":null}"#).unwrap();
        assert_eq!(clear.color, Some(None));
    }
}
