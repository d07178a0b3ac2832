use std::path::Path;

use super::*;
use crate::real::http::tests::{serve_all_with, with_body};
use crate::real::test_cluster::{Cluster, run_local};

const SPEC_FILE: &str = "docs/api_spec.yaml";

/// Set to rewrite docs/api_spec.yaml from the code instead of failing.
const REWRITE: &str = "DISTSYNC_WRITE_API_SPEC";

#[test]
fn the_spec_file_is_what_the_code_generates() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(SPEC_FILE);
    let want = yaml(&spec());
    if std::env::var_os(REWRITE).is_some() {
        std::fs::write(&path, &want).expect("write the spec");
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "{SPEC_FILE} differs from src/real/http/openapi.rs: run \
         `{REWRITE}=1 cargo test --features real-network --lib openapi` and commit the file"
    );
}

#[test]
fn yaml_strings_are_quoted_and_nesting_is_indented() {
    let v = json!({"a": {"b": [1, "x: y", {"c": null}], "e": {}}, "d": []});
    assert_eq!(
        yaml(&v),
        "\"a\":\n  \"b\":\n    - 1\n    - \"x: y\"\n    -\n      \"c\": null\n  \"e\": {}\n\"d\": []\n"
    );
}

/// The spec's paths are the router's, and on a live cluster each path
/// answers exactly the spec's methods (any other is 405).
#[test]
fn every_route_the_spec_lists_is_served_with_exactly_its_methods() {
    let spec = spec();
    let paths = spec["paths"].as_object().unwrap();
    let mut listed: Vec<&str> = paths.keys().map(String::as_str).collect();
    let mut served = crate::real::http::route_paths();
    listed.sort_unstable();
    served.sort_unstable();
    assert_eq!(listed, served, "the spec's paths against http::api_routes");
    run_local(|| async move {
        let mut c = Cluster::new("openapi-routes");
        c.start();
        let urls = serve_all_with(&c, true).await;
        let u = urls[c.leader().await].clone();
        for (path, item) in paths {
            let concrete = path
                .replace("{key}", "1")
                .replace("{id}", "1")
                .replace("{name}", "1");
            for method in ["GET", "PUT", "POST", "DELETE", "PATCH"] {
                let r = with_body(method, &format!("{u}{concrete}"), None, true).await;
                let listed = item.get(method.to_ascii_lowercase()).is_some();
                if listed {
                    assert_ne!(
                        r.status, 405,
                        "{method} {path} is in the spec but not served"
                    );
                    // Every status answered must be one the spec lists.
                    let responses = &item[method.to_ascii_lowercase()]["responses"];
                    assert!(
                        responses.get(r.status.to_string()).is_some(),
                        "{method} {path} answered {} which the spec does not list: {}",
                        r.status,
                        String::from_utf8_lossy(&r.body)
                    );
                } else {
                    assert_eq!(
                        r.status, 405,
                        "{method} {path} is served but not in the spec"
                    );
                }
            }
        }
        c.stop().await;
    });
}

#[test]
fn operation_ids_are_unique_and_links_name_real_operations() {
    let spec = spec();
    let mut ids = Vec::new();
    let mut targets = Vec::new();
    for item in spec["paths"].as_object().unwrap().values() {
        for op in item.as_object().unwrap().values() {
            ids.push(op["operationId"].as_str().unwrap().to_owned());
            for response in op["responses"].as_object().unwrap().values() {
                for link in response["links"]
                    .as_object()
                    .into_iter()
                    .flat_map(|l| l.values())
                {
                    targets.push(link["operationId"].as_str().unwrap().to_owned());
                }
            }
        }
    }
    let unique: std::collections::BTreeSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "{ids:?}");
    assert!(!targets.is_empty());
    for t in &targets {
        assert!(ids.contains(t), "a link names {t}, which no operation is");
    }
}
