//! The request bodies of the account routes. Each type is both what the
//! OpenAPI document shows (`ToSchema`) and what its handler reads
//! ([`FromFields`]), so the document and the handler cannot drift; a test
//! below checks that every type reads exactly the fields its schema names.

use utoipa::ToSchema;

use crate::body::{FieldReader, FromFields};

/// The one body encoding the document lists. Every operation here also
/// reads form-urlencoded and multipart bodies with the same fields (the
/// old clients send forms), but a document listing one schema under three
/// content types makes generated clients unusable: openapi-python-client
/// 0.29 emits code that fails to import (`Unset` undefined, its issue
/// #1451) and, since the three branches test the same class, would send
/// multipart. So the document names JSON and says the rest in words.
pub const JSON: &str = "application/json";
/// Each request body's description in the document: the other encodings.
pub const ALSO_FORMS: &str = "JSON; the same fields as `application/x-www-form-urlencoded` or \
                              `multipart/form-data` work too.";

/// `POST /api/accounts/register/`.
#[derive(Debug, ToSchema)]
pub struct RegisterForm {
    /// 1-150 letters, digits and `@.+-_` in one script, stored in NFKC;
    /// unique ignoring case, and refused when it looks like (Unicode TR39
    /// confusables) or equals another account's username or email.
    #[schema(min_length = 1, max_length = 150, pattern = r"^[\w.@+-]+$")]
    pub username: String,
    /// Where the verification code is sent; unique ignoring case and
    /// lookalikes. The domain is stored in IDNA ASCII, the local part in
    /// NFC; encoded words (`=?…?=`), quoted local parts and comments are
    /// refused, and non-ASCII local parts unless the relay speaks SMTPUTF8.
    #[schema(format = Email, max_length = 254)]
    pub email: String,
    /// 8 characters to 1024 bytes, not common, not all digits, not like the
    /// username or email.
    #[schema(format = Password, min_length = 8, max_length = 1024)]
    pub password: String,
    /// When given, must equal `password`.
    #[schema(format = Password, max_length = 1024)]
    pub password2: Option<String>,
}

impl FromFields for RegisterForm {
    fn from_fields(form: &mut FieldReader<'_>) -> Self {
        Self {
            username: form.required("username"),
            email: form.required("email"),
            password: form.required_password("password"),
            password2: form.optional("password2"),
        }
    }
}

/// `POST /api/accounts/verification/code/`.
#[derive(Debug, ToSchema)]
pub struct CodeRequestForm {
    /// The account's email.
    #[schema(format = Email, max_length = 254)]
    pub email: String,
}

impl FromFields for CodeRequestForm {
    fn from_fields(form: &mut FieldReader<'_>) -> Self {
        Self {
            email: form.required("email"),
        }
    }
}

/// `POST /api/accounts/verification/code/verify/`.
#[derive(Debug, ToSchema)]
pub struct VerifyForm {
    /// The account's email.
    #[schema(format = Email, max_length = 254)]
    pub email: String,
    /// The emailed code: 6 digits. A JSON number 0-999999 is accepted too
    /// and read zero-padded (`12345` is `"012345"`); any other number is
    /// refused (400 naming `code`, no try used up).
    #[schema(pattern = "^[0-9]{6}$")]
    pub code: String,
    /// The password given at registration. The code proves the mailbox;
    /// this proves the mailbox owner chose the password being activated.
    /// Send it or `new_password` (one is required unless the operator
    /// allows codes alone); a wrong one answers `code-wrong` and uses up a
    /// try.
    #[schema(format = Password, max_length = 1024)]
    pub password: Option<String>,
    /// A new password (the registration rules) replacing the one given at
    /// registration: for an account someone else registered with your
    /// address, or a forgotten password.
    #[schema(format = Password, min_length = 8, max_length = 1024)]
    pub new_password: Option<String>,
}

impl FromFields for VerifyForm {
    fn from_fields(form: &mut FieldReader<'_>) -> Self {
        Self {
            email: form.required("email"),
            code: form.code("code"),
            password: form.optional("password"),
            new_password: form.optional("new_password"),
        }
    }
}

/// `POST /api/accounts/login/`.
#[derive(Debug, ToSchema)]
pub struct LoginForm {
    /// Username or email.
    #[schema(min_length = 1)]
    pub username: String,
    /// The account's password.
    #[schema(format = Password, min_length = 1)]
    pub password: String,
}

impl FromFields for LoginForm {
    fn from_fields(form: &mut FieldReader<'_>) -> Self {
        Self {
            username: form.required("username"),
            password: form.required_password("password"),
        }
    }
}

/// `login/refresh/`, `logout/` and (without a bearer token) `logout/all/`.
#[derive(Debug, ToSchema)]
pub struct RefreshForm {
    /// A refresh token from `login/` or `login/refresh/`.
    pub refresh: String,
}

impl FromFields for RefreshForm {
    fn from_fields(form: &mut FieldReader<'_>) -> Self {
        Self {
            refresh: form.required("refresh"),
        }
    }
}

/// `POST /api/accounts/password/change/` (with `Authorization: Bearer`).
#[derive(Debug, ToSchema)]
pub struct PasswordChangeForm {
    /// The current password.
    #[schema(format = Password, min_length = 1)]
    pub old_password: String,
    /// The new password: the registration rules, and not the current one.
    #[schema(format = Password, min_length = 8, max_length = 1024)]
    pub new_password: String,
    /// When given, must equal `new_password`.
    #[schema(format = Password, max_length = 1024)]
    pub new_password2: Option<String>,
}

impl FromFields for PasswordChangeForm {
    fn from_fields(form: &mut FieldReader<'_>) -> Self {
        Self {
            old_password: form.required_password("old_password"),
            new_password: form.required_password("new_password"),
            new_password2: form.optional("new_password2"),
        }
    }
}

/// `POST /api/accounts/password/reset/`.
#[derive(Debug, ToSchema)]
pub struct ResetRequestForm {
    /// The account's verified email.
    #[schema(format = Email, max_length = 254)]
    pub email: String,
}

impl FromFields for ResetRequestForm {
    fn from_fields(form: &mut FieldReader<'_>) -> Self {
        Self {
            email: form.required("email"),
        }
    }
}

/// `POST /api/accounts/password/reset/confirm/`.
#[derive(Debug, ToSchema)]
pub struct ResetConfirmForm {
    /// The account's email.
    #[schema(format = Email, max_length = 254)]
    pub email: String,
    /// The emailed reset code: 6 digits (a JSON number is accepted too).
    #[schema(pattern = "^[0-9]{6}$")]
    pub code: String,
    /// The new password: the registration rules.
    #[schema(format = Password, min_length = 8, max_length = 1024)]
    pub new_password: String,
    /// When given, must equal `new_password`.
    #[schema(format = Password, max_length = 1024)]
    pub new_password2: Option<String>,
}

impl FromFields for ResetConfirmForm {
    fn from_fields(form: &mut FieldReader<'_>) -> Self {
        Self {
            email: form.required("email"),
            code: form.required("code"),
            new_password: form.required_password("new_password"),
            new_password2: form.optional("new_password2"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use axum::{body::Body, extract::Request, http::header};
    use utoipa::openapi::{RefOr, schema::Schema};

    use super::*;
    use crate::body::Fields;

    /// The property names of `T`'s schema, and the required ones.
    fn schema_fields<T: ToSchema>() -> (BTreeSet<String>, BTreeSet<String>) {
        let RefOr::T(Schema::Object(object)) = T::schema() else {
            panic!("{} is not an object schema", T::name());
        };
        (
            object.properties.keys().cloned().collect(),
            object.required.iter().cloned().collect(),
        )
    }

    async fn json_body(json: serde_json::Value) -> Fields {
        let request = Request::builder()
            .method("POST")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(json.to_string()))
            .unwrap();
        Fields::read(request).await.unwrap()
    }

    /// Every field the type reads is in its schema and the other way round
    /// (all set to `null`, each is reported), and the required ones are
    /// exactly those an empty body is refused for.
    async fn reads_what_its_schema_documents<T: ToSchema + FromFields + std::fmt::Debug>() {
        let (properties, required) = schema_fields::<T>();
        let nulls = properties
            .iter()
            .map(|name| (name.clone(), serde_json::Value::Null))
            .collect();
        let invalid = json_body(serde_json::Value::Object(nulls))
            .await
            .parse::<T>()
            .unwrap_err();
        let read: BTreeSet<String> = invalid.errors.fields().map(str::to_owned).collect();
        assert_eq!(read, properties, "{}: fields read vs documented", T::name());

        let missing = json_body(serde_json::json!({}))
            .await
            .parse::<T>()
            .unwrap_err();
        let refused: BTreeSet<String> = missing.errors.fields().map(str::to_owned).collect();
        assert_eq!(refused, required, "{}: required vs documented", T::name());
    }

    #[tokio::test]
    async fn every_body_type_reads_exactly_the_fields_it_documents() {
        reads_what_its_schema_documents::<RegisterForm>().await;
        reads_what_its_schema_documents::<CodeRequestForm>().await;
        reads_what_its_schema_documents::<VerifyForm>().await;
        reads_what_its_schema_documents::<LoginForm>().await;
        reads_what_its_schema_documents::<RefreshForm>().await;
        reads_what_its_schema_documents::<PasswordChangeForm>().await;
        reads_what_its_schema_documents::<ResetRequestForm>().await;
        reads_what_its_schema_documents::<ResetConfirmForm>().await;
    }

    #[tokio::test]
    async fn a_valid_body_is_read_into_its_type() {
        let fields = json_body(serde_json::json!({
            "username": "alice", "email": "a@b.c", "password": " pass word ", "extra": true,
        }))
        .await;
        let form = fields.parse::<RegisterForm>().unwrap();
        assert_eq!(form.username, "alice");
        assert_eq!(form.email, "a@b.c");
        assert_eq!(form.password, " pass word ");
        assert_eq!(form.password2, None);
    }
}
