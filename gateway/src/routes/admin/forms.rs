//! The body of `PATCH /api/admin/users/{id}/`: the type the document shows
//! is the type the handler reads (see `crate::body::FromFields`).

use utoipa::{
    ToSchema,
    openapi::{
        RefOr,
        schema::{ObjectBuilder, Schema, Type},
    },
};

use crate::body::{FieldReader, FromFields};

/// The flags to change; at least one.
#[derive(Debug)]
pub struct UserUpdateForm {
    /// Activate (`true`) or deactivate (`false`).
    pub is_active: Option<bool>,
    /// Grant (`true`) or revoke (`false`) administrator rights.
    pub is_staff: Option<bool>,
}

/// Written by hand: the derive drops `minProperties`, and without it the
/// document would call an empty body valid (it is a 400).
impl utoipa::PartialSchema for UserUpdateForm {
    fn schema() -> RefOr<Schema> {
        let flag = |description: &str| {
            ObjectBuilder::new()
                .schema_type(Type::Boolean)
                .description(Some(description))
        };
        ObjectBuilder::new()
            .description(Some("The flags to change; at least one."))
            .property(
                "is_active",
                flag(
                    "Activate (`true`) or deactivate (`false`, which also ends every session). \
                     An account that has not verified its email cannot be activated (409 \
                     `not_verified`). Forms may send `true`, `false`, `1` or `0`.",
                ),
            )
            .property(
                "is_staff",
                flag("Grant (`true`) or revoke (`false`) administrator rights."),
            )
            .min_properties(Some(1))
            .into()
    }
}

impl ToSchema for UserUpdateForm {}

impl FromFields for UserUpdateForm {
    fn from_fields(form: &mut FieldReader<'_>) -> Self {
        Self {
            is_active: form.optional_bool("is_active"),
            is_staff: form.optional_bool("is_staff"),
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::{body::Body, extract::Request, http::header};
    use utoipa::PartialSchema as _;

    use super::*;
    use crate::body::Fields;

    async fn json_body(json: serde_json::Value) -> Fields {
        let request = Request::builder()
            .method("PATCH")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(json.to_string()))
            .unwrap();
        Fields::read(request).await.unwrap()
    }

    #[tokio::test]
    async fn the_form_reads_exactly_the_optional_booleans_it_documents() {
        let RefOr::T(Schema::Object(object)) = UserUpdateForm::schema() else {
            panic!("not an object schema");
        };
        let documented: Vec<&String> = object.properties.keys().collect();
        assert_eq!(documented, ["is_active", "is_staff"]);
        assert!(object.required.is_empty());
        assert_eq!(object.min_properties, Some(1));

        let nulls = json_body(serde_json::json!({"is_active": null, "is_staff": null})).await;
        let invalid = nulls.parse::<UserUpdateForm>().unwrap_err();
        assert_eq!(
            invalid.errors.fields().collect::<Vec<_>>(),
            ["is_active", "is_staff"]
        );
        let form = json_body(serde_json::json!({"is_active": false}))
            .await
            .parse::<UserUpdateForm>()
            .unwrap();
        assert_eq!((form.is_active, form.is_staff), (Some(false), None));
    }
}
