//! Request bodies: the one extractor every POST handler uses.
//!
//! Clients of the old service send JSON, `curl -d` forms or multipart, so all
//! three are read into the same field map, with DRF's messages for what goes
//! wrong. The size limit is enforced here, inside the extractor, rather than
//! by an outer layer: the login handler must see a too-large body so the
//! attempt is still recorded. Handlers then read their documented body
//! type from the map with [`Fields::parse`] (see [`FromFields`]).

use std::collections::HashMap;

use axum::{
    body::Body,
    extract::{FromRequest, Multipart, Request},
    http::{HeaderMap, header},
    response::{IntoResponse, Response},
};
use futures::StreamExt;

use crate::error::{ApiError, BODY_LIMIT, FieldErrors};

/// One submitted value, as far as a text field is concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldValue {
    /// A string (or a form or multipart text field).
    Text(String),
    /// A JSON number. Text fields read it written out (`1.5`); a field
    /// with its own rule for numbers (the verification code) reads it
    /// with [`FieldReader::code`].
    Number(serde_json::Number),
    /// JSON `null`.
    Null,
    /// A JSON `true` or `false`. Text fields refuse it; boolean fields
    /// ([`FieldReader::optional_bool`]) read it.
    Bool(bool),
    /// Anything else (a JSON list or object; an uploaded file).
    Invalid,
}

/// The fields of a request body, by name. Unknown fields are kept but no
/// handler asks for them, so they are ignored whatever their type.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fields(HashMap<String, FieldValue>);

/// Why a body could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// A Content-Type we do not parse (its text, possibly empty).
    #[error("unsupported media type {0:?}")]
    UnsupportedMediaType(String),
    /// More than [`BODY_LIMIT`] bytes.
    #[error("body too large")]
    TooLarge,
    /// The body does not parse; the message is safe to show.
    #[error("{0}")]
    Parse(String),
    /// JSON that is not an object (the JSON type's name).
    #[error("expected an object, got {0}")]
    NotAnObject(&'static str),
    /// The connection failed while the body was being read.
    #[error("body could not be read")]
    Read,
    /// The body did not arrive within `GATEWAY_BODY_TIMEOUT`.
    #[error("body not received in time")]
    TimedOut,
}

impl From<BodyError> for ApiError {
    fn from(e: BodyError) -> Self {
        match e {
            BodyError::UnsupportedMediaType(t) => ApiError::UnsupportedMediaType(t),
            BodyError::TooLarge => ApiError::PayloadTooLarge,
            BodyError::Parse(detail) => ApiError::BadRequest(detail),
            BodyError::NotAnObject(kind) => {
                let mut errors = FieldErrors::default();
                errors.add(
                    "non_field_errors",
                    format!("Invalid data. Expected a dictionary, but got {kind}."),
                );
                ApiError::Validation(errors)
            }
            BodyError::Read => ApiError::BadRequest("Request body could not be read.".to_owned()),
            BodyError::TimedOut => ApiError::BodyTimeout,
        }
    }
}

impl IntoResponse for BodyError {
    fn into_response(self) -> Response {
        ApiError::from(self).into_response()
    }
}

impl<S: Send + Sync> FromRequest<S> for Fields {
    type Rejection = BodyError;

    async fn from_request(request: Request, _: &S) -> Result<Self, Self::Rejection> {
        Fields::read(request).await
    }
}

/// The body types we parse.
enum Kind {
    Json,
    Form,
    Multipart,
}

impl Fields {
    /// Reads and parses `request`'s body.
    pub async fn read(request: Request) -> Result<Self, BodyError> {
        let (parts, body) = request.into_parts();
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let kind = match content_type.as_deref() {
            None => None,
            Some(ct) => {
                Some(media_kind(ct).ok_or_else(|| BodyError::UnsupportedMediaType(ct.to_owned()))?)
            }
        };
        let bytes = read_limited(&parts.headers, body).await?;
        let Some(kind) = kind else {
            // No Content-Type: an empty body is an empty form (what DRF did);
            // anything else cannot be interpreted.
            return if bytes.is_empty() {
                Ok(Self::default())
            } else {
                Err(BodyError::UnsupportedMediaType(String::new()))
            };
        };
        match kind {
            Kind::Json => Self::from_json(&bytes),
            Kind::Form => Ok(Self::from_form(&bytes)),
            Kind::Multipart => {
                let request = Request::from_parts(parts, Body::from(bytes));
                Self::from_multipart(request).await
            }
        }
    }

    /// The value of `name`, if submitted.
    pub fn get(&self, name: &str) -> Option<&FieldValue> {
        self.0.get(name)
    }

    /// Reads the request body type `T`, checking every field it names:
    /// `T`, or what could be read of it with every problem.
    pub fn parse<T: FromFields>(&self) -> Result<T, Invalid<T>> {
        let mut reader = self.reader();
        let partial = T::from_fields(&mut reader);
        if reader.errors.is_empty() {
            Ok(partial)
        } else {
            Err(Invalid {
                partial,
                errors: reader.errors,
            })
        }
    }

    /// Starts checking fields, collecting every problem before answering.
    pub fn reader(&self) -> FieldReader<'_> {
        FieldReader {
            fields: self,
            errors: FieldErrors::default(),
        }
    }

    fn from_json(bytes: &[u8]) -> Result<Self, BodyError> {
        // DRF treated an empty JSON body as no data at all.
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self::default());
        }
        let value: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| BodyError::Parse(format!("JSON parse error - {e}")))?;
        let object = match value {
            serde_json::Value::Object(map) => map,
            serde_json::Value::Array(_) => return Err(BodyError::NotAnObject("list")),
            serde_json::Value::String(_) => return Err(BodyError::NotAnObject("str")),
            serde_json::Value::Number(_) => return Err(BodyError::NotAnObject("number")),
            serde_json::Value::Bool(_) => return Err(BodyError::NotAnObject("bool")),
            serde_json::Value::Null => return Err(BodyError::NotAnObject("NoneType")),
        };
        let fields = object
            .into_iter()
            .map(|(name, value)| {
                let value = match value {
                    serde_json::Value::String(s) => FieldValue::Text(s),
                    serde_json::Value::Number(n) => FieldValue::Number(n),
                    serde_json::Value::Null => FieldValue::Null,
                    serde_json::Value::Bool(b) => FieldValue::Bool(b),
                    _ => FieldValue::Invalid,
                };
                (name, value)
            })
            .collect();
        Ok(Self(fields))
    }

    fn from_form(bytes: &[u8]) -> Self {
        // A repeated name keeps its last value, as Django's QueryDict.get did.
        Self(
            form_urlencoded::parse(bytes)
                .map(|(k, v)| (k.into_owned(), FieldValue::Text(v.into_owned())))
                .collect(),
        )
    }

    async fn from_multipart(request: Request) -> Result<Self, BodyError> {
        let parse_error =
            |detail: String| BodyError::Parse(format!("Multipart form parse error - {detail}"));
        let mut multipart = Multipart::from_request(request, &())
            .await
            .map_err(|e| parse_error(e.body_text()))?;
        let mut fields = HashMap::new();
        while let Some(field) = multipart
            .next_field()
            .await
            .map_err(|e| parse_error(e.body_text()))?
        {
            let Some(name) = field.name().map(str::to_owned) else {
                continue;
            };
            let value = if field.file_name().is_some() {
                FieldValue::Invalid
            } else {
                FieldValue::Text(field.text().await.map_err(|e| parse_error(e.body_text()))?)
            };
            fields.insert(name, value);
        }
        Ok(Self(fields))
    }
}

/// Checks required and optional text fields, collecting DRF-style messages
/// for every problem so the client learns them all at once.
#[derive(Debug)]
pub struct FieldReader<'a> {
    fields: &'a Fields,
    errors: FieldErrors,
}

impl FieldReader<'_> {
    /// A required field that must not be blank (whitespace only counts as
    /// blank). Returns an empty string when there is a problem.
    pub fn required(&mut self, name: &str) -> String {
        self.read(name, true, |v| v.trim().is_empty())
            .unwrap_or_default()
    }

    /// A required password: like [`Self::required`], but only the empty
    /// string is blank, since spaces are legitimate password characters.
    pub fn required_password(&mut self, name: &str) -> String {
        self.read(name, true, str::is_empty).unwrap_or_default()
    }

    /// An optional field: `None` when absent (or when it has a problem).
    pub fn optional(&mut self, name: &str) -> Option<String> {
        self.read(name, false, |_| false)
    }

    /// A required six-digit code. A string is taken as sent (the code's
    /// own parser judges it); a JSON number 0..=999999 (an integer written
    /// without fraction, exponent or sign) is the code zero-padded to six
    /// digits (`12345` is `012345`, whose leading zero a number cannot
    /// carry). Any other number is refused here, naming the field, so it
    /// never reaches the service and never uses up a try.
    pub fn code(&mut self, name: &str) -> String {
        match self.fields.get(name) {
            Some(FieldValue::Number(n)) => match n.as_u64().filter(|&v| v <= 999_999) {
                Some(v) => format!("{v:06}"),
                None => {
                    self.errors
                        .add(name, "Enter the code as six digits (a string or 0-999999).");
                    String::new()
                }
            },
            _ => self.required(name),
        }
    }

    /// An optional boolean: JSON `true`/`false`, or `true`, `false`, `1`
    /// or `0` in any case as text (forms) or as a JSON number (DRF's
    /// spellings, as the listing's query takes them). `None` when absent
    /// or when it has a problem (`null`, blank, anything else).
    pub fn optional_bool(&mut self, name: &str) -> Option<bool> {
        let parsed = match self.fields.get(name)? {
            FieldValue::Bool(b) => Ok(*b),
            FieldValue::Null => Err("This field may not be null."),
            FieldValue::Text(t) => parse_bool(t).ok_or("Must be a valid boolean."),
            FieldValue::Number(n) => parse_bool(&n.to_string()).ok_or("Must be a valid boolean."),
            FieldValue::Invalid => Err("Must be a valid boolean."),
        };
        parsed
            .map_err(|problem| self.errors.add(name, problem))
            .ok()
    }

    /// The names of the fields with problems, in order checked.
    pub fn problem_fields(&self) -> Vec<String> {
        self.errors.fields().map(str::to_owned).collect()
    }

    /// `Ok` when every checked field was fine, else the 400 naming them.
    pub fn finish(self) -> Result<(), ApiError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(self.errors))
        }
    }

    fn read(&mut self, name: &str, required: bool, blank: fn(&str) -> bool) -> Option<String> {
        let problem = match self.fields.get(name) {
            None if required => "This field is required.",
            None => return None,
            Some(FieldValue::Null) => "This field may not be null.",
            Some(FieldValue::Invalid | FieldValue::Bool(_)) => "Not a valid string.",
            Some(FieldValue::Text(v)) if required && blank(v) => "This field may not be blank.",
            Some(FieldValue::Text(v)) => return Some(v.clone()),
            Some(FieldValue::Number(n)) => return Some(n.to_string()),
        };
        self.errors.add(name, problem);
        None
    }
}

/// A request body type: the type the OpenAPI document describes is the
/// type the handler reads, so the two cannot drift apart. Its
/// implementation names each field once, with the reader method that
/// fits it (required, password, optional).
pub trait FromFields: Sized {
    /// Reads every field, leaving a default where one has a problem (the
    /// reader records it).
    fn from_fields(form: &mut FieldReader<'_>) -> Self;
}

/// A body whose fields have problems.
#[derive(Debug)]
pub struct Invalid<T> {
    /// What could be read: fields with a problem are left empty.
    pub partial: T,
    /// Every problem, by field, in the order read.
    pub errors: FieldErrors,
}

impl<T> From<Invalid<T>> for ApiError {
    fn from(invalid: Invalid<T>) -> Self {
        ApiError::Validation(invalid.errors)
    }
}

/// DRF's boolean spellings accepted here: true/false/1/0, any case.
pub fn parse_bool(raw: &str) -> Option<bool> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

/// Which parser a Content-Type selects, ignoring parameters and case.
fn media_kind(content_type: &str) -> Option<Kind> {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/json" => Some(Kind::Json),
        "application/x-www-form-urlencoded" => Some(Kind::Form),
        "multipart/form-data" => Some(Kind::Multipart),
        _ => None,
    }
}

/// The whole body, refusing more than [`BODY_LIMIT`] bytes without reading
/// past the limit.
async fn read_limited(headers: &HeaderMap, body: Body) -> Result<Vec<u8>, BodyError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > BODY_LIMIT as u64) {
        return Err(BodyError::TooLarge);
    }
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            if is_timeout(&e) {
                BodyError::TimedOut
            } else {
                BodyError::Read
            }
        })?;
        if bytes.len() + chunk.len() > BODY_LIMIT {
            return Err(BodyError::TooLarge);
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// Whether a body read failed because the body deadline passed (the
/// server wraps bodies in tower-http's `DeadlineBody`).
fn is_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if e.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cause = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read(content_type: Option<&str>, body: &'static [u8]) -> Result<Fields, BodyError> {
        let mut builder = Request::builder().method("POST").uri("/");
        if let Some(ct) = content_type {
            builder = builder.header(header::CONTENT_TYPE, ct);
        }
        Fields::read(builder.body(Body::from(body)).unwrap()).await
    }

    fn text(fields: &Fields, name: &str) -> Option<String> {
        match fields.get(name) {
            Some(FieldValue::Text(t)) => Some(t.clone()),
            _ => None,
        }
    }

    #[tokio::test]
    async fn json_strings_and_numbers_become_text() {
        let f = read(
            Some("application/json"),
            br#"{"email": "a@b.c", "code": 123456, "x": 1.5}"#,
        )
        .await
        .unwrap();
        assert_eq!(text(&f, "email").as_deref(), Some("a@b.c"));
        let mut r = f.reader();
        assert_eq!(r.required("code"), "123456");
        assert_eq!(r.required("x"), "1.5");
        assert!(r.finish().is_ok());
    }

    #[tokio::test]
    async fn a_code_sent_as_a_json_number_is_zero_padded_or_refused() {
        let f = read(
            Some("application/json"),
            br#"{"a": 12345, "b": 0, "c": 999999, "s": "0123", "f": "12345"}"#,
        )
        .await
        .unwrap();
        let mut r = f.reader();
        assert_eq!(r.code("a"), "012345");
        assert_eq!(r.code("b"), "000000");
        assert_eq!(r.code("c"), "999999");
        // Strings are passed on as sent: the service judges them.
        assert_eq!(r.code("s"), "0123");
        assert!(r.finish().is_ok());
        for bad in [
            "1234567",
            "-1",
            "1.5",
            "1e5",
            "100000.0",
            "-0",
            "18446744073709551616",
        ] {
            let body: &'static [u8] = Box::leak(
                format!(r#"{{"code": {bad}}}"#)
                    .into_bytes()
                    .into_boxed_slice(),
            );
            let f = read(Some("application/json"), body).await.unwrap();
            let mut r = f.reader();
            assert_eq!(r.code("code"), "", "{bad}");
            assert_eq!(r.problem_fields(), ["code"], "{bad}");
        }
        // A form's text is text, whatever it looks like.
        let f = read(Some("application/x-www-form-urlencoded"), b"code=12345")
            .await
            .unwrap();
        assert_eq!(f.reader().code("code"), "12345");
    }

    #[tokio::test]
    async fn json_other_types_are_marked() {
        let f = read(
            Some("application/json; charset=utf-8"),
            br#"{"a": true, "b": [1], "c": {"d": 1}, "n": null}"#,
        )
        .await
        .unwrap();
        assert_eq!(f.get("a"), Some(&FieldValue::Bool(true)));
        assert_eq!(f.get("b"), Some(&FieldValue::Invalid));
        assert_eq!(f.get("c"), Some(&FieldValue::Invalid));
        assert_eq!(f.get("n"), Some(&FieldValue::Null));
        // A boolean is no text.
        let mut reader = f.reader();
        assert_eq!(reader.optional("a"), None);
        assert_eq!(reader.problem_fields(), ["a"]);
    }

    #[tokio::test]
    async fn booleans_are_read_from_json_and_from_forms() {
        let f = read(
            Some("application/json"),
            br#"{"t": true, "f": false, "one": 1, "s": "FALSE", "n": null, "x": "yes", "two": 2, "l": [true]}"#,
        )
        .await
        .unwrap();
        let mut reader = f.reader();
        assert_eq!(reader.optional_bool("t"), Some(true));
        assert_eq!(reader.optional_bool("f"), Some(false));
        assert_eq!(reader.optional_bool("one"), Some(true));
        assert_eq!(reader.optional_bool("s"), Some(false));
        assert_eq!(reader.optional_bool("absent"), None);
        assert!(reader.problem_fields().is_empty());
        for bad in ["n", "x", "two", "l"] {
            assert_eq!(reader.optional_bool(bad), None, "{bad}");
        }
        assert_eq!(reader.problem_fields(), ["n", "x", "two", "l"]);

        let f = read(
            Some("application/x-www-form-urlencoded"),
            b"is_active=0&is_staff=True&blank=",
        )
        .await
        .unwrap();
        let mut reader = f.reader();
        assert_eq!(reader.optional_bool("is_active"), Some(false));
        assert_eq!(reader.optional_bool("is_staff"), Some(true));
        assert_eq!(reader.optional_bool("blank"), None);
        assert_eq!(reader.problem_fields(), ["blank"]);
    }

    #[tokio::test]
    async fn json_that_is_not_an_object_is_refused() {
        assert!(matches!(
            read(Some("application/json"), b"[1,2]").await,
            Err(BodyError::NotAnObject("list"))
        ));
        assert!(matches!(
            read(Some("application/json"), b"\"x\"").await,
            Err(BodyError::NotAnObject("str"))
        ));
    }

    #[tokio::test]
    async fn broken_json_is_a_parse_error_with_a_short_reason() {
        let Err(BodyError::Parse(detail)) = read(Some("application/json"), b"{\"a\":").await else {
            panic!("expected a parse error");
        };
        assert!(detail.starts_with("JSON parse error - "), "{detail}");
    }

    #[tokio::test]
    async fn deeply_nested_json_is_refused_without_overflowing_the_stack() {
        let deep: &'static [u8] = Box::leak(
            format!("{{\"a\":{}{}}}", "[".repeat(20_000), "]".repeat(20_000))
                .into_bytes()
                .into_boxed_slice(),
        );
        assert!(matches!(
            read(Some("application/json"), deep).await,
            Err(BodyError::Parse(_) | BodyError::TooLarge)
        ));
    }

    #[tokio::test]
    async fn an_empty_json_body_has_no_fields() {
        assert_eq!(
            read(Some("application/json"), b"").await.unwrap(),
            Fields::default()
        );
    }

    #[tokio::test]
    async fn forms_are_decoded_and_the_last_repeat_wins() {
        let f = read(
            Some("application/x-www-form-urlencoded"),
            b"email=a%40b.c&name=x+y&name=z",
        )
        .await
        .unwrap();
        assert_eq!(text(&f, "email").as_deref(), Some("a@b.c"));
        assert_eq!(text(&f, "name").as_deref(), Some("z"));
    }

    #[tokio::test]
    async fn multipart_text_fields_are_read_and_files_are_not_text() {
        let body: &'static [u8] = b"--XX\r\nContent-Disposition: form-data; name=\"email\"\r\n\r\na@b.c\r\n--XX\r\nContent-Disposition: form-data; name=\"password\"; filename=\"p.txt\"\r\nContent-Type: text/plain\r\n\r\nsecret\r\n--XX--\r\n";
        let f = read(Some("multipart/form-data; boundary=XX"), body)
            .await
            .unwrap();
        assert_eq!(text(&f, "email").as_deref(), Some("a@b.c"));
        assert_eq!(f.get("password"), Some(&FieldValue::Invalid));
    }

    #[tokio::test]
    async fn multipart_without_a_boundary_is_a_parse_error() {
        let Err(BodyError::Parse(detail)) = read(Some("multipart/form-data"), b"x").await else {
            panic!("expected a parse error");
        };
        assert!(
            detail.starts_with("Multipart form parse error - "),
            "{detail}"
        );
    }

    #[tokio::test]
    async fn other_media_types_are_unsupported() {
        let Err(BodyError::UnsupportedMediaType(t)) = read(Some("text/plain"), b"hi").await else {
            panic!("expected 415");
        };
        assert_eq!(t, "text/plain");
    }

    #[tokio::test]
    async fn no_content_type_and_no_body_is_an_empty_form() {
        assert_eq!(read(None, b"").await.unwrap(), Fields::default());
        assert!(matches!(
            read(None, b"a=b").await,
            Err(BodyError::UnsupportedMediaType(t)) if t.is_empty()
        ));
    }

    #[tokio::test]
    async fn bodies_over_the_limit_are_refused() {
        let big: &'static [u8] = Box::leak(vec![b'a'; BODY_LIMIT + 1].into_boxed_slice());
        assert!(matches!(
            read(Some("application/x-www-form-urlencoded"), big).await,
            Err(BodyError::TooLarge)
        ));
        let exact: &'static [u8] = Box::leak(vec![b'a'; BODY_LIMIT].into_boxed_slice());
        assert!(
            read(Some("application/x-www-form-urlencoded"), exact)
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn a_declared_length_over_the_limit_is_refused_before_reading() {
        let request = Request::builder()
            .method("POST")
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::CONTENT_LENGTH, "1000000")
            .body(Body::empty())
            .unwrap();
        assert!(matches!(
            Fields::read(request).await,
            Err(BodyError::TooLarge)
        ));
    }

    #[tokio::test]
    async fn the_reader_reports_every_problem_with_drf_messages() {
        let f = read(
            Some("application/json"),
            br#"{"a": " ", "b": null, "c": false, "p": " "}"#,
        )
        .await
        .unwrap();
        let mut r = f.reader();
        assert_eq!(r.required("a"), "");
        r.required("b");
        r.required("c");
        r.required("missing");
        // Spaces are a valid password.
        assert_eq!(r.required_password("p"), " ");
        assert_eq!(r.optional("absent"), None);
        assert_eq!(r.problem_fields(), ["a", "b", "c", "missing"]);
        let Err(ApiError::Validation(errors)) = r.finish() else {
            panic!("expected a validation error");
        };
        assert_eq!(
            errors.messages("a").unwrap(),
            ["This field may not be blank."]
        );
        assert_eq!(
            errors.messages("b").unwrap(),
            ["This field may not be null."]
        );
        assert_eq!(errors.messages("c").unwrap(), ["Not a valid string."]);
        assert_eq!(
            errors.messages("missing").unwrap(),
            ["This field is required."]
        );
    }
}
