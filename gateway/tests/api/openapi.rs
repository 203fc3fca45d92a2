//! The OpenAPI document against the router it describes, and the docs page.

use std::collections::BTreeSet;

use gateway::{AppState, Config};
use serde_json::Value;

use crate::helpers::{dead_url, parts, spawn_app};

/// Paths the router serves that are not API operations: Swagger UI and its
/// assets (an HTML page, a redirect, and static files under `{*rest}`).
const DOCS_ROUTES: [&str; 3] = ["/api/docs", "/api/docs/", "/api/docs/{*rest}"];
/// The methods probed on each path.
const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/// Every path the real router has, read from axum's `Debug` output (axum
/// has no public route listing; its path table prints as
/// `paths: {RouteId(n): "/path", ...}` inside `path_router`, before the
/// `fallback_router`). Fails rather than returning nothing if that format
/// changes.
async fn router_paths() -> BTreeSet<String> {
    let config = Config::for_tests(dead_url().await, dead_url().await);
    let router = gateway::router(AppState::new(&config).unwrap());
    let debug = format!("{router:?}");
    let routes = debug.split("fallback_router").next().unwrap();
    let mut paths = BTreeSet::new();
    for entry in routes.split("RouteId(").skip(1) {
        let Some((_, after)) = entry.split_once(')') else {
            continue;
        };
        // `RouteId(n): "/path"` is the path table; `RouteId(n): Route..`
        // is the endpoint table.
        if let Some(quoted) = after.strip_prefix(": \"") {
            paths.insert(quoted[..quoted.find('"').unwrap()].to_owned());
        }
    }
    assert!(
        paths.contains("/healthz"),
        "could not read the route table from {debug}"
    );
    paths
}

/// `(path, METHOD)` of every operation in `doc`.
fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            out.insert((path.clone(), method.to_ascii_uppercase()));
        }
    }
    out
}

#[tokio::test]
async fn the_document_is_openapi_3_1_with_operation_ids_and_the_bearer_scheme() {
    let app = spawn_app().await;

    let (status, headers, doc) = parts(app.get("/api/openapi.json").await).await;

    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/json");
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1."),
        "{}",
        doc["openapi"]
    );
    let scheme = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!(scheme["type"], "http");
    assert_eq!(scheme["scheme"], "bearer");
    let mut ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"].as_str();
            assert!(id.is_some(), "{method} {path} has no operationId");
            assert!(ids.insert(id.unwrap().to_owned()), "duplicate id {id:?}");
        }
    }
}

#[tokio::test]
async fn every_routed_path_is_documented_and_every_documented_path_is_routed() {
    let app = spawn_app().await;
    let (_, _, doc) = parts(app.get("/api/openapi.json").await).await;
    let documented_paths: BTreeSet<String> =
        documented(&doc).into_iter().map(|(path, _)| path).collect();

    let routed: BTreeSet<String> = router_paths()
        .await
        .into_iter()
        .filter(|p| !DOCS_ROUTES.contains(&p.as_str()))
        .collect();

    assert_eq!(routed, documented_paths);
}

#[tokio::test]
async fn every_method_a_path_answers_is_documented_and_no_other() {
    let app = spawn_app().await;
    let (_, _, doc) = parts(app.get("/api/openapi.json").await).await;
    let documented = documented(&doc);
    let paths: BTreeSet<&String> = documented.iter().map(|(path, _)| path).collect();

    for path in paths {
        for method in METHODS {
            let response = app
                .http
                .request(method.parse().unwrap(), app.url(path))
                .send()
                .await
                .unwrap();
            let is_documented = documented.contains(&(path.clone(), method.to_owned()));
            // 405 is the router's answer for a method the path lacks;
            // anything else (2xx, 400, 401, ...) means a handler ran.
            assert_eq!(
                response.status() != 405,
                is_documented,
                "{method} {path} answered {}",
                response.status()
            );
        }
    }
}

#[tokio::test]
async fn every_operation_describes_its_errors_with_json_bodies() {
    let app = spawn_app().await;
    let (_, _, doc) = parts(app.get("/api/openapi.json").await).await;

    let throttled = &doc["paths"]["/api/accounts/login/"]["post"]["responses"]["429"];
    assert!(throttled["headers"]["Retry-After"].is_object());
    let admin = &doc["paths"]["/api/accounts/logs/login/attemps/"]["get"];
    for status in ["200", "400", "401", "403", "503"] {
        assert!(admin["responses"][status].is_object(), "{status}");
    }
    assert_eq!(admin["security"][0]["bearer"], serde_json::json!([]));

    // User administration: every route says who may call it and how each
    // refusal looks; those whose change a rule may refuse document 409.
    let users = &doc["paths"]["/api/admin/users/{id}/"];
    for (method, conflicts) in [("get", false), ("patch", true), ("delete", true)] {
        let op = &users[method];
        assert_eq!(
            op["security"][0]["bearer"],
            serde_json::json!([]),
            "{method}"
        );
        for status in ["200", "400", "401", "403", "404", "503"] {
            assert!(op["responses"][status].is_object(), "{method} {status}");
        }
        assert_eq!(op["responses"]["409"].is_object(), conflicts, "{method}");
    }
    let resend = &doc["paths"]["/api/admin/users/{id}/verification/"]["post"];
    for status in ["409", "429"] {
        assert!(resend["responses"][status].is_object(), "{status}");
    }
}

#[tokio::test]
async fn each_request_body_lists_one_content_type_and_names_the_others() {
    // One schema under three content types breaks openapi-python-client's
    // output (see `JSON` in routes/accounts.rs); the form encodings are
    // still accepted (tests/api/body.rs) and the description says so.
    let app = spawn_app().await;
    let (_, _, doc) = parts(app.get("/api/openapi.json").await).await;

    let mut bodies = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let Some(body) = op.get("requestBody") else {
                continue;
            };
            bodies += 1;
            let types: Vec<&String> = body["content"].as_object().unwrap().keys().collect();
            assert_eq!(types, ["application/json"], "{method} {path}");
            let description = body["description"].as_str().unwrap_or_default();
            assert!(
                description.contains("application/x-www-form-urlencoded")
                    && description.contains("multipart/form-data"),
                "{method} {path}: {description:?}"
            );
        }
    }
    assert_eq!(bodies, 11);
}

#[tokio::test]
async fn the_docs_page_is_served_with_the_document_url() {
    let app = spawn_app().await;

    let page = app.get("/api/docs/").await;
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(page.text().await.unwrap().contains("swagger-ui"));

    let init = app.get("/api/docs/swagger-initializer.js").await;
    assert_eq!(init.status(), 200);
    assert!(init.text().await.unwrap().contains("/api/openapi.json"));
}

#[tokio::test]
async fn the_docs_page_never_asks_an_online_validator() {
    let app = spawn_app().await;

    let init = app.get("/api/docs/swagger-initializer.js").await;
    assert_eq!(init.status(), 200);
    let script = init.text().await.unwrap();

    // Swagger UI 5 (online-validator-badge.jsx) shows a badge image from
    // https://validator.swagger.io/validator?url=<document URL> unless
    // `validatorUrl` is "none", null or a localhost URL; left unset it
    // defaults to that third-party address.
    let config = script
        .split_once("SwaggerUIBundle(")
        .map(|(_, rest)| rest)
        .unwrap_or_else(|| panic!("no SwaggerUIBundle call in {script}"));
    assert!(
        config.contains(r#""validatorUrl": "none""#) || config.contains(r#""validatorUrl":"none""#),
        "validatorUrl is not switched off: {script}"
    );
    assert!(!script.contains("validator.swagger.io"), "{script}");
}

/// Every `$ref` in `value`, recursively.
fn refs(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("$ref", Value::String(r)) => {
                        out.insert(r.clone());
                    }
                    _ => refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn every_schema_reference_resolves() {
    let app = spawn_app().await;
    let (_, _, doc) = parts(app.get("/api/openapi.json").await).await;
    let mut found = BTreeSet::new();
    refs(&doc, &mut found);
    assert!(
        found.contains("#/components/schemas/UserUpdateForm"),
        "{found:?}"
    );
    for reference in found {
        let name = reference
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected reference {reference}"));
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "{reference} does not resolve"
        );
    }
    let form = &doc["components"]["schemas"]["UserUpdateForm"];
    assert_eq!(form["minProperties"], 1, "{form}");
}
